"""Neutral-face calibration: the math, the capture window, the adaptive range,
profiles on disk, the OSC control port and the run loop's wiring."""

import json
import logging
import math
import os
import socket
import struct
import threading
import time

import numpy as np
import pytest
from pythonosc.udp_client import SimpleUDPClient

from bridge.calibrate import (
    ADAPTIVE_DECAY_SECONDS, ADAPTIVE_FLOOR, CALIBRATED_NOTE_SECONDS, CONFIG_DIR_ENV, VMC_CALIBRATED,
    VMC_CALIBRATING, AdaptiveRange, Calibrator, Capture, Neutral, ProfileError, check_profile_name,
    config_dir, load_profile, profile_path, save_profile,
)
from bridge.control import ControlError, ControlPort, parse_calibrate_args
from bridge.shape import ShapeOptions, Shaper
from bridge.solve import vrm_presets
from bridge.state import (
    ARKIT_INDEX, ARKIT_NAMES, VRM0_INDEX, FaceState, angles_to_quat, matrix_to_angles, quat_multiply,
    quat_to_matrix,
)

FPS = 30.0
WAIT_SECONDS = 5.0   # upper bound for a datagram to cross loopback; never asserted on


@pytest.fixture(autouse=True)
def config_home(tmp_path, monkeypatch):
    """Every test here writes profiles under tmp_path, never into a real home."""
    home = tmp_path / "config"
    monkeypatch.delenv(CONFIG_DIR_ENV, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return home


def face(smile=0.0, jaw=0.0, yaw=0.0, pitch=0.0, roll=0.0, eyes=((0.0, 0.0), (0.0, 0.0)),
         position=(0.0, 0.0, -0.5)) -> FaceState:
    s = FaceState.neutral(head_position=position)
    s.blendshapes[ARKIT_INDEX["mouthSmileLeft"]] = smile
    s.blendshapes[ARKIT_INDEX["mouthSmileRight"]] = smile
    s.blendshapes[ARKIT_INDEX["jawOpen"]] = jaw
    s.head_angles[:] = (yaw, pitch, roll)
    s.eye_angles[:] = eyes
    s.vrm = vrm_presets(s.blendshapes, s.eye_angles)
    return s


def neutral_of(state: FaceState) -> Neutral:
    return Neutral(state.blendshapes, state.head_angles, state.eye_angles, state.head_position)


def same_rotation(a, b) -> bool:
    return abs(abs(float(np.dot(a, b))) - 1.0) < 1e-9


# ---- applying a neutral ------------------------------------------------------------

def test_resting_smile_maps_to_zero_and_full_smile_stays_one():
    neutral = neutral_of(face(smile=0.3))
    smile = ARKIT_INDEX["mouthSmileLeft"]
    assert neutral.apply(face(smile=0.3)).blendshapes[smile] == pytest.approx(0.0)
    assert neutral.apply(face(smile=1.0)).blendshapes[smile] == pytest.approx(1.0)
    assert neutral.apply(face(smile=0.65)).blendshapes[smile] == pytest.approx(0.5)
    assert neutral.apply(face(smile=0.1)).blendshapes[smile] == 0.0   # below rest: clipped, not negative


def test_a_channel_resting_very_high_is_not_amplified_past_the_floor():
    neutral = neutral_of(face(smile=0.9))
    out = neutral.apply(face(smile=1.0)).blendshapes[ARKIT_INDEX["mouthSmileLeft"]]
    assert out == pytest.approx(0.1 / 0.25)   # denominator floored at 0.25: at most 4x


def test_head_neutral_is_removed_as_a_rotation():
    neutral = neutral_of(face(yaw=10.0, roll=5.0))
    # At rest: exactly the identity.
    assert neutral.apply(face(yaw=10.0, roll=5.0)).head_angles == pytest.approx([0, 0, 0], abs=1e-9)
    # A turn relative to the rest pose, R = R_n * R_rel, comes back as R_rel.
    relative = (25.0, -12.0, 4.0)
    q = quat_multiply(angles_to_quat(10.0, 0.0, 5.0), angles_to_quat(*relative))
    measured = matrix_to_angles(quat_to_matrix(q))
    out = neutral.apply(face(*[0.0, 0.0], *measured)).head_angles
    assert out == pytest.approx(relative, abs=1e-9)
    assert same_rotation(angles_to_quat(*out), angles_to_quat(*relative))
    # Subtracting Euler angles would have given something else: the test has teeth.
    assert not np.allclose(np.subtract(measured, (10.0, 0.0, 5.0)), relative, atol=0.1)


def test_eye_angles_and_head_position_are_relative_to_the_neutral():
    neutral = neutral_of(face(eyes=((4.0, -2.0), (3.0, -1.0)), position=(0.01, 0.02, -0.6)))
    out = neutral.apply(face(eyes=((10.0, 0.0), (9.0, 1.0)), position=(0.03, 0.02, -0.5)))
    assert out.eye_angles.ravel() == pytest.approx([6.0, 2.0, 6.0, 2.0])
    assert out.head_position == pytest.approx([0.02, 0.0, 0.1])


def test_vrm_presets_are_recomputed_from_the_calibrated_values():
    calibrator = Calibrator(neutral=neutral_of(face(smile=0.3)))
    raw = face(smile=0.3)
    assert raw.vrm[VRM0_INDEX["Fun"]] == pytest.approx(0.3)       # the resting smile reads as Fun
    out = calibrator.process(0.0, raw)
    assert out.vrm[VRM0_INDEX["Fun"]] == 0.0
    assert out.vrm == pytest.approx(vrm_presets(out.blendshapes, out.eye_angles))
    assert raw.vrm[VRM0_INDEX["Fun"]] == pytest.approx(0.3)       # the input was not modified


def test_without_neutral_or_adaptive_range_states_pass_through_untouched():
    calibrator = Calibrator()
    state = face(smile=0.3, yaw=7.0)
    assert calibrator.process(0.0, state) is state
    assert calibrator.process(0.1, None) is None
    assert calibrator.vmc_state == VMC_CALIBRATED and calibrator.status_note() == ""


# ---- capturing -------------------------------------------------------------------------

def feed(target, frames, start_index=0):
    """frames: a list of FaceState | None at 30 fps; returns the next frame index."""
    for i, state in enumerate(frames, start_index):
        target.add(i / FPS, state) if isinstance(target, Capture) else target.process(i / FPS, state)
    return start_index + len(frames)


def test_capture_takes_the_mean_of_face_frames_only():
    capture = Capture(1.0)
    smiles = []
    for i in range(100):
        state = None if i < 10 or i % 7 == 0 else face(smile=0.1 + 0.01 * (i % 5), yaw=10.0, roll=5.0)
        capture.add(i / FPS, state)
        if state is not None:
            smiles.append(state.blendshape("mouthSmileLeft"))
        if capture.done:
            break
    assert capture.done
    neutral = capture.neutral()
    assert neutral.blendshapes[ARKIT_INDEX["mouthSmileLeft"]] == pytest.approx(np.mean(smiles))
    assert neutral.head_angles == pytest.approx([10.0, 0.0, 5.0], abs=1e-9)


def test_capture_window_starts_at_the_first_face_frame():
    capture = Capture(1.0)
    feed(capture, [None] * 60)
    assert not capture.done and "waiting for a face" in capture.status()
    i = feed(capture, [face()] * 30, 60)     # 29 frame steps: 0.97 s of window
    assert not capture.done and "s left" in capture.status()
    feed(capture, [face()], i)
    assert capture.done


def test_capture_keeps_going_when_the_face_was_missing_too_much():
    capture = Capture(1.0)
    i = feed(capture, [face(smile=0.3)] * 5 + [None] * 30)   # window over, ~0.13 s of face
    assert not capture.done
    assert "face missing too often" in capture.status()
    i = feed(capture, [face(smile=0.3)] * 10, i)
    assert not capture.done                                  # still under 0.5 s of face
    feed(capture, [face(smile=0.3)] * 10, i)
    assert capture.done and capture.face_seconds >= 0.5
    assert capture.neutral().blendshapes[ARKIT_INDEX["mouthSmileLeft"]] == pytest.approx(0.3)


def test_a_stalled_source_does_not_count_as_seconds_of_face():
    capture = Capture(2.0)
    capture.add(0.0, face())
    capture.add(5.0, face())          # a 5 s gap counts as one frame's worth at most
    assert not capture.done and capture.face_seconds <= 0.1


def test_capture_ignores_non_finite_states():
    capture = Capture(0.5)
    bad = face(smile=0.3)
    bad.blendshapes[0] = np.nan
    feed(capture, [face(smile=0.3), bad] * 20)
    assert capture.done
    assert np.isfinite(capture.neutral().blendshapes).all()


@pytest.mark.parametrize("seconds", [0.0, 0.4, 61.0, math.nan])
def test_capture_rejects_out_of_range_lengths(seconds):
    with pytest.raises(ValueError):
        Capture(seconds)


def test_calibrator_sends_uncalibrated_while_capturing_then_calibrated():
    calibrator = Calibrator()
    calibrator.start_capture(1.0)
    resting = face(smile=0.3, yaw=10.0, roll=5.0)
    out = calibrator.process(0.0, resting)
    assert out.blendshapes[ARKIT_INDEX["mouthSmileLeft"]] == pytest.approx(0.3)   # uncalibrated
    assert calibrator.vmc_state == VMC_CALIBRATING
    assert calibrator.status_note().startswith("calibrating: hold a neutral face (1.0 s left)")
    i = feed(calibrator, [resting] * 30, 1)
    assert calibrator.vmc_state == VMC_CALIBRATED and not calibrator.capturing
    assert calibrator.status_note() == "calibrated"
    assert calibrator.take_finished() is not None and calibrator.take_finished() is None
    out = calibrator.process(i / FPS, resting)
    assert out.blendshapes[ARKIT_INDEX["mouthSmileLeft"]] == pytest.approx(0.0)
    assert out.head_angles == pytest.approx([0.0, 0.0, 0.0], abs=1e-6)
    calibrator.process(i / FPS + CALIBRATED_NOTE_SECONDS, resting)
    assert calibrator.status_note() == ""


def test_recalibrating_keeps_the_old_neutral_until_the_new_one_is_ready():
    calibrator = Calibrator(neutral=neutral_of(face(smile=0.3)))
    calibrator.start_capture(0.5)
    smiling_more = face(smile=0.5)
    out = calibrator.process(0.0, smiling_more)
    assert out.blendshapes[ARKIT_INDEX["mouthSmileLeft"]] == pytest.approx(0.2 / 0.7)
    i = feed(calibrator, [smiling_more] * 20, 1)
    assert not calibrator.capturing
    assert calibrator.process(i / FPS, smiling_more).blendshapes[ARKIT_INDEX["mouthSmileLeft"]] == 0.0


# ---- adaptive range --------------------------------------------------------------------

def test_adaptive_range_is_off_by_default():
    assert Shaper().calibrator.adaptive is None
    assert Shaper(ShapeOptions(adaptive_range=True)).calibrator.adaptive is not None


def test_adaptive_range_scales_to_the_running_max_within_bounds():
    adaptive = AdaptiveRange()
    jaw = ARKIT_INDEX["jawOpen"]
    b = np.zeros(len(ARKIT_NAMES))
    b[jaw] = 0.1
    assert adaptive(0.0, b)[jaw] == pytest.approx(0.1 / ADAPTIVE_FLOOR)   # the floor caps the gain at 2x
    b[jaw] = 0.8
    assert adaptive(0.1, b)[jaw] == pytest.approx(1.0)
    b[jaw] = 0.4
    assert adaptive(0.2, b)[jaw] == pytest.approx(0.5, abs=1e-3)
    # Many time constants later the old maximum has decayed back to the floor.
    assert adaptive(0.2 + 20 * ADAPTIVE_DECAY_SECONDS, b)[jaw] == pytest.approx(0.4 / ADAPTIVE_FLOOR)


def test_adaptive_range_maximum_stays_bounded_on_any_input():
    adaptive = AdaptiveRange()
    rng = np.random.default_rng(3)
    for i in range(200):
        b = rng.uniform(-0.5, 1.5, len(ARKIT_NAMES))
        b[rng.integers(0, len(b))] = np.nan
        out = adaptive(i / FPS, b)
        assert np.all((out >= 0.0) & (out <= 1.0))
        assert np.all((adaptive.maximum >= ADAPTIVE_FLOOR) & (adaptive.maximum <= 1.0))


def test_shaper_with_adaptive_range_recomputes_vrm():
    shaper = Shaper(ShapeOptions(adaptive_range=True))
    state, _ = shaper.update(0.0, face(jaw=0.25))
    assert state.blendshape("jawOpen") == pytest.approx(0.5)
    assert state.vrm == pytest.approx(vrm_presets(state.blendshapes, state.eye_angles), abs=1e-9)


# ---- profiles --------------------------------------------------------------------------

def sample_neutral() -> Neutral:
    s = face(smile=0.3, yaw=10.0, pitch=-2.0, roll=5.0, eyes=((4.0, -2.0), (3.0, -1.0)), position=(0.01, 0.0, -0.6))
    s.blendshapes[ARKIT_INDEX["browInnerUp"]] = 0.25
    return neutral_of(s)


def test_profile_round_trip_is_readable_json_in_the_config_dir(config_home):
    neutral = sample_neutral()
    path = save_profile("alice", neutral)
    assert path == config_home / "facemocap-osc" / "profiles" / "alice.json"
    data = json.loads(path.read_text())
    assert data["version"] == 1 and "created" in data
    assert data["blendshapes"]["mouthSmileLeft"] == pytest.approx(0.3)
    assert data["head_angles"]["yaw"] == pytest.approx(10.0)
    assert data["eye_angles"]["left"] == pytest.approx({"yaw": 4.0, "pitch": -2.0})
    assert data["head_position"]["z"] == pytest.approx(-0.6)
    loaded = load_profile("alice")
    for field in ("blendshapes", "head_angles", "eye_angles", "head_position"):
        assert getattr(loaded, field) == pytest.approx(getattr(neutral, field))
    assert sorted(p.name for p in path.parent.iterdir()) == ["alice.json"]   # no temp file left


def test_saving_again_replaces_atomically_and_a_failed_write_keeps_the_old_file(monkeypatch):
    save_profile("bob", sample_neutral())
    path = profile_path("bob")
    before = path.read_text()

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(ProfileError, match="bob.json: cannot write: No space left"):
        save_profile("bob", neutral_of(face()))
    assert path.read_text() == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["bob.json"]


def test_config_dir_rules(monkeypatch, tmp_path, config_home):
    assert config_dir() == config_home / "facemocap-osc"
    monkeypatch.setenv("XDG_CONFIG_HOME", "relative/dir")        # invalid per the XDG spec: ignored
    assert config_dir() == tmp_path / "home" / ".config" / "facemocap-osc"
    monkeypatch.setenv(CONFIG_DIR_ENV, str(tmp_path / "override"))
    assert config_dir() == tmp_path / "override"


@pytest.mark.parametrize("name", ["alice", "Take_2.v1-b", "x" * 64, "a..b"])
def test_good_profile_names(name):
    assert check_profile_name(name) == name


@pytest.mark.parametrize("name", ["", ".hidden", "a/b", "../x", "x" * 65, "naïve", "a b", "c:\\x", "a\n"])
def test_bad_profile_names_are_refused_in_one_line(name):
    with pytest.raises(ProfileError, match="invalid profile name") as error:
        profile_path(name)
    assert "\n" not in str(error.value).replace(repr(name), "")


def write_profile(name: str, edit) -> None:
    path = save_profile(name, sample_neutral())
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


@pytest.mark.parametrize("edit,message", [
    (lambda d: d["blendshapes"].pop("jawOpen"), "missing key 'blendshapes.jawOpen'"),
    (lambda d: d["blendshapes"].update(jawOpen="x"), "key 'blendshapes.jawOpen' must be a number"),
    (lambda d: d["blendshapes"].update(jawOpen=True), "key 'blendshapes.jawOpen' must be a number"),
    (lambda d: d["blendshapes"].update(jawOpen=float("nan")), "key 'blendshapes.jawOpen' must be a number"),
    (lambda d: d["blendshapes"].update(jawOpen=1.5), "key 'blendshapes.jawOpen' must be between 0 and 1"),
    (lambda d: d["eye_angles"]["left"].pop("pitch"), "missing key 'eye_angles.left.pitch'"),
    (lambda d: d.update(head_angles=[1, 2, 3]), "key 'head_angles' must be an object"),
    (lambda d: d.pop("head_position"), "missing key 'head_position.x'"),
    (lambda d: d.update(version=99), "key 'version' is 99"),
    (lambda d: d.update(version="1"), "key 'version' must be a whole number"),
])
def test_bad_profile_contents_name_the_file_and_key(edit, message):
    write_profile("carol", edit)
    with pytest.raises(ProfileError) as error:
        load_profile("carol")
    text = str(error.value)
    assert text.startswith(str(profile_path("carol")) + ": ") and message in text and "\n" not in text


def test_corrupt_and_missing_profiles(config_home):
    path = save_profile("dave", sample_neutral())
    path.write_text('{"version": 1, "blendshapes": {')
    with pytest.raises(ProfileError, match=r"dave\.json: not valid JSON"):
        load_profile("dave")
    path.write_text("[]")
    with pytest.raises(ProfileError, match=r"dave\.json: expected a JSON object"):
        load_profile("dave")
    with pytest.raises(ProfileError, match=r"no profile 'erin'.*--calibrate SECONDS --profile erin"):
        load_profile("erin")


# ---- the control port -------------------------------------------------------------------

def wait_for(predicate):
    deadline = time.monotonic() + WAIT_SECONDS
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.01)
    return predicate()


@pytest.fixture
def control():
    port = ControlPort(0)     # an ephemeral port: never the user's 39540
    yield port
    port.close()


def test_control_port_receives_calibrate_requests(control):
    client = SimpleUDPClient("127.0.0.1", control.port)
    client.send_message("/facemocap/calibrate", [])
    request = None

    def got():
        nonlocal request
        request = request or control.poll()
        return request is not None
    assert wait_for(got)
    assert request.seconds is None
    client.send_message("/facemocap/calibrate", 1.5)
    request = None
    assert wait_for(got) and request.seconds == 1.5


def test_control_port_ignores_and_counts_garbage(control):
    client = SimpleUDPClient("127.0.0.1", control.port)
    raw = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    garbage = [b"", b"hello", b"\xff" * 100, b"/facemocap/calibrate\x00\x00\x00\x00,f\x00\x00\x01",
               b"#bundle\x00/facemocap/"]
    for datagram in garbage:
        raw.sendto(datagram, ("127.0.0.1", control.port))
    raw.close()
    bad_args = ["x", 0.1, 1000.0, float("nan"), [1.0, 2.0], True]
    for args in bad_args:
        client.send_message("/facemocap/calibrate", args)
    client.send_message("/VMC/Ext/Blend/Apply", [])      # someone else's address: ignored, not malformed
    client.send_message("/facemocap/calibrate", 3)        # and it still works afterwards
    request = None

    def got():
        nonlocal request
        request = request or control.poll()
        return request is not None
    assert wait_for(got) and request.seconds == 3.0
    # b"" may not even reach the server as a datagram; every other bad one is counted.
    assert wait_for(lambda: control.malformed >= len(garbage) - 1 + len(bad_args))
    assert control.poll() is None


def _control_bundle(*elements, sizes=None):
    out = b"#bundle\x00" + b"\x00" * 7 + b"\x01"
    for i, e in enumerate(elements):
        out += struct.pack(">i", len(e) if sizes is None else sizes[i]) + e
    return out


CALIBRATE_2S = b"/facemocap/calibrate\x00\x00\x00\x00,f\x00\x00" + struct.pack(">f", 2.0)


def _dispatch(control, datagram):
    """Straight into the port's dispatcher, on a thread: python-osc looped forever on
    some of these (a hang guard, not a timing)."""
    worker = threading.Thread(target=control._server.dispatcher.call_handlers_for_packet,
                              args=(datagram, ("127.0.0.1", 9)), daemon=True)
    worker.start()
    worker.join(timeout=30)
    return not worker.is_alive()


def test_control_port_survives_what_python_osc_did_not(control, caplog):
    nested = CALIBRATE_2S
    for _ in range(999):
        nested = _control_bundle(nested)
    datagrams = [
        _control_bundle(CALIBRATE_2S, sizes=[-4]),   # python-osc: an endless loop
        nested,                                      # python-osc: RecursionError
        # python-osc builds 5000 nested lists from the brackets; their repr in the
        # "bad arguments" log line raised RecursionError
        b"/facemocap/calibrate\x00\x00\x00\x00," + b"[" * 5000 + b"]" * 5000 + b"\x00" * 3,
        b"/facemocap/calibrate\x00\x00\x00\x00,zz\x00",  # python-osc: a warning per unknown tag
    ]
    with caplog.at_level(logging.WARNING):
        for datagram in datagrams:
            assert _dispatch(control, datagram)
    assert (control.malformed, control.too_deep, control.bad_args, control.errors) == (4, 1, 1, 0)
    assert control.poll() is None
    assert caplog.records == []
    assert _dispatch(control, _control_bundle(CALIBRATE_2S))
    assert control.poll().seconds == 2.0


def test_control_port_listens_on_this_machine_only(control):
    assert control.host == "127.0.0.1" and control.address == f"127.0.0.1:{control.port}"


def test_bad_arguments_are_described_flat_and_short():
    from bridge.control import describe_args

    deep = []
    for _ in range(5000):
        deep = [deep]
    assert describe_args((deep, b"x" * 100, "y" * 100, 1.5, None, True, 7)) == (
        "(<array of 1>, <blob of 100 bytes>, " + repr("y" * 40) + "..., 1.5, None, ... 7 in all)")


def test_control_port_in_use_is_a_one_line_error(control):
    with pytest.raises(ControlError, match="address already in use") as error:
        ControlPort(control.port)
    assert error.value.in_use and "\n" not in str(error.value)


@pytest.mark.parametrize("args,seconds", [((), None), ((2,), 2.0), ((0.5,), 0.5), ((60.0,), 60.0)])
def test_calibrate_arguments_accepted(args, seconds):
    assert parse_calibrate_args(args).seconds == seconds


@pytest.mark.parametrize("args", [("2",), (True,), (0.49,), (61.0,), (math.inf,), (1.0, 2.0), (b"x",)])
def test_calibrate_arguments_refused(args):
    assert parse_calibrate_args(args) is None


# ---- the run loop ----------------------------------------------------------------------

class ListSource:
    """Demo-face frames at 30 fps, unpaced, with the face missing where asked."""

    def __init__(self, count, missing=()):
        from bridge.demo_face import demo_landmarks
        from bridge.sources import Frame
        self.frames = [Frame(i, i / FPS, None, None if i in missing else np.asarray(demo_landmarks(0.0, 640, 480)),
                             width=640, height=480) for i in range(count)]

    def __iter__(self):
        return iter(self.frames)


class LandmarkTracker:
    def track(self, frame):
        from bridge.tracking import Tracked
        return Tracked(frame.landmarks)


class RecordingEncoder:
    """Takes the calibration state, as bridge.vmc's encoder should (see the report)."""

    def __init__(self):
        self.sent = []

    def encode(self, state, *, time, tracking, calibration_state):
        self.sent.append((state, tracking, calibration_state))
        return []


class NullTarget:
    address = "nowhere"

    def send(self, datagrams):
        pass


class FakeControl:
    address = "127.0.0.1:0"

    def __init__(self, requests):
        self.requests = dict(requests)   # frame index -> CalibrateRequest
        self.polls = 0

    def poll(self):
        request = self.requests.get(self.polls)
        self.polls += 1
        return request


def test_run_loop_reports_calibrating_then_calibrated_and_saves_once():
    from bridge.pipeline import run
    shaper, encoder, saved = Shaper(), RecordingEncoder(), []
    shaper.calibrator.start_capture(1.0)
    run(ListSource(60, missing=range(5)), LandmarkTracker(), shaper, encoder, NullTarget(),
        use_model_blendshapes=False, on_calibrated=saved.append)
    states = [s for _, _, s in encoder.sent]
    assert states[0] == VMC_CALIBRATING and states[-1] == VMC_CALIBRATED
    first_done = states.index(VMC_CALIBRATED)
    assert all(s == VMC_CALIBRATING for s in states[:first_done])
    assert all(s == VMC_CALIBRATED for s in states[first_done:])
    assert first_done == 5 + 30        # face from frame 5, a 1 s window at 30 fps
    assert len(saved) == 1 and isinstance(saved[0], Neutral)
    # The demo face at rest, calibrated against itself: the output settles at rest.
    last = encoder.sent[-1][0]
    assert last.head_angles == pytest.approx([0, 0, 0], abs=0.5)


def test_run_loop_starts_a_capture_on_a_control_request():
    from bridge.control import CalibrateRequest
    from bridge.pipeline import run
    shaper, encoder = Shaper(), RecordingEncoder()
    control = FakeControl({10: CalibrateRequest(None), 20: CalibrateRequest(0.5)})
    run(ListSource(60), LandmarkTracker(), shaper, encoder, NullTarget(), use_model_blendshapes=False,
        control=control, calibrate_seconds=2.0)
    states = [s for _, _, s in encoder.sent]
    assert states[:10] == [VMC_CALIBRATED] * 10
    # The 0.5 s request at frame 20 replaced the 2 s one: done 15 frames later.
    assert states[10:35] == [VMC_CALIBRATING] * 25 and states[35:] == [VMC_CALIBRATED] * 25


def test_run_loop_works_with_an_encoder_without_calibration_state():
    from bridge.pipeline import run
    from bridge.vmc import VmcEncoder
    shaper = Shaper()
    shaper.calibrator.start_capture(0.5)
    stats = run(ListSource(30), LandmarkTracker(), shaper, VmcEncoder(), NullTarget(), use_model_blendshapes=False)
    assert stats.frames == 30 and shaper.calibrator.neutral is not None


def test_a_busy_default_control_port_is_a_warning_not_an_error(control, caplog):
    from bridge.cli import CalibrationArgs, _open_control
    default = CalibrationArgs(None, None, None, control.port, control_port_given=False)
    with caplog.at_level("WARNING", logger="facemocap"):
        assert _open_control(default) is None
    assert len(caplog.records) == 1 and "already in use" in caplog.records[0].getMessage()
    given = CalibrationArgs(None, None, None, control.port, control_port_given=True)
    from bridge.cli import UsageError
    with pytest.raises(UsageError, match="already in use.*--control-port"):
        _open_control(given)


def test_preview_key_c_asks_for_a_calibration_and_keeps_the_window_open(monkeypatch):
    """The drawing runs for real; only the window calls are stubbed (no display here)."""
    import bridge.preview as preview_module
    from bridge.sources import Frame
    keys = iter([ord("c"), ord("x"), ord("q")])
    shown = []
    monkeypatch.setattr(preview_module.cv2, "imshow", lambda name, image: shown.append(image))
    monkeypatch.setattr(preview_module.cv2, "waitKey", lambda delay: next(keys))
    monkeypatch.setattr(preview_module.cv2, "getWindowProperty", lambda name, prop: 1.0)
    preview = object.__new__(preview_module.Preview)   # skips opening a window
    preview._calibrate_requested = False
    frame = Frame(0, 0.0, None, width=320, height=240)
    note = "calibrating: hold a neutral face (1.4 s left)"
    assert preview.show(frame, None, face(smile=0.3), True, 30.0, note)
    assert preview.take_calibrate_request() and not preview.take_calibrate_request()
    assert preview.show(frame, None, face(), True, 30.0)
    assert not preview.take_calibrate_request()
    assert not preview.show(frame, None, face(), True, 30.0)       # q still quits
    assert len(shown) == 3
