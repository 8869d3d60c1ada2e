"""Batch export: videos, image folders and recorded takes -> files, as fast as possible.

    facemocap-osc export INPUT [INPUT ...] -o OUT --format livelink-csv|csv|json
                         [-j N] [--backend auto|landmarker|facemesh] [--model PATH]
                         [--blendshapes fused|solver|model] [--sequence] [--fps F]
                         [--force] [--quiet] [--verbose]

Every frame goes through the same stages as the live bridge, without pacing:
source -> tracker (tracking mode for a video, static mode for photos; the backend is
resolved once, before any work, as live: ``auto`` = the FaceLandmarker when its model
can be had, else the legacy Face Mesh) -> Solver in the --blendshapes mode
(given the frame's capture time and the landmarker's scores) -> Shaper with the
default ShapeOptions (the same One Euro filter and face-loss handling as live) -> one row.

An image folder or glob is a set of photos, each its own: static tracking, a Solver
without the automatic neutral or lid history, a still Shaper (no filter, no face-loss
hold), so every row is what that file alone gives and a photo without a face is a
neutral row. ``--sequence`` says the images are one video's frames instead: they are
tracked, solved and smoothed as a video, at --fps. A take (``.jsonl`` /
``.jsonl.gz``, read with ``bridge.record.read_take``) already holds landmarks (and,
recorded with the landmarker, the model's scores): it skips tracking and is
re-solved (fused with those scores, as live) and re-shaped from them, so an export
of a take matches an export of the video it was recorded from, whatever smoothing
the take was recorded with. Stored solved values are not used.

Frames without a face get a row like every other frame (importers expect one row
per frame): the values the live stream would send, i.e. the last face held for
0.3 s, then eased to neutral over 0.5 s, neutral before the first face. ``csv`` and
``json`` say per frame whether a face was seen (``found``).

Live Link Face CSV conventions (checked against takes recorded by Epic's Live Link
Face app, published in alexdjulin/LiveLinkFace-CSV-Retarget-For-Motionbuilder:
anim/S07-001.csv, anim/alex_rom_3.csv, csv/facial.csv):

* header ``Timecode,BlendShapeCount,`` then the 52 ARKit shapes in PascalCase in
  ARKit's order, except that the app writes ``JawRight,JawLeft`` and
  ``MouthRight,MouthLeft`` (in that order), then HeadYaw, HeadPitch, HeadRoll,
  LeftEyeYaw, LeftEyePitch, LeftEyeRoll, RightEyeYaw, RightEyePitch, RightEyeRoll.
  Each of our values goes under the column of its own name.
* BlendShapeCount is 61 on every row (52 shapes + 9 rotations).
* Timecode ``HH:MM:SS:FF.fff`` with FF counted at 60 frames per second whatever the
  take's rate (a 30 fps take steps FF by 2) and ``.fff`` the sub-frame in
  thousandths of a frame, not milliseconds. The app writes the time of day; we
  write the frame's media time from 00:00:00:00.000.
* Rotations in radians. Yaw is negative towards the side the columns call Left
  (gaze with EyeLookOutLeft / EyeLookInRight high gives negative eye yaws in the
  takes), pitch is negative looking up (EyeLookUp high gives negative pitches).
  The takes have no head rotation; Unreal's ARKit conversion
  (AppleARKitFaceMeshConversion.h, ToBlendShapeMap) derives the head and the eye
  curves the same way, which also makes HeadRoll positive tilting towards the
  Left shoulder. Eye roll is 0 (we do not measure it).
"""

from __future__ import annotations

import argparse
import csv
import glob
import io
import json
import logging
import math
import multiprocessing
import os
import queue
import re
import signal
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np

from bridge.cli import _positive_float, _positive_int, add_tracking_arguments
from bridge.state import ARKIT_NAMES, VRM0_NAMES, FaceState, pascal_case

PROG = "facemocap-osc export"
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
FORMATS = ("livelink-csv", "csv", "json")
EXTENSIONS = {"livelink-csv": ".csv", "csv": ".csv", "json": ".json"}
TAKE_SUFFIXES = (".jsonl", ".jsonl.gz")
IMAGE_FPS = 30.0          # image folders: frame i is at i / --fps s (default 30, as live)
TAKE_SIZE = (640, 480)    # image size assumed for a take whose header gives none

log = logging.getLogger("facemocap.export")

# --------------------------------------------------------------------------- Live Link Face

LIVELINK_TIMECODE_RATE = 60
LIVELINK_BLENDSHAPE_COUNT = 61
# The app's column order: ARKit's, with JawRight/JawLeft and MouthRight/MouthLeft swapped.
LIVELINK_SHAPES = (
    "EyeBlinkLeft", "EyeLookDownLeft", "EyeLookInLeft", "EyeLookOutLeft", "EyeLookUpLeft",
    "EyeSquintLeft", "EyeWideLeft",
    "EyeBlinkRight", "EyeLookDownRight", "EyeLookInRight", "EyeLookOutRight", "EyeLookUpRight",
    "EyeSquintRight", "EyeWideRight",
    "JawForward", "JawRight", "JawLeft", "JawOpen",
    "MouthClose", "MouthFunnel", "MouthPucker", "MouthRight", "MouthLeft",
    "MouthSmileLeft", "MouthSmileRight", "MouthFrownLeft", "MouthFrownRight",
    "MouthDimpleLeft", "MouthDimpleRight", "MouthStretchLeft", "MouthStretchRight",
    "MouthRollLower", "MouthRollUpper", "MouthShrugLower", "MouthShrugUpper",
    "MouthPressLeft", "MouthPressRight", "MouthLowerDownLeft", "MouthLowerDownRight",
    "MouthUpperUpLeft", "MouthUpperUpRight",
    "BrowDownLeft", "BrowDownRight", "BrowInnerUp", "BrowOuterUpLeft", "BrowOuterUpRight",
    "CheekPuff", "CheekSquintLeft", "CheekSquintRight",
    "NoseSneerLeft", "NoseSneerRight",
    "TongueOut",
)
LIVELINK_ROTATIONS = (
    "HeadYaw", "HeadPitch", "HeadRoll",
    "LeftEyeYaw", "LeftEyePitch", "LeftEyeRoll",
    "RightEyeYaw", "RightEyePitch", "RightEyeRoll",
)
LIVELINK_HEADER = ("Timecode", "BlendShapeCount") + LIVELINK_SHAPES + LIVELINK_ROTATIONS
_PASCAL_INDEX = {pascal_case(name): i for i, name in enumerate(ARKIT_NAMES)}
_LIVELINK_ORDER = np.array([_PASCAL_INDEX[name] for name in LIVELINK_SHAPES])
assert sorted(_LIVELINK_ORDER.tolist()) == list(range(len(ARKIT_NAMES)))


def livelink_timecode(seconds: float, rate: int = LIVELINK_TIMECODE_RATE) -> str:
    """``HH:MM:SS:FF.fff`` as Live Link Face writes it: FF frames at ``rate`` per
    second, then the sub-frame in thousandths of a frame (00:00:00:02.400 is 1/25 s)."""
    if not math.isfinite(seconds) or seconds < 0:
        seconds = 0.0
    ticks = int(round(seconds * rate * 1000))        # thousandths of a timecode frame
    frames, sub = divmod(ticks, 1000)
    whole_seconds, ff = divmod(frames, rate)
    minutes, ss = divmod(whole_seconds, 60)
    hh, mm = divmod(minutes, 60)
    return f"{hh:02d}:{mm:02d}:{ss:02d}:{ff:02d}.{sub:03d}"


def livelink_rotations(state: FaceState) -> list[float]:
    """Our degrees (yaw + = own left, pitch + = up, roll + = towards the own left
    shoulder) -> Live Link Face's nine rotation curves in radians (see module doc)."""
    yaw, pitch, roll = (float(v) for v in state.head_angles)
    (left_yaw, left_pitch), (right_yaw, right_pitch) = np.asarray(state.eye_angles, float).tolist()
    r = math.radians
    return [-r(yaw), -r(pitch), r(roll),
            -r(left_yaw), -r(left_pitch), 0.0,
            -r(right_yaw), -r(right_pitch), 0.0]


def livelink_row(time_s: float, state: FaceState) -> list[str]:
    values = np.asarray(state.blendshapes, float)[_LIVELINK_ORDER].tolist() + livelink_rotations(state)
    return [livelink_timecode(time_s), str(LIVELINK_BLENDSHAPE_COUNT)] + [_fixed(v, 10) for v in values]


# --------------------------------------------------------------------------- plain csv / json

CSV_COLUMNS = (
    ("frame", "time", "found") + ARKIT_NAMES + VRM0_NAMES
    + ("headYaw", "headPitch", "headRoll", "headX", "headY", "headZ",
       "leftEyeYaw", "leftEyePitch", "rightEyeYaw", "rightEyePitch")
)
UNITS = {
    "time": "seconds (the frame's capture time: media time for videos and image folders)",
    "blendshapes": "0..1, ARKit names, Left/Right = the subject's own sides",
    "vrm": "0..1, VRM 0.x preset names",
    "head angles": "degrees; yaw + = turns to own left, pitch + = up, roll + = tilts to own left",
    "head position": "metres, camera at the origin; x + = own left, y + = up, z + = towards the camera",
    "eye angles": "degrees, relative to the head; yaw + = looks to own left, pitch + = up",
}


def _fixed(value: float, digits: int) -> str:
    text = f"{value:.{digits}f}"
    return text[1:] if text.startswith("-") and not text.strip("-0.") else text


def _state_values(state: FaceState) -> list[float]:
    return np.concatenate([state.blendshapes, state.vrm, state.head_angles, state.head_position,
                           np.ravel(state.eye_angles)]).astype(float).tolist()


class _Writer:
    def __init__(self, stream: io.TextIOBase, info: dict):
        self.stream = stream
        self.info = info

    def frame(self, index: int, time_s: float, found: bool, state: FaceState) -> None:
        raise NotImplementedError

    def close(self, frames: int, faces: int) -> None:
        pass


class LiveLinkWriter(_Writer):
    def __init__(self, stream, info):
        super().__init__(stream, info)
        self.csv = csv.writer(stream, lineterminator="\n")
        self.csv.writerow(LIVELINK_HEADER)

    def frame(self, index, time_s, found, state):
        self.csv.writerow(livelink_row(time_s, state))


class CsvWriter(_Writer):
    def __init__(self, stream, info):
        super().__init__(stream, info)
        self.csv = csv.writer(stream, lineterminator="\n")
        self.csv.writerow(CSV_COLUMNS)

    def frame(self, index, time_s, found, state):
        self.csv.writerow([index, _fixed(time_s, 6), int(found)]
                          + [_fixed(v, 6) for v in _state_values(state)])


class JsonWriter(_Writer):
    """One JSON document: header fields, then "frames" (written one by one, so memory
    stays flat), then "frameCount" and "faceCount"."""

    def __init__(self, stream, info):
        super().__init__(stream, info)
        head = {"format": "facemocap-osc export", "version": 1, **info, "units": UNITS}
        text = json.dumps(head, indent=1)
        stream.write(text[:-2] + ',\n "frames": [')
        self.first = True

    def frame(self, index, time_s, found, state):
        r = lambda v: round(float(v), 6) + 0.0   # noqa: E731  (+0.0: no "-0.0")
        (ly, lp), (ry, rp) = np.asarray(state.eye_angles, float).tolist()
        record = {
            "frame": index, "time": r(time_s), "found": bool(found),
            "blendshapes": {n: r(v) for n, v in zip(ARKIT_NAMES, state.blendshapes)},
            "vrm": {n: r(v) for n, v in zip(VRM0_NAMES, state.vrm)},
            "head": {"yaw": r(state.head_angles[0]), "pitch": r(state.head_angles[1]),
                     "roll": r(state.head_angles[2]), "x": r(state.head_position[0]),
                     "y": r(state.head_position[1]), "z": r(state.head_position[2])},
            "eyes": {"leftYaw": r(ly), "leftPitch": r(lp), "rightYaw": r(ry), "rightPitch": r(rp)},
        }
        self.stream.write(("\n  " if self.first else ",\n  ") + json.dumps(record, separators=(",", ":")))
        self.first = False

    def close(self, frames, faces):
        self.stream.write(f"\n ],\n \"frameCount\": {frames},\n \"faceCount\": {faces}\n}}\n")


WRITERS = {"livelink-csv": LiveLinkWriter, "csv": CsvWriter, "json": JsonWriter}


# --------------------------------------------------------------------------- inputs


class InputError(Exception):
    """A one-line message about one input or the output; exit 2 at start, or that input fails."""


def _is_take(path: str) -> bool:
    return path.lower().endswith(TAKE_SUFFIXES)


def input_kind(path: str) -> str:
    """'take', 'images' (a folder, a glob or an image file) or 'video'."""
    from bridge.sources import IMAGE_EXTENSIONS
    if _is_take(path):
        return "take"
    if os.path.isdir(path) or path.endswith(("/", os.sep)):
        return "images"
    if not os.path.exists(path) and re.search(r"[*?\[]", path):
        return "images"
    if path.lower().endswith(IMAGE_EXTENSIONS):
        return "images"
    return "video"


def output_stem(path: str, kind: str) -> str:
    """The name an input's output is given in a folder: d18.mp4 -> d18, takes/a.jsonl.gz
    -> a, frames/ -> frames, frames/*.png -> frames."""
    path = os.path.normpath(path)
    if kind == "images" and not os.path.isdir(path) and re.search(r"[*?\[]", path):
        parts = path.split(os.sep)
        first_magic = next(i for i, p in enumerate(parts) if re.search(r"[*?\[]", p))
        base = parts[first_magic - 1] if first_magic > 0 else ""
        if base in ("", ".", ".."):
            base = os.path.basename(os.path.abspath(os.path.join(*parts[:first_magic]) if first_magic else "."))
        return base or "images"
    name = os.path.basename(os.path.abspath(path))
    for suffix in TAKE_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)] or "take"
    if os.path.isdir(path):
        return name or "images"
    stem, _ = os.path.splitext(name)
    return stem or name


def _import_record():
    try:
        from bridge import record
    except ImportError:
        return None
    return record if hasattr(record, "read_take") else None


def _header_get(header, key, default=None):
    if isinstance(header, dict):
        return header.get(key, default)
    return getattr(header, key, default)


def _take_size(header) -> tuple[float, float]:
    width, height = _header_get(header, "width"), _header_get(header, "height")
    size = _header_get(header, "size") or _header_get(header, "image_size")
    if (not width or not height) and size and len(size) == 2:
        width, height = size
    try:
        width, height = float(width), float(height)
    except (TypeError, ValueError):
        return TAKE_SIZE
    return (width, height) if width > 0 and height > 0 else TAKE_SIZE


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class _TakeSource:
    """A take (bridge.record.read_take) as a stream of (index, time, landmarks or None,
    (width, height), the model's scores or None). A damaged take ends early and sets
    ``error`` (one line). ``has_scores``: the header says its frames carry the model's
    scores (recorded with the landmarker)."""

    static = False
    frame_count = None

    def __init__(self, path: str):
        record = _import_record()
        if record is None:
            raise InputError(f"cannot read take '{path}': this version has no take support (bridge.record)")
        try:
            self.header, self._frames = record.read_take(path)
        except Exception as exc:   # TakeError (one line), or anything unexpected
            message = _one_line(exc)
            raise InputError(message if path in message else f"cannot read take '{path}': {message}") from None
        self.path = path
        self.size = _take_size(self.header)
        fps = _header_get(self.header, "fps")
        self.fps = float(fps) if isinstance(fps, (int, float)) and fps > 0 else None
        self.has_scores = _header_get(self.header, "scores", False) is True
        self.error: str | None = None

    def __iter__(self):
        default = self.size
        for frame in self._frames:
            landmarks = frame.landmarks
            size = (getattr(frame, "width", None) or default[0], getattr(frame, "height", None) or default[1])
            yield frame.index, float(frame.time), landmarks, size, getattr(frame, "scores", None)
        self.error = getattr(self._frames, "error", None)

    def close(self):
        close = getattr(self._frames, "close", None)
        if close is not None:
            close()


def _open_input(path: str, kind: str, *, fps: float = IMAGE_FPS, sequence: bool = False):
    from bridge import sources
    try:
        if kind == "take":
            return _TakeSource(path)
        if kind == "images":
            return sources.open_images(path, fps=fps, sequence=sequence)
        return sources.open_video(path, paced=False)
    except sources.SourceError as error:
        raise InputError(str(error)) from None


def check_input(path: str) -> tuple[str, int | None]:
    """Open the input far enough to know it can be read (then close it): its kind, and
    its frame count when known in advance (videos: the container's; not takes)."""
    if path == "":
        raise InputError("an INPUT is empty")
    kind = input_kind(path)
    if os.path.exists(path) and not os.access(path, os.R_OK):
        raise InputError(f"cannot read '{path}': permission denied")
    source = _open_input(path, kind)
    frames = getattr(source, "frame_count", None)
    source.close()
    return kind, frames


# --------------------------------------------------------------------------- one input


@dataclass
class Job:
    id: int
    input: str
    kind: str
    output: str
    format: str
    backend: str | None = None      # concrete: "landmarker" or "facemesh" (None: takes only)
    model: str | None = None        # the landmarker's model file, already located
    blendshapes: str = "fused"      # the Solver's mode (bridge.solve.MODES)
    sequence: bool = False          # images: one video's frames, not independent photos
    fps: float = IMAGE_FPS          # images: frame i is at i / fps


@dataclass
class Result:
    id: int
    input: str
    output: str
    frames: int = 0
    faces: int = 0
    seconds: float = 0.0
    error: str | None = None


Report = Callable[..., None]   # report("start", job_id, total) / report("progress", job_id, done)


def _frames_of(source, kind: str, tracker, size) -> Iterator[tuple[int, float, np.ndarray | None, tuple, dict | None]]:
    """(index, time, landmarks or None, (width, height), model blendshapes or None)."""
    if kind == "take":   # the take's own scores: fused as the live run fused them
        yield from source
        return
    for frame in source:
        tracked = tracker.track(frame)
        yield frame.index, frame.time, tracked.landmarks, (frame.width, frame.height), tracked.blendshapes


def _open_temp(output: str) -> tuple[str, io.TextIOWrapper]:
    """A new hidden file beside output (renamed onto it when complete), created with
    the usual permissions (mkstemp's would be 0600)."""
    folder, name = os.path.split(os.path.abspath(output))
    for attempt in range(100):
        path = os.path.join(folder, f".{name}.{os.getpid()}-{attempt}.part")
        try:
            return path, open(path, "x", encoding="utf-8", newline="")
        except FileExistsError:
            continue
    raise InputError(f"cannot create a temporary file beside '{output}'")


class Cancelled(Exception):
    """The export was stopped from outside (Ctrl-C in the parent of a worker)."""


def export_one(job: Job, report: Report | None = None, cancelled: Callable[[], bool] | None = None) -> Result:
    """Export one input to job.output. Never raises for a bad input: the Result says.
    ``cancelled()`` is asked between frames; when it says so the output is not written."""
    from bridge import tracking
    from bridge.cli import effective_blendshapes
    from bridge.shape import ShapeOptions, Shaper
    from bridge.solve import Solver

    report = report or (lambda *args: None)
    result = Result(job.id, job.input, job.output)
    started = time.monotonic()
    source = tracker = None
    temp = None
    try:
        source = _open_input(job.input, job.kind, fps=job.fps, sequence=job.sequence)
        if job.kind != "take":
            if job.backend not in ("landmarker", "facemesh"):
                raise InputError(f"no tracking backend resolved for '{job.input}'")
            choice = tracking.Choice(job.backend, job.model)   # resolved by the parent: no download here
            try:
                tracker = tracking.open_tracker(choice, static=source.static)
            except tracking.TrackingError as error:
                raise InputError(str(error)) from None
        scores = None   # whether the frames carry the model's scores: the tracker's say
        if job.kind == "take":
            scores = source.has_scores
            if job.blendshapes == "model" and not scores:
                raise InputError(f"--blendshapes model: take '{job.input}' has no model scores (recorded "
                                 f"with Face Mesh, the demo or an older facemocap-osc); use fused or solver")
        report("start", job.id, getattr(source, "frame_count", None))
        info = {"input": job.input, "kind": job.kind,
                "backend": None if job.kind == "take" else job.backend,
                "blendshapes": effective_blendshapes(job.blendshapes, None if tracker is None else tracker.backend,
                                                     scores=scores),
                "fps": getattr(source, "fps", None)}
        size = getattr(source, "size", None)
        still = bool(source.static)   # photos: each row is its file alone
        solver, shaper = None, Shaper(ShapeOptions(still=still))
        temp, stream = _open_temp(job.output)
        next_report = 0.0
        with stream:
            writer = None
            for index, t, landmarks, frame_size, scores in _frames_of(source, job.kind, tracker, size):
                if writer is None:
                    info.update(width=frame_size[0], height=frame_size[1])
                    writer = WRITERS[job.format](stream, info)
                    solver = Solver(*frame_size, blendshapes=job.blendshapes, adapt=not still)
                state = None
                if landmarks is not None:
                    state = solver.solve(landmarks, frame_size, time=None if still else t, scores=scores)
                shaped, found = shaper.update(t, state)
                writer.frame(index, t, found, shaped)
                result.frames += 1
                result.faces += bool(found)
                now = time.monotonic()
                if now >= next_report:
                    report("progress", job.id, result.frames)
                    next_report = now + 0.1
                    if cancelled is not None and cancelled():
                        raise Cancelled()
            if writer is None:
                raise InputError(getattr(source, "error", None) or f"'{job.input}' gave no frames")
            writer.close(result.frames, result.faces)
        os.replace(temp, job.output)
        temp = None
        report("progress", job.id, result.frames)
        if getattr(source, "error", None):   # a damaged take: what came before is written
            result.error = (f"{source.error}; the {_frames(result.frames)} before it were written "
                            f"to '{job.output}'")
    except InputError as error:
        result.error = str(error)
    except Cancelled:
        result.error = "cancelled"
    except Exception as error:   # one line per failed input; the others carry on
        from bridge.sources import SourceError
        result.error = str(error) if isinstance(error, SourceError) else f"{type(error).__name__}: {_one_line(error)}"
    finally:
        if tracker is not None:
            tracker.close()
        if source is not None:
            source.close()
        if temp is not None:
            try:
                os.remove(temp)
            except OSError:
                pass
        result.seconds = time.monotonic() - started
    return result


# --------------------------------------------------------------------------- workers (-j N)

_worker_queue = None
_worker_cancel = None


class _QueueLogHandler(logging.Handler):
    def emit(self, record):
        try:
            _worker_queue.put(("log", record.levelno, self.format(record)))
        except Exception:
            pass


def _worker_init(q, cancel) -> None:
    global _worker_queue, _worker_cancel
    _worker_queue, _worker_cancel = q, cancel
    # Ctrl-C reaches the whole process group: an idle worker ignores it (no traceback
    # from the pool's own loop); a busy one stops its export (see _worker_run).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logger = logging.getLogger("facemocap")
    logger.handlers[:] = [_QueueLogHandler()]
    logger.propagate = False
    logger.setLevel(logging.INFO)


def _worker_run(job: Job) -> Result:
    if _worker_cancel.is_set():
        return Result(job.id, job.input, job.output, error="cancelled")
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return export_one(job, lambda *args: _worker_queue.put(args), _worker_cancel.is_set)
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)


# --------------------------------------------------------------------------- progress


class Progress:
    """One overall tqdm bar on ``stream`` (default stderr): frames done, of the total
    once every input's frame count is known (takes' only when they finish). Shown only
    on a terminal (tqdm's ``disable=None``) and never when not ``enabled``. Lines go
    above it (``message``). Thread-safe: the -j N pump thread updates it."""

    def __init__(self, names: list[str], *, enabled: bool, totals: list[int | None] | None = None, stream=None):
        from tqdm import tqdm

        self.stream = stream
        self.names = names
        self.totals = [_count(t) for t in (totals or [None] * len(names))]
        self.done = [0] * len(names)
        self.finished: set[int] = set()
        self._lock = threading.RLock()
        self.bar = tqdm(total=self._total(), desc=f"exporting {names[0]}" if len(names) == 1 else "exporting",
                        unit=" frames", file=self._file(), disable=None if enabled else True,
                        leave=False, dynamic_ncols=True, smoothing=0.1)
        self._postfix()

    def _file(self):
        return self.stream if self.stream is not None else sys.stderr

    def _total(self) -> int | None:
        if any(t is None for t in self.totals):
            return None
        return max(sum(max(t, d) for t, d in zip(self.totals, self.done)), 1)

    def _postfix(self) -> None:
        if len(self.names) > 1:
            self.bar.set_postfix_str(f"{len(self.finished)}/{len(self.names)} inputs done", refresh=False)

    def start(self, job_id: int, total) -> None:
        """An input opened; ``total``: its frame count, when known (the worker's own count)."""
        with self._lock:
            if job_id not in self.finished and _count(total) is not None:
                self.totals[job_id] = _count(total)
                total = self._total()
                if total != self.bar.total:
                    self.bar.total = total
                    self.bar.refresh()

    def update(self, job_id: int, done: int) -> None:
        with self._lock:
            step = done - self.done[job_id]
            if step <= 0 or job_id in self.finished:
                return
            self.done[job_id] = done
            total = self.totals[job_id]
            if total is not None and done > total:
                self.bar.total = self._total()   # more frames than the container said
            self.bar.update(step)

    def finish_job(self, job_id: int, frames: int = 0) -> None:
        """An input is done (written or failed) after ``frames`` frames: its total is exact now."""
        with self._lock:
            step = max(frames - self.done[job_id], 0)
            self.done[job_id] += step
            self.totals[job_id] = self.done[job_id]
            self.finished.add(job_id)
            self._postfix()
            self.bar.total = self._total()
            self.bar.update(step)
            self.bar.refresh()

    def message(self, text: str) -> None:
        """A line above the bar (a finished input, an error, a log message)."""
        with self._lock:
            _write(text, self._file())

    def close(self) -> None:
        with self._lock:
            self.bar.close()


def _count(total) -> int | None:
    return total if isinstance(total, int) and not isinstance(total, bool) and total > 0 else None


def _write(text: str, stream=None) -> None:
    """A line on stderr (or ``stream``) above any progress bar there."""
    from tqdm import tqdm
    tqdm.write(text, file=stream if stream is not None else sys.stderr)


class _ProgressLogHandler(logging.Handler):
    """Our log lines, printed above the progress bar."""

    def __init__(self, stream=None):
        super().__init__()
        self.stream = stream

    def emit(self, record):
        try:
            _write(f"facemocap-osc: {self.format(record)}", self.stream)
        except Exception:
            pass


# --------------------------------------------------------------------------- command line


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Track faces in videos, image folders or recorded takes as fast as possible "
                    "and write the solved, smoothed values (the same as the live stream) to files.",
        epilog="Examples:\n"
               "  facemocap-osc export take.mp4 -o take.csv --format livelink-csv\n"
               "  facemocap-osc export a.mp4 b.mp4 frames/ -o out/ --format json -j 2\n"
               "  facemocap-osc export frames/ -o frames.csv --format csv --sequence --fps 25\n"
               "INPUT: a video, a folder or glob of images, or a take (.jsonl / .jsonl.gz). Images are\n"
               "photos, each solved on its own (no smoothing), unless --sequence says they are one video.\n"
               "Exit codes: 0 all written, 1 some inputs failed (the others were written),\n"
               "2 bad command line, input or output (nothing was done).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="video file, image folder or glob, or take")
    p.add_argument("-o", "--output", required=True, metavar="OUT",
                   help="the output file (one INPUT) or folder (several INPUTs; created if missing; "
                        "each output is named after its input)")
    p.add_argument("--format", required=True, choices=FORMATS,
                   help="livelink-csv: Live Link Face's CSV layout; csv: every channel, one row a frame; "
                        "json: one JSON document with every channel")
    p.add_argument("-j", "--jobs", type=_positive_int, default=1, metavar="N",
                   help="export up to N inputs at once, in separate processes (default: 1)")
    add_tracking_arguments(p, what="are written (as live)", takes_note=" (takes need none)")
    p.add_argument("--sequence", action="store_true",
                   help="image INPUTs are the frames of one video: tracked, smoothed and solved as a "
                        "video, frame i at i / --fps s (default: each image is its own photo, solved "
                        "alone, without smoothing)")
    p.add_argument("--fps", type=_positive_float, default=IMAGE_FPS,
                   help=f"frame rate of image INPUTs: the time column, and --sequence's smoothing "
                        f"(default: {IMAGE_FPS:g})")
    p.add_argument("--force", action="store_true", help="overwrite output files that already exist")
    p.add_argument("--quiet", action="store_true", help="no progress bar and no summary lines")
    p.add_argument("--verbose", action="store_true", help="debug logging")
    return p


def _check_output_folder(folder: str, *, create: bool) -> None:
    """The folder exists (or, with create, is created) and a file can be written in it."""
    folder = folder or "."
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise InputError(f"cannot write to '{folder}': it is a file, not a folder")
    if not os.path.exists(folder) and not create:
        raise InputError(f"cannot write to '{folder}': no such folder")
    try:
        os.makedirs(folder, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise InputError(f"cannot write to '{folder}': {exc.strerror or _one_line(exc)}") from None


def plan_outputs(inputs: list[str], kinds: list[str], out: str, fmt: str, *, force: bool,
                 create: bool = True) -> list[str]:
    """Output path per input; raises InputError (exit 2) when OUT is unusable. With
    several INPUTs the OUT folder is created (last, once everything else is checked);
    ``create=False`` checks everything but leaves a missing OUT folder for later."""
    extension = EXTENSIONS[fmt]
    into_folder = len(inputs) > 1 or os.path.isdir(out) or out.endswith(("/", os.sep))
    if len(inputs) > 1 and not os.path.isdir(out):
        if os.path.exists(out):
            raise InputError(f"with several INPUTs, -o must be a folder: '{out}' is a file")
        if out.lower().endswith(tuple(set(EXTENSIONS.values()))):
            raise InputError(f"with several INPUTs, -o must be a folder, not '{out}' "
                             "(a glob is one INPUT when quoted: 'frames/*.png')")
    if into_folder:
        outputs = [os.path.join(out, output_stem(path, kind) + extension) for path, kind in zip(inputs, kinds)]
    else:
        outputs = [out]
    seen: dict[str, str] = {}
    for path, output in zip(inputs, outputs):
        key = os.path.normcase(os.path.abspath(output))
        if key in seen:
            raise InputError(f"'{seen[key]}' and '{path}' would both be written to '{output}' "
                             "(rename one, or export them separately)")
        seen[key] = path
        if os.path.isdir(output):
            raise InputError(f"cannot write '{output}': it is a folder")
        if os.path.exists(path) and os.path.exists(output) and os.path.samefile(path, output):
            raise InputError(f"the output '{output}' is the input itself")
        if os.path.exists(output) and not force:
            raise InputError(f"'{output}' already exists (--force overwrites it)")
    folder = out if into_folder else os.path.dirname(out)
    if create or not into_folder or os.path.exists(folder):
        _check_output_folder(folder, create=into_folder)
    return outputs


def resolve_backend(backend: str, model: str | None, blendshapes: str | None):
    """The concrete tracking backend (a tracking.Choice), resolved once for every job:
    an "auto" or "landmarker" backend may download the model here, so workers never do.
    Raises InputError (one line)."""
    from bridge import tracking
    from bridge.tracking import model as model_file

    try:
        choice = tracking.choose_backend(backend, model, blendshapes=blendshapes == "model")
        if choice.backend == "landmarker" and choice.model_path != model_file.cached_path():
            # A file given by --model or $FACEMOCAP_MODEL is not checked like the cached
            # download: load it once here, so a bad one is one line now, not one per input.
            tracking.open_tracker(choice).close()
    except tracking.TrackingError as error:
        raise InputError(str(error)) from None
    return choice


def _frames(n: int) -> str:
    return f"{n} frame{'' if n == 1 else 's'}"


def _summary(result: Result) -> str:
    rate = result.frames / result.seconds if result.seconds > 0 else 0.0
    return (f"{result.input} -> {result.output}: {_frames(result.frames)}, face in {result.faces}, "
            f"{result.seconds:.1f} s ({rate:.0f} frames/s)")


def main(argv: list[str] | None = None) -> int:
    """`facemocap-osc export ...`; returns the exit status."""
    args = build_parser().parse_args(argv)
    logger = logging.getLogger("facemocap")
    saved = (logger.handlers[:], logger.propagate, logger.level)
    progress = None
    try:
        def error(message: str) -> None:
            _write(f"{PROG}: error: {message}")

        # ---- everything that can refuse to start, before any work
        choice = None
        try:
            if args.blendshapes == "model" and args.backend == "facemesh":   # whatever the inputs
                raise InputError("--blendshapes model needs the landmarker backend "
                                 "(Face Mesh has no blendshape model)")
            checked = [check_input(path) for path in args.inputs]
            kinds = [kind for kind, _ in checked]
            if args.sequence and any(kind != "images" for kind in kinds):
                path, kind = next((p, k) for p, k in zip(args.inputs, kinds) if k != "images")
                raise InputError(f"--sequence is for image folders or globs (one video's frames); "
                                 f"'{path}' is a {kind}")
            plan_outputs(args.inputs, kinds, args.output, args.format, force=args.force, create=False)
            # From here our log lines (a model download, a fallback to Face Mesh, the
            # workers') are shown, above the bar once there is one.
            logger.handlers[:] = [_ProgressLogHandler()]
            logger.propagate = False
            logger.setLevel(logging.DEBUG if args.verbose else logging.INFO)
            if any(kind != "take" for kind in kinds):   # takes hold landmarks: no tracker
                choice = resolve_backend(args.backend, args.model, args.blendshapes)
            outputs = plan_outputs(args.inputs, kinds, args.output, args.format, force=args.force)
        except InputError as exc:
            error(str(exc))
            return EXIT_USAGE

        backend = choice.backend if choice is not None else None
        model = str(choice.model_path) if choice is not None and choice.model_path is not None else None
        if backend == "facemesh" and args.blendshapes == "fused":   # said once, not refused
            log.info("--blendshapes fused: the legacy Face Mesh has no blendshape scores, so the values "
                     "are the geometric solver's alone")
        jobs = [Job(i, path, kind, output, args.format, backend, model, args.blendshapes, args.sequence, args.fps)
                for i, (path, kind, output) in enumerate(zip(args.inputs, kinds, outputs))]
        progress = Progress([os.path.basename(os.path.normpath(j.input)) or j.input for j in jobs],
                            totals=[frames for _, frames in checked], enabled=not args.quiet)

        def on_result(result: Result) -> None:
            progress.finish_job(result.id, result.frames)
            if result.error:
                error(f"{result.input}: {result.error}")
            elif not args.quiet:
                progress.message(f"facemocap-osc: {_summary(result)}")

        if args.jobs == 1 or len(jobs) == 1:
            results = _run_here(jobs, progress, on_result)
        else:
            results = _run_pool(jobs, min(args.jobs, len(jobs)), progress, on_result, args.verbose)
        return EXIT_FAILED if any(r.error for r in results) else EXIT_OK
    except KeyboardInterrupt:   # also during a model download: the cache holds no half file
        if progress is not None:
            progress.close()
        print(f"{PROG}: interrupted; unfinished outputs were not written", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        if progress is not None:
            progress.close()
        logger.handlers[:], logger.propagate, _ = saved
        logger.setLevel(saved[2])


def _run_here(jobs: list[Job], progress: Progress, on_result) -> list[Result]:
    def report(kind, job_id, value):
        (progress.start if kind == "start" else progress.update)(job_id, value)

    results = []
    for job in jobs:
        result = export_one(job, report)
        on_result(result)
        results.append(result)
    return results


def _remove_partials(output: str) -> None:
    folder, name = os.path.split(os.path.abspath(output))
    for path in glob.glob(os.path.join(glob.escape(folder), glob.escape(f".{name}.") + "*-*.part")):
        try:
            os.remove(path)
        except OSError:
            pass


class _sigint_ignored:
    def __enter__(self):
        self.saved = None
        if threading.current_thread() is threading.main_thread():
            self.saved = signal.signal(signal.SIGINT, signal.SIG_IGN)

    def __exit__(self, *exc):
        if self.saved is not None:
            signal.signal(signal.SIGINT, self.saved)


def _run_pool(jobs: list[Job], workers: int, progress: Progress, on_result, verbose: bool) -> list[Result]:
    context = multiprocessing.get_context("spawn")   # mediapipe and fork don't mix
    messages = context.Queue()
    cancel = context.Event()
    stop = threading.Event()

    def pump():
        while not stop.is_set() or not messages.empty():
            try:
                item = messages.get(timeout=0.1)
            except queue.Empty:
                continue
            except (EOFError, OSError):
                return
            kind = item[0]
            if kind == "start":
                progress.start(item[1], item[2])
            elif kind == "progress":
                progress.update(item[1], item[2])
            elif kind == "log" and (verbose or item[1] >= logging.INFO):
                progress.message(f"facemocap-osc: {item[2]}")

    reader = threading.Thread(target=pump, name="facemocap-export-progress", daemon=True)
    reader.start()
    results: dict[int, Result] = {}
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=context,
                               initializer=_worker_init, initargs=(messages, cancel))
    try:
        # The workers start on the first submit: they start with Ctrl-C ignored, so one
        # pressed while they import prints no traceback (they stop via `cancel`).
        with _sigint_ignored():
            futures = {pool.submit(_worker_run, job): job for job in jobs}
        for future in as_completed(futures):
            job = futures[future]
            try:
                result = future.result()
            except BrokenProcessPool:
                _remove_partials(job.output)   # the worker had no chance to
                result = Result(job.id, job.input, job.output, error="the worker process died")
            except Exception as exc:
                result = Result(job.id, job.input, job.output, error=f"{type(exc).__name__}: {_one_line(exc)}")
            results[job.id] = result
            on_result(result)
    except KeyboardInterrupt:
        cancel.set()
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        stop.set()
        reader.join(2.0)
        messages.close()
        messages.join_thread()
    return [results[job.id] for job in jobs]


if __name__ == "__main__":
    raise SystemExit(main())
