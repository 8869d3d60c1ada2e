"""How much of each channel MediaPipe's landmarks carry on the rendered set: a ceiling
estimate, not a tracker.

    python -m bench.truth.headroom [--set full] [--ridge 0.01]

For every identity in turn, a ridge regression from all 478 head-aligned landmarks (iris
included), less that identity's neutral render, to the rendered weights of every channel
but the gaze ones (those have their own path) is fitted on the OTHER identities' renders
and read on this one's (leave one person out). Each channel's output is rescaled so that,
on the fitting renders, it rises 1:1 with the weight (a regression's estimate shrinks
towards the mean; the targets ask for the weight). The readings replace the default
output's and are scored with score.py's statistics, so the figures compare with
docs/accuracy.md's section 8, which carries them (`python -m bench.truth.score --docs`).

What it says: which channels a readout of the whole landmark set could bring to the
targets on these faces, and which stay out of reach of the readouts tried: the landmarks
barely move (eyeWide, cheekPuff, jawForward), or two shapes move them alike. It is fitted
and read on renders of ICT's one basis and knows each person's true neutral, so it is an
upper estimate; nothing here was checked on real faces, and the tracker does not use it.
Tried and left out: the model's scores as extra inputs, and a kernel (RBF) readout: both
read fewer channels held out than the landmarks alone.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from bench.truth.faces import ARKIT_NAMES, RENDERABLE

RIDGE = 0.01   # penalty per standardised input (0.003-0.03 meet the targets on 20-23 channels)


def aligned(renders, store: dict) -> np.ndarray:
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
    return [n for n in RENDERABLE if not n.startswith("eyeLook")]


def leave_one_out(renders, points: np.ndarray, channels: list[str], ridge: float = RIDGE) -> np.ndarray:
    """(N, len(channels)) held-out readings in [0, 1]; NaN where a render's face was lost,
    its identity has no neutral render, or the other people's renders never show the channel."""
    neutral = {renders.identity[i]: i for i in np.flatnonzero(renders.neutral)}
    cols = [ARKIT_NAMES.index(n) for n in channels]
    keep = np.array([renders.identity[i] in neutral and np.isfinite(points[i]).all()
                     and np.isfinite(points[neutral[renders.identity[i]]]).all() for i in range(len(renders))])
    x = np.zeros((len(renders), points.shape[1] * 3))
    for i in np.flatnonzero(keep):
        x[i] = (points[i] - points[neutral[renders.identity[i]]]).ravel()
    y = renders.truth[:, cols]
    out = np.full(y.shape, np.nan)
    people = np.array([str(v) for v in renders.identity], dtype=object)
    for person in sorted(set(people[keep])):
        test, train = keep & (people == person), keep & (people != person)
        if not train.any():
            continue
        mu, sd = x[train].mean(0), x[train].std(0) + 1e-9
        xt, xs = (x[train] - mu) / sd, (x[test] - mu) / sd
        w = np.linalg.solve(xt.T @ xt + ridge * xt.shape[1] * np.eye(xt.shape[1]), xt.T @ y[train])
        fitted, read = xt @ w, xs @ w
        for j in range(len(cols)):
            use = (y[train, j] > 0) | (y[train].sum(1) == 0)
            if len(np.unique(y[train, j][use])) < 2:   # never rendered in the fitting set: no readout
                continue
            slope, offset = np.polyfit(y[train, j][use], fitted[use, j], 1)
            out[test, j] = (read[:, j] - offset) / slope if slope > 1e-3 else read[:, j]
    return np.clip(out, 0.0, 1.0)


def readout_values(measured, held: np.ndarray, channels: list[str]):
    """`measured` (score.Measured) with `held` in place of its values on `channels`, where
    `held` has a reading (a lost face or a person without a neutral keeps its own)."""
    cols = [ARKIT_NAMES.index(n) for n in channels]
    values = measured.values.copy()
    values[:, cols] = np.where(np.isfinite(held), held, values[:, cols])
    return type(measured)(found=measured.found, values=values, head=measured.head, eyes=measured.eyes)


def readout(renders, store: dict, measured, ridge: float = RIDGE):
    """`measured` with the held-out landmark readout on readout_channels()."""
    channels = readout_channels()
    return readout_values(measured, leave_one_out(renders, aligned(renders, store), channels, ridge), channels)


def main(argv=None) -> int:
    from pathlib import Path

    from bench.truth import score as S

    ap = argparse.ArgumentParser(prog="python -m bench.truth.headroom", description=__doc__.split("\n\n")[0])
    ap.add_argument("--cache", default=str(S.DEFAULT_CACHE))
    ap.add_argument("--set", default="full")
    ap.add_argument("--ridge", type=float, default=RIDGE, help="penalty per standardised input (default %(default)s)")
    args = ap.parse_args(argv)
    cache = Path(args.cache)
    index = S.set_images(cache, args.set)
    renders = S.load_renders(cache, list(index), index)
    store = S.tracked(renders, "landmarker", cache, S.default_model(), log=lambda s: print(s, file=sys.stderr))
    fused = S.solve_all(renders, store, "fused", "session")
    now = S.score_source(renders, fused)["channels"]
    then = S.score_source(renders, readout(renders, store, fused, args.ridge))["channels"]
    passed = lambda ch: sum(1 for n in RENDERABLE if ch[n]["status"] == "pass")   # noqa: E731
    print(f"default output: {passed(now)}/51 channels meet the targets; with the held-out readout of the "
          f"landmarks on every channel but gaze: {passed(then)}/51")
    print(f"{'channel':20s} {'default (slope / r / x-talk)':30s} readout (slope / r / neutral / x-talk from)")
    for n in readout_channels():
        a, b = now[n], then[n]
        xa, xb = a.get("crosstalk_in") or {}, b.get("crosstalk_in") or {}
        print(f"{n:20s} {S._f(a.get('slope'))} / {S._f(a.get('rank_r'))} / {S._f(xa.get('value'))}"
              f"{' meets' if a['status'] == 'pass' else '':7s}        "
              f"{S._f(b.get('slope'))} / {S._f(b.get('rank_r'))} / {S._f(b.get('neutral'))} / "
              f"{S._f(xb.get('value'))} {xb.get('from', '')}{'  meets' if b['status'] == 'pass' else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
