"""Score the tracker against rendered faces with known weights (issue 14).

    python -m bench.truth.score [--set full] [--sources landmarker:fused,landmarker:solver,...]
                                [--readings session,photo] [--model face_landmarker.task]
                                [--cache DIR] [--out FILE.md] [--json FILE]

The renders are the set's (``<cache>/<set>.index.json``, written by ``python -m
bench.truth render --set <set>``). Each render is tracked once per backend as a photo
(static tracking, as ``facemocap-osc export`` does for an image folder); the landmarks
and the model's scores are cached in ``<cache>/landmarks/<backend>-<version>.npz``, the
version hashing bridge/tracking/, the model file and mediapipe's version. The solve stage
(`bridge.solve.Solver`, what export and the live tracker run) then reads them in-process,
so re-scoring after a solver change takes seconds. Two readings:

* **session** (the figures that count): each identity's renders are fed to one Solver as a
  session (a frame every 0.1 s, seeded order), so it learns that person's rest as the live
  tracker does from a performer's frames; then it reads every render with that rest
  (time=None: no further learning, no lid timing). Like docs/accuracy.md's "labelled
  frames in their video".
* **photo**: every image alone against the population's rest (REST_PRIOR; adapt=False),
  like its "as photos". ICT's faces are not the 19 people's (their neutral brows sit
  0.6 cm higher above the eyes), so this mostly measures how far ICT is from them.

The ground truth is the JSON's ``effective_weights`` (what was rendered, including the
eyeLook lid shapes a gaze adds), ``spec.gaze`` and ``spec.head``.

Render kinds (decided from the truth, not from set names):

* **neutral**: no weight, gaze 0, head 0 (any identity).
* **single X**: exactly one channel X > 0, gaze 0, head 0.
* everything else (combinations, posed heads, gazes) counts for a channel only where its
  truth is > 0.

Per channel and source:

* **n**: renders with the channel > 0 and a face found; ``+k lost`` = such renders where
  no face was found (excluded from the numbers, never read as zeros). n < 3: "not enough
  renders", no numbers.
* **slope, offset**: least squares ``measured = slope * truth + offset`` over the renders
  with the channel > 0 (alone or combined, any pose) plus the neutrals at 0.
* **MAE**: mean |measured - truth| over the same renders.
* **rank r**: Spearman's rank correlation over the same renders (ranks with ties
  averaged, numpy only).
* **neutral**: mean reading on the neutrals.
* **rise**: reading on a single render minus the neutral reading of the same identity
  (the mean over all neutrals when that identity has none).
* **cross-talk in (from)**: for every OTHER channel X rendered alone at its highest
  single weight (1.0 in the full set; mean over identities), the rise of this channel;
  the largest, and the X that caused it. This is what the target "worst cross-talk <=
  0.25" is checked on: a channel that rises when something else is rendered is the one
  that cannot be trusted. A channel's own mirror counts (mouthSmileLeft rendered alone
  moving mouthSmileRight is cross-talk into mouthSmileRight).
* **cross-talk out (into)**: this channel rendered alone at its highest single weight:
  the largest rise of any other channel, and which. Shown, not part of pass.
* **pass**: slope >= 0.6, rank r >= 0.8, neutral <= 0.15 and cross-talk in <= 0.25;
  a figure that cannot be computed (no neutrals, no single renders of other channels)
  fails the channel with the reason.

Diagnostics, not part of pass: ``singles_only`` (JSON: the slope and the mean reading
at each weight on the channel's single renders; no rank r there: with 3 weights against 8
tied neutrals the largest attainable rank r is 0.79). eyeLook* is rendered only as turned
eyes with the lids following (sets.GAZE_OF), so its figures are the gaze's.

Also: the left/right check (each Left/Right channel rendered alone: does the same-side
channel rise more than the other side?), head pose error (measured - rendered yaw,
pitch, roll, degrees; target 2 deg) and gaze error (each eye's measured yaw/pitch -
rendered gaze, degrees; target 5 deg; renders with either eye's blink >= 0.5 are left
out).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bench.truth.faces import ARKIT_NAMES, RENDERABLE, UNRENDERABLE

REPO = Path(__file__).resolve().parents[2]
DEFAULT_CACHE = Path(__file__).resolve().parent / "cache"
READINGS = ("session", "photo")
DEFAULT_SOURCES = ("landmarker:fused", "landmarker:solver", "landmarker:model",
                   "facemesh:fused", "facemesh:solver")
TARGETS = {"slope": 0.6, "rank": 0.8, "neutral": 0.15, "crosstalk": 0.25, "gaze_deg": 5.0, "head_deg": 2.0}
MIN_RENDERS = 3
LR_MIN_RISE = 0.05        # left/right check: below this on both sides = "no response"
UNMEASURED_REASON = {"tongueOut": "unmeasured: no tongue in ICT-FaceKit"}


# --------------------------------------------------------------------------- renders

@dataclass
class Renders:
    hashes: list            # spec hashes (file stems)
    pngs: list              # Paths
    digests: list           # sha256 of each PNG's bytes (the readings' cache key)
    names: list
    truth: np.ndarray       # (N, 52) effective weights in ARKIT_NAMES order
    gaze: np.ndarray        # (N, 2) yaw, pitch
    head: np.ndarray        # (N, 3) yaw, pitch, roll
    lids_follow: np.ndarray  # (N,) bool
    identity: list          # a hashable identity key per render
    neutral: np.ndarray = field(init=False)   # (N,) bool
    single: np.ndarray = field(init=False)    # (N,) channel index of a single render, else -1

    def __post_init__(self):
        frontal = ~np.any(self.gaze != 0, axis=1) & ~np.any(self.head != 0, axis=1)
        nonzero = self.truth > 0
        count = nonzero.sum(1)
        self.neutral = frontal & (count == 0)
        self.single = np.where(frontal & (count == 1), np.argmax(nonzero, axis=1), -1)

    def __len__(self):
        return len(self.hashes)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def set_images(cache: Path, set_name: str) -> dict:
    """image -> face name of a rendered set, from its `<set>.index.json` (written by the render command)."""
    path = cache / f"{set_name}.index.json"
    try:
        index = json.loads(path.read_text())
        return {row["image"]: row["name"] for row in index}
    except FileNotFoundError:
        raise SystemExit(f"{path}: no such file: render the set first (python -m bench.truth render --set {set_name})")
    except (OSError, ValueError, TypeError, KeyError) as e:
        raise SystemExit(f"{path}: not a set index ({e}): render the set again")


def load_renders(cache: Path, images: list[str] | None = None, names: dict | None = None) -> Renders:
    """The renders `images` (names of <hash>.png files in `cache`; default: every <hash>.png
    there), each with its <hash>.json; `names`: image -> the face's name in the set."""
    rows = []
    pngs = sorted(cache.glob("*.png")) if images is None else [cache / name for name in images]
    for png in pngs:
        meta_path = png.with_suffix(".json")
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError) as e:
            if images is None:
                continue
            raise SystemExit(f"{meta_path}: {e}: render the set again")
        if not png.is_file() or not isinstance(meta, dict) or "effective_weights" not in meta or "spec" not in meta:
            if images is None:
                continue
            raise SystemExit(f"{png}: missing, or its JSON is not a render's: render the set again")
        spec = meta["spec"]
        if images is not None and names:
            spec = {**spec, "name": names.get(png.name, spec.get("name", ""))}   # the set's name now
        eff = meta["effective_weights"]
        unknown = set(eff) - set(ARKIT_NAMES)
        if unknown:
            raise ValueError(f"{meta_path}: unknown channels {sorted(unknown)}")
        g, h = spec.get("gaze", {}), spec.get("head", {})
        iw = spec.get("identity_weights")
        ident = (spec.get("identity_seed"), spec.get("identity_scale"), None if iw is None else tuple(iw))
        rows.append((meta_path.stem, png, _digest(png), spec.get("name", ""),
                     [float(eff.get(n, 0.0)) for n in ARKIT_NAMES],
                     [float(g.get("yaw", 0.0)), float(g.get("pitch", 0.0))],
                     [float(h.get("yaw", 0.0)), float(h.get("pitch", 0.0)), float(h.get("roll", 0.0))],
                     bool(spec.get("lids_follow_gaze", True)), ident))
    if not rows:
        raise SystemExit(f"no renders (<hash>.png + <hash>.json) in {cache}")
    cols = list(zip(*rows))
    return Renders(hashes=list(cols[0]), pngs=list(cols[1]), digests=list(cols[2]), names=list(cols[3]),
                   truth=np.array(cols[4], float), gaze=np.array(cols[5], float),
                   head=np.array(cols[6], float), lids_follow=np.array(cols[7], bool),
                   identity=list(cols[8]))


# --------------------------------------------------------------------------- tracking

def default_model() -> str | None:
    """--model, else the tracker's own choice (FACEMOCAP_MODEL, its cache), else
    ../shared/data/models/face_landmarker.task beside the repository."""
    try:
        from bridge.tracking import model as model_file
        return str(model_file.locate(None, download=False).path)
    except Exception:
        shared = REPO.parent / "shared" / "data" / "models" / "face_landmarker.task"
        return str(shared) if shared.is_file() else None


def tracking_version(model: str | None) -> str:
    h = hashlib.sha256()
    for p in sorted((REPO / "bridge" / "tracking").rglob("*.py")):
        h.update(p.name.encode() + b"\0" + p.read_bytes())
    if model and Path(model).is_file():
        h.update(hashlib.sha256(Path(model).read_bytes()).digest())
    try:
        from importlib.metadata import version
        h.update(version("mediapipe").encode())
    except Exception:
        pass
    return h.hexdigest()[:16]


def tracked(renders: Renders, backend: str, cache: Path, model: str | None, log=print) -> dict:
    """digest -> (landmarks (478, 3) or None, scores dict or None, (w, h))."""
    import cv2

    from bridge.sources import Frame
    from bridge.tracking import open_tracker

    folder = cache / "landmarks"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{backend}-{tracking_version(model)}.npz"
    store: dict = {}
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as data:
                meta = json.loads(str(data["meta"]))
                points = data["points"]
            for k, d in enumerate(meta["digests"]):
                store[d] = (None if np.isnan(points[k]).all() else points[k], meta["scores"][k],
                            tuple(meta["sizes"][k]))
        except (OSError, ValueError, KeyError, IndexError, zipfile.BadZipFile) as e:   # cut or foreign: track again
            log(f"{path}: unreadable ({e}); tracking again")
            store = {}
    missing = [i for i, d in enumerate(renders.digests) if d not in store]
    if missing:
        log(f"{backend}: tracking {len(missing)} render(s)")
        with open_tracker(backend, model_path=model if backend == "landmarker" else None, static=True,
                          download=False) as tracker:
            for n, i in enumerate(missing):
                image = cv2.imread(str(renders.pngs[i]))
                if image is None:
                    raise SystemExit(f"{renders.pngs[i]}: not a readable image: render the set again")
                h, w = image.shape[:2]
                t = tracker.track(Frame(index=n, time=n / 30.0, image=image, width=w, height=h))
                pts = None if t.landmarks is None else np.asarray(t.landmarks, np.float64)
                store[renders.digests[i]] = (pts, t.blendshapes, (w, h))
        digests = list(store)
        points = np.stack([np.full((478, 3), np.nan) if store[d][0] is None else store[d][0] for d in digests])
        meta = {"digests": digests, "scores": [store[d][1] for d in digests], "sizes": [list(store[d][2]) for d in digests]}
        tmp = path.with_name(f".{path.stem}.{os.getpid()}.npz")
        np.savez_compressed(tmp, points=points, meta=json.dumps(meta))
        os.replace(tmp, path)
    return store


def _learnt_solvers(renders: Renders, store: dict, blendshapes: str) -> dict:
    """identity -> a Solver whose rests were learnt from that identity's renders, fed as
    one session (a frame every 0.1 s, a seeded order), as the live tracker learns a
    performer's rest; it then reads each render with time=None (no further learning)."""
    from bridge.solve import Solver

    by_id: dict = {}
    for i, d in enumerate(renders.digests):
        if store[d][0] is not None:
            by_id.setdefault(renders.identity[i], []).append(i)
    out = {}
    rng = np.random.default_rng(14)
    for ident, idx in by_id.items():
        size = store[renders.digests[idx[0]]][2]
        solver = Solver(*size, blendshapes=blendshapes, adapt=True)
        order = rng.permutation(idx).tolist()
        order += order[:10]   # the estimate refreshes every 10 samples: every render counts once at least
        for k, i in enumerate(order):
            pts, scores, size = store[renders.digests[i]]
            solver.solve(pts, size, time=k * 0.1, scores=scores if blendshapes != "solver" else None)
        out[ident] = solver
    return out


def solve_all(renders: Renders, store: dict, blendshapes: str, reading: str = "session") -> Measured:
    from bridge.solve import Solver

    learnt = _learnt_solvers(renders, store, blendshapes) if reading == "session" else {}
    n = len(renders)
    found = np.zeros(n, bool)
    values = np.zeros((n, len(ARKIT_NAMES)))
    head = np.zeros((n, 3))
    eyes = np.zeros((n, 4))
    solver = None
    for i, d in enumerate(renders.digests):
        pts, scores, size = store[d]
        if pts is None:
            continue
        if reading == "session":
            solver = learnt[renders.identity[i]]
        elif solver is None:
            solver = Solver(*size, blendshapes=blendshapes, adapt=False)
        st = solver.solve(pts, size, time=None, scores=scores if blendshapes != "solver" else None)
        found[i] = True
        values[i] = st.blendshapes
        # FaceState angles in the export's columns: head yaw, pitch, roll; eyes (yaw, pitch) each.
        head[i] = st.head_angles
        eyes[i] = np.asarray(st.eye_angles).reshape(4)
    return Measured(found=found, values=values, head=head, eyes=eyes)


@dataclass
class Measured:
    found: np.ndarray      # (N,) bool
    values: np.ndarray     # (N, 52)
    head: np.ndarray       # (N, 3)
    eyes: np.ndarray       # (N, 4) left yaw, left pitch, right yaw, right pitch


# --------------------------------------------------------------------------- statistics

def rankdata(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n, ties given the mean of the ranks they span (scipy's 'average')."""
    x = np.asarray(x, float)
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    ranks = np.empty(len(x), float)
    boundaries = np.flatnonzero(np.r_[True, xs[1:] != xs[:-1], True])
    for a, b in zip(boundaries[:-1], boundaries[1:]):
        ranks[order[a:b]] = (a + b + 1) / 2.0      # mean of ranks a+1 .. b
    return ranks


def spearman(x, y) -> float | None:
    """Pearson correlation of the average ranks; None when either side is constant."""
    rx, ry = rankdata(x), rankdata(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    den = math.sqrt(float((rx * rx).sum() * (ry * ry).sum()))
    return None if den == 0 else float((rx * ry).sum() / den)


def _baselines(renders: Renders, m: Measured) -> tuple[np.ndarray, bool]:
    """(N, 52) the neutral reading for each render's identity (mean over all neutrals when
    the identity has none); False when there is no neutral at all (zeros)."""
    ok = renders.neutral & m.found
    if not ok.any():
        return np.zeros_like(m.values), False
    overall = m.values[ok].mean(0)
    by_id: dict = {}
    for i in np.flatnonzero(ok):
        by_id.setdefault(renders.identity[i], []).append(i)
    base = np.empty_like(m.values)
    for i, ident in enumerate(renders.identity):
        idx = by_id.get(ident)
        base[i] = m.values[idx].mean(0) if idx else overall
    return base, True


def single_rises(renders: Renders, m: Measured, base: np.ndarray) -> dict:
    """channel X -> (weight, number of renders, (52,) mean rise over neutral) for X rendered
    alone at its highest single weight (found faces only)."""
    out = {}
    for j in sorted(set(renders.single[renders.single >= 0].tolist())):
        idx = np.flatnonzero((renders.single == j) & m.found)
        if not idx.size:
            continue
        top = renders.truth[idx, j].max()
        idx = idx[np.isclose(renders.truth[idx, j], top)]
        out[j] = (float(top), int(idx.size), (m.values[idx] - base[idx]).mean(0))
    return out


def _r(v, digits=4):
    return None if v is None or not np.isfinite(v) else round(float(v), digits)


def channel_stats(renders: Renders, m: Measured) -> dict:
    base, have_neutral = _baselines(renders, m)
    rises = single_rises(renders, m, base)
    neutral_ok = renders.neutral & m.found
    out = {}
    for j, name in enumerate(ARKIT_NAMES):
        if name in UNRENDERABLE:
            out[name] = {"channel": name, "status": "unmeasured", "reason": UNMEASURED_REASON.get(name, "unrenderable")}
            continue
        pos = renders.truth[:, j] > 0
        s = {"channel": name, "n": int((pos & m.found).sum()), "lost": int((pos & ~m.found).sum()),
             "neutrals": int(neutral_ok.sum()), "neutrals_lost": int((renders.neutral & ~m.found).sum()),
             "weights": sorted(set(np.round(renders.truth[pos & m.found, j], 4).tolist()))}
        # cross-talk out: this channel alone
        if j in rises:
            w, k, rise = rises[j]
            other = np.array([y for y in range(len(ARKIT_NAMES)) if y != j and ARKIT_NAMES[y] not in UNRENDERABLE])
            y = other[np.argmax(rise[other])]
            s["crosstalk_out"] = {"value": _r(rise[y]), "into": ARKIT_NAMES[y], "weight": w, "renders": k,
                                  "own_rise": _r(rise[j])}
        else:
            s["crosstalk_out"] = None
        # cross-talk in: every other channel alone
        cands = [(rise[j], x, w, k) for x, (w, k, rise) in rises.items() if x != j]
        if cands:
            v, x, w, k = max(cands, key=lambda c: c[0])
            s["crosstalk_in"] = {"value": _r(v), "from": ARKIT_NAMES[x], "weight": w, "renders": k,
                                 "sources": len(cands)}
        else:
            s["crosstalk_in"] = None
        s["neutral"] = _r(m.values[neutral_ok, j].mean()) if neutral_ok.any() else None
        if s["n"] < MIN_RENDERS:
            s["status"] = "not enough renders"
            out[name] = s
            continue
        use = (pos | renders.neutral) & m.found
        x, yv = renders.truth[use, j], m.values[use, j]
        if np.unique(x).size >= 2:
            slope, offset = np.polyfit(x, yv, 1)
            s["slope"], s["offset"] = _r(slope), _r(offset)
        else:
            s["slope"] = s["offset"] = None
        s["mae"] = _r(np.abs(yv - x).mean())
        s["rank_r"] = _r(spearman(x, yv))
        s["points"] = int(use.sum())
        fails = []
        checks = (("slope", s["slope"], lambda v: v >= TARGETS["slope"]),
                  ("rank r", s["rank_r"], lambda v: v >= TARGETS["rank"]),
                  ("neutral", s["neutral"], lambda v: v <= TARGETS["neutral"]),
                  ("cross-talk", None if s["crosstalk_in"] is None else s["crosstalk_in"]["value"],
                   lambda v: v <= TARGETS["crosstalk"]))
        for what, v, ok in checks:
            if v is None:
                fails.append({"rank r": "rank r (a constant reading)", "slope": "slope (one weight only)",
                              "neutral": "no neutral renders",
                              "cross-talk": "no cross-talk figure (no single renders of other channels)"}[what])
            elif not ok(v):
                fails.append(what)
        s["status"] = "pass" if not fails else "fail"
        s["fails"] = fails
        s["baseline"] = "per identity" if have_neutral else "none (no neutrals: rise over 0)"
        alone = (renders.single == j) & m.found
        if alone.sum() >= 2:   # a diagnostic (JSON only): the clean response, without combinations
            ua = alone | neutral_ok
            xa, ya = renders.truth[ua, j], m.values[ua, j]
            sl, of = np.polyfit(xa, ya, 1)
            s["singles_only"] = {"n": int(alone.sum()), "slope": _r(sl), "offset": _r(of),
                                 "readings": {f"{w:g}": _r(m.values[alone & np.isclose(renders.truth[:, j], w), j].mean())
                                              for w in sorted(set(renders.truth[alone, j].tolist()))}}
        out[name] = s
    return out


def lr_check(renders: Renders, m: Measured) -> list[dict]:
    base, _ = _baselines(renders, m)
    rises = single_rises(renders, m, base)
    out = []
    for name in RENDERABLE:
        if not name.endswith("Left"):
            continue
        mirror = name[:-4] + "Right"
        if mirror not in RENDERABLE:
            continue
        for same, other in ((name, mirror), (mirror, name)):
            j, o = ARKIT_NAMES.index(same), ARKIT_NAMES.index(other)
            if j not in rises:
                continue
            w, k, rise = rises[j]
            rs, ro = float(rise[j]), float(rise[o])
            verdict = ("no response" if max(rs, ro) < LR_MIN_RISE else "ok" if rs > ro else "WRONG SIDE")
            out.append({"rendered": same, "weight": w, "renders": k, "same_rise": _r(rs),
                        "other_rise": _r(ro), "verdict": verdict})
    return out


def _err_summary(err: np.ndarray, labels, limit: float, names=()) -> dict:
    if not len(err):
        return {"renders": 0}
    a = np.abs(err)
    worst = np.argsort(-a.max(1), kind="stable")[:3]
    return {"renders": int(len(err)), "within": int((a.max(1) <= limit).sum()),
            "worst": [{"name": names[i] if len(names) else str(i), "error": _r(a[i].max(), 2),
                       "axis": labels[int(np.argmax(a[i]))]} for i in worst if a[i].max() > limit],
            "mean_abs": {l: _r(v, 2) for l, v in zip(labels, a.mean(0))},
            "max_abs": {l: _r(v, 2) for l, v in zip(labels, a.max(0))},
            "mean": {l: _r(v, 2) for l, v in zip(labels, err.mean(0))}}


def pose_stats(renders: Renders, m: Measured) -> dict:
    f = m.found
    posed = np.any(renders.head != 0, axis=1)
    herr = m.head - renders.head
    gazed = np.any(renders.gaze != 0, axis=1)
    blink = np.maximum(renders.truth[:, ARKIT_NAMES.index("eyeBlinkLeft")],
                       renders.truth[:, ARKIT_NAMES.index("eyeBlinkRight")])
    open_eyes = blink < 0.5
    gerr = m.eyes - np.c_[renders.gaze, renders.gaze]
    glabels = ("left yaw", "left pitch", "right yaw", "right pitch")
    looks = np.array([n.startswith("eyeLook") for n in ARKIT_NAMES])
    pure = (~np.any(renders.truth[:, ~looks] > 0, axis=1) & ~posed
            & (np.abs(renders.gaze) <= 25.0).all(axis=1))
    hl = ("yaw", "pitch", "roll")
    names = np.array(renders.names, dtype=object)
    per = []
    for i in np.flatnonzero(f & (posed | gazed)):
        per.append({"name": renders.names[i], "hash": renders.hashes[i],
                    "head": renders.head[i].tolist(), "head_measured": [_r(v, 2) for v in m.head[i]],
                    "gaze": renders.gaze[i].tolist(), "lids_follow_gaze": bool(renders.lids_follow[i]),
                    "eyes_measured": [_r(v, 2) for v in m.eyes[i]]})
    return {
        "head_posed": _err_summary(herr[f & posed], hl, TARGETS["head_deg"], names[f & posed]),
        "head_frontal": _err_summary(herr[f & ~posed], hl, TARGETS["head_deg"], names[f & ~posed]),
        "gaze_turned": _err_summary(gerr[f & gazed & open_eyes], glabels, TARGETS["gaze_deg"],
                                    names[f & gazed & open_eyes]),
        "gaze_turned_fixed_lids": _err_summary(gerr[f & gazed & open_eyes & ~renders.lids_follow], glabels,
                                               TARGETS["gaze_deg"], names[f & gazed & open_eyes & ~renders.lids_follow]),
        # the target's case: eyes turned within +-25 deg, no other expression, head still
        "gaze_pure": _err_summary(gerr[f & gazed & pure], glabels, TARGETS["gaze_deg"], names[f & gazed & pure]),
        "gaze_ahead": _err_summary(gerr[f & ~gazed & open_eyes], glabels, TARGETS["gaze_deg"],
                                   names[f & ~gazed & open_eyes]),
        "lost": {"posed": int((posed & ~f).sum()), "gazed": int((gazed & ~f).sum())},
        "renders": per,
    }


def score_source(renders: Renders, m: Measured) -> dict:
    return {"found": int(m.found.sum()), "renders": len(renders),
            "channels": channel_stats(renders, m), "left_right": lr_check(renders, m), "pose": pose_stats(renders, m)}


# --------------------------------------------------------------------------- report

def _f(v, fmt="{:.2f}"):
    return "–" if v is None else fmt.format(v)


def _xt(x, key):
    if x is None:
        return "–"
    if x["value"] < 0.005:      # nothing rises: no channel to name
        return f"{x['value']:.2f}"
    return f"{x['value']:.2f} ({x[key]})"


def channel_row(name: str, source: str, s: dict) -> str:
    if s["status"] == "unmeasured":
        return f"| {name} | {source} | – | {s['reason']} ||||||| – |"
    n = f"{s['n']}" + (f" +{s['lost']} lost" if s["lost"] else "")
    if s["status"] == "not enough renders":
        return (f"| {name} | {source} | {n} | not enough renders | | | | {_f(s['neutral'])} | "
                f"{_xt(s['crosstalk_in'], 'from')} | {_xt(s['crosstalk_out'], 'into')} | – |")
    verdict = "pass" if s["status"] == "pass" else "**fail**: " + ", ".join(s["fails"])
    return (f"| {name} | {source} | {n} | {_f(s['slope'])} | {_f(s['offset'], '{:+.2f}')} | {_f(s['mae'])} | "
            f"{_f(s['rank_r'])} | {_f(s['neutral'])} | {_xt(s['crosstalk_in'], 'from')} | "
            f"{_xt(s['crosstalk_out'], 'into')} | {verdict} |")


def _counts(ch: dict) -> tuple[int, int]:
    enough = sum(1 for s in ch.values() if s["status"] in ("pass", "fail"))
    return sum(1 for s in ch.values() if s["status"] == "pass"), enough


def _pose_line(p: dict, key: str, what: str) -> str:
    s = p[key]
    if not s.get("renders"):
        return f"- {what}: no renders"
    mean = ", ".join(f"{k} {v:+.1f}" for k, v in s["mean"].items())
    mx = ", ".join(f"{k} {v:.1f}" for k, v in s["max_abs"].items())
    worst = "; worst " + ", ".join(f"{w['name']} {w['axis']} {w['error']:.1f}" for w in s["worst"]) if s["worst"] else ""
    return (f"- {what}: {s['within']}/{s['renders']} renders within target; mean error {mean}; "
            f"max |error| {mx} (deg){worst}")


def render_summary(renders: Renders) -> str:
    posed = np.any(renders.head != 0, axis=1)
    gazed = np.any(renders.gaze != 0, axis=1)
    singles = renders.single >= 0
    combos = ~renders.neutral & ~singles & ~posed & ~gazed
    n_ids = len(set(renders.identity))
    per_channel = (renders.truth > 0).sum(0)
    rend = [ARKIT_NAMES.index(n) for n in RENDERABLE]
    zero = [ARKIT_NAMES[j] for j in rend if per_channel[j] == 0]
    alone = sorted(set(renders.single[singles].tolist()))
    return (f"{len(renders)} renders, {n_ids} identities: {int(renders.neutral.sum())} neutral, "
            f"{int(singles.sum())} single-channel ({len(alone)} channels), {int(combos.sum())} frontal "
            f"combinations, {int(posed.sum())} with head pose, {int(gazed.sum())} with gaze. "
            f"Channels never rendered: {len(zero)} of {len(RENDERABLE)}"
            + (f" ({', '.join(zero)})" if 0 < len(zero) <= 12 else "") + ".")


def compact_summary(source: str, res: dict) -> str:
    ch = res["channels"]
    passed, enough = _counts(ch)
    lines = [f"### {source}: {passed} of {len(RENDERABLE)} renderable channels meet all response targets "
             f"({enough} with >= {MIN_RENDERS} renders; faces found {res['found']}/{res['renders']})", ""]
    p = [n for n, s in ch.items() if s["status"] == "pass"]
    fl = [(n, s) for n, s in ch.items() if s["status"] == "fail"]
    ne = [n for n, s in ch.items() if s["status"] == "not enough renders"]
    lines.append(f"- pass ({len(p)}): " + (", ".join(p) or "none"))
    if fl:
        lines.append(f"- fail ({len(fl)}):")
        for n, s in fl:
            lost = f" +{s['lost']} lost" if s["lost"] else ""
            lines.append(f"  - {n}: {', '.join(s['fails'])} (slope {_f(s['slope'])}, r {_f(s['rank_r'])}, "
                         f"neutral {_f(s['neutral'])}, cross-talk in {_xt(s['crosstalk_in'], 'from')}; "
                         f"n {s['n']}{lost})")
    lines.append(f"- not enough renders ({len(ne)}): " + (", ".join(ne) or "none"))
    lines.append("- unmeasured: tongueOut (no tongue in ICT-FaceKit)")
    lr = res["left_right"]
    if lr:
        bad = [f"{e['rendered']} ({e['verdict']}: same {e['same_rise']:+.2f}, other {e['other_rise']:+.2f})"
               for e in lr if e["verdict"] != "ok"]
        ok = sum(e["verdict"] == "ok" for e in lr)
        lines.append(f"- left/right: {ok}/{len(lr)} single Left/Right renders rise more on their own side"
                     + (f"; not: {'; '.join(bad)}" if bad else ""))
    else:
        lines.append("- left/right: no single Left/Right renders")
    pose = res["pose"]
    lines.append(_pose_line(pose, "head_posed", f"head pose, posed renders (target {TARGETS['head_deg']:g} deg)"))
    lines.append(_pose_line(pose, "head_frontal", "head pose, frontal renders"))
    lines.append(_pose_line(pose, "gaze_turned", f"gaze, turned eyes, both eyes (target {TARGETS['gaze_deg']:g} deg)"))
    lines.append(_pose_line(pose, "gaze_turned_fixed_lids", "gaze, turned eyes with fixed lids"))
    lines.append(_pose_line(pose, "gaze_ahead", "gaze, eyes ahead (open)"))
    if pose["lost"]["posed"] or pose["lost"]["gazed"]:
        lines.append(f"- faces lost: {pose['lost']['posed']} posed, {pose['lost']['gazed']} gazed renders")
    return "\n".join(lines)


def pose_table(res: dict) -> str:
    rows = res["pose"]["renders"]
    if not rows or len(rows) > 60:
        return ""
    out = ["| render | head (rendered) | head (measured) | gaze (rendered) | eyes measured L yaw/pitch, R yaw/pitch |",
           "|---|---|---|---|---|"]
    for r in rows:
        h = "/".join(f"{v:+g}" for v in r["head"])
        hm = "/".join(_f(v, "{:+.1f}") for v in r["head_measured"])
        g = "/".join(f"{v:+g}" for v in r["gaze"]) + ("" if r["lids_follow_gaze"] else " fixed lids")
        e = "/".join(_f(v, "{:+.1f}") for v in r["eyes_measured"])
        out.append(f"| {r['name'] or r['hash']} | {h} | {hm} | {g} | {e} |")
    return "\n".join(out)


def markdown(renders: Renders, results: dict, meta: dict) -> str:
    lines = ["# Rendered faces: per-channel scores", "",
             f"Generated by `python -m bench.truth.score --set {meta['set']}` on {meta['date']} ({meta['seconds']:.0f} s, "
             f"tracking {meta['tracking_seconds']:.0f} s); tracking version {meta['tracking_version']}.", "",
             render_summary(renders), "",
             f"Targets: slope >= {TARGETS['slope']}, rank r >= {TARGETS['rank']}, neutral <= {TARGETS['neutral']}, "
             f"cross-talk in <= {TARGETS['crosstalk']}; head within {TARGETS['head_deg']:g} deg, gaze within "
             f"{TARGETS['gaze_deg']:g} deg. See `bench/truth/score.py` for the definitions: n = renders with the "
             f"channel > 0 (faces found; lost ones are counted, not scored); slope/offset/MAE/rank r over those plus "
             f"the neutrals at 0; neutral = mean on neutral renders; cross-talk in = the largest rise over neutral of "
             f"this channel when any other channel is rendered alone (from which), cross-talk out = the largest rise of "
             f"another channel when this one is rendered alone (into which); only cross-talk in counts for pass.", "",
             "## Summary", ""]
    lines.append("| source | faces found | channels passing | with enough renders | head posed within | gaze within |")
    lines.append("|---|---|---|---|---|---|")
    for src, res in results.items():
        p, e = _counts(res["channels"])
        hp, gz = res["pose"]["head_posed"], res["pose"]["gaze_turned"]
        lines.append(f"| {src} | {res['found']}/{res['renders']} | {p}/{len(RENDERABLE)} | {e} | "
                     f"{hp.get('within', 0)}/{hp.get('renders', 0)} | {gz.get('within', 0)}/{gz.get('renders', 0)} |")
    lines.append("")
    first = next(iter(results))
    lines += [compact_summary(first, results[first]), ""]
    pt = pose_table(results[first])
    if pt:
        lines += [f"Head and gaze, per render ({first}; degrees, yaw/pitch/roll, + = own left / up):", "", pt, ""]
    lines += ["## Per channel", "",
              "| channel | source | n | slope | offset | MAE | rank r | neutral | cross-talk in (from) | "
              "cross-talk out (into) | pass |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name in ARKIT_NAMES:
        for src, res in results.items():
            lines.append(channel_row(name, src, res["channels"][name]))
    lines.append("")
    for src, res in results.items():
        if src != first:
            lines += [compact_summary(src, res), ""]
    return "\n".join(lines)


# --------------------------------------------------------------------------- main

def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.truth.score", description=__doc__.split("\n\n")[0])
    p.add_argument("--cache", default=str(DEFAULT_CACHE), help="folder the set was rendered into")
    p.add_argument("--set", default="full", help="the rendered set to score (its <set>.index.json; default %(default)s)")
    p.add_argument("--sources", default=",".join(DEFAULT_SOURCES),
                   help="comma-separated backend:blendshapes (default: %(default)s)")
    p.add_argument("--readings", default="session,photo",
                   help="session (each identity's rest learnt from its renders, as live) and/or photo "
                        "(each image alone, against the population's rest); default %(default)s")
    p.add_argument("--model", default=None, help="face_landmarker.task (default: the tracker's own, else "
                   "../shared/data/models/face_landmarker.task)")
    p.add_argument("--out", default=None, help="write the markdown report here")
    p.add_argument("--json", default=None, help="write every figure here")
    p.add_argument("--docs", default=None, metavar="DIR",
                   help="update DIR/accuracy.md's and DIR/channels.md's rendered-faces sections and the plot "
                        "(bench/truth/docs.py); the first source and reading lead")
    args = p.parse_args(argv)

    from bridge.tracking import TrackingError

    t0 = time.perf_counter()
    sources = [s.strip() for s in args.sources.split(",") if s.strip()]
    for s in sources:
        b, _, bs = s.partition(":")
        if b not in ("landmarker", "facemesh") or bs not in ("fused", "solver", "model"):
            p.error(f"bad source {s!r}: backend:blendshapes, backend landmarker|facemesh, "
                    f"blendshapes fused|solver|model")
        if b == "facemesh" and bs == "model":
            p.error("facemesh:model: Face Mesh has no blendshape model")
    readings = [r.strip() for r in args.readings.split(",") if r.strip()]
    if not readings or set(readings) - set(READINGS):
        p.error(f"--readings: one or both of {', '.join(READINGS)}")
    cache = Path(args.cache)
    index = set_images(cache, args.set)
    renders = load_renders(cache, list(index), index)
    model = args.model or default_model()
    log = lambda s: print(s, file=sys.stderr, flush=True)   # noqa: E731
    log(render_summary(renders))
    results, stores, tracking, first_measured = {}, {}, 0.0, None
    for src in sources:
        backend, blendshapes = src.split(":")
        if backend not in stores:
            t1 = time.perf_counter()
            try:
                stores[backend] = tracked(renders, backend, cache, model, log)
            except TrackingError as e:
                print(f"python -m bench.truth.score: {backend}: {e}", file=sys.stderr)
                return 2
            tracking += time.perf_counter() - t1
        for reading in readings:
            key = src if reading == READINGS[0] else f"{src}/{reading}"
            m = solve_all(renders, stores[backend], blendshapes, reading)
            first_measured = first_measured if results else m
            results[key] = score_source(renders, m)
    meta = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "seconds": time.perf_counter() - t0,
            "tracking_seconds": tracking, "tracking_version": tracking_version(model), "model": model,
            "cache": str(cache), "set": args.set}
    ceiling = None
    if sources[0] == "landmarker:fused" and readings[0] == "session":
        # what a readout of every landmark, fitted to the other people's renders, reaches
        from bench.truth import headroom
        ceiling = score_source(renders, headroom.readout(renders, stores["landmarker"], first_measured))
        passed = sum(1 for n in RENDERABLE if ceiling["channels"][n]["status"] == "pass")
        log(f"ceiling (bench/truth/headroom.py): a held-out readout of all landmarks meets the targets on "
            f"{passed}/{len(RENDERABLE)} channels")
    text = markdown(renders, results, meta)
    if args.docs:
        from bench.truth import docs
        for path in docs.write(Path(args.docs), renders, results, first_measured, meta, ceiling):
            log(f"wrote {path}")
    if args.out:
        Path(args.out).write_text(text + "\n")
        first = next(iter(results))
        print(compact_summary(first, results[first]))
        log(f"wrote {args.out}")
    else:
        print(text)
    if args.json:
        doc = {"meta": meta, "targets": TARGETS, "min_renders": MIN_RENDERS,
               "renders": [{"hash": h, "name": n} for h, n in zip(renders.hashes, renders.names)],
               "results": results, "ceiling": ceiling}
        Path(args.json).write_text(json.dumps(doc, indent=1) + "\n")
        log(f"wrote {args.json}")
    log(f"{time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
