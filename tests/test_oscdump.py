"""Decode our datagrams with an independent OSC implementation: liblo's oscdump."""

import os
import queue
import shlex
import shutil
import socket
import subprocess
import threading
import time

import numpy as np
import pytest
from pythonosc.osc_message_builder import OscMessageBuilder

from bridge.send import UdpTarget
from bridge.state import ARKIT_NAMES, VRM0_NAMES, FaceState, pascal_case
from bridge.vmc import BONES, VmcEncoder, VmcOptions

STARTUP_TIMEOUT = 5.0   # oscdump has to bind its port before anything arrives
READ_TIMEOUT = 5.0
PROBE_INTERVAL = 0.05
OSCDUMP_DECIMALS = 1e-6  # oscdump prints floats with %f


@pytest.fixture
def oscdump():
    exe = shutil.which("oscdump")
    if exe is None:
        message = "oscdump (Debian liblo-tools) not installed"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # -L: line-buffered even though stdout is a pipe.
    proc = subprocess.Popen([exe, "-L", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    lines: "queue.Queue[str]" = queue.Queue()
    threading.Thread(target=_pump, args=(proc.stdout, lines), daemon=True).start()
    target = UdpTarget("127.0.0.1", port)
    try:
        _wait_until_listening(target, lines)
        yield target, lines
    finally:
        target.close()
        proc.kill()
        proc.wait()


def _pump(stream, lines):
    for line in stream:
        lines.put(line)


def _wait_until_listening(target, lines):
    probe = OscMessageBuilder("/probe").build().dgram
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        target.send([probe])
        try:
            while "/probe" not in lines.get(timeout=PROBE_INTERVAL):
                pass
            break
        except queue.Empty:
            continue
    else:
        pytest.fail("oscdump did not receive anything within 5 s")
    # Late echoes of earlier probes are skipped by _read_frame.


def _read_frame(lines):
    """(address, types, args) per message, up to and including Blend/Apply."""
    out, deadline = [], time.monotonic() + READ_TIMEOUT
    while not out or out[-1][0] != "/VMC/Ext/Blend/Apply":
        try:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            pytest.fail(f"oscdump printed only {len(out)} messages")
        # "<timetag> <address> <types> <args...>"; strings are double-quoted.
        parts = shlex.split(line)
        address, types, args = parts[1], (parts[2] if len(parts) > 2 else ""), parts[3:]
        if address != "/probe":
            out.append((address, types, args))
    return out


@pytest.mark.parametrize("bundle", [True, False])
def test_oscdump_decodes_a_frame(oscdump, bundle):
    target, lines = oscdump
    s = FaceState.neutral()
    s.blendshapes = np.linspace(0, 1, 52)
    s.vrm = np.linspace(1, 0, 16)
    s.head_angles = np.array([30.0, 0.0, 0.0])
    # Probes sent before oscdump was up may have failed (refused); the frame must not.
    failed_before = target.failed_datagrams
    target.send(VmcEncoder(VmcOptions(bundle=bundle, root=True)).encode(s, time=12.5, tracking=True))
    msgs = _read_frame(lines)

    assert target.failed_datagrams == failed_before
    assert msgs[0] == ("/VMC/Ext/OK", "iiii", ["1", "3", "0", "1"])
    assert msgs[1][:2] == ("/VMC/Ext/T", "f") and float(msgs[1][2][0]) == 12.5
    assert msgs[2][:2] == ("/VMC/Ext/Root/Pos", "sfffffff") and msgs[2][2][0] == "root"

    bones = msgs[3:7]
    assert [(a, t, args[0]) for a, t, args in bones] == [("/VMC/Ext/Bone/Pos", "sfffffff", b) for b in BONES]
    neck, head = (np.array(args[4:], float) for _, _, args in bones[:2])
    assert neck[1] < 0 and head[1] < 0  # yaw to own left: negative turn about Unity +Y

    blend = msgs[7:-1]
    assert {(a, t) for a, t, _ in blend} == {("/VMC/Ext/Blend/Val", "sf")}
    assert [args[0] for _, _, args in blend] == list(VRM0_NAMES) + [pascal_case(n) for n in ARKIT_NAMES]
    np.testing.assert_allclose([float(args[1]) for _, _, args in blend], np.concatenate([s.vrm, s.blendshapes]),
                               atol=OSCDUMP_DECIMALS)
    assert msgs[-1] == ("/VMC/Ext/Blend/Apply", "", [])
