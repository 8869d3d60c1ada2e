"""The labelled-frame targets of bench/accuracy.py, asserted through the harness itself.

Our tracker + Solver on ../shared/data/frames/*.png, scored by the harness's own
functions and thresholds (eye closed: eyeBlink >= 0.5; mouth open: jawOpen >= 0.3;
smiling: max(mouthSmileLeft, mouthSmileRight) >= 0.5). Targets: eyes on every frame
(`lowered` = open), mouth on every frame, smile on >= 95 % of them.

Every data test runs once per tracking backend (bench/accuracy.py --backend): the
legacy Face Mesh (skipped when the installed mediapipe has none) and the Tasks Face
Landmarker (skipped when the shared model is absent).

The solver is being improved: assertions that miss today are marked
xfail(strict=False) one by one, per backend, with the reading at the time of
writing, so a fix shows up as XPASS and any other frame that breaks fails. No
correlation or timing assertions: those are benchmark output (docs/accuracy.md).
"""

from __future__ import annotations

import csv
import functools
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
from support import backend_skip

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
LABELS = DATA / "frames" / "labels.csv"
MODEL = DATA / "models" / "face_landmarker.task"
NO_DATA = f"real test data not found: {LABELS} (the shared data lives in ../shared/data; see its SOURCES.md)"


def _load_harness():
    spec = importlib.util.spec_from_file_location("bench_accuracy", ROOT / "bench" / "accuracy.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module   # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


acc = _load_harness()

needs_data = pytest.mark.skipif(not LABELS.exists(), reason=NO_DATA)


BACKENDS = acc.BACKENDS
SKIP = {b: backend_skip(b) for b in BACKENDS}


def _label_files() -> list[str]:
    if not LABELS.exists():
        return ["(no data)"]   # collected, then skipped with NO_DATA
    with open(LABELS, newline="") as f:
        return [row["file"] for row in csv.DictReader(f)]


# Misses of the solver today, per backend, on the frames as still photos (static /
# IMAGE mode, no capture times), with why. In their video (how a live tracker sees
# them, and how the targets are scored) see IN_VIDEO_MISSES.
KNOWN_MISSES = {
    ("facemesh", "eyes", "d3_f0130.png"): "lowered (downcast) eyes read as closed (blink 1.00 / 1.00): a still "
                                          "image has no capture time, so the solver's lid-speed test (LidWatch) "
                                          "cannot call them lowered",
    ("landmarker", "eyes", "d3_f0130.png"): "lowered (downcast) eyes read as closed (blink 1.00 / 1.00): a still "
                                            "image has no capture time, so the solver's lid-speed test (LidWatch) "
                                            "cannot call them lowered",
    ("landmarker", "eyes", "d3_f0020.png"): "left-eye squint/wink reads open (blink 0.09 / 0.00; Face Mesh 0.97): "
                                            "the landmarker puts the squinted eye's lower lid lower (lid gap 0.093 "
                                            "vs 0.034 eye widths in image space, before any fit; openness 0.147 vs "
                                            "0.062, the blink ramp runs from 0.17 down to 0.05). A landmark "
                                            "difference, not depth: the two meshes' z agree (ratio 1.00)",
}
SMILE_XFAIL = {
    "facemesh": ("as a still, d18_f0140.png (wide open-mouth laugh) reads mouthSmile 0.33 / 0.13 < 0.5 (Face Mesh "
                 "static mode places the corners lower than tracking mode does), so 13/14 = 93 % < 95 %"),
}
# In their video: the targets (eyes 100 %, mouth 100 %, smile >= 95 %) per backend.
IN_VIDEO_MISSES = {
    ("landmarker", "eyes"): ("d3_f0020.png (left-eye squint/wink) reads blink 0.21 / 0.00 < 0.5 (Face Mesh: "
                             "0.80): the landmarker's lower lid sits lower on the squinted eye (aligned openness "
                             "0.134 vs 0.084), a landmark difference, not depth (z scale 0.5-1.0 moves it only "
                             "0.129-0.146), so 13/14"),
    ("landmarker", "smile"): ("d3_f0020.png (grimace, labelled not smiling) reads mouthSmileLeft 0.54 >= 0.5 (Face "
                              "Mesh 0.12; the model 0.40): the frame ends a one-sided grimace (frames 10-19 read "
                              "0.71-0.98 on both backends) and the landmarker's left corner is still 4 px higher "
                              "and 2 px wider, so 13/14 = 93 % < 95 %"),
}


def _backend_params(*, smile_stills: bool = False):
    out = []
    for backend in BACKENDS:
        marks = [pytest.mark.skipif(SKIP[backend] is not None, reason=SKIP[backend] or "")]
        if smile_stills and backend in SMILE_XFAIL:
            marks.append(pytest.mark.xfail(strict=False, reason=f"solver being improved: {SMILE_XFAIL[backend]}"))
        out.append(pytest.param(backend, id=backend, marks=marks))
    return out


def _params(category: str):
    """(backend, file) for every labelled file, with the backend's skip and the known misses."""
    out = []
    for backend in BACKENDS:
        for name in _label_files():
            marks = [pytest.mark.skipif(SKIP[backend] is not None, reason=SKIP[backend] or "")]
            reason = KNOWN_MISSES.get((backend, category, name))
            if reason:
                marks.append(pytest.mark.xfail(strict=False, reason=f"solver being improved: {reason}"))
            out.append(pytest.param(backend, name, id=f"{backend}-{name}", marks=marks))
    return out


def _target_params():
    out = []
    for backend in BACKENDS:
        for category in acc.CATEGORIES:
            marks = [pytest.mark.skipif(SKIP[backend] is not None, reason=SKIP[backend] or "")]
            reason = IN_VIDEO_MISSES.get((backend, category))
            if reason:
                marks.append(pytest.mark.xfail(strict=False, reason=f"solver being improved: {reason}"))
            out.append(pytest.param(backend, category, id=f"{backend}-{category}", marks=marks))
    return out


@functools.lru_cache(maxsize=None)
def _in_video(backend: str) -> dict:
    return {f.file: f for f in acc.labelled_in_video(DATA, backend=backend)}


@functools.lru_cache(maxsize=None)
def _stills(backend: str) -> dict:
    return {f.file: f for f in acc.labelled_frames(DATA, with_model=False, backend=backend)}


@needs_data
@pytest.mark.parametrize("backend, category", _target_params())
def test_in_video_every_labelled_frame_is_scored_right(backend, category):
    """The targets: eyes 100 % (lowered = open), mouth 100 %, smile >= 95 %, each frame
    seen as frame N of its clip with the clip's capture times (bench/accuracy.py (a))."""
    in_video = _in_video(backend)
    score = acc.labelled_scores(list(in_video.values()))[category]
    if category == "eyes":
        assert score.correct == score.total == len(in_video), score.misses
    elif category == "mouth":
        assert score.correct == score.total, score.misses
    else:
        assert score.fraction >= acc.TARGET_SMILE, score.misses


@needs_data
@pytest.mark.parametrize("backend", _backend_params())
def test_in_video_lowered_eyes_are_not_a_blink_and_closed_ones_reach_0_9(backend):
    in_video = _in_video(backend)
    lowered = in_video["d3_f0130.png"].solver
    assert max(lowered["eyeBlinkLeft"], lowered["eyeBlinkRight"]) < acc.BLINK_CLOSED
    for name, f in in_video.items():
        if f.eyes == "closed":
            assert min(f.solver["eyeBlinkLeft"], f.solver["eyeBlinkRight"]) >= 0.9, name


@needs_data
@pytest.mark.parametrize("backend, name", _params("eyes"))
def test_labelled_eyes(backend, name):
    f = _stills(backend)[name]
    assert f.solver is not None, f"{name}: {acc.TRACKER_NAMES[backend]} found no face"
    assert acc.judge(f)["eyes"], (f"{name}: labelled {f.eyes}{' ' + f.eye_side if f.eye_side else ''}, "
                                  f"solver reads {acc.predict(f.solver)['eyes']} (eyeBlinkLeft "
                                  f"{f.solver['eyeBlinkLeft']:.2f}, eyeBlinkRight {f.solver['eyeBlinkRight']:.2f})")


@needs_data
@pytest.mark.parametrize("backend, name", _params("mouth"))
def test_labelled_mouth(backend, name):
    f = _stills(backend)[name]
    assert f.solver is not None, f"{name}: {acc.TRACKER_NAMES[backend]} found no face"
    ok = acc.judge(f)["mouth"]
    if ok is None:
        pytest.skip(f"{name}: mouth labelled {f.mouth}, not scored")
    assert ok, f"{name}: labelled {f.mouth}, jawOpen {f.solver['jawOpen']:.2f} (open at >= {acc.JAW_OPEN})"


@needs_data
@pytest.mark.parametrize("backend", _backend_params())
def test_labelled_eyes_and_mouth_totals(backend):
    """The harness's own totals agree with the per-frame tests' scope: every labelled
    frame scored for the eyes (lowered counts as open), all but lips_parted for the mouth."""
    frames = _stills(backend)
    scores = acc.labelled_scores(list(frames.values()))
    assert scores["eyes"].total == len(frames)
    assert scores["mouth"].total == sum(f.mouth != "lips_parted" for f in frames.values())
    assert scores["mouth"].correct == scores["mouth"].total, scores["mouth"].misses


@needs_data
@pytest.mark.parametrize("backend", _backend_params(smile_stills=True))
def test_labelled_smile_at_least_95_percent(backend):
    score = acc.labelled_scores(list(_stills(backend).values()))["smile"]
    assert score.fraction >= acc.TARGET_SMILE, f"smile {score}, missed: {', '.join(score.misses)}"


def test_backend_default_and_names():
    """--backend's default: Face Mesh where the installed mediapipe has it, else the landmarker."""
    assert acc.default_backend() == ("landmarker" if SKIP["facemesh"] else "facemesh")
    assert acc.resolve_backend(None) == acc.default_backend()
    assert acc.resolve_backend("landmarker") == "landmarker"
    with pytest.raises(ValueError, match="unknown backend"):
        acc.resolve_backend("auto")


# --- the harness's own conventions (no data needed) ----------------------------------


def _frame(eyes, mouth="closed", smile=0, note="", **values):
    base = dict(eyeBlinkLeft=0.0, eyeBlinkRight=0.0, jawOpen=0.0, mouthSmileLeft=0.0, mouthSmileRight=0.0)
    base.update(values)
    return acc.LabelledFrame("x.png", eyes, mouth, smile, note, acc._eye_side(note), base)


def test_scoring_rules():
    assert acc.judge(_frame("lowered"))["eyes"]                                   # lowered = open
    assert not acc.judge(_frame("lowered", eyeBlinkLeft=0.6, eyeBlinkRight=0.6))["eyes"]
    assert acc.judge(_frame("closed", eyeBlinkLeft=0.5, eyeBlinkRight=0.5))["eyes"]   # >= threshold
    assert acc.judge(_frame("one_closed", eyeBlinkRight=0.9))["eyes"]             # either eye, unless ...
    assert not acc.judge(_frame("one_closed", note="left-eye wink", eyeBlinkRight=0.9))["eyes"]  # ... named
    assert acc.judge(_frame("one_closed", note="left-eye wink", eyeBlinkLeft=0.9))["eyes"]
    assert acc.judge(_frame("open", mouth="lips_parted"))["mouth"] is None        # not scored
    assert acc.judge(_frame("open", mouth="open", jawOpen=acc.JAW_OPEN))["mouth"]
    assert acc.judge(_frame("open", smile=1, mouthSmileRight=0.5))["smile"]
    assert not acc.judge(_frame("open", smile=0, mouthSmileLeft=0.5))["smile"]


@pytest.mark.parametrize("yaw, pitch, roll", [(0, 0, 0), (20, 0, 0), (0, 15, 0), (0, 0, -10), (25, -12, 8)])
def test_model_matrix_angles_use_the_state_conventions(yaw, pitch, roll):
    from bridge.state import angles_to_quat, quat_to_matrix

    m = np.eye(4)
    m[:3, :3] = quat_to_matrix(angles_to_quat(yaw, pitch, roll))
    m[:3, 3] = (0.0, 0.0, -40.0)          # straight ahead of the camera
    assert np.allclose(acc.model_head_angles(m), (yaw, pitch, roll), atol=1e-6)
    assert np.allclose(acc.model_head_angles_line_of_sight(m), (yaw, pitch, roll), atol=1e-6)
    # Below the optical axis and facing the lens: pitched up in camera space, frontal along the line of sight.
    m2 = np.eye(4)
    m2[:3, :3] = quat_to_matrix(angles_to_quat(0.0, 10.0, 0.0))
    m2[:3, 3] = (0.0, -40.0 * np.tan(np.radians(10.0)), -40.0)
    assert np.allclose(acc.model_head_angles(m2), (0.0, 10.0, 0.0), atol=1e-6)
    assert np.allclose(acc.model_head_angles_line_of_sight(m2), (0.0, 0.0, 0.0), atol=1e-6)


def test_stillest_window_and_lag_measure():
    head = np.cumsum(np.ones((100, 3)), axis=0)
    head[40:70] = head[40]                      # still from 40 to 69
    head[10] = np.nan                           # no face: windows over it don't count
    assert acc.stillest_window(head, 30) == 40
    lag = acc.step_lag(1.0, 20.0)
    for k50, k90 in lag.values():
        assert k50 is not None and k90 is not None and 0 <= k50 <= k90
