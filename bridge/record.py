"""Recording takes and replaying them.

A *take* is a JSON Lines file (``.jsonl``), or the same gzipped (``.jsonl.gz``):

* line 1, the header: ``{"format":"facemocap-take","version":1,...}`` with the
  tracker version, backend, source, image size, frame rate, creation time and the
  channel names of the solved values, so the file explains itself;
* then one line per frame: ``{"index":0,"time":0.0,"landmarks":[[x,y,z],...],
  "state":{"blendshapes":[...],...}}``. ``time`` is the frame's capture time in
  seconds with every digit (a replay solves at the very same times); ``landmarks``
  are the tracker's 478 points in image space (see bridge.tracking), 4 decimals of
  a pixel; ``state`` is what the solver made of them (before calibration,
  smoothing and mirroring), 5 decimals.
  Both are ``null`` in frames without a face. ``width``/``height`` appear in a
  frame only when its size differs from the header's.
* ``"scores"`` (in frames whose tracker gave them: the landmarker): the model's raw
  blendshape scores, a list of 52 in the order of the ``blendshapes`` channel
  (ARKIT_NAMES), ``null`` where the model gives none (tongueOut, always). 9
  significant digits, which give back the model's float32 score exactly, so a
  replay fuses the very scores the live run fused. A frame without the key, or
  with ``"scores":null``, has none (Face Mesh, the demo, takes written before
  scores were kept, frames without a face). The header's ``"scores"`` (true /
  false; absent in older takes = false) says whether the recording's tracker gave
  scores at all, so ``--replay TAKE --blendshapes model`` can refuse at start.

Writing (:class:`TakeWriter`) checks the path when it opens, so a bad path fails
before the performance, not after it. Lines are flushed at least once per second
of frames (and of wall-clock time); a gzipped take is sync-flushed then, so a crash
loses at most about the last second.

Reading (:func:`read_take`, :func:`open_replay`) checks every line. A take that is
cut off or damaged gives every valid frame before the problem, then stops and
records the problem as ``error``: one line naming the file and the line number.
A missing or unreadable file, or one whose first line is not our header, fails at
open with :class:`TakeError` (a :class:`bridge.sources.SourceError`).

Replaying yields frames that carry landmarks and no image (like the demo), which
the trackers pass straight through, with the frame's model scores when the take
has them (so the solver fuses them as it did live); a frame without a face has
neither and tracks as "no face". Frame times come from the take, so replaying a
take twice sends the same bytes.
"""

from __future__ import annotations

import gzip
import json
import math
import os
import threading
import time
import zlib
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Iterator

import numpy as np

from bridge import __version__
from bridge.sources import DEFAULT_FPS, Frame, Source, SourceError, VideoSource
from bridge.state import ARKIT_NAMES, VRM0_NAMES, FaceState

FORMAT_NAME = "facemocap-take"
FORMAT_VERSION = 1
SUFFIXES = (".jsonl", ".jsonl.gz")
NUM_LANDMARKS = 478
LANDMARK_DECIMALS = 4      # of a pixel
STATE_DECIMALS = 5
SCORE_DIGITS = 9           # significant: a float32 score round-trips exactly
SCORE_NOISE = 1e-6         # a score this far outside [0, 1] is float noise, clipped
FLUSH_SECONDS = 1.0        # flush at least this often, in frame time and in wall time
GZIP_LEVEL = 1             # level 6 costs ~7x the time for ~15 % less size
MAX_LINE_BYTES = 1 << 20   # a frame line is ~14 KB; longer is not a take
_READ_CHUNK = 1 << 16
_GZIP_MAGIC = b"\x1f\x8b"

# FaceState fields, their shapes and channel names, in the order of FaceState.vector().
STATE_FIELDS = ("blendshapes", "vrm", "head_angles", "head_position", "eye_angles")
_STATE_SHAPES = {"blendshapes": (52,), "vrm": (len(VRM0_NAMES),), "head_angles": (3,),
                 "head_position": (3,), "eye_angles": (2, 2)}
CHANNELS = {
    "landmarks": "478 [x, y, z] points, image space: x * width, y * height, z * width (pixels)",
    "blendshapes": list(ARKIT_NAMES),
    "vrm": list(VRM0_NAMES),
    "head_angles": ["yaw", "pitch", "roll"],
    "head_position": ["x", "y", "z"],
    "eye_angles": [["leftYaw", "leftPitch"], ["rightYaw", "rightPitch"]],
    "scores": "the landmarker model's raw blendshape scores, in the order of blendshapes; "
              "null where it gives none (tongueOut); absent or null in frames without scores",
}
UNITS = {"time": "seconds", "landmarks": "pixels", "blendshapes": "0..1", "vrm": "0..1",
         "head_angles": "degrees", "head_position": "metres", "eye_angles": "degrees",
         "scores": "0..1"}

# Fixed templates: one %-format call per frame is the cheapest way to write the numbers
# (measured on the demo face: ~175 µs a frame, against ~330 µs for json.dumps of rounded lists).
_LANDMARKS_TEMPLATE = "[" + ",".join([f"[%.{LANDMARK_DECIMALS}f,%.{LANDMARK_DECIMALS}f,"
                                      f"%.{LANDMARK_DECIMALS}f]"] * NUM_LANDMARKS) + "]"


def _state_template() -> str:
    f = f"%.{STATE_DECIMALS}f"
    parts = []
    for name in STATE_FIELDS:
        shape = _STATE_SHAPES[name]
        if len(shape) == 1:
            parts.append(f'"{name}":[' + ",".join([f] * shape[0]) + "]")
        else:
            row = "[" + ",".join([f] * shape[1]) + "]"
            parts.append(f'"{name}":[' + ",".join([row] * shape[0]) + "]")
    return "{" + ",".join(parts) + "}"


_STATE_TEMPLATE = _state_template()
_SCORE_FORMAT = f"%.{SCORE_DIGITS}g"


class RecordError(Exception):
    """A take cannot be written; a one-line, user-facing message."""


class TakeError(SourceError):
    """A take cannot be read; a one-line, user-facing message."""


# --------------------------------------------------------------------------- writing


def source_header(source, *, backend: str, description: str | None = None,
                  blendshapes: str = "solver", scores: bool | None = None) -> dict:
    """Header fields for a take recorded from ``source`` (a bridge.sources Source).

    backend: "facemesh", "landmarker" or "demo"; a replayed take keeps its own.
    description: the source as the user named it (default: the video's path, or the
    source's name: "camera 0", "demo", "images (12 files)", ...).
    blendshapes: "fused", "solver" or "model": whose ARKit values the recorded states hold.
    scores: whether the frames will carry the model's scores (default: with the
    landmarker, or replaying a take that has them).
    """
    if isinstance(source, ReplaySource):
        backend = source.header.get("backend", backend)
        if scores is None:
            scores = source.has_scores
    if scores is None:
        scores = backend == "landmarker"
    if description is None:
        path = getattr(source, "path", None)
        description = f"video {path}" if isinstance(source, VideoSource) and path else source.name
    fps = getattr(source, "fps", None)
    return {
        "backend": backend,
        "source": description,
        "width": _positive_int_or_none(getattr(source, "width", None)),
        "height": _positive_int_or_none(getattr(source, "height", None)),
        "fps": float(fps) if isinstance(fps, (int, float)) and math.isfinite(fps) and fps > 0 else None,
        "blendshapes": blendshapes,
        "scores": bool(scores),
    }


def _positive_int_or_none(value):
    return int(value) if isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value > 0 else None


def _take_kind(path: str) -> str | None:
    lower = path.lower()
    if lower.endswith(".jsonl.gz"):
        return "gz"
    if lower.endswith(".jsonl"):
        return "jsonl"
    return None


class TakeWriter:
    """Writes one take. Use :meth:`open`; ``write_frame`` per frame; ``close`` at the end.

    ``write``/``write_frame``/``flush``/``close`` raise :class:`RecordError` when the
    disk refuses (full, removed): a live run may stop recording and carry on.
    """

    def __init__(self, path: str, raw, gz, header: dict):
        self.path = path
        self.header = header
        self.compressed = gz is not None
        self.frames = 0
        self._raw = raw
        self._gz = gz
        self._out = gz if gz is not None else raw
        self._size = (header.get("width"), header.get("height"))
        self._flushed_time: float | None = None       # frame time of the last flush
        self._flushed_wall = time.monotonic()         # flush timing only; never written
        self._closed = False

    # -- opening

    @classmethod
    def open(cls, path, header: dict, *, overwrite: bool = False,
             compresslevel: int = GZIP_LEVEL) -> "TakeWriter":
        """Create the take at ``path`` and write its header, or raise RecordError.

        ``.jsonl.gz`` is gzipped, ``.jsonl`` plain; any other name is refused. An
        existing file is refused unless ``overwrite`` (no take is lost to a re-run).
        ``header``: fields such as :func:`source_header` gives; format, version,
        tracker version, creation time, channel names and units are added.
        """
        path = os.fspath(path)
        prefix = f"cannot record to '{path}'"
        kind = _take_kind(path)
        if kind is None:
            raise RecordError(f"{prefix}: the file name must end in .jsonl or .jsonl.gz")
        if os.path.isdir(path):
            raise RecordError(f"{prefix}: it is a folder")
        folder = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(folder):
            raise RecordError(f"{prefix}: folder '{os.path.dirname(path) or folder}' does not exist")
        full = {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "tracker_version": __version__,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "backend": None, "source": None, "width": None, "height": None, "fps": None,
            "blendshapes": "solver", "scores": False,
        }
        full.update({k: v for k, v in header.items() if k not in ("format", "version")})
        full.setdefault("channels", CHANNELS)
        full.setdefault("units", UNITS)
        full["width"] = _positive_int_or_none(full.get("width"))
        full["height"] = _positive_int_or_none(full.get("height"))
        try:
            line = json.dumps(full, separators=(",", ":"), ensure_ascii=False, allow_nan=False) + "\n"
        except (TypeError, ValueError) as exc:
            raise RecordError(f"{prefix}: header cannot be written as JSON ({exc})") from None
        try:
            raw = open(path, "wb" if overwrite else "xb", buffering=1 << 18)
        except FileExistsError:
            raise RecordError(f"{prefix}: the file already exists (choose another name or delete it)") from None
        except IsADirectoryError:
            raise RecordError(f"{prefix}: it is a folder") from None
        except OSError as exc:
            raise RecordError(f"{prefix}: {exc.strerror or exc}") from None
        gz = None
        try:
            if kind == "gz":
                # mtime=0: the gzip header doesn't vary with the time of day.
                gz = gzip.GzipFile(filename=os.path.basename(path)[:-3], mode="wb",
                                   compresslevel=compresslevel, fileobj=raw, mtime=0)
                gz.write(line.encode("utf-8"))
                gz.flush(zlib.Z_SYNC_FLUSH)
            else:
                raw.write(line.encode("utf-8"))
                raw.flush()
        except OSError as exc:
            for stream in (gz, raw):
                try:
                    if stream is not None:
                        stream.close()
                except OSError:
                    pass
            try:
                os.remove(path)
            except OSError:
                pass
            raise RecordError(f"{prefix}: {exc.strerror or exc}") from None
        return cls(path, raw, gz, full)

    # -- writing

    def write_frame(self, frame: Frame, landmarks, state: FaceState | None) -> None:
        """One processed frame: its landmarks (None = no face) and solved state (None =
        no face); the state's ``scores`` (the model's, if any) are written with it."""
        self.write(frame.index, frame.time, landmarks, state, width=frame.width, height=frame.height)

    def write(self, index: int, time_s: float, landmarks, state: FaceState | None, *,
              width: int | None = None, height: int | None = None) -> None:
        if self._closed:
            raise RecordError(f"cannot write to '{self.path}': the take is closed")
        t = float(time_s)
        if not math.isfinite(t):
            raise ValueError(f"frame time must be finite, got {time_s!r}")
        # Every digit (repr): the solver's timing (lids, rest) compares frame times, and a
        # time rounded to the microsecond can land a frame on the other side of a step.
        head = '{"index":%d,"time":%r' % (index, t)
        if (width or height) and (width, height) != self._size:
            head += ',"width":%d,"height":%d' % (width or 0, height or 0)
        scores = _format_scores(state.scores if state is not None else None)
        line = "%s,\"landmarks\":%s,\"state\":%s%s}\n" % (
            head, _format_landmarks(landmarks), _format_state(state),
            ',"scores":' + scores if scores is not None else "")
        try:
            self._out.write(line.encode("ascii"))
        except OSError as exc:
            raise RecordError(f"cannot write to '{self.path}': {exc.strerror or exc}") from None
        self.frames += 1
        if self._flushed_time is None:
            self._flushed_time = t
        elif t - self._flushed_time >= FLUSH_SECONDS or time.monotonic() - self._flushed_wall >= FLUSH_SECONDS:
            self.flush(t)

    def flush(self, frame_time: float | None = None) -> None:
        """Push everything written so far to the file (a readable gzip sync point)."""
        if self._closed:
            return
        try:
            if self._gz is not None:
                self._gz.flush(zlib.Z_SYNC_FLUSH)   # also flushes the file below it
            else:
                self._raw.flush()
        except OSError as exc:
            raise RecordError(f"cannot write to '{self.path}': {exc.strerror or exc}") from None
        if frame_time is not None:
            self._flushed_time = frame_time
        self._flushed_wall = time.monotonic()

    def close(self) -> None:
        """Finish the take (the gzip trailer) and close the file. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        error = None
        try:
            if self._gz is not None:
                self._gz.close()     # writes the trailer; leaves the raw file open
        except OSError as exc:
            error = exc
        try:
            self._raw.close()
        except OSError as exc:
            error = error or exc
        if error is not None:
            raise RecordError(f"cannot finish '{self.path}': {error.strerror or error}")

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> "TakeWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<TakeWriter {self.path!r} frames={self.frames}>"


def _format_landmarks(landmarks) -> str:
    if landmarks is None:
        return "null"
    a = np.asarray(landmarks)
    if a.shape != (NUM_LANDMARKS, 3):
        raise ValueError(f"expected ({NUM_LANDMARKS}, 3) landmarks, got {a.shape}")
    if not np.isfinite(a).all():   # as the solver reads them: NaN/inf -> 0
        a = np.nan_to_num(a, nan=0.0, posinf=0.0, neginf=0.0)
    return _LANDMARKS_TEMPLATE % tuple(a.ravel().tolist())


def _format_state(state: FaceState | None) -> str:
    if state is None:
        return "null"
    v = state.vector()
    if not np.isfinite(v).all():
        v = np.nan_to_num(v, nan=0.0, posinf=0.0, neginf=0.0)
    return _STATE_TEMPLATE % tuple(v.tolist())


def _format_scores(scores) -> str | None:
    """The model's scores (52, ARKIT_NAMES order, NaN where none) as JSON, or None
    when there are none to write (no key in the frame)."""
    if scores is None:
        return None
    a = np.asarray(scores, dtype=np.float64)
    if a.shape != (len(ARKIT_NAMES),):
        raise ValueError(f"expected {len(ARKIT_NAMES)} scores, got {a.shape}")
    finite = np.isfinite(a)
    if not finite.any():
        return None
    a = np.clip(a, 0.0, 1.0)
    return "[" + ",".join(_SCORE_FORMAT % v if ok else "null" for v, ok in zip(a.tolist(), finite.tolist())) + "]"


# --------------------------------------------------------------------------- reading


@dataclass
class TakeFrame:
    """One recorded frame. landmarks: (478, 3) float32 image space, or None (no face);
    state: the recorded solver output, or None (no face); scores: the model's raw
    blendshape scores by ARKit name (tongueOut left out: the model gives none), or
    None (no scores in this frame)."""

    index: int
    time: float
    landmarks: np.ndarray | None
    state: FaceState | None
    width: int | None = None
    height: int | None = None
    scores: dict[str, float] | None = None


class _Problem(Exception):
    """A damaged line; message without the file name (added by the caller)."""

    def __init__(self, lineno: int, message: str):
        super().__init__(message)
        self.lineno = lineno
        self.message = message


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class _TakeFile:
    """An open take: the checked header, then its frame lines with line numbers."""

    def __init__(self, path):
        self.path = os.fspath(path)
        self.label = os.path.basename(self.path) or self.path
        prefix = f"cannot open take '{self.path}'"
        if not os.path.exists(self.path):
            raise TakeError(f"{prefix}: file not found")
        if os.path.isdir(self.path):
            raise TakeError(f"{prefix}: it is a folder")
        try:
            self._fh = open(self.path, "rb")
        except OSError as exc:
            raise TakeError(f"{prefix}: {exc.strerror or exc}") from None
        try:
            self.compressed = self._fh.read(2) == _GZIP_MAGIC
            self._fh.seek(0)
            self._lines = self._split_lines()
            try:
                first = next(self._lines, None)
            except _Problem as problem:
                raise TakeError(f"{prefix}: {problem.message}") from None
            except OSError as exc:
                raise TakeError(f"{prefix}: {exc.strerror or exc}") from None
            if first is None:
                raise TakeError(f"{prefix}: the file is empty")
            self.header = _check_header(first[1], prefix)
        except BaseException:
            self.close()
            raise
        self.size = (self.header.get("width"), self.header.get("height"))

    # -- bytes -> lines

    def _chunks(self) -> Iterator[bytes]:
        """Plain or gunzipped data; a damaged stream ends with _Problem(lineno=0)."""
        read = self._fh.read
        if not self.compressed:
            while True:
                chunk = read(_READ_CHUNK)
                if not chunk:
                    return
                yield chunk
        d = zlib.decompressobj(zlib.MAX_WBITS | 16)
        while True:
            chunk = read(_READ_CHUNK // 4)
            if not chunk:
                break
            while chunk:
                saved = d.copy()
                try:
                    out = d.decompress(chunk)
                except zlib.error:
                    # Redo the chunk in small steps, to keep every line before the damage.
                    d, out = saved, b""
                    for k in range(0, len(chunk), 256):
                        try:
                            out += d.decompress(chunk[k:k + 256])
                        except zlib.error as exc:
                            if out:
                                yield out
                            raise _Problem(0, f"the compressed data is damaged ({_one_line(exc)})") from None
                if out:
                    yield out
                chunk = b""
                if d.eof and d.unused_data:   # another gzip member follows (or junk)
                    chunk, d = d.unused_data, zlib.decompressobj(zlib.MAX_WBITS | 16)
        if not d.eof:
            raise _Problem(0, "the compressed data ends early (the recording was cut off)")

    def _split_lines(self) -> Iterator[tuple[int, bytes, bool]]:
        """(line number, line, ended by a newline); stream problems get the line number."""
        lineno = 1
        pending = b""
        chunks = self._chunks()
        while True:
            try:
                chunk = next(chunks, None)
            except _Problem as problem:
                raise _Problem(lineno, problem.message) from None
            if chunk is None:
                break
            pending += chunk
            if b"\n" not in chunk:
                if len(pending) > MAX_LINE_BYTES:
                    raise _Problem(lineno, f"line longer than {MAX_LINE_BYTES // 1024} KB (not a take?)")
                continue
            parts = pending.split(b"\n")
            pending = parts.pop()
            for part in parts:
                yield lineno, part, True
                lineno += 1
            if len(pending) > MAX_LINE_BYTES:
                raise _Problem(lineno, f"line longer than {MAX_LINE_BYTES // 1024} KB (not a take?)")
        if pending:
            yield lineno, pending, False

    # -- frames

    def frames(self) -> Iterator[TakeFrame]:
        """Checked frames; a damaged line or stream raises _Problem after the frames before it."""
        previous = None
        for lineno, line, complete in self._lines:
            if not line.strip():
                continue
            frame = _parse_frame(line, lineno, complete, self.size)
            if previous is not None and frame.time < previous:
                raise _Problem(lineno, f"time goes backwards ({frame.time:g} s after {previous:g} s)")
            previous = frame.time
            yield frame

    def close(self) -> None:
        fh = getattr(self, "_fh", None)
        if fh is not None:
            fh.close()


def _check_header(line: bytes, prefix: str) -> dict:
    not_ours = f"{prefix}: not a facemocap-osc take (its first line is not a take header)"
    try:
        header = json.loads(line)
    except ValueError:
        raise TakeError(not_ours) from None
    if not isinstance(header, dict) or header.get("format") != FORMAT_NAME:
        raise TakeError(not_ours)
    version = header.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise TakeError(f"{prefix}: the header has no valid format version ({version!r})")
    if version > FORMAT_VERSION:
        raise TakeError(f"{prefix}: take format version {version} is newer than this facemocap-osc "
                        f"({__version__}) reads (version {FORMAT_VERSION})")
    for key in ("width", "height"):
        value = header.get(key)
        if value is not None and _positive_int_or_none(value) is None:
            raise TakeError(f"{prefix}: header {key} must be a whole number above 0 or null, got {value!r}")
    fps = header.get("fps")
    if fps is not None and not (_is_number(fps) and math.isfinite(fps) and fps > 0):
        raise TakeError(f"{prefix}: header fps must be a number above 0 or null, got {fps!r}")
    scores = header.get("scores", False)
    if not isinstance(scores, bool):
        raise TakeError(f"{prefix}: header scores must be true or false, got {scores!r}")
    return header


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


_FRAME_KEYS = ("index", "time", "landmarks", "state")


def _parse_frame(line: bytes, lineno: int, complete: bool, size) -> TakeFrame:
    try:
        obj = json.loads(line)
    except UnicodeDecodeError:
        raise _Problem(lineno, "not UTF-8 text") from None
    except (ValueError, RecursionError) as exc:
        if not complete:
            raise _Problem(lineno, "incomplete last line (the recording was cut off)") from None
        if isinstance(exc, json.JSONDecodeError):
            raise _Problem(lineno, f"not valid JSON ({exc.msg} at column {exc.colno})") from None
        raise _Problem(lineno, f"not valid JSON ({_one_line(exc)})") from None
    if not isinstance(obj, dict):
        raise _Problem(lineno, f"expected a frame object, got {type(obj).__name__}")
    for key in _FRAME_KEYS:
        if key not in obj:
            raise _Problem(lineno, f"missing key '{key}'")
    index = obj["index"]
    if not isinstance(index, int) or isinstance(index, bool) or index < 0:
        raise _Problem(lineno, f"index must be a whole number of 0 or more, got {index!r}")
    t = obj["time"]
    if not _is_number(t) or not math.isfinite(t):
        raise _Problem(lineno, f"time must be a finite number, got {t!r}")
    width, height = obj.get("width", size[0]), obj.get("height", size[1])
    if width is None or height is None:
        raise _Problem(lineno, "no image size (neither the frame nor the header gives width and height)")
    if _positive_int_or_none(width) is None or _positive_int_or_none(height) is None:
        raise _Problem(lineno, f"width and height must be whole numbers above 0, got {width!r} x {height!r}")
    landmarks = _parse_landmarks(obj["landmarks"], lineno)
    state = _parse_state(obj["state"], lineno)
    scores = _parse_scores(obj.get("scores"), lineno)
    return TakeFrame(index, float(t), landmarks, state, width, height, scores)


def _parse_landmarks(value, lineno: int) -> np.ndarray | None:
    if value is None:
        return None
    if not isinstance(value, list):
        raise _Problem(lineno, f"landmarks must be a list of {NUM_LANDMARKS} [x, y, z] points or null")
    if len(value) != NUM_LANDMARKS:
        raise _Problem(lineno, f"expected {NUM_LANDMARKS} landmarks, got {len(value)}")
    try:
        a = np.array(value)
    except (ValueError, TypeError):
        a = None
    if a is None or a.shape != (NUM_LANDMARKS, 3):
        raise _Problem(lineno, "expected 3 numbers per landmark")
    if a.dtype.kind not in "iuf":
        raise _Problem(lineno, "landmarks must be numbers")
    if not np.isfinite(a).all():
        raise _Problem(lineno, "non-finite landmark value (NaN or infinity)")
    return a.astype(np.float32)


def _parse_state(value, lineno: int) -> FaceState | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _Problem(lineno, "state must be an object or null")
    fields = {}
    for name in STATE_FIELDS:
        if name not in value:
            raise _Problem(lineno, f"missing key 'state.{name}'")
        shape = _STATE_SHAPES[name]
        try:
            a = np.array(value[name])
        except (ValueError, TypeError):
            a = None
        if a is None or a.shape != shape or a.dtype.kind not in "iuf":
            raise _Problem(lineno, f"state.{name} must be {' x '.join(map(str, shape))} numbers")
        if not np.isfinite(a).all():
            raise _Problem(lineno, f"non-finite value in state.{name}")
        fields[name] = a.astype(np.float64)
    return FaceState(**fields)


def _parse_scores(value, lineno: int) -> dict[str, float] | None:
    if value is None:
        return None
    n = len(ARKIT_NAMES)
    if not isinstance(value, list) or len(value) != n:
        got = f"{len(value)} values" if isinstance(value, list) else type(value).__name__
        raise _Problem(lineno, f"scores must be a list of {n} numbers (null where the model gives none) "
                               f"or null, got {got}")
    if not all(v is None or _is_number(v) for v in value):
        raise _Problem(lineno, "scores must be numbers or null")
    a = np.array([math.nan if v is None else v for v in value], dtype=np.float64)
    given = np.array([v is not None for v in value])
    if not np.isfinite(a[given]).all():
        raise _Problem(lineno, "non-finite value in scores (NaN or infinity; null is for no score)")
    outside = given & ((a < -SCORE_NOISE) | (a > 1.0 + SCORE_NOISE))
    if outside.any():
        i = int(np.flatnonzero(outside)[0])
        raise _Problem(lineno, f"scores must be from 0 to 1, got {value[i]!r} for {ARKIT_NAMES[i]}")
    if not given.any():
        return None
    # Through float32: the model's own precision, so the live run's scores come back exactly.
    a = np.clip(a.astype(np.float32), 0.0, 1.0).astype(np.float64)
    return {name: v for name, v, ok in zip(ARKIT_NAMES, a.tolist(), given.tolist()) if ok}


class TakeFrames:
    """The frames of a take, iterated once. After the iteration, ``error`` is None or
    one line naming the file and line where a damaged take stopped."""

    def __init__(self, take: _TakeFile, *, strict: bool):
        self._take = take
        self._strict = strict
        self._iterating = False
        self.error: str | None = None
        self.count = 0

    def __iter__(self) -> Iterator[TakeFrame]:
        if self._iterating:
            raise TakeError(f"take '{self._take.path}' can only be read once; read it again")
        self._iterating = True
        return self._frames()

    def _frames(self) -> Iterator[TakeFrame]:
        try:
            for frame in self._take.frames():
                self.count += 1
                yield frame
        except _Problem as problem:
            self.error = f"{self._take.label} line {problem.lineno}: {problem.message}"
            if self._strict:
                raise TakeError(self.error) from None
        except OSError as exc:
            self.error = f"{self._take.label}: {exc.strerror or exc}"
            if self._strict:
                raise TakeError(self.error) from None
        finally:
            self._take.close()

    def close(self) -> None:
        self._take.close()

    def __enter__(self) -> "TakeFrames":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_take(path, *, strict: bool = False) -> tuple[dict, TakeFrames]:
    """(header, frames) of the take at ``path``; raises TakeError (one line) when it is
    missing, unreadable or not a take.

    Iterating ``frames`` yields :class:`TakeFrame`. A damaged line, or a gzipped take
    cut off mid-stream, ends the iteration after every frame before it and sets
    ``frames.error`` (or, with ``strict``, raises TakeError there).
    """
    take = _TakeFile(path)
    return take.header, TakeFrames(take, strict=strict)


# --------------------------------------------------------------------------- replay


class ReplaySource(Source):
    """A recorded take as a frame source: landmarks, no image (see open_replay)."""

    static = False

    def __init__(self, path, *, paced: bool):
        self._take = _TakeFile(path)
        self.path = self._take.path
        self.header = self._take.header
        self.name = f"take {self._take.label}"
        self.paced = paced
        fps = self.header.get("fps")
        self.fps = float(fps) if fps else DEFAULT_FPS
        self.width = self.header.get("width") or 0
        self.height = self.header.get("height") or 0
        # The recording's tracker gave the model's scores (the landmarker): frames carry them.
        self.has_scores = self.header.get("scores", False) is True
        self.frame_count = None
        self.dropped = 0
        self.error: str | None = None   # set when a damaged take stopped early
        self.frames = 0                 # frames replayed so far
        self._stop = threading.Event()
        self._started = False
        # Pacing clock and wait, replaceable in tests; they only decide when frames
        # are released, never what the frames hold.
        self._clock = time.monotonic
        self._wait = self._stop.wait

    def __iter__(self) -> Iterator[Frame]:
        if self._started:
            raise SourceError(f"{self.name} can only be read once; open it again")
        self._started = True
        return self._replay()

    def _replay(self) -> Iterator[Frame]:
        start = first_time = None
        try:
            for taken in self._take.frames():
                if self._stop.is_set():
                    return
                if self.paced:
                    if start is None:
                        start, first_time = self._clock(), taken.time
                    delay = start + (taken.time - first_time) - self._clock()
                    if delay > 0 and self._wait(delay):
                        return
                self.frames += 1
                yield Frame(taken.index, taken.time, None, landmarks=taken.landmarks,
                            width=taken.width, height=taken.height, scores=taken.scores)
        except _Problem as problem:
            self.error = f"{self._take.label} line {problem.lineno}: {problem.message}"
        except (OSError, ValueError) as exc:
            if self._stop.is_set():   # closed while suspended: the file is gone, not damaged
                return
            if not isinstance(exc, OSError):
                raise
            self.error = f"{self._take.label}: {exc.strerror or exc}"
        finally:
            self._take.close()

    def close(self) -> None:
        self._stop.set()
        self._take.close()


def open_replay(path, *, paced: bool = True) -> ReplaySource:
    """A take recorded with TakeWriter, as a frame source.

    paced: release frames at the take's own timing (relative to its first frame);
    otherwise as fast as the consumer takes them. Raises TakeError (a SourceError)
    when the file is missing, unreadable or not a take; a damaged line later ends
    the replay after the frames before it and sets ``source.error``.
    """
    return ReplaySource(path, paced=paced)
