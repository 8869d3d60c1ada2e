"""A live show cannot crash (issue 6): a lost camera, a lost face, degenerate landmarks,
failing targets and bad configuration files.

No timed assertions: frame times are explicit, and the camera tests step on events
(the fake camera comes back when the test says so), never on the clock.
"""

from __future__ import annotations

import errno
import io
import json
import logging
import os
import re
import socket
import subprocess
import sys
import warnings
from unittest import mock

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import tracker_command
from support import localhost_address
from test_end_to_end import Receiver, frames_from
from test_sources import FlakyCamera
from test_targets import messages

from bridge import landmarks as lm
from bridge.calibrate import Neutral, neutral_to_dict
from bridge.demo_face import DemoFace, Expression, demo_landmarks
from bridge.outputs import load_preset
from bridge.pipeline import LOST_NOTE, Output, StatusLine, run
from bridge.send import UdpTarget
from bridge.shape import EASE_SECONDS, HOLD_SECONDS, UNIT_SCALE, OneEuroFilter, Shaper
from bridge.solve import Solver
from bridge.sources import Frame, open_camera
from bridge.state import _HIGH, _LOW, ARKIT_INDEX, FaceState
from bridge.tracking import Tracked, Tracker

FPS = 30.0
SIZE = (640, 480)
FACE = DemoFace()


class Collect:
    """A target that keeps what it is sent."""

    def __init__(self, address="collect"):
        self.address, self.datagrams, self.failed_datagrams = address, [], 0

    def send(self, datagrams):
        self.datagrams.extend(datagrams)


class Keep:
    """An encoder that keeps (time, tracking, state vector) per frame and sends nothing."""

    def __init__(self):
        self.sent = []

    def encode(self, state, *, time, tracking, calibration_state):
        self.sent.append((time, tracking, state.vector()))
        return []


def vmc_output(target, label="vmc") -> Output:
    return Output(load_preset("vmc").encoder(), target, label)


def face_frames(n: int, *, face=lambda i: True, expression=lambda i: Expression()) -> list[Frame]:
    """n frames at 30 fps carrying the demo face's landmarks (None where face(i) is False)."""
    return [Frame(i, i / FPS, None, landmarks=FACE.landmarks(expression(i), *SIZE) if face(i) else None,
                  width=SIZE[0], height=SIZE[1]) for i in range(n)]


class FaceInEveryImage(Tracker):
    """A camera image always shows the demo face."""

    def _track_image(self, frame):
        return Tracked(np.asarray(demo_landmarks(frame.time % 12.0, *SIZE), np.float32))


def status_to(stream) -> StatusLine:
    """A status line that draws on every frame (non-tty: one line each)."""
    status = StatusLine(enabled=True, stream=stream)
    status.interval = status._next = 0.0
    return status


# --------------------------------------------------------------------------- 1. camera lost


def test_a_lost_camera_keeps_sending_tracking_0_and_resumes_when_it_is_back(caplog):
    camera = FlakyCamera(frames=8)
    source = open_camera(0, opener=camera.opener, retry_seconds=(0.01,))
    seen = []   # (lost, tracking, note) per frame, as the preview is shown them

    class Show:
        """The preview window: plugs the camera back in after 10 lost frames, closes 5 frames later."""

        def take_calibrate_request(self):
            return False

        def show(self, frame, landmarks, state, tracking, fps, note):
            seen.append((frame.lost, tracking, note))
            if sum(lost for lost, _, _ in seen) >= 10:
                camera.back.set()
            tail = "".join("L" if lost else "F" for lost, _, _ in seen)
            return not (camera.back.is_set() and tail.endswith("LFFFFF"))

    received, stream = Collect(), io.StringIO()
    with caplog.at_level(logging.INFO, logger="facemocap"):
        stats = run(source, FaceInEveryImage(), Shaper(), outputs=[vmc_output(received)],
                    blendshapes="solver", status=status_to(stream), preview=Show())
    source.close()
    kinds = "".join("L" if lost else "F" for lost, _, _ in seen)
    assert re.fullmatch("F+L{10,}F{5}", kinds), kinds     # frames, no frames for a while, frames again
    # Receivers see every frame, with tracking 0 exactly while the camera was lost.
    frames = frames_from(received.datagrams)
    assert [f["ok"][3] for f in frames] == [0 if lost else 1 for lost, _, _ in seen]
    times = [f["t"] for f in frames]
    assert times == sorted(times)
    # The status line (and the preview) say so while it lasts, and stop saying so after.
    assert [LOST_NOTE in note for _, _, note in seen] == [lost for lost, _, _ in seen]
    lines = stream.getvalue().splitlines()
    assert [LOST_NOTE in line for line in lines] == [lost for lost, _, _ in seen]
    assert "face no " in lines[kinds.index("L")] and "face yes" in lines[-1]
    # One line when it was lost, one when it came back; counted.
    assert [r.levelname for r in caplog.records if "camera 0 lost" in r.getMessage()] == ["WARNING"]
    assert [r.levelname for r in caplog.records if "camera 0 is back" in r.getMessage()] == ["INFO"]
    assert stats.lost == kinds.count("L") and stats.frames == len(kinds)
    assert source.reconnects == 1 and not source.reader_alive


# --------------------------------------------------------------------------- 2. face lost and found


@pytest.mark.parametrize("back_after", [0.2, 0.5, 1.2])   # held, easing, neutral
def test_face_lost_holds_eases_to_neutral_and_comes_back_without_a_jump(back_after):
    lost_from, back_at = 30, 30 + round(back_after * FPS)
    before, after = Expression(jaw=0.8, smile=0.6, yaw=20, pitch=-8, roll=5), Expression(jaw=0.1, yaw=-15)
    frames = face_frames(back_at + 10, face=lambda i: not lost_from <= i < back_at,
                         expression=lambda i: before if i < lost_from else after)
    keep = Keep()
    stats = run(frames, Tracker(), Shaper(), outputs=[Output(keep, Collect())], blendshapes="solver")
    sent = keep.sent
    assert [tracking for _, tracking, _ in sent] == [not lost_from <= i < back_at for i in range(len(frames))]
    assert stats.faces == len(frames) - (back_at - lost_from)

    lost_at, last_face = sent[lost_from][0], sent[lost_from - 1][2]
    neutral = FaceState.neutral(head_position=last_face[71:74]).vector()
    previous = last_face
    for t, _, v in sent[lost_from:back_at]:
        dt = t - lost_at
        if dt < HOLD_SECONDS:
            np.testing.assert_allclose(v, last_face, atol=1e-12)           # held
        if dt >= HOLD_SECONDS + EASE_SECONDS - 1e-9:
            np.testing.assert_allclose(v, neutral, atol=1e-9)              # neutral within 0.3 + 0.5 s
        # Easing only ever moves towards neutral.
        assert np.all(np.abs(v - neutral) <= np.abs(previous - neutral) + 1e-12)
        previous = v

    # Back: the first output is one One Euro step (default settings) from the last value
    # sent, not the raw new value.
    reference = Solver()
    for frame in frames[:back_at + 1]:
        if frame.landmarks is not None:
            raw = reference.solve(frame.landmarks, SIZE, time=frame.time).vector()
    step = OneEuroFilter(scale=UNIT_SCALE)
    step.reset(sent[back_at - 1][0], sent[back_at - 1][2])
    expected = step(frames[back_at].time, raw)
    first, last_sent = sent[back_at][2], sent[back_at - 1][2]
    np.testing.assert_allclose(first, expected, atol=1e-9)
    assert np.all(np.abs(first - last_sent) <= np.abs(raw - last_sent) + 1e-12)   # never beyond the raw value
    yaw = 68   # FaceState.vector(): head yaw, +20 before the loss, -15 after
    assert abs(first[yaw] - last_sent[yaw]) < abs(raw[yaw] - last_sent[yaw])   # a step, not a jump


# --------------------------------------------------------------------------- 3. degenerate landmarks

_MAX = np.finfo(np.float64).max
SPECIAL = [0.0, -0.0, 1.0, -1.0, 5e-324, 1e-300, 1e-30, 1e30, 1e300, -1e300, _MAX, -_MAX, 3.4e38,
           np.nan, np.inf, -np.inf]
_STABLE = np.flatnonzero(lm.procrustes_weights())


@st.composite
def landmark_arrays(draw) -> np.ndarray:
    """(478, 3) arrays: a real-looking face, or all equal / collinear / coplanar / two
    clusters / noise, scaled from tiny to the float maximum, shifted, with some or all
    entries replaced by NaN, inf or extreme values, as float64 or float32."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    kind = draw(st.sampled_from(["face", "equal", "collinear", "coplanar", "two_points", "noise"]))
    if kind == "face":
        p = np.asarray(demo_landmarks(draw(st.floats(0.0, 12.0)), *SIZE), np.float64)
    elif kind == "equal":
        p = np.full((478, 3), draw(st.one_of(st.sampled_from(SPECIAL), st.floats())))
    elif kind == "collinear":
        p = rng.normal(size=(478, 1)) * rng.normal(size=3) + rng.normal(size=3)
    elif kind == "coplanar":
        p = rng.normal(size=(478, 3)) * 100.0
        p[:, draw(st.integers(0, 2))] = draw(st.floats(-1e3, 1e3))
    elif kind == "two_points":
        p = np.where(rng.random((478, 1)) < 0.5, rng.normal(size=3), rng.normal(size=3))
    else:
        p = rng.normal(size=(478, 3))
    with np.errstate(all="ignore"):
        p = p * draw(st.sampled_from([1.0, -1.0, 1e-300, 1e-30, 1e-6, 1e6, 1e30, 1e300, _MAX]))
        p = p + draw(st.sampled_from([0.0, 1e6, 1e30, -1e300]))
    share = draw(st.sampled_from([0.0, 0.0, 0.003, 0.05, 0.5, 1.0]))
    if share:
        mask = rng.random(p.shape) < share
        p[mask] = rng.choice(np.array(SPECIAL), size=int(mask.sum()))
    if draw(st.booleans()):   # extremes on the points the head fit uses
        p[rng.choice(_STABLE, size=2, replace=False), rng.integers(0, 3)] = [_MAX, -_MAX]
    with np.errstate(all="ignore"):
        return p.astype(draw(st.sampled_from([np.float64, np.float32])))


frame_times = st.one_of(st.none(), st.floats(), st.sampled_from([0.0, 1 / FPS, -1.0, 1e300]))
image_sizes = st.sampled_from([SIZE, (0, 0), (1, 1), (1920, 1080), None])


def _svd_of_finite_input_only(matrix, *args, **kwargs):
    # LAPACK's SVD spins forever on an inf and raises on a NaN: the solver must never call it so.
    assert np.isfinite(matrix).all(), "the solver handed a non-finite matrix to the SVD"
    return _REAL_SVD(matrix, *args, **kwargs)


_REAL_SVD = np.linalg.svd


def assert_in_range(state: FaceState) -> None:
    """Every FaceState field finite and within FaceState.sanitized()'s documented ranges."""
    assert state.blendshapes.shape == (52,) and state.vrm.shape == (16,)
    assert state.head_angles.shape == (3,) and state.head_position.shape == (3,) and state.eye_angles.shape == (2, 2)
    v = state.vector()
    assert np.isfinite(v).all(), v
    assert np.all(v >= _LOW) and np.all(v <= _HIGH), v


@settings(max_examples=300, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(landmark_arrays(), frame_times, image_sizes), min_size=1, max_size=4))
def test_the_solver_gives_finite_values_in_range_for_any_landmarks(calls):
    solver = Solver()   # one solver over the sequence: its lid watch keeps state between frames
    with warnings.catch_warnings(), mock.patch("numpy.linalg.svd", _svd_of_finite_input_only):
        warnings.simplefilter("error")   # no RuntimeWarning on stderr mid-show either
        for points, t, size in calls:
            assert_in_range(solver.solve(points, size, time=t))


def _face_with(rows, value) -> np.ndarray:
    p = np.asarray(demo_landmarks(1.0, *SIZE), np.float64).copy()
    p[rows] = value
    return p


@pytest.mark.parametrize("name, points", [
    ("all equal", np.full((478, 3), 7.0)),
    ("collinear", np.tile(np.arange(478.0)[:, None], (1, 3))),
    ("coplanar (flat face)", np.asarray(demo_landmarks(1.0), np.float64) * [1.0, 1.0, 0.0]),
    ("huge", np.full((478, 3), 1e30)),
    ("tiny", np.asarray(demo_landmarks(1.0), np.float64) * 1e-30),
    ("NaN", np.full((478, 3), np.nan)),
    ("inf", np.full((478, 3), np.inf)),
    ("some NaN in a face", _face_with(slice(0, 478, 7), np.nan)),
    # This one made LAPACK's SVD spin forever (an inf from the fit's overflow).
    ("two fit points at +-float max", _face_with((_STABLE[:2], [0, 0]), [_MAX, -_MAX])),
    ("float32 extremes", np.full((478, 3), 3.4e38, np.float32)),
])
def test_degenerate_landmarks_named_cases(name, points):
    with warnings.catch_warnings(), mock.patch("numpy.linalg.svd", _svd_of_finite_input_only):
        warnings.simplefilter("error")
        for t in (None, 0.0, float("nan")):
            assert_in_range(Solver().solve(points, SIZE, time=t))


# --------------------------------------------------------------------------- 4. targets


class FullSendBuffer:
    """A non-blocking UDP socket whose send buffer is full now and then: of every three
    datagrams one goes, one fails with EAGAIN and one with ENOBUFS."""

    def __init__(self, *args):
        self.calls = 0

    def setblocking(self, flag):
        assert flag is False

    def connect(self, address):
        pass

    def send(self, datagram):
        self.calls += 1
        kind = self.calls % 3
        if kind == 1:
            raise OSError(errno.EAGAIN, os.strerror(errno.EAGAIN))
        if kind == 2:
            raise OSError(errno.ENOBUFS, os.strerror(errno.ENOBUFS))
        return len(datagram)

    def close(self):
        pass


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_failing_targets_cost_tracking_and_the_other_targets_nothing(monkeypatch, caplog):
    n = 20
    vmc_rx, osc_rx = Receiver(localhost_address()[1]), Receiver()
    try:
        by_name = UdpTarget("localhost", vmc_rx.port)                 # a host name, resolved now
        dead = UdpTarget("127.0.0.1", free_udp_port())                # nobody listening
        full = UdpTarget("127.0.0.1", 9, socket_factory=FullSendBuffer)   # EAGAIN / ENOBUFS
        osc = UdpTarget("127.0.0.1", osc_rx.port)
        lookups = []

        def no_resolution(*args, **kwargs):   # from here on, no name resolves
            lookups.append(args)
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

        monkeypatch.setattr(socket, "getaddrinfo", no_resolution)
        outputs = [vmc_output(by_name, "vmc@localhost"), Output(load_preset("vrchat").encoder(), dead, "vrchat@dead"),
                   # 3 datagrams a frame, so FullSendBuffer fails two of each frame's.
                   Output(load_preset("vmc-perfect-sync").encoder(), full, "vmc@full"),
                   Output(load_preset("osc").encoder(), osc, "osc")]
        with caplog.at_level(logging.WARNING, logger="facemocap.send"):
            stats = run(face_frames(n), Tracker(), Shaper(), outputs=outputs, blendshapes="solver")
    finally:
        vmc_rx.close()
        osc_rx.close()
    assert stats.frames == n and stats.faces == n                     # tracking went on
    assert lookups == []                                              # resolved once, at start
    # The working targets got every frame, whatever the others did.
    assert [f["ok"][3] for f in frames_from(vmc_rx.datagrams)] == [1] * n
    assert [p for a, p in messages(osc_rx.datagrams) if a == "/face/found"] == [[1]] * n
    assert by_name.failed_datagrams == osc.failed_datagrams == 0
    # The failing ones: every datagram accounted for, counted by kind, one line per kind.
    assert full.failed_datagrams == sum(full.errors.values()) == full.sent_datagrams * 2
    assert set(full.errors) == {"EAGAIN", "ENOBUFS"} and full.sent_datagrams == n
    per_frame = len(load_preset("vrchat").encoder().encode(FaceState.neutral(), time=0.0, tracking=True,
                                                            calibration_state=3))
    assert dead.sent_datagrams + dead.failed_datagrams == n * per_frame
    if sys.platform.startswith("linux"):
        assert dead.errors["ECONNREFUSED"] > 0 and set(dead.errors) == {"ECONNREFUSED"}
    for target in (full, dead, by_name, osc):
        lines = [r.getMessage() for r in caplog.records if f"sending to {target.address} failed" in r.getMessage()]
        assert len(lines) == len(target.errors), lines
        assert all("\n" not in line for line in lines)


def test_an_output_that_raises_is_counted_and_logged_once_and_the_others_go_on(caplog):
    class Broken:
        def encode(self, state, **kwargs):
            raise RuntimeError("encoder bug")

    good = Collect()
    outputs = [Output(Broken(), Collect(), "broken"), vmc_output(good, "good")]
    with caplog.at_level(logging.ERROR, logger="facemocap"):
        stats = run(face_frames(10), Tracker(), Shaper(), outputs=outputs, blendshapes="solver")
    assert len(frames_from(good.datagrams)) == 10 and stats.frames == 10
    assert outputs[0].failed_frames == 10 and outputs[1].failed_frames == 0
    lines = [r.getMessage() for r in caplog.records if "broken" in r.getMessage()]
    assert len(lines) == 1 and "RuntimeError: encoder bug" in lines[0]


def test_a_tracker_that_raises_on_a_frame_sends_it_as_no_face(caplog):
    class Odd(Tracker):
        def track(self, frame):
            if frame.index % 2:
                raise ValueError("an image the model can't take")
            return super().track(frame)

    received = Collect()
    with caplog.at_level(logging.ERROR, logger="facemocap"):
        stats = run(face_frames(10), Odd(), Shaper(), outputs=[vmc_output(received)], blendshapes="solver")
    assert [f["ok"][3] for f in frames_from(received.datagrams)] == [1, 0] * 5
    assert stats.tracking_errors == 5 and stats.faces == 5
    assert len([r for r in caplog.records if "tracking failed" in r.getMessage()]) == 1


def test_a_tracker_that_never_works_stops_the_run():
    """The silent failure of old: every frame raising from the start is not 'no face'."""
    from bridge.pipeline import FAILED_START_FRAMES
    from bridge.tracking import TrackingError

    class Broken(Tracker):
        def track(self, frame):
            raise AttributeError("module 'mediapipe' has no attribute 'solutions'")

    received = Collect()
    with pytest.raises(TrackingError) as info:
        run(face_frames(50), Broken(), Shaper(), outputs=[vmc_output(received)], blendshapes="solver")
    message = str(info.value)
    assert f"first {FAILED_START_FRAMES} frames" in message and "no attribute 'solutions'" in message
    assert "\n" not in message
    assert len(frames_from(received.datagrams)) == FAILED_START_FRAMES - 1


def test_a_tracker_that_worked_once_keeps_going_through_errors():
    from bridge.pipeline import FAILED_START_FRAMES

    class LaterBroken(Tracker):
        def track(self, frame):
            if frame.index:
                raise RuntimeError("driver hiccup")
            return super().track(frame)

    stats = run(face_frames(3 * FAILED_START_FRAMES), LaterBroken(), Shaper(), outputs=[vmc_output(Collect())],
                blendshapes="solver")
    assert stats.frames == 3 * FAILED_START_FRAMES and stats.tracking_errors == 3 * FAILED_START_FRAMES - 1


def test_the_cli_exits_2_when_the_tracker_never_works(monkeypatch, capsys, caplog, tmp_path):
    """End to end through the command line: one line, exit 2, never 'done: face in 0'."""
    import cv2
    from bridge import cli, tracking

    class Broken(Tracker):
        backend = "landmarker"
        description = "a broken tracker"

        def _track_image(self, frame):
            raise AttributeError("module 'mediapipe' has no attribute 'solutions'")

    monkeypatch.setattr(tracking, "open_tracker", lambda *args, **kwargs: Broken())
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(30):
        assert cv2.imwrite(str(folder / f"{i:02d}.png"), np.full((48, 64, 3), 100, np.uint8))
    status = cli.main(["--images", str(folder), "--quiet", "--control-port", "0", "--port", str(free_udp_port())])
    err = capsys.readouterr().err
    assert status == 2
    errors = [line for line in err.splitlines() if "error" in line]
    assert len(errors) == 1 and "the tracker failed on each of the first" in errors[0], err
    assert "done:" not in err and "tracking failed on frame" not in err
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING and r.name != "facemocap.send"]


def test_nan_blendshape_scores_from_the_model_keep_the_solvers_values():
    points = FACE.landmarks(Expression(jaw=0.8), *SIZE)
    state = Solver(*SIZE, blendshapes="solver").solve(points, SIZE)
    out = Solver(*SIZE, blendshapes="model").solve(points, SIZE,
                                                   scores={"jawOpen": float("nan"), "eyeBlinkLeft": 0.5})
    assert out.blendshape("jawOpen") == state.blendshape("jawOpen") and out.blendshape("eyeBlinkLeft") == 0.5
    assert np.isfinite(out.vector()).all()


# --------------------------------------------------------------------------- 5. configuration files


@pytest.fixture
def listening():
    """A UDP socket the tracker would send to; checked for datagrams after the run."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    yield sock
    sock.close()


def nothing_arrived(sock) -> bool:
    # The tracker has exited, and loopback delivers at send time: anything sent is queued.
    try:
        sock.recv(65535)
    except BlockingIOError:
        return True
    return False


def _profile_text(**changes) -> str:
    from bridge.solve.geometry import PRIOR_VECTOR
    data = neutral_to_dict(Neutral(PRIOR_VECTOR, np.zeros(52), np.zeros(3), np.array([0.0, 0.0, -0.5])))
    for dotted, value in changes.items():
        *parents, key = dotted.split(".")
        table = data
        for parent in parents:
            table = table[parent]
        table[key] = value
    return json.dumps(data)


def _preset_text(port: int, extra: str = "") -> str:
    return (f'description = "test"\nprotocol = "osc"\nhost = "127.0.0.1"\nport = {port}\n'
            f'[osc]\nblend = "/face/blend/{{name}}"\n[channels]\ninclude = ["arkit"]\n{extra}')


BAD_PRESETS = {   # name: (text after the valid part, what the one line must say)
    "gain": ('[channels.gain]\njawOpen = "loud"\n', "key 'channels.gain.jawOpen'"),
    "nan": ("[channels.clamp]\njawOpen = [nan, 1]\n", "key 'channels.clamp.jawOpen'"),
    "toml": ("[channels\n", "not valid TOML"),
    "deep": ("[deep]\nx = " + "[" * 3000 + "]" * 3000 + "\n", "nested too deeply"),
    "digits": ("[channels.gain]\njawOpen = " + "9" * 5000 + "\n", "too many digits"),
}
BAD_PROFILES = {
    "number": (_profile_text(**{"measures.lip_gap": "x"}), "key 'measures.lip_gap'"),
    "nan": (_profile_text(**{"head_angles.yaw": float("nan")}), "key 'head_angles.yaw'"),
    "range": (_profile_text(**{"model.jawOpen": 2}), "key 'model.jawOpen'"),
    "json": ('{"version": 1,', "not valid JSON"),
    "deep": ("[" * 100000 + "]" * 100000, "nested too deeply"),
    "digits": (_profile_text().replace('"version": 2', '"version": 2' + "0" * 5000), "too many digits"),
}


def _run_tracker(args, config_dir) -> subprocess.CompletedProcess:
    env = {**os.environ, "FACEMOCAP_OSC_CONFIG_DIR": str(config_dir)}
    return subprocess.run([*tracker_command(), "--demo", "--fast", "--frames", "5", "--quiet", "--control-port", "0",
                           *args], capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL, env=env)


def _assert_refused(proc, *expected) -> None:
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("facemocap-osc: error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    for text in expected:
        assert text in lines[0], lines[0]


@pytest.mark.parametrize("preset, profile", [
    *[(name, None) for name in BAD_PRESETS], *[(None, name) for name in BAD_PROFILES], ("gain", "number")])
def test_a_bad_preset_or_profile_is_one_line_exit_2_and_nothing_is_sent(tmp_path, listening, preset, profile):
    port = listening.getsockname()[1]
    args = ["--port", str(port)]
    expected = []
    if profile is not None:
        (tmp_path / "profiles").mkdir()
        text, why = BAD_PROFILES[profile]
        (tmp_path / "profiles" / "alice.json").write_text(text)
        args += ["--profile", "alice"]
        expected = ["alice.json", why]     # the profile is checked first
    if preset is not None:
        extra, why = BAD_PRESETS[preset]
        path = tmp_path / "mine.toml"
        path.write_text(_preset_text(port, extra))
        args = ["--preset", str(path), *args[2:]]   # the preset's own port is the listening one
        expected = expected or [str(path), why]
    proc = _run_tracker(args, tmp_path)
    _assert_refused(proc, *expected)
    assert nothing_arrived(listening)


def test_the_same_files_fixed_do_send(tmp_path, listening):
    """The check above would pass for a tracker that never sends: this one does."""
    port = listening.getsockname()[1]
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "alice.json").write_text(_profile_text())
    path = tmp_path / "mine.toml"
    path.write_text(_preset_text(port))
    proc = _run_tracker(["--preset", str(path), "--profile", "alice"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert not nothing_arrived(listening)


def test_latency_percentiles_come_from_a_bounded_histogram():
    from bridge.pipeline import LATENCY_BINS, Stats

    stats = Stats()
    assert stats.latency_percentile(99) is None
    for ms in [0.55] * 98 + [3.2, 5000.0]:   # one beyond the last bin
        stats.latency_histogram[min(int(ms / 0.1), LATENCY_BINS)] += 1
    assert stats.latency_percentile(50) == pytest.approx(0.6)
    assert stats.latency_percentile(99) == pytest.approx(3.3)
    assert len(stats.latency_histogram) == LATENCY_BINS + 1
