"""The receiver add-on in a real Blender (bpy), installed from the built zip.

A scene with a face mesh (ARKit-named shape keys, skinned to the head by an
Armature modifier) and an armature (Neck, Head, LeftEye, RightEye) is driven by
real streams (`facemocap-osc --demo`, a real video) and by hand-made VMC frames
whose effect is known exactly. `session.pump(scene)` is the apply step the timer
runs; timers never fire in background mode, so the tests call it.
"""

import importlib
import math
import re
import socket
import subprocess
import tempfile
import time
import types
from pathlib import Path

import numpy as np
import pytest
from pythonosc.osc_bundle_builder import IMMEDIATELY, OscBundleBuilder
from pythonosc.osc_message_builder import OscMessageBuilder

from bridge.state import ARKIT_NAMES
from support import SHARED_DATA, tracker_command

SHARED_VIDEO = SHARED_DATA / "video" / "liveportrait_d3.mp4"
FACE_KEYS = [*ARKIT_NAMES, "A", "Blink"]  # camelCase: the stream's PascalCase must still match
SHAPE_OFFSET = 0.1  # each shape key lifts its own vertex by this much


@pytest.fixture(autouse=True)
def takes_temp_dir(tmp_path, monkeypatch):
    """An unsaved file's landmark takes go to <system temp>/facemocap_takes: keep them
    in each test's own folder, not a /tmp shared with other runs."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return tmp_path / "facemocap_takes"


@pytest.fixture
def session(blender_addon, blender_scene):
    module = importlib.import_module(blender_addon.__name__ + ".session")
    yield module
    module.stop(blender_scene)
    module.STATE.last_take = []


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def build_face(scene, head_roll=0.0, eye_roll=0.0):
    """A mesh with one vertex per shape key, skinned to Head; an armature of four bones.

    Rolls give the bones unusual local axes: results must not depend on them.
    """
    import bpy

    verts = [(0.02 * i - 0.5, -0.1, 1.6) for i in range(len(FACE_KEYS))]
    mesh_data = bpy.data.meshes.new("Face")
    mesh_data.from_pydata(verts, [], [])
    mesh = bpy.data.objects.new("Face", mesh_data)
    scene.collection.objects.link(mesh)
    mesh.shape_key_add(name="Basis")
    for i, name in enumerate(FACE_KEYS):
        key = mesh.shape_key_add(name=name, from_mix=False)
        key.value = 0.0  # shape_key_add creates keys at 1.0
        key.data[i].co.z += SHAPE_OFFSET

    arm_data = bpy.data.armatures.new("Rig")
    armature = bpy.data.objects.new("Rig", arm_data)
    scene.collection.objects.link(armature)
    bpy.context.view_layer.objects.active = armature
    bpy.ops.object.mode_set(mode="EDIT")

    def bone(name, head, tail, parent=None, roll=0.0):
        b = arm_data.edit_bones.new(name)
        b.head, b.tail, b.roll = head, tail, math.radians(roll)
        b.parent = arm_data.edit_bones[parent] if parent else None

    bone("Neck", (0, 0, 1.40), (0, 0, 1.50))
    bone("Head", (0, 0, 1.50), (0, 0, 1.75), "Neck", head_roll)
    # Eyes point forward (-Y), as many rigs have them.
    bone("LeftEye", (0.03, -0.08, 1.62), (0.03, -0.10, 1.62), "Head", eye_roll)
    bone("RightEye", (-0.03, -0.08, 1.62), (-0.03, -0.10, 1.62), "Head", eye_roll)
    bpy.ops.object.mode_set(mode="OBJECT")

    group = mesh.vertex_groups.new(name="Head")
    group.add(list(range(len(verts))), 1.0, "REPLACE")
    mesh.modifiers.new("Armature", "ARMATURE").object = armature

    settings = scene.facemocap
    settings.meshes.add().object = mesh
    settings.armature = armature  # fills the bone fields from the names
    settings.port = free_port()
    return mesh, armature


def vmc_frame(t, blends=(), bones=None):
    """One VMC frame as a bundle: T, Bone/Pos per bone (Unity x, y, z, w), Blend/Val..., Apply."""
    builder = OscBundleBuilder(IMMEDIATELY)

    def add(address, *args):
        message = OscMessageBuilder(address)
        for arg in args:
            message.add_arg(arg)
        builder.add_content(message.build())

    add("/VMC/Ext/T", float(t))
    for name, q in (bones or {}).items():
        add("/VMC/Ext/Bone/Pos", name, 0.0, 0.0, 0.0, *map(float, q))
    for name, value in blends:
        add("/VMC/Ext/Blend/Val", name, float(value))
    add("/VMC/Ext/Blend/Apply")
    return builder.build().dgram


def about_unity_y(degrees):
    half = math.radians(degrees) / 2
    return (0.0, math.sin(half), 0.0, math.cos(half))


IDENTITY = (0.0, 0.0, 0.0, 1.0)


def send(port, *datagrams):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for d in datagrams:
            sock.sendto(d, ("127.0.0.1", port))


def pump_until(session, scene, done, timeout=10.0):
    """Run the apply step until done(frame) is true for an applied frame."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        frame = session.pump(scene)
        if frame is not None and done(frame):
            return frame
        time.sleep(0.002)
    raise AssertionError("the expected frame never arrived")


def fcurves_of(id_data):
    """The F-Curves of the action assigned to an ID: the assigned slot's channelbag on
    Blender 4.4+ (5.0 removed Action.fcurves), action.fcurves before.

    Walks layers and strips itself: bpy_extras' channelbag helpers differ between 4.4,
    4.5 and 5.0, and 4.4/4.5's legacy `action.fcurves` would hide a missing slot.
    """
    anim = id_data.animation_data
    action = anim.action
    if not hasattr(action, "slots"):
        return action.fcurves
    assert anim.action_slot is not None, f"{action.name} is assigned without a slot"
    bags = [strip.channelbag(anim.action_slot) for layer in action.layers for strip in layer.strips]
    bags = [bag for bag in bags if bag is not None]
    assert len(bags) == 1, f"{action.name}: {len(bags)} channelbags for the assigned slot"
    return bags[0].fcurves


def deform_matrix(armature, bone):
    """Armature-space matrix taking a point at rest to where the posed bone puts it."""
    import bpy

    bpy.context.view_layer.update()
    return armature.pose.bones[bone].matrix @ armature.data.bones[bone].matrix_local.inverted()


def evaluated_vertices(mesh):
    import bpy

    depsgraph = bpy.context.evaluated_depsgraph_get()
    evaluated = mesh.evaluated_get(depsgraph)
    return np.array([v.co[:] for v in evaluated.data.vertices])


def start(session, scene):
    assert session.start(scene) == ""
    assert session.STATE.running


@pytest.mark.parametrize("head_roll,eye_roll", [(0.0, 0.0), (90.0, 45.0), (-37.0, 170.0)])
def test_head_and_eyes_turn_toward_the_characters_right_for_plus_y_in_unity(session, blender_scene, head_roll, eye_roll):
    from mathutils import Vector

    scene = blender_scene
    _, armature = build_face(scene, head_roll, eye_roll)
    start(session, scene)
    bones = {"Neck": IDENTITY, "Head": about_unity_y(30), "LeftEye": about_unity_y(10), "RightEye": about_unity_y(10)}
    send(scene.facemocap.port, vmc_frame(1.0, bones=bones))
    pump_until(session, scene, lambda f: f.time == 1.0)

    forward = Vector((0.0, -1.0, 0.0))
    head_forward = deform_matrix(armature, "Head").to_3x3() @ forward
    # +30 degrees about Unity +Y: the face's forward swings from -Y toward -X.
    assert tuple(head_forward) == pytest.approx((-0.5, -math.sqrt(3) / 2, 0.0), abs=1e-5)
    for eye in ("LeftEye", "RightEye"):
        eye_forward = deform_matrix(armature, eye).to_3x3() @ forward  # 30 + 10 degrees
        assert tuple(eye_forward) == pytest.approx(
            (-math.sin(math.radians(40)), -math.cos(math.radians(40)), 0.0), abs=1e-5)


def test_shape_keys_follow_values_clamped_to_slider_range_and_move_vertices(session, blender_scene):
    scene = blender_scene
    mesh, armature = build_face(scene)
    keys = mesh.data.shape_keys.key_blocks
    keys["mouthSmileLeft"].slider_max = 0.5
    basis = keys["Basis"].value
    scene.facemocap.meshes[0].strength = 0.8
    start(session, scene)
    blends = [("JawOpen", 0.75), ("EyeBlinkLeft", 1.0), ("MouthSmileLeft", 1.0), ("A", 0.5),
              ("NotAShapeKey", 1.0), ("BrowDownLeft", -3.0)]
    send(scene.facemocap.port, vmc_frame(2.0, blends, {"Head": about_unity_y(20)}))
    pump_until(session, scene, lambda f: f.time == 2.0)

    assert keys["jawOpen"].value == pytest.approx(0.6)  # 0.75 * strength 0.8
    assert keys["eyeBlinkLeft"].value == pytest.approx(0.8)
    assert keys["mouthSmileLeft"].value == pytest.approx(0.5)  # its slider max
    assert keys["A"].value == pytest.approx(0.4)
    assert keys["browDownLeft"].value == 0.0  # clamped to slider min
    assert keys["Basis"].value == basis  # the reference key is never driven

    # Evaluated vertices: each lifted by its key's value, then carried by the head bone.
    rest = np.array([v.co[:] for v in mesh.data.vertices])
    expected = rest.copy()
    for i, name in enumerate(FACE_KEYS):
        expected[i, 2] += SHAPE_OFFSET * keys[name].value
    matrix = np.array(deform_matrix(armature, "Head"))
    expected = expected @ matrix[:3, :3].T + matrix[:3, 3]
    assert evaluated_vertices(mesh) == pytest.approx(expected, abs=1e-5)
    assert evaluated_vertices(mesh)[FACE_KEYS.index("jawOpen")] != pytest.approx(rest[FACE_KEYS.index("jawOpen")])


def test_a_remap_drives_another_key_instead(session, blender_scene):
    scene = blender_scene
    mesh, _ = build_face(scene)
    remap = scene.facemocap.meshes[0].remaps.add()
    remap.stream_name, remap.shape_key = "Joy", "mouthSmileRight"
    start(session, scene)
    send(scene.facemocap.port, vmc_frame(3.0, [("Joy", 0.9)]))
    pump_until(session, scene, lambda f: f.time == 3.0)
    assert mesh.data.shape_keys.key_blocks["mouthSmileRight"].value == pytest.approx(0.9)


def test_demo_stream_drives_the_rig(session, blender_scene):
    from mathutils import Vector

    scene = blender_scene
    mesh, armature = build_face(scene)
    start(session, scene)
    keys = mesh.data.shape_keys.key_blocks
    tracker = subprocess.Popen(
        # The rig has ARKit-named keys (and VRM ones): the perfect-sync clips drive the former.
        [*tracker_command(), "--demo", "--duration", "4", "--port", str(scene.facemocap.port), "--quiet",
         "--preset", "vmc-perfect-sync"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    peak = {"jawOpen": 0.0, "A": 0.0, "yaw": 0.0}   # A: no VRM clip is sent, so it stays 0
    applied = 0
    while tracker.poll() is None or session.STATE.receiver.stream.stats.frames > applied:
        if session.pump(scene) is None:
            if tracker.poll() is not None:
                break
            time.sleep(0.005)
            continue
        applied += 1
        peak["jawOpen"] = max(peak["jawOpen"], keys["jawOpen"].value)
        peak["A"] = max(peak["A"], keys["A"].value)
        forward = deform_matrix(armature, "Head").to_3x3() @ Vector((0.0, -1.0, 0.0))
        peak["yaw"] = max(peak["yaw"], abs(math.degrees(math.atan2(forward.x, -forward.y))))
    assert tracker.wait(timeout=30) == 0, tracker.stderr.read().decode()
    assert applied >= 60  # ~120 frames sent at 30 fps; some drains apply only the newest
    assert peak["jawOpen"] > 0.15 and peak["A"] == 0.0
    assert peak["yaw"] > 10  # the demo turns its head ~25 degrees, 60 % of it in the head bone
    assert session.STATE.receiver.stats.dropped == 0


def test_a_200_frame_take_becomes_actions_with_every_key(session, blender_scene):
    from mathutils import Vector

    scene = blender_scene
    scene.render.fps, scene.render.fps_base = 24, 1.0
    scene.frame_current = 10
    mesh, armature = build_face(scene)
    start(session, scene)
    scene.facemocap.record = True
    port = scene.facemocap.port
    n, rate = 200, 30.0
    for i in range(n):
        jaw = i / (n - 1)
        send(port, vmc_frame(100.0 + i / rate, [("JawOpen", jaw), ("EyeBlinkLeft", 1 - jaw)],
                             {"Head": about_unity_y(-20 + 40 * jaw)}))
        if i % 20 == 19:  # let several frames pile up between pumps: all must be recorded
            pump_until(session, scene, lambda f, i=i: f.time == pytest.approx(100.0 + i / rate))
    started = time.perf_counter()
    scene.facemocap.record = False
    assert time.perf_counter() - started < 30  # a hang guard, not a speed target (see bench/)

    curves = {c.data_path: c for c in fcurves_of(mesh.data.shape_keys)}
    assert set(curves) == {'key_blocks["jawOpen"].value', 'key_blocks["eyeBlinkLeft"].value'}
    jaw_curve = curves['key_blocks["jawOpen"].value']
    assert len(jaw_curve.keyframe_points) == n
    co = np.empty(2 * n, dtype=np.float32)
    jaw_curve.keyframe_points.foreach_get("co", co)
    frames, values = co[0::2], co[1::2]
    assert frames == pytest.approx(10 + np.arange(n) * 24 / rate, abs=1e-3)  # stream time, scene rate
    assert values == pytest.approx(np.arange(n) / (n - 1), abs=1e-6)
    assert {k.interpolation for k in jaw_curve.keyframe_points} == {"LINEAR"}

    rotation = sorted((c.array_index, len(c.keyframe_points)) for c in fcurves_of(armature)
                      if c.data_path == 'pose.bones["Head"].rotation_quaternion')
    assert rotation == [(0, n), (1, n), (2, n), (3, n)]
    # Played back, the head turns from the character's left (+X) to its right (-X).
    for frame, degrees in ((10, -20), (10 + (n - 1) * 24 / rate, 20)):
        scene.frame_set(int(frame), subframe=frame % 1)
        forward = deform_matrix(armature, "Head").to_3x3() @ Vector((0.0, -1.0, 0.0))
        assert math.degrees(math.atan2(-forward.x, -forward.y)) == pytest.approx(degrees, abs=0.1)
    assert mesh.data.shape_keys.animation_data.action.use_fake_user
    assert any("200 frames" in line for line in session.STATE.last_take)
    assert scene.frame_end >= 10 + (n - 1) * 24 / rate


def test_malformed_datagrams_are_counted_and_later_frames_still_apply(session, blender_scene):
    scene = blender_scene
    mesh, _ = build_face(scene)
    start(session, scene)
    port = scene.facemocap.port
    bad = OscMessageBuilder("/VMC/Ext/Blend/Val")
    bad.add_arg("JawOpen")
    bad.add_arg("not a number")
    send(port,
         b"\x00garbage", b"#bundle\x00\x01",
         vmc_frame(4.0, [("JawOpen", float("nan")), ("X" * 3000, 1.0)]),
         bad.build().dgram,
         vmc_frame(5.0, [("JawOpen", 0.3)]))
    pump_until(session, scene, lambda f: f.time == 5.0)
    stats = session.STATE.receiver.stats
    assert stats.malformed == 2 and stats.bad_messages == 2 and stats.bad_names == 1
    assert mesh.data.shape_keys.key_blocks["jawOpen"].value == pytest.approx(0.3)
    assert all(math.isfinite(k.value) for k in mesh.data.shape_keys.key_blocks)


def test_a_port_in_use_is_a_message_not_a_traceback(session, blender_scene):
    scene = blender_scene
    build_face(scene)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as blocker:
        blocker.bind(("127.0.0.1", scene.facemocap.port))
        error = session.start(scene)
    assert error == f"port {scene.facemocap.port} is already in use on 127.0.0.1 (is another receiver running?)"
    assert not session.STATE.running
    start(session, scene)  # free again: starts
    session.stop(scene)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", scene.facemocap.port))  # stop released it


def test_rig_edits_while_running_are_picked_up_not_crashed_on(session, blender_scene):
    scene = blender_scene
    mesh, _ = build_face(scene)
    start(session, scene)
    port = scene.facemocap.port
    send(port, vmc_frame(6.0, [("JawOpen", 0.2)]))
    pump_until(session, scene, lambda f: f.time == 6.0)
    mesh.shape_key_remove(mesh.data.shape_keys.key_blocks["eyeBlinkLeft"])  # indices shift
    send(port, vmc_frame(7.0, [("JawOpen", 0.6), ("MouthPucker", 0.4)]))
    pump_until(session, scene, lambda f: f.time == 7.0)
    keys = mesh.data.shape_keys.key_blocks
    assert keys["jawOpen"].value == pytest.approx(0.6) and keys["mouthPucker"].value == pytest.approx(0.4)


@pytest.mark.skipif(not SHARED_VIDEO.exists(), reason=f"real face video not found at {SHARED_VIDEO}")
def test_real_video_is_recorded_frame_by_frame(session, blender_scene):
    import cv2

    scene = blender_scene
    mesh, _ = build_face(scene)
    start(session, scene)
    scene.facemocap.record = True
    tracker = subprocess.run(
        [*tracker_command(), "--video", str(SHARED_VIDEO), "--fast", "--preset", "vmc-perfect-sync",
         "--port", str(scene.facemocap.port), "--quiet"],
        capture_output=True, timeout=300,
    )
    assert tracker.returncode == 0, tracker.stderr.decode()
    deadline = time.monotonic() + 5
    while session.STATE.receiver.stream.stats.frames < 354 and time.monotonic() < deadline:
        time.sleep(0.01)
    session.pump(scene)
    scene.facemocap.record = False
    curves = {c.data_path: c for c in fcurves_of(mesh.data.shape_keys)}
    blink = curves['key_blocks["eyeBlinkLeft"].value']
    # Every frame the tracker sent is in the take, though only the newest per pump was applied.
    assert len(blink.keyframe_points) == session.STATE.receiver.stream.stats.frames >= 340
    co = np.empty(2 * len(blink.keyframe_points), dtype=np.float32)
    blink.keyframe_points.foreach_get("co", co)
    # Keys sit at the clip's own times, so the video frame of each key is known even
    # if a datagram was lost on a loaded machine.
    video_fps = cv2.VideoCapture(str(SHARED_VIDEO)).get(cv2.CAP_PROP_FPS)
    video_frame = np.rint((co[0::2] - co[0]) / (scene.render.fps / scene.render.fps_base) * video_fps)
    blink_values = np.full(int(video_frame.max()) + 1, np.nan)
    blink_values[video_frame.astype(int)] = co[1::2]
    assert np.nanmax(blink_values[48:63]) >= 0.9  # the blinks the clip is labelled with
    assert np.nanmax(blink_values[70:96]) <= 0.3


def test_deleting_a_target_while_running_is_survived(session, blender_scene):
    import bpy

    scene = blender_scene
    mesh, armature = build_face(scene)
    start(session, scene)
    port = scene.facemocap.port
    send(port, vmc_frame(8.0, [("JawOpen", 0.2)], {"Head": about_unity_y(5)}))
    pump_until(session, scene, lambda f: f.time == 8.0)
    bpy.data.objects.remove(mesh)
    send(port, vmc_frame(9.0, [("JawOpen", 0.6)], {"Head": about_unity_y(15)}))
    pump_until(session, scene, lambda f: f.time == 9.0)
    assert armature.pose.bones["Head"].rotation_quaternion.angle == pytest.approx(math.radians(15), abs=1e-5)


def test_the_timer_callback_applies_frames_and_ends_when_stopped(session, blender_scene):
    scene = blender_scene
    mesh, _ = build_face(scene)
    start(session, scene)
    send(scene.facemocap.port, vmc_frame(10.0, [("JawOpen", 0.45)]))
    applied, deadline = session.STATE.applied, time.monotonic() + 5
    while session.STATE.applied == applied and time.monotonic() < deadline:
        assert session._tick() == session.TICK_SECONDS
        time.sleep(0.005)
    assert mesh.data.shape_keys.key_blocks["jawOpen"].value == pytest.approx(0.45)
    session.stop(scene)
    assert session._tick() is None  # unregisters itself


def test_disabling_the_add_on_stops_the_thread_and_releases_the_port(session, blender_addon, blender_scene):
    import addon_utils
    import bpy

    scene = blender_scene
    build_face(scene)
    start(session, scene)
    thread = session.STATE.receiver._thread
    port = scene.facemocap.port
    bpy.ops.preferences.addon_disable(module=blender_addon.__name__)
    try:
        assert not thread.is_alive()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind(("127.0.0.1", port))
    finally:
        bpy.ops.preferences.addon_enable(module=blender_addon.__name__)
    assert addon_utils.check(blender_addon.__name__) == (True, True)


def test_vrm_addon_humanoid_tables_are_read(blender_addon):
    from types import SimpleNamespace as NS

    targets = importlib.import_module(blender_addon.__name__ + ".targets")

    def bone(name):
        return NS(node=NS(bone_name=name))

    vrm0 = [NS(bone="head", node=NS(bone_name="J_Head")), NS(bone="leftEye", node=NS(bone_name="J_EyeL")),
            NS(bone="neck", node=NS(bone_name=""))]
    vrm1 = NS(head=bone(""), neck=bone("J_Neck"), left_eye=bone(""), right_eye=bone("J_EyeR"))
    data = NS(vrm_addon_extension=NS(spec_version="0.0", vrm0=NS(humanoid=NS(human_bones=vrm0)),
                                     vrm1=NS(humanoid=NS(human_bones=vrm1))))
    assert targets.vrm_humanoid(data) == {"head": "J_Head", "leftEye": "J_EyeL", "neck": "J_Neck", "right_eye": "J_EyeR"}
    assert targets.vrm_humanoid(NS()) is None
    assert targets.vrm_humanoid(NS(vrm_addon_extension=NS())) is None  # another add-on version


class RecordingLayout:
    """Stands in for Blender's UILayout (none exists in background mode): checks that
    every property, list and operator the panels name exists, and records the layout."""

    def __init__(self, lines, depth=0):
        self.lines, self.depth, self.enabled = lines, depth, True

    def _add(self, text):
        self.lines.append("  " * self.depth + text)

    def _sub(self, *args, **kwargs):
        return RecordingLayout(self.lines, self.depth + 1)

    row = column = box = _sub

    def prop(self, data, name, text=None, **kwargs):
        assert name in data.bl_rna.properties, f"{type(data).__name__} has no property {name!r}"
        self._add(f"[{text if text is not None else data.bl_rna.properties[name].name}]")

    def prop_search(self, data, name, search_data, search_name, text=None, **kwargs):
        assert name in data.bl_rna.properties, name
        assert search_name in search_data.bl_rna.properties, search_name
        self._add(f"[{text or data.bl_rna.properties[name].name} v search {search_name}]")

    def operator(self, idname, text=None, **kwargs):
        import bpy

        category, name = idname.split(".")
        assert hasattr(getattr(bpy.ops, category), name), f"no operator {idname}"
        self._add(f"(button {text if text is not None else idname})")
        return types.SimpleNamespace()  # the panel may set the operator's properties

    def label(self, text="", **kwargs):
        self._add(f"'{text}'")

    def template_list(self, list_type, list_id, data, prop, active_data, active_prop, **kwargs):
        import bpy

        assert hasattr(bpy.types, list_type), list_type
        assert prop in data.bl_rna.properties and active_prop in active_data.bl_rna.properties
        self._add(f"<list {list_type}>")


def draw_panels(blender_addon, scene):
    import bpy

    panels = importlib.import_module(blender_addon.__name__ + ".panels")
    lines = []
    context = bpy.context
    for panel in (panels.FACEMOCAP_PT_receiver, panels.FACEMOCAP_PT_meshes, panels.FACEMOCAP_PT_armature,
                  panels.FACEMOCAP_PT_takes, panels.FACEMOCAP_PT_landmarks):
        lines.append(f"== {panel.bl_label}")
        panel.draw(type("P", (), {"layout": RecordingLayout(lines)})(), context)
    return lines


def test_the_panels_draw_in_every_state(session, blender_addon, blender_scene):
    scene = blender_scene
    stopped = draw_panels(blender_addon, scene)  # nothing set up yet
    assert "'Stopped'" in " ".join(stopped)
    mesh, _ = build_face(scene)
    scene.facemocap.meshes[0].remaps.add().stream_name = "Joy"
    scene.facemocap.bone_left_eye = "NoSuchBone"
    start(session, scene)
    scene.facemocap.record = True
    send(scene.facemocap.port, b"garbage", vmc_frame(11.0, [("JawOpen", 0.5)]))
    pump_until(session, scene, lambda f: f.time == 11.0)
    running = "\n".join(draw_panels(blender_addon, scene))
    assert "Receiving" in running and "Recording: 1 frames" in running
    assert "Dropped as malformed: 1" in running
    assert "LeftEye: no bone named 'NoSuchBone' in Rig" in running
    assert "ARKit (camelCase): 52 of 52 channels reach a key" in running
    scene.facemocap.record = False
    import bpy

    take = next(a for a in bpy.data.actions if "facemocap_take" in a)
    scene.facemocap.active_take = list(bpy.data.actions).index(take)
    with_take = "\n".join(draw_panels(blender_addon, scene))
    assert "'1 keys, frames " in with_take and "(button facemocap.take_cleanup)" in with_take
    mesh.data.shape_keys.key_blocks["jawOpen"].name = "mouthOpenWide"
    assert "Unmatched: jawOpen" in "\n".join(draw_panels(blender_addon, scene))
    session.STATE.error = "port 1 is already in use on 127.0.0.1 (is another receiver running?)"
    session.stop(scene)
    assert "already in use" in "\n".join(draw_panels(blender_addon, scene))


def test_a_constraint_that_overrides_a_mapped_bone_is_reported(session, blender_addon, blender_scene):
    targets = importlib.import_module(blender_addon.__name__ + ".targets")
    scene = blender_scene
    _, armature = build_face(scene)
    track = armature.pose.bones["LeftEye"].constraints.new("DAMPED_TRACK")
    track.name = "Aim"
    problems = targets.Targets(scene.facemocap).problems
    assert problems == ["LeftEye: constraint 'Aim' on LeftEye overrides its rotation"]


def test_extra_routes_reach_their_handler_on_the_receiving_thread(session, blender_scene):
    scene = blender_scene
    build_face(scene)
    got = []
    session.ROUTES["/facemocap/test"] = lambda params, sender: got.append(params)
    try:
        start(session, scene)
        message = OscMessageBuilder("/facemocap/test")
        message.add_arg(1.5)
        send(scene.facemocap.port, message.build().dgram)
        deadline = time.monotonic() + 5
        while not got and time.monotonic() < deadline:
            time.sleep(0.005)
    finally:
        del session.ROUTES["/facemocap/test"]
    assert got == [[1.5]]


def test_the_panel_buttons_add_and_remove_targets(session, blender_scene):
    import bpy

    scene = blender_scene
    mesh, armature = build_face(scene)
    settings = scene.facemocap
    settings.meshes.clear()
    for obj in scene.objects:
        obj.select_set(obj == mesh)
    assert bpy.ops.facemocap.mesh_add() == {"FINISHED"}
    assert [m.object for m in settings.meshes] == [mesh]
    bpy.ops.facemocap.remap_add()
    bpy.ops.facemocap.remap_add()
    assert len(settings.meshes[0].remaps) == 2
    bpy.ops.facemocap.remap_remove()
    assert len(settings.meshes[0].remaps) == 1 and settings.meshes[0].active_remap == 0
    settings.bone_head = ""
    assert bpy.ops.facemocap.autofill_bones() == {"FINISHED"}
    assert settings.bone_head == "Head"
    bpy.ops.facemocap.mesh_remove()
    assert len(settings.meshes) == 0
    assert bpy.ops.facemocap.start() == {"FINISHED"} and session.STATE.running
    assert bpy.ops.facemocap.stop() == {"FINISHED"} and not session.STATE.running


def test_stopping_while_recording_writes_the_take(session, blender_scene):
    scene = blender_scene
    mesh, _ = build_face(scene)
    start(session, scene)
    scene.facemocap.record = True
    send(scene.facemocap.port, *(vmc_frame(20.0 + i / 30, [("JawOpen", i / 2)]) for i in range(3)))
    pump_until(session, scene, lambda f: f.time == pytest.approx(20.0 + 2 / 30))
    session.stop(scene)
    assert not scene.facemocap.record and session.STATE.take is None
    [line] = session.STATE.last_take
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d live: Face 1 shape key; 3 frames", line), line
    assert len(fcurves_of(mesh.data.shape_keys)[0].keyframe_points) == 3


# --- the landmark face --------------------------------------------------------------


def landmark_datagrams(frame, t, points, chunk=100):
    """The landmarks preset's messages: /facemocap/landmarks i frame, f time, i first, i count, b blob."""
    out = []
    for first in range(0, len(points), chunk):
        part = np.asarray(points[first:first + chunk], dtype="<f4")
        message = OscMessageBuilder("/facemocap/landmarks")
        for arg, kind in ((frame, "i"), (float(t), "f"), (first, "i"), (len(part), "i"), (part.tobytes(), "b")):
            message.add_arg(arg, kind)
        out.append(message.build().dgram)
    return out


def face_points(k=0.0):
    rng = np.random.default_rng(7)
    base = rng.uniform(0.3, 0.7, (478, 3)).astype(np.float32)
    base[:, 2] -= 0.5
    return base + np.float32(k) * np.array([0.01, 0.0, 0.0], np.float32)


def test_the_landmark_face_follows_the_stream_and_bad_chunks_are_counted(session, blender_addon, blender_scene):
    import bpy

    targets = importlib.import_module(blender_addon.__name__ + ".targets")
    scene = blender_scene
    scene.facemocap.port = free_port()
    assert bpy.ops.facemocap.landmark_face_create() == {"FINISHED"}
    face = scene.facemocap.landmark_object
    assert face is not None and len(face.data.vertices) == 478
    start(session, scene)
    bad = OscMessageBuilder("/facemocap/landmarks")
    for arg, kind in ((1, "i"), (0.0, "f"), (470, "i"), (20, "i"), (b"\x00" * 240, "b")):  # runs past 478
        bad.add_arg(arg, kind)
    points = face_points()
    send(scene.facemocap.port, bad.build().dgram, *landmark_datagrams(2, 0.5, points))
    deadline = time.monotonic() + 5
    while session.STATE.landmarks.latest is None and time.monotonic() < deadline:
        time.sleep(0.005)
    session.pump(scene)
    co = np.empty(478 * 3, np.float32)
    face.data.vertices.foreach_get("co", co)
    assert co.reshape(478, 3) == pytest.approx(targets.landmarks_to_blender(points), abs=1e-6)
    assert session.STATE.receiver.stats.bad_messages == 1


def test_a_landmark_take_plays_back_from_a_point_cache(session, blender_scene, takes_temp_dir):
    import bpy

    scene = blender_scene
    scene.render.fps, scene.render.fps_base = 30, 1.0
    scene.frame_current = 1
    scene.facemocap.port = free_port()
    bpy.ops.facemocap.landmark_face_create()
    face = scene.facemocap.landmark_object
    start(session, scene)
    scene.facemocap.record = True
    for i in range(30):
        send(scene.facemocap.port, *landmark_datagrams(i, 5.0 + i / 30, face_points(i)))
        if i % 10 == 9:
            deadline = time.monotonic() + 5
            while len(session.STATE.take.landmark_times) < i + 1 and time.monotonic() < deadline:
                session.pump(scene)
                time.sleep(0.002)
    scene.facemocap.record = False
    assert any("30 landmark frames" in line for line in session.STATE.last_take), session.STATE.last_take
    session.stop(scene)
    cache = face.modifiers["FaceMocap take"]
    assert cache.type == "MESH_CACHE" and cache.cache_format == "PC2" and cache.show_viewport
    assert Path(cache.filepath).parent == takes_temp_dir  # the file is unsaved
    targets = importlib.import_module(session.__name__.rsplit(".", 1)[0] + ".targets")
    for frame in (1, 11, 30):
        scene.frame_set(frame)
        co = np.array([v.co[:] for v in face.evaluated_get(bpy.context.evaluated_depsgraph_get()).data.vertices])
        assert co == pytest.approx(targets.landmarks_to_blender(face_points(frame - 1)), abs=1e-5)


def test_the_landmark_face_follows_facemocap_osc_s_landmarks_target(session, blender_addon, blender_scene):
    import bpy
    from bridge.demo_face import demo_landmarks

    targets = importlib.import_module(blender_addon.__name__ + ".targets")
    scene = blender_scene
    scene.facemocap.port = free_port()
    bpy.ops.facemocap.landmark_face_create()
    face = scene.facemocap.landmark_object
    start(session, scene)
    tracker = subprocess.run(
        [*tracker_command(), "--demo", "--fast", "--frames", "12", "--control-port", "0", "--quiet",
         "--target", f"landmarks@127.0.0.1:{scene.facemocap.port}"],
        capture_output=True, text=True, timeout=120)
    assert tracker.returncode == 0, tracker.stderr
    deadline = time.monotonic() + 5
    taken = []
    while len(taken) < 12 and time.monotonic() < deadline:
        taken += session.STATE.landmarks.take()
        time.sleep(0.005)
    assert [f.index for f in taken] == list(range(12))
    session.STATE.landmarks._deliver(taken[-1])   # hand the newest back for the apply step
    session.pump(scene)
    co = np.empty(478 * 3, np.float32)
    face.data.vertices.foreach_get("co", co)
    expected = np.asarray(demo_landmarks(taken[-1].time, 640, 480), np.float32) / np.float32(640)
    assert co.reshape(478, 3) == pytest.approx(targets.landmarks_to_blender(expected), abs=1e-5)


# --- binding, the allow-list, and what bench/fuzz.py found ---------------------------------


def test_the_receiver_listens_on_this_machine_by_default_and_accepts_everyone_there(blender_scene):
    settings = blender_scene.facemocap
    assert settings.host == "127.0.0.1" and settings.allow == ""


def test_an_invalid_allow_list_refuses_to_start_with_a_message(session, blender_addon, blender_scene):
    scene = blender_scene
    build_face(scene)
    scene.facemocap.allow = "192.168.1.0/24, my-laptop"
    stopped = "\n".join(draw_panels(blender_addon, scene))
    expected = ("allow-list entry 'my-laptop' is not an IP address or CIDR range "
                "(e.g. 192.168.1.20, 192.168.1.0/24 or ::1)")
    assert f"'{expected}'" in stopped  # shown under the field before anyone presses Start
    assert session.start(scene) == expected
    assert not session.STATE.running
    assert bpy_start_operator_cancels()
    scene.facemocap.allow = "192.168.1.0/24 127.0.0.1"
    start(session, scene)
    assert "allow-list entry" not in "\n".join(draw_panels(blender_addon, scene))


def bpy_start_operator_cancels():
    import bpy

    try:
        result = bpy.ops.facemocap.start()
    except RuntimeError as error:  # the operator's ERROR report, in background mode
        return "allow-list entry" in str(error)
    return result == {"CANCELLED"}


def test_listening_on_every_interface_says_so_and_senders_not_allowed_are_counted(
        session, blender_addon, blender_scene):
    scene = blender_scene
    mesh, _ = build_face(scene)
    panels = importlib.import_module(blender_addon.__name__ + ".panels")
    for host in ("0.0.0.0", "", "::"):
        assert panels.exposure_warning(host, False) == (
            "Listening on every network interface: anyone on the network can drive this scene")
    assert panels.exposure_warning("192.168.1.5", False) == (
        "Listening on the network at 192.168.1.5: anyone on the network can drive this scene")
    assert panels.exposure_warning("127.0.0.1", False) == panels.exposure_warning("::1", True) == ""

    loopback = "\n".join(draw_panels(blender_addon, scene))
    start(session, scene)
    assert "Listening on" not in "\n".join(draw_panels(blender_addon, scene))  # 127.0.0.1: no warning
    assert "sender not allowed" not in loopback
    session.stop(scene)

    try:
        outsider = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        outsider.bind(("127.0.0.2", 0))
    except OSError:
        pytest.skip("127.0.0.2 is not a loopback address here")
    scene.facemocap.host = "0.0.0.0"
    scene.facemocap.allow = "127.0.0.1"  # every interface, but only this machine's 127.0.0.1 may send
    start(session, scene)
    port = scene.facemocap.port
    with outsider:
        outsider.sendto(vmc_frame(30.0, [("JawOpen", 0.9)]), ("127.0.0.1", port))
        outsider.sendto(b"garbage", ("127.0.0.1", port))
        deadline = time.monotonic() + 5
        while session.STATE.receiver.not_allowed < 2 and time.monotonic() < deadline:
            time.sleep(0.005)
    send(port, vmc_frame(31.0, [("JawOpen", 0.2)]))
    pump_until(session, scene, lambda f: f.time == 31.0)
    running = "\n".join(draw_panels(blender_addon, scene))
    assert "'Listening on every network interface: only allow-listed senders can drive this scene'" in running
    assert "'Dropped, sender not allowed: 2'" in running
    assert "'Dropped as malformed: 0'" in running  # never parsed
    assert mesh.data.shape_keys.key_blocks["jawOpen"].value == pytest.approx(0.2)


def test_a_landmark_frame_at_a_huge_time_does_not_break_the_take(blender_addon, blender_scene):
    # A landmark time of 3e38 asked np.arange for 10^40 point-cache frames: stopping
    # the recording raised, and the take's Actions were lost with it.
    import bpy

    takes = importlib.import_module(blender_addon.__name__ + ".takes")
    landmark_stream = importlib.import_module(blender_addon.__name__ + ".landmark_stream")
    scene = blender_scene
    bpy.ops.facemocap.landmark_face_create()
    take = takes.Take(start_frame=1)
    points = face_points()
    now = time.monotonic()
    frames = [landmark_stream.LandmarkFrame(i, t, points, now + i / 30)
              for i, t in enumerate([10.0, 10.0 + 1 / 30, 3.0e38, 10.0 + 3 / 30])]
    take.add_landmarks(frames)
    lines = takes.write_take(take, scene)
    assert lines and "4 landmark frames" in lines[0]
    modifier = scene.facemocap.landmark_object.modifiers["FaceMocap take"]
    assert modifier.frame_start == 1.0
    samples = np.frombuffer(open(modifier.filepath, "rb").read()[32:], "<f4")
    # 0.1 s of landmarks at the scene's 24 fps: a handful of frames, every value finite.
    assert len(samples) % (478 * 3) == 0 and 1 <= len(samples) // (478 * 3) <= 4
    assert np.isfinite(samples).all()


def test_euler_bones_driven_by_arbitrary_rotations_keep_bounded_exact_angles(blender_addon, blender_scene):
    # Continuity with the previous angles used to follow every turn: random rotations
    # (fuzz) walked them into hundreds of radians, losing float32 precision.
    import random

    from mathutils import Quaternion

    targets = importlib.import_module(blender_addon.__name__ + ".targets")
    _, armature = build_face(blender_scene)
    pose_bone = armature.pose.bones["Neck"]
    pose_bone.rotation_mode = "ZXY"
    rng = random.Random(3)
    for _ in range(5000):
        q = Quaternion([rng.gauss(0, 1) for _ in range(4)]).normalized()
        targets.set_rotation(pose_bone, q)
        back = pose_bone.rotation_euler.to_quaternion()
        assert min(max(abs(a - b) for a, b in zip(back, q)), max(abs(a + b) for a, b in zip(back, q))) < 1e-5
        assert all(abs(a) < 4 * math.pi for a in pose_bone.rotation_euler)


def test_euler_bones_stay_continuous_across_a_turn(blender_addon, blender_scene):
    from mathutils import Euler

    targets = importlib.import_module(blender_addon.__name__ + ".targets")
    _, armature = build_face(blender_scene)
    pose_bone = armature.pose.bones["Neck"]
    pose_bone.rotation_mode = "XYZ"
    zs = []
    for degrees in range(150, 215, 10):  # through 180: no jump to -180
        targets.set_rotation(pose_bone, Euler((0.0, 0.0, math.radians(degrees))).to_quaternion())
        zs.append(pose_bone.rotation_euler.z)
    assert all(0 < b - a < math.radians(11) for a, b in zip(zs, zs[1:]))
