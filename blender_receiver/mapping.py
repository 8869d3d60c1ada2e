"""Which bone a stream bone drives, and VMC -> Blender axes. No bpy. (Shape keys:
retarget.py.)

Kept apart from the Blender layer so the rules can be tested on plain lists of names.
"""

from __future__ import annotations

import re

# The VMC (Unity HumanBodyBones) bones the tracker sends, in panel order.
STREAM_BONES = ("Head", "Neck", "LeftEye", "RightEye")

# The VRM Add-on for Blender names humanoid bones in camelCase (VRM 0.x) or
# snake_case (VRM 1.0 property names); both lead to the same stream bone.
VRM_HUMAN_BONES = {
    "Head": ("head",),
    "Neck": ("neck",),
    "LeftEye": ("leftEye", "left_eye"),
    "RightEye": ("rightEye", "right_eye"),
}

# Plain rig names, compared after `_normalized` (lower case, no prefix before ':',
# no separators): head, Head, mixamorig:Head, J_Bip_C_Head (VRoid), eye.L, Eye_L ...
_PLAIN_NAMES = {
    "Head": {"head", "jbipchead"},
    "Neck": {"neck", "jbipcneck"},
    "LeftEye": {"lefteye", "eyel", "eyeleft", "leye", "jadjlfaceeye"},
    "RightEye": {"righteye", "eyer", "eyeright", "reye", "jadjrfaceeye"},
}

# In a Rigify rig the eyes aim at target controls through Damped Track constraints,
# so an eye bone's own rotation has no effect: the gaze moves the eye.L / eye.R
# controls instead, or the shared `eyes` (`eye_common` in newer face rigs) control
# when a rig has no per-eye ones. The eye's centre is its ORG- bone's head.
_RIGIFY_BONES = {"Head": "head", "Neck": "neck"}
_RIGIFY_EYE_CONTROLS = {"LeftEye": "eye.L", "RightEye": "eye.R"}
RIGIFY_SHARED_EYE_CONTROLS = ("eyes", "eye_common")
_RIGIFY_PREFIXES = ("ORG-", "DEF-", "MCH-")


def rigify_eye_centres(control: str, bone_names) -> tuple[str, ...]:
    """The ORG- eye bones whose heads a Rigify gaze control turns the eyes about:
    one for eye.L / eye.R, both for the shared control; () when it is no such control."""
    present = set(bone_names)
    if control not in present:
        return ()
    if control in _RIGIFY_EYE_CONTROLS.values():
        centres = (f"ORG-{control}",)
    elif control in RIGIFY_SHARED_EYE_CONTROLS:
        centres = ("ORG-eye.L", "ORG-eye.R")
    else:
        return ()
    return centres if all(c in present for c in centres) else ()


def _normalized(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.rsplit(":", 1)[-1].lower())


def is_rigify(bone_names) -> bool:
    return any(name.startswith(_RIGIFY_PREFIXES) for name in bone_names)


def guess_bone_map(bone_names, vrm_humanoid: dict[str, str] | None = None) -> dict[str, str]:
    """Stream bone -> rig bone for the bones that can be found; others are left out.

    `vrm_humanoid` is the VRM Add-on's humanoid table (human bone -> Blender bone)
    when the armature has one; it wins because the model's author set it.
    """
    bone_names = list(bone_names)
    present = set(bone_names)
    found: dict[str, str] = {}
    for stream_bone, keys in VRM_HUMAN_BONES.items():
        for key in keys:
            bone = (vrm_humanoid or {}).get(key)
            if bone in present:
                found[stream_bone] = bone
                break
    if is_rigify(bone_names):
        plain = {k: v for k, v in _RIGIFY_BONES.items() if v in present}
        for stream_bone, control in _RIGIFY_EYE_CONTROLS.items():
            shared = [c for c in RIGIFY_SHARED_EYE_CONTROLS if c in present]
            for candidate in (control, *shared):
                if rigify_eye_centres(candidate, bone_names):
                    plain[stream_bone] = candidate
                    break
    else:
        plain = {}
        for stream_bone, names in _PLAIN_NAMES.items():
            matches = [b for b in bone_names if _normalized(b) in names]
            if matches:
                # Prefer the exact stream name (a VRM-style rig), then the shortest.
                plain[stream_bone] = min(matches, key=lambda b: (b != stream_bone, len(b), b))
    return {**plain, **found}


def unity_to_blender_rotation(q) -> tuple[float, float, float, float]:
    """A VMC rotation (x, y, z, w; Unity: left-handed, Y up, character facing +Z) as a
    Blender quaternion (w, x, y, z; right-handed, Z up, character facing -Y).

    The axis map is Unity x -> Blender -x, y -> z, z -> -y (a reflection). A
    rotation axis is a pseudovector, so it maps with the opposite sign: (x, z, -y).
    So +30 degrees about Unity +Y (the face turning to the character's right) is
    -30 degrees about Blender +Z: forward (-Y) swings toward -X, the character's right.
    """
    x, y, z, w = q
    return (w, x, z, -y)
