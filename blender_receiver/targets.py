"""The Blender objects a frame drives, resolved once from the panel's settings.

`Targets.resolve(frame)` turns a frame into the exact values to set (clamped shape
key values, bone rotations in each pose bone's local space) without touching
Blender data; `Targets.write()` sets them. Recording keeps what `resolve` returns,
so a take replays exactly what was seen live.

Only objects (IDs) and indices are kept between frames, never pointers to shape
keys or pose bones: those can be freed by an edit or undo, and a stale one can
crash Blender. Targets are rebuilt from the settings every second and after edits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from mathutils import Euler, Quaternion

from .mapping import guess_bone_map, match_shape_keys, unity_to_blender_rotation

# Constraints that replace a bone's own rotation, so driving it would do nothing.
_ROTATION_OVERRIDES = {"DAMPED_TRACK", "TRACK_TO", "LOCKED_TRACK", "COPY_ROTATION", "COPY_TRANSFORMS", "IK"}


class StaleTargets(Exception):
    """The rig changed under us (a shape key or bone went away); rebuild."""


def vrm_humanoid(armature_data) -> dict[str, str] | None:
    """The VRM Add-on's humanoid table (human bone -> Blender bone), if it has one."""
    ext = getattr(armature_data, "vrm_addon_extension", None)
    if ext is None:
        return None
    table: dict[str, str] = {}
    try:
        for item in ext.vrm0.humanoid.human_bones:  # VRM 0.x: a list of (bone, node)
            if item.node.bone_name:
                table[item.bone] = item.node.bone_name
        human_bones = ext.vrm1.humanoid.human_bones  # VRM 1.0: one property per bone
        for key in ("head", "neck", "left_eye", "right_eye"):
            name = getattr(human_bones, key).node.bone_name
            if name and (ext.spec_version == "1.0" or key not in table):
                table[key] = name
    except AttributeError:
        pass  # another version of the VRM Add-on: fall back to names
    return table or None


def autofill_bones(settings) -> dict[str, str]:
    """Fill the bone fields from the armature (VRM table, Rigify, plain names)."""
    from .properties import BONE_PROPERTIES

    armature = settings.armature
    if armature is None:
        return {}
    guessed = guess_bone_map([b.name for b in armature.data.bones], vrm_humanoid(armature.data))
    for stream_bone, prop in BONE_PROPERTIES.items():
        setattr(settings, prop, guessed.get(stream_bone, ""))
    return guessed


class MeshTarget:
    def __init__(self, obj, strength: float, remap):
        self.obj, self.name, self.strength = obj, obj.name, strength
        key = obj.data.shape_keys
        blocks = key.key_blocks if key is not None else []
        self.key_names = [kb.name for kb in blocks]
        self.limits = [(kb.slider_min, kb.slider_max) for kb in blocks]
        self.table, self.problems = match_shape_keys(self.key_names, remap)
        if key is None:
            self.problems.append(f"{obj.name} has no shape keys")
        self._lower: dict[str, str] = {}

    def resolve(self, blends: dict[str, float]) -> dict[int, float]:
        values: dict[int, float] = {}
        lower, table, limits = self._lower, self.table, self.limits
        for name, value in blends.items():
            key = lower.get(name)
            if key is None:
                key = lower[name] = name.lower()
                if len(lower) > 4096:  # a sender cycling through names must not grow this forever
                    lower.clear()
            indices = table.get(key)
            if indices:
                value *= self.strength
                for index in indices:
                    low, high = limits[index]
                    values[index] = low if value < low else high if value > high else value
        return values

    def write(self, values: dict[int, float]) -> None:
        key = self.obj.data.shape_keys
        if key is None or len(key.key_blocks) != len(self.key_names):
            raise StaleTargets(self.name)
        blocks = key.key_blocks
        for index, value in values.items():
            blocks[index].value = value


@dataclass
class BoneSlot:
    name: str  # the rig's bone
    rest: Quaternion  # its rest orientation in armature space
    rest_inverse: Quaternion


class BoneTarget:
    def __init__(self, armature, bone_map: dict[str, str]):
        self.obj, self.name = armature, armature.name
        self.slots: dict[str, BoneSlot] = {}
        self.problems: list[str] = []
        for stream_bone, bone_name in bone_map.items():
            bone = armature.data.bones.get(bone_name)
            if bone is None:
                self.problems.append(f"{stream_bone}: no bone named {bone_name!r} in {armature.name}")
                continue
            rest = bone.matrix_local.to_quaternion()
            self.slots[stream_bone] = BoneSlot(bone_name, rest, rest.inverted())
            pose_bone = armature.pose.bones.get(bone_name)
            for constraint in pose_bone.constraints if pose_bone else ():
                if constraint.type in _ROTATION_OVERRIDES and constraint.enabled and constraint.influence > 0:
                    self.problems.append(
                        f"{stream_bone}: constraint {constraint.name!r} on {bone_name} overrides its rotation"
                    )

    def resolve(self, bones) -> dict[str, Quaternion]:
        """Rig bone -> rotation in the pose bone's local space.

        The stream's rotation is expressed in the character's axes; conjugating
        by the bone's rest orientation puts it in the bone's own axes, which is
        what `rotation_quaternion` means, whatever the bone's roll or direction.
        """
        values: dict[str, Quaternion] = {}
        for stream_bone, slot in self.slots.items():
            rotation = bones.get(stream_bone)
            if rotation is not None:
                values[slot.name] = slot.rest_inverse @ Quaternion(unity_to_blender_rotation(rotation)) @ slot.rest
        return values

    def write(self, values: dict[str, Quaternion]) -> None:
        pose_bones = self.obj.pose.bones
        for name, rotation in values.items():
            pose_bone = pose_bones.get(name)
            if pose_bone is None:
                raise StaleTargets(name)
            set_rotation(pose_bone, rotation)


def set_rotation(pose_bone, rotation: Quaternion) -> None:
    """Set a rotation in whatever rotation mode the bone uses."""
    mode = pose_bone.rotation_mode
    if mode == "QUATERNION":
        pose_bone.rotation_quaternion = rotation
    elif mode == "AXIS_ANGLE":
        axis, angle = rotation.to_axis_angle()
        pose_bone.rotation_axis_angle = (angle, *axis)
    else:
        # The previous angles keep consecutive frames continuous (through 180 degrees too),
        # but to_euler(compat) follows every turn: a sender that spins a bone (fuzz found
        # it) walked them into hundreds of radians, where float32 loses precision. Past a
        # full turn they are wrapped back first, so they stay within about +-3 pi.
        previous = pose_bone.rotation_euler
        if any(abs(a) > math.tau for a in previous):
            previous = Euler([math.remainder(a, math.tau) for a in previous], mode)
        pose_bone.rotation_euler = rotation.to_euler(mode, previous)


# The landmark face: one image width is this many metres. Image x (right) is the
# character's left (+X), y (down) is -Z, depth (away from the camera) is +Y; the
# object's origin is the image's horizontal centre, half an image width below its top.
LANDMARK_SCALE = 1.0
LANDMARK_CACHE_MODIFIER = "FaceMocap take"


def landmarks_to_blender(points):
    """(478, 3) landmark-stream coordinates -> object-space vertex positions."""
    import numpy as np

    p = np.asarray(points, dtype=np.float32)
    return np.stack([(p[:, 0] - 0.5), p[:, 2], (0.5 - p[:, 1])], axis=1) * LANDMARK_SCALE


def apply_landmarks(obj, points) -> None:
    """Move the landmark face's vertices. A recorded take's cache modifier would hide
    live motion, so it is switched off while live landmarks arrive."""
    mesh = obj.data
    if len(mesh.vertices) != len(points):
        return  # not a landmark face (any more): leave it alone
    mesh.vertices.foreach_set("co", landmarks_to_blender(points).ravel())
    mesh.update()
    cache = obj.modifiers.get(LANDMARK_CACHE_MODIFIER)
    if cache is not None and cache.show_viewport:
        cache.show_viewport = False


@dataclass
class Resolved:
    meshes: list[tuple[MeshTarget, dict[int, float]]] = field(default_factory=list)
    bones: dict[str, Quaternion] = field(default_factory=dict)
    armature: str = ""


class Targets:
    """Everything one frame touches, built from `scene.facemocap`."""

    def __init__(self, settings):
        from .properties import BONE_PROPERTIES

        self.meshes: list[MeshTarget] = []
        self.problems: list[str] = []
        for item in settings.meshes:
            if item.object is not None and item.object.type == "MESH":
                target = MeshTarget(item.object, item.strength, [(r.stream_name, r.shape_key) for r in item.remaps])
                self.meshes.append(target)
                self.problems += target.problems
        self.armature: BoneTarget | None = None
        if settings.armature is not None:
            bone_map = {b: getattr(settings, p) for b, p in BONE_PROPERTIES.items() if getattr(settings, p)}
            self.armature = BoneTarget(settings.armature, bone_map)
            self.problems += self.armature.problems

    def resolve(self, frame) -> Resolved:
        resolved = Resolved()
        if frame.blends:
            resolved.meshes = [(target, target.resolve(frame.blends)) for target in self.meshes]
        if self.armature is not None and frame.bones:
            resolved.bones = self.armature.resolve(frame.bones)
            resolved.armature = self.armature.name
        return resolved

    def write(self, resolved: Resolved) -> None:
        for target, values in resolved.meshes:
            target.write(values)
        if resolved.bones:
            self.armature.write(resolved.bones)

