"""VRCFaceTracking's Unified Expressions v2 parameters from ARKit values, as VRCFT itself
would send them for an ARKit source.

Two steps, both VRCFT's (benaclejames/VRCFaceTracking @ 4c58db6, VRCFaceTracking.Core):
* ARKit -> the Unified base shapes: as VRCFT's ARKit module (kusomaigo/VRCFaceTracking-
  LiveLink, LiveLinkExtTrackingInterface.cs) fills them, except that the right eye's
  squint is the right eye's (the module reads the left one's, line 378). Then VRCFT's
  default correctors (Params/Data/Mutation/Correctors.cs): MouthClosed <= JawOpen,
  lip suck fades as that side's lip is raised / lowered.
* base -> the combined parameters: the formulas of Params/Expressions/
  UnifiedExpressionsParameters.cs and UnifiedSimpleExpressions.cs, one for one.

Gaze is VRCFT's "normalised Cartesian": x = tan(yaw), + = looking to the user's right;
y = tan(pitch), + = up (VRCFT turns them back into angles with atan).

NAMES is what we send (after "v2/"); NOT_SENT are the VRCFT v2 names ARKit-style data
cannot express (always 0, or not face data). tests/data/vrcft_v2_parameters.txt, made
from VRCFT's source, is checked against the two.
"""

from __future__ import annotations

import math

import numpy as np

from ..state import ARKIT_INDEX

SIDES = ("Left", "Right")

# VRCFT v2 names we never send, and why.
NOT_SENT = {
    # Shapes ARKit has no value for: always 0 from an ARKit source.
    **dict.fromkeys(("CheekSuckLeft", "CheekSuckRight", "CheekSuck", "JawBackward", "JawClench",
                     "JawMandibleRaise", "LipSuckCornerLeft", "LipSuckCornerRight", "MouthTightenerLeft",
                     "MouthTightenerRight", "MouthTightener", "NasalConstrictLeft", "NasalConstrictRight",
                     "NasalDilationLeft", "NasalDilationRight", "NeckFlexLeft", "NeckFlexRight",
                     "SoftPalateClose", "ThroatSwallow", "TongueBendDown", "TongueCurlUp", "TongueDown",
                     "TongueFlat", "TongueLeft", "TongueRight", "TongueRoll", "TongueSquish", "TongueTwistLeft",
                     "TongueTwistRight", "TongueUp", "TongueArchY", "TongueShape", "TongueX", "TongueY"),
                    "no ARKit value"),
    **dict.fromkeys(("PupilDiameter", "PupilDiameterLeft", "PupilDiameterRight", "PupilDilation"),
                    "a webcam gives no pupil size"),
    # VRChat moves the avatar's head itself (from the headset or desktop view).
    **dict.fromkeys(("Head/Yaw", "Head/Pitch", "Head/Roll", "Head/PosX", "Head/PosY", "Head/PosZ"),
                    "VRChat drives the head itself"),
}


def _base(a, eyes) -> dict[str, float]:
    """ARKit values (by name) and eye angles -> VRCFT's base shapes and eye data."""
    b: dict[str, float] = {}
    (lyaw, lpitch), (ryaw, rpitch) = eyes
    for side, yaw, pitch in (("Left", lyaw, lpitch), ("Right", ryaw, rpitch)):
        blink, squint = a[f"eyeBlink{side}"], a[f"eyeSquint{side}"]
        b[f"Open{side}"] = 1.0 - min(max(blink + blink * squint, 0.0), 1.0)
        # Ours: yaw + = to the user's left; VRCFT's x: + = to the user's right.
        b[f"GazeX{side}"] = min(max(math.tan(math.radians(-yaw)), -1.0), 1.0)
        b[f"GazeY{side}"] = min(max(math.tan(math.radians(pitch)), -1.0), 1.0)
        b[f"EyeWide{side}"] = a[f"eyeWide{side}"]
        b[f"EyeSquint{side}"] = squint
        b[f"BrowInnerUp{side}"] = a["browInnerUp"]
        b[f"BrowOuterUp{side}"] = a[f"browOuterUp{side}"]
        b[f"BrowPinch{side}"] = b[f"BrowLowerer{side}"] = a[f"browDown{side}"]
        b[f"MouthUpper{side}"] = b[f"MouthLower{side}"] = a[f"mouth{side}"]
        b[f"MouthCornerPull{side}"] = b[f"MouthCornerSlant{side}"] = a[f"mouthSmile{side}"]
        b[f"MouthFrown{side}"] = a[f"mouthFrown{side}"]
        b[f"MouthLowerDown{side}"] = a[f"mouthLowerDown{side}"]
        b[f"MouthUpperUp{side}"] = b[f"MouthUpperDeepen{side}"] = a[f"mouthUpperUp{side}"]
        for shape in ("Dimple", "Press", "Stretch"):
            b[f"Mouth{shape}{side}"] = a[f"mouth{shape}{side}"]
        for lip in ("Upper", "Lower"):
            b[f"LipPucker{lip}{side}"] = a["mouthPucker"]
            b[f"LipFunnel{lip}{side}"] = a["mouthFunnel"]
        up = a[f"mouthUpperUp{side}"]
        b[f"LipSuckUpper{side}"] = min(1.0 - max(up, 0.0) ** (1 / 6), a["mouthRollUpper"])
        b[f"LipSuckLower{side}"] = a["mouthRollLower"]
        b[f"CheekPuff{side}"] = a["cheekPuff"]
        b[f"CheekSquint{side}"] = a[f"cheekSquint{side}"]
        b[f"NoseSneer{side}"] = a[f"noseSneer{side}"]
    for name in ("jawOpen", "jawLeft", "jawRight", "jawForward", "tongueOut"):
        b[name[0].upper() + name[1:]] = a[name]
    b["MouthClosed"] = a["mouthClose"]
    b["MouthRaiserUpper"], b["MouthRaiserLower"] = a["mouthShrugUpper"], a["mouthShrugLower"]
    # VRCFT's default correctors.
    b["MouthClosed"] = min(b["MouthClosed"], b["JawOpen"])
    for side in SIDES:
        b[f"LipSuckUpper{side}"] *= 1.0 - b[f"MouthUpperUp{side}"]
        b[f"LipSuckLower{side}"] *= 1.0 - b[f"MouthLowerDown{side}"]
    return b


_BASE_SENT = tuple(
    [f"{s}{side}" for s in ("EyeSquint", "EyeWide", "BrowPinch", "BrowLowerer", "BrowInnerUp", "BrowOuterUp",
                            "CheekPuff", "CheekSquint", "MouthCornerPull", "MouthCornerSlant", "MouthDimple",
                            "MouthFrown", "MouthLowerDown", "MouthPress", "MouthStretch", "MouthUpperDeepen",
                            "MouthUpperUp", "NoseSneer", "LipSuckUpper", "LipSuckLower")
     for side in SIDES]
    + [f"Lip{k}{lip}{side}" for k in ("Funnel", "Pucker") for lip in ("Upper", "Lower") for side in SIDES]
    + ["MouthUpperLeft", "MouthUpperRight", "MouthLowerLeft", "MouthLowerRight", "MouthRaiserUpper",
       "MouthRaiserLower", "MouthClosed", "JawOpen", "JawLeft", "JawRight", "JawForward", "TongueOut"])


def _mean(x: float, y: float) -> float:
    return (x + y) / 2.0


def _combined(b: dict[str, float]) -> dict[str, float]:
    """VRCFT's combined parameters, in its own formulas and names."""
    c: dict[str, float] = {}
    for side in SIDES:
        c[f"BrowUp{side}"] = 0.6 * b[f"BrowOuterUp{side}"] + 0.4 * b[f"BrowInnerUp{side}"]
        c[f"BrowDown{side}"] = 0.75 * b[f"BrowLowerer{side}"] + 0.25 * b[f"BrowPinch{side}"]
        c[f"MouthSmile{side}"] = 0.8 * b[f"MouthCornerPull{side}"] + 0.2 * b[f"MouthCornerSlant{side}"]
        c[f"MouthSad{side}"] = max(b[f"MouthFrown{side}"], b[f"MouthStretch{side}"])
        c[f"Eye{side}X"], c[f"Eye{side}Y"] = b[f"GazeX{side}"], b[f"GazeY{side}"]
        c[f"EyeOpen{side}"] = b[f"Open{side}"]
        c[f"EyeClosed{side}"] = 1.0 - b[f"Open{side}"]
        c[f"EyeLid{side}"] = 0.75 * b[f"Open{side}"] + 0.25 * b[f"EyeWide{side}"]
        c[f"BrowExpression{side}"] = min(1.0, 0.5 * b[f"BrowInnerUp{side}"] + 0.5 * b[f"BrowOuterUp{side}"]) \
            - c[f"BrowDown{side}"]
        c[f"CheekPuffSuck{side}"] = b[f"CheekPuff{side}"]                      # - CheekSuck (0)
        c[f"LipPucker{side}"] = _mean(b[f"LipPuckerUpper{side}"], b[f"LipPuckerLower{side}"])
        for lip in ("Upper", "Lower"):
            c[f"LipSuckFunnel{lip}{side}"] = b[f"LipSuck{lip}{side}"] - b[f"LipFunnel{lip}{side}"]
        c[f"MouthTightenerStretch{side}"] = -b[f"MouthStretch{side}"]          # Tightener (0) - Stretch
        c[f"MouthCornerY{side}"] = b[f"MouthCornerSlant{side}"] - b[f"MouthFrown{side}"]
        c[f"SmileFrown{side}"] = c[f"MouthSmile{side}"] - b[f"MouthFrown{side}"]
        c[f"SmileSad{side}"] = c[f"MouthSmile{side}"] - c[f"MouthSad{side}"]
    c["EyeX"] = _mean(b["GazeXLeft"], b["GazeXRight"])
    c["EyeY"] = _mean(b["GazeYLeft"], b["GazeYRight"])
    c["EyeOpen"] = _mean(b["OpenLeft"], b["OpenRight"])
    c["EyeClosed"] = 1.0 - c["EyeOpen"]
    c["EyeWide"] = max(b["EyeWideLeft"], b["EyeWideRight"])
    c["EyeLid"] = 0.75 * c["EyeOpen"] + 0.25 * _mean(b["EyeWideRight"], b["EyeWideLeft"])
    c["EyeSquint"] = c["EyesSquint"] = max(b["EyeSquintLeft"], b["EyeSquintRight"])
    c["BrowUp"] = _mean(c["BrowUpRight"], c["BrowUpLeft"])
    c["BrowDown"] = _mean(c["BrowDownRight"], c["BrowDownLeft"])
    c["BrowInnerUp"] = _mean(b["BrowInnerUpLeft"], b["BrowInnerUpRight"])
    c["BrowOuterUp"] = _mean(b["BrowOuterUpLeft"], b["BrowOuterUpRight"])
    c["BrowExpression"] = _mean(c["BrowExpressionRight"], c["BrowExpressionLeft"])
    c["JawX"] = b["JawRight"] - b["JawLeft"]
    c["JawZ"] = b["JawForward"]                                              # - JawBackward (0)
    c["CheekSquint"] = _mean(b["CheekSquintLeft"], b["CheekSquintRight"])
    c["CheekPuffSuck"] = _mean(b["CheekPuffRight"], b["CheekPuffLeft"])      # - mean CheekSuck (0)
    c["MouthUpperX"] = b["MouthUpperRight"] - b["MouthUpperLeft"]
    c["MouthLowerX"] = b["MouthLowerRight"] - b["MouthLowerLeft"]
    c["MouthX"] = _mean(b["MouthUpperRight"], b["MouthLowerRight"]) - _mean(b["MouthUpperLeft"], b["MouthLowerLeft"])
    for k in ("Suck", "Funnel", "Pucker"):
        for lip in ("Upper", "Lower"):
            c[f"Lip{k}{lip}"] = _mean(b[f"Lip{k}{lip}Right"], b[f"Lip{k}{lip}Left"])
        c[f"Lip{k}"] = _mean(c[f"Lip{k}Upper"], c[f"Lip{k}Lower"])
    for lip in ("Upper", "Lower"):
        c[f"LipSuckFunnel{lip}"] = c[f"LipSuck{lip}"] - c[f"LipFunnel{lip}"]
    c["MouthUpperUp"] = _mean(b["MouthUpperUpRight"], b["MouthUpperUpLeft"])
    c["MouthLowerDown"] = _mean(b["MouthLowerDownRight"], b["MouthLowerDownLeft"])
    c["MouthOpen"] = _mean(c["MouthUpperUp"], c["MouthLowerDown"])
    for shape in ("Stretch", "Press", "Dimple"):
        c[f"Mouth{shape}"] = _mean(b[f"Mouth{shape}Right"], b[f"Mouth{shape}Left"])
    c["NoseSneer"] = _mean(b["NoseSneerRight"], b["NoseSneerLeft"])
    c["MouthTightenerStretch"] = -c["MouthStretch"]                          # mean Tightener (0) - mean Stretch
    c["MouthCornerY"] = _mean(c["MouthCornerYLeft"], c["MouthCornerYRight"])
    c["SmileFrown"] = _mean(c["SmileFrownRight"], c["SmileFrownLeft"])
    c["SmileSad"] = _mean(c["MouthSmileLeft"], c["MouthSmileRight"]) - _mean(c["MouthSadLeft"], c["MouthSadRight"])
    return c


def _zero_face() -> tuple[dict, dict]:
    a = dict.fromkeys(ARKIT_INDEX, 0.0)
    b = _base(a, ((0.0, 0.0), (0.0, 0.0)))
    return b, _combined(b)


_B0, _C0 = _zero_face()
NAMES: tuple[str, ...] = _BASE_SENT + tuple(_C0)
# Signed parameters: -1..1 (the others 0..1).
SIGNED = frozenset(n for n in NAMES if n.endswith(("X", "Y", "Z")) or n.startswith(
    ("BrowExpression", "CheekPuffSuck", "LipSuckFunnel", "MouthTightenerStretch", "MouthCornerY", "SmileFrown",
     "SmileSad")))
assert len(set(NAMES)) == len(NAMES) and not set(NAMES) & set(NOT_SENT) and not set(_BASE_SENT) & set(_C0)


def unified_values(blendshapes, eye_angles) -> np.ndarray:
    """The NAMES parameters' values for 52 ARKit values (ARKIT_NAMES order) and eye
    angles ((yaw, pitch) left, right; degrees, ours)."""
    shapes = np.asarray(blendshapes, dtype=float).tolist()
    a = {name: shapes[i] for name, i in ARKIT_INDEX.items()}
    b = _base(a, np.reshape(np.asarray(eye_angles, dtype=float), (2, 2)).tolist())
    values = {**b, **_combined(b)}
    return np.array([values[n] for n in NAMES])
