"""Blender receiver benchmark: parse, apply one frame, write a 10,000-frame take.

    python bench/receiver.py [--repeat N] [--take-frames N]

Needs bpy (pip install bpy==5.0.1). Prints figures with a baseline measured in the
same run, so a noisy machine shows in both:
  parse       VmcStream.feed on one tracker frame (3 bundles, 68 values, 4 bones)
  apply       Targets.resolve + write: 52 shape keys + 4 bones, excluding depsgraph
              evaluation; baseline: look every key and bone up by name each frame
  take        write_take of N frames (52 keys + 4 bones) with bulk F-Curve writes;
              baseline: keyframe_insert per value on a slice, scaled to N frames
Targets: apply <= 0.3 ms median; a 10,000-frame take <= 0.5 s.
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
    session.shutdown()


if __name__ == "__main__":
    main()
