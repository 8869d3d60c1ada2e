"""Accuracy benchmark: the Solver's outputs against the labels and against MediaPipe's model.

    python bench/accuracy.py [--data DIR] [--out docs] [--clips a,b,...]
                             [--backend facemesh|landmarker]

For every clip of the data (default: all of DATA/video/*.mp4), per person (clip) and
pooled, side by side: **fused** (the landmarker's landmarks + the model's scores),
**geometric** (Solver(blendshapes="solver"), landmarks only, on each backend) and the
**model** (MediaPipe's scores). Without --backend, every backend this environment has
runs (the landmarker when DATA has the model, Face Mesh when mediapipe 0.10.21 is
installed); --backend picks one (the landmarker still runs on `facemesh` for the
model's scores and matrix, but gives no fused or geometric output there).

  1. labelled frames (DATA/labels/clips.csv) in their video: accuracy at fixed
     thresholds and ROC AUC between the label classes, every miss listed;
  2. the same frames as photos (IMAGE mode, a fresh Solver per photo, adapt=False);
  3. r against the model per clip and channel, and pooled;
  4. the rest level on each person's neutral frames;
  5. head angles against the model's transformation matrix;
  6. jitter (still photos), the Shaper's lag, the Solver's time per frame;
  7. a PNG per clip in OUT/accuracy/, and OUT/accuracy.md (the hand-written notes
     after the marker are kept).

Each clip is decoded and tracked once per backend; every output is solved from those
cached arrays. The pieces live in bench/accuracy_harness/. Importable: nothing runs
at import (tests/test_accuracy.py uses evaluate()).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for path in (ROOT, HERE):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from accuracy_harness import metrics, motion, targets  # noqa: E402,F401  (re-exported for the tests)
from bridge.state import ARKIT_INDEX  # noqa: E402,F401
from accuracy_harness.data import (  # noqa: E402,F401
    BACKENDS, DEFAULT_DATA, LABELS_FILE, MODEL_FILE, TRACKER_NAMES, Label, available_backends, list_clips,
    read_labels, track_clip,
)
from accuracy_harness.evaluate import Evaluation, evaluate  # noqa: E402,F401
from accuracy_harness.outputs import FUSED, MODEL, geometric, outputs_for, solve_clip  # noqa: E402,F401
from accuracy_harness.plots import plot_clip  # noqa: E402
from accuracy_harness.report import Results, render, write_report  # noqa: E402

DEFAULT_OUT = ROOT / "docs"


def _plot_all(ev: Evaluation, out: Path) -> list[str]:
    names = []
    for clip, run in ev.runs.items():
        series = {o.key: ev.series[o.key, clip].shapes for o in ev.outputs}
        frames = [label.frame for label in ev.labels_of(clip)]
        plot_clip(out / "accuracy" / f"{clip}.png",
                  f"{run.path.name}: {run.n} frames at {run.fps:g} fps, raw outputs", ev.outputs, series, frames)
        names.append(clip)
    return names


def stale_plots(out: Path, clips: list[str]) -> list[Path]:
    """PNGs in OUT/accuracy/ that belong to no clip of the data (the old d3/d9/d18/d6 set).
    truth_*.png are the rendered faces' (section 8, bench/truth/docs.py), kept like it."""
    return sorted(p for p in (out / "accuracy").glob("*.png")
                  if p.stem not in clips and not p.stem.startswith("truth_"))


def run(data: Path, out: Path, clips: list[str], backends: list[str], command: str, log=print,
        outputs=None) -> Results:
    """Track, solve, score and plot; `outputs` default: outputs_for(backends)."""
    start, load = time.perf_counter(), os.getloadavg()[0]
    ev = evaluate(data, clips, backends, outputs=outputs, log=log)
    log("plots ...")
    plotted = _plot_all(ev, out)
    log("jitter on still photos ...")
    stills = motion.still_jitter(data, ev.outputs)
    model = {clip: ev.series[MODEL.key, clip].shapes for clip in ev.runs} if "landmarker" in backends else {}
    clip_jitter = {}
    for o in ev.outputs:
        for clip, run_ in ev.runs.items():
            s = ev.series[o.key, clip]
            clip_jitter[o.key, clip] = motion.clip_jitter(s.head, s.filt_head, s.filt_shapes, model[clip], run_.fps) \
                if model else None
    lags = {step: motion.step_lag(jaw, yaw) for step, jaw, yaw in motion.LAG_STEPS}
    res = Results(ev, stills, clip_jitter, lags, command, plots=plotted, load=(load, os.getloadavg()[0]))
    res.runtime = time.perf_counter() - start
    return res


def _check_inputs(data: Path, clips: list[str], backends: list[str]) -> str | None:
    """Why the run cannot start, or None."""
    for path in (data / LABELS_FILE, data / MODEL_FILE):
        if not path.is_file():
            return f"test data not found: {path} (the shared data lives in ../shared/data; see its SOURCES.md)"
    if not clips:
        return f"no clips: {data / 'video'} has no *.mp4 and none were given"
    missing = [c for c in clips if not (data / "video" / f"{c}.mp4").is_file()]
    if missing:
        return f"no video for clip(s) {', '.join(missing)} in {data / 'video'}"
    if not backends:
        return "no tracking backend available"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="the shared data folder (default ../shared/data)")
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="where accuracy.md and accuracy/*.png go (docs)")
    parser.add_argument("--clips", default=None, help="comma-separated clip names (video stems); default: all")
    parser.add_argument("--backend", choices=BACKENDS, default=None,
                        help="one tracker for the fused / geometric outputs (default: every available one)")
    args = parser.parse_args(argv)
    data, out = Path(args.data), Path(args.out)
    clips = [c.strip() for c in args.clips.split(",") if c.strip()] if args.clips else list_clips(data)
    available = available_backends(data)
    if args.backend == "facemesh" and "facemesh" not in available:
        from bridge.tracking.facemesh import NOT_INSTALLED

        print(f"accuracy: --backend facemesh: {NOT_INSTALLED}", file=sys.stderr)
        return 2
    # The model's scores and matrix come from the landmarker, so it always runs; on
    # --backend facemesh only as the reference (no fused or landmarker-geometric output).
    backends = available if args.backend is None else sorted({"landmarker", args.backend})
    outputs = outputs_for(backends if args.backend is None else [args.backend])
    if args.backend == "facemesh":
        outputs.append(MODEL)
    problem = _check_inputs(data, clips, backends)
    if problem:
        print(f"accuracy: {problem}", file=sys.stderr)
        return 2
    command = "python bench/accuracy.py" + "".join(" " + a for a in (sys.argv[1:] if argv is None else argv))
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    try:
        res = run(data, out, clips, backends, command, log=log, outputs=outputs)
        generated = render(res)
    except Exception:
        # MediaPipe captures the stderr descriptor while a tracker starts; say it on stdout too.
        traceback.print_exc(file=sys.stdout)
        raise
    write_report(out / "accuracy.md", generated)
    stale = stale_plots(out, list_clips(data))
    for path in stale:
        path.unlink()
    print(generated)
    log(f"wrote {out / 'accuracy.md'} and {len(res.plots)} plot(s) in {out / 'accuracy'}"
        + (f"; removed {len(stale)} stale plot(s): {', '.join(p.name for p in stale)}" if stale else "")
        + f"; {res.runtime:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
