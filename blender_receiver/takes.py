"""Recording: keep every resolved frame, then write Actions with bulk F-Curve writes.

A take keeps each channel sparsely (frame number, value) so nothing is invented for
frames where a channel did not arrive. On finish, each object gets one new Action
(with a fake user, so a take is never lost) whose keys sit at the stream's own
times (`/VMC/Ext/T`) converted to the scene's frame rate, as linear keys: at 30-60
samples a second, Bezier handles would only overshoot.
"""

from __future__ import annotations

import struct
import tempfile
from array import array
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# A stream clock that jumps back or stalls longer than this is not trusted for that step.
MAX_TIME_STEP = 1.0


@dataclass
class _Channel:
    # Typed arrays: an hour at 60 fps is ~200,000 samples per channel.
    frames: array = field(default_factory=lambda: array("l"))
    values: array = field(default_factory=lambda: array("d"))  # rotations: 4 per frame


class Take:
    def __init__(self, start_frame: float = 1.0):
        self.start_frame = start_frame
        self.stream_times: list[float | None] = []
        self.arrival_times: list[float] = []
        self.shape_keys: dict[tuple[str, str], _Channel] = {}  # (object, key) -> values
        self.bones: dict[tuple[str, str], _Channel] = {}  # (armature, bone) -> (w, x, y, z)
        self.landmark_times: list[float] = []   # the stream's own times
        self.landmark_arrivals: list[float] = []  # time.monotonic() when each completed
        self.landmark_points: list = []          # (478, 3) float32 per landmark frame

    def __len__(self) -> int:
        return len(self.arrival_times)

    def add_landmarks(self, frames) -> None:
        for frame in frames:
            self.landmark_times.append(frame.time)
            self.landmark_arrivals.append(frame.received)
            self.landmark_points.append(frame.points)

    def add(self, frame, resolved) -> None:
        index = len(self.arrival_times)
        self.stream_times.append(frame.time)
        self.arrival_times.append(frame.received)
        for target, values in resolved.meshes:
            for key_index, value in values.items():
                channel = self.shape_keys.setdefault((target.name, target.key_names[key_index]), _Channel())
                channel.frames.append(index)
                channel.values.append(value)
        if resolved.bones:
            for bone, rotation in resolved.bones.items():
                channel = self.bones.setdefault((resolved.armature, bone), _Channel())
                q = tuple(rotation)
                # q and -q are the same rotation; keep neighbours on one side so
                # interpolating between keys never swings the long way round.
                if channel.values and sum(a * b for a, b in zip(q, channel.values[-4:])) < 0:
                    q = tuple(-c for c in q)
                channel.frames.append(index)
                channel.values.extend(q)

    def seconds(self) -> np.ndarray:
        """Time of each frame from the take's start, from the sender's clock where it
        steps forward sensibly, else from when the frame arrived."""
        return _trusted_seconds(self.stream_times, self.arrival_times)

    def landmark_seconds(self) -> np.ndarray:
        """Time of each landmark frame on the same time line as seconds().

        Steps follow the same rule (the sender's clock where it steps forward
        sensibly, else arrival). The first landmark frame is placed by the sender's
        clock relative to the VMC frames when that agrees with when they arrived
        (within MAX_TIME_STEP), else by arrival: a landmark time of 3e38 (found by
        bench/fuzz.py) once asked for 10^40 point-cache frames.
        """
        seconds = _trusted_seconds(self.landmark_times, self.landmark_arrivals)
        if len(self) and self.landmark_arrivals:
            by_arrival = self.landmark_arrivals[0] - self.arrival_times[0]
            offset = by_arrival
            vmc_seconds = self.seconds()
            first = next((i for i, t in enumerate(self.stream_times) if t is not None), None)
            if first is not None:
                by_clock = vmc_seconds[first] + (self.landmark_times[0] - self.stream_times[first])
                if abs(by_clock - by_arrival) < MAX_TIME_STEP:
                    offset = by_clock
            seconds += offset
        return seconds


def _trusted_seconds(stream_times, arrival_times) -> np.ndarray:
    seconds = np.zeros(len(arrival_times))
    for i in range(1, len(arrival_times)):
        step = None
        now, before = stream_times[i], stream_times[i - 1]
        if now is not None and before is not None and 0 < now - before < MAX_TIME_STEP:
            step = now - before
        if step is None:
            step = max(arrival_times[i] - arrival_times[i - 1], 0.0)
        seconds[i] = seconds[i - 1] + step
    return seconds


def write_take(take: Take, scene) -> list[str]:
    """Write the take as Actions; returns one line per Action written (or problem)."""
    import bpy

    fps = scene.render.fps / scene.render.fps_base
    report = _write_landmarks(take, scene, fps)
    if not len(take):
        return report
    frame_numbers = take.start_frame + take.seconds() * fps
    by_object: dict[str, list] = {}
    for (obj_name, key_name), channel in take.shape_keys.items():
        by_object.setdefault(obj_name, []).append((key_name, channel))
    for obj_name, channels in by_object.items():
        obj = bpy.data.objects.get(obj_name)
        if obj is None or obj.type != "MESH" or obj.data.shape_keys is None:
            report.append(f"{obj_name}: gone before the take was written; its shape keys were not saved")
            continue
        fcurves, action = _new_action(obj.data.shape_keys, f"{obj_name} FaceMocap")
        for key_name, channel in channels:
            path = f'key_blocks["{bpy.utils.escape_identifier(key_name)}"].value'
            _write_fcurve(fcurves, path, 0, frame_numbers[channel.frames], np.asarray(channel.values))
        report.append(f"{action.name}: {_count(len(channels), 'shape key')}, {_count(len(take), 'frame')}")
    by_armature: dict[str, list] = {}
    for (arm_name, bone), channel in take.bones.items():
        by_armature.setdefault(arm_name, []).append((bone, channel))
    for arm_name, channels in by_armature.items():
        armature = bpy.data.objects.get(arm_name)
        if armature is None or armature.type != "ARMATURE":
            report.append(f"{arm_name}: gone before the take was written; its bones were not saved")
            continue
        fcurves, action = _new_action(armature, f"{arm_name} FaceMocap")
        for bone, channel in channels:
            pose_bone = armature.pose.bones.get(bone)
            if pose_bone is None:
                continue
            path, values = _rotation_channel(pose_bone, np.asarray(channel.values).reshape(-1, 4))
            for index in range(values.shape[1]):
                _write_fcurve(fcurves, path, index, frame_numbers[channel.frames], values[:, index])
        report.append(f"{action.name}: {_count(len(channels), 'bone')}, {_count(len(take), 'frame')}")
    last = int(np.ceil(frame_numbers[-1]))
    if last > scene.frame_end:
        scene.frame_end = last
    return report


def _write_landmarks(take: Take, scene, fps: float) -> list[str]:
    """The landmark face's take as a point cache (.pc2) read by a Mesh Cache modifier:
    Blender's own way to play back per-vertex animation, far lighter than 1434
    F-Curves. Samples are resampled linearly to whole scene frames."""
    import bpy

    from .targets import LANDMARK_CACHE_MODIFIER, landmarks_to_blender

    obj = scene.facemocap.landmark_object
    if not take.landmark_points:
        return []
    if obj is None or obj.type != "MESH" or len(obj.data.vertices) != len(take.landmark_points[0]):
        return [f"{len(take.landmark_points)} landmark frames were received but there is no landmark face to keep them"]
    # Stream times share the clock of /VMC/Ext/T: on the VMC channels' time line.
    times = take.start_frame + take.landmark_seconds() * fps
    order = np.argsort(times, kind="stable")
    times = times[order]
    points = np.stack([landmarks_to_blender(take.landmark_points[i]) for i in order])
    frames = np.arange(np.ceil(times[0]), np.floor(times[-1]) + 1)
    if len(frames) == 0:
        frames = np.array([np.round(times[0])])
    flat = points.reshape(len(times), -1)
    samples = np.stack([np.interp(frames, times, flat[:, j]) for j in range(flat.shape[1])], axis=1)
    samples = samples.reshape(len(frames), -1, 3).astype("<f4")

    folder = Path(bpy.path.abspath("//facemocap_takes")) if bpy.data.filepath else Path(tempfile.gettempdir()) / "facemocap_takes"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{bpy.path.clean_name(obj.name)}_{int(frames[0])}_{len(frames)}.pc2"
    with open(path, "wb") as f:
        # PC2: signature, version 1, points, start frame, sample rate, samples; then float32 xyz.
        f.write(b"POINTCACHE2\0" + struct.pack("<iiffi", 1, samples.shape[1], 0.0, 1.0, len(frames)))
        f.write(samples.tobytes())
    modifier = obj.modifiers.get(LANDMARK_CACHE_MODIFIER) or obj.modifiers.new(LANDMARK_CACHE_MODIFIER, "MESH_CACHE")
    modifier.cache_format = "PC2"
    modifier.filepath = str(path)
    modifier.frame_start = float(frames[0])
    modifier.show_viewport = True
    last = int(frames[-1])
    if last > scene.frame_end:
        scene.frame_end = last
    return [f"{obj.name}: {_count(len(take.landmark_points), 'landmark frame')} -> {path.name}"]


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _rotation_channel(pose_bone, quaternions: np.ndarray):
    """The property path and per-frame values for the bone's rotation mode."""
    import bpy
    from mathutils import Quaternion

    bone = f'pose.bones["{bpy.utils.escape_identifier(pose_bone.name)}"]'
    mode = pose_bone.rotation_mode
    if mode == "QUATERNION":
        return f"{bone}.rotation_quaternion", quaternions
    if mode == "AXIS_ANGLE":
        rows = []
        for q in quaternions:
            axis, angle = Quaternion(q).to_axis_angle()
            rows.append((angle, *axis))
        return f"{bone}.rotation_axis_angle", np.asarray(rows)
    rows, previous = [], None
    for q in quaternions:
        euler = Quaternion(q).to_euler(mode, previous) if previous else Quaternion(q).to_euler(mode)
        rows.append(tuple(euler))
        previous = euler
    return f"{bone}.rotation_euler", np.asarray(rows)


def _new_action(id_data, name: str):
    """A new Action assigned to `id_data`; returns (its F-Curve collection, the action).

    Blender 4.4+ has slotted actions (5.0 removed `Action.fcurves`): the curves live
    in the channelbag of the slot the ID uses. 4.2 and 4.3 have `action.fcurves`.
    """
    import bpy

    action = bpy.data.actions.new(name)
    action.use_fake_user = True
    anim = id_data.animation_data or id_data.animation_data_create()
    anim.action = action
    if not hasattr(action, "slots"):
        return action.fcurves, action
    slot = anim.action_slot
    if slot is None:
        slot = action.slots.new(id_type=id_data.id_type, name=id_data.name)
        anim.action_slot = slot
    return _ensure_channelbag(action, slot).fcurves, action


def _ensure_channelbag(action, slot):
    """The slot's channelbag in the action's first keyframe strip, creating what is missing.

    Plain RNA calls, which Blender 4.4 and later all have: the bpy_extras helper for
    this (`anim_utils.action_ensure_channelbag_for_slot`) only exists from 5.0 on.
    """
    layer = action.layers[0] if action.layers else action.layers.new("Layer")
    strip = layer.strips[0] if layer.strips else layer.strips.new(type="KEYFRAME")
    return strip.channelbag(slot, ensure=True)


_LINEAR = 1  # Keyframe.interpolation enum: CONSTANT, LINEAR, BEZIER, ...


def _write_fcurve(fcurves, path: str, index: int, frames: np.ndarray, values: np.ndarray) -> None:
    fcurve = fcurves.new(path, index=index)
    points = fcurve.keyframe_points
    points.add(len(frames))
    co = np.empty(2 * len(frames), dtype=np.float32)
    co[0::2], co[1::2] = frames, values
    points.foreach_set("co", co)
    points.foreach_set("interpolation", np.full(len(frames), _LINEAR, dtype=np.int32))
    fcurve.update()
