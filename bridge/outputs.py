"""Output presets: what goes to a receiver, in which dialect. Never touches sockets.

A preset is a TOML file (the shipped ones are in the repository's presets/ folder,
installed as bridge/presets). Loading one validates every key and fails with a
PresetError naming the file and the key. A loaded Preset builds an encoder:

    encoder = preset.encoder()
    datagrams = encoder.encode(state, time=t, tracking=True, calibration_state=3,
                               landmarks=None, image_size=None, frame_index=None)

Three stages, each cheap:

* channels: every value a preset can send is a *channel* of the catalogue below
  (the ARKit shapes, the VRM presets, head and eye angles, VRCFaceTracking's
  Unified Expressions, VRChat's eye values). Each is a fixed linear combination of
  the sanitized FaceState vector, so a preset's channels are one gather plus one
  small matrix product.
* map (ChannelMap): per channel gain, offset, curve and clamp, vectorised; the
  identity parts are skipped, so the `vmc` preset sends exactly what VmcEncoder does.
* encode: VMC through bridge.vmc.VmcEncoder; plain OSC through OscFrame, which,
  like VmcEncoder, has python-osc build every message once and then only patches
  the changing 4-byte arguments; the raw landmarks through LandmarkChunks.
"""

from __future__ import annotations

import dataclasses
import math
import struct
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
from pythonosc.osc_message_builder import OscMessageBuilder

from .state import ARKIT_INDEX, ARKIT_NAMES, VRM0_INDEX, VRM0_NAMES, VRM1_FROM_VRM0, FaceState, pascal_case
from .vmc import BUNDLE_HEADER, CALIBRATED, DEFAULT_MAX_PACKET, VmcEncoder, VmcOptions, bone_rotations_from

DEFAULT_PRESET = "vmc"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_VMC_PORT = 39539
MAX_PACKET_RANGE = (128, 65507)   # 65507: the largest UDP payload over IPv4
MAX_NAME = 63                     # characters in a VMC name (what receivers accept)
LANDMARK_FLOATS = 3
_BUNDLE_ITEM = 4                  # the int32 size prefix of each bundle element
_ARG = 4                          # bytes of an OSC int32 or float32


class PresetError(Exception):
    """A preset that can't be used; the message is one line naming the file and key."""


# --------------------------------------------------------------------------- catalogue

# Index of each FaceState.vector() entry (see FaceState._SLICES), plus the computed extras.
_HEAD, _POS, _EYES = 68, 71, 74            # yaw pitch roll | x y z | ly lp ry rp
_SURPRISED = FaceState.SIZE                # VRM 1.0 "surprised" (not linear in the state)
BASE_SIZE = FaceState.SIZE + 1


@dataclass(frozen=True)
class Channel:
    """One value a preset can send: sum(coef * base[index]) + constant."""
    name: str                        # canonical name (what presets use)
    group: str
    low: float                       # natural range: the default clamp
    high: float
    restyle: bool                    # `names = "pascal" | "camel"` applies to it
    terms: tuple[tuple[int, float], ...]
    constant: float = 0.0
    unit: str = ""

    def styled(self, style: str) -> str:
        if not self.restyle:
            return self.name
        return pascal_case(self.name) if style == "pascal" else self.name[:1].lower() + self.name[1:]


def _catalogue() -> list[Channel]:
    out: list[Channel] = []
    b = ARKIT_INDEX

    def add(name, group, terms, constant=0.0, low=0.0, high=1.0, restyle=False, unit=""):
        out.append(Channel(name, group, low, high, restyle, tuple(terms), constant, unit))

    for name in ARKIT_NAMES:
        add(name, "arkit", [(b[name], 1.0)], restyle=True)
    for name in VRM0_NAMES:
        add(name, "vrm0", [(52 + VRM0_INDEX[name], 1.0)])
    for name, source in VRM1_FROM_VRM0.items():
        terms = [(52 + VRM0_INDEX[source], 1.0)] if source else [(_SURPRISED, 1.0)] if name == "surprised" else []
        add(name, "vrm1", terms)
    for i, name in enumerate(("headYaw", "headPitch", "headRoll")):
        add(name, "head", [(_HEAD + i, 1.0)], low=-180.0, high=180.0, restyle=True, unit="deg")
    for i, name in enumerate(("headX", "headY", "headZ")):
        add(name, "head", [(_POS + i, 1.0)], low=-100.0, high=100.0, restyle=True, unit="m")
    for i, name in enumerate(("leftEyeYaw", "leftEyePitch", "rightEyeYaw", "rightEyePitch")):
        add(name, "eyes", [(_EYES + i, 1.0)], low=-90.0, high=90.0, restyle=True, unit="deg")

    # VRChat's native eye tracking (/tracking/eye/...): pitch + = down, yaw + = the
    # user's right, degrees, relative to the head. Ours: pitch + = up, yaw + = own left.
    add("vrcEyesClosed", "vrchat", [(b["eyeBlinkLeft"], 0.5), (b["eyeBlinkRight"], 0.5)], restyle=True)
    add("vrcEyePitch", "vrchat", [(_EYES + 1, -0.5), (_EYES + 3, -0.5)], low=-90.0, high=90.0,
        restyle=True, unit="deg")
    add("vrcEyeYaw", "vrchat", [(_EYES + 0, -0.5), (_EYES + 2, -0.5)], low=-90.0, high=90.0,
        restyle=True, unit="deg")

    # VRCFaceTracking Unified Expressions v2 parameters (docs.vrcft.io, "Parameters";
    # ARKit equivalents from its "ARKit" compatibility table). Only what ARKit-style
    # values can express; signed ones are -1..1.
    def u(name, terms, constant=0.0, low=0.0, high=1.0):
        add("v2/" + name, "unified", [(b[n] if isinstance(n, str) else n, c) for n, c in terms], constant, low, high)

    for side in ("Left", "Right"):
        # EyeLid: 0 closed, 0.75 open, 1 widened.
        u(f"EyeLid{side}", [(f"eyeBlink{side}", -0.75), (f"eyeWide{side}", 0.25)], 0.75)
    u("EyeLid", [("eyeBlinkLeft", -0.375), ("eyeBlinkRight", -0.375),
                 ("eyeWideLeft", 0.125), ("eyeWideRight", 0.125)], 0.75)
    for side in ("Left", "Right"):
        u(f"EyeSquint{side}", [(f"eyeSquint{side}", 1.0)])
    u("EyeSquint", [("eyeSquintLeft", 0.5), ("eyeSquintRight", 0.5)])
    # Gaze, normalised: 45 degrees = 1; X + = looks to the user's right, Y + = up.
    u("EyeLeftX", [(_EYES + 0, -1 / 45)], low=-1.0)
    u("EyeLeftY", [(_EYES + 1, 1 / 45)], low=-1.0)
    u("EyeRightX", [(_EYES + 2, -1 / 45)], low=-1.0)
    u("EyeRightY", [(_EYES + 3, 1 / 45)], low=-1.0)
    u("EyeX", [(_EYES + 0, -0.5 / 45), (_EYES + 2, -0.5 / 45)], low=-1.0)
    u("EyeY", [(_EYES + 1, 0.5 / 45), (_EYES + 3, 0.5 / 45)], low=-1.0)
    for side in ("Left", "Right"):
        u(f"BrowDown{side}", [(f"browDown{side}", 1.0)])
        u(f"BrowOuterUp{side}", [(f"browOuterUp{side}", 1.0)])
        u(f"BrowExpression{side}", [("browInnerUp", 0.5), (f"browOuterUp{side}", 0.5), (f"browDown{side}", -1.0)],
          low=-1.0)
    u("BrowInnerUp", [("browInnerUp", 1.0)])
    for side in ("Left", "Right"):
        u(f"NoseSneer{side}", [(f"noseSneer{side}", 1.0)])
        u(f"CheekSquint{side}", [(f"cheekSquint{side}", 1.0)])
        u(f"CheekPuffSuck{side}", [("cheekPuff", 1.0)], low=-1.0)
    u("NoseSneer", [("noseSneerLeft", 0.5), ("noseSneerRight", 0.5)])
    u("CheekSquint", [("cheekSquintLeft", 0.5), ("cheekSquintRight", 0.5)])
    u("CheekPuffSuck", [("cheekPuff", 1.0)], low=-1.0)
    u("JawOpen", [("jawOpen", 1.0)])
    u("MouthClosed", [("mouthClose", 1.0)])
    u("JawX", [("jawRight", 1.0), ("jawLeft", -1.0)], low=-1.0)
    u("JawZ", [("jawForward", 1.0)], low=-1.0)
    u("LipSuckUpper", [("mouthRollUpper", 1.0)])
    u("LipSuckLower", [("mouthRollLower", 1.0)])
    u("LipSuck", [("mouthRollUpper", 0.5), ("mouthRollLower", 0.5)])
    u("LipFunnel", [("mouthFunnel", 1.0)])
    u("LipPucker", [("mouthPucker", 1.0)])
    for side in ("Left", "Right"):
        for shape in ("UpperUp", "LowerDown", "Smile", "Frown", "Stretch", "Dimple", "Press"):
            u(f"Mouth{shape}{side}", [(f"mouth{shape}{side}", 1.0)])
    u("MouthUpperUp", [("mouthUpperUpLeft", 0.5), ("mouthUpperUpRight", 0.5)])
    u("MouthLowerDown", [("mouthLowerDownLeft", 0.5), ("mouthLowerDownRight", 0.5)])
    u("MouthOpen", [("mouthUpperUpLeft", 0.25), ("mouthUpperUpRight", 0.25),
                    ("mouthLowerDownLeft", 0.25), ("mouthLowerDownRight", 0.25)])
    u("MouthRaiserUpper", [("mouthShrugUpper", 1.0)])
    u("MouthRaiserLower", [("mouthShrugLower", 1.0)])
    u("MouthX", [("mouthRight", 1.0), ("mouthLeft", -1.0)], low=-1.0)
    for side in ("Left", "Right"):
        u(f"MouthSad{side}", [(f"mouthFrown{side}", 0.5), (f"mouthStretch{side}", 0.5)])
        u(f"SmileFrown{side}", [(f"mouthSmile{side}", 1.0), (f"mouthFrown{side}", -1.0)], low=-1.0)
        u(f"SmileSad{side}", [(f"mouthSmile{side}", 1.0), (f"mouthFrown{side}", -0.5), (f"mouthStretch{side}", -0.5)],
          low=-1.0)
    u("TongueOut", [("tongueOut", 1.0)])
    return out


CHANNELS: tuple[Channel, ...] = tuple(_catalogue())
GROUPS: dict[str, tuple[Channel, ...]] = {}
for _c in CHANNELS:
    GROUPS.setdefault(_c.group, ())
    GROUPS[_c.group] += (_c,)
# Channel names as presets may write them: the canonical name, and for restylable
# channels also their pascal / camel spelling. Unambiguous by construction (checked).
_LOOKUP: dict[str, Channel] = {}
for _c in CHANNELS:
    for _key in {_c.name, _c.styled("pascal"), _c.styled("camel")}:
        assert _key not in _LOOKUP or _LOOKUP[_key] is _c, f"channel name clash: {_key}"
        _LOOKUP[_key] = _c
# Head and eye angles: VMC bones read them (so gain etc. on them turn the bones too).
_BONE_CHANNELS = ("headYaw", "headPitch", "headRoll", "leftEyeYaw", "leftEyePitch", "rightEyeYaw", "rightEyePitch")
# Message arguments that are not channels: type tag and meaning.
SPECIAL_ARGS = {"found": "i", "calibration": "i", "time": "f"}


def channel(name: str) -> Channel:
    return _LOOKUP[name]


def base_vector(state: FaceState) -> np.ndarray:
    """The sanitized state vector plus the computed extras: what channels are made of."""
    s = state.sanitized()
    b = s.blendshapes
    brows_up = (b[ARKIT_INDEX["browInnerUp"]] + (b[ARKIT_INDEX["browOuterUpLeft"]]
                                                 + b[ARKIT_INDEX["browOuterUpRight"]]) / 2.0) / 2.0
    widened = max((b[ARKIT_INDEX["eyeWideLeft"]] + b[ARKIT_INDEX["eyeWideRight"]]) / 2.0, b[ARKIT_INDEX["jawOpen"]])
    surprised = min(max(brows_up * (0.5 + 0.5 * widened), 0.0), 1.0)   # as bridge.state.vrm1_values
    return np.concatenate([s.vector(), [surprised]])


# --------------------------------------------------------------------------- map stage

@dataclass(frozen=True)
class Curve:
    kind: str = "linear"      # "linear", "smoothstep", "gamma"
    gamma: float = 1.0

    def describe(self) -> str:
        return f"gamma {self.gamma:g}" if self.kind == "gamma" else self.kind


@dataclass(frozen=True)
class ChannelSettings:
    gain: float = 1.0
    offset: float = 0.0
    curve: Curve = Curve()
    clamp: tuple[float, float] | None = None   # None: the channel's natural range


class ChannelMap:
    """Base vector -> the listed channels' values: channel = gain * value + offset, then
    the curve (on the magnitude, clipped to 0..1, sign kept), then clamp. Vectorised;
    steps that are the identity for every channel are skipped."""

    def __init__(self, channels: list[Channel], settings: list[ChannelSettings]):
        n = len(channels)
        self.channels = channels
        direct = [i for i, c in enumerate(channels) if len(c.terms) == 1 and c.terms[0][1] == 1.0 and c.constant == 0]
        self._direct_pos = np.array(direct, dtype=np.intp)
        self._direct_src = np.array([channels[i].terms[0][0] for i in direct], dtype=np.intp)
        linear = sorted(set(range(n)) - set(direct))
        self._linear_pos = np.array(linear, dtype=np.intp)
        if linear:
            used = sorted({k for i in linear for k, _ in channels[i].terms})
            col = {k: j for j, k in enumerate(used)}
            self._linear_cols = np.array(used, dtype=np.intp)
            self._matrix = np.zeros((len(linear), len(used)))
            for row, i in enumerate(linear):
                for k, coef in channels[i].terms:
                    self._matrix[row, col[k]] += coef
            self._constant = np.array([channels[i].constant for i in linear])
        gain = np.array([s.gain for s in settings], dtype=float)
        offset = np.array([s.offset for s in settings], dtype=float)
        affine = np.flatnonzero((gain != 1.0) | (offset != 0.0))
        self._affine_pos, self._gain, self._offset = affine, gain[affine], offset[affine]
        self._smooth_pos = np.array([i for i, s in enumerate(settings) if s.curve.kind == "smoothstep"], dtype=np.intp)
        gamma = [i for i, s in enumerate(settings) if s.curve.kind == "gamma" and s.curve.gamma != 1.0]
        self._gamma_pos = np.array(gamma, dtype=np.intp)
        self._gamma = np.array([settings[i].curve.gamma for i in gamma], dtype=float)
        clamps = [s.clamp or (c.low, c.high) for c, s in zip(channels, settings)]
        self._low = np.array([lo for lo, _ in clamps], dtype=float)
        self._high = np.array([hi for _, hi in clamps], dtype=float)
        self.needs_extras = any(k >= FaceState.SIZE for c in channels for k, _ in c.terms)

    def __call__(self, base: np.ndarray) -> np.ndarray:
        v = np.empty(len(self.channels))
        v[self._direct_pos] = base[self._direct_src]
        if len(self._linear_pos):
            v[self._linear_pos] = self._matrix @ base[self._linear_cols] + self._constant
        if len(self._affine_pos):
            v[self._affine_pos] = v[self._affine_pos] * self._gain + self._offset
        if len(self._smooth_pos):
            x = v[self._smooth_pos]
            a = np.minimum(np.abs(x), 1.0)
            v[self._smooth_pos] = np.sign(x) * a * a * (3.0 - 2.0 * a)
        if len(self._gamma_pos):
            x = v[self._gamma_pos]
            v[self._gamma_pos] = np.sign(x) * np.minimum(np.abs(x), 1.0) ** self._gamma
        np.clip(v, self._low, self._high, out=v)
        return v


# --------------------------------------------------------------------------- OSC framing

def _message(address: str, args: list[tuple[str, object]]):
    builder = OscMessageBuilder(address)
    for kind, value in args:
        builder.add_arg(value, kind)
    return builder.build()


def split_datagrams(sizes: list[int], *, bundle: bool, max_packet: int) -> list[list[int]]:
    """Message indices per datagram, packed greedily in order (bundles), or one each.
    Raises ValueError naming the size needed when a message can't fit."""
    if not sizes:
        return []
    if not bundle:
        if max(sizes) > max_packet:
            raise ValueError(f"the largest message needs {max(sizes)} bytes")
        return [[i] for i in range(len(sizes))]
    need = len(BUNDLE_HEADER) + _BUNDLE_ITEM + max(sizes)
    if need > max_packet:
        raise ValueError(f"a bundle of the largest message needs {need} bytes")
    groups, used = [], max_packet
    for i, size in enumerate(sizes):
        if used + _BUNDLE_ITEM + size > max_packet:
            groups.append([])
            used = len(BUNDLE_HEADER)
        groups[-1].append(i)
        used += _BUNDLE_ITEM + size
    return groups


class OscFrame:
    """A fixed list of messages whose arguments are all int32 (`i`) or float32 (`f`):
    python-osc builds them once, pack() patches the values into a copy."""

    def __init__(self, messages: list[tuple[str, str]], *, bundle: bool, max_packet: int):
        """messages: (address, type tags), e.g. ("/face/head/rotation", "fff")."""
        built = [_message(a, [(t, 0 if t == "i" else 0.0) for t in tags]) for a, tags in messages]
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
                for k, tag in enumerate(tags):   # the arguments are the message's last bytes
                    (f_offsets if tag == "f" else i_offsets).append(pos - _ARG * (len(tags) - k))
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


# --------------------------------------------------------------------------- presets

@dataclass(frozen=True)
class OscMessageSpec:
    address: str
    args: tuple[str, ...]     # channel names (f) or SPECIAL_ARGS


@dataclass(frozen=True)
class Preset:
    name: str
    source: str                  # the file, as errors name it
    description: str
    protocol: str                # "vmc" | "osc"
    host: str
    port: int
    bundle: bool
    max_packet: int
    names: str                   # "pascal" | "camel"
    prefix: str
    channels: tuple[Channel, ...]          # sent as values: Blend/Val or the `blend` address
    output_names: tuple[str, ...]          # their names on the wire (style + renames)
    settings: dict = field(default_factory=dict)   # Channel -> ChannelSettings (non-default only)
    blend: str | None = None               # osc: address template with {name}
    messages: tuple[OscMessageSpec, ...] = ()
    landmarks: tuple[str, int] | None = None   # osc: (address, chunk)

    @property
    def used_channels(self) -> tuple[Channel, ...]:
        """Every channel the encoder computes: the sent ones, then message arguments and bones."""
        out = list(self.channels)
        extra = [channel(n) for n in _BONE_CHANNELS] if self.protocol == "vmc" else \
            [channel(a) for m in self.messages for a in m.args if a not in SPECIAL_ARGS]
        for c in extra:
            if c not in out:
                out.append(c)
        return tuple(out)

    def encoder(self):
        return VmcPresetEncoder(self) if self.protocol == "vmc" else OscPresetEncoder(self)

    def blend_address(self, name: str) -> str:
        return self.blend.replace("{prefix}", self.prefix).replace("{name}", name)


class _PresetEncoder:
    def __init__(self, preset: Preset):
        self.preset = preset
        used = list(preset.used_channels)
        self._map = ChannelMap(used, [preset.settings.get(c, ChannelSettings()) for c in used])
        self._index = {c.name: i for i, c in enumerate(used)}
        self.wants_landmarks = False

    def channel_values(self, state: FaceState) -> np.ndarray:
        """The used channels' mapped values (preset.used_channels order)."""
        base = base_vector(state) if self._map.needs_extras else \
            np.concatenate([state.sanitized().vector(), [0.0]])
        return self._map(base)


class VmcPresetEncoder(_PresetEncoder):
    """The VMC frame (OK, T, Root, four bones, Blend/Val per channel, Apply) of bridge.vmc."""

    def __init__(self, preset: Preset):
        super().__init__(preset)
        options = VmcOptions(bundle=preset.bundle, max_packet=preset.max_packet)
        try:
            self._vmc = VmcEncoder(options, blend_names=preset.output_names)
        except ValueError as error:
            raise PresetError(f"{preset.source}: key 'max_packet' is too small: {error}") from None
        self._bones = np.array([self._index[n] for n in _BONE_CHANNELS])
        self._sent = np.arange(len(preset.channels))

    def encode(self, state: FaceState, *, time: float, tracking: bool, calibration_state: int = CALIBRATED,
               landmarks=None, image_size=None, frame_index=None) -> list[bytes]:
        v = self.channel_values(state)
        angles = v[self._bones]
        floats = np.concatenate([[time if math.isfinite(time) else 0.0],
                                 bone_rotations_from(angles[:3], angles[3:].reshape(2, 2)).ravel(),
                                 v[self._sent]])
        return self._vmc.encode_floats(floats, tracking=tracking, calibration_state=calibration_state)


class OscPresetEncoder(_PresetEncoder):
    """Plain OSC: the extra messages in preset order, then one `blend` message per channel,
    then (with a face) the landmark chunks."""

    def __init__(self, preset: Preset):
        super().__init__(preset)
        layout, f_src, i_src = [], [], []
        time_slot = len(self._index)              # floats are gathered from [values..., time]
        for m in preset.messages:
            tags = "".join(SPECIAL_ARGS.get(a, "f") for a in m.args)
            layout.append((m.address, tags))
            for a in m.args:
                if a == "time":
                    f_src.append(time_slot)
                elif a in SPECIAL_ARGS:
                    i_src.append(("found", "calibration").index(a))
                else:
                    f_src.append(self._index[channel(a).name])
        if preset.blend is not None:
            for i, name in enumerate(preset.output_names):
                layout.append((preset.blend_address(name), "f"))
                f_src.append(i)
        try:
            self._frame = OscFrame(layout, bundle=preset.bundle, max_packet=preset.max_packet)
        except ValueError as error:
            raise PresetError(f"{preset.source}: key 'max_packet' is too small: {error}") from None
        self._f_src = np.array(f_src, dtype=np.intp)
        self._i_src = np.array(i_src, dtype=np.intp)
        self._landmarks = LandmarkChunks(*preset.landmarks) if preset.landmarks else None
        self.wants_landmarks = self._landmarks is not None
        self._frames = 0

    def encode(self, state: FaceState, *, time: float, tracking: bool, calibration_state: int = CALIBRATED,
               landmarks=None, image_size=None, frame_index=None) -> list[bytes]:
        out = []
        if self._frame.spans:
            floats = np.append(self.channel_values(state), time if math.isfinite(time) else 0.0)[self._f_src]
            ints = np.array([1 if tracking else 0, calibration_state])[self._i_src]
            out = self._frame.pack(floats, ints)
        if self._landmarks is not None and landmarks is not None:
            index = self._frames if frame_index is None else frame_index
            out += self._landmarks.encode(landmarks, image_size, frame_index=index, time=time)
        self._frames += 1
        return out


# --------------------------------------------------------------------------- loading

_TOP_KEYS = ("description", "protocol", "host", "port", "bundle", "max_packet", "names", "prefix",
             "channels", "renames", "osc")
_CHANNEL_KEYS = ("include", "exclude", "defaults", "gain", "offset", "curve", "clamp")
_SETTING_KEYS = ("gain", "offset", "curve", "clamp")
_OSC_KEYS = ("blend", "messages", "landmarks")
_ADDRESS_FORBIDDEN = set(" #*,?[]{}")
GAIN_LIMIT = 1000.0
GAMMA_RANGE = (0.05, 20.0)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


class _Checker:
    """Checked access to a parsed preset; every error names the file and the dotted key."""

    def __init__(self, source: str):
        self.source = source

    def fail(self, message: str):
        raise PresetError(f"{self.source}: {message}")

    def bad(self, key: str, expected: str, value):
        self.fail(f"key '{key}' must be {expected}, got {_show(value)}")

    def table(self, data, key: str, allowed: tuple[str, ...]) -> dict:
        if not isinstance(data, dict):
            self.bad(key, "a table", data)
        for k in data:
            if k not in allowed:
                where = f"{key}.{k}" if key else k
                self.fail(f"unknown key '{where}' (expected one of: {', '.join(allowed)})")
        return data

    def string(self, value, key: str, *, empty: bool = False) -> str:
        if not isinstance(value, str) or (not empty and not value.strip()):
            self.bad(key, "a string" if empty else "a non-empty string", value)
        return value

    def choice(self, value, key: str, options: tuple[str, ...]) -> str:
        if value not in options:
            self.bad(key, " or ".join(f'"{o}"' for o in options), value)
        return value

    def integer(self, value, key: str, low: int, high: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            self.bad(key, "a whole number", value)
        if not low <= value <= high:
            self.fail(f"key '{key}' must be between {low} and {high}, got {value}")
        return value

    def number(self, value, key: str, low: float = -math.inf, high: float = math.inf) -> float:
        if not _is_number(value):
            self.bad(key, "a number", value)
        if not low <= value <= high:
            self.fail(f"key '{key}' must be between {low:g} and {high:g}, got {value:g}")
        return float(value)

    def boolean(self, value, key: str) -> bool:
        if not isinstance(value, bool):
            self.bad(key, "true or false", value)
        return value

    def strings(self, value, key: str) -> list[str]:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.bad(key, "a list of strings", value)
        return value

    def address(self, value: str, key: str) -> str:
        if not value.startswith("/") or not value.isascii() or not value.isprintable() \
                or _ADDRESS_FORBIDDEN & set(value) or "//" in value:
            self.fail(f"key '{key}' gives the OSC address {value!r}: an address starts with '/' and has "
                      f"printable ASCII without spaces, '//' or any of #*,?[]{{}}")
        return value

    def channel(self, value: str, key: str) -> Channel:
        if value not in _LOOKUP:
            hint = _suggest(value)
            self.fail(f"key '{key}' names an unknown channel {value!r}"
                      + (f" (did you mean {hint!r}?)" if hint else " (see `facemocap-osc presets` and the README)"))
        return _LOOKUP[value]

    def curve(self, value, key: str) -> Curve:
        if value in ("linear", "smoothstep"):
            return Curve(value)
        if isinstance(value, dict) and set(value) == {"gamma"}:
            return Curve("gamma", self.number(value["gamma"], f"{key}.gamma", *GAMMA_RANGE))
        self.bad(key, '"linear", "smoothstep" or { gamma = NUMBER }', value)

    def clamp(self, value, key: str) -> tuple[float, float]:
        if not (isinstance(value, list) and len(value) == 2 and all(_is_number(v) for v in value)):
            self.bad(key, "[low, high] (two numbers)", value)
        low, high = map(float, value)
        if not low < high:
            self.fail(f"key '{key}' must have low < high, got [{low:g}, {high:g}]")
        return low, high


def _show(value) -> str:
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, bool):
        return "true" if value else "false"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _suggest(name: str) -> str | None:
    import difflib
    found = difflib.get_close_matches(name, list(_LOOKUP), n=1, cutoff=0.75)
    return found[0] if found else None


def _dotted(*parts: str) -> str:
    # A key with characters TOML can't write bare (v2/JawOpen) is shown quoted, as in the file.
    return ".".join(p if p.replace("_", "").replace("-", "").isalnum() else f'"{p}"' for p in parts)


def preset_from_dict(data, *, name: str, source: str, overrides: dict | None = None) -> Preset:
    """Validate a parsed preset. overrides: {"bundle": bool, "names": style, "vrm_names": "0"|"1"},
    the command line's --no-bundle, --arkit-names and --vrm-names (the last two: VMC presets only)."""
    c = _Checker(source)
    data = dict(c.table(data, "", _TOP_KEYS))
    description = c.string(data.get("description", ""), "description") if "description" in data \
        else c.fail("missing key 'description'")
    protocol = c.choice(data.get("protocol"), "protocol", ("vmc", "osc")) if "protocol" in data \
        else c.fail("missing key 'protocol' (\"vmc\" or \"osc\")")
    host = c.string(data.get("host", DEFAULT_HOST), "host")
    if "port" in data:
        port = c.integer(data["port"], "port", 1, 65535)
    elif protocol == "vmc":
        port = DEFAULT_VMC_PORT
    else:
        c.fail("missing key 'port' (the receiver's UDP port)")
    overrides = overrides or {}
    bundle = c.boolean(data.get("bundle", True), "bundle")
    if "bundle" in overrides:
        bundle = overrides["bundle"]
    max_packet = c.integer(data.get("max_packet", DEFAULT_MAX_PACKET), "max_packet", *MAX_PACKET_RANGE)
    names = c.choice(data.get("names", "pascal"), "names", ("pascal", "camel"))
    if protocol == "vmc" and "names" in overrides:
        names = overrides["names"]
    prefix = c.string(data.get("prefix", ""), "prefix", empty=True)
    if protocol == "vmc" and "prefix" in data:
        c.fail("key 'prefix' is only for protocol = \"osc\"")
    if protocol == "vmc" and "osc" in data:
        c.fail("key 'osc' is only for protocol = \"osc\"")

    # -- which channels are sent
    ch = c.table(data.get("channels", {}), "channels", _CHANNEL_KEYS)
    include = c.strings(ch.get("include", []), "channels.include")
    if protocol == "vmc" and overrides.get("vrm_names") in ("0", "1"):
        wanted = "vrm" + overrides["vrm_names"]
        include = [wanted if g in ("vrm0", "vrm1") else g for g in include]
    exclude = c.strings(ch.get("exclude", []), "channels.exclude")

    def expand(entry: str, key: str) -> tuple[Channel, ...]:
        if entry in GROUPS:
            return GROUPS[entry]
        if entry not in _LOOKUP:
            hint = _suggest(entry)
            c.fail(f"key '{key}' names an unknown channel or group {entry!r}"
                   + (f" (did you mean {hint!r}?)" if hint else f" (groups: {', '.join(GROUPS)})"))
        return (_LOOKUP[entry],)

    sent: list[Channel] = []
    for i, entry in enumerate(include):
        for chan in expand(entry, f"channels.include[{i}]"):
            if chan not in sent:
                sent.append(chan)
    dropped = {chan for i, entry in enumerate(exclude) for chan in expand(entry, f"channels.exclude[{i}]")}
    sent = [chan for chan in sent if chan not in dropped]

    # -- osc addresses
    blend, messages, landmarks = None, (), None
    if protocol == "osc":
        osc = c.table(data.get("osc", {}), "osc", _OSC_KEYS)
        if "blend" in osc:
            blend = c.string(osc["blend"], "osc.blend")
            if "{name}" not in blend:
                c.fail("key 'osc.blend' must contain {name}, where each channel's name goes")
            c.address(blend.replace("{prefix}", prefix).replace("{name}", "x"), "osc.blend")
        elif sent:
            c.fail("key 'channels.include' lists channels but there is no 'osc.blend' address to send them to")
        raw = osc.get("messages", [])
        if not isinstance(raw, list):
            c.bad("osc.messages", "an array of tables ([[osc.messages]])", raw)
        specs = []
        for i, m in enumerate(raw):
            key = f"osc.messages[{i}]"
            m = c.table(m, key, ("address", "args"))
            if "address" not in m:
                c.fail(f"missing key '{key}.address'")
            address = c.address(c.string(m["address"], f"{key}.address").replace("{prefix}", prefix),
                                f"{key}.address")
            args = c.strings(m.get("args", []), f"{key}.args")
            if not args:
                c.fail(f"key '{key}.args' must list at least one channel (or found, calibration, time)")
            canonical = tuple(a if a in SPECIAL_ARGS else c.channel(a, f"{key}.args[{j}]").name
                              for j, a in enumerate(args))
            specs.append(OscMessageSpec(address, canonical))
        messages = tuple(specs)
        if "landmarks" in osc:
            lm = c.table(osc["landmarks"], "osc.landmarks", ("address", "chunk"))
            address = c.address(c.string(lm.get("address", "/facemocap/landmarks"), "osc.landmarks.address"),
                                "osc.landmarks.address")
            chunk = c.integer(lm.get("chunk", 100), "osc.landmarks.chunk", 1, 478)
            need = LandmarkChunks(address, chunk).message_size(chunk)
            if need > max_packet:
                c.fail(f"key 'osc.landmarks.chunk' is too large: {chunk} landmarks need {need} bytes, "
                       f"more than max_packet ({max_packet})")
            landmarks = (address, chunk)
        if not (sent or messages or landmarks):
            c.fail("the preset sends nothing: give channels.include with osc.blend, osc.messages or osc.landmarks")

    # -- names on the wire
    renames = data.get("renames", {})
    if not isinstance(renames, dict):
        c.bad("renames", "a table of channel = \"new name\"", renames)
    new_names: dict[Channel, str] = {}
    for key_name, value in renames.items():
        key = _dotted("renames", key_name)
        chan = c.channel(key_name, key)
        if chan not in sent:
            c.fail(f"key '{key}': channel {chan.name!r} is not sent by this preset (see channels.include)")
        new_names[chan] = _wire_name(c, c.string(value, key), key, protocol)
    output = [new_names.get(chan) or chan.styled(names) for chan in sent]
    seen: dict[str, Channel] = {}
    for chan, out in zip(sent, output):
        if out in seen:
            c.fail(f"channels {seen[out].name!r} and {chan.name!r} would both go out as {out!r}: "
                   f"rename one under [renames]")
        seen[out] = chan
        if protocol == "osc":
            c.address(blend.replace("{prefix}", prefix).replace("{name}", out), "osc.blend")
        else:
            _wire_name(c, out, "channels.include", protocol)

    # -- per-channel settings
    preset = Preset(name=name, source=source, description=description, protocol=protocol, host=host, port=port,
                    bundle=bundle, max_packet=max_packet, names=names, prefix=prefix, channels=tuple(sent),
                    output_names=tuple(output), blend=blend, messages=messages, landmarks=landmarks)
    # Defaults are for the sent channels; message arguments and VMC's bone angles
    # (also channels: gain etc. work on them) take only per-channel settings.
    defaults = c.table(ch.get("defaults", {}), "channels.defaults", _SETTING_KEYS)
    base = _setting_values(c, defaults, "channels.defaults")
    per: dict[Channel, dict] = {chan: dict(base) if chan in sent else {} for chan in preset.used_channels}
    for what in _SETTING_KEYS:
        table = ch.get(what, {})
        if not isinstance(table, dict):
            c.bad(f"channels.{what}", "a table of channel = value (defaults for all go in [channels.defaults])",
                  table)
        for key_name, value in table.items():
            key = _dotted("channels", what, key_name)
            chan = c.channel(key_name, key)
            checked = _setting_values(c, {what: value}, key, single=True)
            if chan not in per:
                c.fail(f"key '{key}': channel {chan.name!r} is not sent by this preset (see channels.include)")
            per[chan].update(checked)
    settings = {}
    for chan, values in per.items():
        s = ChannelSettings(**values)
        if s.curve.kind != "linear" and (chan.low < -1.0 or chan.high > 1.0):
            c.fail(f"a curve other than linear is only for channels in 0..1 or -1..1, and {chan.name!r} "
                   f"is in {chan.unit or 'units'} (key 'channels.curve' or 'channels.defaults.curve')")
        if s != ChannelSettings():
            settings[chan] = s
    return dataclasses.replace(preset, settings=settings)


def _setting_values(c: _Checker, table: dict, key: str, single: bool = False) -> dict:
    out = {}
    for what, value in table.items():
        k = key if single else f"{key}.{what}"
        if what == "gain":
            out["gain"] = c.number(value, k, -GAIN_LIMIT, GAIN_LIMIT)
        elif what == "offset":
            out["offset"] = c.number(value, k, -GAIN_LIMIT, GAIN_LIMIT)
        elif what == "curve":
            out["curve"] = c.curve(value, k)
        else:
            out["clamp"] = c.clamp(value, k)
    return out


def _wire_name(c: _Checker, name: str, key: str, protocol: str) -> str:
    if protocol == "osc":
        if not name.isascii() or not name.isprintable() or _ADDRESS_FORBIDDEN & set(name) or not name \
                or name.startswith("/") or name.endswith("/") or "//" in name:
            c.fail(f"key '{key}' gives the name {name!r}, which can't be part of an OSC address "
                   f"(printable ASCII, no spaces or #*,?[]{{}}, no leading, trailing or double '/')")
    elif not name or not name.isprintable() or len(name) > MAX_NAME:
        c.fail(f"key '{key}' gives the name {name!r}: VMC names are 1-{MAX_NAME} printable characters")
    return name


# --------------------------------------------------------------------------- files

def presets_dir() -> Path:
    """The shipped presets: bridge/presets when installed, else the checkout's presets/."""
    installed = resources.files("bridge").joinpath("presets")
    if installed.is_dir():
        return Path(str(installed))
    return Path(__file__).resolve().parent.parent / "presets"


def shipped_presets() -> list[str]:
    folder = presets_dir()
    return sorted(p.stem for p in folder.glob("*.toml")) if folder.is_dir() else []


def _is_path(text: str) -> bool:
    return text.endswith(".toml") or "/" in text or "\\" in text


def load_preset(name_or_path: str, *, overrides: dict | None = None) -> Preset:
    """A shipped preset by name (vmc, osc, ...) or a .toml file by path."""
    if _is_path(name_or_path):
        path, source, name = Path(name_or_path), name_or_path, Path(name_or_path).stem
    else:
        path, source, name = presets_dir() / f"{name_or_path}.toml", f"presets/{name_or_path}.toml", name_or_path
        if not path.is_file():
            raise PresetError(f"unknown preset {name_or_path!r} (shipped: {', '.join(shipped_presets()) or 'none'}; "
                              f"or give the path of a .toml file)")
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise PresetError(f"{source}: file not found") from None
    except (OSError, UnicodeDecodeError) as error:
        raise PresetError(f"{source}: cannot read: {getattr(error, 'strerror', None) or error}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise PresetError(f"{source}: not valid TOML: {error}") from None
    return preset_from_dict(data, name=name, source=source, overrides=overrides)
