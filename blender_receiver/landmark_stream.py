"""The `landmarks` stream: the tracker's 478 face landmarks, in chunks. No bpy.

Message (facemocap-osc's `landmarks` preset): `/facemocap/landmarks` with
`i frame`, `f time`, `i first`, `i count`, `b blob`: `count` landmarks from index
`first`, each three float32 little-endian (x, y, z), all on the image width's
scale: x / width and y / width from the image's top-left corner (y down), z / width
(negative towards the camera). A frame is complete when all 478 have arrived.
Every argument is checked; anything wrong is dropped and counted, never raised.
"""

from __future__ import annotations

import collections
import threading
import time
from dataclasses import dataclass

import numpy as np

ADDRESS = "/facemocap/landmarks"
COUNT = 478
_FLOATS = 3
_BYTES = 4 * _FLOATS
MAILBOX_FRAMES = 600


@dataclass
class LandmarkFrame:
    index: int
    time: float
    points: np.ndarray  # (478, 3) float32, the message's coordinates
    received: float     # time.monotonic() when complete


class LandmarkStream:
    """Route handler for ADDRESS: assembles chunks into frames; `take()` drains them."""

    def __init__(self, stats):
        self.stats = stats  # a vmc_stream.StreamStats: bad messages are counted there
        self._index: int | None = None
        self._time = 0.0
        self._points = np.zeros((COUNT, _FLOATS), np.float32)
        self._seen = np.zeros(COUNT, bool)
        self._mailbox: collections.deque[LandmarkFrame] = collections.deque()
        self._lock = threading.Lock()
        self.overflowed = 0
        self.latest: np.ndarray | None = None  # the newest complete frame's points

    def __call__(self, params: list, sender: str) -> None:
        chunk = _checked(params)
        if chunk is None:
            self.stats.bad_messages += 1
            return
        index, t, first, points = chunk
        if index != self._index:  # a new frame; an unfinished one is dropped
            self._index, self._time = index, t
            self._seen[:] = False
        self._points[first:first + len(points)] = points
        self._seen[first:first + len(points)] = True
        if self._seen.all():
            frame = LandmarkFrame(index, t, self._points.copy(), time.monotonic())
            self.latest = frame.points
            self._deliver(frame)
            self._seen[:] = False

    def take(self) -> list[LandmarkFrame]:
        with self._lock:
            frames = list(self._mailbox)
            self._mailbox.clear()
        return frames

    def _deliver(self, frame: LandmarkFrame) -> None:
        with self._lock:
            if len(self._mailbox) >= MAILBOX_FRAMES:
                self._mailbox.popleft()
                self.overflowed += 1
            self._mailbox.append(frame)


def _checked(params: list):
    """(frame, time, first, points) from a message's arguments, or None if malformed."""
    if len(params) < 5:
        return None
    index, t, first, count, blob = params[:5]
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (index, first, count)):
        return None
    if not isinstance(t, (int, float)) or isinstance(t, bool) or not np.isfinite(t):
        return None
    if not isinstance(blob, (bytes, bytearray)) or not (0 <= first and 0 < count and first + count <= COUNT):
        return None
    if len(blob) != count * _BYTES:
        return None
    points = np.frombuffer(bytes(blob), dtype="<f4").reshape(count, _FLOATS)
    if not np.isfinite(points).all() or np.abs(points).max() > 100.0:  # image widths: a sane bound
        return None
    return index, float(t), first, points
