"""Shaping the solved values before they go out: neutral calibration (see
bridge/calibrate.py), smoothing, face loss, mirroring.

Photos (``ShapeOptions(still=True)``: an image folder whose files are each their own
photo) get only the calibration and the mirror: no filter, no face-loss hold or
easing, nothing carried from one frame to the next, so each photo's output is what
that photo alone gives; a photo without a face is the neutral state.

The One Euro filter (Casiez et al. 2012) runs on every channel at once. Its
cutoff rises with speed, so a still face is smoothed hard (no jitter) while a
blink or a head turn gets through with little lag. Channels have different units,
so each is divided by a unit scale first and min_cutoff / beta mean the same for
all: 1 unit = the full range of a blendshape, 45 degrees of rotation, 10 cm of
head movement.

Nothing non-finite is ever stored: a NaN or inf value from a backend is replaced by
that channel's last good value, and a frame without a finite time counts as "time
did not advance", so one bad frame can't poison the filter for the rest of a run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from bridge.calibrate import Calibrator
from bridge.state import FaceState

DEFAULT_MIN_CUTOFF = 0.8   # Hz: smoothing of a still face (lower = smoother, more lag)
DEFAULT_BETA = 1.75        # how fast the cutoff rises with speed (higher = less lag)
DERIVATIVE_CUTOFF = 1.0    # Hz, for the speed estimate
HOLD_SECONDS = 0.3         # face lost: keep the last values this long ...
EASE_SECONDS = 0.5         # ... then ease to neutral over this long

_SLICES = FaceState._SLICES
UNIT_SCALE = np.ones(FaceState.SIZE)
UNIT_SCALE[_SLICES["head_angles"]] = 45.0
UNIT_SCALE[_SLICES["eye_angles"]] = 45.0
UNIT_SCALE[_SLICES["head_position"]] = 0.1


def _alpha(cutoff, dt: float):
    tau = 1.0 / (2.0 * math.pi * cutoff)
    return 1.0 / (1.0 + tau / dt)


class OneEuroFilter:
    """A One Euro filter over a vector of channels (all filtered at once)."""

    def __init__(self, min_cutoff: float = DEFAULT_MIN_CUTOFF, beta: float = DEFAULT_BETA,
                 d_cutoff: float = DERIVATIVE_CUTOFF, scale: np.ndarray | float = 1.0):
        if min_cutoff <= 0 or beta < 0 or d_cutoff <= 0:
            raise ValueError("min_cutoff and d_cutoff must be > 0 and beta >= 0")
        self.min_cutoff, self.beta, self.d_cutoff = min_cutoff, beta, d_cutoff
        self.scale = scale
        self._t: float | None = None
        self._x: np.ndarray | None = None
        self._dx: np.ndarray | None = None

    def reset(self, t: float, value: np.ndarray) -> None:
        """Continue from value at time t, at rest (used after the face was lost)."""
        x = np.asarray(value, dtype=np.float64) / self.scale
        if not np.isfinite(x).all():
            x = np.where(np.isfinite(x), x, 0.0 if self._x is None else self._x)
        self._t, self._x = t if math.isfinite(t) else (self._t or 0.0), x
        self._dx = np.zeros_like(self._x)

    def __call__(self, t: float, value: np.ndarray) -> np.ndarray:
        if self._t is None:
            self.reset(t, value)
            return self._x * self.scale
        # Time did not advance (or is not a number): keep the output rather than divide by zero.
        if not t > self._t or not math.isfinite(t):
            return self._x * self.scale
        x = np.asarray(value, dtype=np.float64) / self.scale
        if not np.isfinite(x).all():   # a NaN or inf: that channel holds its last value
            x = np.where(np.isfinite(x), x, self._x)
        dt = t - self._t
        dx = (x - self._x) / dt
        self._dx = self._dx + _alpha(self.d_cutoff, dt) * (dx - self._dx)
        cutoff = self.min_cutoff + self.beta * np.abs(self._dx)
        self._x = self._x + _alpha(cutoff, dt) * (x - self._x)
        self._t = t
        return self._x * self.scale


@dataclass
class ShapeOptions:
    min_cutoff: float = DEFAULT_MIN_CUTOFF
    beta: float = DEFAULT_BETA
    mirror: bool = False
    hold_seconds: float = HOLD_SECONDS
    ease_seconds: float = EASE_SECONDS
    adaptive_range: bool = False   # per-channel running-max scaling (bridge.calibrate.AdaptiveRange)
    still: bool = False            # every frame is its own photo: no filter, no face-loss handling


class Shaper:
    """Solved state (or None when no face was seen) -> (state to send, tracking flag).

    `calibrator` holds the neutral face and runs captures (set its neutral or call
    its start_capture()); it comes first, so the filter smooths the switch from
    uncalibrated to calibrated values instead of passing on a jump.
    """

    def __init__(self, options: ShapeOptions = ShapeOptions()):
        if options.still and options.adaptive_range:
            # A running maximum is history: photos are each their own.
            raise ValueError("adaptive range needs a sequence of frames, not independent photos")
        self.options = options
        self.calibrator = Calibrator(adaptive_range=options.adaptive_range)
        self.filter = OneEuroFilter(options.min_cutoff, options.beta, scale=UNIT_SCALE)
        self._last: np.ndarray | None = None   # the last filtered vector with a face
        self._lost_since: float | None = None
        self._time: float | None = None        # the last finite frame time
        self._last_input: np.ndarray | None = None   # the last state given, all finite

    def update(self, t: float, state: FaceState | None) -> tuple[FaceState, bool]:
        t = self._finite_time(t)
        vector = None
        if state is not None:
            state, vector = self._finite_state(state)
        # Every frame, face or not: a capture window counts time, not only faces.
        given, state = state, self.calibrator.process(t, state)
        if state is not None:
            vector = vector if state is given else state.vector()
            if self.options.still:
                out, tracking = vector, True
            else:
                self._lost_since = None
                self._last = self.filter(t, vector)
                out, tracking = self._last, True
        elif self.options.still:
            out, tracking = FaceState.neutral().vector(), False
        else:
            out, tracking = self._lost(t), False
        shaped = FaceState.from_vector(out).sanitized()
        return (shaped.mirrored() if self.options.mirror else shaped), tracking

    def _finite_time(self, t: float) -> float:
        """t, or the last finite time when t is NaN or inf (as if time stood still)."""
        t = float(t)
        if math.isfinite(t):
            self._time = t
            return t
        return self._time if self._time is not None else 0.0

    def _finite_state(self, state: FaceState) -> tuple[FaceState, np.ndarray]:
        """The state, and its vector, with any NaN / inf replaced by that channel's last
        given value (neutral before there is one), before the calibrator or the filter sees it."""
        v = state.vector()
        finite = np.isfinite(v)
        if not finite.all():
            last = self._last_input if self._last_input is not None else FaceState.neutral().vector()
            v = np.where(finite, v, last)
            state = FaceState.from_vector(v)
        if not self.options.still:   # a photo's gaps are filled from neutral, never from another photo
            self._last_input = v
        return state, v

    def _lost(self, t: float) -> np.ndarray:
        if self._last is None:
            return FaceState.neutral().vector()
        if self._lost_since is None:
            self._lost_since = t
        neutral = FaceState.neutral(head_position=self._last[_SLICES["head_position"]]).vector()
        ease = (t - self._lost_since - self.options.hold_seconds) / max(self.options.ease_seconds, 1e-9)
        k = min(max(ease, 0.0), 1.0)
        k = k * k * (3.0 - 2.0 * k)
        out = self._last + k * (neutral - self._last)
        # When the face comes back the filter carries on from what was last sent.
        self.filter.reset(t, out)
        return out
