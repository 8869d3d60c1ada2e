"""The running receiver inside Blender: start/stop, the apply step, recording, status.

`pump(scene)` is the whole main-thread step (drain frames, record them, apply the
newest) as a plain function: the timer calls it while running, and tests call it
directly because timers never fire in background mode.
"""

from __future__ import annotations

import collections
import logging
import time

import bpy

from . import landmark_stream
from .landmark_stream import LandmarkStream
from .receiver import Receiver, ReceiverError
from .takes import Take, write_take
from .targets import StaleTargets, Targets, apply_landmarks

log = logging.getLogger(__name__)

TICK_SECONDS = 1 / 120  # poll often enough that a 60 fps stream is applied within a frame
REBUILD_SECONDS = 1.0  # pick up rig edits (new shape keys, renamed bones) this often
STATUS_REDRAW_SECONDS = 0.25
RECEIVING_WINDOW = 1.0  # "receiving" means a frame completed within this long


class Session:
    def __init__(self):
        self.receiver: Receiver | None = None
        self.landmarks: LandmarkStream | None = None
        self.error = ""  # why the last start failed, shown in the panel
        self.targets: Targets | None = None
        self.targets_built = 0.0
        self.take: Take | None = None
        self.last_take: list[str] = []
        self.applied = 0
        self.apply_errors = 0
        self.arrivals: collections.deque[float] = collections.deque(maxlen=240)
        self.last_redraw = 0.0

    # --- status, for the panel ---------------------------------------------

    @property
    def running(self) -> bool:
        return self.receiver is not None and self.receiver.running

    def receiving(self) -> bool:
        return bool(self.arrivals) and time.monotonic() - self.arrivals[-1] < RECEIVING_WINDOW

    def fps(self) -> float:
        now = time.monotonic()
        recent = [t for t in self.arrivals if now - t < RECEIVING_WINDOW]
        if len(recent) < 2:
            return 0.0
        return (len(recent) - 1) / max(recent[-1] - recent[0], 1e-6)

    def targets_for(self, settings) -> Targets:
        now = time.monotonic()
        if self.targets is None or now - self.targets_built > REBUILD_SECONDS:
            self.targets = Targets(settings)
            self.targets_built = now
        return self.targets


STATE = Session()

# Extra OSC addresses -> handler(arguments, sender), given to every receiver started,
# for features beyond VMC (a landmark face, say). Handlers run on the receiving
# thread and must leave Blender data alone, as VmcStream.route explains.
ROUTES: dict = {}


@bpy.app.handlers.persistent  # also after loading a file: its objects are new ones
def invalidate_bindings(*_args) -> None:
    STATE.targets = None


def _edit_handlers():
    """Moments after which cached targets may point at replaced data."""
    return bpy.app.handlers.load_post, bpy.app.handlers.undo_post, bpy.app.handlers.redo_post


def start(scene) -> str:
    """Start listening with the scene's host, port and allow-list; returns an error
    line or '' (an invalid allow-list entry is such an error: nothing starts)."""
    settings = scene.facemocap
    stop(scene, finish_take=False)
    receiver = Receiver(settings.host.strip(), settings.port, settings.allow)
    landmarks = LandmarkStream(receiver.stream.stats)
    receiver.stream.route(landmark_stream.ADDRESS, landmarks)
    for address, handler in ROUTES.items():
        receiver.stream.route(address, handler)
    try:
        receiver.start()
    except ReceiverError as error:
        STATE.error = str(error)
        return STATE.error
    STATE.receiver, STATE.landmarks, STATE.error = receiver, landmarks, ""
    STATE.arrivals.clear()
    invalidate_bindings()
    for handlers in _edit_handlers():
        if invalidate_bindings not in handlers:
            handlers.append(invalidate_bindings)
    if not bpy.app.timers.is_registered(_tick):
        bpy.app.timers.register(_tick, first_interval=0.0, persistent=True)
    return ""


def stop(scene=None, finish_take: bool = True) -> None:
    """Release the port. A take in progress is written when the receiver stops."""
    receiver, STATE.receiver, STATE.landmarks = STATE.receiver, None, None
    if receiver is not None:
        receiver.stop()
    if finish_take and scene is not None and STATE.take is not None:
        set_recording(scene, False)
        scene.facemocap.record = False  # the toggle follows; its update finds no take
    for handlers in _edit_handlers():
        if invalidate_bindings in handlers:
            handlers.remove(invalidate_bindings)


def shutdown() -> None:
    """Add-on disabled: stop the thread, whatever state the UI is in."""
    try:
        stop(bpy.context.scene)
    except Exception:  # the scene may be gone while Blender quits
        stop(None)
    if bpy.app.timers.is_registered(_tick):
        bpy.app.timers.unregister(_tick)
    STATE.take = None


def set_recording(scene, on: bool) -> None:
    if on and STATE.take is None:
        STATE.take = Take(start_frame=scene.frame_current)
    elif not on and STATE.take is not None:
        take, STATE.take = STATE.take, None
        STATE.last_take = write_take(take, scene) or ["nothing was received while recording"]


def pump(scene):
    """Drain completed frames, record all of them, apply the newest. Returns the newest
    VMC frame, or None (landmark frames are applied and recorded all the same)."""
    if STATE.receiver is None:
        return None
    _pump_landmarks(scene)
    frames = STATE.receiver.take()
    if not frames:
        return None
    targets = STATE.targets_for(scene.facemocap)
    STATE.arrivals.extend(frame.received for frame in frames)
    newest = frames[-1]
    if STATE.take is not None:
        for frame in frames[:-1]:
            STATE.take.add(frame, targets.resolve(frame))
    resolved = targets.resolve(newest)
    try:
        targets.write(resolved)
    except (StaleTargets, ReferenceError):
        # The rig changed under us; rebuild and try once more with fresh lookups.
        invalidate_bindings()
        targets = STATE.targets_for(scene.facemocap)
        resolved = targets.resolve(newest)
        targets.write(resolved)
    if STATE.take is not None:
        STATE.take.add(newest, resolved)
    STATE.applied += 1
    return newest


def _pump_landmarks(scene) -> None:
    frames = STATE.landmarks.take() if STATE.landmarks is not None else []
    if not frames:
        return
    if STATE.take is not None:
        STATE.take.add_landmarks(frames)
    obj = scene.facemocap.landmark_object
    if obj is not None and obj.type == "MESH":
        apply_landmarks(obj, frames[-1].points)


def _tick():
    if STATE.receiver is None:
        return None
    try:
        if pump(bpy.context.scene) is not None:
            _redraw_viewports()
    except Exception:
        STATE.apply_errors += 1
        if STATE.apply_errors == 1:
            log.exception("FaceMocap: applying a frame failed (further failures are only counted)")
    now = time.monotonic()
    if now - STATE.last_redraw > STATUS_REDRAW_SECONDS:
        STATE.last_redraw = now
        _redraw_viewports()
    return TICK_SECONDS


def _redraw_viewports() -> None:
    for window in bpy.context.window_manager.windows:
        for area in window.screen.areas:
            if area.type == "VIEW_3D":
                area.tag_redraw()
