"""Throughput benchmark: what tracking costs on each backend, and what the bridge adds.

Measured in one run on one clip (default ../shared/data/video/liveportrait_d3.mp4),
the same frames for every row:
  (a) bare: decode + tracker, sequentially in one thread (bridge.tracking's tracker:
      FaceLandmarker in VIDEO mode; the legacy Face Mesh when the installed MediaPipe
      has it, else "not installed");
  (a') reader thread + tracker: the CLI's video source (decoding ahead on its thread)
      feeding the tracker, no bridge: splits (b)/(a) into the thread's and the bridge's part;
  (b) full: the pipeline as `facemocap-osc --video CLIP --fast --backend B --quiet` runs
      it (bridge.pipeline.run in-process): reader thread decoding ahead, tracker, solve,
      filter, the `vmc` preset's encoder, send to a loopback UDP socket that another
      process drains (so the receiver's CPU is not counted). The landmarker sends the
      model's blendshapes, as the CLI does by default;
  (c) the bridge cost per frame (solve -> shape -> encode -> send) on one core over the
      landmarks (a) found, median and p95 in ms, with the solver's share.
For (a), (a') and (b): frames/s, process CPU ms per frame (time.process_time(): every
thread, MediaPipe's graph threads and the reader included), split into the measuring
thread / MediaPipe's graph threads / the rest (decoder threads, reader thread; from
/proc, Linux), wall ms per frame, and "cores" = CPU / wall. Ratios: full/bare per
backend (target >= 0.90) and the landmarker's CPU cost relative to Face Mesh.

Fairness: the tracker is built and the first frame decoded before the clock starts
(bridge.sources.VideoSource decodes it in its constructor), for (a) and (b) alike;
each timed run has a fresh tracker, so each pays the same first-frame detector run.
One untimed warm-up run per backend goes first. Runs are interleaved (bare and full
per backend, then the next repeat, the order reversed every other repeat) and the
best of N is kept: each row shows its fastest run's figures (all from that run), with
every run's frames/s and CPU range beside them, and ratios are given both best/best and
as the median over repeats of runs made side by side ("paired"). The header says how
busy the machine was (other jobs, host steal): on a shared 2-core machine a squeezed
run gets about one core, so CPU = wall and the reader thread's overlap is lost.

--explore adds rows that build FaceLandmarker directly with mediapipe.tasks.python.vision
(same decode loop, same frames), to see what makes the landmarker cheaper: blendshapes
/ transformation matrix off, min_face_presence_confidence / min_tracking_confidence
(and how often the face detector re-runs: in VIDEO mode with num_faces=1 it runs only
on a frame whose previous frame gave no face), IMAGE mode (detector on every frame),
BaseOptions.delegate, XNNPACK thread count (mediapipe 0.10.x only, through the options
proto), a downscaled input, one CPU core. Each row also reports the mean landmark
difference (px, x/y) from the reference row's.

    python bench/throughput.py [VIDEO] [--repeat N] [--frames N] [--explore] [--model PATH]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DEFAULT_VIDEO = ROOT.parent / "shared" / "data" / "video" / "liveportrait_d3.mp4"
DEFAULT_MODEL = ROOT.parent / "shared" / "data" / "models" / "face_landmarker.task"
BACKENDS = ("landmarker", "facemesh")


def log(message: str) -> None:
    print(f"throughput: {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- measuring


MEDIAPIPE_THREADS = ("mediapipe", "drishti")   # graph threads' names: 0.10.x, 1.x


def _task_cpu() -> dict[int, tuple[str, float]] | None:
    """CPU seconds of each live thread of this process, by thread id (Linux /proc; else None)."""
    try:
        tick = os.sysconf("SC_CLK_TCK")
        tasks = os.listdir("/proc/self/task")
    except (OSError, ValueError, AttributeError):
        return None
    found = {}
    for tid in tasks:
        try:
            with open(f"/proc/self/task/{tid}/stat") as fh:
                text = fh.read()
        except OSError:
            continue   # ended meanwhile
        comm = text[text.index("(") + 1:text.rindex(")")]
        fields = text[text.rindex(")") + 2:].split()
        found[int(tid)] = (comm, (int(fields[11]) + int(fields[12])) / tick)
    return found


class Meter:
    """Wall and process CPU (time.process_time(): every thread) from start() to stop(),
    split into this thread (time.thread_time()), MediaPipe's graph threads (/proc, 10 ms
    ticks) and the rest (decoder, reader thread, threads that ended: the remainder)."""

    def start(self) -> "Meter":
        self._tasks = _task_cpu()
        self._wall, self._cpu, self._main = time.perf_counter(), time.process_time(), time.thread_time()
        return self

    def stop(self) -> dict:
        wall, cpu, main = time.perf_counter(), time.process_time(), time.thread_time()
        tasks = _task_cpu()
        mediapipe = None
        if self._tasks is not None and tasks is not None:
            mediapipe = sum(seconds - self._tasks.get(tid, (comm, 0.0))[1]
                            for tid, (comm, seconds) in tasks.items() if comm.startswith(MEDIAPIPE_THREADS))
        return {"wall": wall - self._wall, "cpu": cpu - self._cpu, "main": main - self._main,
                "mediapipe": mediapipe}


@dataclass
class Run:
    frames: int
    wall: float                 # s
    cpu: float                  # s, all threads
    found: list = field(default_factory=list, repr=False)   # per frame: (landmarks|None, blendshapes|None, w, h)
    parts: dict = field(default_factory=dict)               # name -> total wall s (explore rows)
    main: float | None = None        # s CPU of the measuring thread
    mediapipe: float | None = None   # s CPU of MediaPipe's graph threads

    @classmethod
    def measured(cls, frames: int, meter: dict, found=None, parts=None) -> "Run":
        return cls(frames, meter["wall"], meter["cpu"], found or [], parts or {}, meter["main"],
                   meter["mediapipe"])

    def thread_ms(self, which: str) -> float | None:
        """CPU ms per frame of "main", "mediapipe" or "other" threads."""
        if which == "other":
            if self.main is None or self.mediapipe is None:
                return None
            seconds = max(0.0, self.cpu - self.main - self.mediapipe)
        else:
            seconds = getattr(self, which)
        return None if seconds is None else seconds / self.frames * 1000.0

    @property
    def fps(self) -> float:
        return self.frames / self.wall

    @property
    def wall_ms(self) -> float:
        return self.wall / self.frames * 1000.0

    @property
    def cpu_ms(self) -> float:
        return self.cpu / self.frames * 1000.0

    @property
    def cores(self) -> float:
        return self.cpu / self.wall

    @property
    def faces(self) -> int:
        return sum(lm is not None for lm, *_ in self.found)

    @property
    def detector_runs(self) -> int:
        """Frames on which the face detector ran in a tracking mode: the first, and each
        one after a frame without a face (the graphs skip detection while they track)."""
        runs, previous = 0, None
        for lm, *_ in self.found:
            if previous is None:
                runs += 1
            previous = lm
        return runs

    def part_ms(self, name: str) -> float | None:
        return self.parts[name] / self.frames * 1000.0 if name in self.parts else None


@dataclass
class Best:
    """Best of N runs: the figures of the fastest run (highest frames/s), all from that one
    run; cpu_range gives every run's CPU per frame (contention moves it both ways: with a
    core to spare MediaPipe's threads spend more, squeezed onto one core less)."""
    runs: list

    @property
    def fastest(self) -> Run:
        return max(self.runs, key=lambda r: r.fps)

    @property
    def cpu_range(self) -> str:
        values = [r.cpu_ms for r in self.runs]
        return f"{min(values):.2f}-{max(values):.2f}"

    def __getattr__(self, name: str):
        # fps, wall_ms, cpu_ms, cores, part_ms(), thread_ms() ...: the fastest run's
        if name.startswith("__") or name == "runs":
            raise AttributeError(name)
        return getattr(self.fastest, name)


def machine_cpu() -> tuple[float, float] | None:
    """(busy, steal) CPU seconds of the whole machine so far, from /proc/stat (Linux)."""
    try:
        with open("/proc/stat") as fh:
            fields = [int(x) for x in fh.readline().split()[1:]]
        tick = os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, AttributeError):
        return None
    user, nice, system, idle, iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return (user + nice + system + irq + softirq + steal) / tick, steal / tick


# --------------------------------------------------------------------------- the receiver


DRAIN_CODE = r"""
import select, socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
try:
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
except OSError:
    pass
s.bind(("127.0.0.1", 0))
s.setblocking(False)
print(s.getsockname()[1], flush=True)
count = 0
while True:
    ready, _, _ = select.select([s, sys.stdin], [], [])
    if s in ready:
        while True:
            try:
                s.recv(65535)
                count += 1
            except BlockingIOError:
                break
    if sys.stdin in ready and not sys.stdin.readline():
        break
print(count, flush=True)
"""


class Drain:
    """A loopback UDP receiver in its own process (its CPU is not the pipeline's)."""

    def __init__(self):
        self.proc = subprocess.Popen([sys.executable, "-c", DRAIN_CODE], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        self.port = int(self.proc.stdout.readline())

    def close(self) -> int:
        time.sleep(0.2)
        self.proc.stdin.close()
        count = int(self.proc.stdout.readline() or 0)
        self.proc.wait(timeout=5)
        return count


# --------------------------------------------------------------------------- quieting MediaPipe


@contextlib.contextmanager
def swallowed_stderr():
    """Capture the stderr file descriptor (MediaPipe's native logging, GPU stack traces)
    and drop it: the explore rows report a failure in one line from the exception."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)


@contextlib.contextmanager
def one_core():
    """Run the calling thread, and threads it starts, on one CPU (Linux)."""
    if not hasattr(os, "sched_setaffinity"):
        yield False
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {sorted(before)[0]})
    try:
        yield True
    finally:
        os.sched_setaffinity(0, before)


# --------------------------------------------------------------------------- (a) and (b)


def open_capture(video: Path):
    import cv2
    cap = cv2.VideoCapture(str(video))
    fps = cap.get(cv2.CAP_PROP_FPS)
    return cap, (fps if fps and 1 <= fps <= 1000 else 30.0)


def bare(backend: str, video: Path, limit: int | None, model: Path) -> Run:
    """(a): decode then track, sequentially, in this thread, with bridge.tracking's tracker."""
    from bridge.sources import Frame
    from bridge.tracking import open_tracker

    tracker = open_tracker(backend, model_path=str(model) if backend == "landmarker" else None)
    cap, fps = open_capture(video)
    ok, image = cap.read()          # VideoSource decodes the first frame before the run, too
    found = []
    index = 0
    meter = Meter().start()
    while ok and (limit is None or index < limit):
        h, w = image.shape[:2]
        tracked = tracker.track(Frame(index, index / fps, image, width=w, height=h))
        found.append((tracked.landmarks, tracked.blendshapes, w, h))
        index += 1
        if limit is not None and index >= limit:
            break
        ok, image = cap.read()
    measured = meter.stop()
    cap.release()
    tracker.close()
    return Run.measured(index, measured, found)


def threaded(backend: str, video: Path, limit: int | None, model: Path) -> Run:
    """(a') the CLI's source (reader thread decoding ahead) + tracker, no bridge: between
    (a) and (b), it tells the reader thread's share of (b)/(a) from the bridge's."""
    from bridge.sources import open_video
    from bridge.tracking import open_tracker

    source = open_video(str(video), paced=False)
    tracker = open_tracker(backend, model_path=str(model) if backend == "landmarker" else None,
                           static=source.static)
    frames = 0
    meter = Meter().start()
    for frame in source:
        tracker.track(frame)
        frames += 1
        if limit is not None and frames >= limit:
            break
    measured = meter.stop()
    source.close()
    tracker.close()
    return Run.measured(frames, measured)


def full(backend: str, video: Path, limit: int | None, model: Path, port: int) -> Run:
    """(b): bridge.pipeline.run wired as the CLI wires `--video CLIP --fast --backend B --quiet`."""
    from bridge.outputs import load_preset
    from bridge.pipeline import Limits, Output, StatusLine, run
    from bridge.send import UdpTarget
    from bridge.shape import ShapeOptions, Shaper
    from bridge.sources import open_video
    from bridge.tracking import open_tracker

    preset = load_preset("vmc")
    target = UdpTarget("127.0.0.1", port)
    outputs = [Output(preset.encoder(), target, label=f"vmc@{target.address}", preset=preset)]
    source = open_video(str(video), paced=False)
    tracker = open_tracker(backend, model_path=str(model) if backend == "landmarker" else None,
                           static=source.static)
    shaper = Shaper(ShapeOptions())
    # The CLI's default, --blendshapes fused (the geometric values alone on Face Mesh).
    meter = Meter().start()
    stats = run(source, tracker, shaper, outputs=outputs, blendshapes="fused",
                limits=Limits(frames=limit), status=StatusLine(enabled=False))
    measured = meter.stop()
    source.close()
    tracker.close()
    target.close()
    return Run.measured(stats.frames, measured)


# --------------------------------------------------------------------------- (c)


def bridge_cost(found: list, port: int, loops: int, mode: str) -> tuple[np.ndarray, np.ndarray]:
    """(c): per-frame ms of solve (+ fuse with the model's scores, in mode "fused") ->
    shape -> encode -> send, and of solve alone."""
    from bridge.outputs import load_preset
    from bridge.send import UdpTarget
    from bridge.shape import Shaper
    from bridge.solve import Solver

    solver, shaper, encoder = Solver(blendshapes=mode), Shaper(), load_preset("vmc").encoder()
    target = UdpTarget("127.0.0.1", port)
    total, solve_only = [], []
    t = 0.0
    for _ in range(loops):
        for landmarks, blendshapes, w, h in found:
            start = time.perf_counter()
            state = None
            if landmarks is not None:
                state = solver.solve(landmarks, (w, h), time=t, scores=blendshapes)
            solved = time.perf_counter()
            shaped, tracking = shaper.update(t, state)
            target.send(encoder.encode(shaped, time=t, tracking=tracking,
                                       calibration_state=shaper.calibrator.vmc_state))
            end = time.perf_counter()
            total.append(end - start)
            solve_only.append(solved - start)
            t += 1 / 30.0
    target.close()
    return np.array(total) * 1000.0, np.array(solve_only) * 1000.0


# --------------------------------------------------------------------------- --explore


@dataclass
class Variant:
    name: str
    options: dict = field(default_factory=dict)   # FaceLandmarkerOptions keywords
    delegate: object = None                        # a BaseOptions.Delegate member
    threads: int | None = None                     # XNNPACK num_threads (0.10.x proto)
    image_mode: bool = False                       # IMAGE running mode: detector every frame
    scale: float = 1.0                             # downscale the frame before the landmarker
    one_core: bool = False
    error: str | None = None                       # why it cannot run here (set on failure)


def _base_options(variant: Variant, model: bytes):
    from mediapipe.tasks.python import BaseOptions

    if variant.threads is None:
        return BaseOptions(model_asset_buffer=model, delegate=variant.delegate)

    class ThreadedBaseOptions(BaseOptions):
        """mediapipe 0.10.x: the options become a proto, whose acceleration can name
        XNNPACK with a thread count (the Python dataclass has no field for it)."""
        def to_pb2(self):
            pb = super().to_pb2()
            pb.acceleration.xnnpack.num_threads = variant.threads
            return pb

    return ThreadedBaseOptions(model_asset_buffer=model)


def explore_variants() -> list[Variant]:
    from mediapipe.tasks.python import BaseOptions

    proto_options = hasattr(BaseOptions, "to_pb2")
    variants = [
        Variant("ref: blendshapes + matrix (as bridge)"),
        Variant("no matrix", {"output_facial_transformation_matrixes": False}),
        Variant("no blendshapes", {"output_face_blendshapes": False}),
        Variant("no blendshapes, no matrix", {"output_face_blendshapes": False,
                                              "output_facial_transformation_matrixes": False}),
        Variant("min_face_presence 0.3", {"min_face_presence_confidence": 0.3}),
        Variant("min_face_presence 0.9", {"min_face_presence_confidence": 0.9}),
        Variant("min_tracking 0.9", {"min_tracking_confidence": 0.9}),
        Variant("IMAGE mode (detector every frame)", image_mode=True),
    ]
    for member in BaseOptions.Delegate:
        variants.append(Variant(f"delegate={member.name}", delegate=member))
    for n in (1, 2):
        v = Variant(f"XNNPACK num_threads={n}", threads=n)
        if not proto_options:
            v.error = "not exposed by this mediapipe's Python API"
        variants.append(v)
    variants += [
        Variant("input scaled 0.5 (INTER_AREA)", scale=0.5),
        Variant("one CPU core (affinity)", one_core=True),
    ]
    return variants


def explore_run(variant: Variant, video: Path, limit: int | None, model: bytes) -> Run | None:
    """Decode + FaceLandmarker built directly; the loop mirrors the bridge's tracker."""
    import cv2
    import mediapipe as mp
    from mediapipe.tasks.python import vision

    options = dict(num_faces=1, output_face_blendshapes=True, output_facial_transformation_matrixes=True)
    options.update(variant.options)
    mode = vision.RunningMode.IMAGE if variant.image_mode else vision.RunningMode.VIDEO
    with contextlib.ExitStack() as stack:
        if variant.one_core and not stack.enter_context(one_core()):
            variant.error = "no sched_setaffinity here"
            return None
        stack.enter_context(swallowed_stderr())
        try:
            landmarker = vision.FaceLandmarker.create_from_options(vision.FaceLandmarkerOptions(
                base_options=_base_options(variant, model), running_mode=mode, **options))
        except Exception as exc:   # GPU without a GPU, an unsupported option
            text = " ".join(str(exc).split())
            if "cannot be created:" in text:   # "Service kGpuService, required by node <long name>, ..."
                text = "kGpuService cannot be created:" + text.split("cannot be created:", 1)[1]
            variant.error = f"fails to start: {text[:140]}{'…' if len(text) > 140 else ''}"
            return None
        cap, fps = open_capture(video)
        ok, image = cap.read()
        found = []
        decode = prep = detect = post = 0.0
        index = 0
        scale = variant.scale
        meter = Meter().start()
        while ok and (limit is None or index < limit):
            t0 = time.perf_counter()
            h, w = image.shape[:2]
            small = image if scale == 1.0 else cv2.resize(image, (round(w * scale), round(h * scale)),
                                                        interpolation=cv2.INTER_AREA)
            mp_image = mp.Image(image_format=mp.ImageFormat.SRGB, data=cv2.cvtColor(small, cv2.COLOR_BGR2RGB))
            t1 = time.perf_counter()
            if variant.image_mode:
                result = landmarker.detect(mp_image)
            else:
                result = landmarker.detect_for_video(mp_image, int(round(index / fps * 1000.0)))
            t2 = time.perf_counter()
            landmarks = blendshapes = None
            if result.face_landmarks:
                landmarks = np.array([(p.x, p.y, p.z) for p in result.face_landmarks[0]], dtype=np.float32)
                landmarks *= np.array([w, h, w], dtype=np.float32)
                if result.face_blendshapes:
                    blendshapes = {c.category_name: float(c.score) for c in result.face_blendshapes[0]
                                   if c.category_name != "_neutral"}
                if result.facial_transformation_matrixes:
                    np.asarray(result.facial_transformation_matrixes[0], dtype=np.float32).reshape(4, 4)
            found.append((landmarks, blendshapes, w, h))
            index += 1
            t3 = time.perf_counter()
            prep += t1 - t0
            detect += t2 - t1
            post += t3 - t2
            if limit is not None and index >= limit:
                break
            ok, image = cap.read()
            decode += time.perf_counter() - t3
        measured = meter.stop()
        cap.release()
        landmarker.close()
    return Run.measured(index, measured, found, {"decode": decode, "prep": prep, "detect": detect, "post": post})


def landmark_difference(run: Run, reference: Run) -> float | None:
    """Mean x/y distance in px between two runs' landmarks, over frames where both have a face."""
    diffs = [np.linalg.norm(a[0][:, :2] - b[0][:, :2], axis=1).mean()
             for a, b in zip(run.found, reference.found) if a[0] is not None and b[0] is not None]
    return float(np.mean(diffs)) if diffs else None


# --------------------------------------------------------------------------- report


def versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    import cv2

    def ver(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "?"
    return (f"python {platform.python_version()}, mediapipe {ver('mediapipe')}, numpy {np.__version__}, "
            f"opencv {cv2.__version__}; os.cpu_count() {os.cpu_count()}; {platform.machine()} {platform.system()}")


def load() -> str:
    try:
        return "/".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"


def fmt(value, spec: str, empty: str = "—") -> str:
    return empty if value is None else format(value, spec)


def paired(pairs: list[tuple[Run, Run]], attr: str) -> str:
    """Median [min-max] over repeats of b.attr / a.attr for each pair (a, b) run side by side."""
    ratios = sorted(getattr(b, attr) / getattr(a, attr) for a, b in pairs)
    if not ratios:
        return "—"
    return f"{float(np.median(ratios)):.2f} [{ratios[0]:.2f}-{ratios[-1]:.2f}]"


def split(b: Best) -> str:
    parts = [b.thread_ms(w) for w in ("main", "mediapipe", "other")]
    return "—" if None in parts else " / ".join(f"{x:.1f}" for x in parts)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("video", nargs="?", default=str(DEFAULT_VIDEO))
    parser.add_argument("--repeat", type=int, default=3, help="timed runs of each row, interleaved; best of N (default 3)")
    parser.add_argument("--frames", type=int, default=None, help="only the clip's first N frames (default: all)")
    parser.add_argument("--model", default=str(DEFAULT_MODEL), help="face_landmarker.task (default: %(default)s)")
    parser.add_argument("--explore", action="store_true", help="also the FaceLandmarker option rows (see above)")
    parser.add_argument("--no-warmup", action="store_true", help="skip the untimed warm-up runs")
    args = parser.parse_args()
    if args.repeat < 1 or (args.frames is not None and args.frames < 1):
        parser.error("--repeat and --frames take a positive number")
    video, model = Path(args.video), Path(args.model)
    if not video.exists():
        log(f"video not found: {video} (the shared test data lives in ../shared/data)")
        return 2
    if not model.is_file():
        log(f"model not found: {model} (give --model PATH to a face_landmarker.task)")
        return 2

    from bridge import tracking
    backends = ["landmarker"] + (["facemesh"] if tracking.facemesh_available() else [])
    load_before = load()
    machine_before, started, cpu_started = machine_cpu(), time.perf_counter(), time.process_time()
    drain = Drain()

    if not args.no_warmup:
        for backend in backends:   # first MediaPipe run: page cache, lazy init
            log(f"warm-up {backend}")
            bare(backend, video, args.frames, model)
    bares: dict[str, list[Run]] = {b: [] for b in backends}
    threads: dict[str, list[Run]] = {b: [] for b in backends}
    fulls: dict[str, list[Run]] = {b: [] for b in backends}
    for i in range(args.repeat):
        # the order alternates between repeats, so no row always runs first
        for backend in (backends if i % 2 == 0 else backends[::-1]):
            for kind in (("bare", "threaded", "full") if i % 2 == 0 else ("full", "threaded", "bare")):
                if kind == "bare":
                    bares[backend].append(bare(backend, video, args.frames, model))
                elif kind == "threaded":
                    threads[backend].append(threaded(backend, video, args.frames, model))
                else:
                    fulls[backend].append(full(backend, video, args.frames, model, drain.port))
            log(f"run {i + 1}/{args.repeat} {backend}: bare {bares[backend][-1].fps:.1f} fps, reader thread "
                f"{threads[backend][-1].fps:.1f} fps, full {fulls[backend][-1].fps:.1f} fps")
    for backend in backends:
        frames = {r.frames for r in bares[backend] + threads[backend] + fulls[backend]}
        if len(frames) != 1:
            log(f"warning: {backend} runs saw different frame counts {sorted(frames)}")

    explored: list[tuple[Variant, list]] = []   # (variant, [(ref run, variant run) per repeat])
    if args.explore:
        model_bytes = model.read_bytes()
        variants = explore_variants()
        reference = variants[0]
        pairs: dict[str, list[tuple[Run, Run]]] = {v.name: [] for v in variants}
        for i in range(args.repeat):
            # each variant runs next to its own reference run (paired: the load drifts less
            # within a pair than across a sweep); order alternates within pairs and sweeps
            for j, v in enumerate(variants if i % 2 == 0 else variants[::-1]):
                if v.error:
                    continue
                first_ref = (i + j) % 2 == 0
                ref_run = explore_run(reference, video, args.frames, model_bytes) if first_ref else None
                run_ = explore_run(v, video, args.frames, model_bytes)
                if not first_ref:
                    ref_run = explore_run(reference, video, args.frames, model_bytes)
                if run_ is not None and ref_run is not None:
                    pairs[v.name].append((ref_run, run_))
            log(f"explore run {i + 1}/{args.repeat} done")
        explored = [(v, pairs[v.name]) for v in variants]

    # (c): after the timed runs, on one core
    costs = {}
    with one_core():
        for backend in backends:
            found = bares[backend][0].found
            costs[backend] = bridge_cost(found, drain.port, loops=5,
                                         mode="fused" if backend == "landmarker" else "solver")
            if backend == "landmarker":   # the baseline beside it: the same landmarks, geometry only
                costs["landmarker geometry"] = bridge_cost(found, drain.port, loops=5, mode="solver")
    received = drain.close()
    load_after = load()
    machine_after, elapsed, own = machine_cpu(), time.perf_counter() - started, time.process_time() - cpu_started

    best_bare = {b: Best(bares[b]) for b in backends}
    best_threaded = {b: Best(threads[b]) for b in backends}
    best_full = {b: Best(fulls[b]) for b in backends}
    first = bares["landmarker"][0]
    from bridge.tracking.base import mediapipe_version
    mp_version = mediapipe_version()
    out = []
    size = f"{first.found[0][2]}x{first.found[0][3]}" if first.found else "?"
    out.append(f"**throughput** — `{video.name}`, {first.frames} frames ({size}), best of {args.repeat} "
               f"(each row: its fastest run); load avg {load_before} before, {load_after} after")
    if machine_before and machine_after:
        capacity = elapsed * (os.cpu_count() or 1)
        busy = machine_after[0] - machine_before[0]
        out.append(f"machine CPU over the {elapsed:.0f} s: {busy / capacity:.0%} busy, of which this benchmark "
                   f"{own / capacity:.0%}, other jobs {max(0.0, busy - own) / capacity:.0%}; "
                   f"steal {(machine_after[1] - machine_before[1]) / capacity:.0%}")
    out.append(f"{versions()}")
    out.append("")
    out.append("| run | frames/s | CPU ms/frame | main / mediapipe / other | wall ms/frame | cores | faces "
               "| detector runs | all runs: frames/s; CPU ms/frame |")
    out.append("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for kind, table in (("bare", best_bare), ("reader thread + tracker", best_threaded), ("full", best_full)):
        for backend in BACKENDS:
            if backend not in table:
                if kind == "bare":
                    out.append(f"| bare {backend} | not installed | | | | | | | mediapipe {mp_version} has no "
                               f"mediapipe.solutions |")
                continue
            b = table[backend]
            found = (bares[backend][0] if kind == "bare" else None)
            out.append(f"| {kind} {backend} | {b.fps:.1f} | {b.cpu_ms:.2f} | {split(b)} | {b.wall_ms:.2f} | "
                       f"{b.cores:.2f} | {found.faces if found else '—'} | {found.detector_runs if found else '—'} | "
                       f"{', '.join(f'{r.fps:.1f}' for r in b.runs)}; {b.cpu_range} |")
    out.append("")
    out.append("| ratio | best / best | paired median [range] |")
    out.append("|---|---:|---:|")
    for backend in backends:
        together = list(zip(bares[backend], fulls[backend]))
        out.append(f"| full/bare frames/s, {backend} (target >= 0.90) | "
                   f"{best_full[backend].fps / best_bare[backend].fps:.3f} | {paired(together, 'fps')} |")
    for backend in backends:
        together = list(zip(bares[backend], threads[backend]))
        out.append(f"| reader thread/bare frames/s, {backend} | "
                   f"{best_threaded[backend].fps / best_bare[backend].fps:.3f} | {paired(together, 'fps')} |")
        together = list(zip(threads[backend], fulls[backend]))
        out.append(f"| full/reader thread frames/s, {backend} (the bridge's share) | "
                   f"{best_full[backend].fps / best_threaded[backend].fps:.3f} | {paired(together, 'fps')} |")
    for backend in backends:
        together = list(zip(bares[backend], fulls[backend]))
        out.append(f"| full/bare CPU per frame, {backend} | "
                   f"{best_full[backend].cpu_ms / best_bare[backend].cpu_ms:.3f} | {paired(together, 'cpu_ms')} |")
    if "facemesh" in backends:
        lm, fm = "landmarker", "facemesh"
        for kind, table, runs in (("bare", best_bare, bares), ("full", best_full, fulls)):
            out.append(f"| landmarker/facemesh CPU per frame, {kind} | {table[lm].cpu_ms / table[fm].cpu_ms:.2f} | "
                       f"{paired(list(zip(runs[fm], runs[lm])), 'cpu_ms')} |")
        for kind, table, runs in (("bare", best_bare, bares), ("full", best_full, fulls)):
            out.append(f"| landmarker/facemesh wall per frame, {kind} | {table[lm].wall_ms / table[fm].wall_ms:.2f} | "
                       f"{paired(list(zip(runs[fm], runs[lm])), 'wall_ms')} |")
    else:
        out.append(f"| landmarker/facemesh | Face Mesh not installed (mediapipe {mp_version}) | |")
    out.append("")
    out.append("| bridge cost per frame, 1 core (targets: median <= 0.5 ms; solve + fuse median <= 0.2 ms) "
               "| median ms | p95 ms | solve median ms | solve p95 ms |")
    out.append("|---|---:|---:|---:|---:|")
    for key in costs:
        total, solve_only = costs[key]
        what = {"landmarker": "landmarker's landmarks, fused with its blendshapes (the default)",
                "landmarker geometry": "landmarker's landmarks, geometry only (--blendshapes solver)",
                "facemesh": "facemesh's landmarks (geometry)"}[key]
        out.append(f"| {what} | {np.median(total):.3f} | {np.percentile(total, 95):.3f} | "
                   f"{np.median(solve_only):.3f} | {np.percentile(solve_only, 95):.3f} |")
    if "landmarker geometry" in costs:
        fused, alone = np.median(costs["landmarker"][1]), np.median(costs["landmarker geometry"][1])
        out.append(f"\nsolve + fuse / solve alone (median, same landmarks): {fused / alone:.2f}")
    sent_frames = sum(r.frames for b in backends for r in fulls[b]) + sum(len(bares[b][0].found) * 5 for b in backends)
    out.append("")
    out.append(f"datagrams received by the loopback drain: {received} (over {sent_frames} frames sent)")

    if explored:
        ref_runs = [a for _, pairs_ in explored for a, _ in pairs_]
        ref = ref_runs[0] if ref_runs else None
        ref_best = Best(ref_runs) if ref_runs else None
        out.append("")
        out.append(f"**explore: FaceLandmarker built directly** (decode + landmarker, one thread; each row run next "
                   f"to a ref run, {args.repeat}x; \"vs ref\" = median [range] of row/ref over those pairs, the ref "
                   f"row's own pairs being the noise floor; prep = resize + BGR->RGB + mp.Image, detect = the "
                   f"landmarker call, post = results -> numpy/dict, all wall ms/frame; Δ px = mean x/y landmark "
                   f"difference from the ref run)")
        out.append("")
        out.append("| variant | frames/s | CPU ms/frame | CPU vs ref | wall vs ref | main / mediapipe / other | cores "
                   "| prep ms | detect ms | post ms | detector runs | faces | Δ px |")
        out.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for v, pairs_ in explored:
            if not pairs_:
                out.append(f"| {v.name} | {v.error or 'failed'} | | | | | | | | | | | |")
                continue
            b = Best([r for _, r in pairs_])
            r = b.runs[0]
            detector = r.frames if v.image_mode else r.detector_runs
            diff = landmark_difference(r, ref) if ref is not None else None
            out.append(f"| {v.name} | {b.fps:.1f} | {b.cpu_ms:.2f} | {paired(pairs_, 'cpu_ms')} | "
                       f"{paired(pairs_, 'wall_ms')} | {split(b)} | {b.cores:.2f} | {fmt(b.part_ms('prep'), '.2f')} | "
                       f"{fmt(b.part_ms('detect'), '.2f')} | {fmt(b.part_ms('post'), '.2f')} | {detector} | "
                       f"{r.faces} | {fmt(diff, '.2f')} |")
        if ref_best is not None:
            out.append(f"| (all {len(ref_runs)} ref runs) | {ref_best.fps:.1f} | {ref_best.cpu_ms:.2f} | | | "
                       f"{split(ref_best)} | {ref_best.cores:.2f} | | | | | | |")
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
