"""Takes: keep every resolved frame, then write each take as one Action with bulk writes.

A take keeps each channel sparsely (frame number, value) so nothing is invented for
frames where a channel did not arrive. On finish (or on import, see importer.py) the
take becomes ONE Action, named with its start time and source, with a slot for each
ID it animates (each mesh's shape keys, the armature) where Blender has action slots
(4.4+); on 4.2 and 4.3 each ID gets its own Action with the same take label. Actions
have a fake user, so a take is never lost, and carry `facemocap_take` (the source),
by which the panel lists them. Keys sit at the stream's own times (`/VMC/Ext/T`) or
the file's, converted to the scene's frame rate, as linear keys: at 30-60 samples a
second, Bezier handles would only overshoot.

`push_to_nla` puts a take on its IDs' NLA as one strip per ID on a new track (as
Blender's own Push Down does), so takes can be compared, blended and trimmed;
`delete_take` removes a take and every strip that plays it.
"""

from __future__ import annotations

import struct
import tempfile
from array import array
from dataclasses import dataclass, field
from datetime import datetime
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
    def __init__(self, start_frame: float = 1.0, source: str = "live"):
        self.start_frame = start_frame
        self.source = source
        self.started = datetime.now()
        self.stream_times: list[float | None] = []
        self.arrival_times: list[float] = []
        self.shape_keys: dict[tuple[str, str], _Channel] = {}  # (object, key) -> values
        self.bones: dict[tuple[str, str], _Channel] = {}  # (armature, bone) -> (w, x, y, z)
        self.locations: dict[tuple[str, str], _Channel] = {}  # (armature, gaze control) -> (x, y, z)
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
        for bone, location in resolved.locations.items():
            channel = self.locations.setdefault((resolved.armature, bone), _Channel())
            channel.frames.append(index)
            channel.values.extend(tuple(location))

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


@dataclass
class Curve:
    """One F-Curve to write: frames (scene frames) and values, same length."""
    path: str
    index: int
    frames: np.ndarray
    values: np.ndarray


@dataclass
class Animated:
    """An ID a take animates, with the object it belongs to (a mesh's shape keys
    belong to the mesh), what the report calls it and its curves."""
    id_data: object
    obj_name: str
    summary: str
    curves: list[Curve]


def take_name(source: str, started: datetime) -> str:
    # 63 bytes: the longest ID name Blender 4.2 keeps.
    return f"{started:%Y-%m-%d %H:%M:%S} {source}"[:63]


def write_take(take: Take, scene) -> list[str]:
    """Write the take as an Action; returns one line per take (or landmark cache) written, or problem."""
    import bpy

    fps = scene.render.fps / scene.render.fps_base
    report = _write_landmarks(take, scene, fps)
    if not len(take):
        return report
    frame_numbers = take.start_frame + take.seconds() * fps
    animated: list[Animated] = []
    by_object: dict[str, list] = {}
    for (obj_name, key_name), channel in take.shape_keys.items():
        by_object.setdefault(obj_name, []).append((key_name, channel))
    for obj_name, channels in by_object.items():
        obj = bpy.data.objects.get(obj_name)
        if obj is None or obj.type != "MESH" or obj.data.shape_keys is None:
            report.append(f"{obj_name}: gone before the take was written; its shape keys were not saved")
            continue
        curves = [Curve(shape_key_path(key_name), 0, frame_numbers[channel.frames], np.asarray(channel.values))
                  for key_name, channel in channels]
        animated.append(Animated(obj.data.shape_keys, obj.name, count_noun(len(channels), "shape key"), curves))
    by_armature: dict[str, dict] = {}
    for kind, table in (("rotation", take.bones), ("location", take.locations)):
        for (arm_name, bone), channel in table.items():
            by_armature.setdefault(arm_name, {})[(kind, bone)] = channel
    for arm_name, channels in by_armature.items():
        armature = bpy.data.objects.get(arm_name)
        if armature is None or armature.type != "ARMATURE":
            report.append(f"{arm_name}: gone before the take was written; its bones were not saved")
            continue
        curves = []
        for (kind, bone), channel in channels.items():
            pose_bone = armature.pose.bones.get(bone)
            if pose_bone is None:
                continue
            frames = frame_numbers[channel.frames]
            if kind == "rotation":
                path, values = rotation_channel(pose_bone, np.asarray(channel.values).reshape(-1, 4))
            else:
                path, values = f"{pose_bone_path(bone)}.location", np.asarray(channel.values).reshape(-1, 3)
            curves += [Curve(path, i, frames, values[:, i]) for i in range(values.shape[1])]
        bones = {bone for _, bone in channels}
        animated.append(Animated(armature, armature.name, count_noun(len(bones), "bone"), curves))
    if animated:
        name = take_name(take.source, take.started)
        write_action(name, take.source, animated)
        parts = ", ".join(f"{a.obj_name} {a.summary}" for a in animated)
        report.append(f"{name}: {parts}; {count_noun(len(take), 'frame')}")
    extend_scene(scene, frame_numbers[-1])
    return report


def shape_key_path(key_name: str) -> str:
    import bpy

    return f'key_blocks["{bpy.utils.escape_identifier(key_name)}"].value'


def pose_bone_path(bone: str) -> str:
    import bpy

    return f'pose.bones["{bpy.utils.escape_identifier(bone)}"]'


def extend_scene(scene, last_frame: float) -> None:
    last = int(np.ceil(last_frame))
    if last > scene.frame_end:
        scene.frame_end = last


TAKE_PROPERTY = "facemocap_take"  # on a take's Actions: where it came from
_OBJECT_PROPERTY = "facemocap_object"  # 4.2/4.3 only: the object a per-ID Action animates


def has_slots() -> bool:
    import bpy

    return "slots" in bpy.types.Action.bl_rna.properties


def write_action(name: str, source: str, animated: list[Animated]) -> list:
    """The take as one Action with a slot per ID (4.4+), or one Action per ID (4.2,
    4.3), each assigned to its ID so the take plays at once. On any failure the IDs
    get their previous actions back and nothing new is left behind."""
    import bpy

    previous = [(a.id_data, *_assignment(a.id_data)) for a in animated]
    actions = []
    try:
        if has_slots():
            action = _new_take_action(name, source)
            actions.append(action)
            for item in animated:
                anim = item.id_data.animation_data or item.id_data.animation_data_create()
                slot = action.slots.new(id_type=item.id_data.id_type, name=item.obj_name)
                anim.action = action
                anim.action_slot = slot
                _write_curves(_ensure_channelbag(action, slot).fcurves, item.curves)
        else:
            for item in animated:
                action = _new_take_action(f"{name} {item.obj_name}"[:63], source)
                action[_OBJECT_PROPERTY] = item.obj_name
                actions.append(action)
                anim = item.id_data.animation_data or item.id_data.animation_data_create()
                anim.action = action
                _write_curves(action.fcurves, item.curves)
    except BaseException:
        for id_data, action, slot in previous:
            _assign(id_data, action, slot)
        for action in actions:
            bpy.data.actions.remove(action)
        raise
    return actions


def _new_take_action(name: str, source: str):
    import bpy

    action = bpy.data.actions.new(name)
    action.use_fake_user = True
    action[TAKE_PROPERTY] = source
    return action


def _assignment(id_data):
    anim = id_data.animation_data
    if anim is None:
        return None, None
    return anim.action, getattr(anim, "action_slot", None)


def _assign(id_data, action, slot) -> None:
    anim = id_data.animation_data
    if anim is None:
        return
    anim.action = action
    if action is not None and slot is not None:
        anim.action_slot = slot


def _write_curves(fcurves, curves: list[Curve]) -> None:
    for curve in curves:
        _write_fcurve(fcurves, curve.path, curve.index, curve.frames, curve.values)


def is_take(action) -> bool:
    return TAKE_PROPERTY in action


def take_ids(action) -> list[tuple[object, object]]:
    """(ID, slot or None) for each ID the take animates, found by the objects it was
    written for (the slots' names; 4.2/4.3: a property), so a take that is no longer
    assigned can still be pushed to the NLA."""
    import bpy

    def id_of(obj_name, id_type):
        obj = bpy.data.objects.get(obj_name)
        if obj is None:
            return None
        if id_type == "KEY":
            return obj.data.shape_keys if obj.type == "MESH" else None
        return obj

    if has_slots():
        found = [(id_of(slot.name_display, slot.target_id_type), slot) for slot in action.slots]
    else:
        found = [(id_of(action.get(_OBJECT_PROPERTY, ""), action.id_root), None)]
    return [(id_data, slot) for id_data, slot in found if id_data is not None]


def push_to_nla(action, frame_start: float | None = None) -> list[str]:
    """A strip for each ID on a new NLA track named after the take; the take stops
    being the IDs' active action so the NLA plays it. Returns the IDs' names."""
    pushed = []
    for id_data, slot in take_ids(action):
        anim = id_data.animation_data or id_data.animation_data_create()
        start = action.frame_range[0] if frame_start is None else frame_start
        track = anim.nla_tracks.new()
        track.name = action.name
        strip = track.strips.new(action.name, int(round(start)), action)
        if slot is not None:
            strip.action_slot = slot
        if anim.action == action:
            anim.action = None
        pushed.append(id_data.name)
    return pushed


def delete_take(action) -> None:
    """Remove the take, unassigning it and removing the NLA strips (and tracks left
    empty) that play it, so no ID is left pointing at nothing."""
    import bpy

    for id_data in (*bpy.data.objects, *bpy.data.shape_keys):
        anim = id_data.animation_data
        if anim is None:
            continue
        if anim.action == action:
            anim.action = None
        for track in list(anim.nla_tracks):
            strips = [s for s in track.strips if s.action == action]
            for strip in strips:
                track.strips.remove(strip)
            if strips and not track.strips:
                anim.nla_tracks.remove(track)
    bpy.data.actions.remove(action)


def _write_landmarks(take: Take, scene, fps: float) -> list[str]:
    from .targets import landmarks_to_blender

    obj = scene.facemocap.landmark_object
    if not take.landmark_points:
        return []
    if obj is None or obj.type != "MESH" or len(obj.data.vertices) != len(take.landmark_points[0]):
        return [f"{len(take.landmark_points)} landmark frames were received but there is no landmark face to keep them"]
    # Stream times share the clock of /VMC/Ext/T: on the VMC channels' time line.
    times = take.start_frame + take.landmark_seconds() * fps
    points = np.stack([landmarks_to_blender(p) for p in take.landmark_points])
    return write_landmark_cache(scene, obj, times, points)


def write_landmark_cache(scene, obj, times: np.ndarray, points: np.ndarray) -> list[str]:
    """A landmark take as a point cache (.pc2) read by a Mesh Cache modifier:
    Blender's own way to play back per-vertex animation, far lighter than 1434
    F-Curves. `points` (samples, vertices, 3) at scene frames `times` are resampled
    linearly to whole scene frames."""
    import bpy

    from .targets import LANDMARK_CACHE_MODIFIER

    order = np.argsort(times, kind="stable")
    times = times[order]
    points = points[order]
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
    extend_scene(scene, frames[-1])
    return [f"{obj.name}: {count_noun(len(times), 'landmark frame')} -> {path.name}"]


def count_noun(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def rotation_channel(pose_bone, quaternions: np.ndarray):
    """The property path and per-frame values for the bone's rotation mode."""
    from mathutils import Quaternion

    bone = pose_bone_path(pose_bone.name)
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
    if hasattr(points, "handles_recalc"):
        # What update() does (sort, handles) at about 60% of its cost on long curves.
        points.sort()
        points.handles_recalc()
    else:
        fcurve.update()
