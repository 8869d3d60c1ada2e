"""Recording takes (bridge.record.TakeWriter) and replaying them (open_replay, read_take)."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import threading
from datetime import datetime, timezone

import numpy as np
import pytest

import bridge
from bridge import record, tracking
from bridge.demo_face import demo_landmarks
from bridge.pipeline import run
from bridge.record import RecordError, TakeError, TakeWriter, open_replay, read_take
from bridge.shape import Shaper
from bridge.solve import Solver
from bridge.sources import Frame, SourceError, open_demo
from bridge.state import ARKIT_NAMES, VRM0_NAMES
from bridge.vmc import VmcEncoder

FPS = 30.0
W, H = 640, 480
HEADER = {"backend": "demo", "source": "demo", "width": W, "height": H, "fps": FPS}
LANDMARK_TOLERANCE = 1e-4   # 4 decimals of a pixel, plus float32 rounding
STATE_TOLERANCE = 6e-6      # 5 decimals


def _no_face(i: int) -> bool:
    return 10 <= i < 16 or i == 3


def _frames(n: int):
    """(index, time, landmarks or None, state or None) of the demo face, with face losses."""
    solver = Solver()
    out = []
    for i in range(n):
        t = i / FPS
        if _no_face(i):
            out.append((i, t, None, None))
            continue
        points = np.asarray(demo_landmarks(t, W, H), dtype=np.float32)
        out.append((i, t, points, solver.solve(points, (W, H), time=t)))
    return out


def _write(path, frames, header=HEADER, close=True) -> TakeWriter:
    writer = TakeWriter.open(path, header)
    for index, t, points, state in frames:
        writer.write(index, t, points, state, width=W, height=H)
    if close:
        writer.close()
    return writer


def _assert_same(taken, original):
    index, t, points, state = original
    assert taken.index == index
    assert taken.time == pytest.approx(t, abs=1e-6)
    if points is None:
        assert taken.landmarks is None and taken.state is None
        return
    assert taken.landmarks.shape == (478, 3) and taken.landmarks.dtype == np.float32
    np.testing.assert_allclose(taken.landmarks, points, atol=LANDMARK_TOLERANCE, rtol=0)
    np.testing.assert_allclose(taken.state.vector(), state.vector(), atol=STATE_TOLERANCE, rtol=0)


@pytest.fixture(scope="module")
def frames40():
    return _frames(40)


# --------------------------------------------------------------------------- writing + reading


@pytest.mark.parametrize("suffix", [".jsonl", ".jsonl.gz"])
def test_round_trip(tmp_path, frames40, suffix):
    path = tmp_path / f"take{suffix}"
    writer = _write(path, frames40)
    assert writer.frames == 40 and writer.closed
    with open(path, "rb") as fh:
        assert (fh.read(2) == b"\x1f\x8b") == (suffix == ".jsonl.gz")
    header, frames = read_take(path)
    got = list(frames)
    assert frames.error is None and frames.count == 40
    assert len(got) == 40
    for taken, original in zip(got, frames40):
        _assert_same(taken, original)
        assert (taken.width, taken.height) == (W, H)
    assert header["backend"] == "demo" and header["width"] == W and header["height"] == H


def test_header_is_self_describing(tmp_path, frames40):
    path = tmp_path / "take.jsonl"
    _write(path, frames40[:2])
    lines = path.read_text().splitlines()
    header = json.loads(lines[0])
    assert header["format"] == "facemocap-take" and header["version"] == 1
    assert header["tracker_version"] == bridge.__version__
    assert (header["backend"], header["source"], header["width"], header["height"], header["fps"]) == (
        "demo", "demo", W, H, FPS)
    created = datetime.fromisoformat(header["created"])
    assert created.utcoffset() == timezone.utc.utcoffset(None)
    channels = header["channels"]
    assert channels["blendshapes"] == list(ARKIT_NAMES)
    assert channels["vrm"] == list(VRM0_NAMES)
    assert channels["head_angles"] == ["yaw", "pitch", "roll"]
    assert header["units"]["head_angles"] == "degrees"
    # Frame lines are compact and carry the documented keys.
    for line in lines[1:]:
        assert " " not in line
        frame = json.loads(line)
        assert set(frame) == {"index", "time", "landmarks", "state"}
        assert set(frame["state"]) == set(record.STATE_FIELDS)
        assert len(frame["landmarks"]) == 478 and len(frame["state"]["blendshapes"]) == 52


def test_no_face_frames_are_null(tmp_path, frames40):
    path = tmp_path / "take.jsonl"
    _write(path, frames40[:5])
    frame = json.loads(path.read_text().splitlines()[1 + 3])   # frame 3 has no face
    assert frame["landmarks"] is None and frame["state"] is None


def test_frame_size_written_only_when_it_differs(tmp_path, frames40):
    path = tmp_path / "take.jsonl"
    writer = TakeWriter.open(path, {**HEADER, "width": None, "height": None})
    index, t, points, state = frames40[0]
    writer.write(index, t, points, state, width=320, height=240)
    writer.close()
    other = tmp_path / "other.jsonl"
    writer = TakeWriter.open(other, HEADER)
    writer.write(index, t, points, state, width=320, height=240)
    writer.write(1, 0.1, None, None, width=W, height=H)
    writer.close()
    assert json.loads(path.read_text().splitlines()[1])["width"] == 320
    assert [f.width for f in read_take(other)[1]] == [320, W]
    assert "width" not in json.loads(other.read_text().splitlines()[2])


def test_source_header_from_sources(tmp_path):
    demo = open_demo(paced=False)
    fields = record.source_header(demo, backend="demo")
    assert (fields["backend"], fields["source"], fields["width"], fields["height"], fields["fps"]) == (
        "demo", "demo", 640, 480, 30.0)
    path = tmp_path / "take.jsonl"
    _write(path, _frames(2), header=fields)
    replay = open_replay(path, paced=False)
    again = record.source_header(replay, backend="facemesh")
    assert again["backend"] == "demo"      # a replayed take keeps its backend
    assert again["source"] == "take take.jsonl"
    replay.close()


def test_write_frame_uses_the_frame(tmp_path):
    path = tmp_path / "take.jsonl"
    points = np.asarray(demo_landmarks(0.5, W, H), dtype=np.float32)
    with TakeWriter.open(path, HEADER) as writer:
        writer.write_frame(Frame(7, 0.25, None, landmarks=points, width=W, height=H), points, None)
    (taken,) = list(read_take(path)[1])
    assert (taken.index, taken.time, taken.state) == (7, 0.25, None)
    np.testing.assert_allclose(taken.landmarks, points, atol=LANDMARK_TOLERANCE)


def test_writer_after_close_and_double_close(tmp_path, frames40):
    writer = _write(tmp_path / "take.jsonl", frames40[:1])
    writer.close()
    with pytest.raises(RecordError, match="closed"):
        writer.write(*frames40[1])


# --------------------------------------------------------------------------- opening fails at start


def _one_line_error(excinfo, path) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    assert str(path) in message
    return message


def test_missing_folder_fails_at_open(tmp_path):
    path = tmp_path / "nowhere" / "take.jsonl"
    with pytest.raises(RecordError) as excinfo:
        TakeWriter.open(path, HEADER)
    assert "does not exist" in _one_line_error(excinfo, path)
    assert not (tmp_path / "nowhere").exists()


def test_directory_fails_at_open(tmp_path):
    path = tmp_path / "take.jsonl"
    path.mkdir()
    with pytest.raises(RecordError) as excinfo:
        TakeWriter.open(path, HEADER)
    assert "folder" in _one_line_error(excinfo, path)


@pytest.mark.parametrize("name", ["take.json", "take.txt", "take.gz", "take", "take.jsonl.zip"])
def test_bad_suffix_fails_at_open(tmp_path, name):
    path = tmp_path / name
    with pytest.raises(RecordError) as excinfo:
        TakeWriter.open(path, HEADER)
    assert ".jsonl or .jsonl.gz" in _one_line_error(excinfo, path)
    assert not path.exists()


def test_existing_file_is_kept_unless_overwrite(tmp_path, frames40):
    path = tmp_path / "take.jsonl"
    _write(path, frames40[:3])
    before = path.read_bytes()
    with pytest.raises(RecordError) as excinfo:
        TakeWriter.open(path, HEADER)
    assert "already exists" in _one_line_error(excinfo, path)
    assert path.read_bytes() == before
    TakeWriter.open(path, HEADER, overwrite=True).close()
    assert list(read_take(path)[1]) == []


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0,
                    reason="root can write into a read-only folder (and Windows has no chmod here)")
def test_read_only_folder_fails_at_open(tmp_path):
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        path = folder / "take.jsonl.gz"
        with pytest.raises(RecordError) as excinfo:
            TakeWriter.open(path, HEADER)
        assert "ermission" in _one_line_error(excinfo, path)
    finally:
        folder.chmod(0o755)


def test_permission_denied_message(tmp_path, monkeypatch):
    """The read-only case's message, also where the tests run as root."""
    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(record, "open", refuse, raising=False)
    path = tmp_path / "take.jsonl"
    with pytest.raises(RecordError) as excinfo:
        TakeWriter.open(path, HEADER)
    assert _one_line_error(excinfo, path) == f"cannot record to '{path}': Permission denied"


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
@pytest.mark.parametrize("suffix", [".jsonl", ".jsonl.gz"])
def test_full_disk_fails_at_open(tmp_path, suffix):
    path = tmp_path / f"take{suffix}"
    path.symlink_to("/dev/full")
    with pytest.raises(RecordError) as excinfo:
        TakeWriter.open(path, HEADER, overwrite=True)
    assert "No space left on device" in _one_line_error(excinfo, path)


def test_write_failure_mid_take_is_a_record_error(tmp_path, frames40):
    path = tmp_path / "take.jsonl"
    writer = TakeWriter.open(path, HEADER)

    class Full:
        def write(self, *args):
            raise OSError(28, "No space left on device")

        flush = close = write

    real = writer._raw
    writer._raw = writer._out = Full()
    with pytest.raises(RecordError) as excinfo:
        writer.write(*frames40[0])
    assert _one_line_error(excinfo, path) == f"cannot write to '{path}': No space left on device"
    with pytest.raises(RecordError, match="cannot finish"):
        writer.close()
    real.close()


# --------------------------------------------------------------------------- flushing


@pytest.mark.parametrize("suffix", [".jsonl", ".jsonl.gz"])
def test_a_second_of_frames_is_on_disk_before_close(tmp_path, suffix):
    """What a crash would leave: a copy of the file taken while the writer is still open."""
    path = tmp_path / f"take{suffix}"
    frames = _frames(int(2.5 * FPS))
    writer = _write(path, frames, close=False)
    crashed = tmp_path / f"crashed{suffix}"
    shutil.copyfile(path, crashed)
    header, got = read_take(crashed)
    got_frames = list(got)
    assert header["format"] == "facemocap-take"
    # at most about the last second is missing
    assert len(got_frames) >= len(frames) - FPS - 1
    for taken, original in zip(got_frames, frames):
        _assert_same(taken, original)
    if suffix == ".jsonl.gz":
        assert got.error is not None and "cut off" in got.error   # no gzip trailer yet
    writer.close()
    assert len(list(read_take(path)[1])) == len(frames)


@pytest.mark.parametrize("suffix", [".jsonl", ".jsonl.gz"])
def test_one_second_of_frames_is_flushed(tmp_path, suffix):
    path = tmp_path / f"take{suffix}"
    frames = _frames(int(FPS) + 1)   # times 0 .. 1.0 s
    writer = _write(path, frames, close=False)
    got = list(read_take(path)[1])
    assert len(got) == len(frames)
    writer.close()


# --------------------------------------------------------------------------- replay


def test_replay_unpaced_yields_the_take(tmp_path, frames40):
    path = tmp_path / "take.jsonl.gz"
    _write(path, frames40)
    source = open_replay(path, paced=False)
    assert isinstance(source, record.Source)
    assert (source.fps, source.width, source.height, source.static) == (FPS, W, H, False)
    assert source.name == "take take.jsonl.gz"
    got = list(source)
    source.close()
    assert source.error is None and source.frames == 40
    assert [f.index for f in got] == [f[0] for f in frames40]
    assert [f.time for f in got] == pytest.approx([f[1] for f in frames40], abs=1e-6)
    for frame, (_, _, points, _) in zip(got, frames40):
        assert frame.image is None and (frame.width, frame.height) == (W, H)
        if points is None:
            assert frame.landmarks is None
        else:
            np.testing.assert_allclose(frame.landmarks, points, atol=LANDMARK_TOLERANCE)
    with pytest.raises(SourceError, match="only be read once"):
        iter(source)


def test_replay_paced_follows_the_take_times(tmp_path):
    times = [5.0, 5.0 + 1 / 30, 5.1, 5.5, 5.5, 7.25]
    path = tmp_path / "take.jsonl"
    with TakeWriter.open(path, HEADER) as writer:
        for i, t in enumerate(times):
            writer.write(i, t, None, None)
    source = open_replay(path, paced=True)
    clock = [100.0]
    waits = []

    def wait(seconds):
        waits.append(seconds)
        clock[0] += seconds
        return False

    source._clock, source._wait = (lambda: clock[0]), wait
    released = []
    for frame in source:
        released.append((frame.time, clock[0]))
    assert [t for t, _ in released] == pytest.approx(times, abs=1e-6)   # stored to the microsecond
    # each frame leaves at start + (its time - the first frame's time)
    assert [at - 100.0 for _, at in released] == pytest.approx([t - times[0] for t in times], abs=1e-6)
    assert all(w > 0 for w in waits)


def test_closing_stops_a_paced_replay(tmp_path):
    path = tmp_path / "take.jsonl"
    with TakeWriter.open(path, HEADER) as writer:
        writer.write(0, 0.0, None, None)
        writer.write(1, 3600.0, None, None)   # an hour later
    source = open_replay(path, paced=True)
    got = []
    consumer = threading.Thread(target=lambda: got.extend(source), daemon=True)
    consumer.start()
    while not got:
        consumer.join(0.01)
    source.close()
    consumer.join(10.0)
    assert not consumer.is_alive()
    assert [f.index for f in got] == [0] and source.error is None


def test_tracker_passes_replayed_frames_through(tmp_path, frames40):
    path = tmp_path / "take.jsonl"
    _write(path, frames40[:5])
    tracker = tracking.Tracker()   # what the CLI uses for --replay: no MediaPipe
    results = [tracker.track(frame) for frame in open_replay(path, paced=False)]
    tracker.close()
    assert [r.landmarks is None for r in results] == [_no_face(i) for i in range(5)]
    assert results[0].landmarks.dtype == np.float32 and results[0].landmarks.shape == (478, 3)


class _CollectingTarget:
    address = "collector"

    def __init__(self):
        self.datagrams: list[bytes] = []

    def send(self, datagrams):
        self.datagrams.extend(datagrams)


def _replay_datagrams(path, *, paced=False) -> list[bytes]:
    source = open_replay(path, paced=paced)
    target = _CollectingTarget()
    shaper = Shaper()
    shaper.calibrator.start_capture(0.5)
    stats = run(source, tracking.Tracker(), shaper, VmcEncoder(), target,
                blendshapes="solver")
    source.close()
    assert source.error is None
    assert stats.frames == 60 and 0 < stats.faces < 60
    return target.datagrams


@pytest.mark.parametrize("suffix", [".jsonl", ".jsonl.gz"])
def test_replaying_twice_sends_identical_bytes(tmp_path, suffix):
    path = tmp_path / f"take{suffix}"
    _write(path, _frames(60))
    first = _replay_datagrams(path)
    second = _replay_datagrams(path)
    assert len(first) == 3 * 60
    assert first == second


def test_paced_and_unpaced_replays_send_identical_bytes(tmp_path):
    path = tmp_path / "take.jsonl"
    frames = [(i, i / 1000.0, p, s) for i, (_, _, p, s) in enumerate(_frames(60))]   # 1000 fps: quick
    _write(path, frames)
    assert _replay_datagrams(path, paced=True) == _replay_datagrams(path, paced=False)


# --------------------------------------------------------------------------- damaged takes


def _replace_line(path, lineno: int, text: str | bytes) -> None:
    lines = path.read_bytes().split(b"\n")
    lines[lineno - 1] = text.encode() if isinstance(text, str) else text
    path.write_bytes(b"\n".join(lines))


def _edited(path, lineno: int, edit) -> str:
    frame = json.loads(path.read_text().splitlines()[lineno - 1])
    edit(frame)
    return json.dumps(frame)


def _check_stops_at(path, lineno: int, fragment: str, frames) -> None:
    """Both readers give the frames before line `lineno`, then an error naming it."""
    source = open_replay(path, paced=False)
    replayed = list(source)
    source.close()
    header, taken_frames = read_take(path)
    taken = list(taken_frames)
    before = lineno - 2                      # line 1 is the header, frame 0 is line 2
    assert len(replayed) == len(taken) == before
    for item, original in zip(taken, frames):
        _assert_same(item, original)
    for error in (source.error, taken_frames.error):
        assert error is not None and "\n" not in error
        assert error.startswith(f"{path.name} line {lineno}: "), error
        assert fragment in error, error
    with pytest.raises(TakeError) as excinfo:
        list(read_take(path, strict=True)[1])
    assert str(excinfo.value) == source.error


BROKEN_LINES = {
    "not json": (lambda path, n: '{"index":3,"time":0.1,"landm', "not valid JSON"),
    "a list": (lambda path, n: "[1, 2, 3]", "expected a frame object, got list"),
    "missing landmarks": (lambda path, n: _edited(path, n, lambda f: f.pop("landmarks")),
                          "missing key 'landmarks'"),
    "missing state field": (lambda path, n: _edited(path, n, lambda f: f["state"].pop("vrm")),
                            "missing key 'state.vrm'"),
    "12 landmarks": (lambda path, n: _edited(path, n, lambda f: f.update(landmarks=f["landmarks"][:12])),
                     "expected 478 landmarks, got 12"),
    "2 coordinates": (lambda path, n: _edited(path, n, lambda f: f["landmarks"][7].pop()),
                      "expected 3 numbers per landmark"),
    "text coordinate": (lambda path, n: _edited(path, n, lambda f: f["landmarks"][7].__setitem__(0, "1.5")),
                        "landmarks must be numbers"),
    "NaN landmark": (lambda path, n: _edited(path, n, lambda f: f["landmarks"][5].__setitem__(1, float("nan"))),
                     "non-finite landmark value"),
    "infinite state": (lambda path, n: _edited(path, n, lambda f: f["state"]["head_angles"].__setitem__(0, float("inf"))),
                       "non-finite value in state.head_angles"),
    "short blendshapes": (lambda path, n: _edited(path, n, lambda f: f["state"]["blendshapes"].pop()),
                          "state.blendshapes must be 52 numbers"),
    "NaN time": (lambda path, n: _edited(path, n, lambda f: f.update(time=float("nan"))),
                 "time must be a finite number"),
    "time backwards": (lambda path, n: _edited(path, n, lambda f: f.update(time=0.0)), "time goes backwards"),
    "bad index": (lambda path, n: _edited(path, n, lambda f: f.update(index=-1)), "index must be"),
    "not utf-8": (lambda path, n: b'{"index":7,"time":\xff}', "not UTF-8"),
}


@pytest.mark.parametrize("case", sorted(BROKEN_LINES))
def test_damaged_line_replays_the_valid_prefix(tmp_path, frames40, case):
    path = tmp_path / "take.jsonl"
    _write(path, frames40[:20])
    lineno = 9                                # frame 7, which has a face
    make, fragment = BROKEN_LINES[case]
    _replace_line(path, lineno, make(path, lineno))
    _check_stops_at(path, lineno, fragment, frames40)


def test_jsonl_cut_mid_line(tmp_path, frames40):
    path = tmp_path / "take.jsonl"
    _write(path, frames40[:20])
    data = path.read_bytes()
    starts = [i + 1 for i, b in enumerate(data) if b == ord("\n")]
    path.write_bytes(data[: starts[17] + 500])      # into line 19 (frame 17, with a face)
    _check_stops_at(path, 19, "incomplete last line (the recording was cut off)", frames40)


def test_jsonl_cut_at_a_line_end_is_a_shorter_take(tmp_path, frames40):
    path = tmp_path / "take.jsonl"
    _write(path, frames40[:20])
    data = path.read_bytes()
    starts = [i + 1 for i, b in enumerate(data) if b == ord("\n")]
    path.write_bytes(data[: starts[10]])
    header, frames = read_take(path)
    assert len(list(frames)) == 10 and frames.error is None


def test_gz_truncated_mid_stream(tmp_path):
    path = tmp_path / "take.jsonl.gz"
    frames = _frames(120)
    _write(path, frames)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 6 // 10])
    source = open_replay(path, paced=False)
    replayed = list(source)
    assert 0 < len(replayed) < 120
    for frame, (index, t, points, _) in zip(replayed, frames):
        assert frame.index == index
        if points is not None:
            np.testing.assert_allclose(frame.landmarks, points, atol=LANDMARK_TOLERANCE)
    assert source.error == (f"take.jsonl.gz line {len(replayed) + 2}: "
                            "the compressed data ends early (the recording was cut off)")
    header, taken = read_take(path)
    assert len(list(taken)) == len(replayed) and taken.error == source.error


def test_gz_damaged_mid_stream(tmp_path):
    path = tmp_path / "take.jsonl.gz"
    _write(path, _frames(60))
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 64] = bytes(64)
    path.write_bytes(bytes(data))
    header, taken = read_take(path)
    count = sum(1 for _ in taken)
    assert count < 60 or taken.error is not None
    assert taken.error is not None and taken.error.startswith("take.jsonl.gz line ")


# --------------------------------------------------------------------------- bad files fail at open


def _open_fails(path, fragment: str) -> None:
    for opener in (lambda: open_replay(path), lambda: read_take(path)):
        with pytest.raises(SourceError) as excinfo:
            opener()
        message = _one_line_error(excinfo, path)
        assert isinstance(excinfo.value, TakeError)
        assert fragment in message, message


def test_missing_take(tmp_path):
    _open_fails(tmp_path / "nope.jsonl", "file not found")


def test_take_is_a_folder(tmp_path):
    _open_fails(tmp_path, "it is a folder")


def test_empty_take(tmp_path):
    path = tmp_path / "take.jsonl"
    path.write_bytes(b"")
    _open_fails(path, "the file is empty")


@pytest.mark.parametrize("first_line", [
    b'{"format":"something-else","version":1}\n',
    b'{"index":0,"time":0.0,"landmarks":null,"state":null}\n',
    b"[1,2,3]\n",
    b"hello, this is not json\n",
    b"\x00\x01\x02 binary \xff\xfe\n",
])
def test_header_that_is_not_ours(tmp_path, first_line):
    path = tmp_path / "take.jsonl"
    path.write_bytes(first_line + b'{"index":0,"time":0.0,"landmarks":null,"state":null}\n')
    _open_fails(path, "not a facemocap-osc take")


def test_gzipped_file_that_is_not_a_take(tmp_path):
    path = tmp_path / "take.jsonl.gz"
    path.write_bytes(gzip.compress(b"just some text\nand more\n"))
    _open_fails(path, "not a facemocap-osc take")


def test_newer_format_version(tmp_path):
    path = tmp_path / "take.jsonl"
    path.write_text('{"format":"facemocap-take","version":99,"width":640,"height":480}\n')
    _open_fails(path, "version 99 is newer")


def test_bad_header_size(tmp_path):
    path = tmp_path / "take.jsonl"
    path.write_text('{"format":"facemocap-take","version":1,"width":-3,"height":480}\n')
    _open_fails(path, "header width must be")


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0,
                    reason="root can read a file without read permission")
def test_unreadable_take(tmp_path, frames40):
    path = tmp_path / "take.jsonl"
    _write(path, frames40[:2])
    path.chmod(0)
    try:
        _open_fails(path, "ermission")
    finally:
        path.chmod(0o644)


def test_video_file_is_not_a_take(tmp_path):
    path = tmp_path / "clip.mp4"
    path.write_bytes(b"\x00\x00\x00\x18ftypmp42" + np.random.default_rng(0).bytes(4096))
    _open_fails(path, "not a facemocap-osc take")
