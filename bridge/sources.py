"""Frame sources: a camera, a video file, a folder of images, or the synthetic demo face.

Every source is an iterable of :class:`Frame` with a capture time, behind one
interface (:class:`Source`). OpenCV does all image and video I/O.

* Video, camera and image folders decode on a reader thread into a small bounded
  queue, so decoding overlaps with inference in the consumer. A video never drops
  frames (the reader blocks when the queue is full); a camera keeps the latest
  frames (when the consumer is slow the oldest queued frame is dropped and counted
  in ``Source.dropped``).
* The reader thread is a daemon with a stop event: it stops when ``close()`` is
  called, when the consumer stops iterating (``break`` / generator closed), and it
  can never keep the process alive at exit.
* Times: ``index / fps`` (media time) for video and image folders, monotonic
  seconds since the source was opened for a camera, ``index / fps`` for the demo.
* A video, camera or image source is iterated once (a second ``iter()`` raises
  ``SourceError``; open it again). Sources are context managers.

Errors the user can fix (no camera, missing or undecodable file, empty folder)
are raised as :class:`SourceError` with a one-line message.
"""

from __future__ import annotations

import glob
import logging
import math
import os
import queue
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator

import cv2
import numpy as np

log = logging.getLogger("facemocap.sources")

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
DEFAULT_FPS = 30.0
VIDEO_QUEUE = 4     # frames decoded ahead of the consumer (video, images)
CAMERA_QUEUE = 2    # kept small: with latest-wins, queued frames are latency
_POLL = 0.05        # seconds; how often blocked threads look at the stop event


@dataclass
class Frame:
    """One frame. ``image`` is BGR uint8, or None for sources that yield landmarks."""

    index: int                    # 0-based frame number in the source
    time: float                   # capture time in seconds (see module docstring)
    image: np.ndarray | None      # BGR uint8 (H, W, 3)
    landmarks: np.ndarray | None = None   # (478, 3) float32 image space (demo)
    width: int = 0
    height: int = 0
    # Wall-clock (monotonic) moment the frame was read: the start of capture -> send latency.
    captured: float = field(default_factory=time.monotonic)


class SourceError(Exception):
    """A one-line, user-facing message; the CLI prints it and exits 2."""


class Source:
    """Base class / protocol: iterate for frames, then ``close()``."""

    name: str = "source"
    static: bool = False          # True for image folders (tracking uses static mode)
    fps: float = DEFAULT_FPS
    dropped: int = 0              # frames dropped because the consumer was slow (camera)
    frame_count: int | None = None  # number of frames, when known in advance

    def __iter__(self) -> Iterator[Frame]:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self) -> "Source":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} fps={self.fps:g}>"


# --------------------------------------------------------------------------- helpers


_END = object()


class _ReaderFailed:
    def __init__(self, exc: BaseException):
        self.exc = exc


def _valid_fps(value: float) -> bool:
    return bool(value) and math.isfinite(value) and 0.0 < value <= 1000.0


_CV_LOG_SILENT = 0  # cv::utils::logging::LOG_LEVEL_SILENT


def _set_cv_log_level(level):
    """Set OpenCV's (process-wide) log level; returns the previous one, or None."""
    try:
        previous = cv2.getLogLevel()
        cv2.setLogLevel(level)
        return previous
    except Exception:  # pragma: no cover - very old or stripped builds
        return None


class _ThreadedSource(Source):
    """A source whose frames are produced by ``_produce`` on a daemon reader thread.

    ``_produce(emit)`` calls ``emit(frame)`` for each frame and returns at the end;
    ``emit`` returns False once the source is stopping. ``_release`` frees the
    underlying resource and runs exactly once, on the reader thread when it ran,
    otherwise in ``close()``.
    """

    latest_wins = False
    queue_size = VIDEO_QUEUE

    def __init__(self) -> None:
        self._queue: queue.Queue = queue.Queue(maxsize=self.queue_size)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._released = False
        self._release_lock = threading.Lock()
        self.dropped = 0

    # -- subclass hooks
    def _produce(self, emit: Callable[[Frame], bool]) -> None:
        raise NotImplementedError

    def _release(self) -> None:
        pass

    # -- machinery
    def _release_once(self) -> None:
        with self._release_lock:
            if self._released:
                return
            self._released = True
        try:
            self._release()
        except Exception:  # pragma: no cover - releasing must never raise
            log.debug("error releasing %s", self.name, exc_info=True)

    def _put(self, item) -> bool:
        """Queue an item; False if the source is stopping. Honours latest-wins."""
        if self.latest_wins:
            while not self._stop.is_set():
                try:
                    self._queue.put_nowait(item)
                    return True
                except queue.Full:
                    try:
                        old = self._queue.get_nowait()
                    except queue.Empty:
                        continue
                    if isinstance(old, Frame):  # only frames are queued before the end marker
                        self.dropped += 1
            return False
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=_POLL)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        try:
            self._produce(lambda frame: self._put(frame))
            self._put(_END)
        except BaseException as exc:  # surfaces in the consumer as SourceError
            self._put(_ReaderFailed(exc))
        finally:
            self._release_once()

    def _start(self) -> None:
        if self._thread is not None or self._stop.is_set():
            raise SourceError(f"{self.name} can only be read once; open it again")
        self._thread = threading.Thread(
            target=self._run, name=f"facemocap-reader ({self.name})", daemon=True
        )
        self._thread.start()

    def __iter__(self) -> Iterator[Frame]:
        self._start()
        return self._consume()

    def _consume(self) -> Iterator[Frame]:
        try:
            while True:
                try:
                    item = self._queue.get(timeout=_POLL)
                except queue.Empty:
                    if self._stop.is_set():
                        return
                    if self._thread is not None and not self._thread.is_alive() and self._queue.empty():
                        return
                    continue
                if item is _END:
                    return
                if isinstance(item, _ReaderFailed):
                    exc = item.exc
                    if isinstance(exc, SourceError):
                        raise exc
                    detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                    raise SourceError(f"error reading {self.name}: {detail}") from exc
                yield item
        finally:
            # The consumer stopped (end, break, exception, or generator closed).
            self._stop.set()
            self._join()

    def _join(self, timeout: float = 2.0) -> None:
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            if thread.is_alive():  # stuck in a driver call; it is a daemon, let it go
                log.debug("reader thread for %s did not stop within %.1fs", self.name, timeout)

    def close(self) -> None:
        self._stop.set()
        # unblock a reader waiting on a full queue
        try:
            while True:
                self._queue.get_nowait()
        except queue.Empty:
            pass
        self._join()
        if self._thread is None:
            self._release_once()

    @property
    def reader_alive(self) -> bool:
        """True while the reader thread runs (for tests and diagnostics)."""
        return self._thread is not None and self._thread.is_alive()


# --------------------------------------------------------------------------- video


class VideoSource(_ThreadedSource):
    static = False
    latest_wins = False
    queue_size = VIDEO_QUEUE

    def __init__(self, path: str, *, paced: bool):
        super().__init__()
        self.path = path
        self.paced = paced
        self.name = f"video {os.path.basename(path)}"
        if not os.path.exists(path):
            raise SourceError(f"cannot open video '{path}': file not found")
        if os.path.isdir(path):
            raise SourceError(f"cannot open video '{path}': it is a folder (use --images for a folder of images)")
        if os.path.getsize(path) == 0:
            raise SourceError(f"cannot open video '{path}': the file is empty")
        # OpenCV / FFmpeg log their own lines for a bad file; we say it in one line.
        # FFmpeg's level is read from the environment when OpenCV sets up FFmpeg
        # (AV_LOG_QUIET; set OPENCV_FFMPEG_LOGLEVEL yourself to see FFmpeg's messages).
        os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
        previous = _set_cv_log_level(_CV_LOG_SILENT)
        try:
            cap = cv2.VideoCapture(path)
        finally:
            _set_cv_log_level(previous)
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"cannot open video '{path}': not a video file OpenCV can decode")
        ok, first = cap.read()
        if not ok or first is None:
            cap.release()
            raise SourceError(f"cannot open video '{path}': no frames could be decoded")
        self._cap = cap
        self._first = first
        fps = cap.get(cv2.CAP_PROP_FPS)
        if _valid_fps(fps):
            self.fps = float(fps)
        else:
            log.info("%s: frame rate unknown (%r), assuming %g fps", self.name, fps, DEFAULT_FPS)
            self.fps = DEFAULT_FPS
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        self.frame_count = count if count > 0 else None
        self.height, self.width = first.shape[:2]

    def _produce(self, emit):
        cap, image, self._first = self._cap, self._first, None
        index = 0
        start = time.monotonic()
        while image is not None:
            if self.paced:
                delay = start + index / self.fps - time.monotonic()
                if delay > 0 and self._stop.wait(delay):
                    return
            h, w = image.shape[:2]
            if not emit(Frame(index, index / self.fps, image, width=w, height=h)):
                return
            index += 1
            ok, image = cap.read()
            if not ok:
                image = None
        if self.frame_count and index < self.frame_count - 1:
            log.debug("%s: %d frames decoded, container said %d", self.name, index, self.frame_count)

    def _release(self):
        self._cap.release()
        self._first = None


def open_video(path: str, *, paced: bool) -> Source:
    """A video file. ``paced``: release frames at the file's frame rate like a live
    camera (wall clock); otherwise as fast as the consumer takes them."""
    return VideoSource(os.fspath(path), paced=paced)


# --------------------------------------------------------------------------- camera


class CameraSource(_ThreadedSource):
    static = False
    latest_wins = True
    queue_size = CAMERA_QUEUE

    def __init__(self, index: int):
        super().__init__()
        self.index = index
        self.name = f"camera {index}"
        hint = "(try --video FILE or --demo)"
        cap = first = None
        # OpenCV logs its own warnings/errors for a missing device; we say it in one line.
        previous = _set_cv_log_level(_CV_LOG_SILENT)
        try:
            cap = cv2.VideoCapture(index)
            ok = cap.isOpened()
            if ok:
                ok = cap.grab()
                self._t0 = time.monotonic()
                ok, first = cap.retrieve() if ok else (False, None)
                ok = ok and first is not None
        except cv2.error as exc:
            ok = False
            log.debug("camera %d: %s", index, exc)
        finally:
            _set_cv_log_level(previous)
        if not ok:
            if cap is not None:
                cap.release()
            raise SourceError(f"cannot open camera {index}: no camera found or it is in use {hint}")
        self._cap = cap
        self._first = first
        fps = cap.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps) if _valid_fps(fps) else DEFAULT_FPS
        self.height, self.width = first.shape[:2]

    def _produce(self, emit):
        cap, image, self._first = self._cap, self._first, None
        h, w = image.shape[:2]
        if not emit(Frame(0, 0.0, image, width=w, height=h)):
            return
        index = 1
        while not self._stop.is_set():
            if not cap.grab():
                if not self._stop.is_set():
                    log.warning("%s stopped delivering frames (disconnected?); stopping", self.name)
                return
            t = time.monotonic() - self._t0
            ok, image = cap.retrieve()
            if not ok or image is None:
                log.warning("%s: could not decode a frame; stopping", self.name)
                return
            h, w = image.shape[:2]
            if not emit(Frame(index, t, image, width=w, height=h)):
                return
            index += 1

    def _release(self):
        self._cap.release()
        self._first = None


def open_camera(index: int) -> Source:
    """Camera ``index``. Raises SourceError if it cannot be opened or gives no frame."""
    return CameraSource(int(index))


# --------------------------------------------------------------------------- images


def _natural_key(path: str):
    name = os.path.basename(path)
    parts = re.split(r"(\d+)", name.lower())
    return ([int(p) if p.isdigit() else p for p in parts], path)


def _read_image(path: str) -> np.ndarray | None:
    """Decode an image file to BGR uint8 (works with non-ASCII paths on Windows)."""
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError:
        return None
    if data.size == 0:
        return None
    try:
        image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    except cv2.error:
        return None
    return image


class ImageSource(_ThreadedSource):
    static = True
    latest_wins = False
    queue_size = VIDEO_QUEUE

    def __init__(self, pattern: str, *, fps: float):
        super().__init__()
        if os.path.isdir(pattern):
            files = [
                os.path.join(pattern, f)
                for f in os.listdir(pattern)
                if f.lower().endswith(IMAGE_EXTENSIONS) and os.path.isfile(os.path.join(pattern, f))
            ]
            if not files:
                raise SourceError(
                    f"no images in folder '{pattern}' (looked for {', '.join(IMAGE_EXTENSIONS)})"
                )
        else:
            files = [f for f in glob.glob(pattern) if os.path.isfile(f)]
            if not files:
                raise SourceError(f"no image files match '{pattern}'")
        files.sort(key=_natural_key)
        if not _valid_fps(fps):
            raise SourceError(f"invalid frame rate for images: {fps!r}")
        self.files = files
        self.fps = float(fps)
        self.frame_count = len(files)
        self.name = f"images ({len(files)} file{'s' if len(files) != 1 else ''})"
        first = _read_image(files[0])
        if first is None:
            raise SourceError(f"cannot read image '{files[0]}': not an image OpenCV can decode")
        self._first = first

    def _produce(self, emit):
        first, self._first = self._first, None
        for index, path in enumerate(self.files):
            image = first if (index == 0 and first is not None) else _read_image(path)
            if image is None:
                log.warning("skipping '%s': not an image OpenCV can decode", path)
                continue
            h, w = image.shape[:2]
            if not emit(Frame(index, index / self.fps, image, width=w, height=h)):
                return

    def _release(self):
        self._first = None


def open_images(pattern: str, *, fps: float = DEFAULT_FPS) -> Source:
    """A folder (every .png/.jpg/.jpeg/.bmp/.webp in it) or a glob pattern, sorted by
    file name (numbers in names compare as numbers: 2 before 10), one frame each.
    Times are ``index / fps``. An unreadable first image is a SourceError; a later
    one is skipped with a warning (its index is left out)."""
    return ImageSource(os.fspath(pattern), fps=fps)


# --------------------------------------------------------------------------- demo


class DemoSource(Source):
    """The synthetic demo face: landmarks, no image, loops forever."""

    static = False
    width = 640
    height = 480

    def __init__(self, *, fps: float, paced: bool):
        from bridge.demo_face import demo_landmarks  # lazy: only the demo needs it

        if not _valid_fps(fps):
            raise SourceError(f"invalid frame rate for the demo: {fps!r}")
        self._landmarks = demo_landmarks
        self.name = "demo"
        self.fps = float(fps)
        self.paced = paced
        self.dropped = 0
        self._closed = False

    def __iter__(self) -> Iterator[Frame]:
        start = time.monotonic()
        index = 0
        while not self._closed:
            t = index / self.fps
            if self.paced:
                delay = start + t - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            points = np.asarray(self._landmarks(t, self.width, self.height), dtype=np.float32)
            yield Frame(index, t, None, landmarks=points, width=self.width, height=self.height)
            index += 1

    def close(self) -> None:
        self._closed = True


def open_demo(*, fps: float = DEFAULT_FPS, paced: bool = True) -> Source:
    """The built-in synthetic face (no camera, no model): frames carry landmarks."""
    return DemoSource(fps=fps, paced=paced)
