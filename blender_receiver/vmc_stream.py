"""VMC datagrams in, complete frames out. Plain Python: no bpy, no sockets.

python-osc decodes the datagrams; this module checks every argument before it is
used (types, counts, finite numbers, printable names of sane length), groups the
messages of one batch, and emits a `VmcFrame` at each `/VMC/Ext/Blend/Apply`, the
VMC marker for "the batch is complete". Anything wrong is dropped and counted,
never raised: this runs inside Blender.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

from pythonosc import osc_packet

# Blender names (shape keys, bones) are at most 63 bytes; VMC names are short too.
MAX_NAME_LENGTH = 63
# Bounds on what a hostile or broken sender can make us hold.
MAX_BLENDS_PER_FRAME = 1024
MAX_BONES = 128

Quaternion = tuple[float, float, float, float]  # x, y, z, w in VMC's (Unity) axes
Handler = Callable[[list, str], None]


@dataclass
class VmcFrame:
    """One complete batch: the values to apply together."""

    blends: dict[str, float]  # stream name -> value, this batch only
    bones: dict[str, Quaternion]  # HumanBodyBones name -> latest local rotation
    root: tuple[tuple[float, float, float], Quaternion] | None
    time: float | None  # /VMC/Ext/T of this batch (the sender's clock)
    tracking: bool | None  # /VMC/Ext/OK tracking status, when the sender gives it
    sender: str
    received: float  # time.monotonic() when the batch completed


@dataclass
class StreamStats:
    datagrams: int = 0
    frames: int = 0
    malformed: int = 0  # datagrams that are not OSC at all
    bad_messages: int = 0  # known address, wrong / too few / non-finite arguments
    bad_names: int = 0  # names too long, empty or unprintable
    overflow: int = 0  # names beyond the per-frame / per-stream bounds
    handler_errors: int = 0  # exceptions from routed handlers

    @property
    def dropped(self) -> int:
        return self.malformed + self.bad_messages + self.bad_names + self.overflow


def valid_name(name) -> bool:
    return (
        isinstance(name, str)
        and 0 < len(name) <= MAX_NAME_LENGTH
        and name.isprintable()
    )


def _number(value) -> float | None:
    """A finite float from an OSC int/float argument, else None (bools are not numbers)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _numbers(params: list, start: int, count: int) -> list[float] | None:
    if len(params) < start + count:
        return None
    values = [_number(v) for v in params[start:start + count]]
    return None if any(v is None for v in values) else values


def _unit_quaternion(values: list[float]) -> Quaternion | None:
    norm = math.sqrt(sum(v * v for v in values))
    if norm < 1e-6:
        return None
    x, y, z, w = (v / norm for v in values)
    return (x, y, z, w)


@dataclass
class _Batch:
    blends: dict[str, float] = field(default_factory=dict)
    time: float | None = None


class VmcStream:
    """Feed it datagrams; complete frames go to `on_frame`.

    Extra addresses (e.g. a landmark stream) can be routed with `route()`; their
    handlers get the message arguments and the sender and run on the receiving
    thread, so they must not touch Blender data either.
    """

    def __init__(self, on_frame: Callable[[VmcFrame], None]):
        self.on_frame = on_frame
        self.stats = StreamStats()
        self.last_sender = ""
        self._batch = _Batch()
        self._bones: dict[str, Quaternion] = {}
        self._root = None
        self._tracking: bool | None = None
        self._routes: dict[str, Handler] = {
            "/VMC/Ext/Blend/Val": self._blend_value,
            "/VMC/Ext/Blend/Apply": self._apply,
            "/VMC/Ext/Bone/Pos": self._bone,
            "/VMC/Ext/Root/Pos": self._root_pose,
            "/VMC/Ext/OK": self._ok,
            "/VMC/Ext/T": self._time,
        }

    def route(self, address: str, handler: Handler) -> None:
        self._routes[address] = handler

    def feed(self, datagram: bytes, sender: str) -> None:
        self.stats.datagrams += 1
        try:
            messages = [timed.message for timed in osc_packet.OscPacket(datagram).messages]
        except Exception:  # python-osc raises ParseError, and worse on some garbage
            self.stats.malformed += 1
            return
        self.last_sender = sender
        for message in messages:
            handler = self._routes.get(message.address)
            if handler is None:
                continue  # unknown addresses are ignored, as the VMC spec asks
            try:
                handler(list(message.params), sender)
            except Exception:
                self.stats.handler_errors += 1

    # --- VMC messages -------------------------------------------------------

    def _blend_value(self, params: list, sender: str) -> None:
        if len(params) < 2 or not isinstance(params[0], str):
            self.stats.bad_messages += 1
            return
        name, value = params[0], _number(params[1])
        if not valid_name(name):
            self.stats.bad_names += 1
        elif value is None:
            self.stats.bad_messages += 1
        elif name not in self._batch.blends and len(self._batch.blends) >= MAX_BLENDS_PER_FRAME:
            self.stats.overflow += 1
        else:
            self._batch.blends[name] = value

    def _apply(self, params: list, sender: str) -> None:
        batch, self._batch = self._batch, _Batch()
        self.stats.frames += 1
        self.on_frame(VmcFrame(
            blends=batch.blends,
            bones=dict(self._bones),
            root=self._root,
            time=batch.time,
            tracking=self._tracking,
            sender=sender,
            received=time.monotonic(),
        ))

    def _bone(self, params: list, sender: str) -> None:
        if not params or not isinstance(params[0], str):
            self.stats.bad_messages += 1
            return
        name = params[0]
        pose = _numbers(params, 1, 7)
        rotation = _unit_quaternion(pose[3:]) if pose else None
        if not valid_name(name):
            self.stats.bad_names += 1
        elif rotation is None:
            self.stats.bad_messages += 1
        elif name not in self._bones and len(self._bones) >= MAX_BONES:
            self.stats.overflow += 1
        else:
            self._bones[name] = rotation

    def _root_pose(self, params: list, sender: str) -> None:
        pose = _numbers(params, 1, 7)
        rotation = _unit_quaternion(pose[3:]) if pose else None
        if rotation is None:
            self.stats.bad_messages += 1
            return
        self._root = (tuple(pose[:3]), rotation)

    def _ok(self, params: list, sender: str) -> None:
        loaded = _number(params[0]) if params else None
        if loaded is None:
            self.stats.bad_messages += 1
            return
        # Since VMC 2.7 the 4th argument is the tracking status (1 ok, 0 lost).
        status = _number(params[3]) if len(params) >= 4 else None
        self._tracking = None if status is None else status != 0

    def _time(self, params: list, sender: str) -> None:
        value = _number(params[0]) if params else None
        if value is None:
            self.stats.bad_messages += 1
            return
        self._batch.time = value
