"""Jitter and lag.

Jitter is scored on faces with a known truth: a still photo plus fresh sensor noise
per frame does not move, so every movement of the output is jitter. The clips'
stillest second is shown for reference (the clips never hold still). Lag is the
default Shaper's delay on a synthetic step.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bridge.solve.neutral import SETTLED_SECONDS
from bridge.state import ARKIT_INDEX, ARKIT_NAMES, FaceState

from .data import Track, as_frame, open_tracker, stderr_kept
from .outputs import Output, solve_clip

TARGET_JITTER_DEG = 0.2
TARGET_JITTER_SHAPE = 0.02
TARGET_LAG_FRAMES = 1

STILL_PHOTOS = ("skimage_astronaut.png", "liveportrait_d8.jpg", "liveportrait_d30.jpg", "liveportrait_d38.jpg",
                "deepface_img11.jpg", "deepface_img17.jpg")   # one face each
STILL_FPS = 30.0
# Frames left out while the tracker, the filter and the automatic neutral settle: until
# then the values move towards this person's rest (bridge.solve.neutral), which is
# settling, not jitter; then 4 s measured.
STILL_SETTLE = int(round(SETTLED_SECONDS * STILL_FPS))
STILL_FRAMES = STILL_SETTLE + 120
SENSOR_NOISE = 2.0          # grey levels of Gaussian noise per pixel and frame, like a webcam
STILL_MAX_SIDE = 720        # photos are scaled to a webcam-like size first

# Synthetic steps for the lag measure: (name, jawOpen step, head yaw step in degrees).
LAG_STEPS = (("large", 1.0, 20.0), ("small", 0.2, 5.0))
LAG_SETTLE_FRAMES = 30      # neutral frames before the step
LAG_AFTER_FRAMES = 60       # frames watched after it


def worst_channel(shapes: np.ndarray) -> tuple[float, str]:
    """The largest per-channel standard deviation over the rows, and its channel."""
    sd = np.std(shapes, axis=0)
    k = int(np.argmax(sd))
    return float(sd[k]), ARKIT_NAMES[k]


# =============================================================================== still photos

@dataclass
class StillJitter:
    photo: str
    head_raw: np.ndarray        # (3,) std, degrees
    head_filt: np.ndarray
    shapes_raw: tuple           # (std, channel) of the worst channel
    shapes_filt: tuple

    @property
    def met(self) -> bool:
        return bool(np.all(self.head_filt <= TARGET_JITTER_DEG)) and self.shapes_filt[0] <= TARGET_JITTER_SHAPE


@dataclass
class _StillRun:
    """A photo tracked as video, shaped like a ClipRun for outputs.solve_clip."""
    name: str
    width: int
    height: int
    tracks: dict
    fps: float = STILL_FPS

    def time(self, index: int) -> float:
        return index / self.fps


def _noisy_tracks(data: Path, backends: list[str], image: np.ndarray, rng) -> dict:
    """STILL_FRAMES frames of `image` + fresh noise, each frame tracked by every backend."""
    trackers, lists = {}, {b: ([], []) for b in backends}
    with stderr_kept():
        try:
            for b in backends:
                trackers[b] = open_tracker(b, data, static=False)
            base = image.astype(np.float32)
            for i in range(STILL_FRAMES):
                noise = rng.standard_normal(image.shape, dtype=np.float32) * SENSOR_NOISE
                frame = as_frame(i, i / STILL_FPS, np.clip(base + noise, 0, 255).astype(np.uint8))
                for b, tracker in trackers.items():
                    found = tracker.track(frame)
                    lists[b][0].append(found.landmarks)
                    lists[b][1].append(found.blendshapes or None)
        finally:
            for tracker in trackers.values():
                tracker.close()
    return {b: Track(b, lm, sc, np.full((len(lm), 4, 4), np.nan)) for b, (lm, sc) in lists.items()}


def still_jitter(data: Path, outputs: list[Output], seed: int = 0) -> dict[str, list[StillJitter]]:
    """Per output, per photo: the std of the raw and the filtered output after
    STILL_SETTLE frames. A photo the tracker loses on more than half the frames is
    left out, and the report says which ones are."""
    import cv2

    backends = sorted({o.backend for o in outputs})
    rng = np.random.default_rng(seed)
    out = {o.key: [] for o in outputs}
    for photo in STILL_PHOTOS:
        image = cv2.imread(str(data / "stills" / photo))
        if image is None:
            raise FileNotFoundError(data / "stills" / photo)
        scale = STILL_MAX_SIDE / max(image.shape[:2])
        if scale < 1:
            image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        h, w = image.shape[:2]
        run = _StillRun(photo, w, h, _noisy_tracks(data, backends, image, rng))
        for o in outputs:
            s = solve_clip(run, o)
            keep = s.found.copy()
            keep[:STILL_SETTLE] = False
            if keep.sum() < STILL_FRAMES // 2:
                continue
            out[o.key].append(StillJitter(photo, np.std(s.head[keep], axis=0), np.std(s.filt_head[keep], axis=0),
                                          worst_channel(s.shapes[keep]), worst_channel(s.filt_shapes[keep])))
    return out


# =============================================================================== clips (reference)

def stillest_window(series: np.ndarray, length: int) -> int | None:
    """Start of the `length`-frame window whose summed frame-to-frame change (the norm of
    the change of a row) is smallest; windows with a NaN (no face) don't count."""
    series = np.asarray(series, float).reshape(len(series), -1)
    if len(series) < length or length < 2:
        return None
    step = np.linalg.norm(np.diff(series, axis=0), axis=1)
    bad = ~np.isfinite(step)
    step = np.where(bad, 0.0, step)
    c = np.concatenate([[0.0], np.cumsum(step)])
    cb = np.concatenate([[0], np.cumsum(bad)])
    k = length - 1
    motion = c[k:] - c[:-k]
    motion[(cb[k:] - cb[:-k]) > 0] = np.inf
    if not np.isfinite(motion).any():
        return None
    return int(np.argmin(motion))


@dataclass
class ClipJitter:
    start: int
    length: int
    head_filt: np.ndarray        # (3,) std over the head-stillest second, filtered
    shapes_filt: tuple           # (std, channel), filtered, over the model's expression-stillest second
    shapes_start: int | None


def clip_jitter(head: np.ndarray, filt_head: np.ndarray, filt_shapes: np.ndarray, model_shapes: np.ndarray,
                fps: float) -> ClipJitter | None:
    """Over one second: the head over the raw head's stillest one; the blendshapes over the
    one where the *model's* scores change least (an expression change is motion, not
    jitter, and choosing by the model keeps this output's own noise out of the choice)."""
    length = int(round(fps))
    start = stillest_window(head, length)
    if start is None:
        return None
    w = slice(start, start + length)
    has = np.array([n != "tongueOut" for n in ARKIT_NAMES])      # the model has no tongueOut
    expr = np.concatenate([model_shapes[:, has], filt_shapes[:, :1] * 0.0], axis=1)   # NaN: no face either side
    expr_start = stillest_window(expr, length)
    shapes = (float("nan"), "-")
    if expr_start is not None:
        shapes = worst_channel(filt_shapes[expr_start:expr_start + length])
    return ClipJitter(start, length, np.std(filt_head[w], axis=0), shapes, expr_start)


# =============================================================================== lag

def step_lag(jaw_step: float, yaw_step: float, fps: float = 30.0, options=None) -> dict[str, tuple]:
    """Frames until the default Shaper's output passes 50 % and 90 % of a step.

    LAG_SETTLE_FRAMES neutral FaceStates at t = i / fps, then the same state with
    jawOpen = jaw_step and yaw = yaw_step degrees, held for LAG_AFTER_FRAMES. Per
    channel (k50, k90): frames after the step of the first output at or past that
    fraction; 0 = the step frame itself; None = not within LAG_AFTER_FRAMES."""
    from bridge.shape import ShapeOptions, Shaper

    shaper = Shaper(options or ShapeOptions())
    neutral, stepped = FaceState.neutral(), FaceState.neutral()
    stepped.blendshapes[ARKIT_INDEX["jawOpen"]] = jaw_step
    stepped.head_angles[0] = yaw_step
    jaw, yaw = [], []
    for i in range(LAG_SETTLE_FRAMES + LAG_AFTER_FRAMES):
        state = neutral if i < LAG_SETTLE_FRAMES else stepped
        out, _ = shaper.update(i / fps, FaceState.from_vector(state.vector()))
        if i >= LAG_SETTLE_FRAMES:
            jaw.append(out.blendshape("jawOpen"))
            yaw.append(float(out.head_angles[0]))

    def first(trace, step, level):
        return next((k for k, v in enumerate(trace) if v >= level * step), None)

    return {"jawOpen": (first(jaw, jaw_step, 0.5), first(jaw, jaw_step, 0.9)),
            "yaw": (first(yaw, yaw_step, 0.5), first(yaw, yaw_step, 0.9))}


def default_filter() -> str:
    from bridge.shape import DEFAULT_BETA, DEFAULT_MIN_CUTOFF

    return f"One Euro min_cutoff {DEFAULT_MIN_CUTOFF:g} Hz, beta {DEFAULT_BETA:g}"
