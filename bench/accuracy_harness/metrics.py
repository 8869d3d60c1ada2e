"""Scores: label accuracy at fixed thresholds, ROC AUC between label classes, r
against the model, the rest level, and head angles against the model's matrix.

A reading is an output's (52,) ARKit-order blendshapes on one labelled frame, or
None where the tracker found no face there. `readings` maps (clip, frame) to one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from bridge.solve.neutral import SETTLED_SECONDS
from bridge.state import ARKIT_INDEX, ARKIT_NAMES, matrix_to_angles

from .data import UNSCORED, Label

# --- thresholds (stated in the report) -----------------------------------------
BLINK_CLOSED = 0.5    # an eye is closed when its eyeBlink >= this
JAW_OPEN = 0.25       # the mouth is open when jawOpen >= this
SMILE_ON = 0.5        # smiling when max(mouthSmileLeft, mouthSmileRight) >= this
MOVES = 0.3           # r is computed only where the model's channel spans this much (P1..P99)
SPAN_PERCENTILES = (1.0, 99.0)
SETTLE_SECONDS = SETTLED_SECONDS  # the rest level counts frames from here on: the automatic neutral has settled

ACCURACY_CATEGORIES = ("eyes", "mouth", "smile")
R_TARGET_CHANNELS = ("eyeBlinkLeft", "eyeBlinkRight", "jawOpen", "mouthSmileLeft", "mouthSmileRight")
R_CHANNELS = R_TARGET_CHANNELS + ("browInnerUp", "mouthFunnel", "mouthPucker")
AXES = ("yaw", "pitch", "roll")


def value(reading: np.ndarray, name: str) -> float:
    return float(reading[ARKIT_INDEX[name]])


def smile_value(reading: np.ndarray) -> float:
    return max(value(reading, "mouthSmileLeft"), value(reading, "mouthSmileRight"))


# =============================================================================== accuracy

def predicted(reading: np.ndarray | None) -> dict[str, str]:
    """The label each category would get from `reading` at the thresholds."""
    if reading is None:
        return {c: "no face" for c in ACCURACY_CATEGORIES}
    left = value(reading, "eyeBlinkLeft") >= BLINK_CLOSED
    right = value(reading, "eyeBlinkRight") >= BLINK_CLOSED
    eyes = {(True, True): "closed", (True, False): "left_closed", (False, True): "right_closed",
            (False, False): "open"}[left, right]
    return {"eyes": eyes,
            "mouth": "open" if value(reading, "jawOpen") >= JAW_OPEN else "closed",
            "smile": "1" if smile_value(reading) >= SMILE_ON else "0"}


def expected(label: Label, category: str) -> str | None:
    """What the prediction must be for `label` to count as right; None = not scored
    (`?`; eyes `half`, which no fixed threshold should be asked to call; mouth
    `lips_parted`, which sits between the classes)."""
    v = label.get(category)
    if v == UNSCORED:
        return None
    if category == "eyes":
        return None if v == "half" else "open" if v in ("open", "lowered") else v
    if category == "mouth":
        return v if v in ("open", "closed") else None
    return v


def judge(label: Label, reading: np.ndarray | None) -> dict[str, bool | None]:
    """Per accuracy category: right, wrong (a missing face is wrong) or None (not scored)."""
    p = predicted(reading)
    out = {}
    for c in ACCURACY_CATEGORIES:
        want = expected(label, c)
        out[c] = None if want is None else p[c] == want
    return out


@dataclass
class Miss:
    clip: str
    frame: int
    category: str
    label: str
    got: str
    values: str        # the channels that decided it


@dataclass
class Score:
    correct: int = 0
    total: int = 0
    misses: list = field(default_factory=list)

    @property
    def fraction(self) -> float:
        return self.correct / self.total if self.total else float("nan")

    def __str__(self) -> str:
        # One decimal: 58/60 is 96.7 %, which misses a 97 % target; "97 %" would hide that.
        return f"{self.correct}/{self.total} ({100.0 * self.fraction:.1f} %)" if self.total else "-"


def deciding_values(category: str, reading: np.ndarray | None) -> str:
    if reading is None:
        return "no face"
    if category == "eyes":
        return f"eyeBlink L {value(reading, 'eyeBlinkLeft'):.2f} R {value(reading, 'eyeBlinkRight'):.2f}"
    if category == "mouth":
        return f"jawOpen {value(reading, 'jawOpen'):.2f}"
    return (f"mouthSmile L {value(reading, 'mouthSmileLeft'):.2f} "
            f"R {value(reading, 'mouthSmileRight'):.2f}")


def accuracy(labels: list[Label], readings: dict) -> dict[str, Score]:
    """Per category: right / scored, and every miss."""
    scores = {c: Score() for c in ACCURACY_CATEGORIES}
    for label in labels:
        reading = readings[label.key]
        for c, ok in judge(label, reading).items():
            if ok is None:
                continue
            scores[c].total += 1
            scores[c].correct += ok
            if not ok:
                scores[c].misses.append(Miss(label.clip, label.frame, c, label.get(c),
                                             predicted(reading)[c], deciding_values(c, reading)))
    return scores


# =============================================================================== separability

def auc(positive, negative) -> float | None:
    """ROC AUC = P(a positive scores above a negative), ties counting half (the
    Mann-Whitney U statistic over all pairs). None when a class is empty."""
    p = np.asarray(positive, float).reshape(-1, 1)
    n = np.asarray(negative, float).reshape(1, -1)
    if not p.size or not n.size:
        return None
    wins = np.sum(p > n) + 0.5 * np.sum(p == n)
    return float(wins / (p.size * n.size))


# A frame without a face has no score; it ranks below every negative when it is a
# positive and above every positive when it is a negative, the AUC's "wrong".
NO_FACE_POSITIVE = -np.inf
NO_FACE_NEGATIVE = np.inf


@dataclass(frozen=True)
class Contrast:
    """Positives vs negatives of one category, ranked on one score."""
    name: str
    category: str
    positive: tuple
    negative: tuple
    channels: str      # the score, as written in the report

    def score(self, reading: np.ndarray) -> float:
        return CONTRAST_SCORES[self.name](reading)


CONTRAST_SCORES = {
    "mouth open": lambda r: value(r, "jawOpen"),
    "smile": smile_value,
    "brows raised": lambda r: value(r, "browInnerUp")
    + 0.5 * (value(r, "browOuterUpLeft") + value(r, "browOuterUpRight")),
    "brows lowered": lambda r: 0.5 * (value(r, "browDownLeft") + value(r, "browDownRight")),
    "pucker": lambda r: value(r, "mouthPucker"),
    "funnel": lambda r: value(r, "mouthFunnel"),
}

EYES_CONTRAST = Contrast("eyes closed", "eyes", ("closed",), ("open", "lowered"),
                         "that eye's eyeBlink, each eye a sample")
CONTRASTS = (
    EYES_CONTRAST,
    Contrast("mouth open", "mouth", ("open",), ("closed",), "jawOpen"),
    Contrast("smile", "smile", ("1",), ("0",), "max(mouthSmileLeft, mouthSmileRight)"),
    Contrast("brows raised", "brows", ("raised",), ("neutral",), "browInnerUp + mean(browOuterUpLeft/Right)"),
    Contrast("brows lowered", "brows", ("lowered",), ("neutral",), "mean(browDownLeft/Right)"),
    Contrast("pucker", "lips", ("pucker",), ("none",), "mouthPucker"),
    Contrast("funnel", "lips", ("funnel",), ("none",), "mouthFunnel"),
)
CONTRAST_NAMES = tuple(c.name for c in CONTRASTS)


def _eye_samples(labels: list[Label], readings: dict) -> tuple[list, list]:
    """Each eye is a sample: closed, or open (`open`, `lowered`, the other eye of a wink)."""
    pos, neg = [], []
    for label in labels:
        closed = {"closed": (True, True), "left_closed": (True, False), "right_closed": (False, True),
                  "open": (False, False), "lowered": (False, False)}.get(label.eyes)
        if closed is None:      # half or ?
            continue
        reading = readings[label.key]
        for is_closed, channel in zip(closed, ("eyeBlinkLeft", "eyeBlinkRight")):
            if reading is None:
                (pos if is_closed else neg).append(NO_FACE_POSITIVE if is_closed else NO_FACE_NEGATIVE)
            else:
                (pos if is_closed else neg).append(value(reading, channel))
    return pos, neg


def contrast_samples(contrast: Contrast, labels: list[Label], readings: dict) -> tuple[list, list]:
    if contrast is EYES_CONTRAST:
        return _eye_samples(labels, readings)
    pos, neg = [], []
    for label in labels:
        v = label.get(contrast.category)
        if v not in contrast.positive + contrast.negative:
            continue
        is_pos = v in contrast.positive
        reading = readings[label.key]
        if reading is None:
            (pos if is_pos else neg).append(NO_FACE_POSITIVE if is_pos else NO_FACE_NEGATIVE)
        else:
            (pos if is_pos else neg).append(contrast.score(reading))
    return pos, neg


@dataclass
class Separability:
    auc: float | None
    positives: int
    negatives: int


def separability(labels: list[Label], readings: dict) -> dict[str, Separability]:
    out = {}
    for c in CONTRASTS:
        pos, neg = contrast_samples(c, labels, readings)
        out[c.name] = Separability(auc(pos, neg), len(pos), len(neg))
    return out


# =============================================================================== r against the model

def span(series: np.ndarray) -> float:
    """How far a channel moves: its P1..P99 range (a stray frame does not count)."""
    if not len(series):
        return 0.0
    lo, hi = np.percentile(series, SPAN_PERCENTILES)
    return float(hi - lo)


def pearson(a: np.ndarray, b: np.ndarray) -> float | None:
    """Pearson r; None when either side is constant or there are too few frames."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return None
    return float(np.corrcoef(a, b)[0, 1])


@dataclass
class RCell:
    r: float | None       # None: not computed (the model's channel does not move) or undefined
    span: float           # the model's P1..P99 span on the compared frames
    n: int

    @property
    def moves(self) -> bool:
        return self.span >= MOVES


def r_against_model(shapes: np.ndarray, model: np.ndarray, *, require_motion: bool = True) -> dict[str, RCell]:
    """Per R_CHANNELS: r over the frames where both have a face; only where the model's
    channel moves (span >= MOVES) unless `require_motion` is False (pooled)."""
    both = np.isfinite(shapes).all(axis=1) & np.isfinite(model).all(axis=1)
    out = {}
    for name in R_CHANNELS:
        k = ARKIT_INDEX[name]
        s, m = shapes[both, k], model[both, k]
        cell = RCell(None, span(m), int(both.sum()))
        if cell.moves or not require_motion:
            cell.r = pearson(s, m)
        out[name] = cell
    return out


# =============================================================================== rest level

def is_neutral(label: Label) -> bool:
    """Eyes open, mouth closed or lips parted, no smile, brows neutral, lips none; a `?`
    anywhere leaves the frame out (it may not be neutral)."""
    return (label.eyes == "open" and label.mouth in ("closed", "lips_parted") and label.smile == "0"
            and label.brows == "neutral" and label.lips == "none")


@dataclass
class Rest:
    level: float | None     # the largest channel on the counted frames; None = none counted
    channel: str
    frame: int | None
    counted: int            # neutral frames after SETTLE_SECONDS with a face
    settling: int           # neutral frames before SETTLE_SECONDS (not counted)
    no_face: int            # neutral frames after it without a face (not counted)


def rest_level(labels: list[Label], readings: dict, fps: float) -> Rest:
    """Over one person's neutral frames after the automatic neutral has settled: the
    maximum over all 52 channels, and where."""
    best, channel, where = None, "-", None
    counted = settling = no_face = 0
    for label in labels:
        if not is_neutral(label):
            continue
        if label.frame / fps < SETTLE_SECONDS:
            settling += 1
            continue
        reading = readings[label.key]
        if reading is None:
            no_face += 1
            continue
        counted += 1
        k = int(np.argmax(reading))
        if best is None or reading[k] > best:
            best, channel, where = float(reading[k]), ARKIT_NAMES[k], label.frame
    return Rest(best, channel, where, counted, settling, no_face)


# =============================================================================== head

def rotation(matrix: np.ndarray) -> np.ndarray:
    """The nearest rotation to the matrix's 3x3 block (it carries no scale; this only
    removes float32 rounding)."""
    u, _, vt = np.linalg.svd(np.asarray(matrix, float)[:3, :3])
    r = u @ vt
    if np.linalg.det(r) < 0:
        u[:, 2] = -u[:, 2]
        r = u @ vt
    return r


def model_head_angles(matrix: np.ndarray) -> tuple[float, float, float]:
    """Yaw, pitch, roll (degrees, bridge/state.py conventions) from MediaPipe's facial
    transformation matrix. It maps the canonical face (X the subject's left, Y up, Z out
    of the face) into a right-handed camera space (X right, Y up, camera looking down
    -Z): the same pair of frames the solver's rigid fit uses, so no sign flips."""
    return matrix_to_angles(rotation(matrix))


def model_head_series(matrices: np.ndarray) -> np.ndarray:
    out = np.full((len(matrices), 3), np.nan)
    for i, m in enumerate(matrices):
        if np.isfinite(m).all():
            out[i] = model_head_angles(m)
    return out


def head_mad(head: np.ndarray, model_head: np.ndarray) -> tuple[np.ndarray, int]:
    """Mean absolute difference per axis over the frames both have, and how many."""
    both = np.isfinite(head).all(axis=1) & np.isfinite(model_head).all(axis=1)
    if not both.any():
        return np.full(3, np.nan), 0
    return np.mean(np.abs(head[both] - model_head[both]), axis=0), int(both.sum())
