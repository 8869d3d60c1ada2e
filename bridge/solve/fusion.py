"""Fusion: MediaPipe's blendshape scores and our geometric values, channel by channel.

Pure numpy. Which source leads each channel, and why, is in docs/channels.md.
"""

from __future__ import annotations

import math

import numpy as np

from bridge.state import ARKIT_INDEX, ARKIT_NAMES

MODES = ("fused", "solver", "model")


def model_vector(scores: dict[str, float] | None, fallback: np.ndarray) -> np.ndarray:
    """The model's scores in ARKIT_NAMES order; a missing or non-finite score keeps `fallback`'s."""
    b = np.array(fallback, dtype=np.float64)
    if scores:
        for name, value in scores.items():
            i = ARKIT_INDEX.get(name)
            if i is not None and isinstance(value, (int, float)) and math.isfinite(value):
                b[i] = value
    return np.clip(b, 0.0, 1.0)
