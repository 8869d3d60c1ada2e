"""Blender receiver benchmark: parse, apply one frame, write a 10,000-frame take.

    python bench/receiver.py [--repeat N] [--take-frames N]

Needs bpy (pip install bpy==5.0.1). Prints figures with a baseline measured in the
same run, so a noisy machine shows in both:
  parse       VmcStream.feed on one tracker frame (3 bundles, 68 values, 4 bones)
  apply       Targets.resolve + write: 52 shape keys + 4 bones, excluding depsgraph
              evaluation; baseline: look every key and bone up by name each frame
  take        write_take of N frames (52 keys + 4 bones) with bulk F-Curve writes;
              baseline: keyframe_insert per value on a slice, scaled to N frames
  face rig    Create Face Rig, then apply a landmark frame + depsgraph update with the
              rig's constraints evaluated; baseline: the same without a rig
  import      Import > Face Take of a 10-minute 60 fps Live Link Face CSV (36,000 rows,
              52 shape keys + head/eye rotations): read, map, write; baseline: the same
              file read with the csv module and keyed with keyframe_insert (on a slice)
Targets: apply <= 0.3 ms median; a 10,000-frame take <= 0.5 s; import <= 1 s;
         Create Face Rig + live apply <= 1 ms per frame.
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
# Keep Blender away from the user's own config while benchmarking.
os.environ.setdefault("BLENDER_USER_RESOURCES", tempfile.mkdtemp(prefix="facemocap-bench-"))

import bpy  # noqa: E402
import numpy as np  # noqa: E402

import blender_receiver  # noqa: E402
from blender_receiver import session  # noqa: E402
from blender_receiver.mapping import unity_to_blender_rotation  # noqa: E402
from blender_receiver.takes import Take, write_take  # noqa: E402
from blender_receiver.targets import Targets, set_rotation  # noqa: E402
from blender_receiver.vmc_stream import VmcStream  # noqa: E402
from bridge.state import ARKIT_NAMES, FaceState  # noqa: E402
from bridge.vmc import VmcEncoder  # noqa: E402
from mathutils import Quaternion  # noqa: E402

BONES = ("Neck", "Head", "LeftEye", "RightEye")


def build_scene():
    bpy.ops.wm.read_factory_settings(use_empty=True)
    blender_receiver.register()
    scene = bpy.context.scene
    bpy.ops.mesh.primitive_uv_sphere_add(segments=64, ring_count=32)
    mesh = bpy.context.object
    mesh.shape_key_add(name="Basis")
    for name in ARKIT_NAMES:
        mesh.shape_key_add(name=name).value = 0.0
    arm_data = bpy.data.armatures.new("Rig")
    armature = bpy.data.objects.new("Rig", arm_data)
    scene.collection.objects.link(armature)
    bpy.context.view_layer.objects.active = armature
    bpy.ops.object.mode_set(mode="EDIT")
    for i, name in enumerate(BONES):
        bone = arm_data.edit_bones.new(name)
        bone.head, bone.tail = (0, 0, 1.4 + 0.1 * i), (0, 0, 1.5 + 0.1 * i)
    bpy.ops.object.mode_set(mode="OBJECT")
    settings = scene.facemocap
    settings.meshes.add().object = mesh
    settings.armature = armature
    return scene, mesh, armature


def tracker_frames(count):
    """Real tracker output: VMC datagrams for `count` varied frames, parsed."""
    frames, encoder = [], VmcEncoder()
    stream = VmcStream(frames.append)
    rng = np.random.default_rng(0)
    datagrams = []
    for i in range(count):
        state = FaceState.neutral()
        state.blendshapes[:] = rng.random(52)
        state.head_angles[:] = rng.uniform(-30, 30, 3)
        state.eye_angles[:] = rng.uniform(-15, 15, (2, 2))
        frame_datagrams = encoder.encode(state, time=i / 60, tracking=True)
        datagrams.append(frame_datagrams)
        for d in frame_datagrams:
            stream.feed(d, "127.0.0.1:1")
    for frame in frames:
        frame.received = frame.time
    return frames, datagrams


def timed(fn, repeat):
    samples = []
    for i in range(repeat):
        start = time.perf_counter()
        fn(i)
        samples.append(time.perf_counter() - start)
    samples.sort()
    return statistics.median(samples), samples[int(0.95 * (len(samples) - 1))]


def naive_apply(mesh, armature, frame):
    """Baseline: what an uncached receiver does, a name search per value per frame."""
    blocks = mesh.data.shape_keys.key_blocks
    for name, value in frame.blends.items():
        for block in blocks:
            if block.name.lower() == name.lower():
                block.value = min(max(value, block.slider_min), block.slider_max)
    for name, q in frame.bones.items():
        bone = armature.data.bones.get(name)
        pose_bone = armature.pose.bones.get(name)
        if bone is not None and pose_bone is not None:
            rest = bone.matrix_local.to_quaternion()
            set_rotation(pose_bone, rest.inverted() @ Quaternion(unity_to_blender_rotation(q)) @ rest)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=2000)
    parser.add_argument("--take-frames", type=int, default=10_000)
    args = parser.parse_args(argv)

    scene, mesh, armature = build_scene()
    frames, datagrams = tracker_frames(256)
    print(f"bpy {bpy.app.version_string}; {len(ARKIT_NAMES)} shape keys + {len(BONES)} bones; "
          f"{len(frames[0].blends)} stream values per frame")

    sink = VmcStream(lambda frame: None)
    parse = timed(lambda i: [sink.feed(d, "x") for d in datagrams[i % len(datagrams)]], args.repeat)
    print(f"parse one frame:        median {parse[0] * 1e3:.3f} ms  p95 {parse[1] * 1e3:.3f} ms")

    targets = Targets(scene.facemocap)
    apply = timed(lambda i: targets.write(targets.resolve(frames[i % len(frames)])), args.repeat)
    naive = timed(lambda i: naive_apply(mesh, armature, frames[i % len(frames)]), max(args.repeat // 4, 50))
    print(f"apply one frame:        median {apply[0] * 1e3:.3f} ms  p95 {apply[1] * 1e3:.3f} ms  (target <= 0.3 ms)")
    print(f"  baseline, by name:    median {naive[0] * 1e3:.3f} ms  -> {naive[0] / apply[0]:.1f}x slower")
    depsgraph = timed(lambda i: (targets.write(targets.resolve(frames[i % len(frames)])),
                                 bpy.context.evaluated_depsgraph_get().update()), 200)
    print(f"  with depsgraph update (for scale, {len(mesh.data.vertices)} vertices): median {depsgraph[0] * 1e3:.3f} ms")

    take = Take(start_frame=1)
    for i in range(args.take_frames):
        frame = frames[i % len(frames)]
        frame.time = i / 60
        take.add(frame, targets.resolve(frame))
    start = time.perf_counter()
    write_take(take, scene)
    bulk = time.perf_counter() - start
    print(f"write a {args.take_frames}-frame take: {bulk:.3f} s  (target <= 0.5 s; "
          f"{len(take.shape_keys)} shape-key curves + {4 * len(take.bones)} rotation curves)")

    # Baseline: keyframe_insert per value into fresh curves, on a slice of the take,
    # scaled up (generous to the baseline: its curves stay short).
    mesh.data.shape_keys.animation_data_clear()
    armature.animation_data_clear()
    slice_frames = 100
    start = time.perf_counter()
    for i in range(slice_frames):
        for (_, key_name), _channel in take.shape_keys.items():
            mesh.data.shape_keys.key_blocks[key_name].keyframe_insert("value", frame=1 + i)
        for (_, bone), _channel in take.bones.items():
            armature.pose.bones[bone].keyframe_insert("rotation_quaternion", frame=1 + i)
    per_frame = (time.perf_counter() - start) / slice_frames
    print(f"  baseline, keyframe_insert per value: {per_frame * args.take_frames:.2f} s "
          f"(measured on {slice_frames} frames) -> {per_frame * args.take_frames / bulk:.0f}x slower")
    bench_import(scene, mesh, armature, frames=36_000)
    bench_face_rig(args.repeat)
    session.shutdown()


def livelink_csv(path: Path, frames: int) -> None:
    """A Live Link Face CSV as facemocap-osc export writes it, 60 fps, varied values."""
    from bridge.export import LIVELINK_HEADER, livelink_row

    rng = np.random.default_rng(1)
    lines = [",".join(LIVELINK_HEADER)]
    state = FaceState.neutral()
    for i in range(frames):
        state.blendshapes[:] = rng.random(52)
        state.head_angles[:] = rng.uniform(-30, 30, 3)
        state.eye_angles[:] = rng.uniform(-15, 15, (2, 2))
        lines.append(",".join(livelink_row(i / 60, state)))
    path.write_text("\n".join(lines) + "\n")


def bench_import(scene, mesh, armature, frames: int) -> None:
    from blender_receiver.importer import import_take
    from blender_receiver.take_files import read_take_file

    path = Path(tempfile.mkdtemp(prefix="facemocap-bench-")) / "take.csv"
    livelink_csv(path, frames)
    mesh.data.shape_keys.animation_data_clear()
    armature.animation_data_clear()
    start = time.perf_counter()
    read_take_file(path)
    read = time.perf_counter() - start
    start = time.perf_counter()
    import_take(path, scene, 1)
    total = time.perf_counter() - start
    curves = len(mesh.data.shape_keys.animation_data.action.layers[0].strips[0].channelbags[0].fcurves)
    print(f"import a {frames}-frame 60 fps Live Link CSV: {total:.3f} s  (target <= 1 s; read {read:.3f} s; "
          f"{curves} shape-key curves + head/neck/eye rotations)")
    # Baseline: csv module + keyframe_insert per value, on a slice, scaled up.
    import csv

    slice_rows = 100
    mesh.data.shape_keys.animation_data_clear()
    blocks = mesh.data.shape_keys.key_blocks
    start = time.perf_counter()
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        for i, row in zip(range(slice_rows), reader):
            for name, cell in zip(header[2:54], row[2:54]):
                block = blocks.get(name[0].lower() + name[1:])
                if block is not None:
                    block.value = float(cell)
                    block.keyframe_insert("value", frame=1 + i)
    per_row = (time.perf_counter() - start) / slice_rows
    print(f"  baseline, csv + keyframe_insert: {per_row * frames:.2f} s (measured on {slice_rows} rows) "
          f"-> {per_row * frames / total:.0f}x slower")


def bench_face_rig(repeat: int = 2000) -> None:
    """Create Face Rig + live apply per frame: apply_landmarks + a depsgraph update, which
    evaluates the rig's constraints; baseline: the same without a rig (target <= 1 ms)."""
    from blender_receiver.face_rig import create_face_rig
    from blender_receiver.targets import apply_landmarks
    from bridge.demo_face import demo_landmarks

    scene = bpy.context.scene
    mesh = bpy.data.meshes.new("FaceMocap Landmarks")
    mesh.from_pydata([(0.0, 0.0, 0.0)] * 478, [], [])
    face = bpy.data.objects.new("FaceMocap Landmarks", mesh)
    scene.collection.objects.link(face)
    frames = [demo_landmarks(i / 30) / np.float32(640) for i in range(360)]  # the demo's 12 s loop

    def live(i):
        apply_landmarks(face, frames[i % len(frames)])
        bpy.context.evaluated_depsgraph_get().update()

    live(0)
    alone = timed(lambda i: apply_landmarks(face, frames[i % len(frames)]), repeat)
    without = timed(live, repeat)
    start = time.perf_counter()
    rig = create_face_rig(scene, face)
    created = time.perf_counter() - start
    with_rig = timed(live, repeat)
    print(f"face rig: Create Face Rig {created * 1e3:.1f} ms ({len(rig.data.bones)} bones, "
          f"{sum(len(b.constraints) for b in rig.pose.bones)} constraints)")
    print(f"  live apply + depsgraph, with the rig: median {with_rig[0] * 1e3:.3f} ms  "
          f"p95 {with_rig[1] * 1e3:.3f} ms  (target <= 1 ms)")
    print(f"  baseline, no rig:                    median {without[0] * 1e3:.3f} ms  "
          f"p95 {without[1] * 1e3:.3f} ms  -> the rig adds {(with_rig[0] - without[0]) * 1e3:.3f} ms")
    print(f"  apply_landmarks alone:               median {alone[0] * 1e3:.3f} ms")
    bpy.data.objects.remove(rig)
    bpy.data.objects.remove(face)


if __name__ == "__main__":
    main()
