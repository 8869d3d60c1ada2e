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
* A camera that stops delivering (unplugged, a driver error, grab() stuck) does not
  end the run: its reader releases it and reopens it every 1-2 s, and meanwhile the
  consumer's side of the queue yields "lost" frames (``image=None, lost=True``) at
  the camera's frame rate, each time its wait on the queue times out. The run loop
  sends those as "no face", so receivers get tracking 0 and the values ease to
  neutral; real frames resume by themselves when the camera is back.

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
    # No frame: the camera is lost and being reopened. image and landmarks are None; the
    # time goes on at the camera's rate, so the run keeps sending (tracking 0).
    lost: bool = False
    # The face model's blendshape scores by ARKit name, for frames that carry landmarks
    # and had them when recorded (a replayed landmarker take); None otherwise (the demo).
    scores: dict[str, float] | None = None


class SourceError(Exception):
    """A one-line, user-facing message; the CLI prints it and exits 2."""


class Source:
    """Base class / protocol: iterate for frames, then ``close()``."""

    name: str = "source"
    static: bool = False          # True for photos: unrelated images, each tracked and solved alone
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


def _cv_logging():
    """OpenCV's getLogLevel/setLogLevel: top-level in 4.x, cv2.utils.logging in 5.x."""
    if hasattr(cv2, "setLogLevel"):
        return cv2
    try:
        from cv2.utils import logging as cv_logging
    except ImportError:
        cv_logging = None
    if cv_logging is None or not hasattr(cv_logging, "setLogLevel"):
        raise RuntimeError(f"OpenCV {cv2.__version__} has no setLogLevel")
    return cv_logging


def _set_cv_log_level(level):
    """Set OpenCV's (process-wide) log level; returns the previous one."""
    module = _cv_logging()
    previous = module.getLogLevel()
    module.setLogLevel(level)
    return previous


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

    def _wait_seconds(self) -> float:
        """How long the consumer waits on the queue before calling _idle()."""
        return _POLL

    def _idle(self) -> Frame | None:
        """Called on the consumer's side when the queue stayed empty: a frame to yield
        instead (the camera's lost frames), or None to keep waiting."""
        return None

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
                    item = self._queue.get(timeout=self._wait_seconds())
                except queue.Empty:
                    if self._stop.is_set():
                        return
                    if self._thread is not None and not self._thread.is_alive() and self._queue.empty():
                        return
                    idle = self._idle()
                    if idle is not None:
                        yield idle
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


RETRY_SECONDS = (1.0, 1.5, 2.0)   # waits before each attempt to reopen a lost camera (the last repeats)
STALL_SECONDS = 1.0               # no frame for this long counts as lost (a driver stuck in grab())
READ_FAILURES = 5                 # failed reads in a row that count as lost (one corrupt frame does not)
LOST_RATE_RANGE = (10.0, 60.0)    # Hz: lost frames go at the camera's frame rate, within these


class CameraSource(_ThreadedSource):
    """A webcam. Never ends by itself: a lost camera is reopened (see the module doc).

    ``opener(index)`` makes the capture (default ``cv2.VideoCapture``): anything with
    isOpened(), grab(), retrieve(), get() and release(). ``retry_seconds``: the waits
    before each reopening attempt (the last one repeats). ``clock``: monotonic seconds,
    for frame times and the lost frames' rate. ``lost_reason`` says why the camera was
    last lost, ``reconnects`` how often it came back.
    """

    static = False
    latest_wins = True
    queue_size = CAMERA_QUEUE

    def __init__(self, index: int, *, opener: Callable | None = None,
                 retry_seconds=RETRY_SECONDS, stall_seconds: float = STALL_SECONDS,
                 clock: Callable[[], float] = time.monotonic):
        super().__init__()
        self.index = index
        self.name = f"camera {index}"
        self._opener = opener or (lambda i: cv2.VideoCapture(i))  # looked up per call: tests patch cv2
        self.retry_seconds = tuple(float(s) for s in retry_seconds) or RETRY_SECONDS
        self.stall_seconds = float(stall_seconds)
        self._clock = clock
        self.lost_reason = ""
        self.reconnects = 0
        cap, first, grabbed = self._open()
        if cap is None:
            raise SourceError(f"cannot open camera {index}: no camera found or it is in use "
                              f"(try --video FILE or --demo)")
        self._cap = cap
        self._first = first
        self._t0 = grabbed
        fps = self._get_fps(cap)
        self.fps = float(fps) if _valid_fps(fps) else DEFAULT_FPS
        self.height, self.width = first.shape[:2]
        # Shared by the reader (frames) and the consumer (lost frames), so indices and
        # times increase whichever side makes the next frame.
        self._lock = threading.Lock()
        self._lost = False
        self._next_index = 0
        self._last_time = 0.0
        self._last_grab = grabbed
        self._next_lost = 0.0

    @property
    def lost(self) -> bool:
        """True while no frames come and the camera is being reopened."""
        return self._lost

    @property
    def _lost_interval(self) -> float:
        low, high = LOST_RATE_RANGE
        return 1.0 / min(max(self.fps, low), high)

    @staticmethod
    def _get_fps(cap) -> float:
        try:
            return float(cap.get(cv2.CAP_PROP_FPS))
        except Exception:
            return 0.0

    @staticmethod
    def _release_capture(cap) -> None:
        try:
            cap.release()
        except Exception:  # a capture whose device is gone may fail to release too
            log.debug("error releasing a camera capture", exc_info=True)

    def _open(self):
        """(capture, first image, clock when it was grabbed), or (None, None, None)."""
        cap = None
        # OpenCV logs its own warnings/errors for a missing device; we say it in one line.
        previous = _set_cv_log_level(_CV_LOG_SILENT)
        try:
            cap = self._opener(self.index)
            if cap is not None and cap.isOpened() and cap.grab():
                grabbed = self._clock()
                ok, image = cap.retrieve()
                if ok and image is not None:
                    return cap, image, grabbed
        except Exception as exc:  # cv2.error, or whatever a driver raises
            log.debug("%s: %s", self.name, _first_line(exc))
        finally:
            _set_cv_log_level(previous)
        if cap is not None:
            self._release_capture(cap)
        return None, None, None

    def _read(self, cap):
        """(image, clock when grabbed, None), or (None, None, why not)."""
        try:
            if not cap.grab():
                return None, None, "no frames (disconnected?)"
            grabbed = self._clock()
            ok, image = cap.retrieve()
        except Exception as exc:
            return None, None, f"error reading it: {_first_line(exc)}"
        if not ok or image is None:
            return None, None, "could not decode a frame"
        return image, grabbed, None

    def _frame(self, image, grabbed: float) -> Frame:
        h, w = image.shape[:2]
        with self._lock:
            self._lost = False
            index, self._next_index = self._next_index, self._next_index + 1
            # Never before a lost frame the consumer made while this one was decoded.
            t = self._last_time = max(grabbed - self._t0, self._last_time)
            self._last_grab = grabbed
            self.width, self.height = w, h
        return Frame(index, t, image, width=w, height=h)

    def _mark_lost(self, reason: str) -> None:
        with self._lock:
            if not self._lost:
                self._lost = True
                self._next_lost = self._last_grab + self._lost_interval
            self.lost_reason = reason
        log.debug("%s lost: %s; reopening it", self.name, reason)

    def _reopen(self):
        """Reopen the camera, waiting retry_seconds between attempts; (None, None, None) when stopping."""
        attempt = 0
        while True:
            delay = self.retry_seconds[min(attempt, len(self.retry_seconds) - 1)]
            if self._stop.wait(delay):
                return None, None, None
            attempt += 1
            cap, image, grabbed = self._open()
            if cap is not None:
                self.reconnects += 1
                log.debug("%s reopened after %d attempt(s)", self.name, attempt)
                return cap, image, grabbed
            if self._stop.is_set():
                return None, None, None

    def _produce(self, emit):
        cap, image, grabbed, self._first = self._cap, self._first, self._t0, None
        failures = 0
        while not self._stop.is_set():
            if cap is None:
                cap, image, grabbed = self._reopen()
                self._cap = cap
                if cap is None:
                    return
            if image is None:
                image, grabbed, why = self._read(cap)
                if image is None:
                    failures += 1
                    if self._stop.is_set():
                        return
                    if failures < READ_FAILURES:
                        log.debug("%s: %s", self.name, why)
                        continue
                    self._mark_lost(why)
                    self._release_capture(cap)
                    cap = self._cap = None
                    continue
            failures = 0
            if not emit(self._frame(image, grabbed)):
                return
            image = None

    # -- the consumer's side: lost frames when the queue stays empty
    def _wait_seconds(self) -> float:
        if not self._lost:
            return _POLL
        return min(_POLL, max(0.0, self._next_lost - self._clock()))

    def _idle(self) -> Frame | None:
        now = self._clock()
        with self._lock:
            if not self._lost and now - self._last_grab >= self.stall_seconds:
                self._lost = True
                self.lost_reason = f"no frame for {self.stall_seconds:g} s"
                self._next_lost = self._last_grab + self._lost_interval
            if not self._lost or now < self._next_lost:
                return None
            self._next_lost += self._lost_interval
            if self._next_lost < now:   # the consumer fell behind: a steady rate from now on
                self._next_lost = now + self._lost_interval
            index, self._next_index = self._next_index, self._next_index + 1
            t = self._last_time = max(now - self._t0, self._last_time)
            w, h = self.width, self.height
        return Frame(index, t, None, width=w, height=h, lost=True)

    def _release(self):
        if self._cap is not None:
            self._release_capture(self._cap)
        self._first = None


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def open_camera(index: int, *, opener: Callable | None = None, retry_seconds=RETRY_SECONDS,
                stall_seconds: float = STALL_SECONDS, clock: Callable[[], float] = time.monotonic) -> Source:
    """Camera ``index``. Raises SourceError if it cannot be opened or gives no first
    frame; once running, a lost camera is reopened (see CameraSource)."""
    return CameraSource(int(index), opener=opener, retry_seconds=retry_seconds,
                        stall_seconds=stall_seconds, clock=clock)


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
    latest_wins = False
    queue_size = VIDEO_QUEUE

    def __init__(self, pattern: str, *, fps: float, sequence: bool = False):
        super().__init__()
        # Photos are unrelated images (static tracking); a sequence is one video's frames.
        self.static = not sequence
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


def open_images(pattern: str, *, fps: float = DEFAULT_FPS, sequence: bool = False) -> Source:
    """A folder (every .png/.jpg/.jpeg/.bmp/.webp in it) or a glob pattern, sorted by
    file name (numbers in names compare as numbers: 2 before 10), one frame each.
    Times are ``index / fps``. An unreadable first image is a SourceError; a later
    one is skipped with a warning (its index is left out).
    ``sequence``: the files are the frames of one video (``static`` is False: tracked
    as a video); otherwise each is its own photo (``static`` is True)."""
    return ImageSource(os.fspath(pattern), fps=fps, sequence=sequence)


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
