"""The run loop: source -> tracking -> solve -> shape -> encode -> send, one frame
at a time, with the status line and the optional preview on the side. Between
frames it picks up recalibration requests (preview key c, the OSC control port).

Every output (a preset's encoder and its UDP target) gets the same shaped state;
encoders that want them (the landmarks preset) also get the raw landmarks. Sending
never raises and never blocks, so a receiver that went away costs the others nothing.

A source whose camera is lost yields frames with ``lost=True`` and no image at a
steady rate (bridge.sources.CameraSource): they go through the loop as frames
without a face, so every receiver keeps getting frames with tracking 0 and the
values ease to neutral; the status line says "camera lost, retrying…".
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
from bridge.solve import Solver
from bridge.tracking import Tracked, TrackingError

log = logging.getLogger("facemocap")

LATENCY_BIN_MS = 0.1
LATENCY_BINS = 10_000

# A tracker that raises on this many frames in a row before it ever worked cannot
# work at all (a broken install, an incompatible MediaPipe): the run stops with an
# error instead of streaming "no face" forever. Later errors only count.
FAILED_START_FRAMES = 10
LOST_NOTE = "camera lost, retrying…"   # the status line's note while the source is lost
_NO_FACE = Tracked(None)


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
        self.failed_frames = 0            # frames this output could not encode or send (raised)
        self._logged: set[str] = set()    # the kinds of those errors already logged

    def failed(self, error: Exception, status: "StatusLine") -> None:
        """An encoder or target raised: count it, log each kind once, go on with the others."""
        self.failed_frames += 1
        kind = type(error).__name__
        if kind not in self._logged:
            self._logged.add(kind)
            status.clear()
            detail = (str(error).strip().splitlines() or [""])[0]
            log.error("%s: frame not sent (%s: %s); further errors of this kind are only counted",
                      self.label, kind, detail, exc_info=log.isEnabledFor(logging.DEBUG))


class TargetsLabel:
    """The status line's targets, compact: "vmc@127.0.0.1:39539, osc@127.0.0.1:7000"; a
    target whose sends failed since the last look is marked "(failing)"."""

    def __init__(self, outputs: list[Output]):
        self.outputs = outputs
        self._failed = [self._failures(o) for o in outputs]

    @staticmethod
    def _failures(output: Output) -> int:
        return getattr(output.target, "failed_datagrams", 0) + output.failed_frames

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
    # The whole run's capture -> send latency as a histogram of 0.1 ms bins up to 1 s
    # (the last bin takes everything slower): percentiles without keeping every sample.
    latency_histogram: np.ndarray = field(default_factory=lambda: np.zeros(LATENCY_BINS + 1, np.int64))

    def latency_percentile(self, q: float) -> float | None:
        """The q-th percentile (0-100) of capture -> send latency in ms, or None."""
        total = int(self.latency_histogram.sum())
        if total == 0:
            return None
        bin_index = int(np.searchsorted(np.cumsum(self.latency_histogram), q / 100.0 * total))
        return (bin_index + 1) * LATENCY_BIN_MS   # the bin's upper edge
    record_error: str | None = None   # why --record stopped, if it did
    lost: int = 0                     # frames sent while the source (camera) was lost
    tracking_errors: int = 0          # frames the tracker raised on (sent as "no face")
    tracking_error_kinds: set = field(default_factory=set)   # those already logged (one line each)
    tracker_worked: bool = False      # the tracker has returned a result at least once


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


def _track(tracker, frame, stats: Stats, status: StatusLine) -> Tracked:
    """The tracker's result; if it raises on a frame (a driver's odd image, say), the
    frame counts as one without a face and the run goes on. Each kind is logged once."""
    try:
        tracked = tracker.track(frame)
        stats.tracker_worked = True
        return tracked
    except Exception as error:
        stats.tracking_errors += 1
        kind = type(error).__name__
        if not stats.tracker_worked and stats.tracking_errors >= FAILED_START_FRAMES:
            detail = (str(error).strip().splitlines() or [""])[0]
            raise TrackingError(f"the tracker failed on each of the first {stats.tracking_errors} frames "
                                f"({kind}: {detail}); nothing was tracked") from error
        if not stats.tracker_worked:   # maybe it never will: the error above says it once
            log.debug("tracking failed on frame %d (%s)", frame.index, kind, exc_info=True)
        elif kind not in stats.tracking_error_kinds:
            stats.tracking_error_kinds.add(kind)
            status.clear()
            detail = (str(error).strip().splitlines() or [""])[0]
            log.error("tracking failed on frame %d (%s: %s); sending it as no face, further errors of "
                      "this kind are only counted", frame.index, kind, detail,
                      exc_info=log.isEnabledFor(logging.DEBUG))
        return _NO_FACE


def _calibration_request(control, preview, default_seconds: float) -> tuple[float, str] | None:
    """(seconds, who asked) for a recalibration asked for since the last frame, else None."""
    request = control.poll() if control is not None else None
    if request is not None:
        seconds = request.seconds if request.seconds is not None else default_seconds
        return seconds, f"the control port {control.address}"
    if preview is not None and preview.take_calibrate_request():
        return default_seconds, "the preview key c"
    return None


def run(source, tracker, shaper: Shaper, encoder=None, target=None, *, blendshapes: str = "fused",
        outputs: list[Output] | None = None,
        limits: Limits = Limits(), status: StatusLine | None = None, preview=None,
        control=None, calibrate_seconds: float = DEFAULT_CAPTURE_SECONDS, on_calibrated=None,
        recorder=None) -> Stats:
    """Process frames until the source ends, a limit is reached or the preview is closed.

    outputs: the receivers, each with its own encoder; or one given as encoder + target.
    blendshapes: the Solver's mode ("fused", "solver" or "model"); frames without the
    landmarker's scores (Face Mesh, the demo, a take) get the geometric values.
    With a still shaper (photos) every frame is solved on its own: no automatic
    neutral, no lid history, no recalibration requests (there is nothing to capture
    a neutral face from).
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
    still = shaper.options.still
    solver = None   # made at the first frame, for its size
    stats = Stats()
    status = status or StatusLine(enabled=False)
    calibrator = shaper.calibrator
    deadline = stats.started + limits.duration if limits.duration is not None else None
    lost_at = None   # the frame time when the source was lost, while it is
    for frame in source:
        lost = getattr(frame, "lost", False)
        if lost and lost_at is None:
            lost_at = frame.time
            status.clear()
            reason = getattr(source, "lost_reason", "") or "no frames"
            log.warning("%s lost: %s; trying to reopen it, sending tracking 0 meanwhile",
                        getattr(source, "name", "the source"), reason)
        elif not lost and lost_at is not None:
            status.clear()
            log.info("%s is back after %.1f s", getattr(source, "name", "the source"), frame.time - lost_at)
            lost_at = None
        request = _calibration_request(control, preview, calibrate_seconds)
        if request is not None:
            seconds, who = request
            status.clear()
            if still:
                log.info("recalibration asked by %s ignored: photos are each their own, there is no "
                         "neutral face to capture from them", who)
            else:
                log.info("calibrating for %g s, asked by %s: hold a neutral face", seconds, who)
                calibrator.start_capture(seconds)
        if solver is None:
            solver = Solver(frame.width or 640, frame.height or 480, blendshapes=blendshapes, adapt=not still)
            if calibrator.neutral is not None:   # a --profile
                solver.set_neutral(calibrator.neutral)
        tracked = _NO_FACE if lost else _track(tracker, frame, stats, status)
        state = None
        if tracked.landmarks is not None:
            state = solver.solve(tracked.landmarks, (frame.width, frame.height),
                                 time=None if still else frame.time, scores=tracked.blendshapes)
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
            try:
                if output.wants_landmarks:
                    datagrams = output.encoder.encode(
                        shaped, time=frame.time, tracking=tracking, calibration_state=calibration_state,
                        landmarks=tracked.landmarks, image_size=(frame.width, frame.height),
                        frame_index=frame.index)
                else:
                    datagrams = output.encoder.encode(shaped, time=frame.time, tracking=tracking,
                                                      calibration_state=calibration_state)
                output.target.send(datagrams)
            except Exception as error:   # one output's failure costs the others nothing
                output.failed(error, status)
        neutral = calibrator.take_finished()
        if neutral is not None:
            solver.set_neutral(neutral)
            status.clear()
            log.info("calibrated: neutral face captured")
            if on_calibrated is not None:
                on_calibrated(neutral)
        stats.frames += 1
        stats.faces += tracking
        if lost:
            stats.lost += 1
        else:
            latency = (time.monotonic() - frame.captured) * 1000.0
            stats.latencies_ms.append(latency)
            stats.latency_histogram[min(int(latency / LATENCY_BIN_MS), LATENCY_BINS)] += 1
        note = calibrator.status_note()
        if lost:
            note = f"{LOST_NOTE} | {note}" if note else LOST_NOTE
        status.update(stats, tracking, label, note)
        if preview is not None and not preview.show(frame, tracked.landmarks, shaped, tracking, status.fps, note):
            break
        if limits.frames is not None and stats.frames >= limits.frames:
            break
        if deadline is not None and time.monotonic() >= deadline:
            break
    status.finish()
    return stats
