"""The MediaPipe Tasks FaceLandmarker backend: the maintained API, on every MediaPipe
from 0.10.21 to today's releases.

It needs a ``face_landmarker.task`` model bundle (bridge.tracking.model finds or
downloads it). VIDEO running mode for video and camera (the face detector runs only
when tracking is lost), IMAGE mode for unrelated photos. Besides the 478 landmarks it
gives MediaPipe's own blendshape scores (ARKit camelCase names, 51 of ARKit's 52: it
has no ``tongueOut``; its ``_neutral`` is dropped) and the 4x4 facial transformation
matrix. Head pose is still our own rigid fit of the landmarks (bridge.solve), the
same on both backends; the matrix is kept for reference (bench/accuracy.py compares).
"""

from __future__ import annotations

import os

import numpy as np

from bridge.sources import Frame
from bridge.tracking.base import (Tracked, Tracker, TrackingError, import_mediapipe, mediapipe_version,
                                  one_line, to_image_space, to_rgb)


class LandmarkerTracker(Tracker):
    """MediaPipe Tasks FaceLandmarker with blendshapes and the transformation matrix."""

    backend = "landmarker"

    def __init__(self, model_path, *, static: bool = False):
        self.static = static
        self._last_ms: int | None = None
        self._closed = False
        model_path = os.fspath(model_path)
        self.model_path = model_path
        prefix = f"cannot load face landmarker model '{model_path}'"
        if not os.path.exists(model_path):
            raise TrackingError(f"{prefix}: file not found")
        if os.path.isdir(model_path):
            raise TrackingError(f"{prefix}: it is a folder, not a .task file")
        try:
            with open(model_path, "rb") as fh:
                model = fh.read()
        except OSError as exc:
            raise TrackingError(f"{prefix}: {exc.strerror or exc}") from exc
        if not model:
            raise TrackingError(f"{prefix}: the file is empty")

        self._start_quiet()
        try:
            mp = import_mediapipe()
            from mediapipe.tasks.python import BaseOptions, vision
        except TrackingError:
            self._end_quiet()
            raise
        except Exception as exc:
            self._end_quiet()
            raise TrackingError(f"mediapipe {mediapipe_version()} has no Tasks API: {one_line(exc)}") from exc
        self._mp = mp
        options = vision.FaceLandmarkerOptions(
            # a buffer, not a path: we read the file ourselves (clear errors, any path)
            base_options=BaseOptions(model_asset_buffer=model),
            running_mode=vision.RunningMode.IMAGE if static else vision.RunningMode.VIDEO,
            num_faces=1,
            output_face_blendshapes=True,
            output_facial_transformation_matrixes=True,
        )
        try:
            self._landmarker = vision.FaceLandmarker.create_from_options(options)
        except (RuntimeError, ValueError) as exc:
            self._end_quiet()
            raise TrackingError(
                f"{prefix}: not a valid MediaPipe face landmarker bundle ({one_line(exc)})"
            ) from exc
        self.description = f"MediaPipe FaceLandmarker (mediapipe {mediapipe_version()}, {model_path})"

    def _timestamp_ms(self, t: float) -> int:
        # VIDEO mode refuses a timestamp that does not increase.
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
        image = mp.Image(image_format=mp.ImageFormat.SRGB, data=to_rgb(frame.image))
        result = self._detect(image, frame.time)
        if not result.face_landmarks:
            return Tracked(None)
        landmarks = to_image_space(result.face_landmarks[0], width, height)
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
        super().close()
