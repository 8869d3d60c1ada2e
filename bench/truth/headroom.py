"""How much of each channel MediaPipe's landmarks carry on the rendered set: a headroom
estimate, not a tracker.

    python -m bench.truth.headroom [--set full] [--lam 0.3]

For every identity in turn, a ridge regression from all 468 head-aligned face landmarks
(iris left out: gaze has its own path), less that identity's neutral render, to the
rendered weights is fitted on the OTHER identities' renders and read on this one's
(leave one person out); each channel's output is then rescaled so that, on the fitting
renders, it rises 1:1 with the weight (a regression's estimate shrinks towards the mean;
the targets ask for the weight). The readings replace the default output's on the
channels no labelled real frame measures (docs/accuracy.md's section 8 lists them) and
are scored with score.py's statistics, so the figures compare with that section's.

What it says: which of those channels a linear readout of the whole landmark set could
bring to the targets on these faces, and which stay out of reach whatever the readout
(the landmarks barely move, or two shapes move them alike). It is fitted and read on the
same rendered faces of ICT's basis (other people of it, but one basis), so it is an upper
estimate, and nothing here was checked on real faces.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from bench.truth import score as S
from bench.truth.docs import REAL
from bench.truth.faces import ARKIT_NAMES, RENDERABLE


def aligned(renders: S.Renders, store: dict) -> np.ndarray:
    """(N, 478, 3) every render's landmarks in the canonical face's frame (the solver's fit)."""
    from bridge.solve import _TO_CAMERA, Solver
    solver = Solver()
    out = np.full((len(renders), 478, 3), np.nan)
    for i, d in enumerate(renders.digests):
        pts = store[d][0]
        if pts is None:
            continue
        cam = pts * _TO_CAMERA
        rot, scale, t = solver.fit(cam[solver.stable])
        out[i] = ((cam - t) @ rot) / scale
    return out


def readout_channels() -> list[str]:
    return [n for n in RENDERABLE if n not in REAL and not n.startswith("eyeLook")]


def leave_one_out(renders: S.Renders, points: np.ndarray, channels: list[str], lam: float) -> np.ndarray:
    """(N, len(channels)) held-out readings."""
    neutral = {renders.identity[i]: i for i in np.flatnonzero(renders.neutral)}
    cols = [ARKIT_NAMES.index(n) for n in channels]
    keep = np.array([renders.identity[i] in neutral and np.isfinite(points[i]).all() for i in range(len(renders))])
    x = np.zeros((len(renders), 468 * 3))
    for i in np.flatnonzero(keep):
        x[i] = (points[i, :468] - points[neutral[renders.identity[i]], :468]).ravel()
    y = renders.truth[:, cols]
    out = np.zeros_like(y)
    ident = np.array([hash(renders.identity[i]) for i in range(len(renders))])
    for k in set(ident[keep].tolist()):
        test, train = keep & (ident == k), keep & (ident != k)
        xt = x[train]
        w = np.linalg.solve(xt.T @ xt + lam * np.eye(xt.shape[1]), xt.T @ y[train])
        fitted = xt @ w
        for j in range(len(cols)):
            use = (y[train, j] > 0) | (y[train].sum(1) == 0)
            slope, offset = np.polyfit(y[train, j][use], fitted[use, j], 1)
            out[test, j] = (x[test] @ w[:, j] - offset) / slope
    return np.clip(out, 0.0, 1.0)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.truth.headroom", description=__doc__.split("\n\n")[0])
    ap.add_argument("--cache", default=str(S.DEFAULT_CACHE))
    ap.add_argument("--set", default="full")
    ap.add_argument("--lam", type=float, default=0.3, help="ridge penalty (default %(default)s)")
    args = ap.parse_args(argv)
    from pathlib import Path
    cache = Path(args.cache)
    index = S.set_images(cache, args.set)
    renders = S.load_renders(cache, list(index), index)
    store = S.tracked(renders, "landmarker", cache, S.default_model(), log=lambda s: print(s, file=sys.stderr))
    fused = S.solve_all(renders, store, "fused", "session")
    channels = readout_channels()
    held_out = leave_one_out(renders, aligned(renders, store), channels, args.lam)
    mixed = S.Measured(found=fused.found, values=fused.values.copy(), head=fused.head, eyes=fused.eyes)
    mixed.values[:, [ARKIT_NAMES.index(n) for n in channels]] = held_out
    now = S.score_source(renders, fused)["channels"]
    then = S.score_source(renders, mixed)["channels"]
    passed = lambda ch: sum(1 for n in RENDERABLE if ch[n]["status"] == "pass")   # noqa: E731
    print(f"{len(channels)} channels without a real-face reference; default output: {passed(now)}/51 channels meet "
          f"the targets, with the held-out linear readout on those channels: {passed(then)}/51")
    print(f"{'channel':20s} {'default (slope / r / x-talk)':30s} readout (slope / r / neutral / x-talk from)")
    for n in channels:
        a, b = now[n], then[n]
        xa, xb = a.get("crosstalk_in") or {}, b.get("crosstalk_in") or {}
        print(f"{n:20s} {S._f(a.get('slope'))} / {S._f(a.get('rank_r'))} / {S._f(xa.get('value'))}"
              f"{' meets' if a['status'] == 'pass' else '':7s}        "
              f"{S._f(b.get('slope'))} / {S._f(b.get('rank_r'))} / {S._f(b.get('neutral'))} / "
              f"{S._f(xb.get('value'))} {xb.get('from', '')}{'  meets' if b['status'] == 'pass' else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
