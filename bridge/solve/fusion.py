"""Fusion: MediaPipe's blendshape scores and our geometric values, channel by channel.

Pure numpy. Which source leads each channel, and why, is in docs/channels.md.
"""

from __future__ import annotations

import math

from bridge.solve.neutral import RestEstimator
import numpy as np

from bridge.state import ARKIT_NAMES

MODES = ("fused", "solver", "model")




def model_vector(scores: dict[str, float]) -> np.ndarray:
    """The model's scores in ARKIT_NAMES order, clipped to [0, 1]; NaN where it gave
    none (tongueOut) or gave something that is not a finite number."""
    get = scores.get
    raw = [get(name, math.nan) for name in ARKIT_NAMES]
    try:
        b = np.array(raw, dtype=np.float64)
    except (TypeError, ValueError):   # not numbers: each one on its own
        b = np.array([float(v) if isinstance(v, (int, float)) else math.nan for v in raw])
    return np.where(np.isfinite(b), np.clip(b, 0.0, 1.0), math.nan)


# The model's scores at rest are this person's too (a resting smile of 0.2, brows
# that read 0.3 lowered): a low quantile of each score, at most MAX_MODEL_REST.
MODEL_REST_QUANTILE = 0.25
MAX_MODEL_REST = 0.35


def rest_estimator() -> RestEstimator:
    n = len(ARKIT_NAMES)
    return RestEstimator(np.zeros(n), MODEL_REST_QUANTILE, 0.0, MAX_MODEL_REST)


def relative(model: np.ndarray, rest: np.ndarray) -> np.ndarray:
    """The model's scores taken from this person's rest: rest reads 0, 1 stays 1."""
    return np.clip((model - rest) / (1.0 - rest), 0.0, 1.0)


# How much of each channel is the model's (relative to this person's rest); the rest
# is the geometric value. docs/channels.md says why, channel by channel. In short:
# where the model is known to be weak (how deep eyes close, lowered gaze vs blink,
# winks, eyeWide, cheekPuff, noseSneer, the jaw sideways / forward, tongueOut) the
# geometry and the lids' timing decide (0), and so do lowered brows, which the model
# barely separates from neutral ones on new faces (ROC AUC 0.62 on the 19 people's
# labelled frames, our brow heights against each person's rest 0.76); smiles, the open
# jaw, the funnel and raised brows are read about equally well by both and best by
# their mean (0.5: on those frames the mean beats either alone); the other mouth
# shapes follow the model (1), which was trained on many faces.
GEOMETRY_LED = (
    "eyeBlinkLeft", "eyeBlinkRight", "eyeWideLeft", "eyeWideRight",
    "eyeLookDownLeft", "eyeLookInLeft", "eyeLookOutLeft", "eyeLookUpLeft",
    "eyeLookDownRight", "eyeLookInRight", "eyeLookOutRight", "eyeLookUpRight",
    "jawForward", "jawLeft", "jawRight", "mouthLeft", "mouthRight",
    "cheekPuff", "noseSneerLeft", "noseSneerRight", "tongueOut",
    "browDownLeft", "browDownRight",
)
BLENDED = ("jawOpen", "mouthSmileLeft", "mouthSmileRight", "mouthFunnel",
           "browInnerUp", "browOuterUpLeft", "browOuterUpRight")
MODEL_WEIGHT = np.array([0.0 if n in GEOMETRY_LED else 0.5 if n in BLENDED else 1.0 for n in ARKIT_NAMES])


def fuse(geometric: np.ndarray, model: np.ndarray, model_rest: np.ndarray) -> np.ndarray:
    """Fused ARKit values from the geometric ones and the model's raw scores (NaN
    where it has none: those channels stay geometric)."""
    m = relative(model, model_rest)
    known = np.isfinite(m)
    w = np.where(known, MODEL_WEIGHT, 0.0)
    return w * np.where(known, m, 0.0) + (1.0 - w) * geometric
