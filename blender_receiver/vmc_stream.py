"""VMC datagrams in, complete frames out. Plain Python: no bpy, no sockets.

A datagram's bundles are taken apart here, without recursion and with every
element size checked; python-osc decodes each message's arguments, after its type
tags are checked. This module then checks every argument before it is used (types,
counts, finite numbers, printable names of sane length), groups the messages of
one batch, and emits a `VmcFrame` at each `/VMC/Ext/Blend/Apply`, the VMC marker
for "the batch is complete". Anything wrong is dropped and counted, never raised
and never logged: this runs inside Blender.

Why not python-osc's `OscPacket` for the bundles (found by bench/fuzz.py): a bundle
element whose size is negative sends it into an endless loop (the receiving thread
hangs, logging a warning each turn); nesting recurses once per level, so ~500
levels raise RecursionError; and unknown type tags or element kinds log a warning
on the root logger per occurrence, so one hostile datagram could write thousands
of lines to Blender's console.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

from pythonosc.osc_message import OscMessage

# Blender names (shape keys, bones) are at most 63 bytes; VMC names are short too.
MAX_NAME_LENGTH = 63
# Bounds on what a hostile or broken sender can make us hold.
MAX_BLENDS_PER_FRAME = 1024
MAX_BONES = 128
# VMC senders send flat bundles; OSC libraries nest one or two levels at most.
MAX_BUNDLE_DEPTH = 16

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
    too_deep: int = 0  # datagrams whose bundles nest deeper than MAX_BUNDLE_DEPTH
    handler_errors: int = 0  # exceptions from routed handlers
    internal_errors: int = 0  # exceptions that escaped feed() (a bug: counted by the server)

    @property
    def dropped(self) -> int:
        return self.malformed + self.bad_messages + self.bad_names + self.overflow + self.too_deep


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
    # Scaled by the largest component first: squaring 1e200 (a double argument)
    # overflows, and dividing by an infinite norm gave the zero "quaternion".
    scale = max(abs(v) for v in values)
    if scale == 0.0:
        return None
    scaled = [v / scale for v in values]
    norm = math.sqrt(sum(v * v for v in scaled))
    if norm * scale < 1e-6:
        return None
    x, y, z, w = (v / norm for v in scaled)
    return (x, y, z, w)


_BUNDLE = b"#bundle\x00"
_BUNDLE_HEADER = 16  # "#bundle\0" and the 8-byte time tag
# The argument types python-osc decodes; any other tag makes a message undecodable.
_KNOWN_TAGS = b"ifsbhdrmtTFN[]"


class Malformed(Exception):
    """A datagram that is not well-formed OSC."""


class TooDeep(Malformed):
    """Bundles nested deeper than the limit."""


def split_datagram(data: bytes, max_depth: int = MAX_BUNDLE_DEPTH) -> list[bytes]:
    """The messages of one datagram, in the order they were packed.

    Bundles are walked with an explicit stack, never recursively. Every element
    size must be positive and fit inside its bundle; bundle time tags are ignored
    (VMC senders use "immediately", and this stream applies frames as they come).
    Raises Malformed (or TooDeep) for anything else.
    """
    if data[:1] == b"/":
        return [data]
    if not data.startswith(_BUNDLE) or len(data) < _BUNDLE_HEADER:
        raise Malformed("neither a message nor a bundle")
    messages = []
    ends = [len(data)]  # where each open bundle ends, innermost last
    pos = _BUNDLE_HEADER
    while ends:
        end = ends[-1]
        if pos == end:
            ends.pop()
            continue
        if end - pos < 4:
            raise Malformed("a bundle element size is cut off")
        size = int.from_bytes(data[pos:pos + 4], "big", signed=True)
        pos += 4
        if size <= 0 or size > end - pos:
            raise Malformed(f"a bundle element claims {size} bytes, {end - pos} are left")
        if data[pos] == 0x2F:  # "/": a message
            messages.append(data[pos:pos + size])
            pos += size
        elif data.startswith(_BUNDLE, pos) and size >= _BUNDLE_HEADER:
            if len(ends) >= max_depth:
                raise TooDeep(f"bundles nested deeper than {max_depth} levels")
            ends.append(pos + size)
            pos += _BUNDLE_HEADER
        else:
            raise Malformed("a bundle element is neither a message nor a bundle")
    return messages


def decode_message(data: bytes) -> OscMessage:
    """One message, decoded by python-osc once its type tags are known to be ones it
    decodes (it would log and skip others). Raises Malformed."""
    nul = data.find(b"\x00")
    if nul < 0:
        raise Malformed("the address is not terminated")
    tags_at = (nul + 4) & ~3
    if tags_at < len(data):
        if data[tags_at:tags_at + 1] != b",":
            raise Malformed("no type tag string")
        tags_end = data.find(b"\x00", tags_at)
        if tags_end < 0:
            raise Malformed("the type tags are not terminated")
        if data[tags_at + 1:tags_end].translate(None, _KNOWN_TAGS):
            raise Malformed("unknown type tags")
    try:
        return OscMessage(data)
    except Exception as error:  # ParseError; UnicodeDecodeError for non-UTF-8 strings
        raise Malformed(str(error)) from None


def decode_datagram(data: bytes, max_depth: int = MAX_BUNDLE_DEPTH) -> list[OscMessage]:
    """Every message of a datagram, or Malformed / TooDeep for the whole datagram."""
    return [decode_message(m) for m in split_datagram(data, max_depth)]


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
            messages = decode_datagram(datagram)
        except TooDeep:
            self.stats.too_deep += 1
            return
        except Malformed:
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
