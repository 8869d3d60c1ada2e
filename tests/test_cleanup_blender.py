"""Take clean-up (blender_receiver/cleanup.py) in a real Blender (bpy).

Takes are written as takes.py writes them (linear keys at every frame, bulk
foreach_set): noisy 60 fps shape-key values on a mesh and a quaternion head rotation
on an armature. The cleaned curves are checked by evaluating them at every original
key time against the smoothed curve, which clean_up_take(decimate=0) gives on its own.
"""

import importlib
import math

import numpy as np
import pytest

FPS = 60
TOLERANCE = 0.01


@pytest.fixture
def cleanup(blender_addon):
    return importlib.import_module(blender_addon.__name__ + ".cleanup")


@pytest.fixture
def takes(blender_addon):
    return importlib.import_module(blender_addon.__name__ + ".takes")


def fcurves_of(action):
    """Every F-Curve of the Action, in every slot's channelbag (4.4+) or action.fcurves."""
    if not hasattr(action, "layers"):
        return list(action.fcurves)
    return [f for layer in action.layers for strip in layer.strips for bag in strip.channelbags for f in bag.fcurves]


def keys_of(fcurve):
    points = fcurve.keyframe_points
    co = np.empty(2 * len(points), dtype=np.float32)
    points.foreach_get("co", co)
    return co[0::2].copy(), co[1::2].copy()


def evaluate(fcurve, frames):
    return np.array([fcurve.evaluate(float(f)) for f in frames])


def shape_key_take(scene, takes, frames, curves, noise, seed=0, name="Face"):
    """A mesh with `curves` shape keys and an Action written as takes.write_take does."""
    import bpy

    mesh = bpy.data.objects.new(name, bpy.data.meshes.new(name))
    mesh.data.from_pydata([(0.0, 0.0, 0.0)], [], [])
    scene.collection.objects.link(mesh)
    mesh.shape_key_add(name="Basis")
    rng = np.random.default_rng(seed)
    seconds = np.arange(frames) / FPS
    for i in range(curves):
        mesh.shape_key_add(name=f"Key{i}")
    fcurves, action = takes._new_action(mesh.data.shape_keys, f"{name} FaceMocap")
    for i in range(curves):
        # Slow expression changes (a few a second at most) plus tracker jitter.
        smooth = 0.5 + 0.4 * np.sin(2 * np.pi * seconds * (0.15 + 0.07 * i) + i) * np.sin(2 * np.pi * seconds * 0.05)
        values = np.clip(smooth + rng.normal(0.0, noise, frames), 0.0, 1.0)
        takes._write_fcurve(fcurves, f'key_blocks["Key{i}"].value', 0, 1.0 + np.arange(frames), values)
    return mesh, action


def head_take(scene, takes, frames, noise, seed=1):
    """An armature whose Head bone turns (quaternion, 4 curves) with jitter."""
    import bpy
    from mathutils import Quaternion

    armature = bpy.data.objects.new("Rig", bpy.data.armatures.new("Rig"))
    scene.collection.objects.link(armature)
    bpy.context.view_layer.objects.active = armature
    bpy.ops.object.mode_set(mode="EDIT")
    bone = armature.data.edit_bones.new("Head")
    bone.head, bone.tail = (0, 0, 1.5), (0, 0, 1.7)
    bpy.ops.object.mode_set(mode="OBJECT")
    rng = np.random.default_rng(seed)
    seconds = np.arange(frames) / FPS
    yaw = 0.4 * np.sin(2 * np.pi * 0.2 * seconds) + rng.normal(0.0, noise, frames)
    pitch = 0.2 * np.sin(2 * np.pi * 0.13 * seconds + 1) + rng.normal(0.0, noise, frames)
    quats = np.array([tuple(Quaternion((0, 0, 1), y) @ Quaternion((1, 0, 0), p)) for y, p in zip(yaw, pitch)])
    fcurves, action = takes._new_action(armature, "Rig FaceMocap")
    for index in range(4):
        takes._write_fcurve(fcurves, 'pose.bones["Head"].rotation_quaternion', index,
                            1.0 + np.arange(frames), quats[:, index])
    return armature, action


def assert_within(cleaned, reference, frames_by_curve, tolerance):
    """Every cleaned curve, at every original key time, within tolerance of the reference."""
    worst = 0.0
    for got, want in zip(fcurves_of(cleaned), fcurves_of(reference)):
        assert (got.data_path, got.array_index) == (want.data_path, want.array_index)
        frames = frames_by_curve[(want.data_path, want.array_index)]
        error = np.max(np.abs(evaluate(got, frames) - evaluate(want, frames)))
        worst = max(worst, error)
        # float32 keys: a few units in the last place of the values.
        assert error <= tolerance + 1e-6, f"{got.data_path}[{got.array_index}] is {error:.6f} off"
    return worst


def original_frames(action):
    return {(f.data_path, f.array_index): keys_of(f)[0] for f in fcurves_of(action)}


def test_reduces_keys_within_tolerance_of_the_smoothed_curve(blender_scene, cleanup, takes):
    import bpy

    _, action = shape_key_take(blender_scene, takes, frames=1800, curves=6, noise=0.003)
    frames = original_frames(action)
    firsts_lasts = {k: (v[0], v[-1]) for k, v in frames.items()}
    smoothed = cleanup.clean_up_take(action, decimate=0, smooth=0.6, copy=True).action
    result = cleanup.clean_up_take(action, decimate=TOLERANCE, smooth=0.6)

    assert result.action == action and result.curves == 6
    assert result.keys_before == 6 * 1800 == cleanup.count_keys(smoothed)
    assert result.keys_after == cleanup.count_keys(action)
    assert result.keys_before >= 5 * result.keys_after, f"{result.keys_before} -> {result.keys_after}"
    worst = assert_within(action, smoothed, frames, TOLERANCE)
    assert 0 < result.max_error <= TOLERANCE and worst <= result.max_error + 1e-6
    for fcurve in fcurves_of(action):
        times, _ = keys_of(fcurve)
        assert (times[0], times[-1]) == firsts_lasts[(fcurve.data_path, fcurve.array_index)]
        # Far-apart keys follow the shape with the fitted Bezier handles.
        assert {k.interpolation for k in fcurve.keyframe_points} == {"BEZIER"}
    # Nothing of the scratch Graph Editor set-up is left behind.
    assert sorted(a.name for a in bpy.data.actions) == ["Face FaceMocap", "Face FaceMocap clean"]
    assert [o.name for o in bpy.data.objects] == ["Face"]
    assert len(bpy.data.collections) == 0


def test_without_smoothing_the_original_curve_is_the_reference(blender_scene, cleanup, takes):
    _, action = shape_key_take(blender_scene, takes, frames=1200, curves=3, noise=0.002)
    frames = original_frames(action)
    original = action.copy()
    result = cleanup.clean_up_take(action, decimate=TOLERANCE, smooth=0)
    assert result.keys_after < result.keys_before
    assert_within(action, original, frames, TOLERANCE)


def test_quaternion_rotation_curves(blender_scene, cleanup, takes):
    _, action = head_take(blender_scene, takes, frames=1800, noise=0.002)
    frames = original_frames(action)
    smoothed = cleanup.clean_up_take(action, decimate=0, smooth=1.0, copy=True).action
    result = cleanup.clean_up_take(action, decimate=TOLERANCE, smooth=1.0)
    assert result.curves == 4
    assert result.keys_before >= 5 * result.keys_after, f"{result.keys_before} -> {result.keys_after}"
    assert_within(action, smoothed, frames, TOLERANCE)


def test_zero_amounts_change_nothing(blender_scene, cleanup, takes):
    _, action = shape_key_take(blender_scene, takes, frames=600, curves=3, noise=0.01)
    before = [keys_of(f) for f in fcurves_of(action)]
    result = cleanup.clean_up_take(action, decimate=0, smooth=0)
    assert (result.keys_before, result.keys_after, result.max_error) == (1800, 1800, 0.0)
    for (t0, v0), fcurve in zip(before, fcurves_of(action)):
        t1, v1 = keys_of(fcurve)
        assert np.array_equal(t0, t1) and np.array_equal(v0, v1)
        assert {k.interpolation for k in fcurve.keyframe_points} == {"LINEAR"}


def test_flat_curve_becomes_two_keys(blender_scene, cleanup, takes):
    import bpy

    mesh = bpy.data.objects.new("Flat", bpy.data.meshes.new("Flat"))
    blender_scene.collection.objects.link(mesh)
    mesh.shape_key_add(name="Basis")
    mesh.shape_key_add(name="Still")
    fcurves, action = takes._new_action(mesh.data.shape_keys, "Flat FaceMocap")
    takes._write_fcurve(fcurves, 'key_blocks["Still"].value', 0, 10.0 + np.arange(900), np.full(900, 0.25))
    for smooth in (0.0, 1.0):
        result = cleanup.clean_up_take(action, decimate=TOLERANCE, smooth=smooth, copy=True)
        (fcurve,) = fcurves_of(result.action)
        times, values = keys_of(fcurve)
        assert list(times) == [10.0, 909.0] and np.allclose(values, 0.25, atol=1e-6)
        assert np.allclose(evaluate(fcurve, [10, 300.5, 909]), 0.25, atol=1e-6)


def test_more_decimate_fewer_keys(blender_scene, cleanup, takes):
    _, action = shape_key_take(blender_scene, takes, frames=1200, curves=3, noise=0.005)
    counts = [cleanup.clean_up_take(action, decimate=d, smooth=0.5, copy=True).keys_after
              for d in (0.001, 0.003, 0.01, 0.03)]
    assert counts == sorted(counts, reverse=True) and len(set(counts)) == len(counts), counts
    # copy=True left the take itself as recorded.
    assert cleanup.count_keys(action) == 3 * 1200


def test_result_does_not_depend_on_the_users_graph_editor(blender_scene, cleanup, takes):
    """An open Graph Editor with its own filters, other animation with selected keys:
    the same result as with no Graph Editor, nothing else touched, settings put back."""
    import bpy

    _, action = shape_key_take(blender_scene, takes, frames=900, curves=2, noise=0.004)
    plain = cleanup.clean_up_take(action, decimate=TOLERANCE, smooth=0.5, copy=True).action

    # Another object's take, every key selected, which a Graph Editor would show.
    _, other = shape_key_take(blender_scene, takes, frames=300, curves=1, noise=0.004, name="Other")
    for fcurve in fcurves_of(other):
        fcurve.select = True
        for key in fcurve.keyframe_points:
            key.select_control_point = True
    other_before = [keys_of(f) for f in fcurves_of(other)]
    area = bpy.context.window_manager.windows[0].screen.areas[0]
    area.ui_type = "FCURVES"
    dopesheet = area.spaces.active.dopesheet
    dopesheet.show_only_selected = True
    dopesheet.filter_text = "nothing matches this"
    dopesheet.show_shapekeys = False

    busy = cleanup.clean_up_take(action, decimate=TOLERANCE, smooth=0.5, copy=True).action
    for a, b in zip(fcurves_of(plain), fcurves_of(busy)):
        assert all(np.array_equal(x, y) for x, y in zip(keys_of(a), keys_of(b)))
    for (t0, v0), fcurve in zip(other_before, fcurves_of(other)):
        t1, v1 = keys_of(fcurve)
        assert np.array_equal(t0, t1) and np.array_equal(v0, v1)
    assert area.ui_type == "FCURVES"
    assert (dopesheet.show_only_selected, dopesheet.filter_text, dopesheet.show_shapekeys) == (
        True, "nothing matches this", False)
    assert dopesheet.filter_collection is None


def test_borrowed_area_is_given_back(blender_scene, cleanup, takes):
    import bpy

    _, action = shape_key_take(blender_scene, takes, frames=300, curves=1, noise=0.004)
    before = [a.ui_type for w in bpy.context.window_manager.windows for a in w.screen.areas]
    assert "FCURVES" not in before
    cleanup.clean_up_take(action, decimate=TOLERANCE, smooth=0.5)
    assert [a.ui_type for w in bpy.context.window_manager.windows for a in w.screen.areas] == before


def test_slots(blender_scene, cleanup, takes):
    """id_data cleans only the slot that ID uses; by default every slot's channelbag."""
    import bpy

    mesh, action = shape_key_take(blender_scene, takes, frames=600, curves=2, noise=0.004)
    if not hasattr(action, "slots"):
        pytest.skip("Blender before 4.4 has no action slots")
    # A second slot in the same Action, for another object's shape keys.
    other = bpy.data.objects.new("Other", bpy.data.meshes.new("Other"))
    blender_scene.collection.objects.link(other)
    other.shape_key_add(name="Basis")
    other.shape_key_add(name="Key0")
    anim = other.data.shape_keys.animation_data_create()
    anim.action = action
    slot = action.slots.new(id_type="KEY", name="Other")
    anim.action_slot = slot
    bag = action.layers[0].strips[0].channelbag(slot, ensure=True)
    takes._write_fcurve(bag.fcurves, 'key_blocks["Key0"].value', 0, 1.0 + np.arange(600),
                        0.5 + 0.3 * np.sin(np.arange(600) / 50.0))

    assert cleanup.count_keys(action) == 3 * 600
    assert cleanup.count_keys(action, id_data=other.data.shape_keys) == 600
    result = cleanup.clean_up_take(action, decimate=TOLERANCE, smooth=0, id_data=mesh.data.shape_keys)
    assert (result.curves, result.keys_before) == (2, 1200)
    assert cleanup.count_keys(action, id_data=other.data.shape_keys) == 600
    result = cleanup.clean_up_take(action, decimate=TOLERANCE, smooth=0)
    assert result.curves == 3
    assert cleanup.count_keys(action, id_data=other.data.shape_keys) < 600
    with pytest.raises(ValueError):
        cleanup.clean_up_take(action, decimate=TOLERANCE, smooth=0, id_data=blender_scene)


def test_amounts_are_checked(blender_scene, cleanup, takes):
    _, action = shape_key_take(blender_scene, takes, frames=300, curves=1, noise=0.004)
    for decimate, smooth in ((-0.1, 0.5), (0.01, 1.5), (0.01, -0.2), (math.nan, 0.5)):
        with pytest.raises(ValueError):
            cleanup.clean_up_take(action, decimate=decimate, smooth=smooth)
    assert cleanup.count_keys(action) == 300


def test_graph_operators_need_an_area(blender_scene):
    """Why cleanup.py borrows an area: without a Graph Editor in the context, Blender's
    F-Curve tools do not run, in background mode as in the UI."""
    import bpy

    for name in ("decimate", "gaussian_smooth", "smooth", "clean"):
        assert not getattr(bpy.ops.graph, name).poll(), name
