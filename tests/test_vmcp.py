"""A third-party VMC receiver: PyPI's `vmcp` (on `osc4py3`) takes the real `facemocap-osc`.

For every shipped VMC preset, the installed console script sends a real-time demo
take over UDP to a vmcp receiver on 127.0.0.1; every message must come out of vmcp as
its typed event (StateEvent, RelativeTimeEvent, RootTransformEvent, BoneTransformEvent,
BlendShapeEvent, BlendShapeApplyEvent), none rejected, every frame whole.

The receiver runs in a subprocess (this file, run as a script: `python test_vmcp.py
receive`), which keeps osc4py3's process-wide state (its global dispatcher, channels
and monitors) out of the pytest process and starts each preset on a clean one. It
uses vmcp's `as_eventloop` backend, a single thread: it waits on the channel's socket
and calls `OSC.run()`, which reads one datagram, decodes it and dispatches its
messages. Not `as_comthreads` (vmcp's README's choice): there, osc4py3's decoding
thread ends at the first datagram it cannot decode, and every later one is lost
unseen; in the event loop each run starts decoding anew.

How vmcp fails, and how it is caught here:
  - a datagram osc4py3 cannot decode: osc4py3 logs "OSC Failure in
    rawpackets_process_loop()" on the logger given to OSC(backend, logger), and
    drops it. The receiver gives it a logger and reports every warning or error.
  - a message whose arguments vmcp does not take (wrong count, a bone not in its
    55 Unity HumanBodyBones ...): the event's from_message_data() raises, and
    osc4py3's MethodFilter swallows the exception (vmcp registers its handlers
    without a logger), so vmcp.facades.on_receive would drop it silently. The
    receiver registers the same handlers on_receive does (address pattern, arguments
    scheme), but calls from_message_data() itself and records what it raises.
  - an address vmcp has no event for: no handler matches. A catch-all handler
    ("/", registered first, so it runs first for every message) records every
    message, and one that no vmcp event took is a rejection.

Pacing: real time (--fps 60 --frames 60, a second per preset), not --fast. osc4py3
reads one datagram per OSC.run() and decodes and dispatches it in pure Python (1.3 to
1.9 ms here for a frame's 1.2 kB datagram of 25 messages); --fast sends the whole
take at once, faster than that, and loopback UDP drops whatever no longer fits in the
socket's receive buffer: with the default one (net.core.rmem_default, 208 KiB),
--fast --frames 60 lost about 40% of its 180 datagrams, every time. At 60 fps a
frame's three datagrams take about 5 ms of the 16.7 ms before the next frame's. The
receiver also asks for a 4 MiB buffer as a margin for a loaded machine (the kernel
grants at most net.core.rmem_max: 208 KiB on a stock Linux, so --fast would still
lose datagrams there). A lost datagram shows as missing frames, with the tracker's
"N datagrams sent" beside the receiver's count in the failure message.

Needs `pip install "vmcp[osc4py3]"` (in the test extra); skipped without it.
"""

from __future__ import annotations

import json
import math
import select
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

RECEIVER_NAME = "facemocap-test"
FRAMES = 60
FPS = 60

# The vmcp event each address we send must come out as.
EVENT_FOR = {
    "/VMC/Ext/OK": "StateEvent",
    "/VMC/Ext/T": "RelativeTimeEvent",
    "/VMC/Ext/Root/Pos": "RootTransformEvent",
    "/VMC/Ext/Bone/Pos": "BoneTransformEvent",
    "/VMC/Ext/Blend/Val": "BlendShapeEvent",
    "/VMC/Ext/Blend/Apply": "BlendShapeApplyEvent",
}


# --------------------------------------------------------------------------------------
# The receiver (the subprocess): `python test_vmcp.py receive`
# --------------------------------------------------------------------------------------

def _jsonable(value):
    """A vmcp event's fields as JSON: enums by value, dataclasses as dicts, tuples as lists."""
    import dataclasses
    import enum

    if isinstance(value, enum.Enum):
        return _jsonable(value.value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, bytes):
        return value.hex()
    return value


def receive() -> int:
    """Bind a vmcp receiver to 127.0.0.1 (a free port), print {"port": N}; on a line on
    stdin (or its end), drain the socket and print one JSON line per message received
    ({"address", "args", "events", "errors"}), then {"done": ...} with osc4py3's log."""
    import logging

    from vmcp import events
    from vmcp.osc import OSC
    from vmcp.osc.backend.osc4py3 import as_eventloop as backend

    class Collect(logging.Handler):
        def __init__(self):
            super().__init__(logging.WARNING)
            self.lines: list[str] = []

        def emit(self, record):
            self.lines.append(self.format(record))

        def format(self, record):   # the message and its traceback, if any
            text = record.getMessage()
            if record.exc_info:
                text += "\n" + logging.Formatter().formatException(record.exc_info)
            return text

    collect = Collect()
    logger = logging.getLogger("test_vmcp.osc4py3")
    logger.addHandler(collect)
    logger.setLevel(logging.WARNING)
    logger.propagate = False

    event_types = [events.RootTransformEvent, events.BoneTransformEvent, events.DeviceTransformEvent,
                   events.BlendShapeEvent, events.BlendShapeApplyEvent, events.StateEvent,
                   events.RelativeTimeEvent]
    messages: list[dict] = []

    def every_message(address, arguments):
        messages.append({"address": address, "args": _jsonable(list(arguments)), "events": [], "errors": []})

    def parse_as(event_type):
        def handler(channel, address, arguments):
            # osc4py3 would swallow anything raised here, so nothing is let out.
            if not messages or messages[-1]["address"] != address:   # never: every_message runs first
                every_message(address, arguments)
                messages[-1]["errors"].append("receiver: no catch-all record for this message")
            try:
                event = event_type.from_message_data(channel, address, arguments)
            except Exception as error:      # what vmcp rejects
                messages[-1]["errors"].append(f"{event_type.__name__}: {type(error).__name__}: {error}")
                return
            try:
                messages[-1]["events"].append({"type": type(event).__name__, **_jsonable(event)})
            except Exception as error:
                messages[-1]["errors"].append(f"receiver: {event!r}: {type(error).__name__}: {error}")
        return handler

    osc = OSC(backend, logger)
    with osc.open():
        receiver = osc.create_receiver("127.0.0.1", 0, RECEIVER_NAME)
        receiver.register_handler("/", every_message, backend.ARG_ADDRESS + backend.ARG_DATA)
        for event_type in event_types:
            # As vmcp.facades.on_receive registers them.
            receiver.register_handler(event_type.ADDRESS_PATTERN, parse_as(event_type),
                                      backend.ARG_READERNAME + backend.ARG_ADDRESS + backend.ARG_DATA)
        receiver.open()
        channel = backend.get_channel(RECEIVER_NAME)
        channel.udpsock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        port = channel.udpsock.getsockname()[1]
        print(json.dumps({"port": port}), flush=True)

        datagrams, busy, stopping = 0, 0.0, False
        deadline = time.monotonic() + 600          # never outlive a stuck test
        while time.monotonic() < deadline:
            # Once told to stop (the sender has exited), read until 0.2 s of silence;
            # each OSC.run() dispatches all it read, so nothing is left inside osc4py3.
            watch = [channel.fileno()] if stopping else [channel.fileno(), sys.stdin]
            readable, _, _ = select.select(watch, [], [], 0.2 if stopping else 1.0)
            if channel.fileno() in readable:
                start = time.perf_counter()
                osc.run()                          # reads one datagram, dispatches it
                busy += time.perf_counter() - start
                datagrams += 1
            elif stopping:
                break
            if sys.stdin in readable:
                sys.stdin.readline()
                stopping = True
        # No receiver.close(): vmcp 1.0.6's unregisters its handlers while iterating
        # over their dict (RuntimeError: dictionary changed size during iteration);
        # leaving `with osc` terminates osc4py3, its channels with it.
    for message in messages:
        print(json.dumps(message))
    print(json.dumps({"done": True, "datagrams": datagrams, "busy": busy, "log": collect.lines}), flush=True)
    return 0


if __name__ == "__main__":
    if sys.argv[1:] == ["receive"]:
        sys.exit(receive())
    sys.exit(f"usage: {sys.argv[0]} receive")


# --------------------------------------------------------------------------------------
# The tests (pytest)
# --------------------------------------------------------------------------------------

pytest.importorskip("vmcp", reason='the third-party VMC receiver vmcp is not installed (pip install "vmcp[osc4py3]")')
pytest.importorskip("osc4py3", reason='vmcp\'s OSC backend osc4py3 is not installed (pip install "vmcp[osc4py3]")')

from bridge.outputs import load_preset, shipped_presets  # noqa: E402
from bridge.vmc import BONES  # noqa: E402
from support import tracker_command  # noqa: E402


def vmc_presets() -> list[str]:
    return [name for name in shipped_presets() if load_preset(name).protocol == "vmc"]


class VmcpReceiver:
    """The receiver subprocess; finish() stops it and returns (messages, done)."""

    def __init__(self):
        self.proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "receive"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)
        ready, _, _ = select.select([self.proc.stdout], [], [], 60)
        line = self.proc.stdout.readline() if ready else ""
        if not line.startswith("{"):
            self.proc.kill()
            _, err = self.proc.communicate()
            raise RuntimeError(f"the vmcp receiver did not start: {line!r}\n{err}")
        self.port = json.loads(line)["port"]

    def finish(self, timeout=60) -> tuple[list[dict], dict]:
        out, err = self.proc.communicate("stop\n", timeout=timeout)
        lines = [json.loads(line) for line in out.splitlines() if line.strip()]
        assert self.proc.returncode == 0 and lines and lines[-1].get("done"), \
            f"the vmcp receiver failed (exit {self.proc.returncode}):\n{err}"
        return lines[:-1], lines[-1]

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()


@pytest.fixture
def vmcp_receiver():
    receiver = VmcpReceiver()
    try:
        yield receiver
    finally:
        receiver.close()


def run_tracker(preset: str, port: int) -> subprocess.CompletedProcess:
    return subprocess.run([*tracker_command(), "--demo", "--fps", str(FPS), "--frames", str(FRAMES),
                           "--preset", preset, "--host", "127.0.0.1", "--port", str(port),
                           "--control-port", "0", "--quiet"],
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)


def frames_of(messages: list[dict], context: str) -> list[list[dict]]:
    """The events grouped into frames: StateEvent (/VMC/Ext/OK) ... BlendShapeApplyEvent."""
    frames, current = [], None
    for message in messages:
        event = message["events"][0]
        if event["type"] == "StateEvent":
            assert current is None, f"frame {len(frames)}: a frame began before its Blend/Apply\n{context}"
            current = []
        assert current is not None, f"{message['address']} outside a frame (before its /VMC/Ext/OK)\n{context}"
        current.append(event)
        if event["type"] == "BlendShapeApplyEvent":
            frames.append(current)
            current = None
    assert current is None, f"the stream ended in the middle of a frame (no Blend/Apply)\n{context}"
    return frames


def norm(q: dict) -> float:
    return math.sqrt(q["x"] ** 2 + q["y"] ** 2 + q["z"] ** 2 + q["w"] ** 2)


def test_the_default_vmc_preset_is_among_those_checked():
    assert "vmc" in vmc_presets()


@pytest.mark.parametrize("preset", vmc_presets())
def test_vmcp_parses_every_message_of_every_frame(preset, vmcp_receiver):
    proc = run_tracker(preset, vmcp_receiver.port)
    messages, done = vmcp_receiver.finish()
    assert proc.returncode == 0, proc.stderr
    context = (f"tracker: {proc.stderr.strip()}\nreceiver: {done['datagrams']} datagrams, {len(messages)} messages, "
               f"{done['busy']:.2f} s in OSC.run()")

    # Nothing osc4py3 failed to decode, or warned about.
    assert done["log"] == [], "osc4py3 logged:\n" + "\n".join(done["log"]) + "\n" + context
    # Every message taken by vmcp: no exception, and the event its address names.
    rejected = [m for m in messages if m["errors"] or [e["type"] for e in m["events"]] != [EVENT_FOR.get(m["address"])]]
    assert not rejected, f"{len(rejected)} of {len(messages)} messages not parsed as expected by vmcp, e.g.:\n" + \
        "\n".join(json.dumps(m) for m in rejected[:5]) + "\n" + context

    # Every frame arrived, whole and in order.
    kinds = [event["type"] for m in messages for event in m["events"]]
    assert kinds.count("RelativeTimeEvent") == FRAMES, context
    assert kinds.count("BlendShapeApplyEvent") == FRAMES, context
    frames = frames_of(messages, context)
    assert len(frames) == FRAMES, context

    names = list(load_preset(preset).output_names)      # what our own encoder sends
    times = []
    for index, frame in enumerate(frames):
        by_type: dict[str, list[dict]] = {}
        for event in frame:
            by_type.setdefault(event["type"], []).append(event)
        where = f"frame {index}"
        (ok,) = by_type["StateEvent"]
        assert ok["model_state"] == 1, where                    # ModelState.LOADED
        assert ok["calibration_state"] is not None and ok["tracking_state"] is not None, where
        (t,) = by_type["RelativeTimeEvent"]
        assert math.isfinite(t["delta"]), where
        times.append(t["delta"])
        bones = by_type["BoneTransformEvent"]
        assert [b["joint"] for b in bones] == list(BONES), where
        for bone in bones:
            assert norm(bone["rotation"]) == pytest.approx(1.0, abs=1e-4), f"{where}: {bone}"
            assert all(math.isfinite(v) for v in bone["position"].values()), f"{where}: {bone}"
        # /VMC/Ext/Root/Pos only if the preset sends it; then vmcp parsed it, once a frame.
        for root in by_type.get("RootTransformEvent", []):
            assert norm(root["rotation"]) == pytest.approx(1.0, abs=1e-4), f"{where}: {root}"
        assert len(by_type.get("RootTransformEvent", [])) in (0, 1), where
        blends = by_type["BlendShapeEvent"]
        assert [b["key"] for b in blends] == names, where
        assert all(math.isfinite(b["value"]) for b in blends), where
        assert set(by_type) <= {"StateEvent", "RelativeTimeEvent", "RootTransformEvent", "BoneTransformEvent",
                                "BlendShapeEvent", "BlendShapeApplyEvent"}, where
    roots = sum(1 for m in messages if m["address"] == "/VMC/Ext/Root/Pos")
    assert roots in (0, FRAMES), f"/VMC/Ext/Root/Pos in {roots} of {FRAMES} frames"
    assert times == sorted(times) and len(set(times)) == FRAMES, f"/VMC/Ext/T not increasing: {times}"
