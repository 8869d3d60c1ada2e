"""Track every clip once per backend, solve every output from the cached arrays, and
read off the labelled frames in their video and as photos."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .data import Label, labels_by_clip, read_labels, track_clip, track_photos
from .metrics import model_head_series
from .outputs import MODEL, Output, Series, outputs_for, solve_clip, solve_photos


@dataclass
class Evaluation:
    backends: list                  # the trackers run
    outputs: list                   # [Output]
    labels: list                    # [Label] of the clips evaluated
    runs: dict                      # clip -> ClipRun (the per-clip arrays; images dropped after use)
    series: dict                    # (output key, clip) -> Series
    in_video: dict                  # output key -> {(clip, frame): (52,) or None}
    as_photo: dict                  # output key -> {(clip, frame): (52,) or None}
    model_head: dict                # clip -> (n, 3) the model's head angles
    seconds: dict = field(default_factory=dict)   # "track", "solve", "photos"

    def labels_of(self, clip: str) -> list[Label]:
        return [label for label in self.labels if label.clip == clip]

    def output(self, key: str) -> Output:
        return next(o for o in self.outputs if o.key == key)


def reading(series: Series, frame: int) -> np.ndarray | None:
    """The output on `frame`, or None where there is no face (or the run stopped before it)."""
    if frame >= len(series.shapes) or not np.isfinite(series.shapes[frame]).all():
        return None
    return series.shapes[frame].copy()


def _photo_readings(data: Path, runs: dict, labels: list[Label], outputs: list[Output],
                    backends: list[str]) -> dict:
    images = {label.key: runs[label.clip].images[label.frame] for label in labels
              if label.frame in runs[label.clip].images}
    missing = [label.key for label in labels if label.key not in images]
    if missing:
        raise ValueError(f"labelled frames beyond the end of their clip: {missing}")
    tracked = track_photos(data, images, backends)
    out = {}
    for o in outputs:
        keys, track = tracked[o.backend]
        sizes = [(images[k].shape[1], images[k].shape[0]) for k in keys]
        shapes = solve_photos(track, sizes, o)
        out[o.key] = {k: (shapes[i].copy() if np.isfinite(shapes[i]).all() else None) for i, k in enumerate(keys)}
    return out


def evaluate(data: Path, clips: list[str], backends: list[str], *, outputs: list[Output] | None = None,
             to_last_label: bool = False, photos: bool = True, log=None) -> Evaluation:
    """Every clip tracked once per backend (from frame 0, VIDEO mode, t = index / fps) and
    solved in every output; the labelled frames read in their video and (`photos`) as
    photos. `outputs`: default outputs_for(backends). `to_last_label`: track each
    labelled clip only up to its last labelled frame (and skip clips without labels),
    as the tests do."""
    labels = [label for label in read_labels(data) if label.clip in clips]
    by_clip = labels_by_clip(labels)
    outputs = outputs_for(backends) if outputs is None else outputs
    needed = {o.backend for o in outputs}
    if not needed <= set(backends):
        raise ValueError(f"outputs need backends {sorted(needed)}, only {backends} given")
    runs, series, model_head = {}, {}, {}
    secs = {"track": 0.0, "solve": 0.0, "photos": 0.0}
    for clip in clips:
        wanted = {label.frame for label in by_clip.get(clip, [])}
        if to_last_label and not wanted:
            continue
        t0 = time.perf_counter()
        run = track_clip(data, clip, backends, keep=wanted, until=max(wanted) if to_last_label else None, log=log)
        t1 = time.perf_counter()
        for o in outputs:
            series[o.key, clip] = solve_clip(run, o)
        secs["track"] += t1 - t0
        secs["solve"] += time.perf_counter() - t1
        if "landmarker" in run.tracks:
            model_head[clip] = model_head_series(run.tracks["landmarker"].matrices)
        runs[clip] = run
    in_video = {o.key: {label.key: reading(series[o.key, label.clip], label.frame) for label in labels}
                for o in outputs}
    as_photo = {}
    if photos and labels:
        t0 = time.perf_counter()
        as_photo = _photo_readings(data, runs, labels, outputs, backends)
        secs["photos"] = time.perf_counter() - t0
    for run in runs.values():
        run.images.clear()      # only the photo runs needed them
    return Evaluation(backends, outputs, labels, runs, series, in_video, as_photo, model_head, secs)


def model_shapes(ev: Evaluation, clip: str) -> np.ndarray | None:
    """The model's (n, 52) series on `clip` (None without the landmarker)."""
    s = ev.series.get((MODEL.key, clip))
    return None if s is None else s.shapes
