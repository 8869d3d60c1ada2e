"""This person's rest values, in measurement space, estimated from the frames.

A face is neutral most of the time, so each measure's rest is a low-to-middle
quantile of its recent history (a blink, a laugh or a sentence pulls a measure one
way for a moment; the quantile ignores it), not its mean. Per measure:

* samples are taken every SAMPLE_SECONDS of tracked face into a ring of the last
  WINDOW_SECONDS, so a long smile has to fill most of a minute before it moves the
  rest, and a person who changes (a new performer) is learned within a minute;
* the quantile sits where the measure's expressions are rare: low for ones that
  only grow in expressions (a lip gap, a chin drop, the model's scores), the middle
  for ones that move both ways (brows, gaze), high for eye openness (blinks and
  downward looks only close it);
* until there are samples the rest is the prior (the population's), and the
  estimate takes over as they come: weight n / (n + PRIOR_SAMPLES), i.e. half after
  0.2 s of face, 83 % after 1 s, 91 % after 2 s (SETTLED_SECONDS: from then on a
  still face's values move by less than jitter), 98 % after 10 s;
* each rest is held within bounds around the prior, so a person who starts with an
  unusual face (eyes lowered, mouth open) can't be taken as the rest beyond what
  faces differ by.

Pure numpy; no I/O.
"""

from __future__ import annotations

import numpy as np

SAMPLE_SECONDS = 0.1
WINDOW_SECONDS = 60.0
PRIOR_SAMPLES = 2
EARLY_SAMPLES = 50            # the first 5 s re-estimate at every sample ...
REFRESH_SAMPLES = 10          # ... later ones once a second (a sort of the window)
# Frame times are sums of float steps (3 * (1/30) < 0.1) or rounded ones (a take's):
# a sample due at 0.1 s is taken at 0.0999999 too, so both give the same samples.
TIME_EPSILON = 1e-6
SETTLED_SECONDS = 2.0          # weight 0.91: what "settled" means


class RestEstimator:
    """Rest values of a vector of measures: `prior`, then this person's."""

    def __init__(self, prior, quantile, low, high):
        """Per measure: the prior rest, the quantile, and the bounds of the estimate."""
        self.prior = np.asarray(prior, dtype=np.float64)
        self.quantile = np.broadcast_to(np.asarray(quantile, dtype=np.float64), self.prior.shape)
        self.low = np.broadcast_to(np.asarray(low, dtype=np.float64), self.prior.shape)
        self.high = np.broadcast_to(np.asarray(high, dtype=np.float64), self.prior.shape)
        self._ring = np.zeros((int(round(WINDOW_SECONDS / SAMPLE_SECONDS)), self.prior.size))
        self.samples = 0              # taken so far (the ring keeps the last len(ring))
        self._next_time: float | None = None
        self.rest = np.clip(self.prior, self.low, self.high)

    @property
    def settled(self) -> bool:
        return self.samples * SAMPLE_SECONDS >= SETTLED_SECONDS

    def due(self, time: float) -> bool:
        """Whether a frame at `time` would be sampled (callers build a sample only then)."""
        return (self._next_time is None or time >= self._next_time - TIME_EPSILON
                or time < self._next_time - SAMPLE_SECONDS)

    def update(self, time: float, values) -> None:
        """One frame's measures at capture time `time` (seconds)."""
        if not self.due(time):
            return
        if self._next_time is not None and time < self._next_time - SAMPLE_SECONDS:
            # Time went backwards (a video looped, a new take): start this person afresh.
            self.__init__(self.prior, self.quantile, self.low, self.high)
        v = np.asarray(values, dtype=np.float64)   # NaN: that measure is not sampled this time
        self._ring[self.samples % len(self._ring)] = v
        self.samples += 1
        self._next_time = time + SAMPLE_SECONDS
        if self.samples <= EARLY_SAMPLES or self.samples % REFRESH_SAMPLES == 0:
            self._estimate()

    def _estimate(self) -> None:
        n = min(self.samples, len(self._ring))
        ordered = np.sort(self._ring[:n], axis=0)    # NaN sorts last
        count = np.isfinite(ordered).sum(axis=0)
        rank = np.rint(self.quantile * np.maximum(count - 1, 0)).astype(int)
        estimate = np.where(count > 0, ordered[rank, np.arange(ordered.shape[1])], self.prior)
        weight = count / (count + PRIOR_SAMPLES)
        self.rest = np.clip(self.prior + weight * (estimate - self.prior), self.low, self.high)
