"""What every tracking backend shares: the result type, the error, the base class,
and the plumbing around MediaPipe (importing it, quieting its start-up noise).

Image space
-----------
Every backend returns landmarks as a float32 array of shape (478, 3) in *image
space*: MediaPipe's normalised landmarks scaled by the frame size,

    (x * width, y * height, z * width)

so x runs right and y down in pixels, and z is depth in the same (pixel) scale as
x, relative to the face's centre: smaller z = nearer the camera. Points 468-477
are the irises. The demo source already yields landmarks in this space.

Logging: MediaPipe (absl) and TFLite print lines such as ``W0000 ...
inference_feedback_manager.cc ...`` and ``INFO: Created TensorFlow Lite XNNPACK
delegate for CPU.`` straight to the stderr file descriptor while a graph starts.
``GLOG_minloglevel`` and Python's ``absl.logging`` do not reach them (C++ absl
logging, whose symbols are not exported), so from a backend's construction to its
first face the stderr descriptor is captured (NativeStderrFilter): known
info/warning noise goes to the ``facemocap.tracking`` logger at DEBUG level and
anything else (errors, our own log lines) is written back to stderr.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import tempfile
from dataclasses import dataclass

import numpy as np

from bridge.sources import Frame

log = logging.getLogger("facemocap.tracking")

NUM_LANDMARKS = 478


@dataclass
class Tracked:
    """What a tracker found in one frame."""

    landmarks: np.ndarray | None          # (478, 3) float32 image space; None = no face
    blendshapes: dict[str, float] | None = None   # MediaPipe's scores, ARKit names (landmarker)
    matrix: np.ndarray | None = None      # (4, 4) facial transformation matrix (landmarker)


class TrackingError(Exception):
    """A one-line, user-facing message."""


QUIET_FRAMES = 30   # frames without a face after which the start-up filter ends anyway


class Tracker:
    """Base class: ``track(frame) -> Tracked``, then ``close()``.

    Frames that already carry landmarks (the demo, a replayed take) pass straight
    through, with the model scores a replayed take recorded (so the solver fuses them
    as it did live), so the base class itself is the tracker for landmark-only sources. Backends call
    ``_start_quiet()`` before building their graph; the filter ends at the first
    face, after QUIET_FRAMES frames, or at close()."""

    backend: str = "none"
    description: str = "no tracker (the source gives landmarks)"
    _quiet: NativeStderrFilter | None = None
    _quiet_frames = 0

    def track(self, frame: Frame) -> Tracked:
        if frame.landmarks is not None:   # demo, take: already landmarks, no model to run
            return Tracked(np.asarray(frame.landmarks, dtype=np.float32),
                           blendshapes=frame.scores)
        if frame.image is None:
            return Tracked(None)
        tracked = self._track_image(frame)
        if self._quiet is not None:
            self._quiet_frames += 1
            if tracked.landmarks is not None or self._quiet_frames >= QUIET_FRAMES:
                self._end_quiet()
        return tracked

    def _track_image(self, frame: Frame) -> Tracked:
        raise TrackingError("this source gives landmarks, not images: there is no tracker to run")

    def _start_quiet(self) -> None:
        self._quiet = NativeStderrFilter()
        self._quiet.start()

    def _end_quiet(self) -> None:
        if self._quiet is not None:
            self._quiet.stop()
            self._quiet = None

    def close(self) -> None:
        self._end_quiet()

    def __enter__(self) -> "Tracker":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# --------------------------------------------------------------------------- helpers

_NOISE = re.compile(
    r"^(?:[IW]\d{4} [\d:.]+\s+\d+ \S+:\d+\] "       # absl INFO / WARNING lines
    r"|INFO: Created TensorFlow Lite XNNPACK delegate"
    r"|WARNING: All log messages before absl::InitializeLog\(\) is called"
    r"|WARNING: Logging before InitGoogle\(\) is written to STDERR)"
)


class NativeStderrFilter:
    """Capture the stderr file descriptor from start() to stop(), then write back all
    but MediaPipe's known info/warning noise (which goes to the debug log).

    MediaPipe's graph threads print some of that noise asynchronously, after the
    call that started them returned and until the first face, so backends keep the
    filter on from construction to their first face (or a few frames). If the
    descriptor cannot be redirected (no console), this does nothing."""

    def __init__(self):
        self._saved = None
        self._capture = None

    @property
    def active(self) -> bool:
        return self._saved is not None

    def start(self) -> None:
        if self.active:
            return
        try:
            sys.stderr.flush()
        except Exception:
            pass
        try:
            saved = os.dup(2)
        except OSError:
            return
        capture = tempfile.TemporaryFile()
        try:
            os.dup2(capture.fileno(), 2)
        except OSError:
            os.close(saved)
            capture.close()
            return
        self._saved, self._capture = saved, capture

    def stop(self) -> None:
        if not self.active:
            return
        saved, capture = self._saved, self._capture
        self._saved = self._capture = None
        try:
            sys.stderr.flush()
        except Exception:
            pass
        try:
            os.dup2(saved, 2)
            capture.seek(0)
            text = capture.read().decode("utf-8", errors="replace")
        finally:
            os.close(saved)
            capture.close()
        keep = []
        for line in text.splitlines(keepends=True):
            if _NOISE.match(line):
                log.debug("mediapipe: %s", line.rstrip())
            else:
                keep.append(line)
        if keep:
            try:
                sys.stderr.write("".join(keep))
                sys.stderr.flush()
            except Exception:
                pass


@contextlib.contextmanager
def native_stderr_filtered():
    """NativeStderrFilter around a block."""
    quiet = NativeStderrFilter()
    quiet.start()
    try:
        yield
    finally:
        quiet.stop()


def import_mediapipe():
    os.environ.setdefault("GLOG_minloglevel", "2")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        with native_stderr_filtered():
            import mediapipe as mp
    except Exception as exc:  # ImportError, or a broken install
        raise TrackingError(f"cannot import mediapipe: {one_line(exc)}") from exc
    return mp


def mediapipe_version() -> str:
    try:
        from importlib.metadata import version
        return version("mediapipe")
    except Exception:
        return "?"


def one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def to_rgb(image: np.ndarray) -> np.ndarray:
    import cv2

    if image.ndim == 2:
        code = cv2.COLOR_GRAY2RGB
    elif image.shape[2] == 4:
        code = cv2.COLOR_BGRA2RGB
    else:
        code = cv2.COLOR_BGR2RGB
    return cv2.cvtColor(image, code)


def to_image_space(points, width: int, height: int) -> np.ndarray:
    arr = np.array([(p.x, p.y, p.z) for p in points], dtype=np.float32)
    arr *= np.array([width, height, width], dtype=np.float32)
    return arr
