"""Import › Face Take, retargeting, takes on the NLA, Rigify gaze: in a real Blender (bpy).

Real iPhone Live Link Face exports (tests/data/livelink/, see its SOURCES.md) are
imported and their keys compared with the CSV's own cells read here with the csv
module; our own exports are written with the tracker's writers and must come back to
1e-6; bad files must leave the file exactly as it was.
"""

import csv
import importlib
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bridge.state import ARKIT_NAMES, VRM0_NAMES, FaceState, pascal_case
from test_receiver_blender import build_face, deform_matrix, fcurves_of
from test_retarget import CC4_EXT_KEYS, CC_ARKIT_KEYS, VRM0_KEYS, VRM1_KEYS, VROID_KEYS

LIVELINK = Path(__file__).resolve().parent / "data" / "livelink"


@pytest.fixture
def addon(blender_addon, blender_scene):
    def module(name):
        return importlib.import_module(f"{blender_addon.__name__}.{name}")
    return module


def curves_by_path(id_data):
    return {(c.data_path, c.array_index): c for c in fcurves_of(id_data)}


def keys(curve):
    co = np.empty(2 * len(curve.keyframe_points), dtype=np.float32)
    curve.keyframe_points.foreach_get("co", co)
    return co[0::2].astype(float), co[1::2].astype(float)


def snapshot():
    """Everything an import may touch, to show a failed one touched nothing."""
    import bpy

    scene = bpy.context.scene
    return (sorted(a.name for a in bpy.data.actions), scene.frame_start, scene.frame_end,
            [(o.name, o.animation_data.action.name if o.animation_data and o.animation_data.action else None)
             for o in bpy.data.objects],
            [(k.name, [kb.value for kb in k.key_blocks]) for k in bpy.data.shape_keys])


def livelink_files():
    files = sorted(LIVELINK.glob("*.csv"))
    assert files, f"no Live Link Face exports in {LIVELINK}"
    return files


def read_livelink_cells(path):
    """The CSV's header and its complete rows (tracking-lost `Timecode,0` rows left
    out), straight from the csv module."""
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    header = [h.strip() for h in rows[0]]
    return header, [r for r in rows[1:] if len(r) >= len(header) - 1 and r[1].strip() != "0"]


def timecode_seconds(text):
    hh, mm, ss, rest = text.split(":")
    return int(hh) * 3600 + int(mm) * 60 + int(ss) + float(rest) / 60


@pytest.mark.parametrize("path", livelink_files(), ids=lambda p: p.name)
def test_a_real_live_link_face_export_imports_with_its_frames_rate_and_values(addon, blender_scene, path):
    scene = blender_scene
    scene.render.fps, scene.render.fps_base = 30, 1.0
    mesh, armature = build_face(scene)
    lines = addon("importer").import_take(str(path), scene, start_frame=5)
    header, rows = read_livelink_cells(path)
    times = np.array([timecode_seconds(r[0]) for r in rows])
    # Identical consecutive timecodes are the app repeating a frame: one key each.
    keep = np.concatenate([[True], np.diff(times) > 0])
    times, rows = times[keep] - times[keep][0], [r for r, k in zip(rows, keep) if k]
    curves = curves_by_path(mesh.data.shape_keys)
    jaw_column = header.index("JawOpen")
    frames, values = keys(curves[('key_blocks["jawOpen"].value', 0)])
    assert len(frames) == len(rows), lines
    assert frames == pytest.approx(5 + times * 30, abs=1e-3)  # the file's own clock at the scene's rate
    for i in (0, len(rows) // 2, len(rows) - 1):  # three times
        assert values[i] == pytest.approx(float(rows[i][jaw_column]), abs=1e-6)
        blink = keys(curves[('key_blocks["eyeBlinkLeft"].value', 0)])[1][i]
        assert blink == pytest.approx(float(rows[i][header.index("EyeBlinkLeft")]), abs=1e-6)
    assert any(f"{len(rows)} frames" in line for line in lines), lines
    # Eye rotations vary in every real take: the eye bones are keyed.
    rotation_paths = {p for p, _ in curves_by_path(armature)}
    assert 'pose.bones["LeftEye"].rotation_quaternion' in rotation_paths


def write_export(path, fmt, states, times):
    from bridge.export import WRITERS

    with open(path, "w", newline="") as f:
        writer = WRITERS[fmt](f, {"source": "test"})
        for i, (t, state) in enumerate(zip(times, states)):
            writer.frame(i, t, True, state)
        writer.close(len(states), len(states))


def varied_states(n, seed=0):
    rng = np.random.default_rng(seed)
    states = []
    for _ in range(n):
        state = FaceState.neutral()
        state.blendshapes[:] = np.round(rng.random(52), 6)
        state.head_angles[:] = np.round(rng.uniform(-25, 25, 3), 4)
        state.eye_angles[:] = np.round(rng.uniform(-12, 12, (2, 2)), 4)
        states.append(state)
    return states


@pytest.mark.parametrize("fmt,suffix", [("livelink-csv", ".csv"), ("csv", ".csv"), ("json", ".json")])
def test_our_own_exports_round_trip_to_1e_6(addon, blender_scene, tmp_path, fmt, suffix):
    scene = blender_scene
    scene.render.fps, scene.render.fps_base = 60, 1.0
    mesh, armature = build_face(scene)
    states, times = varied_states(40), np.arange(40) / 30
    path = tmp_path / f"take{suffix}"
    write_export(path, fmt, states, times)
    addon("importer").import_take(str(path), scene, start_frame=1)
    curves = curves_by_path(mesh.data.shape_keys)
    for j, name in enumerate(ARKIT_NAMES):
        frames, values = keys(curves[(f'key_blocks["{name}"].value', 0)])
        assert frames == pytest.approx(1 + times * 60, abs=1e-3)
        assert values == pytest.approx([s.blendshapes[j] for s in states], abs=1e-6), name
    # The head keys are the rotations the live stream would have given for these angles.
    from bridge.vmc import bone_rotations_from

    targets = addon("targets")
    live = targets.Targets(scene.facemocap)
    rotations = curves_by_path(armature)
    for i in (0, 17, 39):
        unity = bone_rotations_from(states[i].head_angles, states[i].eye_angles)
        expected = live.armature.resolve(dict(zip(("Neck", "Head", "LeftEye", "RightEye"), unity)))
        for bone, q in expected.items():
            got = [keys(rotations[(f'pose.bones["{bone}"].rotation_quaternion', k)])[1][i] for k in range(4)]
            sign = 1.0 if np.dot(got, tuple(q)) >= 0 else -1.0
            assert np.multiply(got, sign) == pytest.approx(tuple(q), abs=2e-5), (bone, i)


def test_our_take_file_imports_shape_keys_and_the_landmark_face(addon, blender_scene, tmp_path):
    from bridge.record import TakeWriter

    scene = blender_scene
    mesh, _ = build_face(scene)
    import bpy

    bpy.ops.facemocap.landmark_face_create()
    rng = np.random.default_rng(3)
    path = tmp_path / "take.jsonl.gz"
    header = {"backend": "test", "source": "test", "width": 640, "height": 480, "fps": 30.0}
    states = varied_states(12, seed=4)
    with TakeWriter.open(str(path), header) as writer:
        for i, state in enumerate(states):
            landmarks = rng.uniform(100, 400, (478, 3))
            writer.write(i, i / 30, landmarks if i != 5 else None, state if i != 5 else None)
    lines = addon("importer").import_take(str(path), scene, start_frame=1)
    frames, values = keys(curves_by_path(mesh.data.shape_keys)[('key_blocks["jawOpen"].value', 0)])
    kept = [s for i, s in enumerate(states) if i != 5]  # frame 5 had no face: no key there
    assert len(frames) == 11
    assert values == pytest.approx([round(float(s.blendshapes[ARKIT_NAMES.index("jawOpen")]), 5) for s in kept],
                                   abs=1e-6)
    assert any("landmark frame" in line for line in lines), lines
    assert scene.facemocap.landmark_object.modifiers.get(addon("targets").LANDMARK_CACHE_MODIFIER) is not None


def bad_files(tmp_path):
    good = (LIVELINK / livelink_files()[0].name).read_text().splitlines()
    cases = {
        "wrong_header.csv": "Time,Count,Foo\n00:00:00:00.000,61,1\n",
        "truncated.csv": "\n".join(good[:5] + [good[5][: len(good[5]) // 2]]) + "\n",
        "nan.csv": "\n".join(good[:3] + [good[3].replace(good[3].split(",")[5], "nan", 1)]) + "\n",
        "backwards.csv": "\n".join(good[:1] + [good[4], good[2], good[3]]) + "\n",
        "empty.csv": "",
        "junk.json": "\x00\x01garbage",
    }
    for name, text in cases.items():
        (tmp_path / name).write_text(text)
    big = tmp_path / "million.csv"
    with open(big, "w") as f:
        f.write(good[0] + "\n")
        row = good[1].split(",")
        for i in range(1_000_000):
            frames = i % 60
            seconds = i // 60
            row[0] = f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}:{frames:02d}.000"
            f.write(",".join(row) + "\n")
    return [tmp_path / name for name in cases] + [big, tmp_path / "missing.csv"]


def test_bad_files_are_one_message_and_leave_the_file_untouched(addon, blender_scene, tmp_path):
    import bpy

    scene = blender_scene
    build_face(scene)
    before = snapshot()
    for path in bad_files(tmp_path):
        with pytest.raises(addon("importer").ImportFailed) as error:
            addon("importer").import_take(str(path), scene, start_frame=1)
        message = str(error.value)
        assert "\n" not in message and path.name in message, message
        assert snapshot() == before, path.name
        # The operator reports the same line (in background mode Blender raises an
        # operator's error report as RuntimeError) and cancels.
        with pytest.raises(RuntimeError) as reported:
            bpy.ops.facemocap.import_take(filepath=str(path), start_frame=1)
        assert str(reported.value).strip() == f"Error: {message}"
        assert snapshot() == before, path.name


def test_the_operator_imports_onto_the_active_object_when_the_panel_has_no_targets(addon, blender_scene):
    import bpy

    scene = blender_scene
    mesh, _ = build_face(scene)
    scene.facemocap.meshes.clear()
    scene.facemocap.armature = None
    bpy.context.view_layer.objects.active = mesh
    path = livelink_files()[0]
    assert bpy.ops.facemocap.import_take(filepath=str(path), start_frame=3) == {"FINISHED"}
    assert len(fcurves_of(mesh.data.shape_keys)) >= 50


def test_headless_import_from_the_command_line(blender_addon, tmp_path):
    """The README's one line for pipelines, in a fresh Blender process (the bpy module
    stands in for `blender -b FILE --python-expr`)."""
    import bpy

    bpy.ops.wm.read_homefile(use_empty=True)
    build_face(bpy.context.scene)
    blend = tmp_path / "shot.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(blend))
    take = livelink_files()[0]
    # `blender -b FILE --addons MODULE --python-expr EXPR` opens FILE and enables MODULE first.
    expr = (f"import bpy, addon_utils; bpy.ops.wm.open_mainfile(filepath={str(blend)!r}); "
            f"addon_utils.enable({blender_addon.__name__!r}); "
            f"bpy.ops.facemocap.import_take(filepath={str(take)!r}, start_frame=1); bpy.ops.wm.save_mainfile()")
    result = subprocess.run([sys.executable, "-c", expr], capture_output=True, text=True, timeout=300,
                            env={**os.environ})
    assert result.returncode == 0, result.stderr[-2000:]
    bpy.ops.wm.open_mainfile(filepath=str(blend))
    mesh = bpy.data.objects["Face"]
    assert len(fcurves_of(mesh.data.shape_keys)) >= 50
    bpy.ops.wm.read_homefile(use_empty=True)


# --- retargeting ---------------------------------------------------------------------


def named_mesh(scene, name, key_names):
    import bpy

    data = bpy.data.meshes.new(name)
    data.from_pydata([(0, 0, 0)], [], [])
    obj = bpy.data.objects.new(name, data)
    scene.collection.objects.link(obj)
    obj.shape_key_add(name="Basis")
    for key in key_names:
        obj.shape_key_add(name=key, from_mix=False).value = 0.0
    return obj


SCHEME_KEYS = {
    "arkit": list(ARKIT_NAMES),
    "arkit-pascal": [pascal_case(n) for n in ARKIT_NAMES],
    "arkit-lr": [n[:-4] + "_L" if n.endswith("Left") else n[:-5] + "_R" if n.endswith("Right") else n
                 for n in ARKIT_NAMES],
    "cc4": CC4_EXT_KEYS,
    "cc-arkit": CC_ARKIT_KEYS,
    "vroid": VROID_KEYS,
    "vrm0": VRM0_KEYS,
    "vrm1": VRM1_KEYS,
}


@pytest.mark.parametrize("scheme", sorted(SCHEME_KEYS))
def test_an_export_drives_a_mesh_named_in_each_scheme_after_auto_fill(addon, blender_scene, tmp_path, scheme):
    """Our csv export carries the 52 ARKit channels and the VRM presets, so every
    scheme's rows have something to take."""
    import bpy

    scene = blender_scene
    obj = named_mesh(scene, "Char", SCHEME_KEYS[scheme])
    scene.facemocap.meshes.add().object = obj
    scene.facemocap.active_mesh = 0
    assert bpy.ops.facemocap.mapping_autofill() == {"FINISHED"}
    match = addon("retarget").detect_scheme([kb.name for kb in obj.data.shape_keys.key_blocks])
    assert match.scheme == scheme
    assert len(scene.facemocap.meshes[0].remaps) == len(match.rows)
    path = tmp_path / "take.csv"
    write_export(path, "csv", varied_states(5), np.arange(5) / 30)
    addon("importer").import_take(str(path), scene, start_frame=1)
    animated = {c.data_path for c in fcurves_of(obj.data.shape_keys)}
    sent = {n.lower() for n in (*ARKIT_NAMES, *VRM0_NAMES)}  # the export's channels
    assert animated == {f'key_blocks["{r.key}"].value' for r in match.rows if r.stream.lower() in sent}


def test_mapping_tables_save_and_load_through_the_operators(addon, blender_scene, tmp_path):
    import bpy

    scene = blender_scene
    obj = named_mesh(scene, "Char", SCHEME_KEYS["arkit-lr"])
    item = scene.facemocap.meshes.add()
    item.object = obj
    bpy.ops.facemocap.mapping_autofill()
    item.remaps[0].strength, item.remaps[0].curve = 1.5, 2.0
    for suffix in (".toml", ".json"):
        path = tmp_path / f"studio{suffix}"
        assert bpy.ops.facemocap.mapping_save(filepath=str(path)) == {"FINISHED"}
        saved = [(r.stream_name, r.shape_key, r.strength, r.curve) for r in item.remaps]
        item.remaps.clear()
        assert bpy.ops.facemocap.mapping_load(filepath=str(path)) == {"FINISHED"}
        assert [(r.stream_name, r.shape_key, r.strength, r.curve) for r in item.remaps] == saved
    (tmp_path / "bad.toml").write_text('format = "facemocap-mapping"\nversion = 1\n[[rows]]\nstream = 3\n')
    with pytest.raises(RuntimeError, match="bad.toml: rows"):  # the report, raised in background mode
        bpy.ops.facemocap.mapping_load(filepath=str(tmp_path / "bad.toml"))
    assert len(item.remaps) == 52  # a bad file replaces nothing


# --- takes on the NLA ----------------------------------------------------------------


def test_two_takes_are_listed_pushed_to_the_nla_renamed_cleaned_and_deleted(addon, blender_addon, blender_scene, tmp_path):
    import bpy

    takes = addon("takes")
    scene = blender_scene
    mesh, armature = build_face(scene)
    paths = livelink_files()[:1] * 2
    for path in paths:
        addon("importer").import_take(str(path), scene, start_frame=1)
    listed = [a for a in bpy.data.actions if takes.is_take(a)]
    # One Action per take with a slot per object (4.4+), else one per take and object.
    assert len(listed) == (2 if takes.has_slots() else 4)
    for action in listed:
        scene.facemocap.active_take = list(bpy.data.actions).index(action)
        assert bpy.ops.facemocap.take_push_nla() == {"FINISHED"}
    for id_data in (mesh.data.shape_keys, armature):
        tracks = id_data.animation_data.nla_tracks
        mine = [a for a in listed if any(i == id_data for i, _ in takes.take_ids(a))]
        assert len(mine) == 2
        assert sorted(t.strips[0].action.name for t in tracks) == sorted(a.name for a in mine)
        assert id_data.animation_data.action is None  # the NLA plays the takes
    listed[0].name = "Best take"  # rename = the list's name field
    scene.facemocap.active_take = list(bpy.data.actions).index(listed[0])
    before = addon("cleanup").count_keys(listed[0])
    assert bpy.ops.facemocap.take_cleanup(decimate=0.02, smooth=0.3) == {"FINISHED"}
    assert addon("cleanup").count_keys(listed[0]) < before
    assert bpy.ops.facemocap.take_delete() == {"FINISHED"}
    assert "Best take" not in bpy.data.actions
    assert len(mesh.data.shape_keys.animation_data.nla_tracks) == 1


# --- Rigify gaze -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def rigify_rig(blender_addon):
    """A real generated Rigify human (with its face) in a saved file, made once."""
    import addon_utils
    import bpy

    addon_utils.enable("rigify", default_set=True)
    bpy.ops.wm.read_homefile(use_empty=True)
    bpy.ops.object.armature_human_metarig_add()
    bpy.ops.pose.rigify_generate()
    path = Path(bpy.app.tempdir or "/tmp") / "facemocap_rigify.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(path))
    return path


def test_rigify_eyes_follow_the_gaze_through_their_target_controls(addon, blender_scene, rigify_rig):
    import bpy
    from mathutils import Vector

    bpy.ops.wm.open_mainfile(filepath=str(rigify_rig))
    scene = bpy.context.scene
    rig = next(o for o in bpy.data.objects if o.type == "ARMATURE" and "ORG-eye.L" in o.data.bones)
    scene.facemocap.armature = rig
    assert (scene.facemocap.bone_left_eye, scene.facemocap.bone_right_eye) == ("eye.L", "eye.R")
    targets = addon("targets").Targets(scene.facemocap)
    assert not targets.problems
    # The tracker's own rotations for a gaze 20 degrees to the subject's left and 10 up.
    from bridge.vmc import bone_rotations_from

    _, _, left, right = bone_rotations_from((0.0, 0.0, 0.0), [[20.0, 10.0], [20.0, 10.0]])
    frame = type("Frame", (), {"blends": {}, "bones": {"LeftEye": tuple(left), "RightEye": tuple(right)}})()
    targets.write(targets.resolve(frame))
    bpy.context.view_layer.update()
    for side in ("L", "R"):
        eye = deform_matrix(rig, f"DEF-eye.{side}" if f"DEF-eye.{side}" in rig.data.bones else f"MCH-eye.{side}")
        forward = (eye.to_3x3() @ Vector((0.0, -1.0, 0.0))).normalized()
        # The character's left is +X; up is +Z.
        assert math.degrees(math.atan2(forward.x, -forward.y)) == pytest.approx(20, abs=1.0), side
        assert math.degrees(math.asin(forward.z)) == pytest.approx(10, abs=1.0), side


def test_an_imported_take_moves_the_rigify_gaze_controls_as_live_frames_do(addon, blender_scene, rigify_rig):
    import bpy

    bpy.ops.wm.open_mainfile(filepath=str(rigify_rig))
    scene = bpy.context.scene
    rig = next(o for o in bpy.data.objects if o.type == "ARMATURE" and "ORG-eye.L" in o.data.bones)
    scene.facemocap.armature = rig
    path = LIVELINK / "MySlate_3_Jason_Millers_iPhone.csv"
    addon("importer").import_take(str(path), scene, start_frame=1)
    data = addon("take_files").read_take_file(str(path))
    curves = curves_by_path(rig)
    live = addon("targets").Targets(scene.facemocap)
    for i in (0, len(data.times) // 2, len(data.times) - 1):
        bones = {name: tuple(q[i]) for name, q in data.bones.items()}
        expected = live.armature.resolve_aims(bones)
        for control in ("eye.L", "eye.R"):
            got = [keys(curves[(f'pose.bones["{control}"].location', k)])[1][i] for k in range(3)]
            assert got == pytest.approx(tuple(expected[control]), abs=1e-6), (control, i)
