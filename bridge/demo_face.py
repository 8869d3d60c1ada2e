"""A synthetic animated face: MediaPipe's canonical face, deformed and posed, as
image-space landmarks. It lets a user test a receiver with nothing plugged in,
and gives the tests faces with known truth. Deterministic: the same t gives the
same points.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from bridge import landmarks as lm
from bridge.solve.geometry import EYEBALL_RADIUS_PITCH, EYEBALL_RADIUS_YAW, PITCH_PER_YAW
from bridge.state import angles_to_quat, quat_to_matrix

PIXELS_PER_CM = 18.0
LOOP_SECONDS = 12.0
# The canonical face's lips are 0.55 cm apart; the demo's rest face closes them.
CANONICAL_LIP_GAP = 0.55
JAW_TRAVEL = 2.4          # cm the chin drops at jaw = 1
SMILE_RISE, SMILE_WIDEN = 0.9, 0.5
BROW_RISE = 0.7


@dataclass
class Expression:
    """What the demo face does: 0..1 (brows_up -1..1, -1 lowered), angles in degrees as in FaceState."""
    yaw: float = 0.0
    pitch: float = 0.0
    roll: float = 0.0
    blink_left: float = 0.0
    blink_right: float = 0.0
    jaw: float = 0.0
    smile: float = 0.0
    pucker: float = 0.0
    brows_up: float = 0.0
    gaze_yaw: float = 0.0
    gaze_pitch: float = 0.0


def _bump(points: np.ndarray, centre: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian falloff around centre: 1 at it, ~0 a few sigma away."""
    d2 = np.sum((points[:, :2] - centre[:2]) ** 2, axis=1)
    return np.exp(-d2 / (2.0 * sigma * sigma))


class DemoFace:
    def __init__(self):
        base = np.array(lm.canonical_face())
        stable = lm.procrustes_weights() > 0
        self.base = base
        # The lower jaw: lower lip and chin region, never the stable points the
        # head fit uses (so pose stays exact while the mouth moves).
        x, y = base[:, 0], base[:, 1]
        jaw = np.clip((-4.1 - y) / 0.4, 0.0, 1.0) * np.clip((6.0 - np.abs(x)) / 2.0, 0.0, 1.0)
        jaw[list(lm.INNER_LIP_UPPER_CONTOUR)] = 0.0
        jaw[list(lm.INNER_LIP_LOWER_CONTOUR)] = 1.0
        jaw[[lm.MOUTH_LEFT_CORNER, lm.MOUTH_RIGHT_CORNER]] = 0.4
        jaw[[lm.INNER_LIP_UPPER_CONTOUR[0], lm.INNER_LIP_UPPER_CONTOUR[-1]]] = 0.4
        jaw[stable] = 0.0
        self.jaw_weight = jaw
        self.corner_weight = {
            side: _bump(base, base[corner], 0.7) * (1.0 - stable)
            for side, corner in (("left", lm.MOUTH_LEFT_CORNER), ("right", lm.MOUTH_RIGHT_CORNER))
        }
        brows = lm.LEFT_BROW_INNER + lm.LEFT_BROW_MIDDLE + lm.RIGHT_BROW_INNER + lm.RIGHT_BROW_MIDDLE
        brow_weight = np.zeros(len(base))
        for i in brows:
            brow_weight = np.maximum(brow_weight, _bump(base, base[i], 0.6))
        self.brow_weight = brow_weight * (1.0 - stable)

    def points(self, e: Expression) -> np.ndarray:
        """Head-aligned face (canonical centimetres) showing expression e."""
        p = self.base.copy()
        p[:, 1] += self.jaw_weight * (CANONICAL_LIP_GAP - JAW_TRAVEL * e.jaw)
        for side, sign in (("left", 1.0), ("right", -1.0)):
            w = self.corner_weight[side]
            p[:, 1] += w * SMILE_RISE * e.smile
            p[:, 0] += w * sign * (SMILE_WIDEN * e.smile - 0.9 * e.pucker)
        p[:, 1] += self.brow_weight * BROW_RISE * e.brows_up
        for upper, lower, amount in (
                (lm.LEFT_EYE_UPPER_CONTOUR, lm.LEFT_EYE_LOWER_CONTOUR, e.blink_left),
                (lm.RIGHT_EYE_UPPER_CONTOUR, lm.RIGHT_EYE_LOWER_CONTOUR, e.blink_right)):
            up, low = list(upper), list(lower)
            # Closed lids meet a little above the lower lid line.
            p[up, 1] += amount * (p[low, 1] + 0.05 - p[up, 1])
        # The iris moves as the solver reads it (bridge.solve.geometry): MediaPipe's rises a
        # little as the eye turns sideways.
        seen_pitch = e.gaze_pitch + PITCH_PER_YAW * abs(e.gaze_yaw)
        shift = np.array([EYEBALL_RADIUS_YAW * np.sin(np.radians(e.gaze_yaw)),
                          EYEBALL_RADIUS_PITCH * np.sin(np.radians(seen_pitch)), 0.0])
        p[list(lm.LEFT_IRIS + lm.RIGHT_IRIS)] += shift
        return p

    def landmarks(self, e: Expression, width: int = 640, height: int = 480) -> np.ndarray:
        """Image-space landmarks (as bridge.tracking yields) of the posed face."""
        rot = quat_to_matrix(angles_to_quat(e.yaw, e.pitch, e.roll))
        cam = (self.points(e) @ rot.T) * PIXELS_PER_CM
        image = np.empty_like(cam)
        image[:, 0] = width / 2.0 + cam[:, 0]
        image[:, 1] = height / 2.0 - cam[:, 1]
        image[:, 2] = -cam[:, 2] / lm.FACE_MESH_DEPTH_SCALE  # depth on Face Mesh's scale
        return image.astype(np.float32)


def _pulse(t: float, start: float, length: float) -> float:
    """A smooth 0 -> 1 -> 0 bump over [start, start + length]."""
    u = (t - start) / length
    return float(np.sin(np.pi * u) ** 2) if 0.0 <= u <= 1.0 else 0.0


def expression_at(t: float) -> Expression:
    """The demo's loop: head turns, blinks (and a wink), talking, a smile, raised brows."""
    t = t % LOOP_SECONDS
    blink = max(_pulse(t, s, 0.25) for s in (1.2, 4.6, 8.1, 10.9))
    talk = _pulse(t, 2.0, 2.5) * (0.5 + 0.5 * np.sin(2.0 * np.pi * 3.0 * t) ** 2)
    return Expression(
        yaw=25.0 * np.sin(2.0 * np.pi * t / LOOP_SECONDS),
        pitch=8.0 * np.sin(2.0 * np.pi * 2.0 * t / LOOP_SECONDS),
        roll=6.0 * np.sin(2.0 * np.pi * 3.0 * t / LOOP_SECONDS),
        blink_left=max(blink, _pulse(t, 7.0, 0.6)),
        blink_right=blink,
        jaw=0.7 * talk,
        smile=_pulse(t, 5.0, 2.5),
        pucker=_pulse(t, 9.0, 1.2),
        brows_up=_pulse(t, 6.0, 1.5),
        gaze_yaw=15.0 * np.sin(2.0 * np.pi * 2.0 * t / LOOP_SECONDS),
        gaze_pitch=-8.0 * _pulse(t, 3.0, 2.0),
    )


@lru_cache(maxsize=1)
def _demo_face() -> DemoFace:
    return DemoFace()


def demo_landmarks(t: float, width: int = 640, height: int = 480) -> np.ndarray:
    """Image-space landmarks of the demo face at time t (seconds; loops)."""
    return _demo_face().landmarks(expression_at(t), width, height)
