"""Clean up a take: smooth it, then reduce its keys, with Blender's own Graph Editor tools.

`clean_up_take(action, decimate=..., smooth=...)` does, to every F-Curve of the Action:

1. Smooth: `graph.gaussian_smooth` (Graph Editor > Key > Smooth > Gaussian Smooth),
   `factor=smooth`. `smooth` (0..1) is Blender's Factor: how far each key moves from
   its value to the Gaussian-filtered one (0: not at all, 1: all the way). The kernel
   is Blender's default, `filter_width` 6 frames each side with `sigma` 0.33 of that:
   a Gaussian of standard deviation ~2 scene frames (33 ms at 60 fps); both are
   keyword arguments. Key times do not move.
2. Reduce: `graph.decimate(mode='ERROR', remove_error_margin=decimate)` (Key >
   Decimate (Allowed Change)): curve_fit_nd knot removal (BKE_curve_decimate_bezt_array
   in blenkernel/intern/curve_decimate.cc), which keeps the first and last key and
   gives the kept keys the Bezier handles it fitted. Blender measures that margin in
   the Graph Editor's (frame, value) plane, point to fitted point, 12 samples per
   segment. This module holds the result to the tolerance in value alone: evaluated
   at every original key time, the cleaned curve is within `decimate` of the smoothed
   curve (to float32 rounding, 1e-6). A curve that misses (by a fraction of a percent,
   where it is steep) is decimated again from its smoothed keys with 0.8 of the
   margin, up to 6 times, and failing that keeps its smoothed keys.

`decimate` is in each curve's own units: 0.01 is 1 % of a shape key's 0..1 range. For
rotation curves the same number is used as is: quaternion components (0.01 in one is
about 1.1 degrees of turn) or radians (Euler, axis-angle: 0.57 degrees).

Interpolation of the result: Bezier, with the free handles decimate fitted. Kept keys
lie tens of frames apart, where straight segments would cut the corners of the shape;
auto-clamped handles would throw the fit away, and with it the tolerance checked above.
Keys decimate left in place keep a straight-line shape (handles a third of the way to
their neighbours).

Why the operators, and how they run without a Graph Editor on screen, in background
mode (tests, `blender -b` pipelines) as in the UI, with the same results:

- The Python API has no F-Curve smoothing or decimation: FCurve has evaluate, update,
  range, update_autoflags, convert_to_samples, convert_to_keyframes, bake; its
  keyframe_points insert, add, remove, clear, sort, deduplicate, handles_recalc;
  bpy_extras.anim_utils only bakes. The C code behind the operators (decimate_fcurve,
  smooth_fcurve_segment in editors/animation/keyframes_general.cc) is not exposed.
- Without a Graph Editor area in the context, their poll fails: `graph.decimate`,
  gaussian_smooth, smooth, clean (and `action.clean`) all poll False. Background mode
  still has the startup file's window and screen (`window_manager.windows[0]`): an
  area of it switched to the Graph Editor (`area.ui_type = 'FCURVES'`), passed with its
  WINDOW region to `context.temp_override(window=, area=, region=)`, runs
  graph.decimate, smooth, gaussian_smooth, butterworth_smooth and clean (and
  action.clean in a Dope Sheet area): FINISHED, keys changed (bpy 5.0.1 as a Python
  module, which runs as `blender -b` does; on bpy 5.2.3 the tests run decimate and
  gaussian_smooth this way).
- The operators act on what that editor lists: visible, editable, selected channels
  and their selected keys, after its filters (only selected, hidden, search text,
  data types, collection, only the active object's slot...), for IDs in the window's
  view layer, through the slot each uses. So the user's state never changes the
  result: the curves are copied to a scratch Action on a scratch Empty in a scratch
  collection of the window's scene, the editor (one already open, else a borrowed
  area switched back afterwards) is set to list that collection only for the calls
  and put back, and the keys are copied back with bulk foreach_set. This also reaches
  every slot's channelbag, and Actions no ID uses (copy=True). A context override to
  a scratch scene instead crashed 5.0.1 (segmentation fault in the view_layer.update()
  bpy.ops makes before an operator).

Cost: decimate is ~50 us a key in Blender (a curve fit per key removed), so a 10-minute
60 fps take of 52 curves (1.9 M keys) takes about 2 minutes here; smoothing and the
checks take seconds.

Only keys change: F-Curve modifiers, groups, colours and extrapolation stay; curves
are smoothed and checked without their modifiers. Keys decimate cannot fit (constant,
elastic... interpolation) are kept, as the operator keeps them.

The Action is changed in place (the panel's operator carries UNDO), or a copy named
"<name> clean" is made and cleaned (copy=True).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np

# Blender's Gaussian Smooth defaults (GRAPH_OT_gaussian_smooth).
SMOOTH_WIDTH = 6
SMOOTH_SIGMA = 0.33
# Re-decimations of a curve that misses the tolerance, each with this much of the
# previous margin: misses seen are a fraction of a percent over, on steep stretches.
MAX_RETRIES = 6
RETRY_MARGIN = 0.8
# Values are float32: an error this much over the tolerance is rounding, not a miss.
FLOAT_SLACK = 1e-6
# F-Curves per decimate call.
BATCH = 8
# Scratch data-block names: found by nothing else, removed before returning.
_SCRATCH = "FaceMocap cleanup (temporary)"

# Keyframe fields copied each way, by foreach_get/foreach_set element type.
_PAIRS = ("co", "handle_left", "handle_right")
_INTS = ("interpolation", "handle_left_type", "handle_right_type", "easing", "type")
_FLOATS = ("back", "amplitude", "period")


@dataclass
class CleanupResult:
    keys_before: int
    keys_after: int
    max_error: float  # largest |cleaned - smoothed| at an original key time
    curves: int
    action: object = None  # the cleaned Action (a new one with copy=True)


def count_keys(action, id_data=None) -> int:
    """Keyframes in the Action's F-Curves (only id_data's slot when given)."""
    return sum(len(fcurve.keyframe_points) for fcurve in _fcurves(action, id_data))


def clean_up_take(action, *, decimate: float, smooth: float, id_data=None, copy: bool = False,
                  smooth_width: int = SMOOTH_WIDTH, smooth_sigma: float = SMOOTH_SIGMA,
                  progress=None) -> CleanupResult:
    """Smooth, then reduce the keys of every F-Curve of `action` (see the module doc).

    decimate: allowed error, in each curve's value units (0: keep every key).
    smooth: 0..1, Blender's Gaussian Smooth factor (0: no smoothing).
    id_data: only the channelbag of the slot this ID uses (slotted Actions); by
        default every slot's. Pre-4.4 Actions have one set of curves either way.
    copy: clean a copy named "<name> clean" and leave `action` as it was.
    progress: called as progress(curves_done, curves) while decimating (the slow part),
        e.g. to drive window_manager.progress_update().
    """
    if not decimate >= 0:
        raise ValueError(f"decimate must be 0 or more, not {decimate}")
    if not 0 <= smooth <= 1:
        raise ValueError(f"smooth must be between 0 and 1, not {smooth}")
    slot_identifier = _slot_identifier(action, id_data)
    if copy:
        action = _copy(action)
    fcurves = list(_fcurves(action, id_data, slot_identifier))
    keys_before = sum(len(f.keyframe_points) for f in fcurves)
    result = CleanupResult(keys_before, keys_before, 0.0, len(fcurves), action)
    # Fewer than 3 keys: nothing to smooth between or remove.
    work = [f for f in fcurves if len(f.keyframe_points) >= 3]
    if not work or (decimate == 0 and smooth == 0):
        return result
    with _graph_editor() as (scratch_curves, override):
        import bpy

        scratch = [_copy_curve(f, scratch_curves, f'["k{i}"]') for i, f in enumerate(work)]
        if smooth > 0:
            with bpy.context.temp_override(**override):
                bpy.ops.graph.gaussian_smooth(factor=smooth, sigma=smooth_sigma, filter_width=smooth_width)
        smoothed = [_read(s) for s in scratch]
        errors = [0.0] * len(scratch)
        if decimate > 0:
            # The smoothed curve at the original key times: what the result must stay near.
            targets = [_evaluate(s, keys["co"][0::2]) for s, keys in zip(scratch, smoothed)]
            pending, margin = list(range(len(scratch))), float(decimate)
            for attempt in range(MAX_RETRIES + 1):
                missed = []
                # A few curves a call, so that a long take can report progress between.
                for start in range(0, len(pending), BATCH):
                    batch = pending[start:start + BATCH]
                    for i, s in enumerate(scratch):
                        s.select = i in batch  # the operators act on selected channels only
                    with bpy.context.temp_override(**override):
                        bpy.ops.graph.decimate(mode="ERROR", remove_error_margin=margin)
                    for i in batch:
                        errors[i] = _max_error(scratch[i], smoothed[i]["co"][0::2], targets[i])
                        if errors[i] > decimate + FLOAT_SLACK:
                            _write(scratch[i], smoothed[i])  # start again from the smoothed keys
                            errors[i] = 0.0
                            missed.append(i)
                    if progress is not None and attempt == 0:
                        progress(start + len(batch), len(pending))
                if not missed:
                    break
                pending, margin = missed, margin * RETRY_MARGIN
        for fcurve, s in zip(work, scratch):
            _write(fcurve, _read(s), select=False)
            fcurve.update()
    result.keys_after = sum(len(f.keyframe_points) for f in fcurves)
    result.max_error = max(errors)
    return result


def _slot_identifier(action, id_data):
    if id_data is None or not hasattr(action, "slots"):
        return None
    anim = id_data.animation_data
    if anim is None or anim.action != action or anim.action_slot is None:
        raise ValueError(f"{id_data.name} does not use the Action {action.name}")
    return anim.action_slot.identifier


def _fcurves(action, id_data=None, slot_identifier=None):
    """The Action's F-Curves: 4.4+ slotted Actions keep them in per-slot channelbags
    (5.0 removed Action.fcurves), 4.2/4.3 in action.fcurves."""
    if not hasattr(action, "layers"):
        yield from action.fcurves
        return
    if slot_identifier is None and id_data is not None:
        slot_identifier = _slot_identifier(action, id_data)
    for layer in action.layers:
        for strip in layer.strips:
            for channelbag in getattr(strip, "channelbags", ()):
                if slot_identifier is None or channelbag.slot.identifier == slot_identifier:
                    yield from channelbag.fcurves


def _copy(action):
    new = action.copy()
    new.name = f"{action.name} clean"
    return new


@contextlib.contextmanager
def _graph_editor():
    """A Graph Editor listing only a scratch Action's curves: yields (its F-Curve
    collection, a temp_override() dict). Everything is put back or removed after."""
    import bpy

    from .takes import _new_action

    window, area, old_ui_type = _graph_area(bpy.context)
    scene = window.scene
    collection = bpy.data.collections.new(_SCRATCH)
    empty = bpy.data.objects.new(_SCRATCH, None)
    action = None
    saved = {}
    try:
        scene.collection.children.link(collection)
        collection.objects.link(empty)
        fcurves, action = _new_action(empty, _SCRATCH)
        action.use_fake_user = False
        dopesheet = area.spaces.active.dopesheet
        saved = _list_only(dopesheet, collection)
        region = next(r for r in area.regions if r.type == "WINDOW")
        yield fcurves, {"window": window, "area": area, "region": region}
    finally:
        # In reverse: some settings share storage (filter_text, filter_fcurve_name).
        for name, value in reversed(saved.items()):
            setattr(dopesheet, name, value)
        if old_ui_type is not None:
            area.ui_type = old_ui_type
        if action is not None:
            bpy.data.actions.remove(action)
        bpy.data.objects.remove(empty)
        bpy.data.collections.remove(collection)


def _graph_area(context):
    """(window, area, ui_type to restore or None): a Graph Editor already open, else
    the largest other area of a window, switched to the Graph Editor for the call."""
    windows = [w for w in context.window_manager.windows if not getattr(w.screen, "is_temporary", False)]
    if not windows:
        raise RuntimeError("cleaning up a take needs a window: Blender's Graph Editor tools run in one")
    for window in windows:
        for area in window.screen.areas:
            if area.ui_type == "FCURVES":
                return window, area, None
    window = context.window if context.window in windows else windows[0]
    areas = [a for a in window.screen.areas if a != context.area] or list(window.screen.areas)
    area = max(areas, key=lambda a: a.width * a.height)
    old = area.ui_type
    area.ui_type = "FCURVES"
    return window, area, old


# Dope-sheet filter settings that decide which channels the editor lists.
_FORCED = {
    "show_only_selected": False,
    "show_only_slot_of_active_object": False,
    "show_hidden": True,
    "show_only_errors": False,
    "use_filter_invert": False,
    "filter_text": "",
    "filter_fcurve_name": "",
    "use_multi_word_filter": False,
    "show_transforms": True,  # object-level curves: the scratch Empty's
    "show_missing_nla": True,
}
# show_* settings that only change how channels are drawn.
_DISPLAY_ONLY = {"show_datablock_filters", "show_summary", "show_expanded_summary", "show_driver_fallback_as_error"}


def _list_only(dopesheet, collection) -> dict:
    """Set the editor's filters to list the collection's objects' curves and nothing
    else; returns the previous values. The collection filter leaves out other objects;
    data not under objects (scene, world, node trees, cache files, movie clips...) is
    left out by switching off every other data type."""
    wanted = dict(_FORCED, filter_collection=collection)
    for prop in dopesheet.bl_rna.properties:
        name = prop.identifier
        if (name not in wanted and prop.type == "BOOLEAN" and name.startswith("show_")
                and not name.startswith("show_only") and name not in _DISPLAY_ONLY):
            wanted[name] = False
    saved = {}
    for name, value in wanted.items():
        if hasattr(dopesheet, name) and not dopesheet.bl_rna.properties[name].is_readonly:
            saved[name] = getattr(dopesheet, name)
            setattr(dopesheet, name, value)
    return saved


def _read(fcurve) -> dict:
    points = fcurve.keyframe_points
    n = len(points)
    keys = {}
    for name in _PAIRS:
        keys[name] = np.empty(2 * n, dtype=np.float32)
    for name in _INTS:
        keys[name] = np.empty(n, dtype=np.int32)
    for name in _FLOATS:
        keys[name] = np.empty(n, dtype=np.float32)
    for name, array in keys.items():
        points.foreach_get(name, array)
    return keys


def _write(fcurve, keys: dict, select: bool = True) -> None:
    """Replace the curve's keys in bulk; selected, so the next operator acts on them."""
    points = fcurve.keyframe_points
    points.clear()
    points.add(len(keys["interpolation"]))
    for name, array in keys.items():
        points.foreach_set(name, array)
    points.foreach_set("select_control_point", np.full(len(points), select))


def _copy_curve(fcurve, scratch_curves, path: str):
    copy = scratch_curves.new(path, index=0)
    # Smoothing samples the curve beyond its ends, where extrapolation decides.
    copy.extrapolation = fcurve.extrapolation
    copy.select = True
    _write(copy, _read(fcurve))
    return copy


def _evaluate(fcurve, frames: np.ndarray) -> np.ndarray:
    return np.fromiter(map(fcurve.evaluate, frames.tolist()), dtype=np.float64, count=len(frames))


def _max_error(fcurve, frames: np.ndarray, targets: np.ndarray) -> float:
    return float(np.max(np.abs(_evaluate(fcurve, frames) - targets)))
