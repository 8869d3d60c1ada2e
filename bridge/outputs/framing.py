"""OSC framing for plain-OSC presets: fixed message lists patched in place, and the raw
landmark chunks. Like bridge.vmc, python-osc builds every message once."""

from __future__ import annotations

import math
import struct

import numpy as np
from pythonosc.osc_message_builder import OscMessageBuilder

from ..vmc import BUNDLE_HEADER, split_datagrams

__all__ = ["LandmarkChunks", "OscFrame", "split_datagrams"]

LANDMARK_FLOATS = 3
_BUNDLE_ITEM = 4                  # the int32 size prefix of each bundle element
_ARG = 4                          # bytes of an OSC int32 or float32


def _message(address: str, args: list[tuple[str, object]]):
    builder = OscMessageBuilder(address)
    for kind, value in args:
        builder.add_arg(value, kind)
    return builder.build()


class OscFrame:
    """A fixed list of messages whose arguments are int32 (`i`), float32 (`f`) or the
    bools `T` / `F` (fixed here: they have no bytes to patch): python-osc builds them
    once, pack() patches the values into a copy."""

    def __init__(self, messages: list[tuple[str, str]], *, bundle: bool, max_packet: int):
        """messages: (address, type tags), e.g. ("/face/head/rotation", "fff")."""
        placeholder = {"i": 0, "f": 0.0, "T": True, "F": False}
        built = [_message(a, [(t, placeholder[t]) for t in tags]) for a, tags in messages]
        self.groups = split_datagrams([m.size for m in built], bundle=bundle, max_packet=max_packet)
        chunks, self.spans, f_offsets, i_offsets, pos = [], [], [], [], 0
        for group in self.groups:
            start = pos
            if bundle:
                chunks.append(BUNDLE_HEADER)
                pos += len(BUNDLE_HEADER)
            for i in group:
                msg, tags = built[i], messages[i][1]
                if bundle:
                    chunks.append(struct.pack(">i", msg.size))
                    pos += _BUNDLE_ITEM
                chunks.append(msg.dgram)
                pos += msg.size
                sized = tags.replace("T", "").replace("F", "")   # bools take no bytes
                for k, tag in enumerate(sized):   # the arguments are the message's last bytes
                    (f_offsets if tag == "f" else i_offsets).append(pos - _ARG * (len(sized) - k))
            self.spans.append((start, pos))
        self.template = np.frombuffer(b"".join(chunks), dtype=np.uint8).copy()
        self.float_count, self.int_count = len(f_offsets), len(i_offsets)
        self._f_index = (np.asarray(f_offsets, dtype=np.intp)[:, None] + np.arange(_ARG)).ravel()
        self._i_index = (np.asarray(i_offsets, dtype=np.intp)[:, None] + np.arange(_ARG)).ravel()

    def pack(self, floats: np.ndarray, ints: np.ndarray) -> list[bytes]:
        """floats / ints: the `f` / `i` arguments in message order."""
        frame = self.template.copy()
        if self.float_count:
            frame[self._f_index] = np.asarray(floats, dtype=float).astype(">f4").view(np.uint8)
        if self.int_count:
            frame[self._i_index] = np.asarray(ints, dtype=np.int64).astype(">i4").view(np.uint8)
        data = frame.tobytes()
        return [data[start:end] for start, end in self.spans]


class LandmarkChunks:
    """The raw landmarks as `address i frame f time i first i count b blob`, `chunk`
    landmarks per message, one plain message per datagram. The blob is count x (x, y, z)
    float32 little-endian in MediaPipe's normalised image coordinates: image-space
    points divided by the image width on all three axes, so the face keeps its
    proportions whatever the image's aspect ratio (x, y from the top-left corner, y
    down; z negative towards the camera)."""

    def __init__(self, address: str, chunk: int):
        self.address, self.chunk = address, chunk
        self._layouts: dict[int, list[tuple[bytes, int, int, bytes]]] = {}

    def message_size(self, count: int) -> int:
        return len(self._layout(count)[0][0]) + 4 * _ARG + _ARG + count * LANDMARK_FLOATS * 4 if count else 0

    def _layout(self, total: int):
        """Per chunk: (bytes before the frame index, first, count, the fixed first/count/blob-size bytes)."""
        if total not in self._layouts:
            layout = []
            for first in range(0, total, self.chunk):
                count = min(self.chunk, total - first)
                blob = count * LANDMARK_FLOATS * 4
                msg = _message(self.address, [("i", 0), ("f", 0.0), ("i", first), ("i", count), ("b", bytes(blob))])
                head = msg.dgram[:msg.size - (4 * _ARG + _ARG + blob)]   # address and type tags
                layout.append((head, first, count, struct.pack(">iii", first, count, blob)))
            self._layouts[total] = layout
        return self._layouts[total]

    def encode(self, landmarks, image_size, *, frame_index: int, time: float) -> list[bytes]:
        if landmarks is None or image_size is None:
            return []
        width, height = image_size
        if not (width and height and width > 0 and height > 0):
            return []
        points = np.asarray(landmarks, dtype=np.float64)
        if points.ndim != 2 or points.shape[1] != LANDMARK_FLOATS or not len(points):
            return []
        points = points / float(width)
        if not np.isfinite(points).all():
            return []   # NaN and inf never leave the process; a frame with them sends no landmarks
        blob = points.astype("<f4").tobytes()
        stamp = struct.pack(">if", int(frame_index) % 2**31, float(time) if math.isfinite(time) else 0.0)
        step = LANDMARK_FLOATS * 4
        return [head + stamp + fixed + blob[first * step:(first + count) * step]
                for head, first, count, fixed in self._layout(len(points))]

