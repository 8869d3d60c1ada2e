"""The real `facemocap-osc` as a subprocess, sending to a receiver on 127.0.0.1."""

import json
import os
import socket
import subprocess
import time

import numpy as np
import pytest
from pythonosc.osc_packet import OscPacket
from support import SHARED_DATA, Receiver, tracker_command

DATA = SHARED_DATA
D3 = DATA / "video" / "liveportrait_d3.mp4"
MODEL = DATA / "models" / "face_landmarker.task"
MAX_DATAGRAM = 1200          # the shipped VMC presets' limit


def run_tracker(*args, timeout=180) -> tuple[subprocess.CompletedProcess, list[bytes]]:
    receiver = Receiver()
    try:
        proc = subprocess.run([*tracker_command(), "--port", str(receiver.port), "--quiet", *args],
                              capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    finally:
        receiver.close()
    return proc, receiver.datagrams


def frames_from(datagrams: list[bytes]) -> list[dict]:
    """Group the decoded messages into frames (OK ... Apply) and check the framing."""
    frames, current = [], None
    for datagram in datagrams:
        assert len(datagram) <= MAX_DATAGRAM
        for timed in OscPacket(datagram).messages:
            msg = timed.message
            if msg.address == "/VMC/Ext/OK":
                assert current is None, "a frame started before the previous one was applied"
                current = {"ok": msg.params, "blend": {}, "bones": {}}
            elif msg.address == "/VMC/Ext/T":
                current["t"] = msg.params[0]
            elif msg.address == "/VMC/Ext/Blend/Val":
                current["blend"][msg.params[0]] = msg.params[1]
            elif msg.address == "/VMC/Ext/Bone/Pos":
                current["bones"][msg.params[0]] = msg.params[1:]
            elif msg.address == "/VMC/Ext/Blend/Apply":
                frames.append(current)
                current = None
    assert current is None, "the stream ended in the middle of a frame (no Apply)"
    return frames


def check_frame_is_well_formed(frame: dict, clips: int = 52) -> None:
    """clips: 52 for vmc-perfect-sync, 12 for vmc (A I U E O, Blink, Blink_L/R, Look*)."""
    assert frame["ok"][0] == 1 and frame["ok"][3] in (0, 1)
    assert set(frame["bones"]) == {"Neck", "Head", "LeftEye", "RightEye"}
    for values in frame["bones"].values():
        assert len(values) == 7
        assert np.linalg.norm(values[3:]) == pytest.approx(1.0, abs=1e-4)
    assert len(frame["blend"]) == clips
    assert all(0.0 <= v <= 1.0 for v in frame["blend"].values())


@pytest.mark.skipif(not D3.exists(), reason=f"real test data not found: {D3} (../shared/data)")
def test_video_end_to_end_blinks_and_mouth_arrive_at_the_right_frames():
    proc, datagrams = run_tracker("--video", str(D3), "--fast", "--preset", "vmc-perfect-sync")
    assert proc.returncode == 0, proc.stderr
    frames = frames_from(datagrams)
    assert len(frames) == 354
    for frame in frames:
        check_frame_is_well_formed(frame)
        assert frame["ok"][3] == 1
    # Map frames to video frames by the stream's own media time, not by counting.
    by_index = {round(f["t"] * 30.0): f["blend"] for f in frames}
    assert sorted(by_index) == list(range(354))

    def series(name, first, last):
        return np.array([by_index[i][name] for i in range(first, last + 1)])

    for first, last in ((48, 52), (57, 62)):
        for name in ("EyeBlinkLeft", "EyeBlinkRight"):
            blink = series(name, first, last)
            assert blink.max() >= 0.9, (name, first, blink)
            assert np.mean(blink >= 0.5) >= 0.6, (name, first, blink)
    for name in ("EyeBlinkLeft", "EyeBlinkRight"):
        assert series(name, 70, 95).max() <= 0.3
    jaw_open = series("JawOpen", 305, 353)
    jaw_closed = np.concatenate([series("JawOpen", 70, 95), series("JawOpen", 170, 290)])
    assert jaw_open.min() > jaw_closed.max() + 0.1
    assert jaw_open.mean() > jaw_closed.mean() + 0.3


def test_demo_runs_and_streams_valid_vmc():
    proc, datagrams = run_tracker("--demo", "--duration", "3", timeout=60)
    assert proc.returncode == 0, proc.stderr
    frames = frames_from(datagrams)
    assert 60 <= len(frames) <= 100          # paced at 30 fps
    times = [f["t"] for f in frames]
    assert all(b > a for a, b in zip(times, times[1:]))
    for frame in frames:
        check_frame_is_well_formed(frame, clips=12)
        assert frame["ok"][3] == 1
    # The demo blinks, talks and turns within its first seconds.
    assert max(f["blend"]["Blink"] for f in frames) > 0.5
    assert max(f["blend"]["A"] for f in frames) > 0.2


def test_plain_messages_and_camel_names():
    proc, datagrams = run_tracker("--demo", "--fast", "--frames", "5", "--no-bundle", "--arkit-names", "camel",
                                  "--preset", "vmc-perfect-sync")
    assert proc.returncode == 0, proc.stderr
    assert all(not d.startswith(b"#bundle") for d in datagrams)
    frames = frames_from(datagrams)
    assert len(frames) == 5
    assert "eyeBlinkLeft" in frames[0]["blend"] and "EyeBlinkLeft" not in frames[0]["blend"]


@pytest.mark.skipif(not (D3.exists() and MODEL.exists()), reason="real test data / model not found in ../shared/data")
def test_landmarker_backend_end_to_end():
    proc, datagrams = run_tracker("--video", str(D3), "--fast", "--frames", "70",
                                  "--backend", "landmarker", "--model", str(MODEL), "--preset", "vmc-perfect-sync")
    assert proc.returncode == 0, proc.stderr
    frames = frames_from(datagrams)
    assert len(frames) == 70
    by_index = {round(f["t"] * 30.0): f["blend"] for f in frames}
    assert max(by_index[i]["EyeBlinkLeft"] for i in range(48, 53)) > 0.4   # the model's own scores


def test_no_camera_exits_2_with_a_hint():
    proc = subprocess.run([*tracker_command(), "--camera", "97", "--quiet"], capture_output=True, text=True,
                          timeout=60, stdin=subprocess.DEVNULL)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "--demo" in lines[0] and "--video" in lines[0]
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("args,expected", [
    (["--video", "no/such/file.mp4"], "file not found"),
    (["--images", "no/such/folder"], "no/such/folder"),
    (["--demo", "--port", "70000"], "invalid port"),
    (["--demo", "--port", "abc"], "invalid port"),
    (["--demo", "--host", "no-such-host.invalid"], "no-such-host.invalid"),
    (["--backend", "landmarker", "--demo"], "--demo gives landmarks, not images: it takes no --backend"),
    (["--model", "missing.task", "--demo"], "it takes no --model"),
    (["--video", "no/such.mp4", "--model", "missing.task"], "no/such.mp4"),
    (["--images", str(DATA / "stills"), "--model", "missing.task"], "--model missing.task: file not found"),
    (["--images", str(DATA / "stills"), "--model", str(DATA)], "is a folder"),
])
def test_bad_input_exits_2_with_one_line(args, expected):
    proc = subprocess.run([*tracker_command(), "--quiet", *args], capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], proc.stderr


def test_sigterm_stops_cleanly_with_exit_0():
    proc = subprocess.Popen([*tracker_command(), "--demo", "--quiet", "--port", "9"], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1.5)
    proc.terminate()
    _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert "Traceback" not in err


def test_help_and_version():
    out = subprocess.run([*tracker_command(), "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "--demo" in out.stdout and "--no-bundle" in out.stdout
    version = subprocess.run([*tracker_command(), "--version"], capture_output=True, text=True, timeout=60)
    assert version.returncode == 0 and version.stdout.startswith("facemocap-osc ")


def test_preview_without_a_display_exits_2_instead_of_aborting():
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    proc = subprocess.run([*tracker_command(), "--demo", "--preview", "--frames", "3", "--quiet"], capture_output=True,
                          text=True, timeout=60, stdin=subprocess.DEVNULL, env=env)
    assert proc.returncode == 2 and "--preview" in proc.stderr


# ---- neutral-face calibration and profiles ----

@pytest.fixture
def config_home(tmp_path, monkeypatch):
    """Profiles go to a temp config dir (the subprocess inherits the environment)."""
    monkeypatch.delenv("FACEMOCAP_OSC_CONFIG_DIR", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    return tmp_path


def run_quiet(*args) -> subprocess.CompletedProcess:
    return subprocess.run([*tracker_command(), "--quiet", *args], capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)


def test_calibrate_saves_a_profile_that_a_later_run_uses(config_home):
    proc, datagrams = run_tracker("--demo", "--duration", "3", "--calibrate", "1", "--profile", "t1",
                                  "--control-port", "0", timeout=60)
    assert proc.returncode == 0, proc.stderr
    path = config_home / "facemocap-osc" / "profiles" / "t1.json"
    data = json.loads(path.read_text())
    from bridge.solve.geometry import MEASURES
    assert data["version"] == 2 and len(data["measures"]) == len(MEASURES)
    for frame in frames_from(datagrams):
        check_frame_is_well_formed(frame, clips=12)
    proc, datagrams = run_tracker("--demo", "--fast", "--frames", "5", "--profile", "t1", "--control-port", "0")
    assert proc.returncode == 0, proc.stderr
    assert len(frames_from(datagrams)) == 5


def test_ok_message_says_calibrating_then_calibrated(config_home):
    proc, datagrams = run_tracker("--demo", "--fast", "--frames", "60", "--calibrate", "1", "--control-port", "0")
    assert proc.returncode == 0, proc.stderr
    states = [f["ok"][1] for f in frames_from(datagrams)]
    done = states.index(3)
    assert done > 0 and set(states[:done]) == {2} and set(states[done:]) == {3}


def test_missing_profile_exits_2_with_one_line(config_home):
    proc = run_quiet("--demo", "--profile", "missing")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "missing" in lines[0] and "--calibrate" in lines[0], proc.stderr


def test_corrupt_profile_exits_2_naming_the_file_and_key(config_home):
    folder = config_home / "facemocap-osc" / "profiles"
    folder.mkdir(parents=True)
    (folder / "alice.json").write_text('{"version": 2, "measures": {"eye_open_L": "x"}}')
    proc = run_quiet("--demo", "--profile", "alice")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "alice.json: key 'measures.eye_open_L' must be a number" in lines[0]


@pytest.mark.parametrize("args,expected", [
    (["--calibrate", "0.1"], "invalid --calibrate"),
    (["--calibrate", "abc"], "invalid --calibrate"),
    (["--profile", "../etc"], "invalid profile name"),
    (["--profile", ".hidden", "--calibrate", "1"], "invalid profile name"),
    (["--control-port", "70000"], "invalid --control-port"),
    (["--control-port", "x"], "invalid --control-port"),
])
def test_bad_calibration_options_exit_2_with_one_line(config_home, args, expected):
    proc = run_quiet("--demo", "--frames", "3", *args)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], proc.stderr


def test_an_explicit_busy_control_port_exits_2_with_one_line():
    busy = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    busy.bind(("127.0.0.1", 0))
    try:
        proc = run_quiet("--demo", "--frames", "3", "--control-port", str(busy.getsockname()[1]))
    finally:
        busy.close()
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "already in use" in lines[0] and "--control-port" in lines[0], proc.stderr


# --- --record and --replay through the console script ---------------------------------


def test_record_then_replay_twice_sends_identical_bytes(tmp_path):
    take = tmp_path / "take.jsonl.gz"
    proc, live = run_tracker("--demo", "--fast", "--frames", "45", "--record", str(take), "--control-port", "0")
    assert proc.returncode == 0, proc.stderr
    first_proc, first = run_tracker("--replay", str(take), "--fast", "--control-port", "0")
    second_proc, second = run_tracker("--replay", str(take), "--fast", "--control-port", "0")
    assert first_proc.returncode == second_proc.returncode == 0, first_proc.stderr + second_proc.stderr
    assert len(frames_from(first)) == 45
    assert first == second   # byte for byte, datagram for datagram


def test_a_damaged_take_replays_what_is_valid_and_exits_2(tmp_path):
    take = tmp_path / "take.jsonl"
    proc, _ = run_tracker("--demo", "--fast", "--frames", "20", "--record", str(take), "--control-port", "0")
    assert proc.returncode == 0, proc.stderr
    lines = take.read_text().splitlines()
    take.write_text("\n".join(lines[:11]) + "\n" + lines[11][:300])   # header + 10 frames + a cut line
    proc, datagrams = run_tracker("--replay", str(take), "--fast", "--control-port", "0")
    assert proc.returncode == 2
    assert len(frames_from(datagrams)) == 10
    assert proc.stderr.strip().splitlines()[-1] == "facemocap-osc: error: take.jsonl line 12: incomplete last line (the recording was cut off)"


@pytest.mark.parametrize("args, expected", [
    (["--record", "/no/such/folder/take.jsonl"], "folder '/no/such/folder' does not exist"),
    (["--record", "take.txt"], "take.txt"),
    (["--replay", "/no/such/take.jsonl"], "/no/such/take.jsonl"),
])
def test_bad_record_and_replay_paths_fail_at_start(tmp_path, args, expected):
    args = [a if not a.startswith("take.") else str(tmp_path / a) for a in args]
    source = [] if "--replay" in args else ["--demo"]
    proc = subprocess.run([*tracker_command(), *source, "--frames", "5", "--quiet", "--control-port", "0", *args],
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], proc.stderr
