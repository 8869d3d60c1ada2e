"""Throughput benchmark: how much the bridge costs on top of tracking.

Measured in one run on a shared video (default ../shared/data/video/liveportrait_d3.mp4):
  (a) decode + Face Mesh only, one thread: the baseline;
  (b) the full pipeline as `facemocap-osc --video ... --fast` runs it: reader
      thread decoding ahead, Face Mesh, solve, filter, VMC encode, send to a
      loopback UDP socket that a thread drains;
  (c) the bridge cost per frame (solve -> shape -> encode -> send) on one core,
      over the same clip's landmarks, median and p95 in ms, with the solver's
      share.
Prints (b)/(a); targets: (b)/(a) >= 0.90, bridge cost <= 0.5 ms median.

    python bench/throughput.py [VIDEO] [--repeat N]
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DEFAULT_VIDEO = ROOT.parent / "shared" / "data" / "video" / "liveportrait_d3.mp4"


def baseline(video: Path) -> tuple[float, list]:
    """(a): decode then Face Mesh, sequentially, in this thread."""
    import cv2
    from bridge.sources import Frame
    from bridge.tracking import open_tracker

    tracker = open_tracker("facemesh")
    cap = cv2.VideoCapture(str(video))
    found = []
    start = time.perf_counter()
    index = 0
    while True:
        ok, image = cap.read()
        if not ok:
            break
        h, w = image.shape[:2]
        tracked = tracker.track(Frame(index=index, time=index / 30.0, image=image, width=w, height=h))
        found.append((tracked.landmarks, w, h))
        index += 1
    elapsed = time.perf_counter() - start
    cap.release()
    tracker.close()
    return index / elapsed, found


class Drain:
    """A loopback UDP receiver that counts datagrams on a thread."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.count = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stop.is_set():
            try:
                self.sock.recv(65535)
                self.count += 1
            except OSError:
                pass

    def close(self):
        self.stop.set()
        self.thread.join()
        self.sock.close()


def full_pipeline(video: Path, port: int) -> float:
    """(b): the real run loop, as the CLI wires it."""
    from bridge.pipeline import run
    from bridge.send import UdpTarget
    from bridge.shape import Shaper
    from bridge.sources import open_video
    from bridge.tracking import open_tracker
    from bridge.vmc import VmcEncoder

    source = open_video(str(video), paced=False)
    tracker = open_tracker("facemesh")
    target = UdpTarget("127.0.0.1", port)
    start = time.perf_counter()
    stats = run(source, tracker, Shaper(), VmcEncoder(), target, use_model_blendshapes=False)
    elapsed = time.perf_counter() - start
    source.close()
    tracker.close()
    target.close()
    return stats.frames / elapsed


def bridge_cost(found: list, port: int, loops: int) -> tuple[np.ndarray, np.ndarray]:
    """(c): per-frame ms of solve -> shape -> encode -> send, and of solve alone."""
    from bridge.send import UdpTarget
    from bridge.shape import Shaper
    from bridge.solve import Solver
    from bridge.vmc import VmcEncoder

    solver, shaper, encoder = Solver(), Shaper(), VmcEncoder()
    target = UdpTarget("127.0.0.1", port)
    total, solve_only = [], []
    t = 0.0
    for _ in range(loops):
        for landmarks, w, h in found:
            start = time.perf_counter()
            state = solver.solve(landmarks, (w, h)) if landmarks is not None else None
            solved = time.perf_counter()
            shaped, tracking = shaper.update(t, state)
            target.send(encoder.encode(shaped, time=t, tracking=tracking))
            end = time.perf_counter()
            total.append(end - start)
            solve_only.append(solved - start)
            t += 1 / 30.0
    target.close()
    return np.array(total) * 1000.0, np.array(solve_only) * 1000.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("video", nargs="?", default=str(DEFAULT_VIDEO))
    parser.add_argument("--repeat", type=int, default=3, help="runs of (a) and (b), alternated; best of each")
    args = parser.parse_args()
    video = Path(args.video)
    if not video.exists():
        print(f"throughput: video not found: {video} (the shared test data lives in ../shared/data)", file=sys.stderr)
        return 2

    drain = Drain()
    baseline(video)  # warm-up: the first MediaPipe run on a machine pays for page cache and lazy init
    rates_a, rates_b = [], []
    found = None
    for _ in range(args.repeat):
        rate, found = baseline(video)
        rates_a.append(rate)
        rates_b.append(full_pipeline(video, drain.port))
    a, b = max(rates_a), max(rates_b)
    faces = sum(lm is not None for lm, _, _ in found)

    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core for (c)
    total, solve_only = bridge_cost(found, drain.port, loops=5)
    time.sleep(0.3)
    drain.close()

    print(f"video: {video.name}, {len(found)} frames, face in {faces}; {os.cpu_count()} cores; best of {args.repeat}")
    print(f"(a) decode + Face Mesh only       : {a:7.1f} frames/s   (runs: {', '.join(f'{r:.1f}' for r in rates_a)})")
    print(f"(b) full pipeline to loopback UDP : {b:7.1f} frames/s   (runs: {', '.join(f'{r:.1f}' for r in rates_b)})")
    print(f"(b)/(a)                           : {b / a:7.3f}   (target >= 0.90)")
    print(f"(c) bridge cost per frame, 1 core : median {np.median(total):.3f} ms, p95 {np.percentile(total, 95):.3f} ms"
          f"   (target median <= 0.5 ms)")
    print(f"    of which solve                : median {np.median(solve_only):.3f} ms, p95 {np.percentile(solve_only, 95):.3f} ms")
    print(f"    datagrams received on loopback: {drain.count}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
