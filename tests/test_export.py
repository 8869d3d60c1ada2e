"""Batch export (bridge/export.py): the Live Link Face CSV layout, the Timecode, the
other formats, takes, several inputs, the tracking backend (resolved once, before any
work), the progress bar, and bad invocations (one line, exit 2)."""

from __future__ import annotations

import csv
import json
import math
import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest
from support import MODEL_FILE, SHARED_DATA, tracker_command

from bridge import export, record, tracking
from bridge.demo_face import demo_landmarks
from bridge.export import (
    CSV_COLUMNS, LIVELINK_HEADER, Progress, livelink_row, livelink_rotations, livelink_timecode, main,
)
from bridge.shape import ShapeOptions, Shaper
from bridge.solve import Solver
from bridge.state import ARKIT_NAMES, VRM0_NAMES, FaceState, pascal_case

D18 = SHARED_DATA / "video" / "liveportrait_d18.mp4"
FRAMES = SHARED_DATA / "frames"
NO_DATA = f"shared test data not found at {SHARED_DATA} (../shared/data beside the checkout)"
needs_data = pytest.mark.skipif(not D18.exists(), reason=NO_DATA)
NO_MODEL = (f"the shared face landmarker model is not at {MODEL_FILE} (../shared/data beside the "
            "checkout): the tests' local model server has nothing to serve")
needs_model = pytest.mark.skipif(not MODEL_FILE.is_file(), reason=NO_MODEL)
HAS_FACEMESH = tracking.facemesh_available()
needs_facemesh = pytest.mark.skipif(not HAS_FACEMESH, reason="the installed mediapipe has no legacy Face Mesh "
                                                             "(only mediapipe 0.10.21 has it)")
needs_no_facemesh = pytest.mark.skipif(HAS_FACEMESH, reason="the installed mediapipe has the legacy Face Mesh "
                                                            "(this tests a mediapipe without it)")

# The header row of takes recorded by Epic's Live Link Face app, byte for byte
# (alexdjulin/LiveLinkFace-CSV-Retarget-For-Motionbuilder, anim/S07-001.csv).
RECORDED_HEADER = (
    "Timecode,BlendShapeCount,EyeBlinkLeft,EyeLookDownLeft,EyeLookInLeft,EyeLookOutLeft,EyeLookUpLeft,"
    "EyeSquintLeft,EyeWideLeft,EyeBlinkRight,EyeLookDownRight,EyeLookInRight,EyeLookOutRight,EyeLookUpRight,"
    "EyeSquintRight,EyeWideRight,JawForward,JawRight,JawLeft,JawOpen,MouthClose,MouthFunnel,MouthPucker,"
    "MouthRight,MouthLeft,MouthSmileLeft,MouthSmileRight,MouthFrownLeft,MouthFrownRight,MouthDimpleLeft,"
    "MouthDimpleRight,MouthStretchLeft,MouthStretchRight,MouthRollLower,MouthRollUpper,MouthShrugLower,"
    "MouthShrugUpper,MouthPressLeft,MouthPressRight,MouthLowerDownLeft,MouthLowerDownRight,MouthUpperUpLeft,"
    "MouthUpperUpRight,BrowDownLeft,BrowDownRight,BrowInnerUp,BrowOuterUpLeft,BrowOuterUpRight,CheekPuff,"
    "CheekSquintLeft,CheekSquintRight,NoseSneerLeft,NoseSneerRight,TongueOut,HeadYaw,HeadPitch,HeadRoll,"
    "LeftEyeYaw,LeftEyePitch,LeftEyeRoll,RightEyeYaw,RightEyePitch,RightEyeRoll"
)


def read_csv(path) -> tuple[list[str], list[list[str]]]:
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    return rows[0], rows[1:]


def column(header, rows, name) -> np.ndarray:
    i = header.index(name)
    return np.array([float(r[i]) for r in rows])


def stderr_lines(captured) -> list[str]:
    return [line for line in captured.err.splitlines() if line.strip()]


def make_state(**shapes) -> FaceState:
    state = FaceState.neutral()
    for name, value in shapes.items():
        state.blendshapes[ARKIT_NAMES.index(name)] = value
    return state


def blank_images(folder: Path, n: int = 3) -> Path:
    """A folder of n face-less images."""
    folder.mkdir()
    for i in range(n):
        assert cv2.imwrite(str(folder / f"{i}.png"), np.full((120, 160, 3), 40 * i, np.uint8))
    return folder


def write_take(path: Path, n: int = 45, *, lost: range = range(20, 26), fps: float = 30.0) -> Path:
    """A take of the synthetic demo face (landmarks, no tracking needed); no face in `lost`."""
    header = {"backend": "demo", "source": "demo", "width": 640, "height": 480, "fps": fps}
    with record.TakeWriter.open(str(path), header, overwrite=True) as writer:
        for i in range(n):
            t = i / fps
            landmarks = None if i in lost else np.asarray(demo_landmarks(t, 640, 480), np.float32)
            writer.write(i, t, landmarks, None, width=640, height=480)
    return path


# --------------------------------------------------------------------------- Live Link Face layout


def test_livelink_header_is_the_recorded_takes_header():
    assert ",".join(LIVELINK_HEADER) == RECORDED_HEADER


def test_livelink_header_has_each_arkit_shape_once_and_nine_rotations():
    shapes = LIVELINK_HEADER[2:54]
    assert sorted(shapes) == sorted(pascal_case(n) for n in ARKIT_NAMES)
    assert LIVELINK_HEADER[54:] == ("HeadYaw", "HeadPitch", "HeadRoll", "LeftEyeYaw", "LeftEyePitch",
                                    "LeftEyeRoll", "RightEyeYaw", "RightEyePitch", "RightEyeRoll")
    assert len(LIVELINK_HEADER) - 2 == export.LIVELINK_BLENDSHAPE_COUNT == 61


@pytest.mark.parametrize("seconds, text", [
    (0.0, "00:00:00:00.000"),
    (1 / 30, "00:00:00:02.000"),         # 60 fps timecode: a 30 fps take steps FF by 2
    (1 / 60, "00:00:00:01.000"),
    (1 / 25, "00:00:00:02.400"),         # .fff is a fraction of a timecode frame, not ms
    (1.0, "00:00:01:00.000"),
    (59 / 60, "00:00:00:59.000"),
    (7.1666666, "00:00:07:10.000"),      # frame 215 of a 30 fps take
    (61.5, "00:01:01:30.000"),
    (3600 + 62 + 0.5, "01:01:02:30.000"),
    (0.9999999, "00:00:01:00.000"),      # rounds up into the next second, not to FF 60
    (-1.0, "00:00:00:00.000"),
    (float("nan"), "00:00:00:00.000"),
])
def test_livelink_timecode(seconds, text):
    assert livelink_timecode(seconds) == text


@pytest.mark.parametrize("fps", [24.0, 25.0, 29.97, 30.0, 59.94, 60.0, 120.0])
def test_livelink_timecode_fields_stay_in_range_and_read_back(fps):
    previous = -1.0
    for i in range(0, 4000, 7):
        t = i / fps
        text = livelink_timecode(t)
        hh, mm, ss, rest = text.split(":")
        ff, sub = rest.split(".")
        assert len(hh) == len(mm) == len(ss) == len(ff) == 2 and len(sub) == 3
        assert int(mm) < 60 and int(ss) < 60 and int(ff) < 60 and int(sub) < 1000
        back = int(hh) * 3600 + int(mm) * 60 + int(ss) + (int(ff) + int(sub) / 1000) / 60
        assert back == pytest.approx(t, abs=1e-5)
        assert back > previous
        previous = back


def test_livelink_rotations_are_radians_with_live_link_signs():
    state = FaceState.neutral()
    state.head_angles = np.array([30.0, 10.0, 5.0])          # own left, up, tilt to own left
    state.eye_angles = np.array([[20.0, 12.0], [-8.0, -4.0]])  # left eye: own left + up
    yaw, pitch, roll, lyaw, lpitch, lroll, ryaw, rpitch, rroll = livelink_rotations(state)
    assert yaw == pytest.approx(-math.radians(30))      # towards Left = negative
    assert pitch == pytest.approx(-math.radians(10))    # up = negative
    assert roll == pytest.approx(math.radians(5))       # towards the Left shoulder = positive
    assert (lyaw, lpitch) == pytest.approx((-math.radians(20), -math.radians(12)))
    assert (ryaw, rpitch) == pytest.approx((math.radians(8), math.radians(4)))
    assert lroll == rroll == 0.0


def test_livelink_row_puts_each_value_under_its_own_name():
    # The app's header lists JawRight before JawLeft and MouthRight before MouthLeft.
    state = make_state(jawLeft=0.7, jawRight=0.1, mouthLeft=0.3, mouthRight=0.05, jawOpen=0.9,
                       tongueOut=0.0, eyeBlinkLeft=0.25)
    row = livelink_row(1 / 30, state)
    values = dict(zip(LIVELINK_HEADER, row))
    assert values["Timecode"] == "00:00:00:02.000" and values["BlendShapeCount"] == "61"
    for name, expected in [("JawLeft", 0.7), ("JawRight", 0.1), ("MouthLeft", 0.3), ("MouthRight", 0.05),
                           ("JawOpen", 0.9), ("EyeBlinkLeft", 0.25), ("HeadYaw", 0.0)]:
        assert float(values[name]) == pytest.approx(expected)
    assert values["JawLeft"] == "0.7000000000" and not any(v.startswith("-0.000") for v in row)


@pytest.mark.parametrize("path, kind, stem", [
    ("clips/d18.mp4", "video", "d18"),
    ("takes/a.jsonl.gz", "take", "a"),
    ("takes/b.JSONL", "take", "b"),
    ("shots/frames", "images", "frames"),
    ("shots/frames/", "images", "frames"),
    ("shots/frames/*.png", "images", "frames"),
    ("shots/one.png", "images", "one"),
])
def test_inputs_are_recognised_and_named(path, kind, stem, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "shots" / "frames").mkdir(parents=True)
    assert export.input_kind(path) == kind
    assert export.output_stem(path, kind) == stem


# --------------------------------------------------------------------------- progress bar (tqdm)


class FakeStream:
    """A stream that records what is written; ``tty`` says what isatty() answers."""

    def __init__(self, tty: bool = True):
        self.tty = tty
        self.text = ""
        self.lock = threading.Lock()

    def write(self, s):
        with self.lock:
            self.text += s
        return len(s)

    def flush(self):
        pass

    def isatty(self):
        return self.tty


def cleared_at_end(text: str) -> bool:
    """tqdm (leave=False) overwrites its last bar with spaces and returns the cursor."""
    return re.search(r"\r +\r$", text) is not None


def test_progress_bar_on_a_terminal_counts_frames_of_the_total():
    stream = FakeStream()
    bar = Progress(["a.mp4"], enabled=True, totals=[200], stream=stream)
    bar.start(0, 200)
    bar.update(0, 100)
    bar.message("a line above the bar")
    bar.finish_job(0, 200)
    bar.close()
    text = stream.text
    assert text.startswith("\rexporting a.mp4:")
    assert "0/200" in text and "100/200" in text and "200/200" in text and "100%" in text
    # The line is written on a cleared bar, then the bar is drawn again below it.
    assert re.search(r"\r +\ra line above the bar\n\rexporting a.mp4: +50%", text), text
    assert cleared_at_end(text)
    assert bar.bar.n == 200


def test_progress_total_is_known_once_every_input_is():
    stream = FakeStream()
    bar = Progress(["a.mp4", "b.jsonl"], enabled=True, totals=[100, None], stream=stream)   # takes: unknown
    bar.update(0, 40)
    bar.message("first")
    assert "40 frames [" in stream.text and "/100" not in stream.text and "0/2 inputs done" in stream.text
    bar.finish_job(0, 100)
    bar.update(1, 30)
    bar.finish_job(1, 45)       # the take's count is known when it ends
    bar.close()
    assert "145/145" in stream.text and "2/2 inputs done" in stream.text
    assert bar.bar.n == bar.bar.total == 145


def test_progress_total_follows_what_the_inputs_really_had():
    bar = Progress(["a.mp4", "b.mp4"], enabled=True, totals=[100, 50], stream=FakeStream())
    bar.start(1, 60)            # the worker's own count replaces the parent's
    bar.update(0, 120)          # the container said 100: the total grows, never below the count
    assert bar.bar.total == 180 and bar.bar.n == 120
    bar.finish_job(0, 120)
    bar.finish_job(1, 10)       # failed after 10 frames
    assert bar.bar.total == bar.bar.n == 130
    bar.update(1, 5)            # a late, stale report from a worker changes nothing
    assert bar.bar.n == 130
    bar.close()


@pytest.mark.parametrize("enabled, tty", [(False, True), (True, False)])
def test_progress_bar_only_on_a_terminal_and_never_when_quiet(enabled, tty):
    stream = FakeStream(tty=tty)
    bar = Progress(["a.mp4"], enabled=enabled, totals=[10], stream=stream)
    bar.start(0, 10)
    bar.update(0, 10)
    bar.message("a message")        # messages (summaries, errors, logs) still go out
    bar.finish_job(0, 10)
    bar.close()
    assert stream.text == "a message\n"


def test_progress_is_thread_safe():
    stream = FakeStream()
    bar = Progress(["a.mp4", "b.mp4"], enabled=True, totals=[2000, 2000], stream=stream)

    def pump(job):                  # as the -j N pump thread does
        for done in range(1, 2001):
            bar.update(job, done)

    threads = [threading.Thread(target=pump, args=(job,)) for job in (0, 1)]
    for thread in threads:
        thread.start()
    for i in range(100):
        bar.message(f"message {i}")
    for thread in threads:
        thread.join()
    bar.finish_job(0, 2000)
    bar.finish_job(1, 2000)
    bar.close()
    assert bar.bar.n == 4000
    for i in range(100):            # every line whole, on a cleared bar
        assert re.search(rf"\r +\rmessage {i}\n", stream.text) or stream.text.startswith(f"message {i}\n"), i
    assert "4000/4000" in stream.text and cleared_at_end(stream.text)


def test_export_on_a_terminal_shows_the_bar_and_lines_above_it(tmp_path, monkeypatch):
    take = write_take(tmp_path / "demo.jsonl", n=45)
    stderr = FakeStream()
    monkeypatch.setattr(sys, "stderr", stderr)
    assert main([str(take), "-o", str(tmp_path / "demo.csv"), "--format", "csv"]) == 0
    text = stderr.text
    assert "\rexporting demo.jsonl:" in text and "45/45" in text
    assert re.search(r"\rfacemocap-osc: .*demo\.jsonl -> .*demo\.csv: 45 frames, face in 39, .* frames/s\)\n",
                     text), text
    assert cleared_at_end(text)

    quiet = FakeStream()
    monkeypatch.setattr(sys, "stderr", quiet)
    assert main([str(take), "-o", str(tmp_path / "demo.csv"), "--format", "csv", "--force", "--quiet"]) == 0
    assert quiet.text == ""


# --------------------------------------------------------------------------- takes (no tracking)


def expected_from_take(path) -> list[tuple[float, bool, FaceState]]:
    """What the live pipeline makes of a take's landmarks: Solver + default Shaper."""
    header, frames = record.read_take(str(path))
    solver, shaper = Solver(), Shaper(ShapeOptions())
    out = []
    for f in frames:
        state = None if f.landmarks is None else solver.solve(f.landmarks, (f.width, f.height), time=f.time)
        shaped, found = shaper.update(f.time, state)
        out.append((f.time, found, shaped))
    return out


def test_take_is_resolved_from_its_landmarks_like_live(tmp_path, capsys):
    take = write_take(tmp_path / "demo.jsonl.gz")
    out = tmp_path / "demo.csv"
    assert main([str(take), "-o", str(out), "--format", "livelink-csv", "--quiet"]) == 0
    assert capsys.readouterr().err == ""   # --quiet: no bar, no summary
    header, rows = read_csv(out)
    expected = expected_from_take(take)
    assert ",".join(header) == RECORDED_HEADER
    assert len(rows) == len(expected) == 45
    for row, (t, found, state) in zip(rows, expected):
        assert row == livelink_row(t, state)
    # No face in frames 20-25: a row each all the same, the last face held (as live).
    assert rows[20][2:] == rows[19][2:]


def test_csv_and_json_have_every_channel(tmp_path):
    take = write_take(tmp_path / "demo.jsonl")
    expected = expected_from_take(take)
    assert main([str(take), "-o", str(tmp_path / "demo.csv"), "--format", "csv", "--quiet"]) == 0
    assert main([str(take), "-o", str(tmp_path / "demo.json"), "--format", "json", "--quiet"]) == 0

    header, rows = read_csv(tmp_path / "demo.csv")
    assert tuple(header) == CSV_COLUMNS
    assert len(header) == 3 + 52 + 16 + 3 + 3 + 4
    assert len(rows) == 45
    assert [int(r[2]) for r in rows] == [int(found) for _, found, _ in expected]
    assert [r[2] for r in rows[20:26]] == ["0"] * 6
    jaw = column(header, rows, "jawOpen")
    assert jaw == pytest.approx([s.blendshape("jawOpen") for _, _, s in expected], abs=1e-6)
    assert column(header, rows, "headYaw") == pytest.approx([s.head_angles[0] for _, _, s in expected], abs=1e-6)
    assert column(header, rows, "time") == pytest.approx([t for t, _, _ in expected], abs=1e-6)

    doc = json.loads((tmp_path / "demo.json").read_text())
    assert doc["format"] == "facemocap-osc export" and doc["kind"] == "take"
    assert doc["frameCount"] == len(doc["frames"]) == 45
    assert doc["faceCount"] == 39 and (doc["width"], doc["height"]) == (640, 480)
    first = doc["frames"][0]
    assert set(first) == {"frame", "time", "found", "blendshapes", "vrm", "head", "eyes"}
    assert list(first["blendshapes"]) == list(ARKIT_NAMES)
    assert list(first["vrm"]) == list(VRM0_NAMES)
    assert set(first["head"]) == {"yaw", "pitch", "roll", "x", "y", "z"}
    assert set(first["eyes"]) == {"leftYaw", "leftPitch", "rightYaw", "rightPitch"}
    assert [f["blendshapes"]["jawOpen"] for f in doc["frames"]] == pytest.approx(jaw, abs=1e-6)


def test_damaged_take_writes_what_came_before_and_fails_that_input(tmp_path, capsys):
    good = write_take(tmp_path / "good.jsonl", n=10, lost=range(0))
    bad = write_take(tmp_path / "bad.jsonl", n=10, lost=range(0))
    data = bad.read_bytes()
    bad.write_bytes(data[: len(data) - 500])          # the last line is cut off
    out = tmp_path / "out"
    assert main([str(bad), str(good), "-o", str(out), "--format", "csv"]) == 1
    lines = stderr_lines(capsys.readouterr())
    errors = [line for line in lines if "error" in line]
    assert len(errors) == 1 and "bad.jsonl" in errors[0] and "line 11" in errors[0]
    assert len(read_csv(out / "bad.csv")[1]) == 9
    assert len(read_csv(out / "good.csv")[1]) == 10


def test_existing_output_is_refused_unless_forced(tmp_path, capsys):
    take = write_take(tmp_path / "demo.jsonl", n=5)
    out = tmp_path / "demo.csv"
    out.write_text("keep me")
    assert main([str(take), "-o", str(out), "--format", "csv"]) == 2
    lines = stderr_lines(capsys.readouterr())
    assert len(lines) == 1 and "already exists" in lines[0] and "--force" in lines[0]
    assert out.read_text() == "keep me"
    assert main([str(take), "-o", str(out), "--format", "csv", "--force", "--quiet"]) == 0
    assert len(read_csv(out)[1]) == 5
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".part")] == []


# --------------------------------------------------------------------------- bad invocations


def bad_cases(tmp: Path) -> list[tuple[list[str], str]]:
    (tmp / "not_a_video.mp4").write_text("not a video")
    (tmp / "empty").mkdir()
    (tmp / "a_file").write_text("x")
    take = write_take(tmp / "ok.jsonl", n=3)
    (tmp / "not_a_take.jsonl").write_text('{"hello": 1}\n')
    images = blank_images(tmp / "blank", 1)
    out = str(tmp / "out.csv")
    return [
        ([str(tmp / "missing.mp4"), "-o", out, "--format", "csv"], "file not found"),
        ([str(tmp / "not_a_video.mp4"), "-o", out, "--format", "csv"], "not a video"),
        ([str(tmp / "empty"), "-o", out, "--format", "csv"], "no images"),
        ([str(tmp / "missing.jsonl.gz"), "-o", out, "--format", "csv"], "file not found"),
        ([str(tmp / "not_a_take.jsonl"), "-o", out, "--format", "csv"], "not a facemocap-osc take"),
        ([str(tmp / "nothing*.png"), "-o", out, "--format", "csv"], "no image files match"),
        ([str(take), "-o", str(tmp / "a_file" / "out.csv"), "--format", "csv"], "a_file"),
        ([str(take), "-o", str(tmp / "no_such_folder" / "out.csv"), "--format", "csv"], "no such folder"),
        ([str(take), str(take), "-o", str(tmp / "a_file"), "--format", "csv"], "must be a folder"),
        ([str(take), str(take), "-o", str(tmp / "several.csv"), "--format", "csv"], "must be a folder"),
        ([str(take), str(take), "-o", str(tmp / "dup"), "--format", "csv"], "would both be written"),
        ([str(take), "-o", str(take), "--format", "csv", "--force"], "is the input itself"),
        ([str(images), "-o", out, "--format", "csv", "--backend", "landmarker", "--model",
          str(tmp / "missing.task")], "--model " + str(tmp / "missing.task") + ": file not found"),
        ([str(images), "-o", out, "--format", "csv", "--model", str(tmp / "empty")], "is a folder"),
        ([str(images), "-o", out, "--format", "csv", "--model", str(tmp / "a_file")],
         "not a valid MediaPipe face landmarker bundle"),
        ([str(images), "-o", out, "--format", "csv", "--backend", "facemesh", "--model", str(tmp / "a_file")],
         "--model is for the landmarker backend"),
        ([str(take), "-o", out, "--format", "csv", "--backend", "facemesh", "--blendshapes", "model"],
         "--blendshapes model needs the landmarker backend"),
        ([str(take), "-o", out, "--format", "xml"], "invalid choice"),
        ([str(take), "-o", out, "--format", "csv", "-j", "0"], "above 0"),
    ]


def test_bad_invocations_fail_at_start_with_one_line(tmp_path, capsys):
    for argv, needle in bad_cases(tmp_path):
        if "invalid choice" in needle or "above 0" in needle:
            with pytest.raises(SystemExit) as exit_info:   # argparse: usage + one error line
                main(argv)
            assert exit_info.value.code == 2
            err = capsys.readouterr().err
            assert needle in err.splitlines()[-1]
            continue
        assert main(argv) == 2, argv
        lines = stderr_lines(capsys.readouterr())
        assert len(lines) == 1, (argv, lines)
        assert lines[0].startswith("facemocap-osc export: error: ") and needle in lines[0], (argv, lines)
        assert not (tmp_path / "out.csv").exists()
        assert not (tmp_path / "dup").exists()     # nothing created when a check fails


# --------------------------------------------------------------------------- the tracking backend


@pytest.fixture
def no_model_anywhere(tmp_path, monkeypatch, model_server):
    """An empty user cache and a model host that answers HTTP 500."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "empty_cache"))
    monkeypatch.setenv("FACEMOCAP_MODEL_URL", model_server.url("/500"))
    monkeypatch.delenv("FACEMOCAP_MODEL", raising=False)
    return model_server


def assert_nothing_written(folder: Path, *names: str) -> None:
    for name in names:
        assert not (folder / name).exists(), name
    assert [p.name for p in folder.rglob("*.part")] == []


@needs_no_facemesh
def test_facemesh_backend_without_face_mesh_is_one_line(tmp_path, capsys):
    images = blank_images(tmp_path / "blank", 2)
    out = tmp_path / "out.csv"
    assert main([str(images), "-o", str(out), "--format", "csv", "--backend", "facemesh"]) == 2
    lines = stderr_lines(capsys.readouterr())
    assert len(lines) == 1 and lines[0].startswith("facemocap-osc export: error: "), lines
    assert 'pip install ".[legacy]"' in lines[0]
    assert_nothing_written(tmp_path, "out.csv")


@needs_no_facemesh
def test_auto_without_a_model_or_face_mesh_is_one_error(tmp_path, capsys, no_model_anywhere):
    a, b = blank_images(tmp_path / "a", 2), blank_images(tmp_path / "b", 2)
    out = tmp_path / "out"
    assert main([str(a), str(b), "-o", str(out), "--format", "csv", "-j", "2"]) == 2
    lines = stderr_lines(capsys.readouterr())
    errors = [line for line in lines if line.startswith("facemocap-osc export: error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], lines
    assert "HTTP 500" in errors[0] and "facemocap-osc model download" in errors[0]
    assert all(line.startswith("facemocap-osc: downloading") for line in lines[:-1]), lines
    assert not out.exists()          # the output folder is created only once the backend is there
    assert not list((tmp_path / "empty_cache").rglob("*.part"))


@needs_facemesh
def test_auto_without_a_model_falls_back_to_face_mesh(tmp_path, capsys, no_model_anywhere):
    images = blank_images(tmp_path / "blank", 2)
    out = tmp_path / "blank.json"
    assert main([str(images), "-o", str(out), "--format", "json"]) == 0
    lines = stderr_lines(capsys.readouterr())
    assert any("using the legacy Face Mesh instead" in line for line in lines), lines
    assert not [line for line in lines if "error" in line]
    doc = json.loads(out.read_text())
    assert (doc["backend"], doc["blendshapes"], doc["frameCount"]) == ("facemesh", "solver", 2)


def test_blendshapes_model_needs_the_landmarker(tmp_path, capsys, no_model_anywhere):
    # Even where Face Mesh exists, auto does not fall back to it: it has no blendshape model.
    images = blank_images(tmp_path / "blank", 2)
    out = tmp_path / "out.csv"
    assert main([str(images), "-o", str(out), "--format", "csv", "--blendshapes", "model"]) == 2
    lines = stderr_lines(capsys.readouterr())
    assert lines[-1].startswith("facemocap-osc export: error: --blendshapes model needs the landmarker "
                                "backend: ") and "HTTP 500" in lines[-1], lines
    assert len([line for line in lines if "error" in line]) == 1
    assert_nothing_written(tmp_path, "out.csv")


def test_takes_need_no_backend(tmp_path, capsys, no_model_anywhere):
    take = write_take(tmp_path / "demo.jsonl", n=5)
    hits = dict(no_model_anywhere.hits)
    for backend in ("auto", "landmarker", "facemesh"):   # facemesh even where mediapipe lacks it
        out = tmp_path / f"{backend}.json"
        assert main([str(take), "-o", str(out), "--format", "json", "--backend", backend, "--quiet"]) == 0
        assert capsys.readouterr().err == ""
        doc = json.loads(out.read_text())
        assert (doc["backend"], doc["blendshapes"], doc["frameCount"]) == (None, "solver", 5)
    assert no_model_anywhere.hits == hits        # nothing was downloaded, nothing was asked
    assert not (tmp_path / "empty_cache").exists()


@needs_model
def test_auto_downloads_the_model_once_in_the_parent(tmp_path, capsys, monkeypatch, model_server):
    cache = tmp_path / "cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    a, b = blank_images(tmp_path / "a", 2), blank_images(tmp_path / "b", 3)
    before = model_server.hits.get("/face_landmarker.task", 0)
    out = tmp_path / "out"
    assert main([str(a), str(b), "-o", str(out), "--format", "json", "-j", "2"]) == 0
    assert model_server.hits.get("/face_landmarker.task", 0) == before + 1
    assert (cache / "facemocap-osc" / "models" / "face_landmarker.task").stat().st_size == MODEL_FILE.stat().st_size
    lines = stderr_lines(capsys.readouterr())
    assert lines[0].startswith("facemocap-osc: downloading the face landmarker model"), lines
    assert len([line for line in lines if " -> " in line]) == 2 and not [x for x in lines if "error" in x]
    for name, frames in (("a.json", 2), ("b.json", 3)):
        doc = json.loads((out / name).read_text())
        assert (doc["backend"], doc["blendshapes"], doc["frameCount"]) == ("landmarker", "fused", frames)
    # Cached now: the next export downloads nothing.
    assert main([str(a), "-o", str(tmp_path / "again.csv"), "--format", "csv", "--quiet"]) == 0
    assert model_server.hits.get("/face_landmarker.task", 0) == before + 1


@needs_model
def test_model_given_is_used_without_a_download(tmp_path, no_model_anywhere):
    images = blank_images(tmp_path / "blank", 2)
    hits = dict(no_model_anywhere.hits)
    for extra, blendshapes in (([], "fused"), (["--blendshapes", "solver"], "solver"),
                               (["--blendshapes", "model"], "model"),
                               (["--backend", "landmarker", "--blendshapes", "model"], "model")):
        out = tmp_path / f"{blendshapes}{len(extra)}.json"
        assert main([str(images), "-o", str(out), "--format", "json", "--model", str(MODEL_FILE), "--quiet",
                     *extra]) == 0
        doc = json.loads(out.read_text())
        assert (doc["backend"], doc["blendshapes"]) == ("landmarker", blendshapes)
    assert no_model_anywhere.hits == hits


def test_jobs_carry_the_resolved_backend(tmp_path):
    # A worker never resolves ("auto" is not a backend it can open): the parent did.
    images = blank_images(tmp_path / "blank", 1)
    job = export.Job(0, str(images), "images", str(tmp_path / "o.csv"), "csv", backend="auto")
    result = export.export_one(job)
    assert result.error and "no tracking backend resolved" in result.error
    assert not (tmp_path / "o.csv").exists()


def run_export_command(command: list[str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*command, *args], capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL)


def test_module_command_bad_input_is_one_line_and_exit_2(tmp_path):
    proc = run_export_command([sys.executable, "-m", "bridge.export"],
                              str(tmp_path / "missing.mp4"), "-o", str(tmp_path / "o.csv"), "--format", "csv")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"facemocap-osc export: error: cannot open video '{tmp_path / 'missing.mp4'}': file not found"]


def test_console_script_export(tmp_path):
    command = [*tracker_command(), "export"]
    probe = run_export_command(command, "--help")
    assert probe.returncode == 0 and "facemocap-osc export" in probe.stdout
    bad = run_export_command(command, str(tmp_path / "missing.mp4"), "-o", str(tmp_path / "o.csv"),
                             "--format", "csv")
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1
    take = write_take(tmp_path / "demo.jsonl", n=8)
    ok = run_export_command(command, str(take), "-o", str(tmp_path / "demo.csv"), "--format", "livelink-csv")
    assert ok.returncode == 0, ok.stderr
    assert len(read_csv(tmp_path / "demo.csv")[1]) == 8


# --------------------------------------------------------------------------- real tracking


@needs_model
def test_frames_without_a_face_get_neutral_rows(tmp_path):
    folder = blank_images(tmp_path / "blank", 3)
    out = tmp_path / "blank.csv"
    assert main([str(folder), "-o", str(out), "--format", "livelink-csv", "--quiet"]) == 0
    header, rows = read_csv(out)
    assert len(rows) == 3
    assert [r[0] for r in rows] == ["00:00:00:00.000", "00:00:00:02.000", "00:00:00:04.000"]
    for row in rows:
        assert row[1] == "61" and all(float(v) == 0.0 for v in row[2:])


@pytest.fixture(scope="module")
def d18_exports(tmp_path_factory):
    if not D18.exists():
        pytest.skip(NO_DATA)
    if not MODEL_FILE.is_file():
        pytest.skip(NO_MODEL)
    folder = tmp_path_factory.mktemp("d18")
    paths = {"livelink-csv": folder / "d18_livelink.csv", "csv": folder / "d18.csv", "json": folder / "d18.json"}
    for fmt, path in paths.items():
        assert main([str(D18), "-o", str(path), "--format", fmt, "--quiet"]) == 0
    return paths


@needs_data
def test_d18_to_live_link_csv(d18_exports):
    header, rows = read_csv(d18_exports["livelink-csv"])
    assert ",".join(header) == RECORDED_HEADER
    assert len(rows) == 216                       # one row per frame
    assert all(len(r) == 63 and r[1] == "61" for r in rows)
    assert [r[0] for r in rows] == [livelink_timecode(i / 30) for i in range(216)]
    assert rows[-1][0] == "00:00:07:10.000"
    jaw = column(header, rows, "JawOpen")
    # Closed before frame 16 (below the labelled frames' 0.3 line: the landmarker's
    # mesh rests a little higher than Face Mesh's, ~0.2 here).
    assert jaw[0:16].mean() < 0.3 and jaw[0:16].mean() < jaw[22:41].mean() / 2
    for first, last in [(22, 40), (65, 95), (120, 154)]:   # the mouth wide open three times
        assert jaw[first:last + 1].mean() > 0.4, (first, last)
    for name in LIVELINK_HEADER[54:]:            # radians: a face looking at the camera
        assert np.abs(column(header, rows, name)).max() < 1.0


@needs_data
def test_d18_csv_and_json_agree_with_live_link(d18_exports):
    header, rows = read_csv(d18_exports["livelink-csv"])
    cheader, crows = read_csv(d18_exports["csv"])
    assert tuple(cheader) == CSV_COLUMNS and len(crows) == 216
    assert all(r[2] == "1" for r in crows)
    assert column(cheader, crows, "jawOpen") == pytest.approx(column(header, rows, "JawOpen"), abs=1e-6)
    assert column(cheader, crows, "jawLeft") == pytest.approx(column(header, rows, "JawLeft"), abs=1e-6)
    assert np.radians(column(cheader, crows, "headYaw")) == pytest.approx(-column(header, rows, "HeadYaw"),
                                                                          abs=1e-5)
    doc = json.loads(d18_exports["json"].read_text())
    assert doc["frameCount"] == doc["faceCount"] == len(doc["frames"]) == 216
    # auto: the landmarker (its model downloaded from the tests' local server), fused values by default
    assert (doc["width"], doc["height"], doc["fps"], doc["backend"]) == (480, 480, 30.0, "landmarker")
    assert doc["blendshapes"] == "fused"
    assert [f["blendshapes"]["jawOpen"] for f in doc["frames"]] == pytest.approx(
        column(cheader, crows, "jawOpen"), abs=1e-6)
    assert [f["frame"] for f in doc["frames"]] == list(range(216))


@needs_data
@needs_facemesh
def test_d18_with_face_mesh(tmp_path):
    out = tmp_path / "d18.json"
    assert main([str(D18), "-o", str(out), "--format", "json", "--backend", "facemesh", "--quiet"]) == 0
    doc = json.loads(out.read_text())
    assert (doc["backend"], doc["blendshapes"], doc["frameCount"], doc["faceCount"]) == ("facemesh", "solver",
                                                                                       216, 216)
    jaw = np.array([f["blendshapes"]["jawOpen"] for f in doc["frames"]])
    assert jaw[0:16].mean() < 0.15
    for first, last in [(22, 40), (65, 95), (120, 154)]:
        assert jaw[first:last + 1].mean() > 0.4, (first, last)


@needs_data
@needs_model
def test_two_inputs_in_parallel(tmp_path, capsys):
    images = tmp_path / "d18_frames"
    images.mkdir()
    for name in ("d18_f0005.png", "d18_f0080.png", "d18_f0140.png"):
        shutil.copy(FRAMES / name, images / name)
    out = tmp_path / "out"
    assert main([str(D18), str(images), "-o", str(out), "--format", "livelink-csv", "-j", "2"]) == 0
    lines = stderr_lines(capsys.readouterr())
    assert len([line for line in lines if " -> " in line]) == 2 and not [line for line in lines if "error" in line]
    header, rows = read_csv(out / "liveportrait_d18.csv")
    assert len(rows) == 216
    header, rows = read_csv(out / "d18_frames.csv")
    assert len(rows) == 3
    jaw = column(header, rows, "JawOpen")
    assert jaw[0] < 0.3 <= jaw[1]     # frame 5: closed; frame 80: wide open (the labels' 0.3 line)
    assert sorted(os.listdir(out)) == ["d18_frames.csv", "liveportrait_d18.csv"]
