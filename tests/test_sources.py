"""Frame sources: image folders, video files, camera errors, the reader thread."""

from __future__ import annotations

import logging
import re
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
    """An MJPG .avi whose frame i is a flat grey of 10 * i % 256 (decodable back to about that)."""
    w, h = size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    assert writer.isOpened(), "OpenCV cannot write MJPG .avi here"
    for i in range(n):
        writer.write(np.full((h, w, 3), 10 * i % 256, dtype=np.uint8))
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


class _NeverOpens(_FakeCapture):
    def isOpened(self):
        return False


def test_camera_latest_wins_then_lost_frames_when_it_stops(caplog):
    captures = [_FakeCapture(0)]
    src = open_camera(0, opener=lambda i: captures.pop(0) if captures else _NeverOpens(i), retry_seconds=(0.01,))
    first = src._cap
    assert src.name == "camera 0"
    assert src.fps == 30.0  # fallback
    got = []
    with caplog.at_level(logging.DEBUG, logger="facemocap.sources"):
        for frame in src:
            got.append(frame)
            if frame.lost:
                break
            time.sleep(0.01)  # slower than the camera
    src.close()
    real, lost = got[:-1], got[-1]
    indices = [f.index for f in real]
    assert indices == sorted(indices) and indices[0] == 0
    times = [f.time for f in real]
    assert times == sorted(times)
    assert src.dropped > 0
    assert len(real) + src.dropped == _FakeCapture.frames
    assert indices[-1] == _FakeCapture.frames - 1  # the newest frame is never the one dropped
    # The camera stopped: no end, a lost frame instead, after the last real one.
    assert lost.image is None and lost.landmarks is None and not any(f.lost for f in real)
    assert lost.index > indices[-1] and lost.time >= times[-1]
    assert (lost.width, lost.height) == (6, 4)
    assert "no frames" in src.lost_reason
    assert any("camera 0" in r.getMessage() for r in caplog.records)
    assert first.released
    assert not src.reader_alive


def test_camera_driver_exception_is_a_loss_not_a_crash():
    class Failing(_FakeCapture):
        fail_at = 5

    captures = [Failing(1), _FakeCapture(1)]
    src = open_camera(1, opener=lambda i: captures.pop(0) if captures else _NeverOpens(i), retry_seconds=(0.0,))
    kinds = []
    for frame in src:
        kinds.append("lost" if frame.lost else "frame")
        if src.reconnects and not frame.lost:
            break
    src.close()
    assert "driver exploded" in src.lost_reason
    assert kinds[0] == "frame" and kinds[-1] == "frame"
    assert src.reconnects == 1
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


class _NumberedCapture(_FakeCapture):
    value = 0

    def retrieve(self):
        ok, image = super().retrieve()
        return ok, np.full_like(image, self.value)


class FlakyCamera:
    """A fake camera for CameraSource's opener: the first capture gives `frames`
    frames, then the device is gone (grab() fails, or retrieve() raises with
    `fail="raise"`). Reopening fails until the test sets `back`; from then on every
    capture delivers frames. Each frame's grey value is the capture's number (1, 2 ...)."""

    def __init__(self, frames: int = 5, fail: str = "grab"):
        self.frames, self.fail = frames, fail
        self.back = threading.Event()
        self.attempts = 0      # calls of the opener
        self.opened = []       # the captures that opened

    def opener(self, index):
        self.attempts += 1
        if self.opened and not self.back.is_set():
            return _NeverOpens(index)
        capture = _NumberedCapture(index)
        capture.value = len(self.opened) + 1
        capture.frames = self.frames if not self.opened else 10**9
        if not self.opened and self.fail == "raise":
            capture.fail_at = self.frames
            capture.frames = 10**9
        self.opened.append(capture)
        return capture


@pytest.mark.parametrize("fail", ["grab", "raise"])
def test_lost_camera_sends_lost_frames_then_resumes_when_it_is_back(fail):
    camera = FlakyCamera(frames=5, fail=fail)
    src = open_camera(0, opener=camera.opener, retry_seconds=(0.01,))
    got = []
    for frame in src:
        got.append(frame)
        if sum(f.lost for f in got) >= 5 and camera.attempts >= 3:
            camera.back.set()        # the camera is plugged in again, after failed attempts
        if camera.back.is_set() and not frame.lost and len(got) > 5:
            break
    src.close()
    kinds = "".join("L" if f.lost else "F" for f in got)
    assert re.fullmatch("F+L{5,}F", kinds), kinds     # frames, lost frames, frames again
    lost = [f for f in got if f.lost]
    assert all(f.image is None and f.landmarks is None and (f.width, f.height) == (6, 4) for f in lost)
    assert [f.index for f in got] == sorted(f.index for f in got) and len({f.index for f in got}) == len(got)
    assert [f.time for f in got] == sorted(f.time for f in got)
    assert got[0].image[0, 0, 0] == 1 and got[-1].image[0, 0, 0] == 2   # the second capture's frames
    assert camera.attempts >= 4                                           # after failed attempts
    assert src.reconnects == 1 and len(camera.opened) == 2
    assert ("driver exploded" if fail == "raise" else "no frames") in src.lost_reason
    assert camera.opened[0].released
    assert not src.reader_alive


def test_camera_stuck_in_grab_counts_as_lost_until_frames_come_again():
    release = threading.Event()

    class Stuck(_FakeCapture):
        frames = 10**9

        def grab(self):
            if self.n == 3:
                release.wait()     # a driver that hangs instead of failing
            return super().grab()

    src = open_camera(0, opener=Stuck, stall_seconds=0.05)
    got = []
    for frame in src:
        got.append(frame)
        if frame.lost and not release.is_set():
            release.set()
        if release.is_set() and not frame.lost:
            break
    src.close()
    kinds = "".join("L" if f.lost else "F" for f in got)
    assert re.fullmatch("F+L+F", kinds), kinds
    assert "no frame for 0.05 s" in src.lost_reason
    assert src.reconnects == 0   # the same capture went on


def test_one_undecodable_camera_frame_is_skipped_not_a_loss():
    class OneBadFrame(_FakeCapture):
        frames = 10

        def retrieve(self):
            return (False, None) if self.n == 4 else super().retrieve()

    captures = [OneBadFrame(0)]
    src = open_camera(0, opener=lambda i: captures.pop(0) if captures else _NeverOpens(i), retry_seconds=(0.01,))
    got = []
    for frame in src:
        if frame.lost:
            break
        got.append(frame)
    src.close()
    assert len(got) + src.dropped == 9           # frame 4 skipped, the stream went on
    assert "no frames" in src.lost_reason        # lost only when the device stopped, after frame 10


def test_closing_a_lost_camera_stops_its_reader():
    camera = FlakyCamera(frames=2)
    src = open_camera(0, opener=camera.opener, retry_seconds=(3600.0,))
    it = iter(src)
    while not next(it).lost:
        pass
    src.close()      # the reader waits an hour before its next attempt: close() cuts that short
    assert not src.reader_alive
    it.close()


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
