"""Lowered eyes vs closed eyes, from how the lids got there.

In one frame the landmarks (and MediaPipe's own blendshape scores: 0.6-0.75 for
both) of lids lowered to follow a downward gaze and of closed lids are the same.
How the lids got there differs: a blink or a deliberate closure shuts both eyes
within a frame or two; looking down lowers the lids over a tenth of a second or
more. So an eye whose lids took longer than SLOW_CLOSING_SECONDS from open to shut,
while the other eye was not open either, is "lowered"; and since both eyes look
down together, the other eye is too while it stays shut. An eye already shut when
tracking starts (or resumes after a gap) has no history: it counts as lowered, as
a tracker is far likelier to start on someone looking down than inside a blink,
until it is seen open again.

Openness is taken as a fraction of this person's open eye (bridge.solve.geometry).
"""

from __future__ import annotations

from bridge.solve.geometry import EYE_CLOSED_RATIO, EYE_OPEN_RATIO

OPEN_RATIO = EYE_OPEN_RATIO

SLOW_CLOSING_SECONDS = 0.12
GAP_SECONDS = 0.5    # a longer gap between frames (face lost) starts afresh
# openness / rest at or above this: open (where eyeBlink starts to rise from 0)
# At or below this: shut (a blink or a lowered gaze); where eyeBlink passes 0.5, so
# an eye that reads closed has been judged lowered or not.
SHUT_RATIO = (EYE_OPEN_RATIO + EYE_CLOSED_RATIO) / 2.0


class LidWatch:
    """Per eye: open, closed (a blink) or lowered (looking down)."""

    def __init__(self):
        self._last_time: float | None = None
        self._last_open: list[float | None] = [None, None]
        self._state = ["unknown", "unknown"]

    def update(self, time: float, ratios: tuple[float, float]) -> tuple[bool, bool]:
        """`ratios`: (left, right) openness / rest. Returns (left, right) lowered."""
        if self._last_time is None or not 0 < time - self._last_time < GAP_SECONDS:
            self.__init__()
        self._last_time = time
        for eye, other in ((0, 1), (1, 0)):
            if ratios[eye] >= OPEN_RATIO:
                self._last_open[eye], self._state[eye] = time, "open"
            elif ratios[eye] <= SHUT_RATIO and self._state[eye] == "unknown":
                self._state[eye] = "lowered"
            elif ratios[eye] <= SHUT_RATIO and self._state[eye] == "open":
                since_open = self._last_open[eye]
                slow = since_open is not None and time - since_open > SLOW_CLOSING_SECONDS
                self._state[eye] = "lowered" if slow and ratios[other] < OPEN_RATIO else "closed"
        for eye, other in ((0, 1), (1, 0)):
            if self._state[eye] == "closed" and self._state[other] == "lowered":
                self._state[eye] = "lowered"
        return self._state[0] == "lowered", self._state[1] == "lowered"
