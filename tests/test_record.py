"""Recording takes (bridge.record.TakeWriter) and replaying them (open_replay, read_take)."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import threading
from datetime import datetime, timezone

import numpy as np
import pytest
from pythonosc.osc_packet import OscPacket
from support import MODEL_FILE, SHARED_DATA, Receiver, backend_skip, tracker_command

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
    assert taken.time == t   # every digit: the solver's timing depends on it
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
    assert [f.time for f in got] == [f[1] for f in frames40]
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
    assert [t for t, _ in released] == times   # stored with every digit
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
    "51 scores": (lambda path, n: _edited(path, n, lambda f: f.update(scores=[0.5] * 51)),
                  "scores must be a list of 52 numbers (null where the model gives none) or null, got 51 values"),
    "scores object": (lambda path, n: _edited(path, n, lambda f: f.update(scores={"jawOpen": 0.5})),
                      "scores must be a list of 52 numbers"),
    "text score": (lambda path, n: _edited(path, n, lambda f: f.update(scores=[0.5] * 51 + ["0.5"])),
                   "scores must be numbers or null"),
    "true score": (lambda path, n: _edited(path, n, lambda f: f.update(scores=[True] + [0.5] * 51)),
                   "scores must be numbers or null"),
    "NaN score": (lambda path, n: _edited(path, n, lambda f: f.update(scores=[float("nan")] + [0.5] * 51)),
                  "non-finite value in scores"),
    "score above 1": (lambda path, n: _edited(path, n, lambda f: f.update(scores=[0.5] * 17 + [1.25] + [0.5] * 34)),
                      "scores must be from 0 to 1, got 1.25 for jawOpen"),
    "negative score": (lambda path, n: _edited(path, n, lambda f: f.update(scores=[-0.01] + [0.5] * 51)),
                       "scores must be from 0 to 1, got -0.01 for eyeBlinkLeft"),
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


# --------------------------------------------------------------------------- the model's scores


def _scores_for(i: int) -> np.ndarray:
    """Scores as the landmarker gives them: float32 values in [0, 1], none for tongueOut."""
    rng = np.random.default_rng(i)
    values = rng.random(52, dtype=np.float32).astype(np.float64)
    values[:3] = (0.0, 1.0, float(np.float32(3.4e-06)))   # the ends, and a tiny one (e notation)
    values[ARKIT_NAMES.index("tongueOut")] = np.nan
    return values


def _frames_with_scores(n: int):
    """The demo face with face losses (as _frames), each face frame's state carrying scores."""
    out = []
    for index, t, points, state in _frames(n):
        if state is not None:
            state.scores = _scores_for(index)
        out.append((index, t, points, state))
    return out


def _as_dict(values: np.ndarray) -> dict[str, float]:
    return {name: float(v) for name, v in zip(ARKIT_NAMES, values) if np.isfinite(v)}


@pytest.mark.parametrize("suffix", [".jsonl", ".jsonl.gz"])
def test_scores_round_trip_exactly(tmp_path, suffix):
    path = tmp_path / f"take{suffix}"
    frames = _frames_with_scores(20)
    _write(path, frames, header={**HEADER, "backend": "landmarker", "scores": True})
    header, taken = read_take(path)
    assert header["scores"] is True and header["units"]["scores"] == "0..1"
    for item, (index, _, points, state) in zip(taken, frames):
        if points is None:
            assert item.scores is None
        else:
            # float32 scores come back bit for bit: the replay fuses what the live run fused
            assert item.scores == _as_dict(state.scores)
            assert "tongueOut" not in item.scores and len(item.scores) == 51
    assert taken.error is None and taken.count == 20


def test_scores_in_the_frame_line(tmp_path):
    path = tmp_path / "take.jsonl"
    frames = _frames_with_scores(5)
    without = frames[4][3]
    without.scores = None                         # a face without scores (Face Mesh): no key
    _write(path, frames, header={**HEADER, "scores": True})
    lines = [json.loads(line) for line in path.read_text().splitlines()[1:]]
    first = lines[0]["scores"]
    assert len(first) == 52 and first[-1] is None and first[:2] == [0, 1]
    assert first[2] == 3.39999997e-06             # 9 digits: float32(3.4e-06) as it is
    assert all(isinstance(v, (int, float)) for v in first[:-1])
    assert "scores" not in lines[3]               # no face: no scores
    assert "scores" not in lines[4]


def test_header_scores_follow_the_tracker(tmp_path):
    demo = open_demo(paced=False)
    assert record.source_header(demo, backend="demo")["scores"] is False
    assert record.source_header(demo, backend="facemesh")["scores"] is False
    assert record.source_header(demo, backend="landmarker")["scores"] is True
    with_scores, without = tmp_path / "with.jsonl", tmp_path / "without.jsonl"
    _write(with_scores, _frames_with_scores(2), header=record.source_header(demo, backend="landmarker"))
    _write(without, _frames(2), header=record.source_header(demo, backend="demo"))
    # Re-recording a replay keeps what the take had.
    for path, expected in ((with_scores, True), (without, False)):
        replay = open_replay(path, paced=False)
        assert replay.has_scores is expected
        assert record.source_header(replay, backend="none")["scores"] is expected
        replay.close()
    assert TakeWriter.open(tmp_path / "bare.jsonl", {"width": W, "height": H}).header["scores"] is False


def test_replay_gives_the_solver_the_scores(tmp_path):
    path = tmp_path / "take.jsonl.gz"
    frames = _frames_with_scores(30)
    _write(path, frames, header={**HEADER, "scores": True})
    tracker = tracking.Tracker()   # what the CLI uses for --replay
    for frame, (index, _, points, state) in zip(open_replay(path, paced=False), frames):
        tracked = tracker.track(frame)
        if points is None:
            assert frame.scores is None and tracked.blendshapes is None
        else:
            assert frame.scores == tracked.blendshapes == _as_dict(state.scores)
    tracker.close()

    def sent(take, mode):
        source = open_replay(take, paced=False)
        target = _CollectingTarget()
        run(source, tracking.Tracker(), Shaper(), VmcEncoder(), target, blendshapes=mode)
        source.close()
        return target.datagrams

    plain = tmp_path / "plain.jsonl.gz"
    _write(plain, [(i, t, p, s) for i, t, p, s in _frames(30)])
    # fused with the scores: not the geometry alone; solver mode ignores them
    assert sent(path, "fused") != sent(plain, "fused") == sent(path, "solver") == sent(plain, "solver")
    assert sent(path, "model") != sent(path, "fused")


def test_old_take_without_scores_replays_geometric(tmp_path):
    path = tmp_path / "old.jsonl"
    _write(path, _frames(20))
    lines = path.read_text().splitlines()
    header = json.loads(lines[0])
    del header["scores"]                          # as takes written before scores were kept
    path.write_text("\n".join([json.dumps(header), *lines[1:]]) + "\n")
    assert all("scores" not in json.loads(line) for line in lines[1:])
    source = open_replay(path, paced=False)
    assert source.has_scores is False
    tracker = tracking.Tracker()
    results = [tracker.track(frame) for frame in source]
    assert source.error is None and len(results) == 20
    assert all(r.blendshapes is None for r in results)
    assert sum(r.landmarks is not None for r in results) == 13


def test_scores_null_and_float_noise_are_valid(tmp_path):
    path = tmp_path / "take.jsonl"
    _write(path, _frames(6))
    noisy = [1.0 + 1e-7, -1e-7] + [0.5] * 49 + [None]
    _replace_line(path, 2, _edited(path, 2, lambda f: f.update(scores=noisy)))
    _replace_line(path, 3, _edited(path, 3, lambda f: f.update(scores=None)))
    _replace_line(path, 4, _edited(path, 4, lambda f: f.update(scores=[None] * 52)))
    first, second, third = list(read_take(path, strict=True)[1])[:3]
    assert first.scores["eyeBlinkLeft"] == 1.0 and first.scores["eyeLookDownLeft"] == 0.0
    assert second.scores is None and third.scores is None


def test_header_scores_must_be_true_or_false(tmp_path):
    path = tmp_path / "take.jsonl"
    path.write_text('{"format":"facemocap-take","version":1,"width":640,"height":480,"scores":"yes"}\n')
    _open_fails(path, "header scores must be true or false, got 'yes'")


# --------------------------------------------------------------------------- a landmarker take, end to end

CLIP = SHARED_DATA / "video" / "liveportrait_d18.mp4"
CLIP_FRAMES = 90


def _clip_skip() -> str | None:
    if not CLIP.is_file():
        return f"shared test clip {CLIP} is absent (../shared/data beside the checkout, see its SOURCES.md)"
    return backend_skip("landmarker")


needs_clip = pytest.mark.skipif(_clip_skip() is not None, reason=_clip_skip() or "")


def _run_cli(*args) -> tuple[subprocess.CompletedProcess, list[dict[str, float]]]:
    """The console script sending VMC to a local receiver: (process, blend values per frame)."""
    receiver = Receiver()
    try:
        proc = subprocess.run([*tracker_command(), "--port", str(receiver.port), "--quiet", "--control-port", "0",
                               *map(str, args)], capture_output=True, text=True, timeout=180,
                              stdin=subprocess.DEVNULL)
    finally:
        receiver.close()
    frames, current = [], {}
    for datagram in receiver.datagrams:
        for timed in OscPacket(datagram).messages:
            message = timed.message
            if message.address == "/VMC/Ext/Blend/Val":
                current[message.params[0]] = message.params[1]
            elif message.address == "/VMC/Ext/Blend/Apply":
                frames.append(current)
                current = {}
    return proc, frames


def _max_difference(a: list[dict[str, float]], b: list[dict[str, float]]) -> float:
    assert len(a) == len(b) and a and all(set(x) == set(y) for x, y in zip(a, b))
    return max(abs(x[k] - y[k]) for x, y in zip(a, b) for k in x)


@pytest.fixture(scope="module")
def landmarker_take(tmp_path_factory):
    """A take recorded live with the landmarker (fused) from a real clip, and what that run sent."""
    take = tmp_path_factory.mktemp("takes") / "d18.jsonl.gz"
    proc, live = _run_cli("--video", CLIP, "--fast", "--frames", CLIP_FRAMES, "--model", MODEL_FILE,
                          "--record", take)
    assert proc.returncode == 0, proc.stderr
    assert len(live) == CLIP_FRAMES
    return take, live


# The live run solved the tracker's float32 landmarks, the replay solves them as
# recorded (4 decimals of a pixel; times and scores are exact), and VMC sends float32:
# values agree to ~1e-5 (measured 8e-6 on this clip).
REPLAY_TOLERANCE = 1e-4


@needs_clip
def test_replay_of_a_landmarker_take_sends_the_live_fused_values(landmarker_take):
    take, live = landmarker_take
    header, frames = read_take(take)
    assert (header["backend"], header["blendshapes"], header["scores"]) == ("landmarker", "fused", True)
    taken = list(frames)
    faces = [f for f in taken if f.landmarks is not None]
    assert len(taken) == CLIP_FRAMES and len(faces) > CLIP_FRAMES * 0.9
    assert all(f.scores is not None and len(f.scores) == 51 for f in faces)
    proc, replayed = _run_cli("--replay", take, "--fast")
    assert proc.returncode == 0, proc.stderr
    assert _max_difference(replayed, live) < REPLAY_TOLERANCE
    # ... which are not the geometric values alone: the scores were fused in.
    proc, geometric = _run_cli("--replay", take, "--fast", "--blendshapes", "solver")
    assert proc.returncode == 0, proc.stderr
    assert _max_difference(geometric, live) > 0.1


@needs_clip
def test_blendshapes_model_replays_a_take_with_scores(landmarker_take):
    take, live = landmarker_take
    proc, model = _run_cli("--replay", take, "--fast", "--blendshapes", "model")
    assert proc.returncode == 0, proc.stderr
    assert len(model) == CLIP_FRAMES
    assert _max_difference(model, live) > 0.1   # the model's own scores, not the fused ones


def test_blendshapes_model_refuses_a_take_without_scores(tmp_path):
    take = tmp_path / "demo.jsonl"
    proc, _ = _run_cli("--demo", "--fast", "--frames", "5", "--record", take)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(take.read_text().splitlines()[0])["scores"] is False
    proc, sent = _run_cli("--replay", take, "--fast", "--blendshapes", "model")
    assert proc.returncode == 2 and sent == []
    assert proc.stderr.strip().splitlines() == [
        f"facemocap-osc: error: --blendshapes model: take '{take}' has no model scores (recorded with "
        f"Face Mesh, the demo or an older facemocap-osc); use fused or solver"]
    proc, _ = _run_cli("--demo", "--fast", "--frames", "5", "--blendshapes", "model")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "facemocap-osc: error: --demo gives landmarks, not images: it takes no --blendshapes model"]


@needs_clip
def test_export_of_a_landmarker_take_is_fused_like_its_video(landmarker_take, tmp_path):
    from bridge import export

    take, _ = landmarker_take
    video_json = tmp_path / "video.json"
    assert export.main([str(CLIP), "-o", str(video_json), "--format", "json", "--model", str(MODEL_FILE),
                        "--quiet"]) == 0
    video = json.loads(video_json.read_text())
    docs = {}
    for mode in ("fused", "solver", "model"):
        out = tmp_path / f"take-{mode}.json"
        assert export.main([str(take), "-o", str(out), "--format", "json", "--blendshapes", mode, "--quiet"]) == 0
        docs[mode] = json.loads(out.read_text())
        assert (docs[mode]["kind"], docs[mode]["blendshapes"]) == ("take", mode)

    def values(doc, n=CLIP_FRAMES):
        return [f["blendshapes"] for f in doc["frames"][:n]]

    assert video["blendshapes"] == "fused"
    assert _max_difference(values(docs["fused"]), values(video)) < REPLAY_TOLERANCE
    assert _max_difference(values(docs["solver"]), values(video)) > 0.1
    assert _max_difference(values(docs["model"]), values(docs["fused"])) > 0.1


def test_export_blendshapes_model_of_a_take_without_scores_fails_that_input(tmp_path, capsys):
    from bridge import export

    take = tmp_path / "demo.jsonl"
    _write(take, _frames(5))
    out = tmp_path / "demo.json"
    assert export.main([str(take), "-o", str(out), "--format", "json", "--quiet"]) == 0
    assert json.loads(out.read_text())["blendshapes"] == "solver"   # fused, but no scores to fuse
    capsys.readouterr()
    assert export.main([str(take), "-o", str(tmp_path / "m.json"), "--format", "json", "--blendshapes", "model",
                        "--quiet"]) == 1
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert lines == [f"facemocap-osc export: error: {take}: --blendshapes model: take '{take}' has no model "
                     f"scores (recorded with Face Mesh, the demo or an older facemocap-osc); use fused or solver"]
    assert not (tmp_path / "m.json").exists()
