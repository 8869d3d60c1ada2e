"""Tracking: frames in, 478 face landmarks out (bridge.tracking.base has the contract).

Backends
--------
* ``landmarker``: MediaPipe Tasks ``FaceLandmarker`` with a ``face_landmarker.task``
  model (bridge.tracking.model finds, caches or downloads it). Works on every
  supported MediaPipe, 0.10.21 to today's. Also gives MediaPipe's own blendshape
  scores and the facial transformation matrix.
* ``facemesh``: the legacy Face Mesh solution: bundled models, offline, about 2.5x
  less CPU, but only in mediapipe 0.10.21 (Python <= 3.12; ``pip install ".[legacy]"``).
* ``auto`` (the default): the landmarker when a model is available (given, cached or
  downloadable), else Face Mesh when the installed MediaPipe has it, else an error
  saying how to get the model.

MediaPipe is imported only when a backend is opened, so ``--help`` and the demo
(whose frames carry landmarks: the base ``Tracker`` passes them through) stay fast.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from bridge.tracking.base import NUM_LANDMARKS, Tracked, Tracker, TrackingError
from bridge.tracking.model import ModelError

log = logging.getLogger("facemocap.tracking")

BACKENDS = ("auto", "landmarker", "facemesh")

__all__ = ["BACKENDS", "NUM_LANDMARKS", "Choice", "Tracked", "Tracker", "TrackingError", "choose_backend",
           "facemesh_available", "open_tracker"]


def facemesh_available() -> bool:
    from bridge.tracking import facemesh
    return facemesh.available()


@dataclass(frozen=True)
class Choice:
    """A backend resolved to what will run: "facemesh", or "landmarker" with its model."""
    backend: str
    model_path: Path | None = None


def choose_backend(backend: str = "auto", model_path: str | None = None, *, download: bool = True,
                   blendshapes: bool = False) -> Choice:
    """Resolve ``backend`` ("auto", "landmarker" or "facemesh") without starting it.

    ``model_path``: a ``face_landmarker.task`` (else FACEMOCAP_MODEL, the cache, a download).
    ``download``: whether a missing model may be fetched.
    ``blendshapes``: MediaPipe's blendshape scores are wanted (--blendshapes model):
    only the landmarker has them, so "auto" means it and never falls back.
    Raises TrackingError with a one-line message when the backend cannot be had.
    """
    from bridge.tracking import facemesh, model
    name = (backend or "auto").strip().lower()
    if name not in BACKENDS:
        raise TrackingError(f"unknown tracking backend '{backend}' (choose {', '.join(BACKENDS)})")
    if blendshapes:
        if name == "facemesh":
            raise TrackingError("--blendshapes model needs the landmarker backend "
                                "(Face Mesh has no blendshape model)")
        try:
            return Choice("landmarker", model.locate(model_path, download=download).path)
        except ModelError as error:
            raise TrackingError(f"--blendshapes model needs the landmarker backend: {error}") from None
    if name == "facemesh":
        if model_path:
            raise TrackingError("--model is for the landmarker backend; Face Mesh has its models built in")
        if not facemesh.available():
            raise TrackingError(f"{facemesh.NOT_INSTALLED}; the installed mediapipe "
                                f"{facemesh.mediapipe_version()} has no mediapipe.solutions")
        return Choice("facemesh")
    try:
        return Choice("landmarker", model.locate(model_path, download=download).path)
    except ModelError as error:
        if name == "landmarker" or model_path or not facemesh.available():
            raise TrackingError(str(error)) from None
        log.warning("no face landmarker model (%s); using the legacy Face Mesh instead", error)
        return Choice("facemesh")


def open_tracker(backend: str | Choice = "auto", *, model_path: str | None = None, static: bool = False,
                 download: bool = True, blendshapes: bool = False) -> Tracker:
    """A started tracker for ``backend`` (a name for choose_backend, or its Choice).

    ``static``: frames are unrelated images (no tracking between frames).
    Raises TrackingError with a one-line message when the backend cannot start.
    """
    choice = backend if isinstance(backend, Choice) else choose_backend(
        backend, model_path, download=download, blendshapes=blendshapes)
    if choice.backend == "facemesh":
        from bridge.tracking.facemesh import FaceMeshTracker
        return FaceMeshTracker(static=static)
    from bridge.tracking.landmarker import LandmarkerTracker
    return LandmarkerTracker(choice.model_path, static=static)
