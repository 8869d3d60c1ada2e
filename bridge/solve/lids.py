"""Lowered eyes vs closed eyes, from how the lids got there.

In one frame the landmarks (and MediaPipe's own blendshape scores: 0.6-0.75 for
both) of lids lowered to follow a downward gaze and of closed lids are the same.
How the lids got there differs: a blink or a deliberate closure shuts both eyes
within a frame or two; looking down lowers the lids over a tenth of a second or
more. So an eye whose lids took longer than SLOW_CLOSING_SECONDS from open to shut,
while the other eye was not open either, is "lowered". Blinks shut both eyes, so
one eye shutting fast makes a shut eye beside it closed too. A lowered eye stays
lowered until it opens; a closed one that half reopens is judged afresh when it
shuts again (from when it was last open).

An eye already shut when tracking starts (or resumes after a gap) has no history:
it counts as lowered, as a tracker is far likelier to start on someone looking down
than inside a blink, until it opens or its lids go DEEPER_RATIO further.

Openness is taken as a fraction of this person's open eye (bridge.solve.geometry).
"""

from __future__ import annotations

from bridge.solve.geometry import EYE_OPEN_RATIO, EYE_SHUT_RATIO

SLOW_CLOSING_SECONDS = 0.14   # blinks shut within 3 frames at 25 fps (0.12 s); liveportrait_d3's downward looks take 5 (0.17 s)
TIME_EPSILON = 1e-6  # frame times rounded or summed from float steps judge the same
GAP_SECONDS = 0.5    # a longer gap between frames (face lost) starts afresh
# openness / rest at or above this: open (where eyeBlink starts to rise from 0)
OPEN_RATIO = EYE_OPEN_RATIO
# At or below this: shut (a blink or a lowered gaze); where eyeBlink passes 0.5, so
# an eye that reads closed has been judged lowered or not.
SHUT_RATIO = EYE_SHUT_RATIO
# An eye found shut when tracking starts counts as lowered until it opens, unless
# its lids then go this much further (as a fraction of the open eye): lowered lids
# rest on the eyeball, lids that keep closing are a closure.
DEEPER_RATIO = 0.25


class LidWatch:
    """Per eye: open, between, closed (a blink) or lowered (looking down)."""

    def __init__(self):
        self._last_time: float | None = None
        self._last_open: list[float | None] = [None, None]
        self._state = ["unknown", "unknown"]
        self._start_ratio: list[float | None] = [None, None]   # lowered at the start: how shut

    def update(self, time: float, ratios: tuple[float, float]) -> tuple[bool, bool]:
        """`ratios`: (left, right) openness / rest. Returns (left, right) lowered."""
        if self._last_time is None or not 0 < time - self._last_time < GAP_SECONDS:
            self.__init__()
        self._last_time = time
        blinked = False   # an eye shut fast this frame
        for eye, other in ((0, 1), (1, 0)):
            ratio, state = ratios[eye], self._state[eye]
            if ratio >= OPEN_RATIO:
                self._last_open[eye], self._state[eye] = time, "open"
                self._start_ratio[eye] = None
            elif ratio > SHUT_RATIO:
                if state in ("open", "closed"):
                    self._state[eye] = "between"   # a reopening eye may shut again: judged afresh
            elif state in ("open", "between", "unknown"):
                since_open = self._last_open[eye]
                if since_open is None:
                    self._state[eye], self._start_ratio[eye] = "lowered", ratio
                elif time - since_open > SLOW_CLOSING_SECONDS + TIME_EPSILON and ratios[other] < OPEN_RATIO:
                    self._state[eye] = "lowered"
                else:
                    self._state[eye], blinked = "closed", True
            elif state == "lowered" and self._start_ratio[eye] is not None \
                    and ratio < self._start_ratio[eye] - DEEPER_RATIO:
                self._state[eye], self._start_ratio[eye] = "closed", None
        if blinked:
            # Blinks shut both eyes: one eye shutting fast makes a shut eye beside it
            # (lowered slowly from a squint or a wink, say) closed too.
            self._state = ["closed" if st == "lowered" else st for st in self._state]
            self._start_ratio = [None, None]
        return self._state[0] == "lowered", self._state[1] == "lowered"
