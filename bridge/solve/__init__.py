"""The solve stage: 478 landmarks (and, from the Face Landmarker, its blendshape
scores) in, a FaceState out. Pure numpy, no I/O.

* geometry: the rigid head fit and the geometric measures of the expression;
* fusion: the model's scores and the geometric values, channel by channel.

`Solver` is the one entry point; `vrm_presets` derives the VRM presets.
"""

from __future__ import annotations

import numpy as np

from bridge import landmarks as lm
from bridge.solve import fusion
from bridge.solve.geometry import (
    LANDMARK_LIMIT, LidWatch, RigidFit, _head_position, eye_openness, measure, vrm_presets,
)
from bridge.state import FaceState, matrix_to_angles

__all__ = ["Solver", "vrm_presets", "MODES"]
MODES = fusion.MODES

class Solver:
    """landmarks (478, 3) image space -> FaceState.

    Image space is what bridge.tracking yields: (x * width, y * height, z * width)
    of MediaPipe's normalised landmarks (x right, y down, z away from the camera).
    """

    def __init__(self, image_width: float = 640.0, image_height: float = 480.0, *,
                 blendshapes: str = "fused", adapt: bool = True):
        """blendshapes: "fused" (the model's scores and geometry per channel; geometry
        alone on frames without scores), "solver" (geometry only) or "model" (the
        model's scores as they are, geometry where it has none: tongueOut).
        adapt: estimate this person's neutral from the frames (False for photos, which
        are each their own person)."""
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
        self.neutral = None

    def set_neutral(self, neutral) -> None:
        """An explicit neutral (a bridge.calibrate.Neutral from a capture or a saved
        profile; None to go back to the automatic one)."""
        self.neutral = neutral

    def solve(self, points: np.ndarray, image_size: tuple[float, float] | None = None,
              time: float | None = None, scores: dict[str, float] | None = None) -> FaceState:
        """`time` (seconds, the frame's capture time) lets the solver tell lowered
        eyes from closed ones (see LidWatch); a still image has none. `scores`: the
        Face Landmarker's blendshapes for this frame (ARKit names), if any."""
        pts = np.asarray(points, dtype=np.float64)
        if pts.shape != (lm.COUNT, 3):
            raise ValueError(f"expected ({lm.COUNT}, 3) landmarks, got {pts.shape}")
        if not np.abs(pts).max() <= LANDMARK_LIMIT:   # NaN, inf or absurdly large (NaN fails <=)
            pts = np.clip(np.nan_to_num(pts, nan=0.0, posinf=0.0, neginf=0.0), -LANDMARK_LIMIT, LANDMARK_LIMIT)
        width, height = image_size or (self.image_width, self.image_height)
        # Image space -> camera frame (right-handed: x right, y up, z towards camera),
        # with Face Mesh's depth brought to the scale of x and y.
        cam = pts * np.array([1.0, -1.0, -lm.FACE_MESH_DEPTH_SCALE])
        rot, scale, t = self.fit(cam[self.stable])
        aligned = ((cam - t) @ rot) / scale
        lowered = (False, False)
        if time is not None:
            lowered = self.lids.update(time, eye_openness(aligned))
        state = measure(aligned, lowered)
        if scores and self.mode == "model":
            state.blendshapes = fusion.model_vector(scores, state.blendshapes)
            state.vrm = vrm_presets(state.blendshapes, state.eye_angles)
        state.head_angles = np.array(matrix_to_angles(rot))
        state.head_position = _head_position(t, scale, width, height)
        return state.sanitized()


