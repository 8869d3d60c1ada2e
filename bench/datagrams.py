"""Datagram-size benchmark: what a datagram limit costs, per shipped preset.

For each shipped preset (the landmarks preset is one plain message per chunk, so its
limit changes nothing and it is left out), at each limit (default 1200, the VMC
reference sender's and our default; 1452, the IPv6-unfragmented limit; 1472, the
IPv4 one and our old default as the baseline):
  datagrams per frame, the largest one, bytes per frame on the wire (with 28 bytes
  of IPv4 + UDP header per datagram), and the send-side cost per frame, median of
  --repeat runs of --frames frames: encode (preset encoder) and send (bridge.send.
  UdpTarget to a bound loopback socket that a thread drains, so nothing is refused).
Ratios are against the 1472 row of the same preset, measured in the same run,
interleaved (every limit once per repeat, the order reversed every other repeat).

    python bench/datagrams.py [--frames N] [--repeat N]
"""

from __future__ import annotations

import argparse
import dataclasses
import socket
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bridge.demo_face import demo_landmarks  # noqa: E402
from bridge.outputs import load_preset, shipped_presets  # noqa: E402
from bridge.send import UdpTarget  # noqa: E402
from bridge.solve import Solver  # noqa: E402

LIMITS = (1200, 1452, 1472)
BASELINE = 1472
HEADERS = 28   # IPv4 (20) + UDP (8)


def demo_states(n: int) -> list:
    solver = Solver(640, 480)
    return [solver.solve(demo_landmarks(i / 30), (640, 480), time=i / 30) for i in range(n)]


def drain(sock: socket.socket, stop: threading.Event) -> None:
    sock.settimeout(0.05)
    while not stop.is_set():
        try:
            sock.recv(65535)
        except (TimeoutError, socket.timeout):
            pass
        except OSError:
            return


def run(preset, limit: int, states, port: int) -> tuple[float, float, list[bytes]]:
    encoder = dataclasses.replace(preset, max_packet=limit).encoder()
    frame = None
    with UdpTarget("127.0.0.1", port) as target:
        encode = send = 0.0
        for i, state in enumerate(states):
            t0 = time.perf_counter()
            frame = encoder.encode(state, time=i / 30, tracking=True)
            t1 = time.perf_counter()
            target.send(frame)
            t2 = time.perf_counter()
            encode += t1 - t0
            send += t2 - t1
        if target.failed_datagrams:
            raise SystemExit(f"{target.failed_datagrams} datagrams failed: {dict(target.errors)}")
    n = len(states)
    return encode / n * 1e6, send / n * 1e6, frame


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    states = demo_states(args.frames)
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
    sink.bind(("127.0.0.1", 0))
    stop = threading.Event()
    thread = threading.Thread(target=drain, args=(sink, stop), daemon=True)
    thread.start()
    port = sink.getsockname()[1]
    print(f"{args.frames} demo frames x {args.repeat} repeats; encode / send in microseconds per frame "
          f"(median of repeats); ratios against {BASELINE} in the same run")
    print(f"{'preset':<16}{'limit':>6}{'dgrams':>8}{'largest':>9}{'wire B':>8}{'encode':>9}{'send':>8}"
          f"{'total':>8}{'x' + str(BASELINE):>8}")
    for name in shipped_presets():
        preset = load_preset(name)
        if preset.landmarks:
            continue
        times = {limit: [] for limit in LIMITS}
        frames = {}
        for r in range(args.repeat):
            for limit in (LIMITS if r % 2 == 0 else LIMITS[::-1]):
                e, s, frame = run(preset, limit, states, port)
                times[limit].append((e, s))
                frames[limit] = frame
        base = statistics.median(e + s for e, s in times[BASELINE])
        for limit in LIMITS:
            e = statistics.median(x for x, _ in times[limit])
            s = statistics.median(y for _, y in times[limit])
            total = statistics.median(x + y for x, y in times[limit])
            frame = frames[limit]
            wire = sum(len(d) + HEADERS for d in frame)
            print(f"{name:<16}{limit:>6}{len(frame):>8}{max(map(len, frame)):>9}{wire:>8}{e:>9.1f}{s:>8.1f}"
                  f"{total:>8.1f}{total / base:>8.2f}")
    stop.set()
    thread.join()
    sink.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
