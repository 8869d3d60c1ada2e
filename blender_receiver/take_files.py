"""Face take files -> arrays, for Import › Face Take. numpy and the standard library only.

    data = read_take_file(path)       # TakeData, or TakeFileError (one line)

No bpy and no `bridge`: the add-on is installed into Blender on its own, so the
few facts it needs from the tracker (channel names, the VMC bone maths) are
restated here, and tests/test_take_files.py checks them against bridge.

The format is found from the content (the name only says whether a Live Link
export is calibrated); a gzip stream is unpacked whatever its name:

* ``facemocap-take``: our recorded takes, ``.jsonl`` / ``.jsonl.gz``
  (bridge.record). Each frame's ``state`` is the solver's output *before*
  calibration, smoothing and mirroring: what the camera saw, not what the live
  stream sent (replay or export the take for that). Frames with ``state`` null
  (no face) are skipped and counted in ``dropped``: no keys there, so Blender
  interpolates across the gap. Landmarks come out in the landmark stream's
  coordinates (image pixels / image width, float32), as live.
* ``livelink-face``: CSV takes from Epic's Live Link Face app, and our
  ``export --format livelink-csv``. Columns are found by name, never position
  (the app writes JawRight,JawLeft and MouthRight,MouthLeft). The count column is
  ``BlendShapeCount`` (older app) or ``BlendshapeCount`` (newer). Timecode
  ``HH:MM:SS:FF.fff``: FF counts frames at 60 a second and ``.fff`` is
  thousandths of a frame; times are made relative to the first kept row. If FF
  never reaches 30 over whole seconds of timecode, the app counted at the take's
  own rate (24, 25 or 30; reported in notes). Tracking-lost rows (``Timecode,0``)
  and gaps are counted in ``dropped``. Rotations are radians in Live Link's signs
  (bridge.export.livelink_rotations), turned back into our degrees; eye roll is
  not used (the stream's eyes only yaw and pitch). ``_cal`` in the name means the
  app subtracted the neutral (``calibrated``).
* ``facemocap-csv`` / ``facemocap-json``: our ``export --format csv|json``.
  Frames without a face are kept (they hold what the live stream sent: the last
  face, eased to neutral) and counted in notes.

Decisions, the same for every format:
* Shape values are clipped to 0..1, the range shape keys have and live values
  keep (a calibrated Live Link export may dip below 0); the notes count them.
  Head angles are clipped to ±180° and eye angles to ±90°, as the tracker's
  FaceState.sanitized() does before the stream's bone rotations.
* Time must never go back. A row whose time equals the previous row's is
  dropped (the first is kept) and counted: two keys at one frame can't both hold.
* A bad file fails whole, with one line naming the file, and the line and column
  where that applies; nothing is half read.
"""

from __future__ import annotations

import gzip
import json
import math
import os
import re
import warnings
import zlib
from dataclasses import dataclass

import numpy as np

# The add-on's one copy of the tracker's names (a test keeps them equal to bridge.state's).
from .retarget import ARKIT_NAMES, VRM0_NAMES

__all__ = ["ARKIT_NAMES", "BONES", "MAX_FRAMES", "VRM0_NAMES", "TakeData", "TakeFileError",
           "bone_rotations", "read_take_file"]

MAX_FRAMES = 216_000          # one hour at 60 fps
LANDMARK_COUNT = 478
BONES = ("Neck", "Head", "LeftEye", "RightEye")   # bone_rotations() order, as bridge.vmc.BONES
NECK_SHARE = 0.4              # bridge.vmc.NECK_SHARE: the neck carries this share of the head turn

TAKE_FORMAT = "facemocap-take"
TAKE_VERSION = 1
EXPORT_FORMAT = "facemocap-osc export"
LIVELINK_COUNT_COLUMNS = ("blendshapecount",)   # compared in lower case: both spellings
LIVELINK_RATE = 60
LIVELINK_ROTATIONS = ("HeadYaw", "HeadPitch", "HeadRoll", "LeftEyeYaw", "LeftEyePitch", "LeftEyeRoll",
                      "RightEyeYaw", "RightEyePitch", "RightEyeRoll")
CSV_HEAD = ("headYaw", "headPitch", "headRoll")
CSV_EYES = ("leftEyeYaw", "leftEyePitch", "rightEyeYaw", "rightEyePitch")

_BLOCK_BYTES = 8 << 20        # CSVs are parsed this much at a time: memory stays flat
_MAX_LINE_BYTES = 1 << 20     # a take frame line is ~14 KB; a longer "line" is not a take
_HEAD_LIMIT = 1 << 16         # bytes read to find and check the first line
_MAX_ROWS_FACTOR = 2          # rows (kept + skipped) allowed per max_frames
_GZIP_MAGIC = b"\x1f\x8b"
_HEAD_DEG_LIMIT, _EYE_DEG_LIMIT = 180.0, 90.0   # FaceState.sanitized()'s bounds


class TakeFileError(Exception):
    """The file can't be imported; str() is one line naming the file (and line, column)."""


@dataclass
class TakeData:
    path: str
    kind: str            # "facemocap-take" | "livelink-face" | "facemocap-csv" | "facemocap-json"
    times: np.ndarray    # (N,) float64 s from the first kept frame, strictly increasing
    names: tuple[str, ...]   # the value columns' stream names: ARKIT_NAMES, then any VRM0_NAMES
    values: np.ndarray   # (N, len(names)) float64, 0..1
    bones: dict[str, np.ndarray]   # "Neck", "Head", "LeftEye", "RightEye" -> (N, 4) Unity (x, y, z, w)
    landmarks: np.ndarray | None   # (N, 478, 3) float32 landmark-stream coordinates (takes only)
    rate: float | None   # 1 / median frame step
    dropped: int         # frames skipped: lost rows, no-face frames, repeated times, timeline gaps
    calibrated: bool     # a Live Link "_cal" export (neutral already subtracted)
    notes: tuple[str, ...]   # one-line facts for the report

    def __len__(self) -> int:
        return len(self.times)


# --------------------------------------------------------------------------- the bone maths


def _angles_to_quats(yaw, pitch, roll) -> np.ndarray:
    """bridge.state.angles_to_quat on arrays of degrees: R = Ry(yaw) Rx(-pitch) Rz(-roll)."""
    hy, hp, hr = np.radians(yaw) / 2.0, -np.radians(pitch) / 2.0, -np.radians(roll) / 2.0
    sy, cy, sp, cp, sr, cr = np.sin(hy), np.cos(hy), np.sin(hp), np.cos(hp), np.sin(hr), np.cos(hr)
    return np.stack([cy * sp * cr + sy * cp * sr,
                     sy * cp * cr - cy * sp * sr,
                     cy * cp * sr - sy * sp * cr,
                     cy * cp * cr + sy * sp * sr], axis=-1)


def _slerp_from_identity(q: np.ndarray, t: float) -> np.ndarray:
    """bridge.state.slerp_from_identity on rows."""
    q = np.where(q[:, 3:4] < 0.0, -q, q)
    s = np.sqrt(np.sum(q[:, :3] ** 2, axis=1))
    small = s < 1e-9
    half = t * np.arctan2(s, q[:, 3])
    k = np.sin(half) / np.where(small, 1.0, s)
    out = np.concatenate([q[:, :3] * k[:, None], np.cos(half)[:, None]], axis=1)
    out[small] = (0.0, 0.0, 0.0, 1.0)
    return out


def _quat_multiply(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    ax, ay, az, aw = a.T
    bx, by, bz, bw = b.T
    return np.stack([aw * bx + ax * bw + ay * bz - az * by,
                     aw * by - ax * bz + ay * bw + az * bx,
                     aw * bz + ax * by - ay * bx + az * bw,
                     aw * bw - ax * bx - ay * by - az * bz], axis=1)


def _to_unity(q: np.ndarray) -> np.ndarray:
    """bridge.vmc.to_unity_quats: subject frame -> Unity (X mirrored), unit length or identity."""
    q = q * np.array([1.0, -1.0, -1.0, 1.0])
    norm = np.sqrt(np.sum(q * q, axis=1))[:, None]
    ok = np.isfinite(norm) & (norm > 1e-9)
    return np.where(ok, q / np.where(ok, norm, 1.0), np.array([0.0, 0.0, 0.0, 1.0]))


def bone_rotations(head_angles, eye_angles) -> np.ndarray:
    """bridge.vmc.bone_rotations_from for N frames at once: head (N, 3) degrees (yaw,
    pitch, roll), eyes (N, 2, 2) degrees ((yaw, pitch) left, right) -> (N, 4, 4) Unity
    quaternions (x, y, z, w), the bones in BONES order."""
    neck, head = _head_rotations(head_angles)
    left, right = _eye_rotations(eye_angles)
    return np.stack([neck, head, left, right], axis=1)


def _head_rotations(head_angles) -> tuple[np.ndarray, np.ndarray]:
    angles = np.asarray(head_angles, dtype=np.float64).reshape(-1, 3)
    head = _angles_to_quats(angles[:, 0], angles[:, 1], angles[:, 2])
    neck = _slerp_from_identity(head, NECK_SHARE)
    head_local = _quat_multiply(neck * np.array([-1.0, -1.0, -1.0, 1.0]), head)   # Neck * Head == head
    return _to_unity(neck), _to_unity(head_local)


def _eye_rotations(eye_angles) -> tuple[np.ndarray, np.ndarray]:
    eyes = np.asarray(eye_angles, dtype=np.float64).reshape(-1, 2, 2)
    zero = np.zeros(len(eyes))
    return (_to_unity(_angles_to_quats(eyes[:, 0, 0], eyes[:, 0, 1], zero)),
            _to_unity(_angles_to_quats(eyes[:, 1, 0], eyes[:, 1, 1], zero)))


def _bones(head_angles, eye_angles, notes: list, what_head: str, what_eyes: str) -> dict:
    """Bone tracks for the parts that move: none for a part whose angles are absent or all 0.
    Angles are clipped as FaceState.sanitized() clips them before the stream's rotations."""
    bones = {}
    for angles, limit, names, what, part in ((head_angles, _HEAD_DEG_LIMIT, ("Neck", "Head"), what_head, "head/neck"),
                                             (eye_angles, _EYE_DEG_LIMIT, ("LeftEye", "RightEye"), what_eyes, "eye")):
        if angles is None:
            continue
        if not np.any(angles != 0.0):
            notes.append(f"{what} all 0: no {part} keys")
            continue
        rotations = (_head_rotations if part == "head/neck" else _eye_rotations)(np.clip(angles, -limit, limit))
        bones.update(zip(names, rotations))
    return bones


# --------------------------------------------------------------------------- errors and the file


class _File:
    """The open file as bytes (gunzipped when it is gzip), with one-line errors."""

    def __init__(self, path):
        self.path = os.fspath(path)
        self.label = os.path.basename(self.path.rstrip("/\\")) or self.path
        if not os.path.exists(self.path):
            self.fail("file not found")
        if os.path.isdir(self.path):
            self.fail("it is a folder, not a take file")
        try:
            raw = open(self.path, "rb")
        except OSError as exc:
            self.fail(exc.strerror or str(exc))
        self.compressed = raw.read(2) == _GZIP_MAGIC
        raw.seek(0)
        self._raw = raw
        self.stream = gzip.GzipFile(fileobj=raw, mode="rb") if self.compressed else raw

    def fail(self, message: str, line: int | None = None, column: str | None = None):
        where = self.label
        if line is not None:
            where += f" line {line}"
        if column is not None:
            where += f", column {column}" if line is not None else f" column {column}"
        message = " ".join(str(message).split())   # one line, whatever the cause held
        raise TakeFileError(f"{where}: {message}") from None

    def read(self, size: int, line: int | None = None) -> bytes:
        try:
            return self.stream.read(size)
        except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
            what = "ends early (cut off?)" if isinstance(exc, EOFError) else "is damaged"
            self.fail(f"the compressed data {what}", line)
        except OSError as exc:
            self.fail(exc.strerror or str(exc), line)

    def readline(self, line: int) -> bytes:
        try:
            text = self.stream.readline(_MAX_LINE_BYTES + 1)
        except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
            what = "ends early (cut off?)" if isinstance(exc, EOFError) else "is damaged"
            self.fail(f"the compressed data {what}", line)
        except OSError as exc:
            self.fail(exc.strerror or str(exc), line)
        if len(text) > _MAX_LINE_BYTES and not text.endswith(b"\n"):
            self.fail(f"line longer than {_MAX_LINE_BYTES >> 20} MB (not a take file?)", line)
        return text

    def close(self) -> None:
        for stream in (self.stream, self._raw):
            try:
                stream.close()
            except (OSError, EOFError, zlib.error):
                pass


def _first_line(f: _File) -> tuple[bytes, bytes, bool]:
    """(the first line without its newline, the bytes after it, whether a newline
    ended it: not for one JSON document on a single line over 1 MB)."""
    head = f.read(_HEAD_LIMIT, 1)
    if not head:
        f.fail("the file is empty")
    if head.startswith(b"\xef\xbb\xbf"):   # a UTF-8 byte order mark (spreadsheet exports)
        head = head[3:]
    while b"\n" not in head and len(head) < _MAX_LINE_BYTES:
        more = f.read(_HEAD_LIMIT, 1)
        if not more:
            break
        head += more
    end = head.find(b"\n")
    if end < 0:
        if len(head) >= _MAX_LINE_BYTES and not head.lstrip().startswith(b"{"):
            f.fail("not a face take (no line break in the first MB)", 1)
        return head, b"", False
    return head[:end].rstrip(b"\r"), head[end + 1:], True


def _text(f: _File, data: bytes, line: int) -> str:
    if b"\x00" in data:
        f.fail("not a face take (binary data)", line)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        f.fail("not a face take (not UTF-8 text)", line)


def read_take_file(path, *, max_frames: int = MAX_FRAMES, landmarks: bool = True) -> TakeData:
    """Read a face take (see the module doc for the formats) into arrays, or raise
    TakeFileError with one line. ``landmarks=False`` skips a take's landmark points
    (about 5.7 KB a frame in memory)."""
    f = _File(path)
    try:
        first, rest, ended = _first_line(f)
        if first.lstrip().startswith(b"{"):
            header = None
            if ended and first.strip() != b"{":   # a lone brace: JsonWriter's pretty header
                try:
                    header = json.loads(first)
                except (ValueError, RecursionError):
                    pass   # one JSON document over several lines, or not JSON: the export reader says
            if isinstance(header, dict) and header.get("format") == TAKE_FORMAT:
                return _read_take(f, header, rest, max_frames, landmarks)
            if header is not None and not (isinstance(header, dict) and header.get("format") == EXPORT_FORMAT):
                f.fail("not a face take (a JSON file, but not a facemocap-osc take or export)", 1)
            return _read_json_export(f, first, rest, max_frames, ended)
        text = _text(f, first, 1).strip()
        cells = [c.strip().strip('"').strip() for c in text.split(",")]
        if len(cells) >= 2 and cells[0].lower() == "timecode" and cells[1].lower() in LIVELINK_COUNT_COLUMNS:
            return _read_livelink(f, cells, rest, max_frames)
        if cells[:3] == ["frame", "time", "found"]:
            return _read_export_csv(f, cells, rest, max_frames)
        f.fail("not a face take: the first line is not a Live Link Face CSV header (Timecode,"
               "BlendShapeCount,...), a facemocap-osc export (frame,time,found,... or JSON) or a take header", 1)
    finally:
        f.close()


# --------------------------------------------------------------------------- shared steps


def _frames_limit(f: _File, count: int, max_frames: int, line: int | None = None) -> None:
    if count > max_frames:
        f.fail(f"more than {max_frames:,} frames, the limit (one hour at 60 fps is {MAX_FRAMES:,}); "
               "split the take", line)


def _rows_limit(f: _File, count: int, max_frames: int, line: int | None = None) -> None:
    if count > _MAX_ROWS_FACTOR * max_frames:
        f.fail(f"more than {_MAX_ROWS_FACTOR * max_frames:,} rows (the limit is {max_frames:,} frames); "
               "split the take", line)


def _timeline(f: _File, all_times: np.ndarray, all_lines: np.ndarray | None, kept: np.ndarray, notes: list,
              show=lambda t: f"{t:.6g} s"):
    """Checks the file's times and picks the frames to key.

    all_times/all_lines: every row's time and line (None: no lines, name the frame),
    kept or skipped, in file order; kept: which of them carry a frame. Returns (kept
    indices, repeated-time count, frames missing from the timeline)."""
    if len(all_times) > 1:
        steps = np.diff(all_times)
        back = np.flatnonzero(steps < 0)
        if len(back):
            i = int(back[0]) + 1
            message = f"time goes backwards ({show(all_times[i])} after {show(all_times[i - 1])})"
            if all_lines is None:
                f.fail(f"frame {i}: {message}")
            f.fail(message, int(all_lines[i]))
    index = np.flatnonzero(kept)
    repeated = 0
    if len(index) > 1:
        same = np.concatenate([[False], np.diff(all_times[index]) == 0])
        repeated = int(same.sum())
        if repeated:
            notes.append(f"{repeated} row{'s repeat' if repeated != 1 else ' repeats'} the previous frame's "
                         "time: kept the first")
            index = index[~same]
    missing = 0
    unique = np.unique(all_times)
    if len(unique) > 2:
        steps = np.diff(unique)
        nominal = float(np.median(steps))
        long = steps[steps > 1.5 * nominal]
        missing = int(np.sum(np.rint(long / nominal) - 1)) if len(long) else 0
        if missing:
            notes.append(f"{missing} frame{'s' if missing != 1 else ''} missing from the timeline "
                         f"({len(long)} gap{'s' if len(long) != 1 else ''})")
    return index, repeated, missing


def _rate(times: np.ndarray) -> float | None:
    if len(times) < 2:
        return None
    step = float(np.median(np.diff(times)))
    return 1.0 / step if step > 0 else None


def _clip_shapes(values: np.ndarray, notes: list) -> np.ndarray:
    outside = int(np.count_nonzero((values < 0.0) | (values > 1.0)))
    if outside:
        notes.append(f"{outside} value{'s' if outside != 1 else ''} outside 0..1 clipped to it "
                     "(shape keys' range)")
        values = np.clip(values, 0.0, 1.0)
    return values


def _no_frames(f: _File, skipped: int) -> None:
    f.fail("no frames" + (f" with a face ({skipped} without)" if skipped else ""))


# --------------------------------------------------------------------------- CSV tables


_NUMBER = re.compile(rb"\s*[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?\s*|\s*[-+]?(?:nan|inf|infinity)\s*",
                     re.IGNORECASE)
_EMPTY_CELL = re.compile(rb"(?:^|,)[ \t]*(?:,|$)")
_NL_TO_COMMA = bytes.maketrans(b"\n", b",")
_BLANK = 32   # skipped bytes (prefix cells, lost and blank lines) become spaces, which parsing skips


def _csv_blocks(f: _File, rest: bytes):
    """Blocks of whole lines, each ending in a newline."""
    pending = rest
    while True:
        chunk = f.read(_BLOCK_BYTES)
        if chunk:
            pending += chunk
            cut = pending.rfind(b"\n")
            if cut < 0:
                if len(pending) > _MAX_LINE_BYTES:
                    f.fail(f"a line longer than {_MAX_LINE_BYTES >> 20} MB")
                continue
            block, pending = pending[:cut + 1], pending[cut + 1:]
        else:
            block, pending = pending, b""
            if not block.strip():
                return
            if not block.endswith(b"\n"):   # the last line may lack its newline
                block += b"\n"
        if b"\r" in block:
            block = block.replace(b"\r\n", b"\n")
        yield block
        if not chunk:
            return


def _ranges(starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Every index in the inclusive ranges [starts[i], ends[i]], concatenated."""
    lengths = ends - starts + 1
    if not len(lengths) or lengths.sum() == 0:
        return np.zeros(0, np.int64)
    offsets = np.repeat(starts - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths)
    return np.arange(lengths.sum()) + offsets


def _locate_bad_cell(f: _File, rows: list, lines, columns: list) -> None:
    for row, line in zip(rows, lines):
        for cell, column in zip(row.split(b","), columns):
            if not _NUMBER.fullmatch(cell):
                shown = cell.strip().decode("utf-8", "replace")
                f.fail("empty cell" if not shown else f"not a number ({shown[:40]!r})", int(line), column)
    f.fail("unreadable numbers")   # not reached: the pattern and numpy agree on every cell


class _Table:
    """A CSV's rows, parsed a block at a time, vectorised: numpy finds every comma and
    newline once; each row is checked to have the header's cells; the first
    ``prefix`` cells (Live Link's timecode) are kept as text positions; tracking-lost
    rows ("Timecode,0", when ``lost_ok``) and blank lines are skipped. Cells written
    with a fixed number of decimals per column (the app's and our writers') are read
    as integers over 10**decimals, which is the correctly rounded float, exactly
    float(cell), at about twice numpy's float parsing speed; anything else goes
    through numpy's float parser, then the exact checks."""

    def __init__(self, f: _File, header: list, prefix: int, lost_ok: bool, max_frames: int):
        self.f, self.header, self.prefix, self.lost_ok, self.max_frames = f, header, prefix, lost_ok, max_frames
        self.cells = len(header)
        self.columns = header[prefix:]
        self.decimals = None
        self.values, self.full_lines = [], []
        self.codes, self.code_lines, self.kept = [], [], []   # prefix rows (full and lost), in file order
        self.full_count = self.row_count = 0

    def add_block(self, first: int, data: bytes) -> int:
        """Reads one block whose first line is line `first`; returns its line count."""
        f, cells, prefix = self.f, self.cells, self.prefix
        buf = np.frombuffer(data, dtype=np.uint8)
        nl = np.flatnonzero(buf == 10)
        starts = np.concatenate([[0], nl[:-1] + 1])
        commas = np.flatnonzero(buf == 44)
        c0 = np.searchsorted(commas, starts)
        ncomma = np.searchsorted(commas, nl) - c0
        full = ncomma == cells - 1
        lost = np.zeros(len(nl), bool)
        for i in np.flatnonzero(~full).tolist():   # rare: every such line is looked at in Python
            line = data[starts[i]:nl[i]]
            if self.lost_ok and ncomma[i] == 1 and line.split(b",")[1].strip() == b"0":
                lost[i] = True   # tracking lost: "Timecode,0"
            elif line.strip():
                have = int(ncomma[i]) + 1
                f.fail(f"{'truncated row' if have < cells else 'too many cells'}: {have} cell"
                       f"{'s' if have != 1 else ''}, the header has {cells}",
                       first + i, self.header[have] if have < cells else None)
        rows = np.flatnonzero(full)
        n, m = len(rows), cells - prefix
        self.full_count += n
        self.row_count += n + int(lost.sum())
        _frames_limit(f, self.full_count, self.max_frames, first + int(rows[-1]) if n else None)
        _rows_limit(f, self.row_count, self.max_frames, first)
        if prefix:
            with_code = np.flatnonzero(full | lost)
            self.codes.append(self._timecodes(buf, starts[with_code], commas[c0[with_code]], first + with_code))
            self.code_lines.append(first + with_code)
            self.kept.append(full[with_code])
        if not n:
            return len(nl)
        ends = np.concatenate([commas[(c0[rows] + prefix)[:, None] + np.arange(m - 1)], nl[rows][:, None]], axis=1)
        cell_starts = np.empty_like(ends)
        cell_starts[:, 1:] = ends[:, :-1] + 1
        cell_starts[:, 0] = commas[c0[rows] + prefix - 1] + 1 if prefix else starts[rows]
        lines = first + rows
        if self.decimals is None:
            cells0 = data[cell_starts[0, 0]:ends[0, -1]].split(b",")
            self.decimals = np.array([len(c) - c.find(b".") - 1 if b"." in c else 0 for c in cells0])
        # Blank what isn't a value: the prefix cells, and every skipped line (with its newline).
        work = bytearray(data)
        blank = [_ranges(starts[rows], cell_starts[:, 0] - 1)] if prefix else []
        skipped = np.flatnonzero(~full)
        blank.append(_ranges(starts[skipped], nl[skipped]))
        np.frombuffer(work, dtype=np.uint8)[np.concatenate(blank)] = _BLANK
        out = self._fixed_point(data, work, ends, cell_starts, n, m)
        if out is None:
            out = self._floats(work, n, m)
        if out is None:
            _locate_bad_cell(f, [data[a:b] for a, b in zip(cell_starts[:, 0], ends[:, -1])], lines, self.columns)
        bad = ~np.isfinite(out)
        if bad.any():
            r, c = (int(v[0]) for v in np.nonzero(bad))
            cell = data[cell_starts[r, c]:ends[r, c]].strip().decode("ascii", "replace")
            f.fail(f"not a finite number ({cell[:40]!r})", int(lines[r]), self.columns[c])
        self.values.append(out)
        self.full_lines.append(lines)
        return len(nl)

    def _fixed_point(self, data, work, ends, cell_starts, n, m):
        decimals = self.decimals
        if len(decimals) != m or decimals.max() > 15 or b" " in data or b"\t" in data:
            return None
        widths = ends - cell_starts
        dotted = decimals > 0
        # Each dotted cell's one dot sits `decimals` before its end, no other dot exists,
        # and the integer stays exact (below 2**53: at most 15 digits and a sign).
        if (widths < np.where(dotted, decimals + 1, 1)).any() or widths.max() > 16:
            return None
        w = np.frombuffer(work, dtype=np.uint8)
        if work.count(b".") != n * int(dotted.sum()) or not (w[ends[:, dotted] - decimals[dotted] - 1] == 46).all():
            return None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                ints = np.fromstring(bytes(work).translate(_NL_TO_COMMA, b" ."), dtype=np.int64, sep=",")
            except ValueError:
                return None
        if ints.size != n * m:
            return None
        return ints.reshape(n, m) / (10.0 ** decimals)

    def _floats(self, work, n, m):
        text = bytes(work.translate(_NL_TO_COMMA)).rstrip(b" \t,")
        if _EMPTY_CELL.search(text):   # numpy would read a blank cell as 0 or -1, silently
            return None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")   # numpy 1.x warns (2.x raises) where a cell isn't a number
            try:
                out = np.fromstring(text, dtype=np.float64, sep=",")
            except ValueError:
                return None
        # fromstring stops early at junk, and reads "0x1" as 0: every byte must belong to a number.
        if out.size != n * m or text.translate(None, b"0123456789.,-+eE \tnaifNAIFty"):
            return None
        return out.reshape(n, m)

    def _timecodes(self, buf, starts, ends, lines):
        """(whole seconds, frames and their fraction) of HH:MM:SS:FF.fff timecodes."""
        f = self.f
        n = len(starts)
        if n and (ends - starts == 15).all():   # the app's and our fixed form: vectorised
            a = buf[starts[:, None] + np.arange(15)]
            d = a[:, [0, 1, 3, 4, 6, 7, 9, 10, 12, 13, 14]].astype(np.int64) - 48
            if (a[:, [2, 5, 8]] == 58).all() and (a[:, 11] == 46).all() and ((d >= 0) & (d <= 9)).all():
                minutes, seconds = d[:, 2] * 10 + d[:, 3], d[:, 4] * 10 + d[:, 5]
                bad = np.flatnonzero((minutes >= 60) | (seconds >= 60))
                if len(bad):
                    i = int(bad[0])
                    f.fail(f"timecode {bytes(a[i]).decode()!r} has minutes or seconds above 59",
                           int(lines[i]), "Timecode")
                secs = (d[:, 0] * 10 + d[:, 1]) * 3600 + minutes * 60 + seconds
                frames = d[:, 6] * 10 + d[:, 7] + (d[:, 8] * 100 + d[:, 9] * 10 + d[:, 10]) / 1000.0
                return secs, frames
        secs, frames = np.zeros(n, np.int64), np.zeros(n)
        for i in range(n):
            code = bytes(buf[starts[i]:ends[i]])
            match = _TIMECODE.fullmatch(code)
            if match is None:
                shown = code.strip().decode("utf-8", "replace")
                if shown == "NeutralPose":   # a take folder's _neutral.csv: one pose, no timeline
                    f.fail("this is a neutral-pose snapshot, not a take: pick the take's CSV", int(lines[i]))
                f.fail(f"not a timecode HH:MM:SS:FF.fff ({shown[:40]!r})", int(lines[i]), "Timecode")
            h, mi, s, ff, frac = match.groups()
            if int(mi) >= 60 or int(s) >= 60:
                f.fail(f"timecode {code.decode()!r} has minutes or seconds above 59", int(lines[i]), "Timecode")
            secs[i] = int(h) * 3600 + int(mi) * 60 + int(s)
            frames[i] = int(ff) + (int(frac) / 10 ** len(frac) if frac else 0.0)
        return secs, frames

    def read(self, rest: bytes) -> "_Table":
        first = 2
        for block in _csv_blocks(self.f, rest):
            first += self.add_block(first, block)
        return self

    def table(self) -> tuple[np.ndarray, np.ndarray]:
        if not self.values:
            return np.zeros((0, self.cells - self.prefix)), np.zeros(0, np.int64)
        return np.concatenate(self.values), np.concatenate(self.full_lines)


def _header_columns(f: _File, cells: list) -> dict:
    index = {}
    for i, name in enumerate(cells):
        key = name.lower()
        if not name:
            f.fail(f"header cell {i + 1} is empty", 1)
        if key in index:
            f.fail(f"header names column {name!r} twice", 1)
        index[key] = i
    return index


# --------------------------------------------------------------------------- Live Link Face CSV

_TIMECODE = re.compile(rb"\s*(\d{1,2}):(\d{2}):(\d{2}):(\d{1,3})(?:\.(\d{1,6}))?\s*")
_TIMECODE_RATES = (24, 25, 30)   # what FF counts at when it never reaches 30


def _timecode_rate(f: _File, secs: np.ndarray, frames: np.ndarray, lines: np.ndarray, notes: list) -> int:
    top = int(np.floor(frames.max()))
    if top >= LIVELINK_RATE:
        i = int(np.argmax(frames))
        f.fail(f"timecode frame {top} is not below {LIVELINK_RATE}", int(lines[i]), "Timecode")
    # Whole seconds seen = at least three distinct second values (first and last may be partial).
    if top >= 30 or len(np.unique(secs)) < 3:
        return LIVELINK_RATE
    rate = next(r for r in _TIMECODE_RATES if top < r)
    notes.append(f"timecode frames counted at {rate} a second (FF never reached 30)")
    return rate


def _read_livelink(f: _File, header: list, rest: bytes, max_frames: int) -> TakeData:
    notes: list[str] = []
    index = _header_columns(f, header)
    shape_cols = []
    for name in ARKIT_NAMES:
        if name.lower() not in index:
            f.fail(f"no {name[0].upper() + name[1:]} column (a Live Link Face CSV has all 52 ARKit shapes)", 1)
        shape_cols.append(index[name.lower()] - 1)
    rotation_cols = {name: index[name.lower()] - 1 for name in LIVELINK_ROTATIONS if name.lower() in index}
    known = ({n.lower() for n in ARKIT_NAMES} | {n.lower() for n in LIVELINK_ROTATIONS}
             | {"timecode", "blendshapecount"})
    extra = [c for c in header if c.lower() not in known]
    if extra:
        notes.append(f"columns not used: {', '.join(extra[:6])}{' ...' if len(extra) > 6 else ''}")
    if header[1] == "BlendshapeCount":
        notes.append("Live Link Face CSV (BlendshapeCount: the newer app)")

    table = _Table(f, header, 1, True, max_frames).read(rest)
    values, value_lines = table.table()
    if not len(values):
        lost = sum(len(k) for k in table.kept)
        f.fail("no frames" + (f" ({lost} tracking-lost rows only)" if lost else ""))
    counts = values[:, 0]
    bad = np.flatnonzero((counts != np.floor(counts)) | (counts < 0))
    if len(bad):
        f.fail(f"not a whole number ({counts[bad[0]]:g})", int(value_lines[bad[0]]), header[1])
    secs = np.concatenate([c[0] for c in table.codes])
    frames = np.concatenate([c[1] for c in table.codes])
    lines = np.concatenate(table.code_lines)
    kept = np.concatenate(table.kept)
    rate = _timecode_rate(f, secs, frames, lines, notes)
    seconds = secs + frames / rate
    # A take across midnight: the time of day starts again (a step back of over 12 h).
    wraps = np.concatenate([[0], np.cumsum(np.diff(seconds) < -43200.0)])
    seconds = seconds + 86400.0 * wraps

    def show(t):
        t = t % 86400.0
        whole = int(t)
        return f"{whole // 3600:02d}:{whole // 60 % 60:02d}:{whole % 60:02d}:{(t - whole) * rate:06.3f}"

    lost = int(np.count_nonzero(~kept))
    if lost:
        notes.insert(0, f"{lost} tracking-lost row{'s' if lost != 1 else ''} (Timecode,0) skipped")
    order, repeated, missing = _timeline(f, seconds, lines, kept, notes, show)
    if len(order) != len(values):   # kept rows -> rows of `values`
        values = values[np.searchsorted(np.flatnonzero(kept), order)]
    times = seconds[order] - seconds[order[0]]
    shapes = _clip_shapes(values[:, shape_cols], notes)

    def column(name):
        return values[:, rotation_cols[name]]

    # Live Link's radians and signs (bridge.export.livelink_rotations) -> our degrees.
    head = eyes = None
    if all(n in rotation_cols for n in ("HeadYaw", "HeadPitch", "HeadRoll")):
        head = np.degrees(np.stack([-column("HeadYaw"), -column("HeadPitch"), column("HeadRoll")], axis=1))
    elif any(n.startswith("Head") for n in rotation_cols):
        notes.append("incomplete head rotation columns: no head/neck keys")
    if all(n in rotation_cols for n in ("LeftEyeYaw", "LeftEyePitch", "RightEyeYaw", "RightEyePitch")):
        eyes = np.degrees(np.stack([-column("LeftEyeYaw"), -column("LeftEyePitch"),
                                    -column("RightEyeYaw"), -column("RightEyePitch")], axis=1)).reshape(-1, 2, 2)
        rolls = [column(n) for n in ("LeftEyeRoll", "RightEyeRoll") if n in rotation_cols]
        if rolls and any(np.any(r != 0.0) for r in rolls):
            most = max(float(np.degrees(np.abs(r).max())) for r in rolls)
            notes.append(f"eye roll not used (up to {most:.2g}°): the stream's eyes only yaw and pitch")
    elif any(n.startswith(("Left", "Right")) for n in rotation_cols):
        notes.append("incomplete eye rotation columns: no eye keys")
    if not rotation_cols:
        notes.append("no rotation columns: no bone keys")
    bones = _bones(head, eyes, notes, "head rotation columns", "eye rotation columns")
    stem = os.path.basename(f.path).lower().rsplit(".", 1)[0]
    calibrated = re.search(r"_cal(?![a-z0-9])", stem) is not None
    if calibrated:
        notes.append("calibrated export (_cal): the app already subtracted the neutral face")
    return TakeData(f.path, "livelink-face", times, ARKIT_NAMES, shapes, bones, None, _rate(times),
                    lost + repeated + missing, calibrated, tuple(notes))


# --------------------------------------------------------------------------- our CSV export


def _read_export_csv(f: _File, header: list, rest: bytes, max_frames: int) -> TakeData:
    notes: list[str] = []
    index = _header_columns(f, header)
    for name in ARKIT_NAMES:
        if name.lower() not in index:
            f.fail(f"no {name} column (a facemocap-osc CSV export has every ARKit shape)", 1)
    vrm = tuple(n for n in VRM0_NAMES if n.lower() in index)
    names = ARKIT_NAMES + vrm
    table, lines = _Table(f, header, 0, False, max_frames).read(rest).table()
    if not len(table):
        _no_frames(f, 0)
    absent = int(np.count_nonzero(table[:, index["found"]] == 0))
    order, repeated, missing = _timeline(f, table[:, index["time"]], lines, np.ones(len(table), bool), notes)
    table = table[order]
    times = table[:, index["time"]] - table[0, index["time"]]
    if absent:
        notes.insert(0, f"{absent} frame{'s' if absent != 1 else ''} without a face "
                        "(kept: the values the live stream sent)")
    values = _clip_shapes(table[:, [index[n.lower()] for n in names]], notes)
    head = eyes = None
    if all(n.lower() in index for n in CSV_HEAD):
        head = table[:, [index[n.lower()] for n in CSV_HEAD]]
    if all(n.lower() in index for n in CSV_EYES):
        eyes = table[:, [index[n.lower()] for n in CSV_EYES]].reshape(-1, 2, 2)
    bones = _bones(head, eyes, notes, "head angles", "eye angles")
    return TakeData(f.path, "facemocap-csv", times, names, values, bones, None, _rate(times),
                    repeated + missing, False, tuple(notes))


# --------------------------------------------------------------------------- our JSON export


_JSON_HEAD = ("yaw", "pitch", "roll")
_JSON_EYES = ("leftYaw", "leftPitch", "rightYaw", "rightPitch")


def _number(f: _File, value, what: str, line: int | None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        f.fail(f"{what} must be a number, got {json.dumps(value)[:40]}", line)
    if not math.isfinite(value):
        f.fail(f"{what} is not a finite number ({value!r})", line)
    return float(value)


class _Frames:
    """Per-frame rows gathered into growing numpy blocks (no Python list per number)."""

    def __init__(self, width: int, dtype=np.float64, shape=()):
        self.shape = ((width,) if width else ()) + tuple(shape)
        self.dtype = dtype
        self.blocks: list[np.ndarray] = []
        self.count = 0
        self._used = self._room = 0   # rows used in, and size of, the last block

    def add(self, row) -> None:
        if self._used == self._room:
            self._room = min(max(256, self.count // 2), 1 << 14)
            self.blocks.append(np.empty((self._room,) + self.shape, self.dtype))
            self._used = 0
        self.blocks[-1][self._used] = row
        self._used += 1
        self.count += 1

    def array(self) -> np.ndarray:
        if not self.blocks:
            return np.empty((0,) + self.shape, self.dtype)
        self.blocks[-1] = self.blocks[-1][:self._used]
        out = np.concatenate(self.blocks) if len(self.blocks) > 1 else self.blocks[0]
        self.blocks, self._used, self._room = [out], len(out), len(out)
        return out


def _json_frame(f: _File, record, line: int | None, frame: int, vrm_names: tuple):
    """(time, found, values, head, eyes) of one JsonWriter frame; errors name its line,
    or (a document read whole) its place in the list."""
    where = "" if line is not None else f"frame {frame}: "
    if not isinstance(record, dict):
        f.fail(f"{where}a frame must be a JSON object", line)
    for key in ("time", "found", "blendshapes", "head", "eyes"):
        if key not in record:
            f.fail(f"{where}frame has no {key!r}", line)
    time = _number(f, record["time"], f"{where}time", line)

    def group(key, names):
        d = record.get(key)
        if not isinstance(d, dict):
            f.fail(f"{where}{key!r} must be an object", line)
        out = []
        for name in names:
            if name not in d:
                f.fail(f"{where}{key} has no {name!r}", line)
            out.append(_number(f, d[name], f"{where}{key}.{name}", line))
        return out

    values = group("blendshapes", ARKIT_NAMES) + (group("vrm", vrm_names) if vrm_names else [])
    return time, bool(record["found"]), values, group("head", _JSON_HEAD), group("eyes", _JSON_EYES)


def _read_json_export(f: _File, first: bytes, rest: bytes, max_frames: int, ended: bool = True) -> TakeData:
    """JsonWriter's layout is read a frame line at a time (an hour's document would
    take gigabytes as one JSON value); anything else written as valid JSON is
    parsed whole. ended: a newline ended `first` (else it is the start of a
    single-line document)."""
    lines_before = [first]
    pending = rest
    line = 1

    def next_line():
        nonlocal pending, line
        while b"\n" not in pending:
            chunk = f.read(_HEAD_LIMIT, line + 1)
            if not chunk:
                out, pending = pending, b""
                line += 1
                return out if out else None
            pending += chunk
            if len(pending) > _MAX_LINE_BYTES and b"\n" not in pending:
                f.fail(f"line longer than {_MAX_LINE_BYTES >> 20} MB", line + 1)
        out, pending = pending.split(b"\n", 1)
        line += 1
        return out.rstrip(b"\r")

    def whole_document(seen: list):
        """Not our writer's layout: the document parsed whole, (its frames, itself)."""
        body = b"\n".join(seen) + (b"\n" if ended else b"") + pending
        while True:
            chunk = f.read(_BLOCK_BYTES)
            if not chunk:
                break
            body += chunk
            if len(body) > 64 * _BLOCK_BYTES:
                f.fail("a JSON export over 512 MB not in facemocap-osc's own layout")
        try:
            doc = json.loads(_text(f, body, 1))
        except ValueError as exc:
            f.fail(f"not valid JSON ({getattr(exc, 'msg', exc)})", getattr(exc, "lineno", None))
        if not isinstance(doc, dict) or doc.get("format") != EXPORT_FORMAT:
            f.fail("not a facemocap-osc export (no \"format\": \"facemocap-osc export\")", 1)
        records = doc.get("frames")
        if not isinstance(records, list):
            f.fail("\"frames\" must be a list")
        _frames_limit(f, len(records), max_frames)
        return records, doc

    streamed = False
    while first.strip() == b"{":
        text = next_line()
        if text is None:
            break
        if text == b' "frames": [':   # JsonWriter: one-space indent, then a frame per line
            streamed = True
            break
        lines_before.append(text)
        if len(lines_before) > 10_000:
            break
    records = first_record = None
    if streamed:
        frames_line = text
        while True:
            text = next_line()
            if text is None or text.strip():
                break
        first_line = text
        if text is not None and not text.strip().startswith(b"]"):
            try:
                first_record = json.loads(_text(f, text.strip().rstrip(b","), line))
            except ValueError:   # not a frame a line (re-saved with indent=1): read it whole
                streamed = False
                lines_before += [frames_line, text]
    if not streamed:
        records, head_doc = whole_document(lines_before)
    else:
        try:
            head_doc = json.loads(_text(f, b"\n".join(lines_before), 1).rstrip().rstrip(",") + "}")
        except ValueError as exc:
            f.fail(f"the export's header is not valid JSON ({getattr(exc, 'msg', exc)})", 1)
        if not isinstance(head_doc, dict) or head_doc.get("format") != EXPORT_FORMAT:
            f.fail("not a facemocap-osc export (no \"format\": \"facemocap-osc export\")", 1)
    version = head_doc.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version > 1:
        f.fail(f"export format version {version!r} is not one this add-on reads (1)", 1)

    vrm_names = None
    times, lines = _Frames(0), _Frames(0, np.int64)
    values = heads = eyes = None
    absent = 0

    def add(record, at):
        nonlocal vrm_names, values, heads, eyes, absent
        if vrm_names is None:
            vrm = record.get("vrm") if isinstance(record, dict) else None
            vrm_names = tuple(n for n in VRM0_NAMES if isinstance(vrm, dict) and n in vrm)
            values = _Frames(len(ARKIT_NAMES) + len(vrm_names))
            heads, eyes = _Frames(3), _Frames(4)
        t, found, v, h, e = _json_frame(f, record, at, times.count, vrm_names)
        times.add(t)
        lines.add(at if at is not None else -1)
        values.add(v)
        heads.add(h)
        eyes.add(e)
        absent += not found

    if records is not None:
        for record in records:
            add(record, None)
        tail = head_doc
    else:
        text = first_line
        if first_record is not None:
            add(first_record, line)
            text = next_line()
        while True:
            if text is None:
                f.fail("the export ends inside its frame list (cut off?)", line)
            stripped = text.strip()
            if stripped.startswith(b"]"):
                break
            if stripped:
                try:
                    record = json.loads(_text(f, stripped.rstrip(b","), line))
                except ValueError as exc:
                    f.fail(f"not valid JSON ({getattr(exc, 'msg', exc)})", line)
                add(record, line)
                _frames_limit(f, times.count, max_frames, line)
            text = next_line()
        tail_text = stripped[1:].lstrip(b",") + b"\n" + pending
        while True:
            chunk = f.read(_HEAD_LIMIT, line)
            if not chunk:
                break
            tail_text += chunk
            if len(tail_text) > _MAX_LINE_BYTES:
                f.fail("unexpected data after the frame list", line)
        try:
            tail = json.loads("{" + _text(f, tail_text, line).strip().lstrip(",").strip())
        except ValueError:
            f.fail("the export's end after the frame list is not valid JSON (cut off?)", line)
        if not isinstance(tail, dict):
            f.fail("the export's end after the frame list is not valid JSON", line)
    count = tail.get("frameCount") if isinstance(tail, dict) else None
    if count is not None and count != times.count:
        f.fail(f"frameCount says {count} frames, the list holds {times.count} (damaged?)")
    if not times.count:
        _no_frames(f, 0)

    notes: list[str] = []
    t = times.array()
    order, repeated, missing = _timeline(f, t, lines.array() if records is None else None,
                                         np.ones(len(t), bool), notes)
    if absent:
        notes.insert(0, f"{absent} frame{'s' if absent != 1 else ''} without a face "
                        "(kept: the values the live stream sent)")
    names = ARKIT_NAMES + vrm_names
    v = _clip_shapes(values.array()[order], notes)
    bones = _bones(heads.array()[order], eyes.array()[order].reshape(-1, 2, 2), notes, "head angles", "eye angles")
    t = t[order]
    return TakeData(f.path, "facemocap-json", t - t[0], names, v, bones, None, _rate(t - t[0]),
                    repeated + missing, False, tuple(notes))


# --------------------------------------------------------------------------- our takes (.jsonl[.gz])


def _take_array(f: _File, value, shape: tuple, what: str, line: int) -> np.ndarray:
    try:
        a = np.array(value, dtype=np.float64)
    except (ValueError, TypeError):
        a = None
    if a is None or a.shape != shape:
        f.fail(f"{what} must be {' x '.join(map(str, shape))} numbers", line)
    if not np.isfinite(a).all():
        f.fail(f"non-finite value in {what}", line)
    return a


_LANDMARKS_KEY, _STATE_KEY = b',"landmarks":', b',"state":'
_DECODER = json.JSONDecoder()


def _fast_frame(text: bytes, want_landmarks: bool):
    """TakeWriter's own line layout, read without JSON-parsing its 1,434 landmark
    numbers (4/5 of the time): {"index":..,"time":..[,"width":..,"height":..],
    "landmarks":[[x,y,z],...] or null,"state":{...} or null[,"scores":[...]]}.
    Returns (the frame without "landmarks", landmarks: an array, None, or "skip"),
    or None when the line is laid out otherwise (the strict JSON path decides)."""
    i = text.find(_LANDMARKS_KEY)
    j = text.find(_STATE_KEY, i + 1)
    if i < 0 or j < 0 or not text.startswith(b'{"index":'):
        return None
    try:
        obj = json.loads(text[:i] + b"}")
        state, end = _DECODER.raw_decode(text[j + len(_STATE_KEY):].decode("ascii"))
        tail = text[j + len(_STATE_KEY) + end:]
        if tail != b"}":
            extra = json.loads(b"{" + tail[1:]) if tail.startswith(b",") else None
            if not isinstance(extra, dict) or "landmarks" in extra or "state" in extra:
                return None
    except (ValueError, RecursionError):
        return None
    if not isinstance(obj, dict) or "landmarks" in obj or "state" in obj:
        return None
    obj["state"] = state
    lm = text[i + len(_LANDMARKS_KEY):j]
    if lm == b"null":
        return obj, None
    if not want_landmarks:
        return obj, "skip"
    inner = lm[2:-2]
    if (not lm.startswith(b"[[") or not lm.endswith(b"]]") or inner.count(b"],[") != LANDMARK_COUNT - 1
            or inner.translate(None, b"0123456789.,-][")):   # only the writer's %.4f numbers
        return None
    flat = inner.replace(b"],[", b",")
    if b",," in flat or flat.startswith(b",") or flat.endswith(b",") or b"[" in flat or b"]" in flat:
        return None
    a = _four_decimals(flat)
    if a is None:   # not the writer's %.4f: numpy's float parser, sizes checked
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                a = np.fromstring(flat, dtype=np.float64, sep=",")
            except ValueError:
                return None
    if a.size != 3 * LANDMARK_COUNT:   # e.g. a cell "1-2": the strict path names it
        return None
    return obj, a.reshape(LANDMARK_COUNT, 3)


def _four_decimals(flat: bytes) -> np.ndarray | None:
    """Comma-separated numbers all written with 4 decimals (TakeWriter's landmarks), as
    integers over 10**4: the correctly rounded floats, about twice as fast. None
    unless every number has its one dot 4 places before its end."""
    buf = np.frombuffer(flat + b",", dtype=np.uint8)
    ends = np.flatnonzero(buf == 44)
    if len(ends) != 3 * LANDMARK_COUNT or flat.count(b".") != len(ends) or ends[0] < 5:
        return None
    if not (buf[ends - 5] == 46).all() or not (np.diff(ends) >= 6).all():
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            ints = np.fromstring(flat.replace(b".", b""), dtype=np.int64, sep=",")
        except ValueError:
            return None
    return ints / 1e4 if ints.size == len(ends) else None


def _positive_int(value) -> int | None:
    return int(value) if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _read_take(f: _File, header: dict, rest: bytes, max_frames: int, want_landmarks: bool) -> TakeData:
    version = header.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        f.fail(f"the take header has no valid format version ({version!r})", 1)
    if version > TAKE_VERSION:
        f.fail(f"take format version {version} is newer than this add-on reads ({TAKE_VERSION})", 1)
    size = (_positive_int(header.get("width")), _positive_int(header.get("height")))
    notes = ["take values are the solver's, before calibration and smoothing (export or replay the "
             "take for the streamed values)"]
    times, all_times, all_lines = _Frames(0), _Frames(0), _Frames(0, np.int64)
    kept = _Frames(0, bool)
    values = _Frames(len(ARKIT_NAMES) + len(VRM0_NAMES))
    heads, eyes = _Frames(3), _Frames(4)
    points = _Frames(0, np.float32, (LANDMARK_COUNT, 3)) if want_landmarks else None
    no_points = no_size = 0
    line = 1
    pending = rest
    while True:
        line += 1
        if b"\n" in pending:
            text, pending = pending.split(b"\n", 1)
            complete = True
        else:
            more = f.readline(line)
            text = pending + more
            pending = b""
            complete = text.endswith(b"\n")
            text = text.rstrip(b"\n")
            if not text and not complete:
                break
        if not text.strip():
            continue
        fast = _fast_frame(text, points is not None) if complete else None
        if fast is not None:
            obj, lm = fast
        else:
            obj, lm = _strict_frame(f, text, line, complete), None
        t = _number(f, obj["time"], "time", line)
        all_times.add(t)
        all_lines.add(line)
        _rows_limit(f, all_times.count, max_frames, line)
        state = obj["state"]
        if state is None:   # no face: no keys, Blender interpolates over the gap
            kept.add(False)
            continue
        if not isinstance(state, dict):
            f.fail("state must be an object or null", line)
        parts = []
        for name, shape in (("blendshapes", (len(ARKIT_NAMES),)), ("vrm", (len(VRM0_NAMES),)),
                            ("head_angles", (3,)), ("eye_angles", (2, 2))):
            if name not in state:
                f.fail(f"missing key 'state.{name}'", line)
            parts.append(_take_array(f, state[name], shape, f"state.{name}", line))
        kept.add(True)
        times.add(t)
        _frames_limit(f, times.count, max_frames, line)
        values.add(np.concatenate(parts[:2]))
        heads.add(parts[2])
        eyes.add(parts[3].ravel())
        if points is not None:
            if fast is None:
                lm = obj["landmarks"]
                if lm is not None:
                    lm = _take_array(f, lm, (LANDMARK_COUNT, 3), "landmarks", line)
            width = _positive_int(obj.get("width", size[0]))
            if lm is None:
                no_points += 1
                points.add(np.nan)
            elif width is None:
                no_size += 1
                points.add(np.nan)
            else:
                # As bridge.outputs.framing.LandmarkChunks: image pixels / image width, float32.
                points.add((lm / float(width)).astype(np.float32))
    return _take_data(f, notes, times, all_times, all_lines, kept, values, heads, eyes, points, no_points, no_size)


def _strict_frame(f: _File, text: bytes, line: int, complete: bool) -> dict:
    """A frame line parsed as plain JSON, every key checked; errors name the line."""
    try:
        obj = json.loads(text)
    except UnicodeDecodeError:
        f.fail("not UTF-8 text", line)
    except (ValueError, RecursionError) as exc:
        if not complete:
            f.fail("incomplete last line (the recording was cut off)", line)
        f.fail(f"not valid JSON ({getattr(exc, 'msg', type(exc).__name__)})", line)
    if not isinstance(obj, dict):
        f.fail("expected a frame object", line)
    for key in ("index", "time", "landmarks", "state"):
        if key not in obj:
            f.fail(f"missing key {key!r}", line)
    return obj


def _take_data(f: _File, notes: list, times, all_times, all_lines, kept, values, heads, eyes, points,
               no_points: int, no_size: int) -> TakeData:
    """The take's gathered frames -> TakeData."""
    n_all = all_times.count
    if not times.count:
        _no_frames(f, n_all)
    t_all = all_times.array()
    kept_mask = kept.array()
    skipped = int(np.count_nonzero(~kept_mask))
    if skipped:
        notes.append(f"{skipped} frame{'s' if skipped != 1 else ''} without a face skipped (no keys there)")
    index, repeated, missing = _timeline(f, t_all, all_lines.array(), kept_mask, notes)
    rows = np.searchsorted(np.flatnonzero(kept_mask), index)
    t = t_all[index]
    times_rel = t - t[0]
    v = _clip_shapes(values.array()[rows], notes)
    bones = _bones(heads.array()[rows], eyes.array()[rows].reshape(-1, 2, 2), notes, "head angles", "eye angles")
    landmarks = None
    if points is not None:
        if no_points or no_size:
            why = (f"{no_points} face frame{'s' if no_points != 1 else ''} without landmarks" if no_points
                   else "no image width in the take")
            notes.append(f"no landmark keys: {why}")
        else:
            landmarks = points.array()[rows]
    return TakeData(f.path, "facemocap-take", times_rel, ARKIT_NAMES + VRM0_NAMES, v, bones, landmarks,
                    _rate(times_rel), skipped + repeated + missing, False, tuple(notes))
