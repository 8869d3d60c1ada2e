"""Stream names -> any rig's shape keys: naming schemes, mapping rows, mapping files.

Plain Python (stdlib + numpy): the add-on is installed into Blender on its own, so
this must import neither bpy nor the tracker's `bridge` package.

* `detect_scheme(key_names)` recognises how a mesh's shape keys are named (ARKit
  camelCase / PascalCase / `_L` `_R`, Character Creator 4, CC's A01..A52 ARKit set,
  VRoid `Fcl_*`, VRM 0.x presets, VRM 1.0 expressions) and fills in the mapping rows
  for the keys that exist.
* `compile_rows(rows, key_names, limits)` turns rows into a `CompiledMapping`, whose
  `apply()` (live, per frame) and `apply_columns()` (a whole take, numpy) give the
  same numbers.
* `save_mapping` / `load_mapping` write and read a mapping as TOML or JSON, so one
  mapping can be shared across characters.

Sides: ARKit's Left is the subject's own left, and the tracker sends it that way.
CC4 and VRoid `_L` is the character's own left as well (CC4: cc_blender_tools maps
eyeBlinkLeft -> Eye_Blink_L and eyeLookInLeft -> Eye_L_Look_R, the left eye turning
towards the character's right; VRoid: `J_Bip_L_*` bones are the humanoid Left*
bones, and VRoid's Blink_L clip closes Fcl_EYE_Close_L). So Left maps to _L, with no
mirroring; mirroring is the tracker's job (its --mirror).
"""

from __future__ import annotations

import json
import math
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

# The 52 ARKit blendshapes in ARKit's order: the same tuple as bridge.state.ARKIT_NAMES
# (a test checks), copied because the add-on cannot import the tracker.
ARKIT_NAMES = (
    "eyeBlinkLeft", "eyeLookDownLeft", "eyeLookInLeft", "eyeLookOutLeft", "eyeLookUpLeft",
    "eyeSquintLeft", "eyeWideLeft",
    "eyeBlinkRight", "eyeLookDownRight", "eyeLookInRight", "eyeLookOutRight", "eyeLookUpRight",
    "eyeSquintRight", "eyeWideRight",
    "jawForward", "jawLeft", "jawRight", "jawOpen",
    "mouthClose", "mouthFunnel", "mouthPucker", "mouthLeft", "mouthRight",
    "mouthSmileLeft", "mouthSmileRight", "mouthFrownLeft", "mouthFrownRight",
    "mouthDimpleLeft", "mouthDimpleRight", "mouthStretchLeft", "mouthStretchRight",
    "mouthRollLower", "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper",
    "mouthPressLeft", "mouthPressRight", "mouthLowerDownLeft", "mouthLowerDownRight",
    "mouthUpperUpLeft", "mouthUpperUpRight",
    "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight",
    "cheekPuff", "cheekSquintLeft", "cheekSquintRight",
    "noseSneerLeft", "noseSneerRight",
    "tongueOut",
)

# The VRM 0.x presets the tracker can send (bridge.state.VRM0_NAMES; its default `vmc`
# preset sends all but Joy, Angry, Sorrow and Fun), and the VRM 1.0 name of each.
VRM0_NAMES = (
    "A", "I", "U", "E", "O",
    "Blink", "Blink_L", "Blink_R",
    "Joy", "Angry", "Sorrow", "Fun",
    "LookUp", "LookDown", "LookLeft", "LookRight",
)
VRM1_FROM_VRM0 = {
    "A": "aa", "I": "ih", "U": "ou", "E": "ee", "O": "oh",
    "Blink": "blink", "Blink_L": "blinkLeft", "Blink_R": "blinkRight",
    "Joy": "happy", "Angry": "angry", "Sorrow": "sad", "Fun": "relaxed",
    "LookUp": "lookUp", "LookDown": "lookDown", "LookLeft": "lookLeft", "LookRight": "lookRight",
}
# VRM 1.0 expressions with no 0.x preset (a VRM 1.0 sender's `surprised`, `neutral`).
VRM1_ONLY = ("surprised", "neutral")

MAX_STRENGTH = 10.0
_LOWER_CACHE_LIMIT = 4096  # a sender cycling through names must not grow the cache forever
_CHUNK = 4096  # frames per block in apply_columns: (names x 4096) floats stay in the CPU cache


class MappingError(ValueError):
    """A mapping file that cannot be used; the message is one line naming the file."""


# ---------------------------------------------------------------------------------
# Rows


def _check_name(value) -> str | None:
    if not isinstance(value, str) or not value.strip():
        return "must be a non-empty string"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: no file format can hold it
        return "must be valid text"
    return None


def _check_number(value) -> float | None:
    # bool is an int in Python; `strength = true` is a typo, not 1.0
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _row_problem(stream, key, strength, curve) -> str | None:
    """'field: what is wrong' for the first bad field, or None."""
    for name, value in (("stream", stream), ("key", key)):
        problem = _check_name(value)
        if problem:
            return f"{name}: {problem}"
    s = _check_number(strength)
    if s is None or not -MAX_STRENGTH <= s <= MAX_STRENGTH:
        return f"strength: must be a number from {-MAX_STRENGTH:g} to {MAX_STRENGTH:g}"
    c = _check_number(curve)
    if c is None or c <= 0.0:
        return "curve: must be a number > 0"
    return None


@dataclass(frozen=True)
class Row:
    """Stream name `stream` drives shape key `key`: clamp(value, 0, 1) ** curve * strength.

    curve is a response exponent: 1 linear, > 1 eases in (small values shrink), < 1
    eases out. A negative strength subtracts from the key (several rows onto one key
    add up before the key's slider range clamps them).
    """

    stream: str
    key: str
    strength: float = 1.0
    curve: float = 1.0

    def __post_init__(self):
        problem = _row_problem(self.stream, self.key, self.strength, self.curve)
        if problem:
            raise ValueError(problem)
        # ints are accepted and kept as floats, so equal rows compare and save equal
        object.__setattr__(self, "strength", float(self.strength))
        object.__setattr__(self, "curve", float(self.curve))


# ---------------------------------------------------------------------------------
# Naming schemes

# A target is one shape key: the spellings it may have (the first is the canonical
# one) and its weight. A stream has alternatives, tried in order; the first one with
# any key present is used (CC4 Extended's four funnel quadrants, else CC4 Standard's
# one Mouth_Funnel).
_Target = tuple[tuple[str, ...], float]
_Alternatives = tuple[tuple[_Target, ...], ...]


@dataclass(frozen=True)
class _Scheme:
    id: str
    label: str
    streams: tuple[str, ...]  # what found / total / unmatched count
    table: dict[str, _Alternatives]  # stream name -> alternatives (may hold more streams)


def _parse_table(text: str) -> dict[str, _Alternatives]:
    """Lines `stream  Key Key*0.5 | Key`: keys of one alternative, `|` between them."""
    table: dict[str, _Alternatives] = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        stream, rest = line.split(None, 1)
        alternatives = []
        for part in rest.split("|"):
            targets = []
            for item in part.split():
                key, _, weight = item.partition("*")
                targets.append(((key,), float(weight) if weight else 1.0))
            alternatives.append(tuple(targets))
        table[stream] = tuple(alternatives)
    return table


def _pascal(name: str) -> str:
    return name[:1].upper() + name[1:]


def _split_side(name: str) -> tuple[str, str] | None:
    for word, letter in (("Left", "L"), ("Right", "R")):
        if name.endswith(word):
            return name[: -len(word)], letter
    return None


def _arkit_lr_table() -> dict[str, _Alternatives]:
    """eyeBlink_L / EyeBlink_L (and, matched loosely, eyeBlinkL, eyeBlink.L, eye_blink_l).
    jawLeft / mouthLeft read `jaw_L` first, else keep their full name."""
    table: dict[str, _Alternatives] = {}
    for name in ARKIT_NAMES:
        side = _split_side(name)
        if side is None:
            table[name] = ((((name, _pascal(name)), 1.0),),)
            continue
        base, letter = side
        short = ((f"{base}_{letter}", f"{_pascal(base)}_{letter}"), 1.0)
        if base in ("jaw", "mouth"):
            table[name] = ((short,), (((name, _pascal(name)), 1.0),))
        else:
            table[name] = ((short,),)
    return table


# Character Creator 4 / iClone facial morphs, ARKit -> CC4 "Extended" (ExPlus), with
# CC4 "Standard"'s single keys as the alternative where Extended splits a shape in
# quadrants or sides. Source: soupday/cc_blender_tools, facerig_data.py,
# ARKIT_SHAPE_KEY_TARGETS["EXT"] and ["STD"] (https://github.com/soupday/cc_blender_tools,
# commit c8d92e869d42a2479e10c51b4b923458fbbe1e7a); tongueOut -> Tongue_Out from the
# same file's Extended expression list (that add-on drives the tongue by bone instead).
_CC4_TABLE = """
eyeBlinkLeft        Eye_Blink_L
eyeLookDownLeft     Eye_L_Look_Down
eyeLookInLeft       Eye_L_Look_R
eyeLookOutLeft      Eye_L_Look_L
eyeLookUpLeft       Eye_L_Look_Up
eyeSquintLeft       Eye_Squint_L
eyeWideLeft         Eye_Wide_L
eyeBlinkRight       Eye_Blink_R
eyeLookDownRight    Eye_R_Look_Down
eyeLookInRight      Eye_R_Look_L
eyeLookOutRight     Eye_R_Look_R
eyeLookUpRight      Eye_R_Look_Up
eyeSquintRight      Eye_Squint_R
eyeWideRight        Eye_Wide_R
jawForward          Jaw_Forward
jawLeft             Jaw_L
jawRight            Jaw_R
jawOpen             Jaw_Open
mouthClose          Mouth_Close
mouthFunnel         Mouth_Funnel_Up_L Mouth_Funnel_Up_R Mouth_Funnel_Down_L Mouth_Funnel_Down_R | Mouth_Funnel
mouthPucker         Mouth_Pucker_Up_L Mouth_Pucker_Up_R Mouth_Pucker_Down_L Mouth_Pucker_Down_R | Mouth_Pucker
mouthLeft           Mouth_L
mouthRight          Mouth_R
mouthSmileLeft      Mouth_Smile_L
mouthSmileRight     Mouth_Smile_R
mouthFrownLeft      Mouth_Frown_L
mouthFrownRight     Mouth_Frown_R
mouthDimpleLeft     Mouth_Dimple_L
mouthDimpleRight    Mouth_Dimple_R
mouthStretchLeft    Mouth_Stretch_L
mouthStretchRight   Mouth_Stretch_R
mouthRollLower      Mouth_Roll_In_Lower_L Mouth_Roll_In_Lower_R | Mouth_Roll_In_Lower
mouthRollUpper      Mouth_Roll_In_Upper_L Mouth_Roll_In_Upper_R | Mouth_Roll_In_Upper
mouthShrugLower     Mouth_Shrug_Lower
mouthShrugUpper     Mouth_Shrug_Upper
mouthPressLeft      Mouth_Press_L
mouthPressRight     Mouth_Press_R
mouthLowerDownLeft  Mouth_Down_Lower_L
mouthLowerDownRight Mouth_Down_Lower_R
mouthUpperUpLeft    Mouth_Up_Upper_L
mouthUpperUpRight   Mouth_Up_Upper_R
browDownLeft        Brow_Drop_L
browDownRight       Brow_Drop_R
browInnerUp         Brow_Raise_Inner_L Brow_Raise_Inner_R
browOuterUpLeft     Brow_Raise_Outer_L
browOuterUpRight    Brow_Raise_Outer_R
cheekPuff           Cheek_Puff_L Cheek_Puff_R
cheekSquintLeft     Cheek_Raise_L
cheekSquintRight    Cheek_Raise_R
noseSneerLeft       Nose_Sneer_L
noseSneerRight      Nose_Sneer_R
tongueOut           Tongue_Out
"""

# Character Creator's ARKit-named morph set (CC3+ "traditional" ARKit export, also
# Meta Movement's ARKitFace): A01_Brow_Inner_Up ... A52_Tongue_Out. Source: the same
# cc_blender_tools file, ARKIT_SHAPE_KEY_TARGETS["TRA"], and A52_Tongue_Out from its
# FACERIG_TRA_CONFIG.
_CC_ARKIT_TABLE = """
browInnerUp A01_Brow_Inner_Up
browDownLeft A02_Brow_Down_Left
browDownRight A03_Brow_Down_Right
browOuterUpLeft A04_Brow_Outer_Up_Left
browOuterUpRight A05_Brow_Outer_Up_Right
eyeLookUpLeft A06_Eye_Look_Up_Left
eyeLookUpRight A07_Eye_Look_Up_Right
eyeLookDownLeft A08_Eye_Look_Down_Left
eyeLookDownRight A09_Eye_Look_Down_Right
eyeLookOutLeft A10_Eye_Look_Out_Left
eyeLookInLeft A11_Eye_Look_In_Left
eyeLookInRight A12_Eye_Look_In_Right
eyeLookOutRight A13_Eye_Look_Out_Right
eyeBlinkLeft A14_Eye_Blink_Left
eyeBlinkRight A15_Eye_Blink_Right
eyeSquintLeft A16_Eye_Squint_Left
eyeSquintRight A17_Eye_Squint_Right
eyeWideLeft A18_Eye_Wide_Left
eyeWideRight A19_Eye_Wide_Right
cheekPuff A20_Cheek_Puff
cheekSquintLeft A21_Cheek_Squint_Left
cheekSquintRight A22_Cheek_Squint_Right
noseSneerLeft A23_Nose_Sneer_Left
noseSneerRight A24_Nose_Sneer_Right
jawOpen A25_Jaw_Open
jawForward A26_Jaw_Forward
jawLeft A27_Jaw_Left
jawRight A28_Jaw_Right
mouthFunnel A29_Mouth_Funnel
mouthPucker A30_Mouth_Pucker
mouthLeft A31_Mouth_Left
mouthRight A32_Mouth_Right
mouthRollUpper A33_Mouth_Roll_Upper
mouthRollLower A34_Mouth_Roll_Lower
mouthShrugUpper A35_Mouth_Shrug_Upper
mouthShrugLower A36_Mouth_Shrug_Lower
mouthClose A37_Mouth_Close
mouthSmileLeft A38_Mouth_Smile_Left
mouthSmileRight A39_Mouth_Smile_Right
mouthFrownLeft A40_Mouth_Frown_Left
mouthFrownRight A41_Mouth_Frown_Right
mouthDimpleLeft A42_Mouth_Dimple_Left
mouthDimpleRight A43_Mouth_Dimple_Right
mouthUpperUpLeft A44_Mouth_Upper_Up_Left
mouthUpperUpRight A45_Mouth_Upper_Up_Right
mouthLowerDownLeft A46_Mouth_Lower_Down_Left
mouthLowerDownRight A47_Mouth_Lower_Down_Right
mouthPressLeft A48_Mouth_Press_Left
mouthPressRight A49_Mouth_Press_Right
mouthStretchLeft A50_Mouth_Stretch_Left
mouthStretchRight A51_Mouth_Stretch_Right
tongueOut A52_Tongue_Out
"""

# VRoid Studio's face keys (Fcl_ALL_*, Fcl_BRW_*, Fcl_EYE_*, Fcl_MTH_*, Fcl_HA_*: the
# glTF targetNames of its Face mesh, which the VRM Add-on for Blender keeps as shape
# key names). VRoid has no per-feature ARKit shapes, so ARKit channels drive the
# nearest whole-face parts, halved where both sides share one key (both sides at 1
# make 1). Left out on purpose: gaze (VRoid's eyes are bones), jaw sideways/forward,
# cheeks, nose, tongue, and Fcl_MTH_Up/Down (they move the whole mouth, not the lips).
# The VRM preset names (what the tracker's default `vmc` preset sends) drive the keys
# VRoid's own clips bind: A -> Fcl_MTH_A, Blink_L -> Fcl_EYE_Close_L, Joy ->
# Fcl_ALL_Joy ... A sender should send one of the two families, not both: they add.
_VROID_TABLE = """
eyeBlinkLeft        Fcl_EYE_Close_L
eyeBlinkRight       Fcl_EYE_Close_R
eyeSquintLeft       Fcl_EYE_Joy_L*0.5        # the smiling eye, half way: a narrowed eye
eyeSquintRight      Fcl_EYE_Joy_R*0.5
eyeWideLeft         Fcl_EYE_Spread*0.5
eyeWideRight        Fcl_EYE_Spread*0.5
jawOpen             Fcl_MTH_A*0.8            # A also stretches the lips: a full jaw at 0.8 of it
mouthFunnel         Fcl_MTH_O
mouthPucker         Fcl_MTH_U
mouthSmileLeft      Fcl_MTH_Fun*0.5          # the closed-mouth smile
mouthSmileRight     Fcl_MTH_Fun*0.5
mouthFrownLeft      Fcl_MTH_Sorrow*0.5
mouthFrownRight     Fcl_MTH_Sorrow*0.5
mouthStretchLeft    Fcl_MTH_I*0.5
mouthStretchRight   Fcl_MTH_I*0.5
browDownLeft        Fcl_BRW_Angry*0.5
browDownRight       Fcl_BRW_Angry*0.5
browInnerUp         Fcl_BRW_Sorrow*0.5 Fcl_BRW_Surprised*0.5
browOuterUpLeft     Fcl_BRW_Surprised*0.25   # inner + both outer all the way: Surprised 1
browOuterUpRight    Fcl_BRW_Surprised*0.25
A                   Fcl_MTH_A
I                   Fcl_MTH_I
U                   Fcl_MTH_U
E                   Fcl_MTH_E
O                   Fcl_MTH_O
Blink               Fcl_EYE_Close_L Fcl_EYE_Close_R | Fcl_EYE_Close
Blink_L             Fcl_EYE_Close_L
Blink_R             Fcl_EYE_Close_R
Joy                 Fcl_ALL_Joy
Angry               Fcl_ALL_Angry
Sorrow              Fcl_ALL_Sorrow
Fun                 Fcl_ALL_Fun
aa                  Fcl_MTH_A
ih                  Fcl_MTH_I
ou                  Fcl_MTH_U
ee                  Fcl_MTH_E
oh                  Fcl_MTH_O
blinkLeft           Fcl_EYE_Close_L
blinkRight          Fcl_EYE_Close_R
happy               Fcl_ALL_Joy
sad                 Fcl_ALL_Sorrow
relaxed             Fcl_ALL_Fun
surprised           Fcl_ALL_Surprised
"""
# Blink -> both Close_L and Close_R rather than Fcl_EYE_Close: the tracker splits a
# closure into Blink + Blink_L/R, which then add on one key per eye and clamp there.


def _exact(pairs: Iterable[tuple[str, str]]) -> dict[str, _Alternatives]:
    return {stream: ((((key,), 1.0),),) for stream, key in pairs}


def _lower_unique(names: Iterable[str], taken: Iterable[str]) -> list[str]:
    seen = {n.lower() for n in taken}
    return [n for n in names if n.lower() not in seen]


_VRM1_EXTRA = _lower_unique(list(VRM1_FROM_VRM0.values()) + list(VRM1_ONLY), VRM0_NAMES)
_VRM0_FROM_VRM1 = {v: k for k, v in VRM1_FROM_VRM0.items()}

SCHEMES: dict[str, _Scheme] = {
    s.id: s
    for s in (
        # Listed in tie-break order: ARKit before the others, VRM last.
        _Scheme("arkit", "ARKit (camelCase)", ARKIT_NAMES, _exact((n, n) for n in ARKIT_NAMES)),
        _Scheme("arkit-pascal", "ARKit (PascalCase)", ARKIT_NAMES, _exact((n, _pascal(n)) for n in ARKIT_NAMES)),
        _Scheme("arkit-lr", "ARKit, _L/_R sides", ARKIT_NAMES, _arkit_lr_table()),
        _Scheme("cc4", "Character Creator 4", ARKIT_NAMES, _parse_table(_CC4_TABLE)),
        _Scheme("cc-arkit", "Character Creator ARKit (A01-A52)", ARKIT_NAMES, _parse_table(_CC_ARKIT_TABLE)),
        _Scheme("vroid", "VRoid (Fcl_*)", ARKIT_NAMES, _parse_table(_VROID_TABLE)),
        # VRM meshes are driven from the VRM 0.x names the tracker sends (A, Blink_L ...);
        # the other version's names get rows too, for a sender set to it.
        _Scheme("vrm1", "VRM 1.0 expressions", VRM0_NAMES,
                {**_exact(VRM1_FROM_VRM0.items()), **_exact((n, n) for n in _VRM1_EXTRA)}),
        _Scheme("vrm0", "VRM 0.x presets", VRM0_NAMES,
                {**_exact((n, n) for n in VRM0_NAMES),
                 **_exact((n, _VRM0_FROM_VRM1[n]) for n in _VRM1_EXTRA if n in _VRM0_FROM_VRM1)}),
    )
}
NO_SCHEME_LABEL = "No known naming scheme"


@dataclass
class SchemeMatch:
    scheme: str  # an id from SCHEMES, or "none"
    label: str
    rows: list[Row] = field(default_factory=list)  # for the keys this mesh has
    found: int = 0  # the scheme's stream names (52 ARKit, or 16 VRM presets) reaching a key
    total: int = 0
    unmatched: list[str] = field(default_factory=list)  # the scheme's stream names reaching none


_SEPARATORS = re.compile(r"[\W_]+")
_SIDE_TOKENS = {"l", "r", "left", "right"}


def _norm(name: str) -> str:
    """Lower case, separators gone: eyeBlink_L, EyeBlink.L, eye_blink_l -> eyeblinkl."""
    return _SEPARATORS.sub("", name.lower())


def _prefixless(name: str) -> list[str]:
    """The name without what exporters put in front: `blendShape1.eyeBlinkLeft`
    (Maya / FBX), `ns:jawOpen`, `Face.M_F00_000_00_Fcl_EYE_Close_L` (VRoid through
    Unity / three.js). A tail that is only a side or a number (`eyeBlink.L`, `.001`)
    is not a name of its own."""
    tails = []
    for i, ch in enumerate(name):
        if ch in ".:|":
            tail = _norm(name[i + 1:])
            if tail and tail not in _SIDE_TOKENS and not tail.isdigit():
                tails.append(tail)
    at = name.lower().find("fcl_")
    if at > 0:
        tails.append(_norm(name[at:]))
    return tails


class _KeyIndex:
    """A mesh's shape keys (the reference key, index 0, left out) by spelling."""

    def __init__(self, key_names: Sequence[str]):
        self.exact: set[str] = set()
        self.normal: dict[str, str] = {}
        self.tail: dict[str, str] = {}
        for name in list(key_names)[1:]:
            self.exact.add(name)
            n = _norm(name)
            if n:
                self.normal.setdefault(n, name)
            for t in _prefixless(name):
                self.tail.setdefault(t, name)

    def find(self, spellings: tuple[str, ...]) -> tuple[str, bool] | None:
        """(key name, spelled exactly) for the best match: the exact spelling, then
        any case or separators, then behind an exporter's prefix."""
        for s in spellings:
            if s in self.exact:
                return s, True
        normals = [_norm(s) for s in spellings]
        for table in (self.normal, self.tail):
            for n in normals:
                if n in table:
                    return table[n], False
        return None


def _match(scheme: _Scheme, index: _KeyIndex) -> tuple[SchemeMatch, int]:
    rows: list[Row] = []
    reached: set[str] = set()
    counted = {s.lower() for s in scheme.streams}
    exact = 0
    for stream, alternatives in scheme.table.items():
        for targets in alternatives:
            keys: dict[str, float] = {}
            for spellings, weight in targets:
                hit = index.find(spellings)
                if hit and hit[0] not in keys:
                    keys[hit[0]] = weight
                    if hit[1] and stream.lower() in counted:
                        exact += 1
            if keys:
                rows += [Row(stream, key, weight) for key, weight in keys.items()]
                reached.add(stream.lower())
                break
    unmatched = [s for s in scheme.streams if s.lower() not in reached]
    found = len(scheme.streams) - len(unmatched)
    return SchemeMatch(scheme.id, scheme.label, rows, found, len(scheme.streams), unmatched), exact


def match_scheme(scheme_id: str, key_names: Sequence[str]) -> SchemeMatch:
    """The rows one named scheme gives these keys (for a scheme chosen by hand)."""
    if scheme_id not in SCHEMES:
        raise KeyError(f"no naming scheme {scheme_id!r} (known: {', '.join(SCHEMES)})")
    return _match(SCHEMES[scheme_id], _KeyIndex(key_names))[0]


def detect_scheme(key_names: Sequence[str]) -> SchemeMatch:
    """The naming scheme that reaches the most of its stream names on these keys.

    `key_names` are the mesh's shape keys in order; index 0, the reference key, is
    skipped as compile_rows does. Ties go to more keys spelled exactly as the scheme
    spells them (ARKit camelCase vs PascalCase match the same keys in any case), then
    to SCHEMES' order: ARKit first, VRM last. So a mesh with both the 52 ARKit keys
    and VRM presets is ARKit (52 > 16); its VRM keys still follow their own names.
    """
    index = _KeyIndex(key_names)
    best, best_score = None, None
    for order, scheme in enumerate(SCHEMES.values()):
        match, exact = _match(scheme, index)
        score = (match.found, exact, -order)
        if match.found and (best_score is None or score > best_score):
            best, best_score = match, score
    return best or SchemeMatch("none", NO_SCHEME_LABEL)


# ---------------------------------------------------------------------------------
# Compiling rows for one mesh


def _as_row(row) -> Row | None:
    """Rows as Row, or panel tuples (stream, key[, strength[, curve]]); a tuple with an
    empty name is a row still being typed and is skipped (None)."""
    if isinstance(row, Row):
        return row
    stream, key, *rest = row
    stream = stream.strip() if isinstance(stream, str) else stream
    key = key.strip() if isinstance(key, str) else key
    if not stream or not key:
        return None
    return Row(stream, key, *rest)


def compile_rows(rows, key_names: Sequence[str], limits=None) -> tuple["CompiledMapping", list[str]]:
    """A mesh's mapping: every key but the reference key (index 0) is driven by its
    own name in any case; the rows for a stream name replace that default for it (a
    row whose key is missing is reported and skipped, so a shared mapping falls back
    to the default on a character without that key). Several rows may share a stream
    name. `limits` are (slider_min, slider_max) per key index, default (0, 1).
    Returns the mapping and one line per problem.
    """
    key_names = list(key_names)
    exact: dict[str, int] = {}
    lower: dict[str, list[int]] = {}
    for index, name in enumerate(key_names[1:], start=1):
        exact.setdefault(name, index)
        lower.setdefault(name.lower(), []).append(index)
    terms: dict[str, list[tuple[int, float, float]]] = {
        name: [(i, 1.0, 1.0) for i in indices] for name, indices in lower.items()
    }
    replaced: dict[str, list[tuple[int, float, float]]] = {}
    seen: set[tuple[str, int]] = set()
    problems: list[str] = []
    for raw in rows:
        try:
            row = _as_row(raw)
        except (ValueError, TypeError) as e:
            try:
                label = f"{raw[0]} -> {raw[1]}"
            except (TypeError, IndexError, KeyError):
                label = repr(raw)
            problems.append(f"{label}: {e}")
            continue
        if row is None:
            continue
        index = exact.get(row.key)
        if index is None:
            index = (lower.get(row.key.lower()) or [None])[0]
        if index is None:
            problems.append(f"{row.stream} -> {row.key}: no shape key named {row.key!r}")
            continue
        stream = row.stream.lower()
        if (stream, index) in seen:
            problems.append(f"{row.stream} -> {row.key}: listed twice, the first row is used")
            continue
        seen.add((stream, index))
        replaced.setdefault(stream, []).append((index, row.strength, row.curve))
    terms.update(replaced)
    return CompiledMapping(key_names, terms, limits), problems


class CompiledMapping:
    """Stream values -> shape key values for one mesh.

    Per key: the sum over its rows of clamp(value, 0, 1) ** curve * row strength,
    times the mesh strength, clamped to the key's slider range. A key is in the result
    only when a stream name driving it is in the frame. A frame holds one value per
    stream name in any case (`Blink` and `blink` in one frame: the later one counts).
    """

    def __init__(self, key_names, terms: dict[str, list[tuple[int, float, float]]], limits=None):
        self.key_names = tuple(key_names)
        limits = list(limits or ())
        self.limits = tuple(
            (float(limits[i][0]), float(limits[i][1])) if i < len(limits) else (0.0, 1.0)
            for i in range(len(self.key_names))
        )
        # a reversed range clamps to its minimum (Blender keeps slider_min < slider_max)
        self.limits = tuple((low, max(low, high)) for low, high in self.limits)
        self._terms = {stream: tuple(t) for stream, t in terms.items() if t}
        self._slots = {stream: slot for slot, stream in enumerate(self._terms)}
        per_key: dict[int, list[tuple[int, float, float]]] = {}
        for stream, slot in self._slots.items():
            for index, weight, curve in self._terms[stream]:
                per_key.setdefault(index, []).append((slot, weight, curve))
        # Every path sums a key's terms in this one order, so live frames and a whole
        # take give the same floats.
        self._keys = tuple(
            (index, tuple(per_key[index]), *self.limits[index]) for index in sorted(per_key)
        )
        self._curved = tuple(sorted({(s, c) for t in per_key.values() for s, _, c in t if c != 1.0}))
        self._lower: dict[str, str] = {}

    def drives(self, stream: str) -> tuple[tuple[int, float, float], ...]:
        """(key index, strength, curve) for each key a stream name drives."""
        return self._terms.get(stream.lower(), ())

    def unmatched(self, names: Iterable[str]) -> list[str]:
        """The stream names (each once, in order) that reach no key."""
        return [n for n in dict.fromkeys(names) if n.lower() not in self._slots]

    def apply(self, blends: dict[str, float], strength: float = 1.0) -> dict[int, float]:
        """One frame: {key index: value} for the keys the frame's names drive."""
        slots, lower = self._slots, self._lower
        got: dict[int, float] = {}
        for name, value in blends.items():
            key = lower.get(name)
            if key is None:
                if len(lower) >= _LOWER_CACHE_LIMIT:
                    lower.clear()
                key = lower[name] = name.lower()
            slot = slots.get(key)
            if slot is not None:
                # `not value > 0` also catches NaN
                got[slot] = (float(value) if value <= 1.0 else 1.0) if value > 0.0 else 0.0
        if not got:
            return {}
        powered = None
        if self._curved:
            pairs = [p for p in self._curved if p[0] in got]
            if pairs:
                # numpy's pow, with array exponents like apply_columns': Python's ** and
                # numpy's SIMD pow differ in the last bit, and numpy special-cases scalar
                # exponents 0.5 and 2
                x = np.array([got[s] for s, _ in pairs], dtype=np.float64)
                c = np.array([c for _, c in pairs], dtype=np.float64)
                powered = dict(zip(pairs, np.power(x, c).tolist()))
        out: dict[int, float] = {}
        for index, terms, low, high in self._keys:
            total = None
            for slot, weight, curve in terms:
                v = got.get(slot)
                if v is None:
                    continue
                if curve != 1.0:
                    v = powered[(slot, curve)]
                t = v * weight
                total = t if total is None else total + t
            if total is not None:
                total *= strength
                out[index] = low if total < low else high if total > high else total
        return out

    def apply_columns(self, names: Sequence[str], values, strength: float = 1.0) -> dict[int, np.ndarray]:
        """A whole take: `values` (frames, len(names)) -> {key index: (frames,) values},
        the same numbers apply() gives frame by frame.

        The same operations in the same order as apply(), on blocks of frames small
        enough to stay in the CPU cache, in place. Steps that cannot change a value
        are skipped (a weight or strength of 1; a clamp the weights cannot reach).
        """
        names = list(names)
        values = np.asarray(values, dtype=np.float64)
        if values.ndim != 2 or values.shape[1] != len(names):
            raise ValueError(f"values must be (frames, {len(names)}), not {values.shape}")
        columns = {name: j for j, name in enumerate(names)}  # as dict(zip(names, row)) keeps them
        used: dict[int, int] = {}
        for name, j in columns.items():
            slot = self._slots.get(name.lower())
            if slot is not None:
                used[slot] = j
        if not used:
            return {}
        row_of = {slot: r for r, slot in enumerate(used)}
        pairs = [(s, c) for s, c in self._curved if s in used]
        pair_of = {p: r for r, p in enumerate(pairs)}
        plan = []
        for index, terms, low, high in self._keys:
            sources = []
            lo = hi = 0.0  # bounds of the sum, in apply()'s order (rounding is monotonic)
            bounded = True
            for slot, weight, curve in terms:
                if slot in used:
                    if curve == 1.0:
                        sources.append((False, row_of[slot], weight))
                    else:
                        sources.append((True, pair_of[(slot, curve)], weight))
                        bounded = False  # numpy's pow is not guaranteed to stay <= 1
                    lo, hi = lo + min(weight, 0.0), hi + max(weight, 0.0)
            if sources:
                lo, hi = (lo * strength, hi * strength) if strength >= 0.0 else (hi * strength, lo * strength)
                plan.append((index, sources, not (bounded and lo >= low), not (bounded and hi <= high), low, high))
        frames = values.shape[0]
        # one allocation for every key: separate arrays each page-fault in (4x slower)
        result = np.empty((len(plan), frames))
        out = {index: result[k] for k, (index, *_) in enumerate(plan)}
        chunk = min(frames, _CHUNK) or 1
        block = np.empty((len(used), chunk))
        powered = np.empty((len(pairs), chunk))
        exponents = [np.full(chunk, c) for _, c in pairs]  # arrays, as apply() passes them
        mask = np.empty((len(used), chunk), dtype=bool)
        scratch = np.empty(chunk)
        columns_used = list(used.values())
        first = columns_used[0]
        if columns_used == list(range(first, first + len(columns_used))):
            columns_used = slice(first, first + len(columns_used))  # a slice copies faster than a list
        for start in range(0, frames, chunk):
            n = min(chunk, frames - start)
            b, m, tmp = block[:, :n], mask[:, :n], scratch[:n]
            np.copyto(b, values[start:start + n, columns_used].T)
            # clamp to 0..1 with NaN -> 0, exactly as apply()'s comparisons
            np.minimum(b, 1.0, out=b)
            np.greater(b, 0.0, out=m)
            np.logical_not(m, out=m)
            np.copyto(b, 0.0, where=m)
            for r, (slot, _) in enumerate(pairs):
                np.power(b[row_of[slot]], exponents[r][:n], out=powered[r, :n])
            key_mask = m[0]
            for index, sources, clamp_low, clamp_high, low, high in plan:
                total = out[index][start:start + n]
                for i, (curved, r, weight) in enumerate(sources):
                    v = powered[r, :n] if curved else b[r]
                    if i == 0:
                        if weight == 1.0:
                            np.copyto(total, v)
                        else:
                            np.multiply(v, weight, out=total)
                    elif weight == 1.0:
                        np.add(total, v, out=total)
                    else:
                        np.multiply(v, weight, out=tmp)
                        np.add(total, tmp, out=total)
                if strength != 1.0:
                    np.multiply(total, strength, out=total)
                if clamp_low:
                    np.less(total, low, out=key_mask)
                    np.copyto(total, low, where=key_mask)
                if clamp_high:
                    np.greater(total, high, out=key_mask)
                    np.copyto(total, high, where=key_mask)
        return out


# ---------------------------------------------------------------------------------
# Mapping files

FORMAT = "facemocap-mapping"
VERSION = 1
_TOP_KEYS = ("format", "version", "scheme", "rows")
_ROW_KEYS = ("stream", "key", "strength", "curve")


def _toml_string(s: str) -> str:
    """A TOML basic string, ASCII only. Not json.dumps: it writes characters beyond
    U+FFFF as surrogate pairs (\\ud83d\\ude00), which TOML rejects, and leaves DEL
    (U+007F) raw, which TOML forbids in a string."""
    out = ['"']
    for ch in s:
        o = ord(ch)
        if ch == '"' or ch == "\\":
            out.append("\\" + ch)
        elif 0x20 <= o < 0x7F:
            out.append(ch)
        elif o <= 0xFFFF:
            out.append(f"\\u{o:04X}")
        else:
            out.append(f"\\U{o:08X}")
    out.append('"')
    return "".join(out)


def _kind(path) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in (".toml", ".json"):
        raise MappingError(f"{Path(path).name}: a mapping file is .toml or .json")
    return suffix[1:]


def _checked_rows(name: str, rows) -> list[Row]:
    out: list[Row] = []
    seen: dict[tuple[str, str], int] = {}
    for i, row in enumerate(rows):
        try:
            row = row if isinstance(row, Row) else Row(*row)
        except ValueError as e:
            raise MappingError(f"{name}: rows[{i}].{e}") from None
        except TypeError:
            raise MappingError(f"{name}: rows[{i}]: must be (stream, key[, strength[, curve]])") from None
        pair = (row.stream.lower(), row.key.lower())
        if pair in seen:
            raise MappingError(f"{name}: rows[{i}]: {row.stream} -> {row.key} repeats rows[{seen[pair]}]")
        seen[pair] = i
        out.append(row)
    return out


def save_mapping(path, rows, *, scheme: str | None = None) -> None:
    """Write rows as TOML (.toml) or JSON (.json); refuses what load_mapping would."""
    name = Path(path).name
    kind = _kind(path)
    rows = _checked_rows(name, rows)
    if scheme is not None and _check_name(scheme):
        raise MappingError(f"{name}: scheme: must be a non-empty string")
    if kind == "json":
        doc = {"format": FORMAT, "version": VERSION}
        if scheme is not None:
            doc["scheme"] = scheme
        doc["rows"] = [{"stream": r.stream, "key": r.key, "strength": r.strength, "curve": r.curve} for r in rows]
        text = json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
    else:
        # No TOML writer ships with Blender's Python; this document is simple enough.
        lines = [
            "# FaceMocap Receiver shape key mapping: each [[rows]] drives shape key `key` from",
            "# stream name `stream` (any case) with clamp(value, 0, 1) ** curve * strength;",
            "# rows onto one key add up. Stream names without rows drive keys of their own name.",
            f"format = {_toml_string(FORMAT)}",
            f"version = {VERSION}",
        ]
        if scheme is not None:
            lines.append(f"scheme = {_toml_string(scheme)}")
        if not rows:
            lines.append("rows = []")
        for r in rows:
            # repr of a finite float is a valid TOML float (1.0, 0.25, 1e-05, 1e+16)
            lines += ["", "[[rows]]", f"stream = {_toml_string(r.stream)}", f"key = {_toml_string(r.key)}",
                      f"strength = {r.strength!r}", f"curve = {r.curve!r}"]
        text = "\n".join(lines) + "\n"
    # Written beside and renamed over, so a failed write never leaves half a file.
    tmp = f"{os.fspath(path)}.tmp"
    try:
        with open(tmp, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
        os.replace(tmp, path)
    except OSError as e:
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise MappingError(f"{name}: cannot write: {e.strerror or e}") from None


def _no_duplicate_keys(pairs):
    doc = {}
    for key, value in pairs:
        if key in doc:
            raise MappingError(f"{key}: given twice")
        doc[key] = value
    return doc


def _parse(name: str, kind: str, data: bytes):
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise MappingError(f"{name}: not UTF-8 text (byte {e.start})") from None
    if kind == "toml":
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise MappingError(f"{name}: not valid TOML: {e}") from None
    try:
        return json.loads(text.removeprefix("\ufeff"), object_pairs_hook=_no_duplicate_keys)
    except json.JSONDecodeError as e:
        raise MappingError(f"{name}: not valid JSON: {e.msg} (line {e.lineno}, column {e.colno})") from None
    except MappingError as e:
        raise MappingError(f"{name}: {e}") from None


def read_mapping(path) -> tuple[list[Row], str | None]:
    """(rows, scheme) from a mapping file; MappingError names the file and the entry."""
    name = Path(path).name
    kind = _kind(path)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise MappingError(f"{name}: cannot read: {e.strerror or e}") from None
    doc = _parse(name, kind, data)
    if not isinstance(doc, dict):
        raise MappingError(f"{name}: must be a table with format, version and rows")
    for key in doc:
        if key not in _TOP_KEYS:
            raise MappingError(f"{name}: {key}: unknown key (expected {', '.join(_TOP_KEYS)})")
    if doc.get("format") != FORMAT:
        raise MappingError(f"{name}: format: must be {FORMAT!r}" + ("" if "format" in doc else " (missing)"))
    version = doc.get("version")
    if isinstance(version, bool) or not isinstance(version, int):
        raise MappingError(f"{name}: version: must be the integer {VERSION}")
    if version != VERSION:
        raise MappingError(f"{name}: version: {version} is not supported (this add-on reads {VERSION})")
    scheme = doc.get("scheme")
    if scheme is not None and _check_name(scheme):
        raise MappingError(f"{name}: scheme: must be a non-empty string")
    rows = doc.get("rows")
    if not isinstance(rows, list):
        raise MappingError(f"{name}: rows: " + ("missing" if rows is None else "must be a list of tables"))
    checked = []
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise MappingError(f"{name}: rows[{i}]: must be a table with stream and key")
        for key in row:
            if key not in _ROW_KEYS:
                raise MappingError(f"{name}: rows[{i}].{key}: unknown key (expected {', '.join(_ROW_KEYS)})")
        for key in ("stream", "key"):
            if key not in row:
                raise MappingError(f"{name}: rows[{i}].{key}: missing")
        checked.append((row["stream"], row["key"], row.get("strength", 1.0), row.get("curve", 1.0)))
    return _checked_rows(name, checked), scheme


def load_mapping(path) -> list[Row]:
    """The rows of a mapping file (.toml or .json), validated."""
    return read_mapping(path)[0]
