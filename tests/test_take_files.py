"""blender_receiver.take_files: face take files (ours and Live Link Face's) -> arrays. No bpy.

Real Live Link Face takes (tests/data/livelink, see SOURCES.md) are checked against
their own text read with the csv module; our formats are written with the
project's own writers (bridge.record, bridge.export) and read back.
"""

from __future__ import annotations

import csv
import gzip
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from blender_receiver import take_files
from blender_receiver.take_files import MAX_FRAMES, TakeFileError, bone_rotations, read_take_file
from bridge import vmc
from bridge.export import LIVELINK_HEADER, CsvWriter, JsonWriter, LiveLinkWriter
from bridge.outputs.framing import LandmarkChunks
from bridge.record import TakeWriter
from bridge.state import ARKIT_NAMES, VRM0_NAMES, FaceState, pascal_case

LIVELINK = Path(__file__).parent / "data" / "livelink"
BONES = ("Neck", "Head", "LeftEye", "RightEye")

# What each genuine take holds (its own text is the reference; see SOURCES.md).
REAL = {
    #  file: (frames, rate, tracking-lost rows, count column spelling)
    "S07-001.csv": (299, 30.0, 0, "BlendShapeCount"),
    "S88-001.csv": (400, 30.0, 129, "BlendShapeCount"),
    "apfel.csv": (292, 30.0, 7, "BlendShapeCount"),
    "MySlate_3_Jason_Millers_iPhone.csv": (328, 59.94, 0, "BlendShapeCount"),
}


# --------------------------------------------------------------------------- helpers, independent of the reader


def csv_take(path) -> tuple[list[str], list[list[str]], list[list[str]]]:
    """(header, full rows, tracking-lost rows) with the csv module."""
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    header = rows[0]
    full = [r for r in rows[1:] if len(r) == len(header)]
    lost = [r for r in rows[1:] if len(r) == 2 and r[1] == "0"]
    assert len(full) + len(lost) == len(rows) - 1
    return header, full, lost


def timecode_seconds(text: str) -> float:
    """HH:MM:SS:FF.fff, FF.fff frames at 60 a second."""
    h, m, s, frames = text.split(":")
    return int(h) * 3600 + int(m) * 60 + int(s) + float(frames) / 60.0


def unity_bones(head, eyes) -> np.ndarray:
    """bridge.vmc.bone_rotations_from, frame by frame."""
    return np.array([vmc.bone_rotations_from(h, e) for h, e in zip(head, eyes)])


def states(n: int, seed: int = 0, *, zero_angles: bool = False) -> list[FaceState]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        out.append(FaceState(
            blendshapes=rng.uniform(0, 1, 52), vrm=rng.uniform(0, 1, 16),
            head_angles=np.zeros(3) if zero_angles else rng.uniform(-60, 60, 3),
            head_position=rng.uniform(-0.2, 0.2, 3),
            eye_angles=np.zeros((2, 2)) if zero_angles else rng.uniform(-30, 30, (2, 2))))
    return out


def fixed(values, digits: int) -> np.ndarray:
    """What a writer that prints `digits` decimals gives back."""
    return np.vectorize(lambda v: float(f"{v:.{digits}f}"))(np.asarray(values, float))


def one_line(error: TakeFileError, name: str) -> str:
    text = str(error)
    assert "\n" not in text and "\r" not in text, text
    assert text.startswith(name), text
    return text


def write_export(path: Path, writer, frames: list[FaceState], times, found) -> Path:
    with open(path, "w", newline="") as stream:
        w = writer(stream, {"input": "test.mp4", "fps": 30.0})
        for i, (state, t, ok) in enumerate(zip(frames, times, found)):
            w.frame(i, t, ok, state)
        w.close(len(frames), sum(found))
    return path


# --------------------------------------------------------------------------- what the module restates from bridge


def test_names_and_constants_are_the_trackers():
    assert take_files.ARKIT_NAMES == ARKIT_NAMES
    assert take_files.VRM0_NAMES == VRM0_NAMES
    assert take_files.BONES == vmc.BONES
    assert take_files.NECK_SHARE == vmc.NECK_SHARE
    assert take_files.LIVELINK_ROTATIONS == LIVELINK_HEADER[-9:]
    assert {n.lower() for n in LIVELINK_HEADER[2:-9]} == {n.lower() for n in ARKIT_NAMES}
    assert MAX_FRAMES == 216_000


def test_bone_rotations_match_bridge_vmc():
    rng = np.random.default_rng(7)
    head = np.concatenate([rng.uniform(-180, 180, (300, 3)), rng.uniform(-20, 20, (300, 3)),
                           [[0, 0, 0], [180, 0, 0], [-180, 90, -90], [0, 90, 0], [1e-9, 0, 0], [179.999, -89.9, 45]]])
    eyes = np.concatenate([rng.uniform(-90, 90, (300, 2, 2)), rng.uniform(-5, 5, (300, 2, 2)),
                           np.zeros((6, 2, 2))])
    got = bone_rotations(head, eyes)
    assert got.shape == (len(head), 4, 4)
    assert np.abs(got - unity_bones(head, eyes)).max() < 1e-9


def test_module_stands_alone_without_bpy_or_bridge():
    """The add-on is installed into Blender on its own: no bridge, no bpy there."""
    code = (
        "import sys, blender_receiver.take_files as module\n"
        f"data = module.read_take_file({str(LIVELINK / 'S07-001.csv')!r})\n"
        "print(len(data.times), sorted(k for k in sys.modules if k.split('.')[0] in ('bpy', 'bridge', 'mathutils')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=os.path.dirname(os.path.dirname(take_files.__file__)),
                         env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["299", "[]"]


# --------------------------------------------------------------------------- genuine Live Link Face takes


@pytest.mark.parametrize("name", sorted(REAL))
def test_real_take_frames_rate_and_quirks(name):
    frames, rate, lost, spelling = REAL[name]
    header, full, lost_rows = csv_take(LIVELINK / name)
    assert header[1] == spelling and len(header) == 63
    assert (len(full), len(lost_rows)) == (frames, lost)   # the table above is the file's truth
    data = read_take_file(LIVELINK / name)
    assert data.kind == "livelink-face" and data.names == ARKIT_NAMES
    assert len(data.times) == frames and data.values.shape == (frames, 52)
    assert data.times[0] == 0.0 and (np.diff(data.times) > 0).all()
    assert data.rate == pytest.approx(rate, abs=0.1)
    assert data.landmarks is None and data.calibrated is False
    assert data.dropped >= lost
    if lost:
        assert f"{lost} tracking-lost row{'s' if lost != 1 else ''} (Timecode,0) skipped" in data.notes
    # Head rotation columns are all 0 in every public take; the eyes move.
    assert all(float(r[i]) == 0.0 for r in full for i in range(54, 57))
    assert set(data.bones) == {"LeftEye", "RightEye"}
    assert "head rotation columns all 0: no head/neck keys" in data.notes
    assert any(n.startswith("eye roll not used") for n in data.notes)
    assert ("Live Link Face CSV (BlendshapeCount: the newer app)" in data.notes) == (spelling == "BlendshapeCount")


@pytest.mark.parametrize("name", sorted(REAL))
def test_real_take_values_at_three_times(name):
    header, full, _ = csv_take(LIVELINK / name)
    data = read_take_file(LIVELINK / name)
    start = timecode_seconds(full[0][0])
    for row in (full[0], full[len(full) // 2], full[-1]):
        t = timecode_seconds(row[0]) - start
        k = int(np.argmin(np.abs(data.times - t)))
        assert data.times[k] == pytest.approx(t, abs=1e-9)
        cells = dict(zip(header, row))
        expected = [min(max(float(cells[pascal_case(n)]), 0.0), 1.0) for n in ARKIT_NAMES]
        assert data.values[k] == pytest.approx(expected, abs=1e-12)
        r = math.degrees
        eyes = [[-r(float(cells["LeftEyeYaw"])), -r(float(cells["LeftEyePitch"]))],
                [-r(float(cells["RightEyeYaw"])), -r(float(cells["RightEyePitch"]))]]
        want = vmc.bone_rotations_from([0.0, 0.0, 0.0], eyes)
        assert data.bones["LeftEye"][k] == pytest.approx(want[2], abs=1e-9)
        assert data.bones["RightEye"][k] == pytest.approx(want[3], abs=1e-9)


def test_real_gaze_reads_the_way_the_shapes_say():
    """Looking to the subject's own left (EyeLookOutLeft high) turns the left eye the
    way bridge.vmc turns a positive (own-left) eye yaw."""
    sign = np.sign(vmc.bone_rotations_from([0, 0, 0], [[10.0, 0.0], [10.0, 0.0]])[2][1])
    checked = 0
    for name in REAL:
        data = read_take_file(LIVELINK / name)
        out = data.values[:, ARKIT_NAMES.index("eyeLookOutLeft")] > 0.3
        checked += int(out.sum())
        assert (np.sign(data.bones["LeftEye"][out, 1]) == sign).all(), name
    assert checked > 20


def test_real_take_values_above_one_are_clipped_and_said():
    header, full, _ = csv_take(LIVELINK / "apfel.csv")
    above = sum(float(v) > 1.0 for r in full for v in r[2:54])
    assert above > 0
    data = read_take_file(LIVELINK / "apfel.csv")
    assert data.values.max() == 1.0
    assert f"{above} values outside 0..1 clipped to it (shape keys' range)" in data.notes


def test_tracking_lost_runs_and_gaps_are_counted():
    data = read_take_file(LIVELINK / "S88-001.csv")
    # 129 lost rows whose timecodes go on, and two single dropped frames (steps of 4/60).
    with open(LIVELINK / "S88-001.csv") as fh:
        every = [timecode_seconds(line.split(",")[0]) for line in fh.read().splitlines()[1:]]
    steps = np.round(np.diff(every) * 30)
    assert int(np.sum(steps - 1)) == 2
    assert data.dropped == 129 + 2
    assert "2 frames missing from the timeline (2 gaps)" in data.notes
    # No key inside the lost run (file lines 384-512): the kept frames jump over it.
    assert np.diff(data.times).max() == pytest.approx(every[513 - 2] - every[383 - 2], abs=1e-9)
    assert [r[1] for r in csv_take(LIVELINK / "S88-001.csv")[2]] == ["0"] * 129


def test_columns_are_matched_by_name_not_position(tmp_path):
    header, full, lost = csv_take(LIVELINK / "apfel.csv")
    rng = np.random.default_rng(1)
    order = [0, 1] + list(rng.permutation(np.arange(2, len(header))))
    shuffled = tmp_path / "shuffled.csv"
    with open(shuffled, "w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow([header[i] for i in order])
        for row in full:
            w.writerow([row[i] for i in order])
    a, b = read_take_file(LIVELINK / "apfel.csv"), read_take_file(shuffled)
    assert np.array_equal(a.values, b.values) and np.array_equal(a.times, b.times)
    assert all(np.array_equal(a.bones[k], b.bones[k]) for k in a.bones)


def test_numbers_in_any_notation_read_as_float_does(tmp_path):
    """Not the app's fixed 10 decimals (a hand-edited or re-saved take): the general
    parser, still exactly float(cell)."""
    header, full, _ = csv_take(LIVELINK / "S07-001.csv")
    rng = np.random.default_rng(2)
    forms = [lambda v: repr(v), lambda v: f"{v:.6g}", lambda v: f"{v:.3E}", lambda v: f"{v:.2f}"]
    rows = [[r[0], r[1]] + [forms[rng.integers(4)](float(c)) for c in r[2:]] for r in full[:120]]
    path = tmp_path / "reformatted.csv"
    path.write_text("\n".join(",".join(r) for r in [header] + rows) + "\n")
    data = read_take_file(path)
    index = {n: i for i, n in enumerate(header)}
    expected = np.array([[min(max(float(r[index[pascal_case(n)]]), 0.0), 1.0) for n in ARKIT_NAMES] for r in rows])
    assert np.array_equal(data.values, expected)


def test_crlf_byte_order_mark_and_no_final_newline(tmp_path):
    text = (LIVELINK / "MySlate_3_Jason_Millers_iPhone.csv").read_text()
    path = tmp_path / "windows.csv"
    path.write_bytes(b"\xef\xbb\xbf" + text.rstrip("\n").replace("\n", "\r\n").encode())
    a, b = read_take_file(LIVELINK / "MySlate_3_Jason_Millers_iPhone.csv"), read_take_file(path)
    assert np.array_equal(a.values, b.values) and np.array_equal(a.times, b.times)


def test_gzipped_csv_is_read_by_content(tmp_path):
    path = tmp_path / "take.bin"
    path.write_bytes(gzip.compress((LIVELINK / "S88-001.csv").read_bytes()))
    a, b = read_take_file(LIVELINK / "S88-001.csv"), read_take_file(path)
    assert b.kind == "livelink-face" and np.array_equal(a.values, b.values) and a.dropped == b.dropped


def test_the_newer_apps_blendshapecount_spelling_reads_the_same(tmp_path):
    """Newer app versions (1.3.2 in a public take whose repository has no license, so
    it is not kept here) spell the count column BlendshapeCount; nothing else differs."""
    text = (LIVELINK / "MySlate_3_Jason_Millers_iPhone.csv").read_text()
    assert text.startswith("Timecode,BlendShapeCount,")
    newer = tmp_path / "MySlate_3_newer.csv"
    newer.write_text(text.replace("BlendShapeCount", "BlendshapeCount", 1))
    a, b = read_take_file(LIVELINK / "MySlate_3_Jason_Millers_iPhone.csv"), read_take_file(newer)
    assert np.array_equal(a.values, b.values) and np.array_equal(a.times, b.times)
    assert "Live Link Face CSV (BlendshapeCount: the newer app)" in b.notes


def test_calibrated_export_is_known_by_its_name(tmp_path):
    cal = tmp_path / "MySlate_3_iPhone_cal.csv"
    cal.write_bytes((LIVELINK / "MySlate_3_Jason_Millers_iPhone.csv").read_bytes())
    data = read_take_file(cal)
    assert data.calibrated is True
    assert "calibrated export (_cal): the app already subtracted the neutral face" in data.notes
    calm = tmp_path / "MySlate_3_calm.csv"
    calm.write_bytes(cal.read_bytes())
    assert read_take_file(calm).calibrated is False


def test_repeated_timecodes_keep_the_first_row(tmp_path):
    lines = (LIVELINK / "S07-001.csv").read_text().splitlines()
    copy = lines[10].split(",")
    copy[2] = "0.5000000000"
    path = tmp_path / "repeated.csv"
    path.write_text("\n".join(lines[:11] + [",".join(copy)] + lines[11:]) + "\n")
    a, b = read_take_file(LIVELINK / "S07-001.csv"), read_take_file(path)
    assert np.array_equal(a.values, b.values) and b.dropped == a.dropped + 1
    assert "1 row repeats the previous frame's time: kept the first" in b.notes


def livelink_text(rows: list[tuple[str, float]]) -> str:
    """A minimal Live Link take: (timecode, jawOpen) per row."""
    header = ",".join(LIVELINK_HEADER)
    body = []
    for code, jaw in rows:
        values = ["0.0000000000"] * 61
        values[LIVELINK_HEADER.index("JawOpen") - 2] = f"{jaw:.10f}"
        body.append(",".join([code, "61"] + values))
    return "\n".join([header] + body) + "\n"


def test_timecode_frames_counted_at_the_take_rate(tmp_path):
    """FF never reaching 30 over whole seconds: the app counted at 30, not 60."""
    rows = [(f"10:00:{s:02d}:{ff:02d}.000", 0.1) for s in range(3) for ff in range(30)]
    path = tmp_path / "thirty.csv"
    path.write_text(livelink_text(rows))
    data = read_take_file(path)
    assert data.rate == pytest.approx(30.0) and data.times[-1] == pytest.approx(89 / 30)
    assert "timecode frames counted at 30 a second (FF never reached 30)" in data.notes
    short = tmp_path / "short.csv"   # under a second: no whole second seen, so 60 as the app writes
    short.write_text(livelink_text(rows[:20]))
    assert read_take_file(short).rate == pytest.approx(60.0)


def test_a_take_across_midnight_goes_on(tmp_path):
    rows = [("23:59:59:58.000", 0.1), ("23:59:59:59.000", 0.2), ("00:00:00:00.000", 0.3), ("00:00:00:01.000", 0.4)]
    path = tmp_path / "midnight.csv"
    path.write_text(livelink_text(rows))
    data = read_take_file(path)
    assert data.times == pytest.approx(np.arange(4) / 60)
    assert data.values[:, ARKIT_NAMES.index("jawOpen")] == pytest.approx([0.1, 0.2, 0.3, 0.4])


def test_many_blocks_with_lost_rows_and_blank_lines(tmp_path):
    """36,000 rows: several of the reader's 8 MB blocks, lost rows and a blank line among them."""
    lines = (LIVELINK / "S07-001.csv").read_text().splitlines()
    header, rows = lines[0], lines[1:]
    out = [header]
    lost = 0
    for i in range(36_000):
        s, ff = divmod(i, 60)
        code = f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}:{ff:02d}.000"
        if i % 997 == 5:
            out.append(f"{code},0")
            lost += 1
        else:
            out.append(code + "," + rows[i % len(rows)].split(",", 1)[1])
        if i == 20_000:
            out.append("")
    path = tmp_path / "long.csv"
    path.write_text("\n".join(out) + "\n")
    data = read_take_file(path)
    assert len(data.times) == 36_000 - lost and data.dropped == lost
    assert data.rate == pytest.approx(60.0)
    kept = [line for line in out[1:] if line and not line.endswith(",0")]
    for k in (0, 12_345, len(kept) - 1):
        cells = dict(zip(header.split(","), kept[k].split(",")))
        expected = [min(max(float(cells[pascal_case(n)]), 0.0), 1.0) for n in ARKIT_NAMES]
        assert data.values[k] == pytest.approx(expected, abs=1e-12)
        assert data.times[k] == pytest.approx(timecode_seconds(cells["Timecode"]), abs=1e-9)


# --------------------------------------------------------------------------- our own files, written by our writers


def test_our_take_round_trips(tmp_path):
    frames = states(40, seed=3)
    rng = np.random.default_rng(4)
    points = [rng.uniform(0, 640, (478, 3)) for _ in frames]
    no_face = {6, 7, 20}
    path = tmp_path / "take.jsonl.gz"
    header = {"backend": "test", "source": "test", "width": 640, "height": 480, "fps": 30.0}
    with TakeWriter.open(str(path), header) as writer:
        for i, (state, lm) in enumerate(zip(frames, points)):
            face = i not in no_face
            size = {"width": 1280, "height": 720} if i == 9 else {}
            writer.write(i, 100.0 + i / 30, lm if face else None, state if face else None, **size)
    data = read_take_file(path)
    kept = [i for i in range(len(frames)) if i not in no_face]
    assert data.kind == "facemocap-take" and data.names == ARKIT_NAMES + VRM0_NAMES
    assert data.dropped == len(no_face) and data.calibrated is False
    assert data.times == pytest.approx([(100.0 + i / 30) - 100.0 for i in kept], abs=1e-12)
    assert data.rate == pytest.approx(30.0)
    want = fixed([np.concatenate([frames[i].blendshapes, frames[i].vrm]) for i in kept], 5)
    assert np.abs(data.values - want).max() < 1e-12
    head = fixed([frames[i].head_angles for i in kept], 5)
    eyes = fixed([frames[i].eye_angles for i in kept], 5)
    expected = unity_bones(head, eyes)
    for b, bone in enumerate(BONES):
        assert np.abs(data.bones[bone] - expected[:, b]).max() < 1e-9
    assert any("before calibration and smoothing" in n for n in data.notes)
    assert "3 frames without a face skipped (no keys there)" in data.notes
    # Landmarks: what the live landmark stream carries for the recorded points, bit for bit.
    from blender_receiver.landmark_stream import LandmarkStream
    from pythonosc.osc_message import OscMessage

    class Stats:
        bad_messages = 0

    assert data.landmarks.shape == (len(kept), 478, 3) and data.landmarks.dtype == np.float32
    for k, i in enumerate(kept):
        recorded = fixed(points[i], 4)
        size = (1280, 720) if i == 9 else (640, 480)
        stream = LandmarkStream(Stats())
        for datagram in LandmarkChunks("/facemocap/landmarks", 100).encode(recorded, size, frame_index=i, time=0.0):
            stream(OscMessage(datagram).params, "test")
        assert np.array_equal(data.landmarks[k], stream.take()[0].points)
    assert read_take_file(path, landmarks=False).landmarks is None


def test_plain_jsonl_take_and_zero_angles(tmp_path):
    path = tmp_path / "still.jsonl"
    with TakeWriter.open(str(path), {"width": 640, "height": 480}) as writer:
        for i, state in enumerate(states(5, zero_angles=True)):
            writer.write(i, i / 25, None, state)
    data = read_take_file(path)
    assert data.bones == {} and len(data.times) == 5 and data.landmarks is None
    assert "head angles all 0: no head/neck keys" in data.notes and "eye angles all 0: no eye keys" in data.notes
    assert "no landmark keys: 5 face frames without landmarks" in data.notes


def test_our_livelink_export_round_trips(tmp_path):
    frames = states(75, seed=5)
    times = [2.0 + i / 30 for i in range(len(frames))]
    path = write_export(tmp_path / "ll.csv", LiveLinkWriter, frames, times, [True] * len(frames))
    data = read_take_file(path)
    assert data.kind == "livelink-face" and data.names == ARKIT_NAMES and data.dropped == 0
    ticks = np.round((np.array(times) - 2.0) * 60_000) / 60_000   # thousandths of a 60 fps frame
    assert data.times == pytest.approx(ticks - ticks[0], abs=1e-12)
    assert np.abs(data.values - fixed([s.blendshapes for s in frames], 10)).max() < 1e-12
    expected = unity_bones([s.head_angles for s in frames], [s.eye_angles for s in frames])
    for b, bone in enumerate(BONES):   # radians with 10 decimals: within ~3e-9 degrees
        assert np.abs(data.bones[bone] - expected[:, b]).max() < 1e-8


def test_our_csv_export_round_trips(tmp_path):
    frames = states(50, seed=6)
    found = [i % 9 != 4 for i in range(len(frames))]
    times = [10.0 + i / 24 for i in range(len(frames))]
    path = write_export(tmp_path / "out.csv", CsvWriter, frames, times, found)
    data = read_take_file(path)
    assert data.kind == "facemocap-csv" and data.names == ARKIT_NAMES + VRM0_NAMES
    t = fixed(times, 6)
    assert data.times == pytest.approx(t - t[0], abs=1e-12) and data.dropped == 0
    assert np.abs(data.values - fixed([np.concatenate([s.blendshapes, s.vrm]) for s in frames], 6)).max() < 1e-12
    expected = unity_bones(fixed([s.head_angles for s in frames], 6), fixed([s.eye_angles for s in frames], 6))
    for b, bone in enumerate(BONES):
        assert np.abs(data.bones[bone] - expected[:, b]).max() < 1e-9
    assert f"{found.count(False)} frames without a face (kept: the values the live stream sent)" in data.notes


def test_our_json_export_round_trips_in_either_layout(tmp_path):
    frames = states(30, seed=7)
    found = [i not in (3, 4) for i in range(len(frames))]
    times = [i / 30 for i in range(len(frames))]
    path = write_export(tmp_path / "out.json", JsonWriter, frames, times, found)
    data = read_take_file(path)
    assert data.kind == "facemocap-json" and data.names == ARKIT_NAMES + VRM0_NAMES
    assert data.times == pytest.approx(fixed(times, 6), abs=1e-12)
    assert np.abs(data.values - fixed([np.concatenate([s.blendshapes, s.vrm]) for s in frames], 6)).max() < 1e-12
    expected = unity_bones(fixed([s.head_angles for s in frames], 6), fixed([s.eye_angles for s in frames], 6))
    for b, bone in enumerate(BONES):
        assert np.abs(data.bones[bone] - expected[:, b]).max() < 1e-9
    assert "2 frames without a face (kept: the values the live stream sent)" in data.notes
    # The same document re-saved by another tool (a different layout) reads the same.
    doc = json.loads(path.read_text())
    for indent in (None, 1, 2):
        other = tmp_path / f"resaved{indent}.json"
        other.write_text(json.dumps(doc, indent=indent))
        again = read_take_file(other)
        assert np.array_equal(again.values, data.values) and np.array_equal(again.times, data.times)
    doc["frames"][2]["time"] = -1.0
    other.write_text(json.dumps(doc, indent=2))
    with pytest.raises(TakeFileError) as error:
        read_take_file(other)
    assert one_line(error.value, other.name) == f"{other.name}: frame 2: time goes backwards (-1 s after 0.033333 s)"


def test_json_export_on_one_line_over_a_megabyte(tmp_path):
    frames = states(800, seed=8)
    path = write_export(tmp_path / "long.json", JsonWriter, frames, [i / 30 for i in range(800)], [True] * 800)
    minified = tmp_path / "minified.json"
    minified.write_text(json.dumps(json.loads(path.read_text()), separators=(",", ":")))
    assert minified.stat().st_size > 1 << 20 and b"\n" not in minified.read_bytes()
    a, b = read_take_file(path), read_take_file(minified)
    assert np.array_equal(a.values, b.values) and len(b.times) == 800


def test_empty_json_export_is_no_frames(tmp_path):
    path = write_export(tmp_path / "none.json", JsonWriter, [], [], [])
    with pytest.raises(TakeFileError) as error:
        read_take_file(path)
    assert one_line(error.value, "none.json") == "none.json: no frames"


# --------------------------------------------------------------------------- bad files: one line each


def good_take_lines(tmp_path) -> list[str]:
    path = tmp_path / "good.jsonl"
    with TakeWriter.open(str(path), {"width": 640, "height": 480}) as writer:
        for i, state in enumerate(states(4)):
            writer.write(i, i / 30, np.full((478, 3), 10.0), state)
    return path.read_text().splitlines()


def bad_files(tmp_path) -> list[tuple[str, bytes, str]]:
    """(file name, content, what the message must say)."""
    good = (LIVELINK / "S07-001.csv").read_text().splitlines()
    header = good[0].split(",")

    def row(i, cell, text):
        cells = good[i].split(",")
        cells[cell] = text
        return ",".join(cells)

    def csv_text(lines):
        return ("\n".join(lines) + "\n").encode()

    take = good_take_lines(tmp_path)
    head = json.loads(take[0])
    frame = json.loads(take[1])
    gz = gzip.compress(("\n".join(take) + "\n").encode())
    export = write_export(tmp_path / "export.json", JsonWriter, states(3), [0, 1 / 30, 2 / 30], [True] * 3).read_text()
    export_csv = write_export(tmp_path / "export.csv", CsvWriter, states(3), [0, 1 / 30, 2 / 30], [True] * 3)
    export_csv = export_csv.read_text().splitlines()
    cases = [
        ("wrong_header.csv", b"Time,Count,Foo\n00:00:00:00.000,61,1\n", "line 1: not a face take"),
        ("empty.csv", b"", "the file is empty"),
        ("junk.bin", bytes(range(256)) * 64, "not a face take"),
        ("junk.json", b"\x00\x01garbage", "binary data"),
        ("latin1.csv", "Timecode,Bl\xe9ndShapeCount\n".encode("latin-1"), "not UTF-8"),
        ("truncated_end.csv", csv_text(good[:5] + [good[5][: len(good[5]) // 2]]), "line 6"),
        ("truncated_mid.csv", csv_text(good[:3] + [",".join(good[3].split(",")[:20])] + good[4:8]),
         f"line 4, column {header[20]}: truncated row: 20 cells, the header has 63"),
        ("one_cell.csv", csv_text(good[:3] + ["12:27:47:53.169"] + good[4:6]), "line 4, column BlendShapeCount"),
        ("too_many.csv", csv_text(good[:4] + [good[4] + ",0.5"] + good[5:7]), "line 5: too many cells: 64"),
        ("letters.csv", csv_text(good[:3] + [row(3, 9, "abc")] + good[4:6]), f"line 4, column {header[9]}: not a number ('abc')"),
        ("empty_cell.csv", csv_text(good[:3] + [row(3, 9, "")] + good[4:6]), f"line 4, column {header[9]}: empty cell"),
        ("empty_count.csv", csv_text(good[:3] + [row(3, 1, "")] + good[4:6]), "line 4, column BlendShapeCount: empty cell"),
        ("blank_cell.csv", csv_text(good[:3] + [row(3, 9, "  ")] + good[4:6]), f"line 4, column {header[9]}: empty cell"),
        ("hex.csv", csv_text(good[:3] + [row(3, 9, "0x1F")] + good[4:6]), f"line 4, column {header[9]}: not a number"),
        ("nan.csv", csv_text(good[:3] + [row(3, 5, "nan")] + good[4:6]), f"line 4, column {header[5]}: not a finite number"),
        ("inf.csv", csv_text(good[:5] + [row(5, 60, "1e999")] + good[6:8]), f"line 6, column {header[60]}: not a finite"),
        ("backwards.csv", csv_text(good[:1] + [good[1], good[3], good[2], good[4]]), "line 4: time goes backwards"),
        ("header_only.csv", csv_text(good[:1]), "no frames"),
        ("lost_only.csv", csv_text(good[:1] + ["12:27:47:47.169,0", "12:27:47:49.169,0"]),
         "no frames (2 tracking-lost rows only)"),
        ("bad_timecode.csv", csv_text(good[:2] + [row(2, 0, "12:27:47")] + good[3:5]),
         "line 3, column Timecode: not a timecode"),
        ("minutes.csv", csv_text(good[:2] + [row(2, 0, "12:75:47:49.169")] + good[3:5]), "above 59"),
        ("frame_60.csv", csv_text(good[:2] + [row(2, 0, "12:27:47:61.169")] + good[3:5]), "is not below 60"),
        ("count.csv", csv_text(good[:2] + [row(2, 1, "6.5")] + good[3:5]), "line 3, column BlendShapeCount: not a whole"),
        ("MySlate_1_iPhone_neutral.csv", csv_text(good[:1] + [row(1, 0, "NeutralPose")]), "neutral-pose snapshot"),
        ("duplicate.csv", csv_text([good[0] + ",JawOpen"] + [g + ",0.1" for g in good[1:4]]), "names column 'JawOpen' twice"),
        ("missing_column.csv", csv_text([good[0].replace("JawOpen", "JawOpened")] + good[1:4]), "no JawOpen column"),
        ("binary_rows.csv", good[0].encode() + b"\n" + bytes(range(1, 256)) * 4, "line 2"),
        ("corrupt.jsonl.gz", b"\x1f\x8b\x08\x00" + bytes(range(256)) * 8, "the compressed data is damaged"),
        ("cut.jsonl.gz", gz[: len(gz) // 2], "the compressed data ends early"),
        ("cut.jsonl", ("\n".join(take[:3]) + "\n" + take[3][:500]).encode(), "line 4: incomplete last line"),
        ("newer.jsonl", (json.dumps({**head, "version": 99}) + "\n" + take[1] + "\n").encode(), "version 99 is newer"),
        ("short_state.jsonl", ("\n".join(take[:2]) + "\n" + json.dumps(
            {**frame, "state": {**frame["state"], "blendshapes": frame["state"]["blendshapes"][:51]}}) + "\n").encode(),
         "line 3: state.blendshapes must be 52 numbers"),
        ("nan_state.jsonl", ("\n".join(take[:2]) + "\n" + re.sub(r'"vrm":\[[-0-9.]+', '"vrm":[NaN', take[2], count=1)
                             + "\n").encode(), "line 3: non-finite value in state.vrm"),
        ("bad_landmarks.jsonl", ("\n".join(take[:1]) + "\n" + json.dumps({**frame, "landmarks": [[1, 2, 3]] * 12}) + "\n").encode(),
         "line 2: landmarks must be 478 x 3 numbers"),
        ("no_face.jsonl", ("\n".join([take[0]] + [json.dumps({**frame, "index": i, "time": i, "landmarks": None, "state": None})
                                                for i in range(3)]) + "\n").encode(), "no frames with a face (3 without)"),
        ("take_backwards.jsonl", ("\n".join([take[0], take[2], take[1]]) + "\n").encode(), "line 3: time goes backwards"),
        ("not_json.jsonl", (take[0] + "\n{not json}\n").encode(), "line 2: not valid JSON"),
        ("other.json", b'{"format": "something else"}\n', "a JSON file, but not a facemocap-osc take or export"),
        ("export_cut.json", export[: export.index('"frameCount"') - 5].encode(), "cut off"),
        ("export_count.json", export.replace('"frameCount": 3', '"frameCount": 4').encode(), "frameCount says 4 frames"),
        ("export_newer.json", export.replace('"version": 1', '"version": 2', 1).encode(), "version 2"),
        ("export_frame.json", export.replace('"jawOpen":', '"jawOpened":', 1).encode(), "blendshapes has no 'jawOpen'"),
        ("export_truncated.csv", ("\n".join(export_csv[:2] + [export_csv[2][:40]] + export_csv[3:]) + "\n").encode(),
         "line 3"),
    ]
    return cases


def test_bad_files_fail_with_one_line_naming_the_file(tmp_path):
    cases = bad_files(tmp_path)
    folder = tmp_path / "bad"
    folder.mkdir()
    for name, content, needle in cases:
        path = folder / name
        path.write_bytes(content)
        with pytest.raises(TakeFileError) as error:
            read_take_file(path)
        text = one_line(error.value, name)
        assert needle in text, (name, text)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(TakeFileError) as error:
        read_take_file(tmp_path / "missing.csv")
    assert one_line(error.value, "missing.csv") == "missing.csv: file not found"
    with pytest.raises(TakeFileError) as error:
        read_take_file(tmp_path)
    assert "it is a folder" in one_line(error.value, tmp_path.name)


@pytest.mark.parametrize("name", ["S07-001.csv", "take"])
def test_more_frames_than_the_limit(tmp_path, name):
    if name == "take":
        path = tmp_path / "long.jsonl"
        with TakeWriter.open(str(path), {"width": 640, "height": 480}) as writer:
            for i, state in enumerate(states(30)):
                writer.write(i, i / 30, None, state)
        name = path.name
    else:
        path = LIVELINK / name
    with pytest.raises(TakeFileError) as error:
        read_take_file(path, max_frames=20)
    text = one_line(error.value, name)
    assert "more than 20 frames, the limit" in text and "216,000" in text
    assert len(read_take_file(path, max_frames=400).times) > 20


def test_a_wrong_row_in_a_later_block_names_its_line(tmp_path):
    lines = (LIVELINK / "S07-001.csv").read_text().splitlines()
    rows = [lines[0]]
    for i in range(20_000):   # ~16 MB: the bad row lands in the reader's third block
        s, ff = divmod(i, 60)
        rows.append(f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}:{ff:02d}.000," + lines[1 + i % 299].split(",", 1)[1])
    bad = 19_000
    rows[bad] = rows[bad].rsplit(",", 3)[0]
    path = tmp_path / "late.csv"
    path.write_text("\n".join(rows) + "\n")
    with pytest.raises(TakeFileError) as error:
        read_take_file(path)
    assert f"late.csv line {bad + 1}, column RightEyeYaw: truncated row: 60 cells" in one_line(error.value, "late.csv")


def test_take_data_fields():
    data = read_take_file(LIVELINK / "S07-001.csv")
    assert data.path.endswith("S07-001.csv") and len(data) == len(data.times)
    assert data.times.dtype == np.float64 and data.values.dtype == np.float64
    assert all(q.shape == (len(data), 4) and q.dtype == np.float64 for q in data.bones.values())
    assert isinstance(data.notes, tuple) and all(isinstance(n, str) and "\n" not in n for n in data.notes)
