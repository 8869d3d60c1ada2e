"""Tracking backends: frames in, face landmarks out.

Image space
-----------
Every backend returns landmarks as a float32 array of shape (478, 3) in *image
space*: MediaPipe's normalised landmarks scaled by the frame size,

    (x * width, y * height, z * width)

so x runs right and y down in pixels, and z is depth in the same (pixel) scale as
x, relative to the face's centre: smaller z = nearer the camera. Points 468-477
are the irises (refined landmarks). The demo source already yields landmarks in
this space.

Backends
--------
* ``facemesh`` (default): MediaPipe's legacy Face Mesh solution, refined landmarks,
  one face. Bundled with mediapipe, no model file.
* ``landmarker``: MediaPipe Tasks ``FaceLandmarker`` (VIDEO running mode, or IMAGE
  mode for static sources) with a ``face_landmarker.task`` model file. Also gives
  MediaPipe's own blendshape scores (ARKit camelCase names, 51 of ARKit's 52:
  MediaPipe has no ``tongueOut``; its ``_neutral`` is dropped) and the 4x4 facial
  transformation matrix.

Frames that already carry landmarks (the demo) pass straight through, and the
Face Mesh backend is built lazily on the first image frame, so the demo starts
instantly. MediaPipe is imported lazily too (``--help`` stays fast).

Logging: MediaPipe (absl) and TFLite print lines such as ``W0000 ...
inference_feedback_manager.cc ...`` and ``INFO: Created TensorFlow Lite XNNPACK
delegate for CPU.`` straight to the stderr file descriptor while a graph starts.
``GLOG_minloglevel`` and Python's ``absl.logging`` do not reach them (mediapipe
0.10.21 uses C++ absl logging, whose symbols are not exported), so while a backend
is built and runs its first frame, the stderr descriptor is captured: known
info/warning noise goes to the ``facemocap.tracking`` logger at DEBUG level and
anything else (errors) is written back to stderr.
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
BACKENDS = ("facemesh", "landmarker")
MODEL_URL = (
    "https://storage.googleapis.com/mediapipe-models/face_landmarker/"
    "face_landmarker/float16/1/face_landmarker.task"
)


@dataclass
class Tracked:
    """What a tracker found in one frame."""

    landmarks: np.ndarray | None          # (478, 3) float32 image space; None = no face
    blendshapes: dict[str, float] | None = None   # MediaPipe's scores, ARKit names (landmarker)
    matrix: np.ndarray | None = None      # (4, 4) facial transformation matrix (landmarker)


class TrackingError(Exception):
    """A one-line, user-facing message."""


class Tracker:
    """Base class: ``track(frame) -> Tracked``, then ``close()``."""

    backend: str = ""

    def track(self, frame: Frame) -> Tracked:
        if frame.landmarks is not None:   # demo: already landmarks, no model
            return Tracked(np.asarray(frame.landmarks, dtype=np.float32))
        if frame.image is None:
            return Tracked(None)
        return self._track_image(frame)

    def _track_image(self, frame: Frame) -> Tracked:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self) -> "Tracker":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# --------------------------------------------------------------------------- helpers

_NOISE = re.compile(
    r"^(?:[IW]\d{4} [\d:.]+\s+\d+ \S+:\d+\] "       # absl INFO / WARNING lines
    r"|INFO: Created TensorFlow Lite XNNPACK delegate"
    r"|WARNING: All log messages before absl::InitializeLog\(\) is called)"
)


@contextlib.contextmanager
def _native_stderr_filtered():
    """Capture the stderr file descriptor; drop MediaPipe's info/warning noise.

    Lines that are not known noise are written back to stderr afterwards; if the
    descriptor cannot be redirected (no console), this does nothing.
    """
    try:
        sys.stderr.flush()
    except Exception:
        pass
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    capture = tempfile.TemporaryFile()
    try:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            try:
                sys.stderr.flush()
            except Exception:
                pass
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


def _import_mediapipe():
    os.environ.setdefault("GLOG_minloglevel", "2")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        import mediapipe as mp
    except Exception as exc:  # ImportError, or a broken install
        raise TrackingError(f"cannot import mediapipe: {_one_line(exc)}") from exc
    return mp


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _to_rgb(image: np.ndarray) -> np.ndarray:
    import cv2

    if image.ndim == 2:
        code = cv2.COLOR_GRAY2RGB
    elif image.shape[2] == 4:
        code = cv2.COLOR_BGRA2RGB
    else:
        code = cv2.COLOR_BGR2RGB
    return cv2.cvtColor(image, code)


def _to_image_space(points, width: int, height: int) -> np.ndarray:
    arr = np.array([(p.x, p.y, p.z) for p in points], dtype=np.float32)
    arr *= np.array([width, height, width], dtype=np.float32)
    return arr


# --------------------------------------------------------------------------- Face Mesh


class FaceMeshTracker(Tracker):
    """MediaPipe legacy Face Mesh (refined landmarks, one face); built lazily."""

    backend = "facemesh"

    def __init__(self, *, static: bool = False):
        self.static = static
        self._mesh = None
        self._first = True
        self._closed = False

    def _build(self):
        mp = _import_mediapipe()
        try:
            self._mesh = mp.solutions.face_mesh.FaceMesh(
                static_image_mode=self.static,
                refine_landmarks=True,
                max_num_faces=1,
                min_detection_confidence=0.5,
                min_tracking_confidence=0.5,
            )
        except (RuntimeError, ValueError, OSError) as exc:
            raise TrackingError(f"cannot start MediaPipe Face Mesh: {_one_line(exc)}") from exc

    def _track_image(self, frame: Frame) -> Tracked:
        if self._closed:
            raise TrackingError("tracker is closed")
        image = frame.image
        height, width = image.shape[:2]
        rgb = _to_rgb(image)
        rgb.flags.writeable = False
        if self._first:   # graph start: MediaPipe/TFLite print their noise here
            with _native_stderr_filtered():
                if self._mesh is None:
                    self._build()
                results = self._mesh.process(rgb)
            self._first = False
        else:
            results = self._mesh.process(rgb)
        faces = results.multi_face_landmarks
        if not faces:
            return Tracked(None)
        return Tracked(_to_image_space(faces[0].landmark, width, height))

    def close(self) -> None:
        self._closed = True
        if self._mesh is not None:
            self._mesh.close()
            self._mesh = None


# --------------------------------------------------------------------------- Face Landmarker


class LandmarkerTracker(Tracker):
    """MediaPipe Tasks FaceLandmarker with blendshapes and the transformation matrix."""

    backend = "landmarker"

    def __init__(self, model_path: str | None, *, static: bool = False):
        self.static = static
        self._last_ms: int | None = None
        self._closed = False
        if not model_path:
            raise TrackingError(
                "the landmarker backend needs a model file (face_landmarker.task, from "
                f"{MODEL_URL})"
            )
        model_path = os.fspath(model_path)
        prefix = f"cannot load face landmarker model '{model_path}'"
        if not os.path.exists(model_path):
            raise TrackingError(f"{prefix}: file not found (download it from {MODEL_URL})")
        if os.path.isdir(model_path):
            raise TrackingError(f"{prefix}: it is a folder, not a .task file")
        try:
            with open(model_path, "rb") as fh:
                model = fh.read()
        except OSError as exc:
            raise TrackingError(f"{prefix}: {exc.strerror or exc}") from exc
        if not model:
            raise TrackingError(f"{prefix}: the file is empty")

        mp = _import_mediapipe()
        from mediapipe.tasks.python import BaseOptions, vision

        self._mp = mp
        options = vision.FaceLandmarkerOptions(
            # a buffer, not a path: we read the file ourselves (clear errors, any path)
            base_options=BaseOptions(model_asset_buffer=model),
            running_mode=vision.RunningMode.IMAGE if static else vision.RunningMode.VIDEO,
            num_faces=1,
            output_face_blendshapes=True,
            output_facial_transformation_matrixes=True,
        )
        self._first = True
        try:
            with _native_stderr_filtered():
                self._landmarker = vision.FaceLandmarker.create_from_options(options)
        except (RuntimeError, ValueError) as exc:
            raise TrackingError(
                f"{prefix}: not a valid MediaPipe face landmarker bundle ({_one_line(exc)})"
            ) from exc

    def _timestamp_ms(self, t: float) -> int:
        ms = int(round(t * 1000.0))
        if self._last_ms is not None and ms <= self._last_ms:
            ms = self._last_ms + 1
        self._last_ms = ms
        return ms

    def _detect(self, image, t: float):
        if self.static:
            return self._landmarker.detect(image)
        return self._landmarker.detect_for_video(image, self._timestamp_ms(t))

    def _track_image(self, frame: Frame) -> Tracked:
        if self._closed:
            raise TrackingError("tracker is closed")
        mp = self._mp
        height, width = frame.image.shape[:2]
        image = mp.Image(image_format=mp.ImageFormat.SRGB, data=_to_rgb(frame.image))
        if self._first:
            with _native_stderr_filtered():
                result = self._detect(image, frame.time)
            self._first = False
        else:
            result = self._detect(image, frame.time)
        if not result.face_landmarks:
            return Tracked(None)
        landmarks = _to_image_space(result.face_landmarks[0], width, height)
        blendshapes = None
        if result.face_blendshapes:
            blendshapes = {
                c.category_name: float(c.score)
                for c in result.face_blendshapes[0]
                if c.category_name != "_neutral"
            }
        matrix = None
        if result.facial_transformation_matrixes:
            matrix = np.asarray(result.facial_transformation_matrixes[0], dtype=np.float32).reshape(4, 4)
        return Tracked(landmarks, blendshapes, matrix)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._landmarker.close()


# --------------------------------------------------------------------------- factory


def open_tracker(backend: str, *, model_path: str | None = None, static: bool = False) -> Tracker:
    """A tracker for ``backend`` ("facemesh" or "landmarker").

    ``static``: frames are unrelated images (no tracking between frames).
    ``model_path``: the ``face_landmarker.task`` file (landmarker only).
    Raises TrackingError with a one-line message when the backend cannot start.
    """
    name = (backend or "facemesh").strip().lower()
    if name == "facemesh":
        return FaceMeshTracker(static=static)
    if name == "landmarker":
        return LandmarkerTracker(model_path, static=static)
    raise TrackingError(f"unknown tracking backend '{backend}' (choose {' or '.join(BACKENDS)})")
