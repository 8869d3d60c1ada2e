"""Named MediaPipe Face Mesh landmark indices (478-point topology) and the neutral face.

Every index the solver and the demo face use is named here once. "Left" and
"right" are the subject's own sides: the subject's right eye (33-133) appears on
the left of an unmirrored camera image.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

COUNT = 478

# Face Mesh reports depth (z) on a larger scale than x and y: relative to MediaPipe's
# canonical face, its z spans about 1.4x what x does. Found with bench/accuracy.py
# by scaling z before the rigid fit until head yaw and pitch follow the Face
# Landmarker's transformation matrix with slope 1 (0.7 gives 0.98 / 1.07 on the four
# shared clips of three people; 1.0 gave 1.18 / 1.26). The solver multiplies z by
# this; the demo face divides by it, so it looks like Face Mesh output.
FACE_MESH_DEPTH_SCALE = 0.7

# Eyes: corners, and lid points paired top/bottom (same order in both tuples).
RIGHT_EYE_OUTER, RIGHT_EYE_INNER = 33, 133
LEFT_EYE_OUTER, LEFT_EYE_INNER = 263, 362
RIGHT_EYE_UPPER_LID = (160, 159, 158)
RIGHT_EYE_LOWER_LID = (144, 145, 153)
LEFT_EYE_UPPER_LID = (387, 386, 385)
LEFT_EYE_LOWER_LID = (373, 374, 380)
# Whole lid contours, outer corner to inner corner (the demo face closes these).
RIGHT_EYE_UPPER_CONTOUR = (246, 161, 160, 159, 158, 157, 173)
RIGHT_EYE_LOWER_CONTOUR = (7, 163, 144, 145, 153, 154, 155)
LEFT_EYE_UPPER_CONTOUR = (466, 388, 387, 386, 385, 384, 398)
LEFT_EYE_LOWER_CONTOUR = (249, 390, 373, 374, 380, 381, 382)

# Irises (refine_landmarks): centre, then ring points at +X, +Y, -X, -Y.
RIGHT_IRIS = (468, 469, 470, 471, 472)
LEFT_IRIS = (473, 474, 475, 476, 477)

# Brows: inner, middle and outer points on the upper brow edge.
RIGHT_BROW_INNER = (107, 55)
RIGHT_BROW_MIDDLE = (105, 52)
RIGHT_BROW_OUTER = (70, 46)
LEFT_BROW_INNER = (336, 285)
LEFT_BROW_MIDDLE = (334, 282)
LEFT_BROW_OUTER = (300, 276)

# Mouth.
MOUTH_RIGHT_CORNER, MOUTH_LEFT_CORNER = 61, 291
UPPER_LIP_TOP, UPPER_LIP_INNER = 0, 13
LOWER_LIP_INNER, LOWER_LIP_BOTTOM = 14, 17
# Inner lip points paired top/bottom: right side, centre, left side.
INNER_LIP_UPPER = (82, 13, 312)
INNER_LIP_LOWER = (87, 14, 317)
# Whole inner lip contours, right corner to left corner (the demo face moves these).
INNER_LIP_UPPER_CONTOUR = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308)
INNER_LIP_LOWER_CONTOUR = (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308)
# Upper lip outer points left and right of centre (they rise with mouthUpperUp).
UPPER_LIP_RIGHT, UPPER_LIP_LEFT = 40, 270
LOWER_LIP_RIGHT, LOWER_LIP_LEFT = 91, 321

# Nose, chin, forehead.
NOSE_TIP = 1
NOSE_BASE = 2
NOSE_BRIDGE = 168
NOSTRIL_RIGHT, NOSTRIL_LEFT = 98, 327
CHIN = 152
FOREHEAD = 10
CHEEK_RIGHT, CHEEK_LEFT = 205, 425

_DATA = Path(__file__).resolve().parent / "data" / "canonical_face.npz"


@lru_cache(maxsize=1)
def _canonical() -> tuple[np.ndarray, np.ndarray]:
    with np.load(_DATA) as data:
        points = data["points"].astype(np.float64)
        weights = data["procrustes_weights"].astype(np.float64)
    points.setflags(write=False)
    weights.setflags(write=False)
    return points, weights


def canonical_face() -> np.ndarray:
    """MediaPipe's canonical face, (478, 3) centimetres in the subject frame
    (X own left, Y up, Z towards the camera), irises added (tools/extract_canonical_face.py)."""
    return _canonical()[0]


def procrustes_weights() -> np.ndarray:
    """(478,) weights of the stable points MediaPipe uses for its rigid head fit (0 elsewhere)."""
    return _canonical()[1]
