"""The channel catalogue and the map stage.

Every value a preset can send is a *channel*: the ARKit shapes, the VRM presets, head
and eye angles, VRCFaceTracking's Unified Expressions (bridge.outputs.unified), VRChat's
eye values. Each is a fixed linear combination of the base vector: the sanitized
FaceState vector plus a few computed extras. ChannelMap then applies a preset's gain,
offset, curve and clamp, vectorised.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..state import ARKIT_INDEX, ARKIT_NAMES, VRM0_INDEX, VRM0_NAMES, VRM1_FROM_VRM0, FaceState, pascal_case
from .unified import NAMES as UNIFIED_NAMES
from .unified import SIGNED as UNIFIED_SIGNED
from .unified import unified_values


# Index of each FaceState.vector() entry (see FaceState._SLICES), plus the computed extras.
_HEAD, _POS, _EYES = 68, 71, 74            # yaw pitch roll | x y z | ly lp ry rp
_SURPRISED = FaceState.SIZE                # VRM 1.0 "surprised" (not linear in the state)
_UNIFIED = _SURPRISED + 1                  # VRCFT's parameters (some are max / min / tan of the state)
BASE_SIZE = _UNIFIED + len(UNIFIED_NAMES)


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
    for k, side in enumerate(("Left", "Right")):
        add(f"vrc{side}EyePitch", "vrchat", [(_EYES + 2 * k + 1, -1.0)], low=-90.0, high=90.0, restyle=True,
            unit="deg")
        add(f"vrc{side}EyeYaw", "vrchat", [(_EYES + 2 * k, -1.0)], low=-90.0, high=90.0, restyle=True, unit="deg")

    # VRCFaceTracking's Unified Expressions v2 parameters, computed as VRCFT does
    # (bridge.outputs.unified); signed ones are -1..1.
    for i, name in enumerate(UNIFIED_NAMES):
        add("v2/" + name, "unified", [(_UNIFIED + i, 1.0)], low=-1.0 if name in UNIFIED_SIGNED else 0.0)
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
# "tracking" is OSC's bool: T while a face is tracked, F while none is.
SPECIAL_ARGS = {"found": "i", "calibration": "i", "time": "f", "tracking": "T"}


def channel(name: str) -> Channel:
    return _LOOKUP[name]


def base_vector(state: FaceState, *, extras: bool = True, unified: bool = True) -> np.ndarray:
    """The sanitized state vector plus the computed extras: what channels are made of.
    extras / unified False: zeros in place of all extras / of VRCFT's (cheaper)."""
    s = state.sanitized()
    if not extras:
        return np.concatenate([s.vector(), np.zeros(BASE_SIZE - FaceState.SIZE)])
    b = s.blendshapes
    brows_up = (b[ARKIT_INDEX["browInnerUp"]] + (b[ARKIT_INDEX["browOuterUpLeft"]]
                                                 + b[ARKIT_INDEX["browOuterUpRight"]]) / 2.0) / 2.0
    widened = max((b[ARKIT_INDEX["eyeWideLeft"]] + b[ARKIT_INDEX["eyeWideRight"]]) / 2.0, b[ARKIT_INDEX["jawOpen"]])
    surprised = min(max(brows_up * (0.5 + 0.5 * widened), 0.0), 1.0)   # as bridge.state.vrm1_values
    vrcft = unified_values(b, s.eye_angles) if unified else np.zeros(len(UNIFIED_NAMES))
    return np.concatenate([s.vector(), [surprised], vrcft])


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
        self.needs_unified = any(k >= _UNIFIED for c in channels for k, _ in c.terms)

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

