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

from mathutils import Euler, Matrix, Quaternion, Vector

from .mapping import guess_bone_map, rigify_eye_centres, unity_to_blender_rotation
from .retarget import Row, compile_rows

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
    def __init__(self, obj, strength: float, rows):
        self.obj, self.name, self.strength = obj, obj.name, strength
        key = obj.data.shape_keys
        blocks = key.key_blocks if key is not None else []
        self.key_names = [kb.name for kb in blocks]
        limits = [(kb.slider_min, kb.slider_max) for kb in blocks]
        self.mapping, self.problems = compile_rows(rows, self.key_names, limits)
        if key is None:
            self.problems.append(f"{obj.name} has no shape keys")

    def resolve(self, blends: dict[str, float]) -> dict[int, float]:
        return self.mapping.apply(blends, self.strength)

    def write(self, values: dict[int, float]) -> None:
        key = self.obj.data.shape_keys
        if key is None or len(key.key_blocks) != len(self.key_names):
            raise StaleTargets(self.name)
        blocks = key.key_blocks
        for index, value in values.items():
            blocks[index].value = value


def mapping_rows(item) -> list[Row]:
    """A panel mesh slot's mapping rows; half-filled rows are skipped, and rows the
    panel's limits already keep valid cannot fail validation."""
    return [Row(r.stream_name.strip(), r.shape_key.strip(), r.strength, r.curve)
            for r in item.remaps if r.stream_name.strip() and r.shape_key.strip()]


@dataclass
class BoneSlot:
    name: str  # the rig's bone
    rest: Quaternion  # its rest orientation in armature space
    rest_inverse: Quaternion


@dataclass
class AimSlot:
    """A gaze target control (Rigify's eye.L / eye.R / eyes): the eyes aim at it, so
    the gaze moves it around the eye centre instead of turning a bone."""
    name: str
    offset: Vector  # control's rest head minus the eye centre, armature space
    to_local: Matrix  # armature-space vector -> the pose bone's location space
    streams: tuple[str, ...] = ()  # stream bones whose rotations it follows (averaged)


class BoneTarget:
    def __init__(self, armature, bone_map: dict[str, str]):
        self.obj, self.name = armature, armature.name
        self.slots: dict[str, BoneSlot] = {}
        self.aims: dict[str, AimSlot] = {}
        self.problems: list[str] = []
        names = [b.name for b in armature.data.bones]
        for stream_bone, bone_name in bone_map.items():
            bone = armature.data.bones.get(bone_name)
            if bone is None:
                self.problems.append(f"{stream_bone}: no bone named {bone_name!r} in {armature.name}")
                continue
            centres = rigify_eye_centres(bone_name, names) if stream_bone in ("LeftEye", "RightEye") else ()
            if centres:
                aim = self.aims.get(bone_name)
                if aim is None:
                    centre = sum((armature.data.bones[c].head_local for c in centres), Vector()) / len(centres)
                    aim = self.aims[bone_name] = AimSlot(
                        bone_name, bone.head_local - centre, bone.matrix_local.to_3x3().inverted())
                aim.streams += (stream_bone,)
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

    def resolve_aims(self, bones) -> dict[str, Vector]:
        """Gaze control -> its pose location: the rest offset from the eye centre,
        turned by the gaze (in the character's axes, as for bones), minus the rest
        offset, in the bone's location space. The head turn reaches it through its
        parents, as the stream's eye rotations are relative to the head."""
        values: dict[str, Vector] = {}
        for aim in self.aims.values():
            turns = [bones[s] for s in aim.streams if s in bones]
            if not turns:
                continue
            rotation = Quaternion(unity_to_blender_rotation(turns[0]))
            if len(turns) > 1:  # a shared control follows the mean gaze
                rotation = rotation.slerp(Quaternion(unity_to_blender_rotation(turns[1])), 0.5)
            values[aim.name] = aim.to_local @ (rotation @ aim.offset - aim.offset)
        return values

    def write(self, values: dict[str, Quaternion], locations: dict[str, Vector] | None = None) -> None:
        pose_bones = self.obj.pose.bones
        for name, rotation in values.items():
            pose_bone = pose_bones.get(name)
            if pose_bone is None:
                raise StaleTargets(name)
            set_rotation(pose_bone, rotation)
        for name, location in (locations or {}).items():
            pose_bone = pose_bones.get(name)
            if pose_bone is None:
                raise StaleTargets(name)
            pose_bone.location = location


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
# MediaPipe's depth runs on about 1.4x the scale of x and y (bridge.landmarks,
# FACE_MESH_DEPTH_SCALE): scaled back, the landmark face turns as a rigid body, so a
# head turn does not leak into the face rig's feature bones.
LANDMARK_DEPTH_SCALE = 0.7
LANDMARK_CACHE_MODIFIER = "FaceMocap take"


def landmarks_to_blender(points):
    """(478, 3) landmark-stream coordinates -> object-space vertex positions."""
    import numpy as np

    p = np.asarray(points, dtype=np.float32)
    return np.stack([(p[:, 0] - 0.5), p[:, 2] * LANDMARK_DEPTH_SCALE, (0.5 - p[:, 1])], axis=1) * LANDMARK_SCALE


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
    locations: dict[str, Vector] = field(default_factory=dict)  # gaze controls
    armature: str = ""


class Targets:
    """Everything one frame touches, built from `scene.facemocap`."""

    def __init__(self, settings):
        from .properties import BONE_PROPERTIES

        self.meshes: list[MeshTarget] = []
        self.problems: list[str] = []
        for item in settings.meshes:
            if item.object is not None and item.object.type == "MESH":
                target = MeshTarget(item.object, item.strength, mapping_rows(item))
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
            resolved.locations = self.armature.resolve_aims(frame.bones)
            resolved.armature = self.armature.name
        return resolved

    def write(self, resolved: Resolved) -> None:
        for target, values in resolved.meshes:
            target.write(values)
        if resolved.bones or resolved.locations:
            self.armature.write(resolved.bones, resolved.locations)

