"""The solve stage: 478 landmarks (and, from the Face Landmarker, its blendshape
scores) in, a FaceState out. Pure numpy, no I/O.

* geometry: the rigid head fit, the geometric measures of the expression, and the
  values they give against a rest;
* neutral: this person's rest values, estimated from the frames;
* lids: lowered eyes vs closed ones, from how the lids moved;
* fusion: the model's scores and the geometric values, channel by channel.

`Solver` is the one entry point; `vrm_presets` derives the VRM presets.
"""

from __future__ import annotations

import numpy as np

from bridge import landmarks as lm
from bridge.solve import fusion, geometry
from bridge.solve.geometry import LANDMARK_LIMIT, RigidFit, _head_position, vrm_presets
from bridge.solve.lids import LidWatch
from bridge.state import FaceState, matrix_to_angles

__all__ = ["Solver", "vrm_presets", "MODES"]
MODES = fusion.MODES
# Image space -> camera frame (right-handed: x right, y up, z towards the camera), with
# MediaPipe's depth brought to the scale of x and y.
_TO_CAMERA = np.array([1.0, -1.0, -lm.FACE_MESH_DEPTH_SCALE])


class Solver:
    """landmarks (478, 3) image space (+ the model's scores) -> FaceState.

    Image space is what bridge.tracking yields: (x * width, y * height, z * width)
    of MediaPipe's normalised landmarks (x right, y down, z away from the camera).
    """

    def __init__(self, image_width: float = 640.0, image_height: float = 480.0, *,
                 blendshapes: str = "fused", adapt: bool = True):
        """blendshapes: "fused" (the model's scores and geometry per channel; geometry
        alone on frames without scores), "solver" (geometry only) or "model" (the
        model's scores as they are; geometry where it has none: tongueOut).
        adapt: estimate this person's neutral from the frames (False for photos, which
        are each their own person: they are read against the prior)."""
        if blendshapes not in MODES:
            raise ValueError(f"blendshapes must be one of {', '.join(MODES)}, not {blendshapes!r}")
        self.mode = blendshapes
        self.adapt = adapt
        weights = lm.procrustes_weights()
        self.stable = np.flatnonzero(weights)
        self.fit = RigidFit(lm.canonical_face()[self.stable], weights[self.stable])
        self.image_width = image_width
        self.image_height = image_height
        self.lids = LidWatch()
        self.geometry_rest = geometry.rest_estimator()
        self.model_rest = fusion.rest_estimator()
        self.neutral = None

    def set_neutral(self, neutral) -> None:
        """An explicit neutral (a bridge.calibrate.Neutral from a capture or a saved
        profile): its rest values replace the estimated ones until the next. None goes
        back to estimating."""
        self.neutral = neutral

    def rests(self) -> tuple[np.ndarray, np.ndarray]:
        """(geometric rest, model rest) in use now."""
        n = self.neutral
        geo = n.measures if n is not None and n.measures is not None else self.geometry_rest.rest
        model = n.model if n is not None and n.model is not None else self.model_rest.rest
        return geo, model

    def solve(self, points: np.ndarray, image_size: tuple[float, float] | None = None,
              time: float | None = None, scores: dict[str, float] | None = None) -> FaceState:
        """`time` (seconds, the frame's capture time) lets the solver tell lowered
        eyes from closed ones (see lids) and learn this person's neutral; a still image
        has none. `scores`: the Face Landmarker's blendshapes for this frame (ARKit
        names), if any."""
        pts = np.asarray(points, dtype=np.float64)
        if pts.shape != (lm.COUNT, 3):
            raise ValueError(f"expected ({lm.COUNT}, 3) landmarks, got {pts.shape}")
        if not np.abs(pts).max() <= LANDMARK_LIMIT:   # NaN, inf or absurdly large (NaN fails <=)
            pts = np.clip(np.nan_to_num(pts, nan=0.0, posinf=0.0, neginf=0.0), -LANDMARK_LIMIT, LANDMARK_LIMIT)
        width, height = image_size or (self.image_width, self.image_height)
        cam = pts * _TO_CAMERA
        rot, scale, t = self.fit(cam[self.stable])
        m = geometry.measures_of_used(((cam[geometry.USED_INDEX] - t) @ rot) / scale)
        geo_rest, model_rest = self.rests()
        rest = geo_rest.tolist()
        lowered = (False, False)
        if time is not None:
            lowered = self.lids.update(time, geometry.eye_ratios(m, rest))
        b, eye_angles = geometry.expression(m, rest, lowered)
        model = fusion.model_vector(scores) if scores else None
        if model is not None and self.mode == "model":
            # The model's own scores; an explicit neutral (a capture, a profile) still applies.
            explicit = self.neutral.model if self.neutral is not None else None
            pure = model if explicit is None else fusion.relative(model, explicit)
            b = np.where(np.isfinite(pure), pure, b)
        elif model is not None and self.mode == "fused":
            b = fusion.fuse(np.array(b), model, model_rest)
        state = geometry.face_state(b, eye_angles)
        state.head_angles = np.array(matrix_to_angles(rot))
        state.head_position = _head_position(t, scale, width, height)
        state.measures = np.array(m)
        state.scores = model
        if self.adapt and time is not None:
            if self.geometry_rest.due(time):
                self.geometry_rest.update(time, geometry.rest_sample(m))
            if model is not None and self.model_rest.due(time):
                self.model_rest.update(time, np.where(np.isfinite(model), model, 0.0))
        return state.sanitized()
