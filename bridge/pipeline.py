"""The run loop: source -> tracking -> solve -> shape -> encode -> send, one frame
at a time, with the status line and the optional preview on the side. Between
frames it picks up recalibration requests (preview key c, the OSC control port).

Every output (a preset's encoder and its UDP target) gets the same shaped state;
encoders that want them (the landmarks preset) also get the raw landmarks. Sending
never raises and never blocks, so a receiver that went away costs the others nothing.
"""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass, field

import numpy as np

from bridge.calibrate import DEFAULT_CAPTURE_SECONDS
from bridge.record import RecordError
from bridge.shape import Shaper
from bridge.solve import Solver, vrm_presets
from bridge.state import ARKIT_INDEX, FaceState

log = logging.getLogger("facemocap")

# The VmcEncoder.encode keyword for /VMC/Ext/OK's calibration state (2 calibrating, 3 calibrated).


@dataclass
class Output:
    """One receiver: an encoder (encode(state, *, time, tracking, calibration_state
    [, landmarks, image_size, frame_index]) -> datagrams) and its target (send(), address)."""
    encoder: object
    target: object
    label: str = ""            # for the status line, e.g. "vmc@127.0.0.1:39539"
    preset: object = None      # the bridge.outputs.Preset it came from, if any

    def __post_init__(self):
        self.label = self.label or getattr(self.target, "address", "?")
        self.wants_landmarks = bool(getattr(self.encoder, "wants_landmarks", False))


class TargetsLabel:
    """The status line's targets, compact: "vmc@127.0.0.1:39539, osc@127.0.0.1:7000"; a
    target whose sends failed since the last look is marked "(failing)"."""

    def __init__(self, outputs: list[Output]):
        self.outputs = outputs
        self._failed = [self._failures(o) for o in outputs]

    @staticmethod
    def _failures(output: Output) -> int:
        return getattr(output.target, "failed_datagrams", 0)

    def __call__(self) -> str:
        parts = []
        for i, output in enumerate(self.outputs):
            failed = self._failures(output)
            parts.append(output.label + (" (failing)" if failed > self._failed[i] else ""))
            self._failed[i] = failed
        return ", ".join(parts)


@dataclass
class Limits:
    frames: int | None = None       # stop after this many frames
    duration: float | None = None   # stop after this many seconds (wall clock)


@dataclass
class Stats:
    frames: int = 0
    faces: int = 0
    started: float = field(default_factory=time.monotonic)
    latencies_ms: list[float] = field(default_factory=list)   # recent capture -> send
    record_error: str | None = None   # why --record stopped, if it did


def with_model_blendshapes(state: FaceState, scores: dict[str, float]) -> FaceState:
    """Replace the solver's ARKit values by the model's (tongueOut stays 0), VRM follows."""
    b = state.blendshapes.copy()
    for name, value in scores.items():
        i = ARKIT_INDEX.get(name)
        if i is not None:
            b[i] = value
    state.blendshapes = np.clip(b, 0.0, 1.0)
    state.vrm = vrm_presets(state.blendshapes, state.eye_angles)
    return state


class StatusLine:
    """A one-line live status on stderr: redrawn in place on a terminal, an
    occasional plain line otherwise (logs, CI)."""

    def __init__(self, enabled: bool, stream=sys.stderr):
        self.enabled = enabled
        self.stream = stream
        self.tty = stream.isatty()
        self.interval = 0.25 if self.tty else 5.0
        self._time_at_last = time.monotonic()
        self._next = self._time_at_last + self.interval
        self._frames_at_last = 0
        self._drawn = False
        self.fps = 0.0

    def update(self, stats: Stats, face: bool, target, note: str = "") -> None:
        """target: the text after "->", or a callable giving it (called only when drawn)."""
        now = time.monotonic()
        if now < self._next:
            return
        self._next = now + self.interval
        elapsed = now - self._time_at_last
        if elapsed > 0:
            self.fps = (stats.frames - self._frames_at_last) / elapsed
        self._frames_at_last, self._time_at_last = stats.frames, now
        # Cleared every interval even when silent, so a long --quiet run doesn't grow it.
        latency = np.median(stats.latencies_ms) if stats.latencies_ms else 0.0
        stats.latencies_ms.clear()
        if not self.enabled:
            return
        if callable(target):
            target = target()
        line = (f"{self.fps:5.1f} fps | face {'yes' if face else 'no '} | latency {latency:5.1f} ms"
                f" | frames {stats.frames} | -> {target}{(' | ' + note) if note else ''}")
        if self.tty:
            self.stream.write("\r\x1b[2K" + line)
            self._drawn = True
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def clear(self) -> None:
        """Wipe the in-place line, so a log message printed next starts on a clean line."""
        if self.enabled and self.tty and self._drawn:
            self.stream.write("\r\x1b[2K")
            self.stream.flush()
            self._drawn = False

    def finish(self) -> None:
        if self.enabled and self.tty:
            self.stream.write("\n")
            self.stream.flush()


def _calibration_request(control, preview, default_seconds: float) -> tuple[float, str] | None:
    """(seconds, who asked) for a recalibration asked for since the last frame, else None."""
    request = control.poll() if control is not None else None
    if request is not None:
        seconds = request.seconds if request.seconds is not None else default_seconds
        return seconds, f"the control port {control.address}"
    if preview is not None and preview.take_calibrate_request():
        return default_seconds, "the preview key c"
    return None


def run(source, tracker, shaper: Shaper, encoder=None, target=None, *, use_model_blendshapes: bool,
        outputs: list[Output] | None = None,
        limits: Limits = Limits(), status: StatusLine | None = None, preview=None,
        control=None, calibrate_seconds: float = DEFAULT_CAPTURE_SECONDS, on_calibrated=None,
        recorder=None) -> Stats:
    """Process frames until the source ends, a limit is reached or the preview is closed.

    outputs: the receivers, each with its own encoder; or one given as encoder + target.
    control: a bridge.control.ControlPort (or anything with poll() and address) for
    recalibration requests; calibrate_seconds: their length when they give none;
    on_calibrated(neutral): called on the loop's thread after every finished capture.
    recorder: a bridge.record.TakeWriter that keeps every frame's landmarks and solved
    values (--record); if writing fails the run goes on without it (stats.record_error).
    Returns the counters. KeyboardInterrupt propagates to the caller (a clean stop).
    """
    if outputs is None:
        if encoder is None or target is None:
            raise TypeError("run() needs outputs, or an encoder and a target")
        outputs = [Output(encoder, target)]
    label = TargetsLabel(outputs)
    solver = Solver()
    stats = Stats()
    status = status or StatusLine(enabled=False)
    calibrator = shaper.calibrator
    deadline = stats.started + limits.duration if limits.duration is not None else None
    for frame in source:
        request = _calibration_request(control, preview, calibrate_seconds)
        if request is not None:
            seconds, who = request
            status.clear()
            log.info("calibrating for %g s, asked by %s: hold a neutral face", seconds, who)
            calibrator.start_capture(seconds)
        tracked = tracker.track(frame)
        state = None
        if tracked.landmarks is not None:
            state = solver.solve(tracked.landmarks, (frame.width, frame.height), time=frame.time)
            if use_model_blendshapes and tracked.blendshapes:
                state = with_model_blendshapes(state, tracked.blendshapes)
        if recorder is not None:
            try:
                recorder.write_frame(frame, tracked.landmarks, state)
            except RecordError as error:   # the disk filled up, say: keep streaming
                status.clear()
                log.error("%s; recording stopped, still streaming", error)
                stats.record_error, recorder = str(error), None
        shaped, tracking = shaper.update(frame.time, state)
        calibration_state = calibrator.vmc_state
        for output in outputs:
            if output.wants_landmarks:
                datagrams = output.encoder.encode(
                    shaped, time=frame.time, tracking=tracking, calibration_state=calibration_state,
                    landmarks=tracked.landmarks, image_size=(frame.width, frame.height), frame_index=frame.index)
            else:
                datagrams = output.encoder.encode(shaped, time=frame.time, tracking=tracking,
                                                  calibration_state=calibration_state)
            output.target.send(datagrams)
        neutral = calibrator.take_finished()
        if neutral is not None:
            status.clear()
            log.info("calibrated: neutral face captured")
            if on_calibrated is not None:
                on_calibrated(neutral)
        stats.frames += 1
        stats.faces += tracking
        stats.latencies_ms.append((time.monotonic() - frame.captured) * 1000.0)
        note = calibrator.status_note()
        status.update(stats, tracking, label, note)
        if preview is not None and not preview.show(frame, tracked.landmarks, shaped, tracking, status.fps, note):
            break
        if limits.frames is not None and stats.frames >= limits.frames:
            break
        if deadline is not None and time.monotonic() >= deadline:
            break
    status.finish()
    return stats
