"""The outputs compared: bridge.solve.Solver in its three blendshape modes, solved
from a ClipRun's cached tracking arrays (no tracking here).

* fused: the landmarker's landmarks + the model's scores, Solver(blendshapes="fused");
* geometric: one backend's landmarks alone, Solver(blendshapes="solver");
* model: the landmarker's landmarks + scores, Solver(blendshapes="model"), i.e. what
  the product sends with --blendshapes model (MediaPipe's scores; geometry only for
  tongueOut, which the model lacks). It does not depend on our tracker, so there is
  one model output whichever backends run.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from bridge.state import ARKIT_NAMES

from .data import TRACKER_NAMES, ClipRun, Track

N_SHAPES = len(ARKIT_NAMES)


@dataclass(frozen=True)
class Output:
    key: str          # "fused", "geometric-landmarker", "geometric-facemesh", "model"
    backend: str      # whose landmarks the Solver gets
    mode: str         # Solver(blendshapes=mode)
    title: str

    @property
    def uses_scores(self) -> bool:
        return self.mode in ("fused", "model")


FUSED = Output("fused", "landmarker", "fused", "fused")
MODEL = Output("model", "landmarker", "model", "model")


def geometric(backend: str) -> Output:
    return Output(f"geometric-{backend}", backend, "solver", f"geometric ({TRACKER_NAMES[backend]})")


def outputs_for(backends: list[str]) -> list[Output]:
    """Fused and the model need the landmarker (its scores); geometric runs on each backend."""
    out = []
    if "landmarker" in backends:
        out.append(FUSED)
    out += [geometric(b) for b in backends]
    if "landmarker" in backends:
        out.append(MODEL)
    return out


@dataclass
class Series:
    """One output over one clip."""
    shapes: np.ndarray        # (n, 52) ARKit order, NaN where no face
    head: np.ndarray          # (n, 3) yaw, pitch, roll degrees
    filt_shapes: np.ndarray   # (n, 52) after the default Shaper
    filt_head: np.ndarray     # (n, 3)
    solve_ms: np.ndarray      # Solver.solve per frame with a face

    @property
    def found(self) -> np.ndarray:
        return np.isfinite(self.shapes).all(axis=1)


def _scores(track: Track, i: int, output: Output):
    if not output.uses_scores:
        return None
    return track.scores[i]


def warm_up(output: Output, track: Track, size: tuple[int, int], count: int = 20) -> None:
    """The first calls pay for lazy set-up; a throwaway Solver takes them so the timed
    run measures the steady state."""
    from bridge.solve import Solver

    solver = Solver(*size, blendshapes=output.mode)
    done = 0
    for i, pts in enumerate(track.landmarks):
        if pts is None:
            continue
        solver.solve(pts, size, time=None, scores=_scores(track, i, output))
        done += 1
        if done >= count:
            break


def solve_clip(run: ClipRun, output: Output) -> Series:
    """One Solver for the clip (the automatic neutral adapts, capture times index / fps),
    each call timed; then the default Shaper over the states, as the live pipeline does."""
    from bridge.shape import ShapeOptions, Shaper
    from bridge.solve import Solver

    track = run.tracks[output.backend]
    size = (run.width, run.height)
    n = track.n
    shapes, head = np.full((n, N_SHAPES), np.nan), np.full((n, 3), np.nan)
    filt_shapes, filt_head = shapes.copy(), head.copy()
    warm_up(output, track, size)
    solver, shaper, times = Solver(*size, blendshapes=output.mode, adapt=True), Shaper(ShapeOptions()), []
    for i, pts in enumerate(track.landmarks):
        state = None
        if pts is not None:
            start = time.perf_counter()
            state = solver.solve(pts, size, time=run.time(i), scores=_scores(track, i, output))
            times.append(time.perf_counter() - start)
            shapes[i], head[i] = state.blendshapes, state.head_angles
        shaped, _ = shaper.update(run.time(i), state)
        if state is not None:
            filt_shapes[i], filt_head[i] = shaped.blendshapes, shaped.head_angles
    return Series(shapes, head, filt_shapes, filt_head, np.array(times) * 1000.0)


def solve_photos(track: Track, sizes: list[tuple[int, int]], output: Output) -> np.ndarray:
    """Each photo with a fresh Solver(adapt=False) and time=None: no neutral learnt
    from other frames, no lid history. (n, 52), NaN where no face."""
    from bridge.solve import Solver

    out = np.full((track.n, N_SHAPES), np.nan)
    for i, (pts, size) in enumerate(zip(track.landmarks, sizes)):
        if pts is None:
            continue
        solver = Solver(*size, blendshapes=output.mode, adapt=False)
        out[i] = solver.solve(pts, size, time=None, scores=_scores(track, i, output)).blendshapes
    return out
