"""Several receivers at once (--target), --preset, and the command line's target parsing."""

import re
import socket
import subprocess

import numpy as np
import pytest
from pythonosc.osc_bundle import OscBundle
from pythonosc.osc_message import OscMessage
from support import tracker_command
from test_end_to_end import Receiver, frames_from

from bridge.cli import TargetSpec, UsageError, parse_target
from bridge.pipeline import Output, TargetsLabel
from bridge.state import ARKIT_NAMES

MAX_DATAGRAM = 1452          # the landmarks preset: 1252 B; the VMC ones 1200
DONE = re.compile(r"done: (\d+) frames")


def messages(datagrams):
    out = []
    for d in datagrams:
        assert len(d) <= MAX_DATAGRAM
        for dgram in ([m.dgram for m in OscBundle(d)] if OscBundle.dgram_is_bundle(d) else [d]):
            m = OscMessage(dgram)
            out.append((m.address, list(m.params)))
    return out


def free_udp_port() -> int:
    """A port nobody listens on (bound for a moment, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(*args, receivers=(), timeout=60):
    try:
        proc = subprocess.run([*tracker_command(), "--quiet", "--control-port", "0", *args], capture_output=True,
                              text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    finally:
        for receiver in receivers:
            receiver.close()
    return proc


def frames_done(proc) -> int:
    found = DONE.search(proc.stderr)
    assert found, proc.stderr
    return int(found.group(1))


# ---- end to end ----

def test_two_targets_each_get_every_frame():
    vmc, osc = Receiver(), Receiver()
    proc = run("--demo", "--duration", "2", "--target", f"vmc@127.0.0.1:{vmc.port}",
               "--target", f"osc@127.0.0.1:{osc.port}", receivers=(vmc, osc))
    assert proc.returncode == 0, proc.stderr
    count = frames_done(proc)
    assert count > 0
    assert len(frames_from(vmc.datagrams)) == count
    osc_messages = messages(osc.datagrams)
    assert [p for a, p in osc_messages if a == "/face/found"] == [[1]] * count
    assert sum(a == "/face/blend/jawOpen" for a, _ in osc_messages) == count
    assert f"vmc@127.0.0.1:{vmc.port}" in proc.stderr and f"osc@127.0.0.1:{osc.port}" in proc.stderr


def test_a_dead_target_does_not_stop_the_others():
    live = Receiver()
    dead = free_udp_port()
    proc = run("--demo", "--duration", "2", "--target", f"vrchat@127.0.0.1:{dead}",
               "--target", f"vmc@127.0.0.1:{live.port}", receivers=(live,))
    assert proc.returncode == 0, proc.stderr
    assert len(frames_from(live.datagrams)) == frames_done(proc)
    failures = [line for line in proc.stderr.splitlines() if "failed" in line and str(dead) in line]
    assert len(failures) <= 1          # logged once, then only counted
    assert "Traceback" not in proc.stderr


def test_preset_vmc_and_no_preset_send_the_same_bytes():
    streams = []
    for extra in ((), ("--preset", "vmc")):
        receiver = Receiver()
        proc = run("--demo", "--fast", "--frames", "20", "--port", str(receiver.port), *extra, receivers=(receiver,))
        assert proc.returncode == 0, proc.stderr
        streams.append(receiver.datagrams)
    # The vmc preset's 12 clips and four bones fit one datagram.
    assert len(streams[0]) == 20 and streams[0] == streams[1]


def test_vrm_1_names_and_the_old_options_as_overrides():
    receiver = Receiver()
    proc = run("--demo", "--fast", "--frames", "3", "--vrm-names", "1", "--port", str(receiver.port),
               "--no-bundle", receivers=(receiver,))
    assert proc.returncode == 0, proc.stderr
    assert not any(d.startswith(b"#bundle") for d in receiver.datagrams)
    frame = frames_from(receiver.datagrams)[0]
    assert set(frame["blend"]) == {"aa", "ih", "ou", "ee", "oh", "blink", "blinkLeft", "blinkRight",
                                   "lookUp", "lookDown", "lookLeft", "lookRight"}
    receiver = Receiver()
    proc = run("--demo", "--fast", "--frames", "3", "--preset", "vmc-perfect-sync", "--arkit-names", "camel",
               "--port", str(receiver.port), receivers=(receiver,))
    assert proc.returncode == 0, proc.stderr
    assert set(frames_from(receiver.datagrams)[0]["blend"]) == set(ARKIT_NAMES)


def test_landmarks_target_sends_the_demo_faces_landmarks():
    from bridge.demo_face import demo_landmarks
    receiver = Receiver()
    proc = run("--demo", "--fast", "--frames", "4", "--target", f"landmarks@127.0.0.1:{receiver.port}",
               receivers=(receiver,))
    assert proc.returncode == 0, proc.stderr
    chunks = messages(receiver.datagrams)
    assert len(chunks) == 4 * 5 and {a for a, _ in chunks} == {"/facemocap/landmarks"}
    for index in range(4):
        parts = [p for _, p in chunks if p[0] == index]
        assert [p[2] for p in parts] == [0, 100, 200, 300, 400] and [p[3] for p in parts] == [100] * 4 + [78]
        points = np.concatenate([np.frombuffer(p[4], "<f4").reshape(-1, 3) for p in parts])
        t = parts[0][1]
        expected = np.asarray(demo_landmarks(t, 640, 480), np.float32) / np.float32(640)
        np.testing.assert_allclose(points, expected, atol=1e-6)


@pytest.mark.parametrize("args, expected", [
    (["--target", "vmc@"], "invalid --target 'vmc@'"),
    (["--target", "@127.0.0.1"], "no preset"),
    (["--target", "nosuch@127.0.0.1"], "unknown preset 'nosuch'"),
    (["--target", "vmc@127.0.0.1:0"], "invalid port '0'"),
    (["--target", "vmc@127.0.0.1:"], "no port after ':'"),
    (["--target", "vmc@[::1"], "the host in [...] is empty or not closed"),
    (["--target", "vmc@no-such-host.invalid"], "cannot resolve host 'no-such-host.invalid'"),
    (["--target", "vmc", "--port", "9000"], "--target cannot be combined with --port"),
    (["--target", "vmc", "--preset", "osc"], "--target cannot be combined with --preset"),
    (["--preset", "nosuch"], "unknown preset 'nosuch'"),
    (["--preset", "osc", "--vrm-names", "1"], "--vrm-names is for VMC presets"),
])
def test_bad_targets_exit_2_with_one_line(args, expected):
    proc = run("--demo", "--frames", "3", *args)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], proc.stderr


# ---- parsing and the status line ----

@pytest.mark.parametrize("text, preset, host, port", [
    ("vmc", "vmc", None, None),
    ("osc@127.0.0.1:7000", "osc", "127.0.0.1", "7000"),
    ("vrchat@192.168.1.5", "vrchat", "192.168.1.5", None),
    ("osc@:7000", "osc", None, "7000"),
    ("vmc@[::1]:39539", "vmc", "::1", "39539"),
    ("vmc@[::1]", "vmc", "::1", None),
    ("vmc@::1", "vmc", "::1", None),
    ("my/presets/face.toml@localhost:9001", "my/presets/face.toml", "localhost", "9001"),
])
def test_parse_target(text, preset, host, port):
    assert parse_target(text) == TargetSpec(preset, host, port, text)


@pytest.mark.parametrize("text", ["", "@", "vmc@", "@host", "vmc@[::1]x", "vmc@[]:1", "vmc@host:"])
def test_parse_target_refuses(text):
    with pytest.raises(UsageError, match="invalid --target"):
        parse_target(text)


def test_status_line_marks_a_failing_target():
    class Target:
        def __init__(self, address):
            self.address, self.failed_datagrams = address, 0

    a, b = Target("127.0.0.1:1"), Target("127.0.0.1:2")
    label = TargetsLabel([Output(None, a, "vmc@127.0.0.1:1"), Output(None, b)])
    assert label() == "vmc@127.0.0.1:1, 127.0.0.1:2"
    b.failed_datagrams = 3
    assert label() == "vmc@127.0.0.1:1, 127.0.0.1:2 (failing)"
    assert label() == "vmc@127.0.0.1:1, 127.0.0.1:2"       # nothing new failed since


def _datagram_sizes(preset: str, host: str, family) -> list[int]:
    receiver = socket.socket(family, socket.SOCK_DGRAM)
    receiver.bind((host, 0))
    receiver.settimeout(5.0)
    proc = run("--demo", "--fast", "--frames", "1", "--preset", preset, "--host", host,
               "--port", str(receiver.getsockname()[1]))
    assert proc.returncode == 0, proc.stderr
    sizes = []
    try:
        while True:
            receiver.settimeout(0.5 if sizes else 5.0)
            sizes.append(len(receiver.recv(65535)))
    except (TimeoutError, socket.timeout):
        pass
    receiver.close()
    return sizes


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def _limited(tmp_path, limit: int) -> str:
    from bridge.outputs import presets_dir
    path = tmp_path / f"perfect-sync-{limit}.toml"
    path.write_text((presets_dir() / "vmc-perfect-sync.toml").read_text().replace(
        "bundle = true", f"bundle = true\nmax_packet = {limit}"))
    return str(path)


def test_datagram_size_per_address_family(tmp_path):
    # The shipped default, 1200 B, on either family.
    assert max(_datagram_sizes("vmc-perfect-sync", "127.0.0.1", socket.AF_INET)) <= 1200
    # A preset asking for 1472 B: IPv4 gets up to 1472, IPv6 (40-byte header) only up to 1452.
    v4 = _datagram_sizes(_limited(tmp_path, 1472), "127.0.0.1", socket.AF_INET)
    assert max(v4) <= 1472 and max(v4) > 1452
    if _has_ipv6_loopback():
        v6 = _datagram_sizes(_limited(tmp_path, 1472), "::1", socket.AF_INET6)
        assert max(v6) <= 1452


def test_max_packet_above_what_ethernet_carries_is_refused(tmp_path):
    proc = run("--demo", "--fast", "--frames", "1", "--preset", _limited(tmp_path, 8000))
    assert proc.returncode == 2
    assert "key 'max_packet' must be between 128 and 1472, got 8000" in proc.stderr


def test_avatar_errors_are_one_line(tmp_path):
    proc = run("--demo", "--fast", "--frames", "1", "--avatar", str(tmp_path / "missing.vrm"))
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1 and "missing.vrm" in proc.stderr
    proc = run("--demo", "--fast", "--frames", "1", "--preset", "osc", "--avatar", str(tmp_path / "x.vrm"))
    assert proc.returncode == 2 and "--avatar is for VMC presets" in proc.stderr


def test_landmark_chunks_too_large_for_an_ipv6_target_are_refused(tmp_path):
    if not _has_ipv6_loopback():
        pytest.skip("no IPv6 loopback here")
    path = tmp_path / "big-chunks.toml"
    path.write_text('description = "x"\nprotocol = "osc"\nport = 39539\nbundle = false\nmax_packet = 1472\n'
                    '[osc.landmarks]\nchunk = 118\n')
    assert run("--demo", "--fast", "--frames", "1", "--preset", str(path)).returncode == 0   # IPv4: 1468 B fit
    proc = run("--demo", "--fast", "--frames", "1", "--preset", str(path), "--host", "::1")
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert "key 'osc.landmarks.chunk' is too large for this target: 118 landmarks need 1468 bytes, more than 1452" \
        in proc.stderr
