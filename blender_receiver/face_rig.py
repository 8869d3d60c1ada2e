"""The landmark face rig: face bones that follow the landmark face's vertices.

The seed project (FreeFaceMoCap) moved face bones from MediaPipe landmark positions.
`create_face_rig` does that with Blender's own machinery: vertex groups on the
landmark face (a few landmarks each, weighted) and one Copy Location constraint per
bone whose target is that vertex group. A vertex-group target is the weighted mean of
the group's vertices on the *evaluated* mesh, so live vertex writes (apply_landmarks)
and a take played from the Mesh Cache point cache both drive the rig.

Every feature bone is a child of a `head` bone that follows the head's stable points
(those MediaPipe's own rigid head fit uses), so a feature bone's local transform is
expression only: head motion is the head bone's. Bone axes at rest are the head's:
local X towards the character's left, Y up, Z forward (out of the face).

`bake_face_rig` bakes the rig (or a character armature constrained to it) to an
Action with Blender's own visual-keying bake, so the rig can then be deleted.
"""

from __future__ import annotations

import contextlib
import dataclasses

import numpy as np

DEFAULT_NAME = "FaceMocap Face Rig"
RIG_MARKER = "facemocap_face_rig"  # custom property on the rig object: which ones we may rebuild
GROUP_PREFIX = "FM_"
CONSTRAINT_PREFIX = "FaceMocap"
COUNT = 478

# --- landmark indices (MediaPipe Face Mesh, 478 points) ------------------------------
# "Left" is the subject's own left, as in bridge/landmarks.py, where the shared names
# come from (a test checks they agree; the add-on is installed alone and cannot import
# bridge). The landmark face's +X is the subject's left, so LEFT_* feed the ".L" bones.
RIGHT_EYE_OUTER, RIGHT_EYE_INNER = 33, 133
LEFT_EYE_OUTER, LEFT_EYE_INNER = 263, 362
RIGHT_EYE_UPPER_LID = (160, 159, 158)
RIGHT_EYE_LOWER_LID = (144, 145, 153)
LEFT_EYE_UPPER_LID = (387, 386, 385)
LEFT_EYE_LOWER_LID = (373, 374, 380)
RIGHT_BROW_INNER = (107, 55)
RIGHT_BROW_MIDDLE = (105, 52)
RIGHT_BROW_OUTER = (70, 46)
LEFT_BROW_INNER = (336, 285)
LEFT_BROW_MIDDLE = (334, 282)
LEFT_BROW_OUTER = (300, 276)
MOUTH_RIGHT_CORNER, MOUTH_LEFT_CORNER = 61, 291
UPPER_LIP_TOP, UPPER_LIP_INNER = 0, 13
LOWER_LIP_INNER, LOWER_LIP_BOTTOM = 14, 17
NOSE_TIP = 1
NOSTRIL_RIGHT, NOSTRIL_LEFT = 98, 327
CHIN = 152
FOREHEAD = 10
CHEEK_RIGHT, CHEEK_LEFT = 205, 425
# Not named in bridge: neighbours that steady a group.
INNER_MOUTH_RIGHT_CORNER, INNER_MOUTH_LEFT_CORNER = 78, 308   # ends of the inner lip contour
UPPER_LIP_TOP_RIGHT, UPPER_LIP_TOP_LEFT = 37, 267             # either side of UPPER_LIP_TOP
LOWER_LIP_BOTTOM_RIGHT, LOWER_LIP_BOTTOM_LEFT = 84, 314       # either side of LOWER_LIP_BOTTOM
CHIN_RIGHT, CHIN_LEFT = 148, 377                              # either side of CHIN on the face oval
CHEEK_RIGHT_OUTER, CHEEK_LEFT_OUTER = 187, 411
CHEEK_RIGHT_LOWER, CHEEK_LEFT_LOWER = 207, 427
FOREHEAD_RIGHT, FOREHEAD_LEFT = 67, 297
TEMPLE_RIGHT, TEMPLE_LEFT = 54, 284

# The head frame, from points MediaPipe's rigid head fit treats as stable (its
# procrustes weights are > 0), so expressions do not turn the head. The anchor (the
# four eye corners) and the side group (the left eye's corners) have the same height and
# depth on the canonical face, so the frame's X is level there; the up group's mean sits
# nearly straight above the anchor (1.4 degrees).
HEAD_ANCHOR = ((RIGHT_EYE_OUTER, 1.0), (LEFT_EYE_OUTER, 1.0), (RIGHT_EYE_INNER, 1.0), (LEFT_EYE_INNER, 1.0))
HEAD_UP = ((FOREHEAD, 1.0), (FOREHEAD_RIGHT, 1.0), (FOREHEAD_LEFT, 1.0), (TEMPLE_RIGHT, 0.5), (TEMPLE_LEFT, 0.5))
HEAD_SIDE = ((LEFT_EYE_OUTER, 1.0), (LEFT_EYE_INNER, 1.0))


def _lid(points):
    """A lid's middle point counts fully, its neighbours half."""
    return ((points[0], 0.5), (points[1], 1.0), (points[2], 0.5))


# Feature bone -> (landmark index, weight) of its vertex group "FM_<bone>".
FEATURES: dict[str, tuple[tuple[int, float], ...]] = {
    "jaw": ((CHIN, 1.0), (CHIN_RIGHT, 0.5), (CHIN_LEFT, 0.5)),
    "lip_upper": ((UPPER_LIP_TOP, 1.0), (UPPER_LIP_INNER, 1.0), (UPPER_LIP_TOP_RIGHT, 0.5), (UPPER_LIP_TOP_LEFT, 0.5)),
    "lip_lower": ((LOWER_LIP_BOTTOM, 1.0), (LOWER_LIP_INNER, 1.0),
                  (LOWER_LIP_BOTTOM_RIGHT, 0.5), (LOWER_LIP_BOTTOM_LEFT, 0.5)),
    "lip_corner.L": ((MOUTH_LEFT_CORNER, 1.0), (INNER_MOUTH_LEFT_CORNER, 0.5)),
    "lip_corner.R": ((MOUTH_RIGHT_CORNER, 1.0), (INNER_MOUTH_RIGHT_CORNER, 0.5)),
    "lid_upper.L": _lid(LEFT_EYE_UPPER_LID),
    "lid_upper.R": _lid(RIGHT_EYE_UPPER_LID),
    "lid_lower.L": _lid(LEFT_EYE_LOWER_LID),
    "lid_lower.R": _lid(RIGHT_EYE_LOWER_LID),
    "brow_inner.L": tuple((i, 1.0) for i in LEFT_BROW_INNER),
    "brow_inner.R": tuple((i, 1.0) for i in RIGHT_BROW_INNER),
    "brow_mid.L": tuple((i, 1.0) for i in LEFT_BROW_MIDDLE),
    "brow_mid.R": tuple((i, 1.0) for i in RIGHT_BROW_MIDDLE),
    "brow_outer.L": tuple((i, 1.0) for i in LEFT_BROW_OUTER),
    "brow_outer.R": tuple((i, 1.0) for i in RIGHT_BROW_OUTER),
    "cheek.L": ((CHEEK_LEFT, 1.0), (CHEEK_LEFT_OUTER, 0.5), (CHEEK_LEFT_LOWER, 0.5)),
    "cheek.R": ((CHEEK_RIGHT, 1.0), (CHEEK_RIGHT_OUTER, 0.5), (CHEEK_RIGHT_LOWER, 0.5)),
    "nose": ((NOSE_TIP, 1.0), (NOSTRIL_RIGHT, 0.5), (NOSTRIL_LEFT, 0.5)),
}
ROOT = "head"
HEAD_GROUPS = {"head": HEAD_ANCHOR, "head_up": HEAD_UP, "head_left": HEAD_SIDE}


def group_name(key: str) -> str:
    return GROUP_PREFIX + key


def vertex_groups() -> dict[str, tuple[tuple[int, float], ...]]:
    """Every vertex group the rig uses: name -> (landmark index, weight)."""
    return {group_name(k): v for k, v in (*HEAD_GROUPS.items(), *FEATURES.items())}


def weighted_centroids(points: np.ndarray) -> dict[str, np.ndarray]:
    """Each group's weighted mean position, as a vertex-group constraint target sees it."""
    out = {}
    for name, members in vertex_groups().items():
        index = [i for i, _ in members]
        weight = np.array([w for _, w in members])
        out[name] = (points[index] * weight[:, None]).sum(axis=0) / weight.sum()
    return out


# --- create -------------------------------------------------------------------------


def create_face_rig(scene, landmark_obj, name: str = DEFAULT_NAME):
    """An armature whose bones follow `landmark_obj` (a 478-vertex landmark face).

    Bone rest positions are the face's current (evaluated) landmark positions. Run
    again on the same face, the rig is rebuilt in place (same object, so constraints
    of a character that point at it keep working) and the vertex groups are rewritten.
    Raises ValueError (one line) when `landmark_obj` is not a usable landmark face;
    nothing is changed then.
    """
    import bpy
    from mathutils import Matrix, Vector

    _check_landmark_face(landmark_obj)
    _leave_edit_modes(scene)  # vertex groups can't be written to a mesh in edit mode
    points = _evaluated_points(scene, landmark_obj)
    if not np.isfinite(points).all():
        raise ValueError(f"{landmark_obj.name}: some landmark positions are not finite numbers")
    if np.ptp(points[:, 1]) == 0.0:  # the operator's flat placeholder grid, before any frame
        raise ValueError(f"{landmark_obj.name} is still flat (no landmarks received yet): "
                         "start the receiver and the tracker's landmarks target first")
    centroids = weighted_centroids(points.astype(np.float64))
    frame = _head_frame(centroids, landmark_obj.name)
    up_length = float(np.linalg.norm(centroids[group_name("head_up")] - centroids[group_name("head")]))

    # Checks done; from here on the scene changes.
    _write_vertex_groups(landmark_obj)
    rig = _existing_rig(landmark_obj)
    if rig is None:
        rig = bpy.data.objects.new(name, bpy.data.armatures.new(name))
        scene.collection.objects.link(rig)
    rig[RIG_MARKER] = 1
    rig.parent, rig.parent_type = landmark_obj, "OBJECT"
    rig.matrix_parent_inverse = Matrix.Identity(4)  # armature space = the landmark face's space
    rig.matrix_basis = Matrix.Identity(4)
    rig.show_in_front = True
    if rig.animation_data is not None:
        rig.animation_data.action = None  # an earlier bake; the constraints drive it again

    rotation = Matrix([list(frame[:, 0]), list(frame[:, 1]), list(frame[:, 2])]).transposed()

    def rest(at) -> Matrix:
        m = rotation.to_4x4()
        m.translation = Vector(at)
        return m

    with _edit_mode(scene, rig) as edit_bones:
        root = _edit_bone(edit_bones, ROOT, rest(centroids[group_name("head")]), up_length, None)
        for bone in FEATURES:
            _edit_bone(edit_bones, bone, rest(centroids[group_name(bone)]), 0.25 * up_length, root)

    targets = [(ROOT, "COPY_LOCATION", "head"), (ROOT, "DAMPED_TRACK", "head_up"), (ROOT, "LOCKED_TRACK", "head_left")]
    targets += [(bone, "COPY_LOCATION", bone) for bone in FEATURES]
    for pose_bone in rig.pose.bones:
        for constraint in [c for c in pose_bone.constraints if c.name.startswith(CONSTRAINT_PREFIX)]:
            pose_bone.constraints.remove(constraint)
    for bone, kind, group in targets:
        pose_bone = rig.pose.bones[bone]
        pose_bone.location = (0.0, 0.0, 0.0)  # the rest pose is the pose at creation
        pose_bone.rotation_mode = "QUATERNION"
        pose_bone.rotation_quaternion = (1.0, 0.0, 0.0, 0.0)
        pose_bone.scale = (1.0, 1.0, 1.0)
        constraint = pose_bone.constraints.new(kind)
        constraint.name = f"{CONSTRAINT_PREFIX} {group}"
        constraint.target, constraint.subtarget = landmark_obj, group_name(group)
        if kind == "DAMPED_TRACK":
            constraint.track_axis = "TRACK_Y"  # the head bone points at the forehead
        elif kind == "LOCKED_TRACK":
            constraint.track_axis, constraint.lock_axis = "TRACK_X", "LOCK_Y"  # roll: X towards the left eye
    return rig


def _check_landmark_face(obj) -> None:
    if obj is None:
        raise ValueError("no landmark face: create one first (Landmark Face > Create Landmark Face)")
    if obj.type != "MESH":
        raise ValueError(f"{obj.name} is a {obj.type.lower()}, not a landmark face (a mesh of {COUNT} landmarks)")
    if len(obj.data.vertices) != COUNT:
        raise ValueError(f"{obj.name} has {len(obj.data.vertices)} vertices, not a landmark face's {COUNT}")


def _scene_context(scene):
    """Blender's helpers work on the context's scene: make `scene` that scene."""
    import bpy

    if scene == bpy.context.scene:
        return contextlib.nullcontext()
    return bpy.context.temp_override(scene=scene, view_layer=scene.view_layers[0])


def _leave_edit_modes(scene) -> None:
    import bpy

    with _scene_context(scene):
        if bpy.context.object is not None and bpy.context.object.mode != "OBJECT":
            bpy.ops.object.mode_set(mode="OBJECT")


def _evaluated_points(scene, obj) -> np.ndarray:
    """Object-space vertex positions as constraints see them (a point cache included)."""
    import bpy

    with _scene_context(scene):
        mesh = obj.evaluated_get(bpy.context.evaluated_depsgraph_get()).data
        co = np.empty(len(mesh.vertices) * 3, np.float32)
        mesh.vertices.foreach_get("co", co)
    return co.reshape(-1, 3)


def _head_frame(centroids, face_name: str) -> np.ndarray:
    """3x3, columns X (left), Y (up), Z (forward): what the head bone's Damped Track (Y to
    the up group) and Locked Track (X towards the side group) give."""
    anchor = centroids[group_name("head")]
    up = centroids[group_name("head_up")] - anchor
    side = centroids[group_name("head_left")] - anchor
    if np.linalg.norm(up) < 1e-9:
        raise ValueError(f"{face_name}: the forehead and the eyes are at the same place; not a face")
    y = up / np.linalg.norm(up)
    x = side - side.dot(y) * y
    if np.linalg.norm(x) < 1e-6 * np.linalg.norm(up):
        raise ValueError(f"{face_name}: the eyes are in line with the forehead; not a face")
    x /= np.linalg.norm(x)
    return np.stack([x, y, np.cross(x, y)], axis=1)


def _write_vertex_groups(obj) -> None:
    """Each group holds exactly its landmarks, created or rewritten (never duplicated)."""
    everyone = list(range(len(obj.data.vertices)))
    for name, members in vertex_groups().items():
        group = obj.vertex_groups.get(name) or obj.vertex_groups.new(name=name)
        group.remove(everyone)
        for index, weight in members:
            group.add([index], weight, "REPLACE")


def _existing_rig(landmark_obj):
    for child in landmark_obj.children:
        if child.type == "ARMATURE" and child.get(RIG_MARKER):
            return child
    return None


@contextlib.contextmanager
def _edit_mode(scene, rig):
    """The rig's edit bones (bones can only be made in edit mode); back to object mode after."""
    import bpy

    with _scene_context(scene):
        view_layer = bpy.context.view_layer
        previous = view_layer.objects.active
        _leave_edit_modes(scene)
        if rig.name not in view_layer.objects and rig.name not in scene.collection.objects:
            scene.collection.objects.link(rig)  # a reused rig in an excluded collection
        hidden = rig.hide_get(view_layer=view_layer), rig.hide_viewport
        rig.hide_set(False, view_layer=view_layer)
        rig.hide_viewport = False  # a hidden object cannot enter edit mode
        view_layer.objects.active = rig
        bpy.ops.object.mode_set(mode="EDIT")
        try:
            yield rig.data.edit_bones
        finally:
            bpy.ops.object.mode_set(mode="OBJECT")
            rig.hide_set(hidden[0], view_layer=view_layer)
            rig.hide_viewport = hidden[1]
            view_layer.objects.active = previous


def _edit_bone(edit_bones, name: str, matrix, length: float, parent):
    """Reused when present, so bones a user parented to it stay parented."""
    bone = edit_bones.get(name) or edit_bones.new(name)
    bone.head, bone.tail = (0.0, 0.0, 0.0), (0.0, length, 0.0)  # matrix keeps the length
    bone.matrix = matrix
    bone.parent, bone.use_connect, bone.use_deform = parent, False, False
    return bone


# --- bake ---------------------------------------------------------------------------


def bake_face_rig(scene, rig, frame_start: int, frame_end: int, target=None):
    """Bake frames frame_start..frame_end to a new Action, with visual keying.

    target=None: the rig's own bones; its constraints are then removed and it is
    unparented (keeping where it is), so it no longer needs the landmark face.
    target=<armature>: that armature's bones with a constraint whose target is the
    rig; their constraints are then removed (visual keys already hold every
    constraint's effect, so one kept would apply twice), so the rig can be deleted.
    An Action the baked object already had is copied into the new one (its other
    channels keep playing) and kept with a fake user. Raises ValueError (one line)
    for bad input; on any error the scene is left as it was.
    """
    import bpy

    if rig is None or rig.type != "ARMATURE":
        raise ValueError(f"{getattr(rig, 'name', 'nothing')} is not a face rig (an armature)")
    first, last = int(frame_start), int(frame_end)
    if first != frame_start or last != frame_end or last < first:
        raise ValueError(f"frames {frame_start}..{frame_end}: need whole frames, start <= end")
    if target is None or target == rig:
        obj, bones = rig, [b.name for b in _pose_bones(rig)]
        if not bones:
            raise ValueError(f"{rig.name} has no bones to bake")
    else:
        if target.type != "ARMATURE":
            raise ValueError(f"{target.name} is not an armature")
        bones = [b.name for b in _pose_bones(target) if any(_aims_at(c, rig) for c in b.constraints)]
        if not bones:
            raise ValueError(f"no bone of {target.name} has a constraint targeting {rig.name}")
        obj = target

    saved = _Saved.of(scene, obj)
    previous = saved.action
    source = previous.copy() if previous is not None else None  # bake into a copy: previous stays as it was
    try:
        _select_bones(obj, set(bones))
        action = _bake(scene, obj, source, range(first, last + 1), only_selected=obj is not rig)
        if action is None:
            raise RuntimeError(f"Blender baked nothing for {obj.name}")
        action.name = f"{obj.name} FaceMocap face rig bake"
        action.use_fake_user = True
        _drop_constant_keys(action, obj, set(bones))
    except BaseException:
        created = obj.animation_data.action if obj.animation_data is not None else None
        saved.restore()
        for leftover in {source, created} - {previous, None}:
            bpy.data.actions.remove(leftover)
        raise
    saved.restore_selection()
    if previous is not None and previous.users == 0:
        previous.use_fake_user = True  # it no longer plays; don't let saving drop it
    for name in bones:
        pose_bone = obj.pose.bones[name]
        for constraint in list(pose_bone.constraints):
            pose_bone.constraints.remove(constraint)
    if obj is rig and rig.parent is not None:
        world = rig.matrix_world.copy()
        rig.parent = None
        rig.matrix_world = world
    return action


def follows_rig(armature, rig) -> bool:
    """Whether any bone of `armature` has a constraint targeting the rig (what a
    bake onto that armature needs)."""
    return armature is not None and armature.type == "ARMATURE" and any(
        _aims_at(c, rig) for b in _pose_bones(armature) for c in b.constraints)


def _pose_bones(obj):
    return obj.pose.bones if obj.pose is not None else ()  # no pose until first evaluated


def _aims_at(constraint, rig) -> bool:
    if getattr(constraint, "target", None) == rig:
        return True
    return any(t.target == rig for t in getattr(constraint, "targets", ()))  # Armature constraint


def _bake(scene, obj, action, frames, only_selected: bool):
    from bpy_extras import anim_utils

    wanted = dict(only_selected=only_selected, do_pose=True, do_object=False, do_visual_keying=True,
                  do_constraint_clear=False, do_parents_clear=False, do_clean=False,
                  do_location=True, do_rotation=True, do_scale=True)
    # The same fields from 4.2 to 5.2; one added later gets False (off) rather than a TypeError.
    options = anim_utils.BakeOptions(**{f.name: wanted.get(f.name, False)
                                        for f in dataclasses.fields(anim_utils.BakeOptions)})
    with _scene_context(scene):
        return anim_utils.bake_action(obj, action=action, frames=frames, bake_options=options)


def _select_bones(obj, names) -> None:
    for pose_bone in obj.pose.bones:
        _set_selected(pose_bone, pose_bone.name in names)


def _set_selected(pose_bone, value: bool) -> None:
    # 5.0 moved selection from Bone to PoseBone; bake_action reads the one its version has.
    if hasattr(pose_bone, "select"):
        pose_bone.select = value
    else:
        pose_bone.bone.select = value


def _is_selected(pose_bone) -> bool:
    return pose_bone.select if hasattr(pose_bone, "select") else pose_bone.bone.select


@dataclasses.dataclass
class _Saved:
    """What a bake touches before it can fail, to put back if it does."""
    scene: object
    obj: object
    frame: int
    subframe: float
    action: object
    slot: object
    had_animation_data: bool
    basis: dict
    selected: dict

    @classmethod
    def of(cls, scene, obj):
        anim = obj.animation_data
        return cls(scene, obj, scene.frame_current, scene.frame_subframe,
                   anim.action if anim is not None else None,
                   getattr(anim, "action_slot", None) if anim is not None else None,
                   anim is not None,
                   {b.name: b.matrix_basis.copy() for b in obj.pose.bones},
                   {b.name: _is_selected(b) for b in obj.pose.bones})

    def restore_selection(self) -> None:
        for pose_bone in self.obj.pose.bones:
            _set_selected(pose_bone, self.selected.get(pose_bone.name, False))

    def restore(self) -> None:
        obj = self.obj
        if not self.had_animation_data:
            obj.animation_data_clear()
        else:
            obj.animation_data.action = self.action
            if self.slot is not None:
                obj.animation_data.action_slot = self.slot
        for pose_bone in obj.pose.bones:
            if pose_bone.name in self.basis:
                pose_bone.matrix_basis = self.basis[pose_bone.name]
        self.restore_selection()
        with _scene_context(self.scene):
            self.scene.frame_set(self.frame, subframe=self.subframe)


def _drop_constant_keys(action, obj, bones) -> None:
    """A baked channel that never changes (a feature bone's rotation and scale) keeps one
    key: the same curve, a fraction of the keys. bake_action's own do_clean also thins
    slow motion (steps under 1e-4, 0.1 mm here), which would cost accuracy."""
    paths = {f'pose.bones["{_escape(name)}"].{p}' for name in bones
             for p in ("location", "rotation_quaternion", "rotation_euler", "rotation_axis_angle", "scale")}
    for fcurve in _fcurves(action, obj):
        if fcurve.data_path not in paths or len(fcurve.keyframe_points) < 3:
            continue
        values = np.empty(2 * len(fcurve.keyframe_points), np.float32)
        fcurve.keyframe_points.foreach_get("co", values)
        if np.ptp(values[1::2]) <= 1e-6:
            while len(fcurve.keyframe_points) > 1:
                fcurve.keyframe_points.remove(fcurve.keyframe_points[-1], fast=True)
            fcurve.update()


def _escape(name: str) -> str:
    import bpy

    return bpy.utils.escape_identifier(name)


def _fcurves(action, obj):
    """The F-Curves animating `obj` in `action` (slotted actions from 4.4 on)."""
    if not hasattr(action, "layers"):
        return list(action.fcurves)
    slot = obj.animation_data.action_slot if obj.animation_data is not None else None
    curves = []
    for layer in action.layers:
        for strip in layer.strips:
            bag = strip.channelbag(slot) if slot is not None else None
            if bag is not None:
                curves += list(bag.fcurves)
    return curves
