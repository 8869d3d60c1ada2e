"""Frame sources: image folders, video files, camera errors, the reader thread."""

from __future__ import annotations

import logging
import sys
import threading
import time
import types
from pathlib import Path

import cv2
import numpy as np
import pytest

from bridge import sources
from bridge.sources import Frame, SourceError, open_camera, open_demo, open_images, open_video

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _write_png(path: Path, value: int, size=(24, 32)) -> None:
    h, w = size
    image = np.full((h, w, 3), value, dtype=np.uint8)
    assert cv2.imwrite(str(path), image)


def _value(frame: Frame) -> int:
    return int(round(float(frame.image.mean())))


def _make_video(path: Path, n: int, fps: float = 30.0, size=(64, 48)) -> Path:
    """An MJPG .avi whose frame i is a flat grey of 10 * i (decodable back to ~10 * i)."""
    w, h = size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    assert writer.isOpened(), "OpenCV cannot write MJPG .avi here"
    for i in range(n):
        writer.write(np.full((h, w, 3), 10 * i, dtype=np.uint8))
    writer.release()
    return path


def _threads_named(fragment: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if fragment in t.name]


# --------------------------------------------------------------------------- images


def test_images_folder_sorted_with_times(tmp_path):
    for name, value in [("b.png", 20), ("a.png", 10), ("c.jpg", 30)]:
        _write_png(tmp_path / name, value)
    (tmp_path / "notes.txt").write_text("not an image")
    src = open_images(str(tmp_path), fps=10.0)
    assert src.static is True
    assert src.name == "images (3 files)"
    frames = list(src)
    src.close()
    assert [f.index for f in frames] == [0, 1, 2]
    assert [f.time for f in frames] == pytest.approx([0.0, 0.1, 0.2])
    assert [_value(f) for f in frames] == [10, 20, 30]
    for f in frames:
        assert f.image.dtype == np.uint8 and f.image.shape == (24, 32, 3)
        assert (f.width, f.height) == (32, 24)
        assert f.landmarks is None


def test_images_numbers_sort_as_numbers(tmp_path):
    for i in (1, 2, 10):
        _write_png(tmp_path / f"img{i}.png", i * 10)
    with open_images(str(tmp_path)) as src:
        assert [_value(f) for f in src] == [10, 20, 100]


def test_images_glob(tmp_path):
    _write_png(tmp_path / "x_1.png", 10)
    _write_png(tmp_path / "x_2.png", 20)
    _write_png(tmp_path / "y_1.png", 99)
    with open_images(str(tmp_path / "x_*.png"), fps=30.0) as src:
        frames = list(src)
    assert [_value(f) for f in frames] == [10, 20]
    assert frames[1].time == pytest.approx(1 / 30)


def test_images_default_fps_is_30(tmp_path):
    _write_png(tmp_path / "a.png", 1)
    with open_images(str(tmp_path)) as src:
        assert src.fps == 30.0


def test_images_empty_folder(tmp_path):
    with pytest.raises(SourceError, match="no images"):
        open_images(str(tmp_path))


def test_images_glob_matching_nothing(tmp_path):
    with pytest.raises(SourceError, match="no image files match"):
        open_images(str(tmp_path / "*.png"))


def test_images_corrupt_first_file_named(tmp_path):
    (tmp_path / "a_broken.png").write_bytes(b"this is not a png")
    _write_png(tmp_path / "b.png", 10)
    with pytest.raises(SourceError) as info:
        open_images(str(tmp_path))
    message = str(info.value)
    assert "a_broken.png" in message and "\n" not in message


def test_images_later_corrupt_file_skipped(tmp_path, caplog):
    _write_png(tmp_path / "a.png", 10)
    (tmp_path / "b.png").write_bytes(b"\x89PNG garbage")
    _write_png(tmp_path / "c.png", 30)
    with caplog.at_level(logging.WARNING, logger="facemocap.sources"):
        with open_images(str(tmp_path)) as src:
            frames = list(src)
    assert [_value(f) for f in frames] == [10, 30]
    assert [f.index for f in frames] == [0, 2]  # the index is the file's position
    assert any("b.png" in r.getMessage() for r in caplog.records)


def test_images_reader_stops_on_break(tmp_path):
    for i in range(20):
        _write_png(tmp_path / f"{i:03d}.png", i)
    src = open_images(str(tmp_path))
    for frame in src:
        if frame.index == 2:
            break
    src.close()
    assert not src.reader_alive


# --------------------------------------------------------------------------- video errors


def test_missing_video(tmp_path):
    with pytest.raises(SourceError, match="not found"):
        open_video(str(tmp_path / "nope.mp4"), paced=False)


def test_garbage_video(tmp_path):
    path = tmp_path / "x.mp4"
    path.write_bytes(bytes(range(256)) * 40)
    with pytest.raises(SourceError) as info:
        open_video(str(path), paced=False)
    assert "x.mp4" in str(info.value)


def test_empty_video_file(tmp_path):
    path = tmp_path / "empty.mp4"
    path.write_bytes(b"")
    with pytest.raises(SourceError, match="empty"):
        open_video(str(path), paced=False)


def test_video_path_is_a_folder(tmp_path):
    with pytest.raises(SourceError, match="folder"):
        open_video(str(tmp_path), paced=False)


# --------------------------------------------------------------------------- video


def test_video_all_frames_in_order(tmp_path):
    path = _make_video(tmp_path / "tiny.avi", 12, fps=25.0)
    src = open_video(str(path), paced=False)
    assert src.name == "video tiny.avi"
    assert src.fps == pytest.approx(25.0)
    assert src.static is False
    frames = list(src)
    src.close()
    assert [f.index for f in frames] == list(range(12))
    assert [f.time for f in frames] == pytest.approx([i / 25.0 for i in range(12)])
    values = [_value(f) for f in frames]
    assert all(abs(v - 10 * i) <= 3 for i, v in enumerate(values)), values
    assert all((f.width, f.height) == (64, 48) for f in frames)
    assert not src.reader_alive


def test_video_reader_stops_on_break_and_close(tmp_path):
    path = _make_video(tmp_path / "tiny.avi", 40)
    src = open_video(str(path), paced=False)
    for frame in src:
        if frame.index == 3:
            break
    src.close()
    assert not src.reader_alive
    assert not _threads_named("tiny.avi")


def test_video_reader_stops_when_generator_closed(tmp_path):
    path = _make_video(tmp_path / "tiny.avi", 40)
    src = open_video(str(path), paced=False)
    it = iter(src)
    next(it)
    it.close()  # what a `break` out of a for loop does
    assert not src.reader_alive


def test_video_close_without_iterating(tmp_path):
    path = _make_video(tmp_path / "tiny.avi", 5)
    src = open_video(str(path), paced=False)
    src.close()
    src.close()  # idempotent
    assert not src.reader_alive


def test_video_is_read_once(tmp_path):
    path = _make_video(tmp_path / "tiny.avi", 3)
    with open_video(str(path), paced=False) as src:
        assert len(list(src)) == 3
        with pytest.raises(SourceError):
            iter(src)


def test_video_never_drops_with_a_slow_consumer(tmp_path):
    path = _make_video(tmp_path / "tiny.avi", 12)
    with open_video(str(path), paced=False) as src:
        indices = []
        for frame in src:
            time.sleep(0.01)
            indices.append(frame.index)
    assert indices == list(range(12))
    assert src.dropped == 0


def test_paced_video_is_not_much_faster_than_real_time(tmp_path):
    n, fps = 15, 30.0
    path = _make_video(tmp_path / "tiny.avi", n, fps=fps)
    with open_video(str(path), paced=True) as src:
        start = time.monotonic()
        count = sum(1 for _ in src)
        elapsed = time.monotonic() - start
    assert count == n
    expected = (n - 1) / fps
    assert elapsed >= 0.5 * expected


def test_real_video_frame_count():
    path = DATA / "video" / "liveportrait_d3.mp4"
    if not path.exists():
        pytest.skip(f"test data ../shared/data not found ({path})")
    with open_video(str(path), paced=False) as src:
        assert src.fps == pytest.approx(30.0)
        last = None
        count = 0
        for last in src:
            count += 1
    assert count == 354
    assert (last.width, last.height) == (512, 512)
    assert last.time == pytest.approx(353 / 30.0)


# --------------------------------------------------------------------------- camera


def test_missing_camera_suggests_alternatives():
    with pytest.raises(SourceError) as info:
        open_camera(99)
    message = str(info.value)
    assert "camera 99" in message
    assert "--demo" in message and "--video" in message
    assert "\n" not in message


class _FakeCapture:
    """Stands in for cv2.VideoCapture(index): fast frames, then the camera is lost."""

    frames = 60
    fail_at: int | None = None

    def __init__(self, index):
        self.n = 0
        self.released = False

    def isOpened(self):
        return True

    def grab(self):
        if self.n >= self.frames:
            return False
        time.sleep(0.002)
        self.n += 1
        return True

    def retrieve(self):
        if self.fail_at is not None and self.n >= self.fail_at:
            raise RuntimeError("driver exploded")
        return True, np.full((4, 6, 3), self.n % 256, dtype=np.uint8)

    def get(self, prop):
        return 0.0  # unknown fps

    def release(self):
        self.released = True


def test_camera_latest_wins_and_ends_when_lost(monkeypatch, caplog):
    monkeypatch.setattr(sources.cv2, "VideoCapture", _FakeCapture)
    src = open_camera(0)
    assert src.name == "camera 0"
    assert src.fps == 30.0  # fallback
    got = []
    with caplog.at_level(logging.WARNING, logger="facemocap.sources"):
        for frame in src:
            got.append(frame)
            time.sleep(0.01)  # slower than the camera
    src.close()
    indices = [f.index for f in got]
    assert indices == sorted(indices) and indices[0] == 0
    times = [f.time for f in got]
    assert times == sorted(times)
    assert src.dropped > 0
    assert len(got) + src.dropped == _FakeCapture.frames
    assert indices[-1] == _FakeCapture.frames - 1  # the newest frame is never the one dropped
    assert any("camera 0" in r.getMessage() for r in caplog.records)
    assert src._cap.released
    assert not src.reader_alive


def test_camera_reader_exception_surfaces_as_source_error(monkeypatch):
    class Failing(_FakeCapture):
        fail_at = 5

    monkeypatch.setattr(sources.cv2, "VideoCapture", Failing)
    src = open_camera(1)
    with pytest.raises(SourceError, match="driver exploded"):
        for _ in src:
            pass
    src.close()
    assert not src.reader_alive


def test_camera_stops_promptly_on_close(monkeypatch):
    class Endless(_FakeCapture):
        frames = 10**9

    monkeypatch.setattr(sources.cv2, "VideoCapture", Endless)
    src = open_camera(0)
    it = iter(src)
    next(it)
    start = time.monotonic()
    src.close()
    assert not src.reader_alive
    assert time.monotonic() - start < 2.0
    it.close()


def test_camera_that_gives_no_first_frame(monkeypatch):
    class NoFrames(_FakeCapture):
        frames = 0

    monkeypatch.setattr(sources.cv2, "VideoCapture", NoFrames)
    with pytest.raises(SourceError, match="--demo"):
        open_camera(2)


# --------------------------------------------------------------------------- demo


def test_demo_yields_landmarks(monkeypatch):
    calls = []

    def fake_demo_landmarks(t, width, height):
        calls.append((t, width, height))
        return np.full((478, 3), t, dtype=np.float64)

    fake = types.ModuleType("bridge.demo_face")
    fake.demo_landmarks = fake_demo_landmarks
    monkeypatch.setitem(sys.modules, "bridge.demo_face", fake)
    src = open_demo(fps=20.0, paced=False)
    assert src.name == "demo" and src.fps == 20.0
    frames = []
    for frame in src:
        frames.append(frame)
        if len(frames) == 5:
            break
    src.close()
    assert [f.index for f in frames] == [0, 1, 2, 3, 4]
    assert [f.time for f in frames] == pytest.approx([0, 0.05, 0.1, 0.15, 0.2])
    for f in frames:
        assert f.image is None
        assert f.landmarks.shape == (478, 3) and f.landmarks.dtype == np.float32
        assert (f.width, f.height) == (640, 480)
    assert calls[1] == (pytest.approx(0.05), 640, 480)


def test_paced_demo_is_not_much_faster_than_real_time(monkeypatch):
    fake = types.ModuleType("bridge.demo_face")
    fake.demo_landmarks = lambda t, w, h: np.zeros((478, 3), np.float32)
    monkeypatch.setitem(sys.modules, "bridge.demo_face", fake)
    src = open_demo(fps=50.0)
    start = time.monotonic()
    for frame in src:
        if frame.index == 10:
            break
    elapsed = time.monotonic() - start
    assert elapsed >= 0.5 * 10 / 50.0
