"""The legacy MediaPipe Face Mesh backend (``mediapipe.solutions.face_mesh``).

Bundled with mediapipe 0.10.21 and earlier (no model file, offline) and about 2.5x
less CPU than the Tasks FaceLandmarker, but gone from every later release: it is the
``legacy`` extra (``pip install ".[legacy]"``, Python 3.11 / 3.12 only).
"""

from __future__ import annotations

from bridge.sources import Frame
from bridge.tracking.base import (Tracked, Tracker, TrackingError, import_mediapipe, mediapipe_version,
                                  one_line, to_image_space, to_rgb)

NOT_INSTALLED = ('the legacy Face Mesh backend needs mediapipe 0.10.21 (pip install ".[legacy]", '
                 'Python 3.11 or 3.12 only)')


def available() -> bool:
    """Whether the installed MediaPipe still has the legacy Face Mesh solution."""
    try:
        mp = import_mediapipe()
    except TrackingError:
        return False
    return _face_mesh_module(mp) is not None


def _face_mesh_module(mp):
    try:
        return mp.solutions.face_mesh
    except AttributeError:
        return None


class FaceMeshTracker(Tracker):
    """MediaPipe legacy Face Mesh (refined landmarks, one face). Tracking mode for
    video and camera, static mode for unrelated images."""

    backend = "facemesh"

    def __init__(self, *, static: bool = False):
        self.static = static
        self._closed = False
        mp = import_mediapipe()
        module = _face_mesh_module(mp)
        if module is None:
            raise TrackingError(f"{NOT_INSTALLED}; the installed mediapipe {mediapipe_version()} has no "
                                f"mediapipe.solutions")
        self._start_quiet()
        try:
            self._mesh = module.FaceMesh(
                static_image_mode=static,
                refine_landmarks=True,
                max_num_faces=1,
                min_detection_confidence=0.5,
                min_tracking_confidence=0.5,
            )
        except (RuntimeError, ValueError, OSError) as exc:
            self._end_quiet()
            raise TrackingError(f"cannot start MediaPipe Face Mesh: {one_line(exc)}") from exc
        self.description = f"MediaPipe Face Mesh (legacy, mediapipe {mediapipe_version()})"

    def _track_image(self, frame: Frame) -> Tracked:
        if self._closed:
            raise TrackingError("tracker is closed")
        image = frame.image
        height, width = image.shape[:2]
        rgb = to_rgb(image)
        rgb.flags.writeable = False
        results = self._mesh.process(rgb)
        faces = results.multi_face_landmarks
        if not faces:
            return Tracked(None)
        return Tracked(to_image_space(faces[0].landmark, width, height))

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._mesh.close()
        super().close()
