"""blender_receiver.retarget: naming schemes, mapping rows and mapping files (no bpy)."""

import json
import math
import subprocess
import sys
import time
import tomllib

import numpy as np
import pytest

from blender_receiver import retarget
from blender_receiver.retarget import (
    ARKIT_NAMES,
    MappingError,
    Row,
    compile_rows,
    detect_scheme,
    load_mapping,
    match_scheme,
    read_mapping,
    save_mapping,
)
from bridge import state

BASIS = "Basis"


def pascal(name):
    return name[:1].upper() + name[1:]


def lr(name, style="{base}_{side}"):
    for word in ("Left", "Right"):
        if name.endswith(word):
            return style.format(base=name[: -len(word)], side=word[0])
    return name


# The shape keys of a VRoid Studio face (its Face mesh's glTF targetNames).
VROID_KEYS = [
    "Fcl_ALL_Neutral", "Fcl_ALL_Angry", "Fcl_ALL_Fun", "Fcl_ALL_Joy", "Fcl_ALL_Sorrow", "Fcl_ALL_Surprised",
    "Fcl_BRW_Angry", "Fcl_BRW_Fun", "Fcl_BRW_Joy", "Fcl_BRW_Sorrow", "Fcl_BRW_Surprised",
    "Fcl_EYE_Natural", "Fcl_EYE_Angry", "Fcl_EYE_Close", "Fcl_EYE_Close_R", "Fcl_EYE_Close_L", "Fcl_EYE_Fun",
    "Fcl_EYE_Joy", "Fcl_EYE_Joy_R", "Fcl_EYE_Joy_L", "Fcl_EYE_Sorrow", "Fcl_EYE_Surprised", "Fcl_EYE_Spread",
    "Fcl_EYE_Iris_Hide", "Fcl_EYE_Highlight_Hide",
    "Fcl_MTH_Close", "Fcl_MTH_Up", "Fcl_MTH_Down", "Fcl_MTH_Angry", "Fcl_MTH_Small", "Fcl_MTH_Large",
    "Fcl_MTH_Neutral", "Fcl_MTH_Fun", "Fcl_MTH_Joy", "Fcl_MTH_Sorrow", "Fcl_MTH_Surprised",
    "Fcl_MTH_SkinFung", "Fcl_MTH_SkinFung_R", "Fcl_MTH_SkinFung_L",
    "Fcl_MTH_A", "Fcl_MTH_I", "Fcl_MTH_U", "Fcl_MTH_E", "Fcl_MTH_O",
    "Fcl_HA_Hide", "Fcl_HA_Fung1", "Fcl_HA_Fung1_Low", "Fcl_HA_Fung1_Up", "Fcl_HA_Fung2", "Fcl_HA_Fung2_Low",
    "Fcl_HA_Fung2_Up", "Fcl_HA_Fung3", "Fcl_HA_Fung3_Up", "Fcl_HA_Fung3_Low", "Fcl_HA_Short", "Fcl_HA_Short_Up",
    "Fcl_HA_Short_Low",
]
VROID_ARKIT = {  # the ARKit channels the VRoid table reaches
    "eyeBlinkLeft", "eyeBlinkRight", "eyeSquintLeft", "eyeSquintRight", "eyeWideLeft", "eyeWideRight",
    "jawOpen", "mouthFunnel", "mouthPucker", "mouthSmileLeft", "mouthSmileRight", "mouthFrownLeft",
    "mouthFrownRight", "mouthStretchLeft", "mouthStretchRight", "browDownLeft", "browDownRight",
    "browInnerUp", "browOuterUpLeft", "browOuterUpRight",
}

# Character Creator 4 Extended facial morphs (cc_blender_tools' Extended face rig list).
CC4_EXT_KEYS = """
Brow_Compress_L Brow_Compress_R Brow_Drop_L Brow_Drop_R Brow_Raise_Inner_L Brow_Raise_Inner_R
Brow_Raise_Outer_L Brow_Raise_Outer_R Cheek_Puff_L Cheek_Puff_R Cheek_Raise_L Cheek_Raise_R Cheek_Suck_L
Cheek_Suck_R Ear_Up_L Ear_Up_R Eye_Blink_L Eye_Blink_R Eye_L_Look_Down Eye_L_Look_L Eye_L_Look_R
Eye_L_Look_Up Eye_Pupil_Contract Eye_Pupil_Dilate Eye_R_Look_Down Eye_R_Look_L Eye_R_Look_R Eye_R_Look_Up
Eye_Squint_L Eye_Squint_R Eye_Wide_L Eye_Wide_R Eyelash_Lower_Down_L Eyelash_Lower_Down_R
Eyelash_Lower_Up_L Eyelash_Lower_Up_R Eyelash_Upper_Down_L Eyelash_Upper_Down_R Eyelash_Upper_Up_L
Eyelash_Upper_Up_R Jaw_Backward Jaw_Forward Jaw_L Jaw_Open Jaw_R Mouth_Blow_L Mouth_Blow_R Mouth_Chin_Up
Mouth_Close Mouth_Contract Mouth_Dimple_L Mouth_Dimple_R Mouth_Down Mouth_Down_Lower_L Mouth_Down_Lower_R
Mouth_Drop_Lower Mouth_Drop_Upper Mouth_Frown_L Mouth_Frown_R Mouth_Funnel_Down_L Mouth_Funnel_Down_R
Mouth_Funnel_Up_L Mouth_Funnel_Up_R Mouth_L Mouth_Lower_L Mouth_Lower_R Mouth_Press_L Mouth_Press_R
Mouth_Pucker_Down_L Mouth_Pucker_Down_R Mouth_Pucker_Up_L Mouth_Pucker_Up_R Mouth_Pull_Lower_L
Mouth_Pull_Lower_R Mouth_Pull_Upper_L Mouth_Pull_Upper_R Mouth_Push_Lower_L Mouth_Push_Lower_R
Mouth_Push_Upper_L Mouth_Push_Upper_R Mouth_R Mouth_Roll_In_Lower_L Mouth_Roll_In_Lower_R
Mouth_Roll_In_Upper_L Mouth_Roll_In_Upper_R Mouth_Roll_Out_Lower_L Mouth_Roll_Out_Lower_R
Mouth_Roll_Out_Upper_L Mouth_Roll_Out_Upper_R Mouth_Shrug_Lower Mouth_Shrug_Upper Mouth_Smile_L
Mouth_Smile_R Mouth_Smile_Sharp_L Mouth_Smile_Sharp_R Mouth_Stretch_L Mouth_Stretch_R Mouth_Tighten_L
Mouth_Tighten_R Mouth_Up Mouth_Up_Upper_L Mouth_Up_Upper_R Mouth_Upper_L Mouth_Upper_R Neck_Tighten_L
Neck_Tighten_R Nose_Crease_L Nose_Crease_R Nose_Nostril_Dilate_L Nose_Nostril_Dilate_R Nose_Nostril_Down_L
Nose_Nostril_Down_R Nose_Nostril_In_L Nose_Nostril_In_R Nose_Nostril_Raise_L Nose_Nostril_Raise_R
Nose_Sneer_L Nose_Sneer_R Tongue_Down Tongue_In Tongue_L Tongue_Mid_Up Tongue_Narrow Tongue_Out Tongue_R
Tongue_Tip_Down Tongue_Tip_L Tongue_Tip_R Tongue_Tip_Up Tongue_Twist_L Tongue_Twist_R Tongue_Up Tongue_Wide
""".split()

# CC4 Standard: one Mouth_Funnel / Mouth_Pucker / Mouth_Roll_In_* instead of quadrants.
CC4_STD_KEYS = """
Brow_Drop_L Brow_Drop_R Brow_Raise_Inner_L Brow_Raise_Inner_R Brow_Raise_Outer_L Brow_Raise_Outer_R
Cheek_Puff_L Cheek_Puff_R Cheek_Raise_L Cheek_Raise_R Eye_Blink_L Eye_Blink_R Eye_L_Look_Down Eye_L_Look_L
Eye_L_Look_R Eye_L_Look_Up Eye_R_Look_Down Eye_R_Look_L Eye_R_Look_R Eye_R_Look_Up Eye_Squint_L Eye_Squint_R
Eye_Wide_L Eye_Wide_R Jaw_Forward Jaw_L Jaw_Open Jaw_R Mouth_Close Mouth_Dimple_L Mouth_Dimple_R
Mouth_Down_Lower_L Mouth_Down_Lower_R Mouth_Frown_L Mouth_Frown_R Mouth_Funnel Mouth_L Mouth_Press_L
Mouth_Press_R Mouth_Pucker Mouth_R Mouth_Roll_In_Lower Mouth_Roll_In_Upper Mouth_Shrug_Lower
Mouth_Shrug_Upper Mouth_Smile_L Mouth_Smile_R Mouth_Stretch_L Mouth_Stretch_R Mouth_Up_Upper_L
Mouth_Up_Upper_R Nose_Sneer_L Nose_Sneer_R Tongue_Out Tongue_Up Tongue_Down
""".split()

CC_ARKIT_KEYS = """
A01_Brow_Inner_Up A02_Brow_Down_Left A03_Brow_Down_Right A04_Brow_Outer_Up_Left A05_Brow_Outer_Up_Right
A06_Eye_Look_Up_Left A07_Eye_Look_Up_Right A08_Eye_Look_Down_Left A09_Eye_Look_Down_Right
A10_Eye_Look_Out_Left A11_Eye_Look_In_Left A12_Eye_Look_In_Right A13_Eye_Look_Out_Right A14_Eye_Blink_Left
A15_Eye_Blink_Right A16_Eye_Squint_Left A17_Eye_Squint_Right A18_Eye_Wide_Left A19_Eye_Wide_Right
A20_Cheek_Puff A21_Cheek_Squint_Left A22_Cheek_Squint_Right A23_Nose_Sneer_Left A24_Nose_Sneer_Right
A25_Jaw_Open A26_Jaw_Forward A27_Jaw_Left A28_Jaw_Right A29_Mouth_Funnel A30_Mouth_Pucker A31_Mouth_Left
A32_Mouth_Right A33_Mouth_Roll_Upper A34_Mouth_Roll_Lower A35_Mouth_Shrug_Upper A36_Mouth_Shrug_Lower
A37_Mouth_Close A38_Mouth_Smile_Left A39_Mouth_Smile_Right A40_Mouth_Frown_Left A41_Mouth_Frown_Right
A42_Mouth_Dimple_Left A43_Mouth_Dimple_Right A44_Mouth_Upper_Up_Left A45_Mouth_Upper_Up_Right
A46_Mouth_Lower_Down_Left A47_Mouth_Lower_Down_Right A48_Mouth_Press_Left A49_Mouth_Press_Right
A50_Mouth_Stretch_Left A51_Mouth_Stretch_Right A52_Tongue_Out
""".split()

VRM0_KEYS = list(state.VRM0_NAMES) + ["Neutral"]
VRM1_KEYS = ["aa", "ih", "ou", "ee", "oh", "blink", "blinkLeft", "blinkRight", "happy", "angry", "sad",
             "relaxed", "surprised", "lookUp", "lookDown", "lookLeft", "lookRight", "neutral"]


def rows_of(match):
    return {(r.stream, r.key, r.strength) for r in match.rows}


def drives(match, stream):
    return {r.key: r.strength for r in match.rows if r.stream == stream}


# --- names shared with the tracker -----------------------------------------------


def test_names_are_the_trackers():
    assert retarget.ARKIT_NAMES == state.ARKIT_NAMES
    assert retarget.VRM0_NAMES == state.VRM0_NAMES
    assert {k: v for k, v in state.VRM1_FROM_VRM0.items() if v} == {v: k for k, v in retarget.VRM1_FROM_VRM0.items()}
    assert set(retarget.VRM1_ONLY) == {k for k, v in state.VRM1_FROM_VRM0.items() if v is None}


def test_imports_neither_bpy_nor_bridge():
    code = ("import sys, blender_receiver.retarget; "
            "bad = [m for m in sys.modules if m == 'bpy' or m.split('.')[0] in ('bridge', 'mathutils')]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=retarget.__file__.rsplit("/", 2)[0])


def test_scheme_tables_are_consistent():
    for scheme in retarget.SCHEMES.values():
        lowered = [s.lower() for s in scheme.table]
        assert len(lowered) == len(set(lowered)), scheme.id  # stream names are case-insensitive
        left_out = set(scheme.streams) - set(scheme.table)
        assert left_out == (set(ARKIT_NAMES) - VROID_ARKIT if scheme.id == "vroid" else set()), scheme.id


# --- detect_scheme ---------------------------------------------------------------


@pytest.mark.parametrize("keys, scheme, found, total", [
    (list(ARKIT_NAMES), "arkit", 52, 52),
    ([pascal(n) for n in ARKIT_NAMES], "arkit-pascal", 52, 52),
    ([lr(n) for n in ARKIT_NAMES], "arkit-lr", 52, 52),
    ([pascal(lr(n)) for n in ARKIT_NAMES], "arkit-lr", 52, 52),
    ([lr(n, "{base}{side}") for n in ARKIT_NAMES], "arkit-lr", 52, 52),   # eyeBlinkL
    ([lr(n, "{base}.{side}") for n in ARKIT_NAMES], "arkit-lr", 52, 52),  # eyeBlink.L (Blender)
    (CC4_EXT_KEYS, "cc4", 52, 52),
    (CC4_STD_KEYS, "cc4", 52, 52),
    (CC_ARKIT_KEYS, "cc-arkit", 52, 52),
    (VROID_KEYS, "vroid", 20, 52),
    (VRM0_KEYS, "vrm0", 16, 16),
    (VRM1_KEYS, "vrm1", 16, 16),
])
def test_schemes_are_recognised(keys, scheme, found, total):
    match = detect_scheme([BASIS] + keys)
    assert (match.scheme, match.found, match.total) == (scheme, found, total)
    assert match.label == retarget.SCHEMES[scheme].label
    assert len(match.unmatched) == total - found
    assert {r.key for r in match.rows} <= set(keys)
    # the rows compile on the mesh they came from without a problem
    _, problems = compile_rows(match.rows, [BASIS] + keys)
    assert problems == []


def test_case_and_exporter_prefixes_are_tolerated():
    keys = [BASIS] + [f"blendShape1.{n}" for n in ARKIT_NAMES]  # Maya / FBX
    match = detect_scheme(keys)
    assert (match.scheme, match.found) == ("arkit", 52)
    assert drives(match, "jawOpen") == {"blendShape1.jawOpen": 1.0}

    keys = [BASIS] + [n.upper() for n in ARKIT_NAMES]
    assert detect_scheme(keys).found == 52

    keys = [BASIS] + [f"Face.M_F00_000_00_{n}" for n in VROID_KEYS]  # VRoid through Unity
    match = detect_scheme(keys)
    assert (match.scheme, match.found) == ("vroid", 20)
    assert drives(match, "eyeBlinkLeft") == {"Face.M_F00_000_00_Fcl_EYE_Close_L": 1.0}


def test_partial_rig_lists_the_unmatched():
    missing = [n for n in ARKIT_NAMES if n.startswith(("mouthRoll", "mouthShrug", "mouthPress", "cheek", "nose",
                                                       "tongue"))]
    assert len(missing) == 12
    keys = [BASIS] + [n for n in ARKIT_NAMES if n not in missing]
    match = detect_scheme(keys)
    assert (match.scheme, match.found, match.total) == ("arkit", 40, 52)
    assert match.unmatched == missing  # in ARKit's order


def test_vroid_rows():
    match = detect_scheme([BASIS] + VROID_KEYS)
    assert {s for s, _, _ in rows_of(match) if s in ARKIT_NAMES} == VROID_ARKIT
    assert set(match.unmatched) == set(ARKIT_NAMES) - VROID_ARKIT
    assert drives(match, "eyeBlinkLeft") == {"Fcl_EYE_Close_L": 1.0}
    assert drives(match, "jawOpen") == {"Fcl_MTH_A": 0.8}
    assert drives(match, "browInnerUp") == {"Fcl_BRW_Sorrow": 0.5, "Fcl_BRW_Surprised": 0.5}
    # the VRM presets the tracker's default `vmc` preset sends drive VRoid's keys too
    assert drives(match, "A") == {"Fcl_MTH_A": 1.0}
    assert drives(match, "Blink") == {"Fcl_EYE_Close_L": 1.0, "Fcl_EYE_Close_R": 1.0}
    assert drives(match, "Blink_R") == {"Fcl_EYE_Close_R": 1.0}
    assert drives(match, "Joy") == {"Fcl_ALL_Joy": 1.0}
    assert drives(match, "happy") == {"Fcl_ALL_Joy": 1.0}
    # without separate eyes Blink falls back to the both-eyes key
    keys = [BASIS] + [k for k in VROID_KEYS if k not in ("Fcl_EYE_Close_L", "Fcl_EYE_Close_R")]
    assert drives(detect_scheme(keys), "Blink") == {"Fcl_EYE_Close": 1.0}


def test_cc4_rows():
    ext = detect_scheme([BASIS] + CC4_EXT_KEYS)
    assert drives(ext, "mouthFunnel") == dict.fromkeys(
        ["Mouth_Funnel_Up_L", "Mouth_Funnel_Up_R", "Mouth_Funnel_Down_L", "Mouth_Funnel_Down_R"], 1.0)
    assert drives(ext, "eyeLookInLeft") == {"Eye_L_Look_R": 1.0}  # the left eye turns to the character's right
    assert drives(ext, "cheekPuff") == {"Cheek_Puff_L": 1.0, "Cheek_Puff_R": 1.0}
    assert drives(ext, "tongueOut") == {"Tongue_Out": 1.0}
    std = detect_scheme([BASIS] + CC4_STD_KEYS)
    assert drives(std, "mouthFunnel") == {"Mouth_Funnel": 1.0}
    assert drives(std, "mouthRollUpper") == {"Mouth_Roll_In_Upper": 1.0}


def test_vrm_rows():
    vrm1 = detect_scheme([BASIS] + VRM1_KEYS)
    assert drives(vrm1, "A") == {"aa": 1.0}
    assert drives(vrm1, "Blink_L") == {"blinkLeft": 1.0}
    assert drives(vrm1, "Joy") == {"happy": 1.0}
    vrm0 = detect_scheme([BASIS] + VRM0_KEYS)
    assert drives(vrm0, "Blink_L") == {"Blink_L": 1.0}
    assert drives(vrm0, "aa") == {"A": 1.0}  # a sender set to VRM 1.0 names
    assert detect_scheme([BASIS] + VRM0_KEYS[:12]).unmatched == ["LookUp", "LookDown", "LookLeft", "LookRight"]


def test_mixed_meshes():
    # perfect sync VRM: the 52 ARKit keys beside the VRM presets -> ARKit
    match = detect_scheme([BASIS] + VRM0_KEYS + [pascal(n) for n in ARKIT_NAMES])
    assert (match.scheme, match.found) == ("arkit-pascal", 52)
    # ... and beside VRoid's Fcl keys
    assert detect_scheme([BASIS] + VROID_KEYS + list(ARKIT_NAMES)).scheme == "arkit"
    # VRM presets with a few ARKit keys: VRM reaches more of its names
    assert detect_scheme([BASIS] + VRM0_KEYS + ["jawOpen", "eyeBlinkLeft"]).scheme == "vrm0"
    # equal reach: ARKit first
    assert detect_scheme([BASIS] + VRM0_KEYS + list(ARKIT_NAMES[:16])).scheme == "arkit"


def test_ties_and_nothing():
    # Eye_Blink_L is spelled exactly CC4's way; arkit-lr reaches it only loosely
    assert detect_scheme([BASIS, "Eye_Blink_L", "Eye_Blink_R"]).scheme == "cc4"
    assert detect_scheme([BASIS, "eyeBlink_L", "eyeBlink_R"]).scheme == "arkit-lr"
    assert detect_scheme([BASIS, "LookUp", "LookDown"]).scheme == "vrm0"
    assert detect_scheme([BASIS, "lookUp", "lookDown"]).scheme == "vrm1"
    none = detect_scheme([BASIS, "Key 1", "Smile", "まばたき"])
    assert (none.scheme, none.label, none.rows, none.found, none.total) == ("none", retarget.NO_SCHEME_LABEL, [], 0, 0)
    assert detect_scheme(["jawOpen"]).scheme == "none"  # index 0 is the reference key
    assert detect_scheme([]).scheme == "none"


def test_match_scheme_by_hand():
    match = match_scheme("vroid", [BASIS] + list(ARKIT_NAMES))
    assert (match.scheme, match.found, match.rows) == ("vroid", 0, [])
    with pytest.raises(KeyError):
        match_scheme("maya", [BASIS])


# --- rows ------------------------------------------------------------------------


@pytest.mark.parametrize("args, field", [
    (("", "k"), "stream"), (("  ", "k"), "stream"), (("s", ""), "key"), ((1, "k"), "stream"),
    (("s", "k\ud800"), "key"),
    (("s", "k", math.nan), "strength"), (("s", "k", math.inf), "strength"), (("s", "k", 10.5), "strength"),
    (("s", "k", True), "strength"), (("s", "k", "1"), "strength"),
    (("s", "k", 1, 0), "curve"), (("s", "k", 1, -1), "curve"), (("s", "k", 1, math.inf), "curve"),
])
def test_row_validation(args, field):
    with pytest.raises(ValueError, match=f"^{field}: "):
        Row(*args)


def test_row_accepts_ints_and_negative_strength():
    row = Row("jawOpen", "A", 2, 3)
    assert (row.strength, row.curve) == (2.0, 3.0) and isinstance(row.strength, float)
    assert Row("mouthClose", "Fcl_MTH_A", -0.5).strength == -0.5


# --- compile_rows / apply --------------------------------------------------------

KEYS = [BASIS, "A", "Fcl_MTH_A", "Fcl_MTH_O", "Smile", "eyeBlinkLeft"]


def test_default_is_the_same_name_in_any_case():
    mapping, problems = compile_rows([], KEYS)
    assert problems == []
    assert mapping.apply({"a": 0.5, "EyeBlinkLeft": 0.25, "smile": 1.0, "Basis": 1.0, "other": 1.0}) == {
        1: 0.5, 5: 0.25, 4: 1.0}
    assert mapping.unmatched(["a", "Basis", "other", "other", "SMILE"]) == ["Basis", "other"]


def test_rows_replace_the_default_and_report_missing_keys():
    rows = [Row("A", "Fcl_MTH_A"), Row("jawOpen", "Fcl_MTH_A", 0.5), Row("A", "NoSuchKey"),
            ("", "half typed"), ("  mouthFunnel ", " fcl_mth_o ")]  # panel tuples: stripped, any case
    mapping, problems = compile_rows(rows, KEYS)
    assert problems == ["A -> NoSuchKey: no shape key named 'NoSuchKey'"]
    # A no longer drives key A; A and jawOpen add onto Fcl_MTH_A
    assert mapping.apply({"A": 0.25, "jawOpen": 0.5, "MouthFunnel": 1.0}) == {2: 0.5, 3: 1.0}
    assert mapping.drives("a") == ((2, 1.0, 1.0),)


def test_missing_key_keeps_the_default_and_repeats_are_reported():
    mapping, problems = compile_rows([Row("Smile", "Gone"), Row("x", "A"), Row("X", "a")], KEYS)
    assert problems == ["Smile -> Gone: no shape key named 'Gone'", "X -> a: listed twice, the first row is used"]
    assert mapping.apply({"Smile": 0.5, "x": 0.5}) == {4: 0.5, 1: 0.5}
    with pytest.raises(ValueError):
        Row("x", "A", 99)
    _, problems = compile_rows([("x", "A", 99), None, ("only",)], KEYS)
    assert problems[0] == "x -> A: strength: must be a number from -10 to 10"
    assert problems[1].startswith("None: ") and problems[2].startswith("('only',): ")


def test_several_keys_weights_curves_and_limits():
    rows = [Row("mouthFunnel", "Fcl_MTH_O", 1.0), Row("mouthFunnel", "Fcl_MTH_A", 0.25),
            Row("jawOpen", "Fcl_MTH_A", 1.0, 2.0), Row("mouthClose", "Fcl_MTH_A", -1.0),
            Row("smile", "Smile", 3.0)]
    limits = [(0, 1), (0, 1), (-1.0, 2.0), (0, 1), (0, 1), (0, 1)]
    mapping, _ = compile_rows(rows, KEYS, limits)
    # 0.8 * 0.25 + 0.5 ** 2 = 0.45 on Fcl_MTH_A
    out = mapping.apply({"mouthFunnel": 0.8, "jawOpen": 0.5})
    assert out[3] == 0.8 and out[2] == pytest.approx(0.45)
    # contributions add and then clamp to the key's own range (here -1 .. 2)
    out = mapping.apply({"mouthFunnel": 1.0, "jawOpen": 1.0, "smile": 1.0}, strength=2.0)
    assert out == {3: 1.0, 2: 2.0, 4: 1.0}
    assert mapping.apply({"mouthClose": 1.0}, strength=3.0) == {2: -1.0}
    # the mesh strength scales the sum
    assert mapping.apply({"mouthFunnel": 0.5}, strength=0.5) == {3: 0.25, 2: 0.0625}


def test_input_is_clamped_to_0_1_first():
    mapping, _ = compile_rows([Row("s", "Smile", 2.0, 0.5)], KEYS, [(0, 10)] * len(KEYS))
    assert mapping.apply({"s": -1.0}) == {4: 0.0}
    assert mapping.apply({"s": math.nan}) == {4: 0.0}
    assert mapping.apply({"s": 7.0}) == {4: 2.0}  # 1 ** 0.5 * 2, not 7
    assert mapping.apply({"s": 0.25}) == {4: 1.0}  # 0.25 ** 0.5 * 2


def test_name_cache_is_bounded():
    mapping, _ = compile_rows([], KEYS)
    for i in range(20000):
        mapping.apply({f"name{i}": 1.0})
    assert len(mapping._lower) <= retarget._LOWER_CACHE_LIMIT
    assert mapping.apply({"A": 1.0}) == {1: 1.0}


def random_mapping(rng, key_count=60):
    keys = [BASIS] + [f"key{i}" for i in range(key_count)]
    rows = []
    for stream in ARKIT_NAMES:
        for key in rng.choice(key_count, size=rng.integers(1, 4), replace=False):
            rows.append(Row(stream, f"key{key}", float(rng.choice([1.0, 0.5, -0.7, 2.5, 0.3])),
                            float(rng.choice([1.0, 1.0, 0.5, 2.0, 1.7, 0.35]))))
    limits = [(0.0, 1.0)] + [tuple(rng.choice([(0.0, 1.0), (-1.0, 1.0), (0.0, 0.6), (-0.2, 3.0)]))
                             for _ in range(key_count)]
    return compile_rows(rows, keys, limits)[0]


@pytest.mark.parametrize("chunk", [4096, 128])  # one block, and several with a short last one
def test_apply_columns_equals_apply_frame_by_frame(monkeypatch, chunk):
    monkeypatch.setattr(retarget, "_CHUNK", chunk)
    rng = np.random.default_rng(7)
    mapping = random_mapping(rng)
    names = [pascal(n) for n in ARKIT_NAMES] + ["unknown"]
    values = rng.uniform(-0.3, 1.3, size=(500, len(names)))
    values[rng.random(values.shape) < 0.02] = np.nan
    values[rng.random(values.shape) < 0.05] = 0.0
    order = rng.permutation(len(names))  # columns in another order, some missing
    cases = [(names, values), ([names[i] for i in order[:40]], values[:, order[:40]])]
    for case_names, case_values in cases:
        for strength in (1.0, 0.7, 3.0, -0.5):
            columns = mapping.apply_columns(case_names, case_values, strength)
            for f in range(len(case_values)):
                frame = mapping.apply(dict(zip(case_names, case_values[f].tolist())), strength)
                assert frame.keys() == columns.keys()
                got = np.array([columns[k][f] for k in frame])
                assert got.tobytes() == np.array(list(frame.values())).tobytes(), f  # bit for bit


def test_apply_columns_edge_cases():
    mapping, _ = compile_rows([Row("s", "Smile", 1.0, 2.0)], KEYS)
    assert mapping.apply_columns(["x"], np.zeros((3, 1))) == {}
    # a name given twice: the last one counts, as in dict(zip(names, row))
    out = mapping.apply_columns(["s", "S", "s"], np.array([[0.1, 0.2, 0.3]]))
    assert out[4].tolist() == [mapping.apply(dict(zip(["s", "S", "s"], [0.1, 0.2, 0.3])))[4]]
    with pytest.raises(ValueError):
        mapping.apply_columns(["s"], np.zeros((3, 2)))


def test_speed():
    rng = np.random.default_rng(1)
    mapping = compile_rows([], [BASIS] + list(ARKIT_NAMES))[0]
    names = list(ARKIT_NAMES)
    values = rng.random((36000, 52))
    columns = math.inf
    for _ in range(3):  # the best of three: a shared machine is noisy
        start = time.perf_counter()
        mapping.apply_columns(names, values)
        columns = min(columns, time.perf_counter() - start)
    frame = dict(zip(names, values[0].tolist()))
    start = time.perf_counter()
    for _ in range(1000):
        mapping.apply(frame)
    per_frame = (time.perf_counter() - start) / 1000
    print(f"apply_columns 36000x52: {columns * 1e3:.1f} ms; apply: {per_frame * 1e6:.1f} us/frame")
    assert columns < 0.25 and per_frame < 0.001  # generous: a few ms and ~20 us here


# --- mapping files ---------------------------------------------------------------

ODD_NAMES = ['say "hi"', "back\\slash", "\\u0041 not an escape", "tab\there", "new\nline", "del\x7f",
             "まばたき", "emoji 😀", "# not a comment", "[[rows]]", "trailing \\"]


@pytest.mark.parametrize("suffix", [".toml", ".json"])
def test_round_trip(tmp_path, suffix):
    rows = [Row("eyeBlinkLeft", "Fcl_EYE_Close_L"), Row("jawOpen", "Fcl_MTH_A", 0.8, 1.5),
            Row("A", "B", -2.5, 1e-05), Row("big", "C", 10, 1e16)]
    rows += [Row(name, name, 0.1 * i, 1 + i) for i, name in enumerate(ODD_NAMES)]
    path = tmp_path / f"face{suffix}"
    save_mapping(path, rows, scheme="vroid")
    assert load_mapping(path) == rows
    assert read_mapping(path) == (rows, "vroid")
    if suffix == ".toml":
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
        assert path.read_bytes().isascii()
        assert doc["format"] == "facemocap-mapping" and doc["version"] == 1
        assert [r["key"] for r in doc["rows"]][4:] == ODD_NAMES
    else:
        assert json.loads(path.read_text(encoding="utf-8"))["rows"][0] == {
            "stream": "eyeBlinkLeft", "key": "Fcl_EYE_Close_L", "strength": 1.0, "curve": 1.0}
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.parametrize("suffix", [".toml", ".json"])
def test_empty_mapping_round_trips(tmp_path, suffix):
    path = tmp_path / f"empty{suffix}"
    save_mapping(path, [])
    assert read_mapping(path) == ([], None)


def test_detected_rows_round_trip(tmp_path):
    match = detect_scheme([BASIS] + CC4_EXT_KEYS)
    save_mapping(tmp_path / "cc4.toml", match.rows, scheme=match.scheme)
    assert read_mapping(tmp_path / "cc4.toml") == (match.rows, "cc4")


def test_save_refuses(tmp_path):
    with pytest.raises(MappingError, match=r"^face\.yaml: a mapping file is \.toml or \.json$"):
        save_mapping(tmp_path / "face.yaml", [])
    with pytest.raises(MappingError, match=r"^face\.toml: rows\[1\]: a -> k repeats rows\[0\]$"):
        save_mapping(tmp_path / "face.toml", [Row("A", "K"), Row("a", "k")])
    with pytest.raises(MappingError, match=r"^face\.json: rows\[0\]\.curve: must be a number > 0$"):
        save_mapping(tmp_path / "face.json", [("a", "k", 1.0, 0.0)])
    with pytest.raises(MappingError, match=r"^face\.toml: cannot write"):
        save_mapping(tmp_path / "no" / "such" / "face.toml", [])
    assert not list(tmp_path.iterdir())


GOOD_TOML = 'format = "facemocap-mapping"\nversion = 1\n'
ROW = '[[rows]]\nstream = "jawOpen"\nkey = "Fcl_MTH_A"\n'


@pytest.mark.parametrize("name, text, message", [
    ("face.toml", GOOD_TOML + ROW + ROW.replace("jawOpen", "x") + '[[rows]]\nstream = "a"\nkey = "b"\ncurve = 0\n',
     "face.toml: rows[2].curve: must be a number > 0"),
    ("face.toml", GOOD_TOML + ROW + "curve = -1.5\n", "face.toml: rows[0].curve: must be a number > 0"),
    ("face.toml", GOOD_TOML + ROW + 'curve = "2"\n', "face.toml: rows[0].curve: must be a number > 0"),
    ("face.toml", GOOD_TOML + ROW + "curve = nan\n", "face.toml: rows[0].curve: must be a number > 0"),
    ("face.toml", GOOD_TOML + ROW + "strength = 11\n", "face.toml: rows[0].strength: must be a number from -10 to 10"),
    ("face.toml", GOOD_TOML + ROW + "strength = true\n", "face.toml: rows[0].strength: must be a number"),
    ("face.toml", GOOD_TOML + ROW + "strenght = 1.0\n",
     "face.toml: rows[0].strenght: unknown key (expected stream, key, strength, curve)"),
    ("face.toml", GOOD_TOML + '[[rows]]\nkey = "k"\n', "face.toml: rows[0].stream: missing"),
    ("face.toml", GOOD_TOML + '[[rows]]\nstream = "s"\n', "face.toml: rows[0].key: missing"),
    ("face.toml", GOOD_TOML + '[[rows]]\nstream = ""\nkey = "k"\n', "face.toml: rows[0].stream: must be a non-empty"),
    ("face.toml", GOOD_TOML + '[[rows]]\nstream = "s"\nkey = 3\n', "face.toml: rows[0].key: must be a non-empty"),
    ("face.toml", GOOD_TOML + ROW + ROW.replace("jawOpen", "JAWOPEN"),
     "face.toml: rows[1]: JAWOPEN -> Fcl_MTH_A repeats rows[0]"),
    ("face.toml", GOOD_TOML + 'rows = "all"\n', "face.toml: rows: must be a list of tables"),
    ("face.toml", GOOD_TOML, "face.toml: rows: missing"),
    ("face.toml", GOOD_TOML + "row = []\n", "face.toml: row: unknown key (expected format, version, scheme, rows)"),
    ("face.toml", GOOD_TOML.replace("facemocap-mapping", "other") + "rows = []\n",
     "face.toml: format: must be 'facemocap-mapping'"),
    ("face.toml", "version = 1\nrows = []\n", "face.toml: format: must be 'facemocap-mapping' (missing)"),
    ("face.toml", GOOD_TOML.replace("1", "2") + "rows = []\n",
     "face.toml: version: 2 is not supported (this add-on reads 1)"),
    ("face.toml", GOOD_TOML.replace("1", '"1"') + "rows = []\n", "face.toml: version: must be the integer 1"),
    ("face.toml", 'format = "facemocap-mapping"\nrows = []\n', "face.toml: version: must be the integer 1"),
    ("face.toml", GOOD_TOML + "scheme = 5\nrows = []\n", "face.toml: scheme: must be a non-empty string"),
    ("face.toml", GOOD_TOML + "rows = [\n", "face.toml: not valid TOML: "),
    ("face.toml", GOOD_TOML + 'version = 1\nrows = []\n', "face.toml: not valid TOML: "),
    ("face.json", '{"format": "facemocap-mapping", "version": 1, "rows": [{"stream": "a", "key": "b", '
                  '"curve": NaN}]}', "face.json: rows[0].curve: must be a number > 0"),
    ("face.json", '{"format": "facemocap-mapping", "version": 1, "rows": ["a -> b"]}',
     "face.json: rows[0]: must be a table with stream and key"),
    ("face.json", '{"format": "facemocap-mapping", "version": 1, "version": 1, "rows": []}',
     "face.json: version: given twice"),
    ("face.json", '[{"stream": "a", "key": "b"}]', "face.json: must be a table with format, version and rows"),
    ("face.json", '{"format": "facemocap-mapping",', "face.json: not valid JSON: "),
])
def test_bad_mapping_files(tmp_path, name, text, message):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    with pytest.raises(MappingError) as info:
        load_mapping(path)
    assert str(info.value).startswith(message)
    assert "\n" not in str(info.value)


def test_unreadable_mapping_files(tmp_path):
    (tmp_path / "latin1.toml").write_bytes(b'format = "\xe9"\n')
    with pytest.raises(MappingError, match=r"^latin1\.toml: not UTF-8 text"):
        load_mapping(tmp_path / "latin1.toml")
    with pytest.raises(MappingError, match=r"^gone\.json: cannot read: "):
        load_mapping(tmp_path / "gone.json")
    with pytest.raises(MappingError, match=r"^face\.txt: a mapping file is \.toml or \.json$"):
        load_mapping(tmp_path / "face.txt")
