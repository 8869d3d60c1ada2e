"""Fuzz every OSC input the project opens, and check that it survives.

    python bench/fuzz.py [--datagrams 100000] [--seed S] [--layers feed,socket,blender,control]

Datagrams (seeded, reproducible): random bytes; valid messages and bundles cut at
random points; wrong type tags; wrong argument counts and types for every VMC
address, `/facemocap/landmarks` and `/facemocap/calibrate`; NaN / inf / huge
floats (float32 and double); huge, unprintable and non-UTF-8 names and addresses;
64 KB datagrams (up to UDP's 65,507); bundles nested 17 to ~3,000 levels; bundle
element sizes that lie. About one in ten is a valid VMC frame or landmark frame
(or calibrate request) whose content is known, and must come out exactly.

Layers:
  feed            blender_receiver's VmcStream.feed (with the landmark route), directly
  socket          the add-on's Receiver on 127.0.0.1:0 over real UDP, with an allow-list
                  of 127.0.0.1; ~5 % of the fuzz is sent from 127.0.0.2 and must be
                  dropped unparsed. Paced (a bounded number of datagrams in flight); a
                  datagram lost by the kernel is counted, not failed
  blender         the apply step in bpy: session.pump(scene) on a face rig (shape keys,
                  four bones in quaternion / Euler / axis-angle modes, a landmark face),
                  recording on; every value is checked for NaN after every pump, then the
                  take is written and its keys checked
  control         bridge/control.py's ControlPort: its dispatcher directly ("control")
                  and through its socket ("control-udp")

Figures per layer: exceptions escaping the outermost layer (must be 0), exceptions
caught inside (handler / apply errors, must be 0), log records (python-osc used to
warn on the root logger), non-finite or degenerate values that came out (must be
0), valid frames intact / lost / wrong, the last N valid frames, drops by category,
RSS before and after, datagrams per second.

Importable: tests/test_fuzz.py runs the same layers with fewer datagrams. bpy is
only imported by the blender layer (and by this script's main when it runs that layer).
"""

from __future__ import annotations

import argparse
import collections
import logging
import math
import os
import random
import socket
import struct
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.append(str(REPO))

from bridge.state import ARKIT_NAMES, pascal_case  # noqa: E402

MAX_UDP = 65507
SENDER = "127.0.0.1:5000"
N_LAST = 20  # the valid frames sent after the fuzz, which must all arrive exactly

VMC_SPECS = {
    "/VMC/Ext/Blend/Val": "sf",
    "/VMC/Ext/Blend/Apply": "",
    "/VMC/Ext/Bone/Pos": "sfffffff",
    "/VMC/Ext/Root/Pos": "sfffffff",
    "/VMC/Ext/OK": "iiii",
    "/VMC/Ext/T": "f",
}
LANDMARKS = "/facemocap/landmarks"
CALIBRATE = "/facemocap/calibrate"
SPECS = {**VMC_SPECS, LANDMARKS: "ifiib", CALIBRATE: "f"}
NAMED = ("/VMC/Ext/Blend/Val", "/VMC/Ext/Bone/Pos", "/VMC/Ext/Root/Pos")

LANDMARK_COUNT = 478
LANDMARK_CHUNK = 100
FACE_KEYS = [*ARKIT_NAMES, "A", "Blink"]  # shape keys in the rig (camelCase)
STREAM_NAMES = [pascal_case(n) for n in ARKIT_NAMES] + ["A", "Blink"]  # as a tracker sends them
BONES = ("Neck", "Head", "LeftEye", "RightEye")

# Markers: valid frames carry times / indices no fuzz template uses.
VMC_MARK = 1_000_000.0
LANDMARK_MARK = 1_000_000
CALIBRATE_SECONDS = [0.5 + 0.25 * i for i in range(235)]  # 0.5 .. 59.0, exact in float32

FUZZ_KINDS = {  # kind -> weight
    "random_bytes": 14,
    "truncated": 14,
    "bad_type_tags": 12,
    "wrong_args": 15,
    "bad_floats": 15,
    "bad_names": 10,
    "huge_64k": 3,
    "deep_nesting": 5,
    "lying_sizes": 12,
}
VALID_RATE = 0.1

SPECIAL_F32 = [math.nan, -math.nan, math.inf, -math.inf, 3.4028234663852886e38, -3.4028234663852886e38,
               1e38, 1.4e-45, -0.0, 1e30]
SPECIAL_F64 = [math.nan, math.inf, -math.inf, 1.7976931348623157e308, -1.7976931348623157e308,
               1e300, 1e200, 5e-324, -0.0]
SPECIAL_INTS = [0, 1, -1, 2**31 - 1, -2**31, 478, 479, -478]
SPECIAL_INT64 = [2**63 - 1, -2**63, 0, 2**40]


# --- OSC encoding, permissive (so it can build what python-osc's builders refuse) ---


def _pad(data: bytes) -> bytes:
    return data + b"\x00" * (4 - len(data) % 4)


def _text(value) -> bytes:
    if isinstance(value, bytes):
        return value
    return str(value).encode("utf-8", "surrogatepass")


def ostr(value) -> bytes:
    return _pad(_text(value))


def _arg(tag: str, value) -> bytes:
    if tag == "i":
        return struct.pack(">i", value)
    if tag == "h":
        return struct.pack(">q", value)
    if tag == "f":
        return struct.pack(">f", value)
    if tag == "d":
        return struct.pack(">d", value)
    if tag == "s":
        return ostr(value)
    if tag == "b":
        return struct.pack(">i", len(value)) + value + b"\x00" * (-len(value) % 4)
    if tag == "r":
        return struct.pack(">I", value & 0xFFFFFFFF)
    if tag == "m":
        return bytes(value)[:4].ljust(4, b"\x00")
    if tag == "t":
        return struct.pack(">Q", value & 0xFFFFFFFFFFFFFFFF)
    return b""  # T F N [ ]


def message(address, args=()) -> bytes:
    """args: (tag, value) pairs."""
    tags = "," + "".join(tag for tag, _ in args)
    return ostr(address) + ostr(tags) + b"".join(_arg(tag, value) for tag, value in args)


def bundle(elements, timetag: int = 1) -> bytes:
    return b"#bundle\x00" + struct.pack(">Q", timetag) + b"".join(
        struct.pack(">i", len(e)) + e for e in elements)


def f32(value: float) -> float:
    return struct.unpack(">f", struct.pack(">f", value))[0]


def unit(q) -> tuple:
    n = math.sqrt(sum(c * c for c in q))
    return tuple(c / n for c in q)


# --- valid frames with known content ---------------------------------------------------


@dataclass
class VmcExpect:
    time: float
    blends: dict  # stream name -> float32 value
    bones: dict   # bone -> unit quaternion (x, y, z, w), from the float32 components


@dataclass
class LandmarkExpect:
    index: int
    time: float
    points: np.ndarray  # (478, 3) float32


@dataclass
class Item:
    kind: str
    datagrams: list
    expect: object = None


def vmc_frame_datagram(t, blends, bones, root=True, ok=True, t_tag="f") -> bytes:
    elements = [message("/VMC/Ext/T", [(t_tag, t)])]
    if ok:
        elements.append(message("/VMC/Ext/OK", [("i", 1), ("i", 3), ("i", 0), ("i", 1)]))
    if root:
        elements.append(message("/VMC/Ext/Root/Pos", [("s", "root")] + [("f", 0.0)] * 6 + [("f", 1.0)]))
    for name, q in bones.items():
        elements.append(message("/VMC/Ext/Bone/Pos", [("s", name), ("f", 0.0), ("f", 0.0), ("f", 0.0)]
                                + [("f", c) for c in q]))
    for name, value in blends:
        elements.append(message("/VMC/Ext/Blend/Val", [("s", name), ("f", value)]))
    elements.append(message("/VMC/Ext/Blend/Apply"))
    return bundle(elements)


def landmark_messages(index, t, points, t_tag="f") -> list[bytes]:
    out = []
    for first in range(0, LANDMARK_COUNT, LANDMARK_CHUNK):
        part = np.ascontiguousarray(points[first:first + LANDMARK_CHUNK], dtype="<f4")
        out.append(message(LANDMARKS, [("i", index), (t_tag, t), ("i", first), ("i", len(part)),
                                       ("b", part.tobytes())]))
    return out


class Fuzzer:
    """A reproducible stream of Items: fuzz, and valid frames whose content is known.

    focus="vmc": everything the Blender receiver listens to; "control": the control
    port's /facemocap/calibrate (and /facemocap/ neighbours, which pass its pre-filter).
    """

    def __init__(self, seed: int, focus: str = "vmc"):
        self.rng = random.Random(seed)
        self.np = np.random.default_rng(seed)
        self.focus = focus
        self.k = 0  # valid frames made so far
        if focus == "control":
            self.addresses = [CALIBRATE] * 4 + [LANDMARKS]
        else:
            self.addresses = [*VMC_SPECS, *NAMED, LANDMARKS, LANDMARKS, CALIBRATE]
        self._kinds = list(FUZZ_KINDS)
        self._weights = list(FUZZ_KINDS.values())

    # --- the stream ---

    def next(self) -> Item:
        if self.rng.random() < VALID_RATE:
            return self.valid()
        kind = self.rng.choices(self._kinds, self._weights)[0]
        data = getattr(self, kind)()
        if self.focus == "control" and kind == "random_bytes" and self.rng.random() < 0.7:
            at = self.rng.randrange(len(data) + 1)
            data = (data[:at] + b"/facemocap/calibrate" + data[at:])[:MAX_UDP]
        return Item(kind, [data[:MAX_UDP]])

    def valid(self) -> Item:
        if self.focus == "control":
            return self.valid_calibrate()
        return self.valid_landmarks() if self.rng.random() < 0.3 else self.valid_vmc()

    def valid_vmc(self) -> Item:
        k, self.k = self.k, self.k + 1
        t = VMC_MARK + k
        blends = [(name, f32(self.rng.uniform(-0.3, 1.3))) for name in STREAM_NAMES]
        bones = {}
        for bone in BONES:
            q = unit([self.rng.gauss(0, 1) for _ in range(4)])
            bones[bone] = tuple(f32(c) for c in q)
        expect = VmcExpect(t, dict(blends), {b: unit(q) for b, q in bones.items()})
        return Item("valid_vmc", [vmc_frame_datagram(t, blends, bones)], expect)

    def valid_landmarks(self) -> Item:
        k, self.k = self.k, self.k + 1
        index, t = LANDMARK_MARK + k, VMC_MARK + k
        points = self.np.uniform(0.2, 0.8, (LANDMARK_COUNT, 3)).astype(np.float32)
        points[:, 2] -= 0.5
        chunks = landmark_messages(index, t, points)
        # One bundle, or one datagram per chunk as facemocap-osc sends them.
        datagrams = [bundle(chunks)] if self.rng.random() < 0.5 else chunks
        return Item("valid_landmarks", datagrams, LandmarkExpect(index, t, points))

    def valid_calibrate(self) -> Item:
        k, self.k = self.k, self.k + 1
        seconds = CALIBRATE_SECONDS[k % len(CALIBRATE_SECONDS)]
        return Item("valid_calibrate", [message(CALIBRATE, [("f", seconds)])], seconds)

    # --- building blocks ---

    def name(self) -> str | bytes:
        r = self.rng.random()
        if r < 0.5:
            return self.rng.choice(STREAM_NAMES + list(BONES))
        if r < 0.7:
            return self.rng.choice(FACE_KEYS).upper()
        return "".join(self.rng.choice("abcXYZ_09") for _ in range(self.rng.randint(1, 20)))

    def value(self, tag: str):
        rng = self.rng
        if tag == "i":
            return rng.choice(SPECIAL_INTS) if rng.random() < 0.5 else rng.randint(-2**31, 2**31 - 1)
        if tag == "h":
            return rng.choice(SPECIAL_INT64)
        if tag == "f":
            return rng.uniform(-2, 2) if rng.random() < 0.8 else rng.choice(SPECIAL_F32)
        if tag == "d":
            return rng.uniform(-2, 2) if rng.random() < 0.6 else rng.choice(SPECIAL_F64)
        if tag == "s":
            return self.name()
        if tag == "b":
            return rng.randbytes(rng.choice([1, 4, 12, 1200, 5736]))
        if tag in "rt":
            return rng.getrandbits(64)
        if tag == "m":
            return rng.randbytes(4)
        return None

    def valid_args(self, address: str) -> list:
        """Arguments of the right types and sane values for an address."""
        rng = self.rng
        if address == LANDMARKS:
            first = rng.randrange(0, LANDMARK_COUNT, LANDMARK_CHUNK)
            count = min(LANDMARK_CHUNK, LANDMARK_COUNT - first)
            points = self.np.uniform(0.2, 0.8, (count, 3)).astype("<f4")
            return [("i", rng.randint(0, 999)), ("f", rng.uniform(0, 1000)), ("i", first), ("i", count),
                    ("b", points.tobytes())]
        if address == CALIBRATE:
            return [] if rng.random() < 0.3 else [("f", rng.uniform(0.5, 60))]
        if address == "/VMC/Ext/T":
            return [("f", rng.uniform(0, 1000))]
        if address == "/VMC/Ext/OK":
            return [("i", rng.randint(0, 1)) for _ in range(rng.choice([1, 3, 4]))]
        if address == "/VMC/Ext/Blend/Apply":
            return []
        if address == "/VMC/Ext/Blend/Val":
            return [("s", self.name()), ("f", rng.uniform(-0.5, 1.5))]
        q = unit([rng.gauss(0, 1) for _ in range(4)])
        return [("s", self.name())] + [("f", rng.uniform(-1, 1)) for _ in range(3)] + [("f", c) for c in q]

    def template(self) -> bytes:
        """A valid message or bundle (fuzz frames use times below VMC_MARK)."""
        rng = self.rng
        r = rng.random()
        if self.focus == "control":
            if r < 0.5:
                return message(CALIBRATE, self.valid_args(CALIBRATE))
            return bundle([message(a, self.valid_args(a)) for a in rng.choices(self.addresses, k=rng.randint(1, 5))])
        if r < 0.35:
            blends = [(n, rng.uniform(0, 1)) for n in rng.sample(STREAM_NAMES, rng.randint(0, 10))]
            bones = {b: unit([rng.gauss(0, 1) for _ in range(4)]) for b in rng.sample(BONES, rng.randint(0, 4))}
            return vmc_frame_datagram(rng.uniform(0, 1000), blends, bones)
        if r < 0.5:
            points = self.np.uniform(0.2, 0.8, (LANDMARK_COUNT, 3)).astype(np.float32)
            return bundle(landmark_messages(rng.randint(0, 999), rng.uniform(0, 1000), points))
        address = rng.choice(self.addresses)
        return message(address, self.valid_args(address))

    # --- fuzz kinds ---

    def random_bytes(self) -> bytes:
        rng = self.rng
        size = rng.choice([0, 1, 3, 4, 8, 16, 20, rng.randint(0, 64), rng.randint(0, 512), rng.randint(0, 4096),
                           rng.randint(0, MAX_UDP)])
        data = rng.randbytes(size)
        r = rng.random()
        if r < 0.3:
            return b"/" + data
        if r < 0.55:
            return b"#bundle\x00" + data
        if r < 0.65:
            return ostr(rng.choice(self.addresses)) + data
        return data

    def truncated(self) -> bytes:
        data = self.template()
        if self.rng.random() < 0.8:
            return data[:self.rng.randrange(len(data))]
        a = self.rng.randrange(len(data))
        b = self.rng.randrange(a, min(len(data), a + 64) + 1)
        return data[:a] + data[b:]  # a piece missing from the middle

    def bad_type_tags(self) -> bytes:
        rng = self.rng
        address = rng.choice(self.addresses)
        args = self.valid_args(address)
        body = b"".join(_arg(tag, value) for tag, value in args)
        real = "".join(tag for tag, _ in args)
        r = rng.random()
        if r < 0.2:  # unknown tags (OSC 1.1 c S I, and nonsense)
            tags = "," + "".join(rng.choice("QcSIxz?! \x7f") for _ in range(rng.randint(1, 8)))
            return ostr(address) + ostr(tags) + body
        if r < 0.3:  # non-ASCII, non-UTF-8 tag bytes
            return ostr(address) + _pad(b"," + rng.randbytes(rng.randint(1, 8)).replace(b"\x00", b"\x80")) + body
        if r < 0.4:  # no comma
            return ostr(address) + ostr(real or "f") + body
        if r < 0.55:  # more tags than data
            return ostr(address) + ostr("," + real + rng.choice("ifdshb") * rng.randint(1, 5000)) + body
        if r < 0.65:  # tags that disagree with the data
            return ostr(address) + ostr("," + "".join(rng.choice("ifdshbrmtTFN") for _ in real)) + body
        if r < 0.75:  # brackets: unbalanced, or nested thousands deep
            depth = rng.randint(1, 20000)
            tags = rng.choice(["[" * depth, "]" * depth, "[" * depth + "]" * depth, "[" * depth + "f"])
            return ostr(address) + ostr("," + tags + real) + body
        if r < 0.85:  # tag string not terminated
            return ostr(address) + b"," + real.encode() + b"f" * rng.randint(0, 7)
        # T / F / N where values belong
        return ostr(address) + ostr("," + "".join(rng.choice("TFN") for _ in real)) + body

    def wrong_args(self) -> bytes:
        rng = self.rng
        address = rng.choice(self.addresses)
        args = self.valid_args(address)
        mode = rng.random()
        if mode < 0.3:  # too few
            args = args[:rng.randrange(len(args))] if args else []
        elif mode < 0.45:  # too many, of any type
            args = args + [(t, self.value(t)) for t in rng.choices("ifdshbTFN", k=rng.randint(1, 12))]
        elif mode < 0.8 and args:  # one wrong type
            i = rng.randrange(len(args))
            tag = rng.choice([t for t in "ifdshbrmtTFN" if t != args[i][0]])
            args[i] = (tag, self.value(tag))
        else:  # all random
            args = [(t, self.value(t)) for t in rng.choices("ifdshbrmtTFN", k=rng.randint(0, 12))]
        return message(address, args)

    def bad_floats(self) -> bytes:
        rng = self.rng
        address = rng.choice(self.addresses)
        r = rng.random()
        if address == LANDMARKS and r < 0.3:
            # A complete frame, all else valid, with a time of 3e38 (float32) or 1e300 (double).
            points = self.np.uniform(0.2, 0.8, (LANDMARK_COUNT, 3)).astype(np.float32)
            tag, t = rng.choice([("f", 3.0e38), ("f", -3.0e38), ("d", 1e300), ("f", 1e20)])
            return bundle(landmark_messages(rng.randint(0, 999), t, points, t_tag=tag))
        if address == LANDMARKS and r < 0.6:  # non-finite or huge points in the blob
            args = self.valid_args(address)
            points = np.frombuffer(args[4][1], "<f4").copy()
            points[rng.randrange(len(points))] = rng.choice([math.nan, math.inf, -math.inf, 1e30, 3.4e38])
            args[4] = ("b", points.tobytes())
            return message(address, args)
        if address == "/VMC/Ext/T" and r < 0.3:  # a whole frame at a huge time
            return vmc_frame_datagram(rng.choice([3.0e38, 1e300, -1e300, 5e-324]), [("JawOpen", 0.5)], {},
                                      t_tag="d")
        args = self.valid_args(address)
        numeric = [i for i, (tag, _) in enumerate(args) if tag in "fd"]
        if not numeric:
            return message(address, args + [("d", rng.choice(SPECIAL_F64))])
        for i in rng.sample(numeric, rng.randint(1, len(numeric))):
            if rng.random() < 0.5:
                args[i] = ("f", rng.choice(SPECIAL_F32))
            else:
                args[i] = ("d", rng.choice(SPECIAL_F64))
        return message(address, args)

    def bad_names(self) -> bytes:
        rng = self.rng
        r = rng.random()
        if r < 0.15:  # the address itself: huge, unprintable or not UTF-8
            address = rng.choice([
                "/VMC/Ext/Blend/Val" + "x" * rng.randint(1, 60000),
                "/VMC/Ext/\x01Blend/Val",
                b"/VMC/Ext/Blend/\xff\xfeVal",
                "/" + "\ud800" * 3,
            ])
            return message(address, [("s", "JawOpen"), ("f", 0.5)])[:MAX_UDP]
        address = rng.choice(NAMED)
        name = rng.choice([
            "J" * rng.randint(64, 60000),
            "\x01\x02\x03", "Jaw\nOpen", "Jaw\x7fOpen", "Jaw\u200bOpen", "\u202eJawOpen", "",
            b"Jaw\xffOpen", b"\xc3\x28", b"\xed\xa0\x80",  # not UTF-8 (the last one a surrogate)
            rng.randbytes(rng.randint(1, 64)).replace(b"\x00", b"\x01"),
            "\u3042" * rng.randint(22, 5000),  # printable, but over 63 characters
        ])
        args = self.valid_args(address)
        args[0] = ("s", name)
        return message(address, args)[:MAX_UDP]

    def huge_64k(self) -> bytes:
        rng = self.rng
        mode = rng.randrange(6)
        if mode == 0:  # thousands of unique shape key names: the per-frame bound
            out, size, i = [], 16, 0
            apply = message("/VMC/Ext/Blend/Apply")
            while True:
                m = message("/VMC/Ext/Blend/Val", [("s", f"Shape{i:05d}"), ("f", rng.uniform(0, 1))])
                if size + 4 + len(m) + 4 + len(apply) > MAX_UDP:
                    break
                out.append(m)
                size += 4 + len(m)
                i += 1
            return bundle(out + [apply])
        if mode == 1:  # hundreds of unique bone names: the per-stream bound
            out, size, i = [], 16, 0
            while size < MAX_UDP - 100:
                m = message("/VMC/Ext/Bone/Pos", [("s", f"Bone{i:04d}")] + [("f", 0.0)] * 6 + [("f", 1.0)])
                out.append(m)
                size += 4 + len(m)
                i += 1
            return bundle(out[:-1])
        if mode == 2:  # thousands of Apply: floods the frame mailbox
            apply = message("/VMC/Ext/Blend/Apply")
            return bundle([apply] * ((MAX_UDP - 16) // (4 + len(apply))))
        if mode == 3:  # one giant blob or string
            address = rng.choice(self.addresses)
            big = rng.choice([("b", rng.randbytes(MAX_UDP - 200)), ("s", "x" * (MAX_UDP - 200))])
            return message(address, [big])
        if mode == 4:  # 16,000 float arguments
            address = rng.choice(self.addresses)
            return message(address, [("s", "JawOpen")] + [("f", 0.5)] * ((MAX_UDP - 100) // 5))
        return b"#bundle\x00" + rng.randbytes(MAX_UDP - 8)

    def deep_nesting(self) -> bytes:
        rng = self.rng
        inner = rng.choice([message("/VMC/Ext/Blend/Apply"), message(CALIBRATE),
                            message("/VMC/Ext/Blend/Val", [("s", "JawOpen"), ("f", 0.25)])])
        max_depth = (MAX_UDP - len(inner) - 16) // 20
        depth = rng.choice([17, 100, 500, 1000, rng.randint(17, max_depth), max_depth])
        # Built from the inside out without re-copying: level d's element size field,
        # then its header.
        sizes, size = [], len(inner)
        for _ in range(depth - 1):
            sizes.append(size)
            size += 20
        sizes.append(size)
        parts = [b"#bundle\x00" + struct.pack(">Q", 1)]
        for s in reversed(sizes[1:]):
            parts.append(struct.pack(">i", s) + b"#bundle\x00" + struct.pack(">Q", 1))
        parts.append(struct.pack(">i", sizes[0]) + inner)
        data = b"".join(parts)
        if rng.random() < 0.2:  # and a size that lies somewhere inside
            at = 16 + 20 * rng.randrange(depth - 1)
            data = data[:at] + struct.pack(">i", rng.choice([-4, 0, 2**31 - 1])) + data[at + 4:]
        return data

    def lying_sizes(self) -> bytes:
        rng = self.rng
        if self.focus == "control":
            elements = [message(CALIBRATE, self.valid_args(CALIBRATE)) for _ in range(rng.randint(1, 4))]
        else:
            elements = [message(a, self.valid_args(a)) for a in rng.choices(self.addresses, k=rng.randint(1, 6))]
            elements.append(message("/VMC/Ext/Blend/Apply"))
        mode = rng.random()
        if mode < 0.1:  # a nested bundle element too short to hold its own header
            return bundle([b"#bundle\x00" + b"\x00" * rng.randint(0, 7)] + elements)
        if mode < 0.2:  # a size field cut off at the end
            return bundle(elements) + rng.randbytes(rng.randint(1, 3))
        if mode < 0.3:  # an element that is neither a message nor a bundle
            return bundle(elements + [rng.choice([b"garbage!", b"\x00" * 8, b"#bundle", b"xyz\x00"])])
        data = bytearray(bundle(elements))
        offsets, pos = [], 16
        for e in elements:
            offsets.append((pos, len(e)))
            pos += 4 + len(e)
        at, real = rng.choice(offsets)
        lie = rng.choice([-4, -8, -1, -12, -2**31, 0, real + rng.randint(1, 7), real - rng.randint(1, 3),
                          2**31 - 1, len(data) * 2, real + 4])
        data[at:at + 4] = struct.pack(">i", lie)
        return bytes(data)


# --- figures -------------------------------------------------------------------------------------


def rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # peak, on macOS bytes already


@dataclass
class Figures:
    layer: str
    fuzz: int = 0                 # fuzz datagrams sent / fed
    valid_sent: int = 0           # valid frames (or requests) among them
    seconds: float = 0.0
    escaped: int = 0              # exceptions out of the outermost layer: must be 0
    caught: int = 0               # exceptions caught inside (handlers, apply, server): must be 0
    log_records: int = 0          # warnings or worse logged while fuzzing: must be 0
    non_finite: int = 0           # NaN / inf values that came out or were applied: must be 0
    degenerate: int = 0           # zero / non-unit rotations that came out or were applied: must be 0
    valid_ok: int = 0
    valid_wrong: int = 0          # arrived with other values: must be 0
    valid_lost: int = 0           # never arrived (UDP loss on the socket layers only)
    last_ok: int = 0              # of the N_LAST valid frames sent after the fuzz
    last_n: int = 0
    drops: dict = field(default_factory=dict)
    kinds: collections.Counter = field(default_factory=collections.Counter)
    rss_before: int = 0
    rss_after: int = 0
    notes: list = field(default_factory=list)
    log_samples: list = field(default_factory=list)
    extra: dict = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return (self.fuzz + self.valid_sent) / self.seconds if self.seconds else 0.0


class _LogCounter(logging.Handler):
    def __init__(self, figures: Figures):
        super().__init__(logging.WARNING)
        self.figures = figures

    def emit(self, record):
        self.figures.log_records += 1
        if len(self.figures.log_samples) < 3:
            self.figures.log_samples.append(f"{record.name}: {record.getMessage()[:120]}")


class _Watch:
    """RSS, time and root-logger warnings around one layer."""

    def __init__(self, figures: Figures):
        self.figures = figures

    def __enter__(self):
        self.handler = _LogCounter(self.figures)
        logging.getLogger().addHandler(self.handler)
        self.figures.rss_before = rss_bytes()
        self.started = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.figures.seconds = time.perf_counter() - self.started
        self.figures.rss_after = rss_bytes()
        logging.getLogger().removeHandler(self.handler)
        return False


class FrameCheck:
    """Checks every frame that comes out of a stream; matches the valid ones."""

    def __init__(self, figures: Figures):
        self.figures = figures
        self.pending_vmc: dict[float, VmcExpect] = {}
        self.pending_landmarks: dict[int, LandmarkExpect] = {}
        self.recent = collections.deque(maxlen=2 * N_LAST)  # keys of the valid frames seen, in order
        self._unit: set = set()

    def expect(self, item: Item) -> None:
        if isinstance(item.expect, VmcExpect):
            self.pending_vmc[item.expect.time] = item.expect
        elif isinstance(item.expect, LandmarkExpect):
            self.pending_landmarks[item.expect.index] = item.expect

    def _rotation_ok(self, q) -> bool | None:
        """True for a finite unit quaternion, None if not finite, False if degenerate.
        Frames share their bones' tuples, so verified ones are remembered."""
        if q in self._unit:
            return True
        if not all(math.isfinite(c) for c in q):
            return None
        if abs(math.sqrt(sum(c * c for c in q)) - 1.0) > 1e-6:
            return False
        if len(self._unit) > 10_000:
            self._unit.clear()
        self._unit.add(q)
        return True

    def vmc(self, frame) -> None:
        f = self.figures
        values = [*frame.blends.values()]
        if frame.time is not None:
            values.append(frame.time)
        if frame.root is not None:
            values += frame.root[0]
        rotations = [*frame.bones.values(), *([frame.root[1]] if frame.root is not None else [])]
        verdicts = [self._rotation_ok(q) for q in rotations]
        if not all(math.isfinite(v) for v in values) or None in verdicts:
            f.non_finite += 1
        elif False in verdicts:
            f.degenerate += 1
        expect = self.pending_vmc.pop(frame.time, None)
        if expect is None:
            return
        good = all(frame.blends.get(n) == v for n, v in expect.blends.items()) and all(
            b in frame.bones and max(abs(a - e) for a, e in zip(frame.bones[b], q)) < 1e-7
            for b, q in expect.bones.items()) and frame.tracking is True
        f.valid_ok += good
        f.valid_wrong += not good
        self.recent.append(("vmc", expect.time))

    def landmarks(self, frame) -> None:
        f = self.figures
        if not np.isfinite(frame.points).all() or not math.isfinite(frame.time):
            f.non_finite += 1
        expect = self.pending_landmarks.pop(frame.index, None)
        if expect is None:
            return
        good = frame.time == expect.time and np.array_equal(frame.points, expect.points)
        f.valid_ok += good
        f.valid_wrong += not good
        self.recent.append(("landmarks", expect.index))

    def finish(self, last_keys: list) -> None:
        self.figures.valid_lost = len(self.pending_vmc) + len(self.pending_landmarks)
        got = list(self.recent)[-len(last_keys):] if last_keys else []
        self.figures.last_n = len(last_keys)
        self.figures.last_ok = sum(1 for a, b in zip(got, last_keys) if a == b) if len(got) == len(last_keys) else 0


def _key(item: Item):
    e = item.expect
    return ("vmc", e.time) if isinstance(e, VmcExpect) else ("landmarks", e.index)


def _stream_drops(stats) -> dict:
    return {"malformed": stats.malformed, "too_deep": stats.too_deep, "bad_messages": stats.bad_messages,
            "bad_names": stats.bad_names, "overflow": stats.overflow}


# --- layer (a): VmcStream.feed -------------------------------------------------------------------


def run_feed(datagrams: int, seed: int) -> Figures:
    from blender_receiver.landmark_stream import ADDRESS, LandmarkStream
    from blender_receiver.vmc_stream import VmcStream

    f = Figures("feed")
    check = FrameCheck(f)
    stream = VmcStream(check.vmc)
    landmarks = LandmarkStream(stream.stats)
    stream.route(ADDRESS, landmarks)
    fuzzer = Fuzzer(seed)

    def feed(item):
        check.expect(item)
        for d in item.datagrams:
            try:
                stream.feed(d, SENDER)
            except Exception:
                f.escaped += 1
        for frame in landmarks.take():
            check.landmarks(frame)

    with _Watch(f):
        while f.fuzz < datagrams:
            item = fuzzer.next()
            f.kinds[item.kind] += 1
            if item.expect is None:
                f.fuzz += 1
            else:
                f.valid_sent += 1
            feed(item)
        last = [fuzzer.valid() for _ in range(N_LAST)]
        for item in last:
            feed(item)
    check.finish([_key(i) for i in last])
    f.caught = stream.stats.handler_errors + stream.stats.internal_errors
    f.drops = _stream_drops(stream.stats)
    return f


# --- layer (b): the Receiver over UDP -----------------------------------------------------------


class _Pacer:
    """Keeps at most `window` datagrams in flight to a receiver on loopback; a
    datagram that never arrives (the kernel may drop under load) is counted as lost
    after `stall` seconds without progress."""

    def __init__(self, received, window=32, stall=1.0):
        self.received, self.window, self.stall = received, window, stall
        self.sent = 0
        self.lost = 0

    def wait(self, window=None):
        window = self.window if window is None else window
        last, since = self.received(), time.monotonic()
        while self.sent - self.lost - self.received() > window:
            now_received = self.received()
            if now_received != last:
                last, since = now_received, time.monotonic()
            elif time.monotonic() - since > self.stall:
                self.lost = self.sent - self.received()
                return
            time.sleep(0.0001)


def run_socket(datagrams: int, seed: int) -> Figures:
    from blender_receiver.landmark_stream import ADDRESS, LandmarkStream
    from blender_receiver.receiver import Receiver

    f = Figures("socket")
    check = FrameCheck(f)
    receiver = Receiver("127.0.0.1", 0, allow="127.0.0.1")
    landmarks = LandmarkStream(receiver.stream.stats)
    receiver.stream.route(ADDRESS, landmarks)
    receiver.start()
    main = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    main.bind(("127.0.0.1", 0))
    try:
        outsider = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        outsider.bind(("127.0.0.2", 0))  # Linux routes all of 127/8 to loopback
    except OSError:
        outsider = None
        f.notes.append("127.0.0.2 not bindable here: allow-list drops not exercised")
    pacer = _Pacer(lambda: receiver.stats.datagrams + receiver.not_allowed)
    fuzzer = Fuzzer(seed)
    rng = random.Random(seed + 1)
    from_outsider = 0
    send_errors = 0

    def drain():
        for frame in receiver.take():
            check.vmc(frame)
        for frame in landmarks.take():
            check.landmarks(frame)

    def send(item, sock):
        nonlocal send_errors
        check.expect(item)
        for d in item.datagrams:
            try:
                sock.sendto(d, ("127.0.0.1", receiver.port))
                pacer.sent += 1
            except OSError:
                send_errors += 1
            pacer.wait()
        if item.expect is not None:  # let it through and take it before any fuzz can crowd the mailbox
            pacer.wait(0)
            settle(_key(item))

    def settle(key):
        """Drain until the frame `key` came out (its datagram may still be in feed())."""
        pending = check.pending_vmc if key[0] == "vmc" else check.pending_landmarks
        since = time.monotonic()
        drain()
        while key[1] in pending and time.monotonic() - since < pacer.stall:
            time.sleep(0.0001)
            drain()

    try:
        with _Watch(f):
            while f.fuzz < datagrams:
                item = fuzzer.next()
                f.kinds[item.kind] += 1
                if item.expect is None:
                    f.fuzz += 1
                    if outsider is not None and rng.random() < 0.05:
                        from_outsider += 1
                        send(item, outsider)
                        continue
                else:
                    f.valid_sent += 1
                send(item, main)
                if f.fuzz % 64 == 0:
                    drain()
            pacer.wait(0)  # a pause with the receiver drained, then the last frames
            drain()
            last = [fuzzer.valid() for _ in range(N_LAST)]
            for item in last:
                send(item, main)
            pacer.wait(0)
            drain()
    finally:
        receiver.stop()
        main.close()
        if outsider is not None:
            outsider.close()
    check.finish([_key(i) for i in last])
    stats = receiver.stats
    f.caught = stats.handler_errors + stats.internal_errors
    f.escaped = stats.internal_errors  # only an exception escaping feed() reaches the server's handle_error
    f.drops = {**_stream_drops(stats), "not_allowed": receiver.not_allowed, "mailbox": receiver.overflowed,
               "lost_udp": pacer.lost}
    f.extra["sent_not_allowed"] = from_outsider if outsider is not None else None
    f.notes.append(f"{from_outsider} fuzz datagrams sent from 127.0.0.2 (not allowed), "
                   f"{receiver.not_allowed} dropped unparsed; {send_errors} send errors")
    return f


# --- layer (c): the apply step in Blender -------------------------------------------------------


def build_rig(scene):
    """A face mesh (one vertex per shape key), a second mesh at strength 1.5, an
    armature whose four bones point along +Y (so their rest orientation is the
    identity) in quaternion, Euler and axis-angle modes, and a landmark face."""
    import bpy

    def face(name, keys):
        data = bpy.data.meshes.new(name)
        data.from_pydata([(0.02 * i, 0.0, 1.6) for i in range(len(keys))], [], [])
        obj = bpy.data.objects.new(name, data)
        scene.collection.objects.link(obj)
        obj.shape_key_add(name="Basis")
        for i, key_name in enumerate(keys):
            key = obj.shape_key_add(name=key_name, from_mix=False)
            key.value = 0.0
            key.data[i].co.z += 0.1
        return obj

    mesh = face("Face", FACE_KEYS)
    blocks = mesh.data.shape_keys.key_blocks
    blocks["jawOpen"].slider_min, blocks["jawOpen"].slider_max = -1.0, 2.0
    blocks["mouthSmileLeft"].slider_max = 0.5
    second = face("Teeth", ["jawOpen", "A", "mouthClose"])

    arm_data = bpy.data.armatures.new("Rig")
    armature = bpy.data.objects.new("Rig", arm_data)
    scene.collection.objects.link(armature)
    bpy.context.view_layer.objects.active = armature
    bpy.ops.object.mode_set(mode="EDIT")
    for i, name in enumerate(BONES):
        bone = arm_data.edit_bones.new(name)
        bone.head, bone.tail, bone.roll = (0.1 * i, 0.0, 1.5), (0.1 * i, 0.1, 1.5), 0.0
    bpy.ops.object.mode_set(mode="OBJECT")
    modes = {"Head": "QUATERNION", "Neck": "ZXY", "LeftEye": "XYZ", "RightEye": "AXIS_ANGLE"}
    for name, mode in modes.items():
        armature.pose.bones[name].rotation_mode = mode

    settings = scene.facemocap
    settings.meshes.add().object = mesh
    item = settings.meshes.add()
    item.object, item.strength = second, 1.5
    settings.armature = armature
    for stream_bone, prop in (("Head", "bone_head"), ("Neck", "bone_neck"),
                              ("LeftEye", "bone_left_eye"), ("RightEye", "bone_right_eye")):
        setattr(settings, prop, stream_bone)
    assert bpy.ops.facemocap.landmark_face_create() == {"FINISHED"}
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        settings.port = probe.getsockname()[1]
    return mesh, second, armature, settings.landmark_object


def _pose_quaternion(pose_bone):
    from mathutils import Quaternion

    if pose_bone.rotation_mode == "QUATERNION":
        return Quaternion(pose_bone.rotation_quaternion)
    if pose_bone.rotation_mode == "AXIS_ANGLE":
        angle, *axis = pose_bone.rotation_axis_angle
        return Quaternion(axis, angle)
    return pose_bone.rotation_euler.to_quaternion()


def _same_rotation(a, b, tolerance=1e-5) -> bool:
    return min(max(abs(x - y) for x, y in zip(a, b)), max(abs(x + y) for x, y in zip(a, b))) < tolerance


def run_blender(datagrams: int, seed: int, session, scene, pump_every: int = 16) -> Figures:
    """`session` is the add-on's session module (installed add-on, or the source
    package after blender_receiver.register())."""
    import importlib

    from mathutils import Quaternion

    package = session.__name__.rsplit(".", 1)[0]
    mapping = importlib.import_module(package + ".mapping")
    targets = importlib.import_module(package + ".targets")

    f = Figures("blender")
    mesh, second, armature, landmark_face = build_rig(scene)
    meshes = [(mesh, 1.0), (second, 1.5)]
    error = session.start(scene)
    if error:
        raise RuntimeError(f"session.start failed: {error}")
    stream = session.STATE.receiver.stream
    scene.facemocap.record = True
    fuzzer = Fuzzer(seed)
    co = np.empty(LANDMARK_COUNT * 3, np.float32)
    pumps = 0

    def values_are_finite() -> None:
        for obj, _ in meshes:
            blocks = obj.data.shape_keys.key_blocks
            v = np.empty(len(blocks), np.float32)
            blocks.foreach_get("value", v)
            f.non_finite += int(not np.isfinite(v).all())
        for pose_bone in armature.pose.bones:
            raw = [*pose_bone.rotation_quaternion, *pose_bone.rotation_euler, *pose_bone.rotation_axis_angle]
            if not all(math.isfinite(x) for x in raw):
                f.non_finite += 1
            elif abs(_pose_quaternion(pose_bone).magnitude - 1.0) > 1e-4:
                f.degenerate += 1
        landmark_face.data.vertices.foreach_get("co", co)
        f.non_finite += int(not np.isfinite(co).all())

    def pump():
        nonlocal pumps
        pumps += 1
        try:
            newest = session.pump(scene)
        except Exception:
            f.escaped += 1
            newest = None
        values_are_finite()
        return newest

    def applied_exactly(expect) -> bool:
        if isinstance(expect, LandmarkExpect):
            landmark_face.data.vertices.foreach_get("co", co)
            return bool(np.allclose(co.reshape(-1, 3), targets.landmarks_to_blender(expect.points), atol=1e-6))
        for obj, strength in meshes:
            for key in obj.data.shape_keys.key_blocks[1:]:
                # Stream values are 0..1 (retarget clamps them), then strength, then the slider.
                value = min(max(expect.blends[STREAM_NAMES[FACE_KEYS.index(key.name)]], 0.0), 1.0) * strength
                wanted = min(max(value, key.slider_min), key.slider_max)
                if abs(key.value - wanted) > 1e-6:
                    return False
        for bone, q in expect.bones.items():
            wanted = Quaternion(mapping.unity_to_blender_rotation(q))
            if not _same_rotation(_pose_quaternion(armature.pose.bones[bone]), wanted):
                return False
        return True

    def feed(item) -> bool:
        for d in item.datagrams:
            try:
                stream.feed(d, SENDER)
            except Exception:
                f.escaped += 1
        if item.expect is None:
            return True
        newest = pump()
        if isinstance(item.expect, VmcExpect) and (newest is None or newest.time != item.expect.time):
            f.valid_lost += 1
            return False
        good = applied_exactly(item.expect)
        f.valid_ok += good
        f.valid_wrong += not good
        return good

    with _Watch(f):
        while f.fuzz < datagrams:
            item = fuzzer.next()
            f.kinds[item.kind] += 1
            if item.expect is None:
                f.fuzz += 1
            else:
                f.valid_sent += 1
            feed(item)
            if item.expect is None and f.fuzz % pump_every == 0:
                pump()
        pump()
        f.last_n = N_LAST
        f.last_ok = sum(feed(fuzzer.valid()) for _ in range(N_LAST))
        take_frames = len(session.STATE.take) if session.STATE.take is not None else 0
        take_landmarks = len(session.STATE.take.landmark_times) if session.STATE.take is not None else 0
        try:
            scene.facemocap.record = False  # writes the take
        except Exception:
            f.escaped += 1
        written = list(session.STATE.last_take)
        f.non_finite += _take_non_finite(mesh, second, armature, landmark_face)
        stats = session.STATE.receiver.stats
        f.caught = stats.handler_errors + stats.internal_errors + session.STATE.apply_errors
        f.drops = {**_stream_drops(stats), "mailbox": session.STATE.receiver.overflowed,
                   "landmark_mailbox": session.STATE.landmarks.overflowed}
        session.stop(scene)
    f.extra.update(take_frames=take_frames, take_landmark_frames=take_landmarks, take_lines=written)
    f.notes.append(f"{pumps} pumps; take of {take_frames} VMC + {take_landmarks} landmark frames written: "
                   + "; ".join(written))
    return f


def _take_non_finite(mesh, second, armature, landmark_face) -> int:
    """Non-finite keys in the Actions the take wrote, and in its point cache."""
    bad = 0
    for id_data in (mesh.data.shape_keys, second.data.shape_keys, armature):
        anim = id_data.animation_data
        if anim is None or anim.action is None:
            continue
        for fcurve in _fcurves(anim):
            co = np.empty(2 * len(fcurve.keyframe_points), np.float32)
            fcurve.keyframe_points.foreach_get("co", co)
            bad += int(not np.isfinite(co).all())
    modifier = landmark_face.modifiers.get("FaceMocap take")
    if modifier is not None:
        data = Path(modifier.filepath).read_bytes()
        samples = np.frombuffer(data[32:], "<f4")
        bad += int(not np.isfinite(samples).all())
    return bad


def _fcurves(anim):
    from bpy_extras import anim_utils

    if hasattr(anim_utils, "animdata_get_channelbag_for_assigned_slot"):
        bag = anim_utils.animdata_get_channelbag_for_assigned_slot(anim)
        return bag.fcurves if bag is not None else []
    return anim.action.fcurves


# --- layer (d): the control port ----------------------------------------------------------------


def run_control(datagrams: int, seed: int, through_socket: bool = False) -> Figures:
    from bridge.control import CalibrateRequest, ControlPort

    f = Figures("control-udp" if through_socket else "control")
    port = ControlPort(0)
    dispatcher = port._server.dispatcher
    fuzzer = Fuzzer(seed, focus="control")
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    # The control port keeps the OS's default receive buffer (~200 KB on Linux): a
    # couple of 64 KB datagrams in flight at most.
    pacer = _Pacer(lambda: port.datagrams, window=2)

    def deliver(d):
        if through_socket:
            sock.sendto(d, ("127.0.0.1", port.port))
            pacer.sent += 1
            pacer.wait()
            return
        try:
            dispatcher.call_handlers_for_packet(d, ("127.0.0.1", 9))
        except Exception:
            f.escaped += 1

    def check(item) -> bool:
        lost = pacer.lost
        if through_socket:
            pacer.wait(0)
        request = port.poll()
        if request is None or (pacer.lost > lost and request != CalibrateRequest(item.expect)):
            f.valid_lost += 1  # the kernel dropped it (the pacer saw a datagram go missing)
            return False
        good = request == CalibrateRequest(item.expect)
        f.valid_ok += good
        f.valid_wrong += not good
        return good

    try:
        with _Watch(f):
            while f.fuzz < datagrams:
                item = fuzzer.next()
                f.kinds[item.kind] += 1
                for d in item.datagrams:
                    deliver(d)
                if item.expect is None:
                    f.fuzz += 1
                    if f.fuzz % 256 == 0:
                        port.poll()  # the frame loop polls every frame; keep the queue short
                else:
                    f.valid_sent += 1
                    check(item)
            if through_socket:
                pacer.wait(0)
            port.poll()
            f.last_n = N_LAST
            for _ in range(N_LAST):
                item = fuzzer.valid()
                deliver(item.datagrams[0])
                f.last_ok += check(item)
    finally:
        port.close()
        sock.close()
    f.caught = port.errors
    if through_socket:
        f.escaped = port.errors  # only an exception escaping the dispatcher reaches handle_error
    f.drops = {"malformed": port.malformed, "bad_args": port.bad_args, "too_deep": port.too_deep}
    if through_socket:
        f.drops["lost_udp"] = pacer.lost
    return f


# --- the script ----------------------------------------------------------------------------------


def _blender_session():
    """bpy with the add-on registered from the source tree, as bench/receiver.py does."""
    os.environ.setdefault("BLENDER_USER_RESOURCES", tempfile.mkdtemp(prefix="facemocap-fuzz-"))
    import bpy

    import blender_receiver
    from blender_receiver import session

    bpy.ops.wm.read_factory_settings(use_empty=True)
    blender_receiver.register()
    return session, bpy.context.scene


def print_table(all_figures: list[Figures], datagrams: int, seed: int) -> None:
    mb = 1024 * 1024
    rows = [
        ("fuzz datagrams", lambda f: f"{f.fuzz:,}"),
        ("valid frames sent", lambda f: f"{f.valid_sent:,}"),
        ("seconds", lambda f: f"{f.seconds:.1f}"),
        ("datagrams / s", lambda f: f"{f.rate:,.0f}"),
        ("exceptions escaping", lambda f: f"{f.escaped}"),
        ("exceptions caught inside", lambda f: f"{f.caught}"),
        ("log records (warning+)", lambda f: f"{f.log_records}"),
        ("NaN / inf out or applied", lambda f: f"{f.non_finite}"),
        ("degenerate rotations", lambda f: f"{f.degenerate}"),
        ("valid intact", lambda f: f"{f.valid_ok:,}"),
        ("valid wrong values", lambda f: f"{f.valid_wrong}"),
        ("valid lost", lambda f: f"{f.valid_lost}"),
        (f"last {N_LAST} valid applied", lambda f: f"{f.last_ok}/{f.last_n}"),
    ]
    categories = []
    for f in all_figures:
        categories += [c for c in f.drops if c not in categories]
    rows += [(f"dropped: {c}", lambda f, c=c: f"{f.drops[c]:,}" if c in f.drops else "-") for c in categories]
    rows += [
        ("RSS before (MB)", lambda f: f"{f.rss_before / mb:.1f}"),
        ("RSS after (MB)", lambda f: f"{f.rss_after / mb:.1f}"),
    ]
    width = max(len(r[0]) for r in rows) + 2
    print(f"facemocap fuzz: {datagrams:,} fuzz datagrams per layer, seed {seed}")
    print(" " * width + "".join(f"{f.layer:>13}" for f in all_figures))
    for label, cell in rows:
        print(f"{label:<{width}}" + "".join(f"{cell(f):>13}" for f in all_figures))
    kinds = list(FUZZ_KINDS) + ["valid_vmc", "valid_landmarks", "valid_calibrate"]
    print("\ndatagram kinds sent")
    for kind in kinds:
        if any(f.kinds.get(kind) for f in all_figures):
            print(f"  {kind:<{width - 2}}" + "".join(f"{f.kinds.get(kind, 0):>13,}" for f in all_figures))
    for f in all_figures:
        for note in f.notes:
            print(f"{f.layer}: {note}")
        for sample in f.log_samples:
            print(f"{f.layer}: logged {sample}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datagrams", type=int, default=100_000, help="fuzz datagrams per layer")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--layers", default="feed,socket,blender,control",
                        help="comma-separated: feed, socket, blender, control (control = dispatcher + socket)")
    args = parser.parse_args(argv)
    layers = [x.strip() for x in args.layers.split(",") if x.strip()]
    results = []
    for layer in layers:
        if layer == "feed":
            results.append(run_feed(args.datagrams, args.seed))
        elif layer == "socket":
            results.append(run_socket(args.datagrams, args.seed))
        elif layer == "blender":
            session, scene = _blender_session()
            results.append(run_blender(args.datagrams, args.seed, session, scene))
        elif layer == "control":
            results.append(run_control(args.datagrams, args.seed))
            results.append(run_control(args.datagrams, args.seed, through_socket=True))
        else:
            parser.error(f"unknown layer {layer!r}")
    print_table(results, args.datagrams, args.seed)
    bad = [f.layer for f in results if f.escaped or f.caught or f.log_records or f.non_finite or f.degenerate
           or f.valid_wrong or f.last_ok != f.last_n]
    if bad:
        print(f"FAILED: {', '.join(bad)}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
