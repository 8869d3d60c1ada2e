"""Import › Face Take: a take file becomes a take Action, without streaming.

    import_take(path, scene, start_frame=1) -> list of report lines

The file is read and checked whole first (take_files.read_take_file); only then is
anything written, through the same mapping (retarget) and bone rules as live
frames, vectorised over all frames, and the same bulk writer as recorded takes
(takes.write_action). So a bad file changes nothing, and a good one gives the keys
the live stream would have given. The targets are the panel's (meshes, armature,
landmark face) when it has any, else the active object.

Headless (pipelines), with the add-on enabled:
    blender -b shot.blend --python-expr "import bpy; bpy.ops.facemocap.import_take(filepath='take.csv', start_frame=1); bpy.ops.wm.save_mainfile()"
"""

from __future__ import annotations

import os

import numpy as np

from .take_files import TakeFileError, read_take_file

__all__ = ["ImportFailed", "import_take"]


class ImportFailed(Exception):
    """One line for Blender's report area; nothing was written."""


def import_take(path, scene, start_frame: float = 1.0, active_object=None) -> list[str]:
    from . import takes

    try:
        # Landmarks (5.7 KB a frame) only where a landmark face will take them.
        data = read_take_file(path, landmarks=scene.facemocap.landmark_object is not None)
    except TakeFileError as error:
        raise ImportFailed(str(error)) from None
    except OSError as error:
        raise ImportFailed(f"{os.path.basename(str(path))}: {error.strerror or error}") from None
    targets = _targets(scene, active_object)
    landmark_obj = _landmark_object(scene, data)
    if not targets.meshes and targets.armature is None and landmark_obj is None:
        raise ImportFailed("nothing to import onto: add a mesh or an armature on the FaceMocap panel, "
                           "or select one")
    fps = scene.render.fps / scene.render.fps_base
    frames = start_frame + data.times * fps
    animated = []
    for target in targets.meshes:
        columns = target.mapping.apply_columns(data.names, data.values, target.strength)
        if columns:
            curves = [takes.Curve(takes.shape_key_path(target.key_names[index]), 0, frames, values)
                      for index, values in sorted(columns.items())]
            animated.append(takes.Animated(target.obj.data.shape_keys, target.name,
                                           takes.count_noun(len(columns), "shape key"), curves))
    if targets.armature is not None and data.bones:
        bone_curves, bone_count = _bone_curves(targets.armature, data.bones, frames)
        if bone_curves:
            animated.append(takes.Animated(targets.armature.obj, targets.armature.name,
                                           takes.count_noun(bone_count, "bone"), bone_curves))
    if not animated and landmark_obj is None:
        raise ImportFailed(f"{os.path.basename(str(path))}: none of its {len(data.names)} channels or "
                           f"bones match the targets' shape keys or bones (see the mapping table)")
    report = []
    name = takes.take_name(os.path.basename(str(path)), takes.datetime.now())
    if landmark_obj is not None:
        from .targets import landmarks_to_blender

        points = np.stack([landmarks_to_blender(p) for p in data.landmarks])
        try:  # before any Action: a failure here leaves no half-imported take
            report += takes.write_landmark_cache(scene, landmark_obj, frames, points)
        except OSError as error:
            raise ImportFailed(f"{os.path.basename(str(path))}: the landmark point cache could not be "
                               f"written: {error.strerror or error}") from None
    if animated:
        takes.write_action(name, os.path.abspath(str(path)), animated)
        parts = ", ".join(f"{a.obj_name} {a.summary}" for a in animated)
        report.append(f"{name}: {parts}; {takes.count_noun(len(frames), 'frame')} from frame {start_frame:g}")
    takes.extend_scene(scene, frames[-1])
    rate = f"{data.rate:.4g} fps" if data.rate else "unknown rate"
    report.append(f"{data.kind}, {rate}, {len(frames)} frames"
                  + (f", {data.dropped} dropped or lost" if data.dropped else ""))
    report += list(data.notes)
    return report


def _targets(scene, active_object):
    """The panel's targets, else the active object (a mesh with shape keys, or an
    armature with its bones guessed) — built from settings, nothing is changed."""
    from .targets import BoneTarget, MeshTarget, Targets, guess_bone_map, vrm_humanoid

    targets = Targets(scene.facemocap)
    if targets.meshes or targets.armature is not None or active_object is None:
        return targets
    if active_object.type == "MESH" and active_object.data.shape_keys is not None:
        targets.meshes.append(MeshTarget(active_object, 1.0, []))
    elif active_object.type == "ARMATURE":
        bone_map = guess_bone_map([b.name for b in active_object.data.bones], vrm_humanoid(active_object.data))
        targets.armature = BoneTarget(active_object, bone_map)
    return targets


def _landmark_object(scene, data):
    obj = scene.facemocap.landmark_object
    if data.landmarks is None or obj is None or obj.type != "MESH":
        return None
    return obj if len(obj.data.vertices) == data.landmarks.shape[1] else None


def _bone_curves(target, bones: dict, frames: np.ndarray) -> tuple[list, int]:
    """All frames' bone rotations (and gaze-control locations) at once, by the same
    rules as BoneTarget.resolve / resolve_aims, as F-Curves; and how many bones."""
    from . import takes

    curves, count = [], 0
    pose_bones = target.obj.pose.bones
    for stream_bone, slot in target.slots.items():
        if stream_bone not in bones or pose_bones.get(slot.name) is None:
            continue
        q = _blender_quaternions(bones[stream_bone])
        local = _qmul(_qmul(np.array(tuple(slot.rest_inverse)), q), np.array(tuple(slot.rest)))
        path, values = takes.rotation_channel(pose_bones[slot.name], _continuous(local))
        curves += [takes.Curve(path, i, frames, values[:, i]) for i in range(values.shape[1])]
        count += 1
    for aim in target.aims.values():
        streams = [s for s in aim.streams if s in bones]
        if not streams or pose_bones.get(aim.name) is None:
            continue
        q = _blender_quaternions(bones[streams[0]])
        if len(streams) > 1:
            q = _nlerp(q, _blender_quaternions(bones[streams[1]]))
        offset = np.array(tuple(aim.offset))
        turned = _rotate(q, offset) - offset
        location = turned @ np.array([tuple(row) for row in aim.to_local]).T
        path = f"{takes.pose_bone_path(aim.name)}.location"
        curves += [takes.Curve(path, i, frames, location[:, i]) for i in range(3)]
        count += 1
    return curves, count


def _blender_quaternions(unity_xyzw: np.ndarray) -> np.ndarray:
    """mapping.unity_to_blender_rotation on rows: (x, y, z, w) -> (w, x, z, -y)."""
    x, y, z, w = np.asarray(unity_xyzw, dtype=float).T
    return np.stack([w, x, z, -y], axis=1)


def _qmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton products of (w, x, y, z) rows (either side may be a single quaternion)."""
    aw, ax, ay, az = np.moveaxis(np.broadcast_to(a, np.broadcast_shapes(a.shape, b.shape)), -1, 0)
    bw, bx, by, bz = np.moveaxis(np.broadcast_to(b, np.broadcast_shapes(a.shape, b.shape)), -1, 0)
    return np.stack([aw * bw - ax * bx - ay * by - az * bz,
                     aw * bx + ax * bw + ay * bz - az * by,
                     aw * by - ax * bz + ay * bw + az * bx,
                     aw * bz + ax * by - ay * bx + az * bw], axis=-1)


def _rotate(q: np.ndarray, v: np.ndarray) -> np.ndarray:
    u, w = q[:, 1:], q[:, :1]
    return v + 2 * np.cross(u, np.cross(u, v) + w * v)


def _nlerp(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    # The halfway rotation (slerp at 0.5 is the normalised sum on the same hemisphere).
    b = np.where((np.sum(a * b, axis=1) < 0)[:, None], -b, b)
    mid = a + b
    return mid / np.linalg.norm(mid, axis=1, keepdims=True)


def _continuous(q: np.ndarray) -> np.ndarray:
    """Keep neighbours on one hemisphere (q and -q are one rotation), as Take.add does,
    so interpolating between keys never swings the long way round."""
    if len(q) < 2:
        return q
    flips = np.cumprod(np.where(np.sum(q[1:] * q[:-1], axis=1) < 0, -1.0, 1.0))
    return q * np.concatenate([[1.0], flips])[:, None]
