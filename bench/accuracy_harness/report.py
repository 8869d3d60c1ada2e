"""docs/accuracy.md: the generated part (everything above the hand-written notes)."""

from __future__ import annotations

import datetime as _dt
import math
import os
import platform
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import metrics as M
from . import motion
from . import targets as T
from .data import LABELS_FILE, TRACKER_NAMES
from .evaluate import Evaluation, model_shapes
from .outputs import FUSED, MODEL

NOTES_MARKER = "<!-- notes: written by hand -->"


@dataclass
class Results:
    ev: Evaluation
    stills: dict                    # output key -> [motion.StillJitter]
    clip_jitter: dict               # (output key, clip) -> motion.ClipJitter | None
    lags: dict                      # step name -> motion.step_lag()
    command: str
    runtime: float = 0.0
    plots: list = field(default_factory=list)     # clip names plotted
    load: tuple = ()                # 1-minute load average at the start and the end


# =============================================================================== formatting

def fmt(v, digits=2, none="–") -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return none
    return f"{v:.{digits}f}"


def met(ok: bool | None) -> str:
    return "n/a" if ok is None else "met" if ok else "**missed**"


def table(header: list[str], rows: list[list]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out) + "\n"


def pct(score: M.Score) -> str:
    return str(score) if score.total else "–"


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count()
    return f"{cpu}, {cores} cores, {platform.system()} {platform.release()}"


def versions() -> str:
    out = [f"Python {platform.python_version()}"]
    for mod in ("mediapipe", "cv2", "numpy"):
        try:
            out.append(f"{mod} {__import__(mod).__version__}")
        except ImportError:
            out.append(f"{mod} not installed")
    return ", ".join(out)


# =============================================================================== numbers shared by sections

def per_person(ev: Evaluation, readings_of: str = "in_video") -> dict:
    """(output key, clip) -> (accuracy, separability) on that person's labelled frames."""
    out = {}
    for o in ev.outputs:
        readings = getattr(ev, readings_of)[o.key]
        for clip in ev.runs:
            labels = ev.labels_of(clip)
            if labels:
                out[o.key, clip] = (M.accuracy(labels, readings), M.separability(labels, readings))
    return out


def pooled(ev: Evaluation, readings_of: str = "in_video") -> dict:
    """output key -> (accuracy, separability) over every labelled frame."""
    return {o.key: (M.accuracy(ev.labels, getattr(ev, readings_of)[o.key]),
                    M.separability(ev.labels, getattr(ev, readings_of)[o.key])) for o in ev.outputs}


def r_tables(ev: Evaluation) -> dict:
    """(output key, clip or "pooled") -> {channel: RCell}, for every output but the model."""
    out = {}
    for o in ev.outputs:
        if o.key == MODEL.key:
            continue
        cat_s, cat_m = [], []
        for clip in ev.runs:
            model = model_shapes(ev, clip)
            s = ev.series[o.key, clip].shapes
            out[o.key, clip] = M.r_against_model(s, model)
            cat_s.append(s)
            cat_m.append(model)
        out[o.key, "pooled"] = M.r_against_model(np.concatenate(cat_s), np.concatenate(cat_m), require_motion=False)
    return out


def rests(ev: Evaluation) -> dict:
    return {(o.key, clip): M.rest_level(ev.labels_of(clip), ev.in_video[o.key], run.fps)
            for o in ev.outputs for clip, run in ev.runs.items() if ev.labels_of(clip)}


def geometric_outputs(ev: Evaluation) -> list:
    return [o for o in ev.outputs if o.mode == "solver"]


def heads(ev: Evaluation) -> dict:
    """(backend, clip or "pooled") -> (MAD (3,), frames). The head does not depend on the
    blendshape mode, so each geometric output's head stands for its backend."""
    out = {}
    for o in geometric_outputs(ev):
        diffs = []
        for clip in ev.runs:
            mh = ev.model_head[clip]
            head = ev.series[o.key, clip].head
            out[o.backend, clip] = M.head_mad(head, mh)
            both = np.isfinite(head).all(axis=1) & np.isfinite(mh).all(axis=1)
            diffs.append(np.abs(head[both] - mh[both]))
        d = np.concatenate(diffs)
        out[o.backend, "pooled"] = (d.mean(axis=0) if len(d) else np.full(3, np.nan), len(d))
    return out


def solve_ms(ev: Evaluation, key: str) -> np.ndarray:
    return np.concatenate([ev.series[key, clip].solve_ms for clip in ev.runs])


# =============================================================================== targets

@dataclass
class Check:
    what: str
    output: str
    target: str
    measured: str
    ok: bool | None


def _worst_person(scores: dict, key: str, category: str) -> str:
    worst = [(s[0][category].fraction, clip) for (k, clip), s in scores.items()
             if k == key and s[0][category].total]
    worst.sort()
    return f"; worst {worst[0][1]} {100 * worst[0][0]:.1f} %" if worst and worst[0][0] < 1 else ""


def checks(res: Results) -> list[Check]:
    ev = res.ev
    keys = [o.key for o in ev.outputs]
    title = {o.key: o.title for o in ev.outputs}
    pv, pp = pooled(ev), per_person(ev)
    out = []
    if FUSED.key in keys:
        acc, sep = pv[FUSED.key]
        for c, goal in T.ACCURACY.items():
            out.append(Check(f"{c} accuracy, in video", "fused", "100 %" if goal >= 1 else f">= {100 * goal:.0f} %",
                             pct(acc[c]) + _worst_person(pp, FUSED.key, c),
                             acc[c].total > 0 and acc[c].fraction >= goal - 1e-12))
        for name, goal in T.AUC.items():
            a = sep[name].auc
            out.append(Check(f"{name} AUC, in video, pooled", "fused", f">= {goal}", fmt(a, 3),
                             None if a is None else a >= goal))
        if MODEL.key in keys:
            macc, msep = pv[MODEL.key]
            below = [f"{c} {pct(acc[c])} < {pct(macc[c])}" for c in M.ACCURACY_CATEGORIES
                     if acc[c].fraction < macc[c].fraction]
            below += [f"{n} AUC {fmt(sep[n].auc, 3)} < {fmt(msep[n].auc, 3)}" for n in M.CONTRAST_NAMES
                      if sep[n].auc is not None and msep[n].auc is not None and sep[n].auc < msep[n].auc]
            out.append(Check("never below the model (accuracy and AUC, every category)", "fused", "0 below",
                             "; ".join(below) or "none below", not below))
    for o in ev.outputs:
        if o.mode != "solver":
            continue
        acc, _ = pv[o.key]
        out.append(Check("eyes accuracy, in video", o.title, "100 %", pct(acc["eyes"]),
                         acc["eyes"].total > 0 and acc["eyes"].fraction >= T.GEOMETRIC_EYES))
        if MODEL.key in keys:
            macc, _ = pv[MODEL.key]
            for c in ("mouth", "smile"):
                gap = macc[c].fraction - acc[c].fraction
                points = f"{100 * T.GEOMETRIC_BEHIND_MODEL:.0f} points"
                out.append(Check(f"{c} accuracy within {points} of the model", o.title, f">= model - {points}",
                                 f"{pct(acc[c])} vs model {pct(macc[c])}", gap <= T.GEOMETRIC_BEHIND_MODEL + 1e-12))
    for o in ev.outputs:
        if o.key == MODEL.key:
            continue
        closed, lowered = eye_extremes(ev, o.key)
        out.append(Check("eyes labelled closed (both): eyeBlink, in video", o.title, f">= {T.CLOSED_BLINK}",
                         f"min {fmt(closed[0])}" + (f" ({closed[1]})" if closed[1] else ""),
                         None if closed[0] is None else closed[0] >= T.CLOSED_BLINK))
        out.append(Check("lowered eyes: eyeBlink, in video", o.title, f"<= {T.LOWERED_BLINK}",
                         f"max {fmt(lowered[0])}" + (f" ({lowered[1]})" if lowered[1] else ""),
                         None if lowered[0] is None else lowered[0] <= T.LOWERED_BLINK))
    rest = rests(ev)
    for o in ev.outputs:
        worst = max(((r.level, clip, r.channel) for (k, clip), r in rest.items() if k == o.key and r.level is not None),
                    default=None)
        out.append(Check("rest level (largest channel on neutral frames), per person", o.title, f"<= {T.REST}",
                         "–" if worst is None else f"worst {worst[1]} {worst[0]:.2f} ({worst[2]})",
                         None if worst is None else worst[0] <= T.REST))
    rt = r_tables(ev)
    for o in ev.outputs:
        if o.key == MODEL.key:
            continue
        cells = [(cell.r, clip, ch) for (k, clip), t in rt.items() if k == o.key and clip != "pooled"
                 for ch, cell in t.items() if ch in M.R_TARGET_CHANNELS and cell.r is not None]
        below = sorted(c for c in cells if c[0] < T.R_CLIP)
        shown = ", ".join(f"{clip} {ch} {r:.2f}" for r, clip, ch in below[:3]) + (" …" if len(below) > 3 else "")
        measured = f"{len(cells) - len(below)}/{len(cells)} clip-channels >= {T.R_CLIP}"
        if o.mode == "solver":      # the target is the geometric path's; fused is shown for reference
            out.append(Check("r vs model per clip, target channels", o.title, f">= {T.R_CLIP}",
                             measured + (f"; lowest {shown}" if below else ""), None if not cells else not below))
        else:
            out.append(Check("r vs model per clip, target channels (reference)", o.title, "–", measured, None))
        pooled_r = rt[o.key, "pooled"]
        low = [f"{ch} {fmt(pooled_r[ch].r, 3)}" for ch in M.R_TARGET_CHANNELS
               if pooled_r[ch].r is None or pooled_r[ch].r < T.R_POOLED]
        out.append(Check("r vs model pooled, target channels", o.title, f">= {T.R_POOLED}",
                         "min " + fmt(min((pooled_r[ch].r for ch in M.R_TARGET_CHANNELS if pooled_r[ch].r is not None),
                                          default=None), 3) + (f" ({', '.join(low)} below)" if low else ""),
                         not low if o.mode == "solver" else None))
    hd = heads(ev)
    for b in [o.backend for o in geometric_outputs(ev)]:
        worst = max(((float(np.max(m)), clip, M.AXES[int(np.argmax(m))]) for (bb, clip), (m, n) in hd.items()
                     if bb == b and clip != "pooled" and n), default=None)
        out.append(Check("head MAD vs the model's matrix, per clip and axis", f"head ({TRACKER_NAMES[b]})",
                         f"<= {T.HEAD_DEG} deg",
                         "–" if worst is None else f"worst {worst[1]} {worst[2]} {worst[0]:.2f}",
                         None if worst is None else worst[0] <= T.HEAD_DEG))
    for o in ev.outputs:
        j = res.stills.get(o.key, [])
        if j:
            head = max(float(np.max(s.head_filt)) for s in j)
            shape = max(j, key=lambda s: s.shapes_filt[0]).shapes_filt
            out.append(Check("jitter on still photos, filtered", o.title,
                             f"<= {motion.TARGET_JITTER_DEG} deg, <= {motion.TARGET_JITTER_SHAPE}",
                             f"head {head:.3f} deg, {shape[0]:.4f} ({shape[1]})",
                             head <= motion.TARGET_JITTER_DEG and shape[0] <= motion.TARGET_JITTER_SHAPE))
    lag = max((k50 for step in res.lags.values() for k50, _ in step.values() if k50 is not None), default=None)
    missing = any(k50 is None for step in res.lags.values() for k50, _ in step.values())
    out.append(Check("lag of the default Shaper to 50 % of a step", "Shaper", f"<= {motion.TARGET_LAG_FRAMES} frame",
                     f"{lag} frames" if not missing else "never within the window",
                     not missing and lag is not None and lag <= motion.TARGET_LAG_FRAMES))
    for o in ev.outputs:
        if o.mode == "model":
            continue
        ms = solve_ms(ev, o.key)
        med = float(np.median(ms)) if len(ms) else None
        out.append(Check("Solver.solve median per frame", o.title, f"<= {T.SOLVE_MS} ms", fmt(med, 3) + " ms",
                         None if med is None else med <= T.SOLVE_MS))
    return out


def eye_extremes(ev: Evaluation, key: str) -> tuple[tuple, tuple]:
    """(lowest eyeBlink of a labelled closed eye, where), (highest of a lowered eye, where), in video."""
    closed, lowered = (None, ""), (None, "")
    for label in ev.labels:
        r = ev.in_video[key][label.key]
        # Both-eyes-closed frames only: a wink's closed eye is often squeezed less, and
        # the accuracy already scores it.
        for ch in (("eyeBlinkLeft", "eyeBlinkRight") if label.eyes == "closed" else ()):
            v = -math.inf if r is None else M.value(r, ch)
            if closed[0] is None or v < closed[0]:
                closed = (v, f"{label.clip} {label.frame}")
        if label.eyes == "lowered":
            v = math.inf if r is None else max(M.value(r, "eyeBlinkLeft"), M.value(r, "eyeBlinkRight"))
            if lowered[0] is None or v > lowered[0]:
                lowered = (v, f"{label.clip} {label.frame}")
    return closed, lowered


# =============================================================================== sections

def _header(res: Results) -> list[str]:
    ev = res.ev
    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    n_frames = sum(run.n for run in ev.runs.values())
    labelled = sorted({label.clip for label in ev.labels})
    unlabelled = [c for c in ev.runs if c not in labelled]
    L = ["# Accuracy\n",
         "Generated by `bench/accuracy.py`; do not edit above *Notes*, regenerate instead (from the repository "
         "root, with the shared data in `../shared/data`):\n",
         f"    {res.command}\n",
         f"Run {now} in {res.runtime:.0f} s (tracking {ev.seconds['track']:.0f} s, solving "
         f"{ev.seconds['solve']:.0f} s, photos {ev.seconds['photos']:.0f} s) on {machine()}; {versions()}."
         + (f" Load average (1 min) {res.load[0]:.1f} at the start, {res.load[1]:.1f} at the end: above the core "
            "count, other work shared the CPU and the times and rates here are inflated."
            if res.load and max(res.load) > (os.cpu_count() or 1) else "") + "\n",
         f"**Data:** {len(ev.runs)} clips, {n_frames} frames, one person each (`../shared/data/video`, see its "
         f"SOURCES.md), each decoded once and tracked once per backend; {len(ev.labels)} labelled frames of "
         f"{len(labelled)} clips (`{LABELS_FILE.as_posix()}`, labelled by eye by two people, `?` = not scored). "
         + (f"Clips without labels (r, head, plots only): {', '.join(unlabelled)}. " if unlabelled else "") + "\n",
         "**Outputs** (`bridge.solve.Solver(w, h, blendshapes=mode)`, one Solver per clip, capture times "
         "t = index / fps):\n"]
    for o in ev.outputs:
        what = {"fused": "the Face Landmarker's landmarks and its blendshape scores combined (`fused`)",
                "solver": f"{TRACKER_NAMES[o.backend]} landmarks only (`solver`, the offline path)",
                "model": "MediaPipe's blendshape scores as they are (`model`; geometry only for tongueOut)"}[o.mode]
        L.append(f"- **{o.title}**: {what}")
    L.append("")
    L.append("Tracking: " + "; ".join(
        f"{TRACKER_NAMES[b]} " + ("VIDEO mode (it also gives the model's scores and matrix)" if b == "landmarker"
                                  else "tracking mode") for b in ev.backends)
             + ". Faces found: " + "; ".join(
        f"{TRACKER_NAMES[b]} {sum(int(run.tracks[b].found.sum()) for run in ev.runs.values())}/{n_frames}"
        for b in ev.backends) + ".\n")
    return L


def _summary(res: Results) -> list[str]:
    rows = [[c.what, c.output, c.target, c.measured, met(c.ok)] for c in checks(res)]
    return ["## Targets\n",
            "Thresholds: an eye is closed when its eyeBlink >= "
            f"{M.BLINK_CLOSED}; the mouth is open when jawOpen >= {M.JAW_OPEN}; smiling when max(mouthSmileLeft, "
            f"mouthSmileRight) >= {M.SMILE_ON}. Per-person figures are per clip (one person each).\n",
            table(["target", "output", "target value", "measured", ""], rows)]


def _scoring_rules() -> str:
    return ("Accuracy: eyes `open` and `lowered` = both eyeBlink < threshold, `closed` = both >= it, "
            "`left_closed` = eyeBlinkLeft >= it and eyeBlinkRight < it (the person's own left), `right_closed` "
            "the mirror; **`half` is not scored for accuracy** (a drooping lid sits between the classes by "
            "definition). Mouth: only `open` vs `closed` (`lips_parted` not scored). Smile: 1 vs 0. A labelled "
            "frame without a face counts as wrong. Separability: ROC AUC (Mann-Whitney, ties = 0.5) between the "
            "classes, on: " + "; ".join(f"{c.name} = {'/'.join(c.positive)} vs {'/'.join(c.negative)} on "
                                        f"{c.channels}" for c in M.CONTRASTS)
            + ". A frame without a face ranks as wrong (below every negative if positive, above every "
              "positive if negative). AUC is undefined (–) for a person lacking a class, so the pooled AUC is "
              "the headline.\n")


def _labelled(res: Results, readings_of: str, title: str, intro: str, scored_as: str = "") -> list[str]:
    ev = res.ev
    pv, pp = pooled(ev, readings_of), per_person(ev, readings_of)
    outs = ev.outputs
    L = [f"## {title}\n", intro + "\n",
         f"Scored as in {scored_as}.\n" if scored_as else _scoring_rules()]
    rows = [[c] + [pct(pv[o.key][0][c]) for o in outs] for c in M.ACCURACY_CATEGORIES]
    rows += [[f"AUC {name}"] + [fmt(pv[o.key][1][name].auc, 3) + f" ({pv[o.key][1][name].positives} / "
                                f"{pv[o.key][1][name].negatives})" for o in outs] for name in M.CONTRAST_NAMES]
    L.append("Pooled over every person (AUC: positives / negatives):\n")
    L.append(table(["", *[o.title for o in outs]], rows))
    L.append("Per person, accuracy (eyes · mouth · smile, right/scored):\n")
    rows = []
    for clip in ev.runs:
        if (outs[0].key, clip) not in pp:
            continue
        rows.append([clip] + [" · ".join(f"{s.correct}/{s.total}" if s.total else "–"
                                         for s in (pp[o.key, clip][0][c] for c in M.ACCURACY_CATEGORIES))
                              for o in outs])
    L.append(table(["person (clip)", *[o.title for o in outs]], rows))
    L.append("Per person, AUC where both classes occur (" + " / ".join(o.title for o in outs) + "):\n")
    rows = []
    for clip in ev.runs:
        if (outs[0].key, clip) not in pp:
            continue
        cells = []
        for name in M.CONTRAST_NAMES:
            vals = [pp[o.key, clip][1][name].auc for o in outs]
            cells.append("–" if all(v is None for v in vals) else " / ".join(fmt(v, 2) for v in vals))
        rows.append([clip] + cells)
    L.append(table(["person (clip)", *M.CONTRAST_NAMES], rows))
    L.append("Every miss (frame = 0-based decode index):\n")
    for o in outs:
        misses = [m for c in M.ACCURACY_CATEGORIES for m in pv[o.key][0][c].misses]
        if not misses:
            L.append(f"- **{o.title}**: none")
            continue
        L.append(f"- **{o.title}** ({len(misses)}): " + "; ".join(
            f"{m.clip} {m.frame} {m.category} {m.label} → {m.got} ({m.values})" for m in misses))
    L.append("")
    return L


def _r_section(res: Results) -> list[str]:
    ev = res.ev
    rt = r_tables(ev)
    lo, hi = M.SPAN_PERCENTILES
    L = ["## 3. r against the model\n",
         f"Pearson r per clip and channel over the frames where both have a face, computed only where the model's "
         f"channel moves: its P{lo:g}–P{hi:g} span (1st to 99th percentile, so a stray frame does not count) is "
         f">= {M.MOVES} in that clip; – = it does not (the span is shown instead, in brackets). Pooled: every "
         f"clip's frames together, whatever the span. Target: the geometric path r >= {T.R_CLIP} per clip on "
         f"the five target channels ({', '.join(M.R_TARGET_CHANNELS)}), >= {T.R_POOLED} pooled; fused is shown "
         "for reference.\n"]
    for o in ev.outputs:
        if o.key == MODEL.key:
            continue
        rows = []
        for clip in list(ev.runs) + ["pooled"]:
            t = rt[o.key, clip]
            cells = []
            for ch in M.R_CHANNELS:
                cell = t[ch]
                if cell.r is None:
                    cells.append(f"– [{cell.span:.2f}]" if cell.n else "no face")
                else:
                    miss = o.mode == "solver" and ch in M.R_TARGET_CHANNELS and \
                        cell.r < (T.R_POOLED if clip == "pooled" else T.R_CLIP)
                    cells.append(f"**{cell.r:.2f}**" if miss else f"{cell.r:.2f}")
            rows.append([clip, t[M.R_CHANNELS[0]].n] + cells)
        L.append(f"**{o.title}** (bold = below target):\n")
        L.append(table(["clip", "frames", *M.R_CHANNELS], rows))
    return L


def _rest_section(res: Results) -> list[str]:
    ev = res.ev
    rest = rests(ev)
    L = ["## 4. Rest level\n",
         "On each person's neutral labelled frames (eyes open, mouth closed or lips_parted, smile 0, brows "
         "neutral, lips none; a `?` anywhere leaves the frame out), in their video: the largest value over all "
         f"52 channels, which channel and on which frame. Only frames from SETTLE_SECONDS = {M.SETTLE_SECONDS:g} s "
         "on count: the automatic per-person neutral needs that long to settle. Target <= "
         f"{T.REST} per person. (n = frames counted; – = no neutral frame after {M.SETTLE_SECONDS:g} s.)\n"]
    rows = []
    for clip in ev.runs:
        if (ev.outputs[0].key, clip) not in rest:
            continue
        cells = []
        for o in ev.outputs:
            r = rest[o.key, clip]
            if r.level is None:
                cells.append("–")
                continue
            text = f"{r.level:.2f} {r.channel} @{r.frame} (n {r.counted})"
            cells.append(f"**{text}**" if r.level > T.REST else text)
        rows.append([clip] + cells)
    L.append(table(["person (clip)", *[o.title for o in ev.outputs]], rows))
    return L


def _head_section(res: Results) -> list[str]:
    ev = res.ev
    hd = heads(ev)
    L = ["## 5. Head against the model's matrix\n",
         "Mean absolute difference per axis (yaw / pitch / roll, degrees) between the Solver's head angles and "
         "those of MediaPipe's facial transformation matrix (same conventions, no sign flips), over the frames "
         f"both have. The head does not depend on the blendshape mode. Target <= {T.HEAD_DEG} deg per clip and axis.\n"]
    rows = []
    for clip in list(ev.runs) + ["pooled"]:
        row = [clip]
        for b in [o.backend for o in geometric_outputs(ev)]:
            m, n = hd[b, clip]
            text = " / ".join(fmt(float(v), 2) for v in m) + f" (n {n})"
            row.append(f"**{text}**" if n and np.max(m) > T.HEAD_DEG else text)
        rows.append(row)
    L.append(table(["clip", *[f"{TRACKER_NAMES[o.backend]} + Solver" for o in geometric_outputs(ev)]], rows))
    return L


def _motion_section(res: Results) -> list[str]:
    ev = res.ev
    L = ["## 6. Jitter, lag and time\n",
         f"**Jitter on still photos** (the scored measure): each of {len(motion.STILL_PHOTOS)} photos, scaled to at "
         f"most {motion.STILL_MAX_SIDE} px, is {motion.STILL_FRAMES} frames at {motion.STILL_FPS:g} fps with fresh "
         f"Gaussian noise of {motion.SENSOR_NOISE:g} grey levels per pixel, tracked as video, solved with capture "
         f"times and shaped with the default filter ({motion.default_filter()}); the first {motion.STILL_SETTLE} "
         "frames are left out. A still face does not move, so every movement is jitter. Worst photo per output, "
         "std of the head (degrees, worst axis) and of the worst blendshape, raw and filtered. Targets "
         f"(filtered): <= {motion.TARGET_JITTER_DEG} deg, <= {motion.TARGET_JITTER_SHAPE}.\n"]
    rows = []
    for o in ev.outputs:
        for j in res.stills.get(o.key, []):
            rows.append([o.title, j.photo, fmt(float(np.max(j.head_raw)), 3), fmt(float(np.max(j.head_filt)), 3),
                         f"{j.shapes_raw[0]:.4f} ({j.shapes_raw[1]})", f"{j.shapes_filt[0]:.4f} ({j.shapes_filt[1]})",
                         met(j.met)])
    L.append(table(["output", "photo", "head raw", "head filtered", "blendshape raw", "blendshape filtered", ""], rows))
    lost = [f"{o.title}: {', '.join(sorted(set(motion.STILL_PHOTOS) - {j.photo for j in res.stills.get(o.key, [])}))}"
            for o in ev.outputs if len(res.stills.get(o.key, [])) < len(motion.STILL_PHOTOS)]
    if lost:
        L.append("Left out (the face was found on fewer than half the frames): " + "; ".join(lost) + ".\n")
    L.append("**On the clips (reference only; they never hold still):** filtered head std over each clip's "
             "head-stillest second (worst axis) and the worst filtered blendshape std over the second where the "
             "model's scores change least.\n")
    rows = []
    for clip in ev.runs:
        row = [clip]
        for o in ev.outputs:
            j = res.clip_jitter.get((o.key, clip))
            row.append("–" if j is None else f"{float(np.max(j.head_filt)):.3f} deg, "
                                             f"{fmt(j.shapes_filt[0], 4)} ({j.shapes_filt[1]})")
        rows.append(row)
    L.append(table(["clip", *[o.title for o in ev.outputs]], rows))
    L.append(f"**Lag:** the default Shaper fed FaceState.neutral() for {motion.LAG_SETTLE_FRAMES} frames at 30 fps, "
             "then the same state with jawOpen and yaw stepped up and held: frames after the step until the output "
             f"passes 50 % / 90 % (0 = the step frame itself). Target <= {motion.TARGET_LAG_FRAMES} frame to 50 %.\n")
    rows = []
    for step, jaw, yaw in motion.LAG_STEPS:
        for ch, amp, unit in (("jawOpen", jaw, ""), ("yaw", yaw, " deg")):
            k50, k90 = res.lags[step][ch]
            rows.append([f"{ch} 0 -> {amp:g}{unit}", "> window" if k50 is None else k50,
                         "> window" if k90 is None else k90,
                         met(k50 is not None and k50 <= motion.TARGET_LAG_FRAMES)])
    L.append(table(["step", "frames to 50 %", "frames to 90 %", ""], rows))
    L.append("**Time:** `Solver.solve` per frame with a face, after 20 warm-up calls, one thread, perf_counter; "
             f"the fused mode includes the fusion. Target: median <= {T.SOLVE_MS} ms. Tracker rates: the tracker's "
             "own calls in the same run, decode excluded.\n")
    rows = []
    for o in ev.outputs:
        ms = solve_ms(ev, o.key)
        rows.append([o.title, fmt(float(np.median(ms)), 3) if len(ms) else "–",
                     fmt(float(np.percentile(ms, 95)), 3) if len(ms) else "–"])
    L.append(table(["output", "median (ms)", "p95 (ms)"], rows))
    n = sum(run.n for run in ev.runs.values())
    rates = []
    for b in ev.backends:
        secs = sum(run.tracks[b].seconds for run in ev.runs.values())
        rates.append(f"{TRACKER_NAMES[b]} {n / secs:.0f} frames/s" if secs else f"{TRACKER_NAMES[b]} –")
    decode = sum(run.decode_seconds for run in ev.runs.values())
    L.append("Tracking over all clips: " + ", ".join(rates)
             + (f"; decoding {n / decode:.0f} frames/s" if decode else "") + ".\n")
    return L


def _plots_section(res: Results) -> list[str]:
    L = ["## 7. Plots\n",
         "Per clip, " + ", ".join(o.title for o in res.ev.outputs) + " over time (raw, before the Shaper) on "
         "eyeBlinkLeft, eyeBlinkRight, jawOpen and mouthSmileLeft; dashed grey verticals = labelled frames; "
         "gaps = no face.\n"]
    L += [f"![{clip}](accuracy/{clip}.png)\n" for clip in res.plots]
    return L


def render(res: Results) -> str:
    ev = res.ev
    L = _header(res) + _summary(res)
    L += _labelled(res, "in_video", "1. Labelled frames in their video",
                   intro="Each labelled frame as a live tracker sees it: its clip run from frame 0 in tracking / "
                   "VIDEO mode with capture times index / fps, one Solver per clip (the automatic neutral "
                   "adapting), frame N's values taken.")
    if any(ev.as_photo.values()):
        L += _labelled(res, "as_photo", "2. The same frames as photos", scored_as="section 1",
                       intro="Frame N decoded and tracked on its own (static / IMAGE mode), a fresh "
                       "`Solver(w, h, blendshapes=mode, adapt=False)` per photo, time=None: no neutral learnt from "
                       "other frames, no lid history.")
    L += _r_section(res) + _rest_section(res) + _head_section(res) + _motion_section(res) + _plots_section(res)
    return "\n".join(L)


def write_report(path: Path, generated: str) -> str:
    """The generated text, the existing file's rendered-faces section (bench/truth/docs.py)
    if it has one, then `## Notes`, the marker and whatever followed the marker in the
    existing file (the hand-written notes)."""
    from bench.truth.docs import TRUTH_BEGIN, TRUTH_END

    tail, truth = "\n", ""
    if path.exists():
        old = path.read_text(encoding="utf-8")
        at = old.find(NOTES_MARKER)
        if at >= 0:
            tail = old[at + len(NOTES_MARKER):]
        # the rendered-faces section (python -m bench.truth.score --docs) is kept where it was
        a, b = old.find(TRUTH_BEGIN), old.find(TRUTH_END)
        if 0 <= a < b and (at < 0 or b < at):
            truth = "\n\n" + old[a:b + len(TRUTH_END)]
    text = generated.rstrip("\n") + truth + "\n\n## Notes\n\n" + NOTES_MARKER + tail
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return text
