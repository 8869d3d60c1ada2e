"""Soak: a long run of the tracker into two receivers, with the figures a live show needs.

    python bench/soak.py [--minutes 10] [--fps 60] [--replay TAKE]

Three processes on 127.0.0.1:
  tracker   `facemocap-osc --demo` (or `--replay TAKE`) at --fps, two VMC targets
  counter   a plain python-osc server counting datagrams and frames (one thread, in order)
  blender   the receiver add-on in bpy, its apply step pumped at 120 Hz as the timer would

Printed: datagrams sent / received per receiver (loss must be 0 on loopback), frames
applied in Blender, NaN applied (must be 0), each process's RSS after the warm-up and
at the end (must stay within +-5 MB), and the tracker's capture -> send latency p50/p99.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WARM_UP_SECONDS = 30.0
RSS_LIMIT_MB = 5.0


def rss_mb(pid: int | str = "self") -> float:
    """Resident set size in MB, from /proc (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class _Stop:
    """Set by SIGTERM: the child processes finish their loop and write their report."""

    def __init__(self):
        self.now = False
        signal.signal(signal.SIGTERM, self._set)

    def _set(self, *_):
        self.now = True


# ----------------------------------------------------------------------- the counter

def counter(port: int, report: Path) -> None:
    from pythonosc.dispatcher import Dispatcher
    from pythonosc.osc_server import BlockingOSCUDPServer

    counts = {"datagrams": 0, "frames": 0}

    class Counting(Dispatcher):
        def call_handlers_for_packet(self, data, client_address):
            counts["datagrams"] += 1
            return super().call_handlers_for_packet(data, client_address)

    dispatcher = Counting()
    dispatcher.map("/VMC/Ext/Blend/Apply", lambda *_: counts.__setitem__("frames", counts["frames"] + 1))
    server = BlockingOSCUDPServer(("127.0.0.1", port), dispatcher)
    server.max_packet_size = 65535
    server.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
    server.timeout = 0.2
    stop, started, rss = _Stop(), time.monotonic(), {}
    while not stop.now:
        server.handle_request()
        if "warm" not in rss and time.monotonic() - started > WARM_UP_SECONDS:
            rss["warm"] = rss_mb()
    rss["end"] = rss_mb()
    server.server_close()
    report.write_text(json.dumps({**counts, "rss": rss}))


# ----------------------------------------------------------------------- the Blender receiver

def blender(port: int, report: Path) -> None:
    os.environ.setdefault("BLENDER_USER_RESOURCES", tempfile.mkdtemp(prefix="facemocap-soak-"))
    sys.path.insert(0, str(REPO))
    import bpy
    import numpy as np

    import blender_receiver
    from blender_receiver import session
    from bridge.state import ARKIT_NAMES

    bpy.ops.wm.read_factory_settings(use_empty=True)
    blender_receiver.register()
    scene = bpy.context.scene
    bpy.ops.mesh.primitive_uv_sphere_add()
    mesh = bpy.context.object
    mesh.shape_key_add(name="Basis")
    for name in ARKIT_NAMES:
        mesh.shape_key_add(name=name).value = 0.0
    arm_data = bpy.data.armatures.new("Rig")
    armature = bpy.data.objects.new("Rig", arm_data)
    scene.collection.objects.link(armature)
    bpy.context.view_layer.objects.active = armature
    bpy.ops.object.mode_set(mode="EDIT")
    for i, name in enumerate(("Neck", "Head", "LeftEye", "RightEye")):
        bone = arm_data.edit_bones.new(name)
        bone.head, bone.tail = (0, 0, 1.4 + 0.1 * i), (0, 0, 1.5 + 0.1 * i)
    bpy.ops.object.mode_set(mode="OBJECT")
    settings = scene.facemocap
    settings.meshes.add().object = mesh
    settings.armature = armature
    settings.port = port
    error = session.start(scene)
    if error:
        raise SystemExit(error)

    stop, started, rss, nan_applied = _Stop(), time.monotonic(), {}, 0
    keys = mesh.data.shape_keys.key_blocks
    values = np.empty(len(keys), np.float32)
    while not stop.now:
        if session.pump(scene) is not None:
            keys.foreach_get("value", values)
            rotations = [c for pb in armature.pose.bones for c in pb.rotation_quaternion]
            nan_applied += int(not np.isfinite(values).all()) + int(not np.isfinite(rotations).all())
        if "warm" not in rss and time.monotonic() - started > WARM_UP_SECONDS:
            rss["warm"] = rss_mb()
        time.sleep(session.TICK_SECONDS)
    while session.pump(scene) is not None:   # whatever arrived after the last tick
        pass
    stats = session.STATE.receiver.stats
    rss["end"] = rss_mb()
    report.write_text(json.dumps({
        "datagrams": stats.datagrams, "frames": stats.frames, "applied": session.STATE.applied,
        "dropped": stats.dropped, "overflowed": session.STATE.receiver.overflowed,
        "apply_errors": session.STATE.apply_errors, "nan_applied": nan_applied, "rss": rss}))
    session.stop(scene)


# ----------------------------------------------------------------------- the run

def tracker_command() -> list[str]:
    script = Path(sys.executable).with_name("facemocap-osc")
    return [str(script)] if script.exists() else [sys.executable, "-m", "bridge"]


def soak(minutes: float, fps: float, replay: str | None) -> int:
    seconds = minutes * 60.0
    work = Path(tempfile.mkdtemp(prefix="facemocap-soak-"))
    ports = {"counter": free_port(), "blender": free_port()}
    children = {
        name: subprocess.Popen([sys.executable, __file__, f"--{name}", str(port), "--report", str(work / name)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        for name, port in ports.items()
    }
    time.sleep(8.0)   # bpy takes a few seconds to start; the counter is ready at once
    source = ["--replay", replay] if replay else ["--demo", "--fps", str(fps)]
    tracker = subprocess.Popen(
        [*tracker_command(), *source, "--duration", str(seconds), "--control-port", "0", "--quiet",
         "--target", f"vmc@127.0.0.1:{ports['counter']}", "--target", f"vmc@127.0.0.1:{ports['blender']}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    tracker_rss = {}
    started = time.monotonic()
    print(f"soak: {minutes:g} min of {'replay ' + replay if replay else f'demo at {fps:g} fps'} "
          f"into a python-osc counter and the Blender receiver ...", flush=True)
    while tracker.poll() is None:
        elapsed = time.monotonic() - started
        if "warm" not in tracker_rss and elapsed > WARM_UP_SECONDS:
            tracker_rss["warm"] = rss_mb(tracker.pid)
        if "warm" in tracker_rss and elapsed < seconds - 3:   # the last sample before it winds down
            tracker_rss["end"] = rss_mb(tracker.pid)
        time.sleep(1.0)
    tracker_err = tracker.stderr.read()
    time.sleep(1.0)   # let the last datagrams land
    for child in children.values():
        child.send_signal(signal.SIGTERM)
    reports = {}
    for name, child in children.items():
        _, err = child.communicate(timeout=60)
        if child.returncode != 0 or not (work / name).exists():
            print(f"soak: the {name} process failed:\n{err}", file=sys.stderr)
            return 1
        reports[name] = json.loads((work / name).read_text())
    return _print(tracker.returncode, tracker_err, tracker_rss, reports)


def _sent_per_target(stderr: str) -> list[int]:
    done = [line for line in stderr.splitlines() if "done:" in line]
    if not done:
        return []
    per_target = re.search(r"\(([^)]*)\)", done[-1].split("datagrams sent", 1)[1])
    if per_target:
        return [int(n) for n in re.findall(r":\s+(\d+)", per_target.group(1))]  # "label: N", not ports
    return [int(re.search(r"(\d+) datagrams sent", done[-1]).group(1))]


def _print(code: int, stderr: str, tracker_rss: dict, reports: dict) -> int:
    sent = _sent_per_target(stderr)
    latency = re.search(r"latency p50 ([\d.]+) ms, p99 ([\d.]+) ms", stderr)
    frames = re.search(r"done: (\d+) frames", stderr)
    counter, blender_ = reports["counter"], reports["blender"]
    rows = [
        ("tracker exit code", f"{code}"),
        ("frames sent", frames.group(1) if frames else "?"),
        ("datagrams sent (counter / blender)", " / ".join(map(str, sent)) or "?"),
        ("datagrams received, counter", f"{counter['datagrams']}  loss {(sent[0] - counter['datagrams']) if sent else '?'}"),
        ("datagrams received, blender", f"{blender_['datagrams']}  loss {(sent[-1] - blender_['datagrams']) if sent else '?'}"),
        ("frames: counter / blender parsed / blender applied",
         f"{counter['frames']} / {blender_['frames']} / {blender_['applied']}"),
        ("blender: dropped malformed / mailbox overflow / apply errors / NaN applied",
         f"{blender_['dropped']} / {blender_['overflowed']} / {blender_['apply_errors']} / {blender_['nan_applied']}"),
        ("capture -> send latency, tracker", f"p50 {latency.group(1)} ms, p99 {latency.group(2)} ms" if latency else "?"),
    ]
    for name, rss in (("tracker", tracker_rss), ("counter", counter["rss"]), ("blender", blender_["rss"])):
        warm, end = rss.get("warm"), rss.get("end")
        growth = f"{end - warm:+.1f} MB" if warm and end else "?"
        ok = "" if warm is None or end is None else ("  ok" if abs(end - warm) <= RSS_LIMIT_MB else "  OVER")
        rows.append((f"RSS {name}, after warm-up -> end",
                     f"{warm:.1f} -> {end:.1f} MB ({growth}){ok}" if warm and end else "?"))
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    return code


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--fps", type=float, default=60.0)
    parser.add_argument("--replay", metavar="TAKE", help="replay a take instead of the demo face")
    parser.add_argument("--counter", type=int, help=argparse.SUPPRESS)   # child process modes
    parser.add_argument("--blender", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--report", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.counter:
        counter(args.counter, args.report)
        return 0
    if args.blender:
        blender(args.blender, args.report)
        return 0
    return soak(args.minutes, args.fps, args.replay)


if __name__ == "__main__":
    sys.exit(main())
