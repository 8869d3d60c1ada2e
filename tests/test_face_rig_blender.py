"""The landmark face rig (blender_receiver/face_rig.py) in a real Blender (bpy).

The rig is made on the add-on's landmark face and driven three ways: by a real
`facemocap-osc --demo --preset landmarks` stream through the receiver (pumped with
`session.pump`, as timers never fire in background mode), by faces written by hand
(MediaPipe's canonical face, moved rigidly and given expressions), and by a take
played from a point cache. Bones are checked against their vertex groups' weighted
means on the evaluated mesh, computed here from the groups on the mesh itself.
"""

import dataclasses
import importlib
import math
import socket
import struct
import subprocess
import time

import numpy as np
import pytest

from bridge import landmarks as lm
from bridge.demo_face import JAW_TRAVEL, PIXELS_PER_CM, DemoFace, expression_at
from bridge.state import angles_to_quat, quat_to_matrix
from support import tracker_command

# A bone's world head vs its group's weighted mean: float32 vertex positions on a
# face ~0.3 m wide give ~1e-7 m; 1e-5 m (0.01 mm) leaves room and still catches a
# wrong index or weight (neighbouring landmarks are millimetres apart).
WORLD_TOL = 1e-5
# A feature bone's local matrix vs identity (rotation entries, translation in m)
# under a rigid head move, and a baked pose vs the constrained one (world matrices).
LOCAL_TOL = 1e-5
POSE_TOL = 1e-5
CM = PIXELS_PER_CM / 640  # the demo's scale: 18 px per cm on a 640 px image, 1 image width = 1 m
# Canonical face axes (X own left, Y up, Z towards the camera) -> the landmark face's.
CANONICAL_TO_BLENDER = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])


@pytest.fixture
def addon(blender_addon):
    return lambda name: importlib.import_module(f"{blender_addon.__name__}.{name}")


@pytest.fixture
def session(addon, blender_scene):
    module = addon("session")
    yield module
    module.stop(blender_scene)
    module.STATE.last_take = []


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rotation(yaw=0.0, pitch=0.0, roll=0.0) -> np.ndarray:
    """A head turn (degrees, as the demo's) in the canonical face's axes."""
    return quat_to_matrix(angles_to_quat(yaw, pitch, roll))


def canonical(expression=None) -> np.ndarray:
    p = np.array(lm.canonical_face())
    return expression(p) if expression else p


def open_jaw(cm):
    def move(p):
        p[p[:, 1] < -4.4, 1] -= cm  # below the mouth corners: lower lip and chin
        return p
    return move


def smile(p):
    for corner, sign in ((lm.MOUTH_LEFT_CORNER, 1.0), (lm.MOUTH_RIGHT_CORNER, -1.0)):
        p[corner] += (0.5 * sign, 0.6, 0.0)
    return p


def to_blender(p, turn=np.eye(3), offset=(0.0, 0.0, 0.0)) -> np.ndarray:
    """Canonical centimetres, turned and moved -> landmark-face coordinates (metres)."""
    return (p @ turn.T) @ CANONICAL_TO_BLENDER.T * CM + np.asarray(offset)


def to_stream(points, targets) -> np.ndarray:
    """The inverse of targets.landmarks_to_blender: what the stream would carry."""
    b = np.asarray(points, np.float64) / targets.LANDMARK_SCALE
    return np.stack([b[:, 0] + 0.5, 0.5 - b[:, 2], b[:, 1] / targets.LANDMARK_DEPTH_SCALE], axis=1).astype(np.float32)


def landmark_face(scene):
    """The add-on's own landmark face (a flat placeholder grid until landmarks arrive)."""
    import bpy

    assert bpy.ops.facemocap.landmark_face_create() == {"FINISHED"}
    face = scene.facemocap.landmark_object
    assert face is not None and len(face.data.vertices) == 478
    return face


def update():
    import bpy

    bpy.context.evaluated_depsgraph_get().update()


def group_means(face) -> dict[str, np.ndarray]:
    """World-space weighted mean of each vertex group, from the evaluated mesh and the
    weights stored on the mesh (not face_rig's table)."""
    import bpy

    mesh = face.evaluated_get(bpy.context.evaluated_depsgraph_get()).data
    co = np.empty(len(mesh.vertices) * 3, np.float32)
    mesh.vertices.foreach_get("co", co)
    m = np.array(face.matrix_world)
    world = co.reshape(-1, 3).astype(np.float64) @ m[:3, :3].T + m[:3, 3]
    sums = {g.index: np.zeros(3) for g in face.vertex_groups}
    weights = {g.index: 0.0 for g in face.vertex_groups}
    for vertex in face.data.vertices:
        for element in vertex.groups:
            sums[element.group] += element.weight * world[vertex.index]
            weights[element.group] += element.weight
    return {g.name: sums[g.index] / weights[g.index] for g in face.vertex_groups if weights[g.index] > 0}


def assert_bones_on_their_groups(rig, face, face_rig):
    means = group_means(face)
    for pose_bone in rig.pose.bones:
        head = np.array(rig.matrix_world @ pose_bone.head)
        expected = means[face_rig.group_name(pose_bone.name)]
        assert head == pytest.approx(expected, abs=WORLD_TOL), pose_bone.name


def local(rig, name) -> np.ndarray:
    """The bone's visual local transform (what a bake keys, what a user copies)."""
    pose_bone = rig.pose.bones[name]
    return np.array(rig.convert_space(pose_bone=pose_bone, matrix=pose_bone.matrix,
                                      from_space="POSE", to_space="LOCAL"))


def world_matrices(obj, names=None) -> dict[str, np.ndarray]:
    return {b.name: np.array(obj.matrix_world @ b.matrix) for b in obj.pose.bones
            if names is None or b.name in names}


# --- the named indices ----------------------------------------------------------------


def test_the_rig_s_landmark_indices_are_bridge_s_and_left_mirrors_right():
    from blender_receiver import face_rig  # plain module: numpy only at import

    shared = [n for n in dir(face_rig) if n.isupper() and hasattr(lm, n)]
    assert len(shared) >= 25
    for name in shared:
        assert getattr(face_rig, name) == getattr(lm, name), name
    assert face_rig.COUNT == lm.COUNT
    assert (face_rig.INNER_MOUTH_RIGHT_CORNER, face_rig.INNER_MOUTH_LEFT_CORNER) == \
        (lm.INNER_LIP_UPPER_CONTOUR[0], lm.INNER_LIP_UPPER_CONTOUR[-1])

    face = np.array(lm.canonical_face())

    def mirror(i):
        return int(np.argmin(np.linalg.norm(face - face[i] * (-1.0, 1.0, 1.0), axis=1)))

    groups = face_rig.vertex_groups()
    assert len(groups) == len(face_rig.FEATURES) + 3 == 21
    for name, members in groups.items():
        xs = [face[i][0] for i, _ in members]
        if name.endswith(".L"):  # the subject's left is the landmark face's +X
            assert min(xs) > 0, name
            right = groups[name[:-2] + ".R"]
            assert sorted((mirror(i), w) for i, w in members) == sorted(right), name
        elif not name.endswith(".R") and name != "FM_head_left":
            assert sorted((mirror(i), w) for i, w in members) == sorted(members), name  # symmetric
    # The head frame only uses points MediaPipe's rigid fit treats as stable.
    stable = lm.procrustes_weights() > 0
    for key in face_rig.HEAD_GROUPS:
        assert all(stable[i] for i, _ in groups[face_rig.group_name(key)]), key


# --- live: a real tracker stream ------------------------------------------------------


def test_the_face_rig_follows_facemocap_osc_s_landmarks_stream(addon, session, blender_scene):
    face_rig, targets = addon("face_rig"), addon("targets")
    scene = blender_scene
    scene.facemocap.port = free_port()
    face = landmark_face(scene)
    assert session.start(scene) == ""
    # 5 fps: 20 frames span 0-3.8 s of the demo's loop, which talks (opens the jaw) from 2 s on.
    tracker = subprocess.run(
        [*tracker_command(), "--demo", "--fast", "--fps", "5", "--frames", "20", "--control-port", "0",
         "--quiet", "--preset", "landmarks", "--port", str(scene.facemocap.port)],
        capture_output=True, text=True, timeout=120)
    assert tracker.returncode == 0, tracker.stderr
    deadline, frames = time.monotonic() + 5, []
    while len(frames) < 20 and time.monotonic() < deadline:
        frames += session.STATE.landmarks.take()
        time.sleep(0.005)
    assert [f.index for f in frames] == list(range(20))

    def show(frame):
        session.STATE.landmarks._deliver(frame)  # one frame at a time through the apply step
        session.pump(scene)
        update()

    show(frames[0])
    rig = face_rig.create_face_rig(scene, face)
    assert rig.parent == face and len(rig.data.bones) == 19
    demo, opened = DemoFace(), []
    for frame in frames:
        show(frame)
        assert_bones_on_their_groups(rig, face, face_rig)
        jaw = local(rig, "jaw")[:3, 3]  # in the head bone's axes: X left, Y up, Z forward
        # The same head pose with the mouth shut: the difference is what the jaw did.
        # (Head motion alone moves the jaw bone a little too: Face Mesh depth is 1/0.7
        # the scale of x and y, bridge.landmarks.FACE_MESH_DEPTH_SCALE, and the landmark
        # face keeps it, so a turning head is not rigid there.)
        shut = dataclasses.replace(expression_at(frame.time), jaw=0.0)
        targets.apply_landmarks(face, demo.landmarks(shut, 640, 480) / np.float32(640))
        update()
        assert_bones_on_their_groups(rig, face, face_rig)
        drop = local(rig, "jaw")[1, 3] - jaw[1]
        travel = JAW_TRAVEL * expression_at(frame.time).jaw * CM
        assert drop == pytest.approx(travel, rel=0.05, abs=1e-4), frame.time
        if travel > 0.01:
            opened.append(frame.time)
    assert len(opened) >= 5  # the demo did open its mouth in these frames


# --- by hand: a canonical face moved and posed ----------------------------------------


def test_bones_follow_a_face_moved_by_hand_and_head_motion_stays_in_the_head_bone(addon, blender_scene):
    import bpy

    face_rig, targets = addon("face_rig"), addon("targets")
    scene = blender_scene
    face = landmark_face(scene)
    offset = (0.02, -0.05, 0.1)
    targets.apply_landmarks(face, to_stream(to_blender(canonical(), offset=offset), targets))
    rig = face_rig.create_face_rig(scene, face)
    update()
    assert rig.parent == face and np.array(rig.matrix_world) == pytest.approx(np.array(face.matrix_world))
    assert sorted(b.name for b in rig.data.bones) == sorted(["head", *face_rig.FEATURES])
    assert all(b.parent.name == "head" for b in rig.data.bones if b.name != "head")
    assert_bones_on_their_groups(rig, face, face_rig)
    for bone in rig.data.bones:  # at creation the pose is the rest pose
        assert local(rig, bone.name) == pytest.approx(np.eye(4), abs=LOCAL_TOL), bone.name
    rest = np.array(rig.data.bones["head"].matrix_local.to_3x3())
    # The head's axes on an upright face: X the character's left, Y up, Z forward (-Y).
    assert rest == pytest.approx(np.array([[1, 0, 0], [0, 0, -1], [0, 1, 0]]), abs=0.03)
    heads = {b.name: np.array(b.head_local) for b in rig.data.bones}
    for name in face_rig.FEATURES:
        if name.endswith(".L"):
            assert heads[name][0] > heads["head"][0] > heads[name[:-2] + ".R"][0]

    # An expression: the jaw bone moves down by the chin's drop, in the head's axes.
    drop = 1.5
    targets.apply_landmarks(face, to_stream(to_blender(canonical(open_jaw(drop)), offset=offset), targets))
    update()
    assert_bones_on_their_groups(rig, face, face_rig)
    jaw_local = local(rig, "jaw")
    assert jaw_local[:3, 3] == pytest.approx(rest.T @ (0.0, 0.0, -drop * CM), abs=WORLD_TOL)
    assert jaw_local[1, 3] == pytest.approx(-drop * CM, rel=0.01)  # mostly -Y: down
    assert local(rig, "nose") == pytest.approx(np.eye(4), abs=LOCAL_TOL)

    # A rigid head turn: the head bone turns and moves; feature bones' locals stay.
    turn = rotation(yaw=25.0, pitch=-10.0, roll=8.0)
    moved = (0.05, 0.01, -0.03)
    expression_locals = {n: local(rig, n) for n in face_rig.FEATURES}
    targets.apply_landmarks(face, to_stream(to_blender(canonical(open_jaw(drop)), turn, moved), targets))
    update()
    assert_bones_on_their_groups(rig, face, face_rig)
    head_rotation = np.array(rig.pose.bones["head"].matrix.to_3x3())
    blender_turn = CANONICAL_TO_BLENDER @ turn @ CANONICAL_TO_BLENDER.T
    assert head_rotation == pytest.approx(blender_turn @ rest, abs=LOCAL_TOL)
    for name in face_rig.FEATURES:
        assert local(rig, name) == pytest.approx(expression_locals[name], abs=LOCAL_TOL), name

    # Moving the landmark face object carries the rig; locals are unchanged.
    face.location, face.rotation_euler, face.scale = (0.4, -0.2, 1.1), (0.3, -0.1, 0.7), (2.0, 2.0, 2.0)
    update()
    assert np.array(rig.matrix_world) == pytest.approx(np.array(face.matrix_world), abs=1e-6)
    assert_bones_on_their_groups(rig, face, face_rig)
    for name in face_rig.FEATURES:
        assert local(rig, name) == pytest.approx(expression_locals[name], abs=LOCAL_TOL), name

    # Made again on the same face (left in edit mode): the same rig object rebuilt, no
    # duplicate groups.
    bpy.context.view_layer.objects.active = face
    bpy.ops.object.mode_set(mode="EDIT")
    again = face_rig.create_face_rig(scene, face)
    assert face.mode == "OBJECT" and bpy.context.view_layer.objects.active == face
    update()
    assert again == rig
    assert [o.name for o in bpy.data.objects if o.type == "ARMATURE"] == [rig.name]
    assert sorted(g.name for g in face.vertex_groups) == sorted(face_rig.vertex_groups())
    for group in face.vertex_groups:
        members = sorted((v.index, round(e.weight, 6)) for v in face.data.vertices
                         for e in v.groups if e.group == group.index)
        assert members == sorted(face_rig.vertex_groups()[group.name]), group.name
    assert sum(len(b.constraints) for b in rig.pose.bones) == 3 + len(face_rig.FEATURES)
    assert_bones_on_their_groups(rig, face, face_rig)
    for bone in rig.data.bones:  # the new rest is this pose
        assert local(rig, bone.name) == pytest.approx(np.eye(4), abs=LOCAL_TOL), bone.name


# --- baking a take played from a point cache ------------------------------------------

TAKE_FRAMES = 30
CHECK_FRAMES = (1, 12, 30)


def take_points(i: int) -> np.ndarray:
    """Frame i of a made-up take: the jaw opens, a smile, a head turn and drift."""
    k = i / (TAKE_FRAMES - 1)

    def expression(p):
        p = open_jaw(1.2 * math.sin(math.pi * k))(p)
        if i > 10:
            smile(p)
        return p

    turn = rotation(yaw=30.0 * k, pitch=-12.0 * math.sin(2 * math.pi * k), roll=6.0 * k)
    return to_blender(canonical(expression), turn, (0.03 * k, 0.01, -0.02 * k)).astype("<f4")


def point_cache_face(scene, folder, targets):
    """A landmark face playing a .pc2 take from frame 1, as the add-on's recording writes it."""
    face = landmark_face(scene)  # its own vertices stay the flat grid: the cache is the face
    samples = np.stack([take_points(i) for i in range(TAKE_FRAMES)])
    path = folder / "take.pc2"
    folder.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.write(b"POINTCACHE2\0" + struct.pack("<iiffi", 1, samples.shape[1], 0.0, 1.0, len(samples)))
        f.write(samples.tobytes())
    cache = face.modifiers.new(targets.LANDMARK_CACHE_MODIFIER, "MESH_CACHE")
    cache.cache_format, cache.filepath, cache.frame_start = "PC2", str(path), 1.0
    scene.frame_start, scene.frame_end = 1, TAKE_FRAMES
    scene.frame_set(1)
    return face


def poses(scene, obj, names=None) -> dict[int, dict[str, np.ndarray]]:
    out = {}
    for frame in CHECK_FRAMES:
        scene.frame_set(frame)
        out[frame] = world_matrices(obj, names)
    return out


def assert_same_poses(scene, obj, expected):
    for frame, matrices in expected.items():
        scene.frame_set(frame)
        now = world_matrices(obj, matrices)
        for name, matrix in matrices.items():
            assert now[name] == pytest.approx(matrix, abs=POSE_TOL), (frame, name)


def test_a_baked_rig_plays_the_point_cache_take_without_the_landmark_face(addon, blender_scene, tmp_path):
    import bpy

    face_rig, targets = addon("face_rig"), addon("targets")
    scene = blender_scene
    face = point_cache_face(scene, tmp_path / "facemocap_takes", targets)
    rig = face_rig.create_face_rig(scene, face)  # rests at the cache's frame 1, not the flat grid
    for frame in CHECK_FRAMES:
        scene.frame_set(frame)
        assert_bones_on_their_groups(rig, face, face_rig)
    expected = poses(scene, rig)
    scene.frame_set(5)

    action = face_rig.bake_face_rig(scene, rig, 1, TAKE_FRAMES)
    assert scene.frame_current == 5
    assert rig.animation_data.action == action and action.use_fake_user
    assert "face rig bake" in action.name
    assert all(len(b.constraints) == 0 for b in rig.pose.bones) and rig.parent is None
    assert_same_poses(scene, rig, expected)
    curves = face_rig._fcurves(action, rig)
    assert {c.data_path.split('"')[1] for c in curves} == {b.name for b in rig.pose.bones}
    jaw_y = next(c for c in curves if c.data_path == 'pose.bones["jaw"].location' and c.array_index == 1)
    assert len(jaw_y.keyframe_points) == TAKE_FRAMES  # a key per frame where it moves
    scale = [c for c in curves if c.data_path.endswith(".scale")]
    assert scale and all(len(c.keyframe_points) == 1 for c in scale)  # one where it does not

    bpy.data.objects.remove(face)
    assert_same_poses(scene, rig, expected)


def test_a_character_constrained_to_the_rig_keeps_its_animation_once_the_rig_is_gone(addon, blender_scene, tmp_path):
    import bpy

    face_rig, targets = addon("face_rig"), addon("targets")
    scene = blender_scene
    face = point_cache_face(scene, tmp_path / "facemocap_takes", targets)
    rig = face_rig.create_face_rig(scene, face)

    character = bpy.data.objects.new("Character", bpy.data.armatures.new("Character"))
    scene.collection.objects.link(character)
    character.location = (1.0, 0.5, 0.0)
    bpy.context.view_layer.objects.active = character
    bpy.ops.object.mode_set(mode="EDIT")
    for name, head, parent in (("Spine", (0, 0, 0), None), ("Head", (0, 0, 0.5), "Spine"),
                               ("Jaw", (0, -0.05, 0.4), "Head"), ("Lip.L", (0.03, -0.08, 0.42), "Head"),
                               ("Brow.R", (-0.03, -0.08, 0.6), "Head")):
        bone = character.data.edit_bones.new(name)
        bone.head, bone.tail = head, (head[0], head[1], head[2] + 0.05)
        bone.parent = character.data.edit_bones.get(parent) if parent else None
    bpy.ops.object.mode_set(mode="OBJECT")
    bones = character.pose.bones
    child_of = bones["Head"].constraints.new("CHILD_OF")
    child_of.target, child_of.subtarget = rig, "head"
    copy_location = bones["Jaw"].constraints.new("COPY_LOCATION")
    copy_location.target, copy_location.subtarget = rig, "jaw"
    copy_transforms = bones["Lip.L"].constraints.new("COPY_TRANSFORMS")
    copy_transforms.target, copy_transforms.subtarget = rig, "lip_corner.L"
    copy_rotation = bones["Brow.R"].constraints.new("COPY_ROTATION")
    copy_rotation.target, copy_rotation.subtarget = rig, "head"
    copy_location = bones["Brow.R"].constraints.new("COPY_LOCATION")
    copy_location.target, copy_location.subtarget = rig, "brow_mid.R"
    # The character's own animation: Spine sways, keyed before the bake.
    for frame, angle in ((1, 0.0), (30, 0.4)):
        bones["Spine"].rotation_quaternion = (math.cos(angle / 2), math.sin(angle / 2), 0.0, 0.0)
        bones["Spine"].keyframe_insert("rotation_quaternion", frame=frame)
    body = character.animation_data.action
    body_name = body.name
    constrained = ("Head", "Jaw", "Lip.L", "Brow.R")
    expected = poses(scene, character)
    rig_constraints = sum(len(b.constraints) for b in rig.pose.bones)

    action = face_rig.bake_face_rig(scene, rig, 1, TAKE_FRAMES, target=character)
    assert character.animation_data.action == action and action.use_fake_user and action != body
    assert body.name == body_name and body.use_fake_user  # kept as it was, and not lost on save
    assert all(not bones[n].constraints for n in constrained)
    assert sum(len(b.constraints) for b in rig.pose.bones) == rig_constraints  # the rig is left alone
    baked = {c.data_path.split('"')[1] for c in face_rig._fcurves(action, character)}
    assert baked == {*constrained, "Spine"}  # Spine's keys came along with the copy

    bpy.data.objects.remove(rig)
    bpy.data.objects.remove(face)
    assert_same_poses(scene, character, expected)


# --- bad input -------------------------------------------------------------------------


def test_what_is_not_a_landmark_face_is_refused_in_one_line_and_nothing_is_made(addon, blender_scene):
    import bpy

    face_rig = addon("face_rig")
    scene = blender_scene
    small = bpy.data.objects.new("Small", bpy.data.meshes.new("Small"))
    small.data.from_pydata([(i, 0, 0) for i in range(10)], [], [])
    empty = bpy.data.objects.new("Empty", None)
    for obj in (small, empty):
        scene.collection.objects.link(obj)
    flat = landmark_face(scene)  # no landmarks received yet
    for obj, words in ((small, "10 vertices"), (empty, "not a landmark face"), (None, "no landmark face"),
                       (flat, "flat")):
        with pytest.raises(ValueError) as error:
            face_rig.create_face_rig(scene, obj)
        message = str(error.value)
        assert words in message and "\n" not in message, message
    assert not [o for o in bpy.data.objects if o.type == "ARMATURE"]
    assert not small.vertex_groups and not flat.vertex_groups


def test_a_bake_that_cannot_be_done_or_fails_leaves_everything_as_it_was(addon, blender_scene, tmp_path, monkeypatch):
    import bpy
    from bpy_extras import anim_utils
    from mathutils import Matrix

    face_rig, targets = addon("face_rig"), addon("targets")
    scene = blender_scene
    face = point_cache_face(scene, tmp_path / "facemocap_takes", targets)
    rig = face_rig.create_face_rig(scene, face)
    loose = bpy.data.objects.new("Loose", bpy.data.armatures.new("Loose"))
    scene.collection.objects.link(loose)
    actions = set(bpy.data.actions)
    for call, words in ((lambda: face_rig.bake_face_rig(scene, rig, 10, 5), "start <= end"),
                        (lambda: face_rig.bake_face_rig(scene, rig, 1.5, 5), "whole frames"),
                        (lambda: face_rig.bake_face_rig(scene, face, 1, 5), "not a face rig"),
                        (lambda: face_rig.bake_face_rig(scene, rig, 1, 5, target=face), "not an armature"),
                        (lambda: face_rig.bake_face_rig(scene, rig, 1, 5, target=loose), "no bone of Loose")):
        with pytest.raises(ValueError) as error:
            call()
        assert words in str(error.value) and "\n" not in str(error.value), str(error.value)

    real = anim_utils.bake_action

    def fails_at_the_end(*args, **kwargs):
        real(*args, **kwargs)  # everything Blender does, then an error
        raise RuntimeError("disk full")

    monkeypatch.setattr(anim_utils, "bake_action", fails_at_the_end)
    scene.frame_set(7)
    before = world_matrices(rig)
    with pytest.raises(RuntimeError, match="disk full"):
        face_rig.bake_face_rig(scene, rig, 1, TAKE_FRAMES)
    assert set(bpy.data.actions) == actions and rig.animation_data is None
    assert rig.parent == face and scene.frame_current == 7
    assert sum(len(b.constraints) for b in rig.pose.bones) == 3 + len(face_rig.FEATURES)
    assert all(b.matrix_basis == Matrix.Identity(4) for b in rig.pose.bones)
    update()
    for name, matrix in world_matrices(rig).items():
        assert matrix == pytest.approx(before[name], abs=POSE_TOL), name
