"""Tracking backends on real frames from ../shared/data (skipped when it is absent)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from bridge.sources import Frame
from bridge.state import ARKIT_NAMES
from bridge import tracking
from bridge.tracking import Tracked, Tracker, TrackingError, choose_backend, open_tracker
from bridge.tracking.base import native_stderr_filtered

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
MODEL = DATA / "models" / "face_landmarker.task"


def _need_data(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"test data ../shared/data not found ({path}); see its SOURCES.md")
    return path


def _frame(name: str, index: int = 0, time: float = 0.0) -> Frame:
    path = _need_data(DATA / "frames" / name)
    image = cv2.imread(str(path))
    assert image is not None, path
    h, w = image.shape[:2]
    return Frame(index, time, image, width=w, height=h)


def _blank(h=480, w=640) -> Frame:
    return Frame(0, 0.0, np.full((h, w, 3), 127, np.uint8), width=w, height=h)


def _assert_image_space(landmarks: np.ndarray, frame: Frame) -> None:
    assert landmarks.shape == (478, 3)
    assert landmarks.dtype == np.float32
    assert np.isfinite(landmarks).all()
    x, y = landmarks[:, 0], landmarks[:, 1]
    assert 0 <= x.min() and x.max() <= frame.width
    assert 0 <= y.min() and y.max() <= frame.height
    # pixels, not normalised: a face spans a good part of these close-ups
    assert x.max() - x.min() > 0.2 * frame.width


# --------------------------------------------------------------------------- facemesh

FACEMESH = tracking.facemesh_available()
needs_facemesh = pytest.mark.skipif(not FACEMESH, reason='the installed mediapipe has no legacy Face Mesh '
                                    '(pip install ".[legacy]" on Python <= 3.12)')


@needs_facemesh

def test_facemesh_finds_face_in_image_space():
    frame = _frame("d18_f0005.png")
    with open_tracker("facemesh", static=True) as tracker:
        result = tracker.track(frame)
    assert isinstance(result, Tracked)
    assert result.landmarks is not None
    _assert_image_space(result.landmarks, frame)
    assert result.blendshapes is None and result.matrix is None


@needs_facemesh
def test_facemesh_tracking_mode_over_frames():
    frames = [_frame("d3_f0020.png", 0, 0.0), _frame("d3_f0050.png", 1, 1 / 30), _frame("d3_f0060.png", 2, 2 / 30)]
    with open_tracker("facemesh") as tracker:
        results = [tracker.track(f) for f in frames]
    assert all(r.landmarks is not None for r in results)


@needs_facemesh
def test_facemesh_no_face_in_blank_image():
    with open_tracker("facemesh", static=True) as tracker:
        assert tracker.track(_blank()).landmarks is None


def test_landmark_frames_pass_through_without_a_model():
    points = np.random.default_rng(0).uniform(0, 400, (478, 3)).astype(np.float32)
    frame = Frame(0, 0.0, None, landmarks=points, width=640, height=480)
    with Tracker() as tracker:   # what the CLI uses for --demo and --replay: no MediaPipe at all
        result = tracker.track(frame)
        assert np.array_equal(result.landmarks, points)
        assert result.landmarks.dtype == np.float32
        with pytest.raises(TrackingError, match="landmarks, not images"):
            tracker.track(_blank())


@pytest.mark.parametrize("backend", ["facemesh", "landmarker"])
def test_mediapipe_noise_is_filtered(capfd, backend):
    if backend == "facemesh" and not FACEMESH:
        pytest.skip("no legacy Face Mesh in the installed mediapipe")
    frames = [_frame("d18_f0005.png", i, i / 30) for i in range(3)]
    model = str(_need_data(MODEL)) if backend == "landmarker" else None
    with open_tracker(backend, model_path=model) as tracker:
        for frame in frames:
            tracker.track(frame)
        time.sleep(0.2)   # graph threads print some noise late
    err = capfd.readouterr().err
    assert "W0000" not in err and "XNNPACK" not in err and "InitGoogle" not in err, err
    assert err == "", err


def test_stderr_filter_keeps_real_errors(capfd):
    with native_stderr_filtered():
        os.write(2, b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n")
        os.write(2, b"W0000 00:00:1795503133.938581    4183 inference_feedback_manager.cc:114] noise\n")
        os.write(2, b"E0000 00:00:1795503133.938581    4183 foo.cc:1] a real error\n")
    err = capfd.readouterr().err
    assert "a real error" in err
    assert "noise" not in err and "XNNPACK" not in err


def test_unknown_backend():
    with pytest.raises(TrackingError, match="unknown tracking backend"):
        open_tracker("dlib")


@pytest.mark.skipif(FACEMESH, reason="this mediapipe has the legacy Face Mesh")
def test_facemesh_missing_says_how_to_get_it():
    with pytest.raises(TrackingError) as info:
        open_tracker("facemesh")
    message = str(info.value)
    assert 'pip install ".[legacy]"' in message and "3.12" in message and "\n" not in message


def test_facemesh_takes_no_model():
    with pytest.raises(TrackingError, match="--model is for the landmarker"):
        choose_backend("facemesh", "x.task")


def test_auto_prefers_the_landmarker_with_a_model():
    choice = choose_backend("auto", str(_need_data(MODEL)))
    assert choice.backend == "landmarker" and choice.model_path == MODEL


def test_auto_downloads_the_model_into_the_cache(model_server):
    """The session's conftest points the download at a local mirror and the cache at a temp folder."""
    _need_data(MODEL)
    choice = choose_backend("auto")
    assert choice.backend == "landmarker"
    assert choice.model_path == tracking.model.cached_path() and choice.model_path.is_file()


def test_auto_without_any_model(monkeypatch, tmp_path, model_server):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv("FACEMOCAP_MODEL_URL", model_server.url("/404"))
    if FACEMESH:   # falls back, saying why
        assert choose_backend("auto").backend == "facemesh"
    else:
        with pytest.raises(TrackingError) as info:
            choose_backend("auto")
        message = str(info.value)
        assert "HTTP 404" in message and "facemocap-osc model download" in message and "\n" not in message
    assert not any(tmp_path.rglob("*.task")) and not any(tmp_path.rglob("*.part"))


def test_a_given_model_never_falls_back(tmp_path):
    with pytest.raises(TrackingError, match="missing.task"):
        choose_backend("auto", str(tmp_path / "missing.task"))


# --------------------------------------------------------------------------- landmarker


def _landmarker(static=False):
    return open_tracker("landmarker", model_path=str(_need_data(MODEL)), static=static)


def test_landmarker_landmarks_blendshapes_matrix():
    frame = _frame("d18_f0005.png")
    with _landmarker() as tracker:
        result = tracker.track(frame)
    assert result.landmarks is not None
    _assert_image_space(result.landmarks, frame)
    shapes = result.blendshapes
    # MediaPipe scores 52 categories: "_neutral" (dropped) + 51 ARKit names (no tongueOut)
    assert len(shapes) == 51
    assert "eyeBlinkLeft" in shapes and "jawOpen" in shapes
    assert "_neutral" not in shapes
    assert set(shapes) <= set(ARKIT_NAMES)
    assert all(0.0 <= v <= 1.0 for v in shapes.values())
    assert result.matrix.shape == (4, 4)
    assert np.isfinite(result.matrix).all()


def test_landmarker_no_face():
    with _landmarker() as tracker:
        result = tracker.track(_blank())
    assert result.landmarks is None


def test_landmarker_timestamps_forced_monotonic():
    frame = _frame("d3_f0020.png")
    with _landmarker() as tracker:
        for _ in range(3):  # same time each call: must not be rejected by MediaPipe
            assert tracker.track(frame).landmarks is not None
        later = Frame(9, 0.5, frame.image, width=frame.width, height=frame.height)
        assert tracker.track(later).landmarks is not None


def test_landmarker_blink_sanity():
    blink, open_ = _frame("d3_f0050.png"), _frame("d3_f0080.png")
    with _landmarker(static=True) as tracker:
        closed_score = tracker.track(blink).blendshapes["eyeBlinkLeft"]
        open_score = tracker.track(open_).blendshapes["eyeBlinkLeft"]
    assert closed_score > open_score


def test_landmarker_missing_model(tmp_path):
    path = tmp_path / "missing.task"
    with pytest.raises(TrackingError) as info:
        open_tracker("landmarker", model_path=str(path))
    message = str(info.value)
    assert message == f"--model {path}: file not found"


def test_landmarker_image_and_video_modes_agree():
    frame = _frame("d18_f0005.png")
    with _landmarker(static=True) as still, _landmarker() as video:
        a, b = still.track(frame), video.track(frame)
    assert np.abs(a.landmarks - b.landmarks).max() < 2.0   # pixels: the same detection


def test_landmarker_garbage_model(tmp_path):
    path = tmp_path / "x.task"
    path.write_text("this is a text file, not a model bundle\n")
    with pytest.raises(TrackingError) as info:
        open_tracker("landmarker", model_path=str(path))
    message = str(info.value)
    assert message.startswith(f"cannot load face landmarker model '{path}'")
    assert "\n" not in message


def test_landmarker_without_model_offline(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    with pytest.raises(TrackingError, match="facemocap-osc model download"):
        open_tracker("landmarker", download=False)


def test_model_blendshapes_mean_the_landmarker(monkeypatch, tmp_path, model_server):
    with pytest.raises(TrackingError, match="Face Mesh has no blendshape model"):
        choose_backend("facemesh", blendshapes=True)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv("FACEMOCAP_MODEL_URL", model_server.url("/404"))
    with pytest.raises(TrackingError) as info:   # never a fall-back to Face Mesh, even where it exists
        choose_backend("auto", blendshapes=True)
    assert str(info.value).startswith("--blendshapes model needs the landmarker backend: ")
    assert "HTTP 404" in str(info.value)
