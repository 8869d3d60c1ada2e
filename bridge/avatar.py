"""The avatar's own head-bone offsets, read from its VRM file (for `--avatar model.vrm`).

VMC receivers such as EVMC4U set each bone's Unity localPosition from /VMC/Ext/Bone/Pos
every frame, so the nominal offsets in bridge.vmc move a real avatar's neck, head and
eyes to where they are not. The true values are in the VRM file (binary glTF): the
humanoid bone's node translation, relative to its glTF parent node, which is what Unity's
localPosition is once the axes are converted the way UniVRM imports the file.

Pure: it reads one file (through pygltflib) and returns values; no sockets, no globals.
"""

from __future__ import annotations

import math
import os
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pygltflib import GLTF2, Node

# VMC (Unity HumanBodyBones) name -> VRM humanoid bone name (the same in VRM 0.x and 1.0).
VRM_BONES = {"Neck": "neck", "Head": "head", "LeftEye": "leftEye", "RightEye": "rightEye"}
REQUIRED_BONES = ("neck", "head")  # required humanoid bones in both VRM versions; eyes are optional
_GLB_MAGIC = b"glTF"

# glTF -> Unity, as UniVRM imports (vrm-c/UniVRM @ 42f5cc15, Packages/UniGLTF/Runtime/UniGLTF/IO/):
# NodeImporter.FixCoordinate reflects every node through IAxisInverter (Axes.cs: ReverseZ
# (x, y, -z), ReverseX (-x, y, z); UnityExtensions.cs). VRM 0.x: VRMImporterContext passes
# `new ImporterContextSettings(false)`, whose invertAxis defaults to Axes.Z
# (ImporterContextSettings.cs). VRM 1.0: Vrm10Importer passes
# `new ImporterContextSettings(false, Axes.X)` (Packages/VRM10/Runtime/IO/Vrm10Importer.cs).
# Reflecting world positions and rotations alike reflects each local translation the same way.
# A VRM 0.x file loaded by the VRM 1.0 loader (Vrm10.cs: VRMC_vrm first, else migration) is
# turned 180 degrees about Y (Migration/RotateY180.cs: -x, -z), then ReverseX: (x, y, -z) again.
_TO_UNITY = {"0": (1.0, 1.0, -1.0), "1": (-1.0, 1.0, 1.0)}


class AvatarError(Exception):
    """An avatar file cannot be used; a one-line, user-facing message naming the file."""


@dataclass(frozen=True)
class Avatar:
    path: Path
    vrm_version: Literal["0", "1"]
    # VMC bone name -> local offset in metres, Unity frame; only the bones the avatar has.
    offsets: dict[str, tuple[float, float, float]]


def bone_offsets(path: str | os.PathLike) -> dict[str, tuple[float, float, float]]:
    """Local Unity offsets of "Neck", "Head" and, where the avatar has them, the eyes."""
    return load_avatar(path).offsets


def load_avatar(path: str | os.PathLike) -> Avatar:
    """Read a VRM 0.x or 1.0 file; raises AvatarError if it cannot be used."""
    path = Path(path)
    prefix = f"avatar '{path}'"
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise AvatarError(f"{prefix}: no such file") from None
    except OSError as exc:
        reason = "it is a folder" if path.is_dir() else exc.strerror or exc
        raise AvatarError(f"{prefix}: {reason}") from None
    if data[:4] != _GLB_MAGIC:
        raise AvatarError(f"{prefix} is not a VRM or binary glTF file (no glTF header)")
    declared = struct.unpack_from("<I", data, 8)[0] if len(data) >= 12 else 0  # the GLB header's length
    if declared > len(data):
        raise AvatarError(f"{prefix} is cut short ({len(data)} of its {declared} bytes)")
    try:
        with warnings.catch_warnings():  # pygltflib warns about unknown chunks and versions
            warnings.simplefilter("ignore")
            gltf = GLTF2.load_from_bytes(data)
    # pygltflib does not document what a damaged file raises (struct.error, JSON and
    # dataclass errors, ...); each one means the same thing here.
    except Exception as exc:
        raise AvatarError(f"{prefix} is a damaged glTF file ({exc})") from None
    if gltf is None:
        raise AvatarError(f"{prefix} is a damaged glTF file (no JSON chunk)")

    version, bones = _humanoid(gltf, prefix)
    for name in REQUIRED_BONES:
        if name not in bones:
            raise AvatarError(f"{prefix}: the VRM humanoid has no '{name}' bone (required)")
    sign = _TO_UNITY[version]
    offsets = {}
    for vmc_name, vrm_name in VRM_BONES.items():
        if vrm_name in bones:
            t = _local_translation(gltf, bones[vrm_name], vrm_name, prefix)
            offsets[vmc_name] = tuple(v * s + 0.0 for v, s in zip(t, sign))  # + 0.0: no -0.0
    return Avatar(path=path, vrm_version=version, offsets=offsets)


def _humanoid(gltf: GLTF2, prefix: str) -> tuple[Literal["0", "1"], dict[str, object]]:
    """The VRM version and {VRM bone name: node index as written} for the bones we use."""
    extensions = gltf.extensions if isinstance(gltf.extensions, dict) else {}
    # VRMC_vrm first: a file carrying both is read as VRM 1.0, as UniVRM's Vrm10 loader does.
    if "VRMC_vrm" in extensions:
        version, vrm = "1", extensions["VRMC_vrm"]
    elif "VRM" in extensions:
        version, vrm = "0", extensions["VRM"]
    else:
        raise AvatarError(f"{prefix} is a glTF file without VRM humanoid data")
    humanoid = vrm.get("humanoid") if isinstance(vrm, dict) else None
    human_bones = humanoid.get("humanBones") if isinstance(humanoid, dict) else None
    wanted = set(VRM_BONES.values())
    bones = {}
    if version == "1" and isinstance(human_bones, dict):  # {"neck": {"node": 3}, ...}
        for name, bone in human_bones.items():
            if name in wanted:
                bones[name] = bone.get("node") if isinstance(bone, dict) else None
    elif version == "0" and isinstance(human_bones, list):  # [{"bone": "neck", "node": 3}, ...]
        for bone in human_bones:
            if isinstance(bone, dict) and isinstance(bone.get("bone"), str) and bone["bone"] in wanted:
                bones.setdefault(bone["bone"], bone.get("node"))
    else:
        raise AvatarError(f"{prefix} is a glTF file without VRM humanoid data "
                          f"(its VRM {'1.0' if version == '1' else '0.x'} extension has no humanBones)")
    return version, bones


def _local_translation(gltf: GLTF2, index: object, bone: str, prefix: str) -> tuple[float, float, float]:
    """The node's translation in glTF's frame: its TRS translation, or its matrix's column 3."""
    nodes = gltf.nodes or []
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(nodes):
        raise AvatarError(f"{prefix}: the '{bone}' bone's node index {index!r} is not one of "
                          f"the file's {len(nodes)} nodes")
    node = nodes[index]
    if not isinstance(node, Node):  # pygltflib keeps a JSON null in "nodes" as it is
        raise AvatarError(f"{prefix}: node {index} (the '{bone}' bone) is not a glTF node")
    # glTF gives a node either a matrix or TRS; UniVRM's NodeImporter applies the matrix last.
    if node.matrix is not None:
        values, what = node.matrix, "matrix"
        # Column-major: elements 12, 13, 14 are the translation column.
        ok = isinstance(values, list) and len(values) == 16
        xyz = values[12:15] if ok else None
    else:
        values, what = ([0.0, 0.0, 0.0] if node.translation is None else node.translation), "translation"
        ok = isinstance(values, list) and len(values) == 3
        xyz = values if ok else None
    if not ok or not all(_is_number(v) for v in values):
        raise AvatarError(f"{prefix}: node {index} (the '{bone}' bone) has a malformed {what}")
    if not all(math.isfinite(v) for v in values):
        raise AvatarError(f"{prefix}: node {index} (the '{bone}' bone) has a non-finite {what}")
    return float(xyz[0]), float(xyz[1]), float(xyz[2])


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
