"""Accuracy benchmark: the solver against labels and against MediaPipe's own model.

One command, one report (markdown, also printed to stdout) and one plot per clip:

    python bench/accuracy.py [--data DIR] [--out docs] [--clips d3,d9,d18,d6]
                             [--backend facemesh|landmarker]

  --backend: the tracker whose landmarks the Solver gets ("ours"): the legacy
  Face Mesh (default when the installed mediapipe has it) or the Tasks Face
  Landmarker (the default otherwise). The model side of every comparison is
  always the Face Landmarker (its blendshapes and transformation matrix).

  (a) labelled frames (../shared/data/frames/labels.csv): our tracker (static) +
      Solver, scored for eyes, mouth and smile with fixed thresholds;
  (b) agreement with MediaPipe's Face Landmarker on the clips, frame by frame:
      Pearson r and mean absolute difference of eight blendshapes, and the head
      angles against the model's facial transformation matrix;
  (c) the model's own scores on the labelled frames, beside the solver's;
  (d) jitter over each clip's stillest second, raw and after the default Shaper,
      and the Shaper's lag on a synthetic step;
  (e) the solver's time per frame;
  (f) a PNG plot per clip (solver vs model over time), drawn with OpenCV;
  (g) docs/accuracy.md, keeping the hand-written text after the notes marker.

Importable: nothing runs at import. Tests use labelled_frames(),
labelled_in_video() (both take `backend`) and labelled_scores(). Nothing is
cached; the data is read from --data and never copied.
"""

from __future__ import annotations

import argparse
import csv
import datetime as _dt
import inspect
import math
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bridge.state import ARKIT_INDEX, ARKIT_NAMES, FaceState, angles_to_quat, matrix_to_angles, quat_to_matrix  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "data"
DEFAULT_OUT = ROOT / "docs"
DEFAULT_CLIPS = ("d3", "d9", "d18", "d6")
MODEL_FILE = Path("models") / "face_landmarker.task"
NOTES_MARKER = "<!-- notes: written by hand -->"

# --- thresholds (stated in the report) -----------------------------------------
BLINK_CLOSED = 0.5    # an eye is closed when its eyeBlink channel is >= this
JAW_OPEN = 0.3        # the mouth is open when jawOpen >= this (as tests/test_solve.py)
SMILE_ON = 0.5        # smiling when max(mouthSmileLeft, mouthSmileRight) >= this

# --- targets -------------------------------------------------------------------
TARGET_EYES = 1.0
TARGET_MOUTH = 1.0
TARGET_SMILE = 0.95
TARGET_R = 0.9
TARGET_HEAD_DEG = 2.0
TARGET_JITTER_DEG = 0.2
TARGET_JITTER_SHAPE = 0.02
TARGET_LAG_FRAMES = 1

# A series whose standard deviation is below this is "flat": r is not computed for it
# (the model's cheekSquint / noseSneer, say, stay within 1e-4 of 0 on every frame).
FLAT_STD = 1e-3

COMPARED = ("eyeBlinkLeft", "eyeBlinkRight", "jawOpen", "mouthSmileLeft", "mouthSmileRight",
            "browInnerUp", "mouthFunnel", "mouthPucker")
R_TARGET_CHANNELS = ("eyeBlinkLeft", "eyeBlinkRight", "jawOpen", "mouthSmileLeft", "mouthSmileRight")
LABEL_CHANNELS = ("eyeBlinkLeft", "eyeBlinkRight", "jawOpen", "mouthSmileLeft", "mouthSmileRight")
AXES = ("yaw", "pitch", "roll")
PLOT_CHANNELS = ("eyeBlinkLeft", "eyeBlinkRight", "jawOpen", "mouthSmileLeft")
CATEGORIES = ("eyes", "mouth", "smile")

# Synthetic steps for the lag measure: (jawOpen step, head yaw step in degrees).
LAG_STEPS = (("large", 1.0, 20.0), ("small", 0.2, 5.0))
LAG_SETTLE_FRAMES = 30   # neutral frames before the step
LAG_AFTER_FRAMES = 60    # frames watched after it


# Trackers whose landmarks the Solver can be scored on (--backend).
BACKENDS = ("facemesh", "landmarker")
TRACKER_NAMES = {"facemesh": "Face Mesh", "landmarker": "Face Landmarker"}


def default_backend() -> str:
    """facemesh when the installed mediapipe has it (0.10.21), else landmarker."""
    from bridge.tracking import facemesh_available

    return "facemesh" if facemesh_available() else "landmarker"


def resolve_backend(backend: str | None) -> str:
    """`backend` checked, or default_backend() for None."""
    if backend is None:
        return default_backend()
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend '{backend}' (choose {', '.join(BACKENDS)})")
    return backend


def open_ours(backend: str, data: Path = DEFAULT_DATA, *, static: bool = False):
    """A started tracker for our landmarks: the legacy Face Mesh, or the Face Landmarker
    with DATA's model (never downloaded). Tracking / VIDEO mode unless `static`."""
    from bridge.tracking import open_tracker

    if resolve_backend(backend) == "facemesh":
        return open_tracker("facemesh", static=static)
    return open_model(data / MODEL_FILE, static=static)


def open_model(model_path: Path, *, static: bool = False):
    """The reference: the Face Landmarker (its scores and matrix), IMAGE or VIDEO mode."""
    from bridge.tracking import open_tracker

    return open_tracker("landmarker", model_path=str(model_path), static=static, download=False)


def met(ok: bool | None) -> str:
    if ok is None:
        return "n/a"
    return "met" if ok else "**missed**"


def clip_path(data: Path, clip: str) -> Path:
    """`d3` -> DATA/video/liveportrait_d3.mp4; a file name in video/ or a path also works."""
    for candidate in (data / "video" / f"liveportrait_{clip}.mp4", data / "video" / clip, Path(clip)):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"no video for clip '{clip}' (looked for {data / 'video' / f'liveportrait_{clip}.mp4'})")


def _frame(index, t, image):
    from bridge.sources import Frame

    h, w = image.shape[:2]
    return Frame(index, t, image, width=w, height=h)


def _solve_takes_time() -> bool:
    from bridge.solve import Solver

    try:
        return "time" in inspect.signature(Solver.solve).parameters
    except (TypeError, ValueError):
        return False


def _values(shapes: np.ndarray | dict | None, names=LABEL_CHANNELS) -> dict[str, float] | None:
    if shapes is None:
        return None
    if isinstance(shapes, dict):
        return {n: float(shapes.get(n, float("nan"))) for n in names}
    return {n: float(shapes[ARKIT_INDEX[n]]) for n in names}


def model_vector(scores: dict[str, float] | None) -> np.ndarray:
    """The model's blendshape dict as a (52,) ARKit-order vector (NaN where it has none)."""
    v = np.full(len(ARKIT_NAMES), np.nan)
    if scores:
        for name, value in scores.items():
            i = ARKIT_INDEX.get(name)
            if i is not None:
                v[i] = value
    return v


# =============================================================================== matrix -> angles

def model_head_angles(matrix: np.ndarray) -> tuple[float, float, float]:
    """Yaw, pitch, roll (degrees, bridge/state.py conventions) from MediaPipe's facial
    transformation matrix.

    The matrix maps the canonical face (cm; X the subject's own left, Y up, Z out of
    the face) into MediaPipe's metric camera space (right-handed, X right, Y up, the
    camera at the origin looking down -Z). That is the same pair of frames the
    solver's rigid fit uses (canonical face -> camera frame x right, y up, z towards
    the camera), so the rotation block goes straight into matrix_to_angles, no sign
    flips; it is re-orthonormalised first (it carries no scale, this only removes
    float32 rounding).
    """
    return matrix_to_angles(_rotation(matrix))


def model_head_angles_line_of_sight(matrix: np.ndarray) -> tuple[float, float, float]:
    """The model's head angles relative to the line of sight (face -> camera) instead
    of the camera's optical axis.

    The model's camera is a perspective one: a face below the image centre that looks
    straight into the lens is pitched up in camera space. The solver works on image
    coordinates and reads such a face as frontal ("a face looking straight into the
    camera has the identity rotation", bridge/state.py). Here the model's rotation is
    taken relative to L = Ry(yaw_los) Rx(-pitch_los), the rotation that turns +Z onto
    the direction from the face to the camera (-t / |t|, t = the matrix's
    translation): angles of L^T R.
    """
    t = np.asarray(matrix, float)[:3, 3]
    v = -t / max(float(np.linalg.norm(t)), 1e-9)
    yaw = math.degrees(math.atan2(v[0], v[2]))
    pitch = math.degrees(math.asin(max(-1.0, min(1.0, v[1]))))
    los = quat_to_matrix(angles_to_quat(yaw, pitch, 0.0))
    return matrix_to_angles(los.T @ _rotation(matrix))


def _rotation(matrix: np.ndarray) -> np.ndarray:
    u, _, vt = np.linalg.svd(np.asarray(matrix, float)[:3, :3])
    r = u @ vt
    if np.linalg.det(r) < 0:
        u[:, 2] = -u[:, 2]
        r = u @ vt
    return r


# =============================================================================== (a) + (c) labelled frames

@dataclass
class LabelledFrame:
    file: str
    eyes: str
    mouth: str
    smile: int
    note: str
    eye_side: str | None                  # "left"/"right" when the note names the closed eye
    solver: dict[str, float] | None       # LABEL_CHANNELS values; None = no face found
    model: dict[str, float] | None = None


def read_labels(data: Path) -> list[dict]:
    with open(data / "frames" / "labels.csv", newline="") as f:
        return list(csv.DictReader(f))


def _eye_side(note: str) -> str | None:
    n = note.lower().replace("-", " ")
    if "left eye" in n:
        return "left"
    if "right eye" in n:
        return "right"
    return None


def labelled_frames(data: Path = DEFAULT_DATA, *, with_model: bool = False,
                    backend: str | None = None) -> list[LabelledFrame]:
    """Run our tracker (`backend`, static / IMAGE mode) + Solver, and optionally the Face
    Landmarker (IMAGE mode) for the model's scores, on every labelled frame."""
    import cv2

    from bridge.solve import Solver

    backend = resolve_backend(backend)
    rows = read_labels(data)
    out = []
    tracker = open_ours(backend, data, static=True)
    # On the landmarker backend our tracker is the model: its scores come with our landmarks.
    model = open_model(data / MODEL_FILE, static=True) if with_model and backend != "landmarker" else None
    try:
        for row in rows:
            image = cv2.imread(str(data / "frames" / row["file"]))
            if image is None:
                raise FileNotFoundError(data / "frames" / row["file"])
            h, w = image.shape[:2]
            frame = _frame(0, 0.0, image)
            tracked = tracker.track(frame)
            solver = None
            if tracked.landmarks is not None:
                solver = _values(Solver(w, h).solve(tracked.landmarks, (w, h)).blendshapes)
            scores = None
            if with_model:
                found = model.track(frame) if model is not None else tracked
                scores = _values(found.blendshapes) if found.blendshapes else None
            out.append(LabelledFrame(
                file=row["file"], eyes=row["eyes"].strip(), mouth=row["mouth"].strip(),
                smile=int(row["smile"]), note=row.get("note", ""), eye_side=_eye_side(row.get("note", "")),
                solver=solver, model=scores))
    finally:
        tracker.close()
        if model is not None:
            model.close()
    return out


def labelled_in_video(data: Path = DEFAULT_DATA, tracked: dict | None = None,
                      backend: str | None = None) -> list[LabelledFrame]:
    """The labelled frames as a live tracker sees them: each is frame N of its clip,
    so run the clip from its start through N (our tracker, `backend`, in tracking /
    VIDEO mode, the Solver with capture times) and take frame N's values. `tracked`
    maps clip name -> (Clip, Solved) already computed by run() on the same backend;
    clips not in it are tracked here (solver only; the model's scores too on the
    landmarker backend, whose tracker is the model)."""
    from bridge.solve import Solver
    from bridge.sources import open_video

    backend = resolve_backend(backend)
    rows = read_labels(data)
    tracked = dict(tracked or {})
    values: dict[tuple[str, int], tuple] = {}
    for clip in sorted({r["file"].split("_")[0] for r in rows}):
        wanted = {int(r["frame_index"]) for r in rows if r["file"].startswith(clip + "_")}
        if clip in tracked:
            c, solved = tracked[clip]
            for i in wanted:
                model = c.model_shapes[i]
                values[clip, i] = (_values(solved.shapes[i]) if np.isfinite(solved.shapes[i]).all() else None,
                                   _values(model) if np.isfinite(model[:51]).all() else None)
            continue
        tracker, solver = open_ours(backend, data), None
        try:
            with open_video(str(clip_path(data, clip)), paced=False) as source:
                for frame in source:
                    if frame.index > max(wanted):
                        break
                    solver = solver or Solver(frame.width, frame.height)
                    found = tracker.track(frame)
                    state = None
                    if found.landmarks is not None:
                        state = solver.solve(found.landmarks, (frame.width, frame.height), time=frame.time)
                    if frame.index in wanted:
                        values[clip, frame.index] = (_values(state.blendshapes) if state else None,
                                                     _values(found.blendshapes) if found.blendshapes else None)
        finally:
            tracker.close()
    out = []
    for row in rows:
        solver_values, model_values = values[row["file"].split("_")[0], int(row["frame_index"])]
        out.append(LabelledFrame(
            file=row["file"], eyes=row["eyes"].strip(), mouth=row["mouth"].strip(), smile=int(row["smile"]),
            note=row.get("note", ""), eye_side=_eye_side(row.get("note", "")),
            solver=solver_values, model=model_values))
    return out


def predict(values: dict[str, float] | None) -> dict[str, str]:
    """Predicted eyes / mouth / smile from channel values, with the report's thresholds."""
    if values is None:
        return {c: "no face" for c in CATEGORIES}
    left = values["eyeBlinkLeft"] >= BLINK_CLOSED
    right = values["eyeBlinkRight"] >= BLINK_CLOSED
    eyes = "closed" if left and right else "one_closed (left)" if left else "one_closed (right)" if right else "open"
    mouth = "open" if values["jawOpen"] >= JAW_OPEN else "closed"
    smile = "1" if max(values["mouthSmileLeft"], values["mouthSmileRight"]) >= SMILE_ON else "0"
    return {"eyes": eyes, "mouth": mouth, "smile": smile}


def judge(frame: LabelledFrame, side: str = "solver") -> dict[str, bool | None]:
    """Per category: True (right), False (wrong, or no face) or None (excluded)."""
    p = predict(getattr(frame, side))
    if p["eyes"] == "no face":
        return {"eyes": False, "mouth": False if frame.mouth != "lips_parted" else None, "smile": False}
    if frame.eyes == "closed":
        eyes = p["eyes"] == "closed"
    elif frame.eyes == "one_closed":
        eyes = p["eyes"].startswith("one_closed") and (frame.eye_side is None or frame.eye_side in p["eyes"])
    elif frame.eyes in ("open", "lowered"):
        eyes = p["eyes"] == "open"
    else:
        eyes = None
    mouth = None if frame.mouth == "lips_parted" else (p["mouth"] == frame.mouth)
    smile = p["smile"] == str(frame.smile)
    return {"eyes": eyes, "mouth": mouth, "smile": smile}


@dataclass
class Score:
    correct: int
    total: int
    misses: list[str]

    @property
    def fraction(self) -> float:
        return self.correct / self.total if self.total else float("nan")

    def __str__(self) -> str:
        return f"{self.correct}/{self.total} ({100.0 * self.fraction:.0f} %)" if self.total else "-"


def labelled_scores(frames: list[LabelledFrame], side: str = "solver") -> dict[str, Score]:
    """Per category: correct / scored frames and the files missed."""
    scores = {}
    for cat in CATEGORIES:
        correct, total, misses = 0, 0, []
        for f in frames:
            ok = judge(f, side)[cat]
            if ok is None:
                continue
            total += 1
            correct += ok
            if not ok:
                misses.append(f.file)
        scores[cat] = Score(correct, total, misses)
    return scores


LABEL_TARGETS = {"eyes": TARGET_EYES, "mouth": TARGET_MOUTH, "smile": TARGET_SMILE}


# =============================================================================== (b) tracking the clips

@dataclass
class Clip:
    name: str
    path: Path
    fps: float
    width: int
    height: int
    landmarks: list                # ours (the backend's): (478, 3) or None per frame
    model_landmarks: list          # (478, 3) or None per frame
    model_shapes: np.ndarray       # (n, 52) NaN where the model found no face
    model_matrix: np.ndarray       # (n, 4, 4) NaN where none
    seconds: dict = field(default_factory=dict)   # decode / facemesh / landmarker
    backend: str = "facemesh"      # which tracker gave `landmarks`

    @property
    def n(self) -> int:
        return len(self.landmarks)


def track_clip(path: Path, model_path: Path, name: str | None = None, backend: str | None = None) -> Clip:
    """Decode the clip once; run our tracker (`backend`: Face Mesh in tracking mode) and
    the Face Landmarker (VIDEO mode) on every frame. On the landmarker backend the
    model is our tracker: it runs once and gives both."""
    import cv2

    backend = resolve_backend(backend)
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise FileNotFoundError(f"cannot open {path}")
    fps = cap.get(cv2.CAP_PROP_FPS)
    fps = float(fps) if fps and math.isfinite(fps) and fps > 0 else 30.0
    mesh = open_ours("facemesh") if backend == "facemesh" else None
    try:
        model = open_model(model_path)
    except BaseException:
        if mesh is not None:
            mesh.close()
        raise
    fm, ml, shapes, mats = [], [], [], []
    secs = {"decode": 0.0, "landmarker": 0.0}
    if mesh is not None:
        secs["facemesh"] = 0.0
    w = h = 0
    index = 0
    try:
        while True:
            t0 = time.perf_counter()
            ok, image = cap.read()
            t1 = time.perf_counter()
            if not ok:
                break
            secs["decode"] += t1 - t0
            h, w = image.shape[:2]
            frame = _frame(index, index / fps, image)
            a = mesh.track(frame) if mesh is not None else None
            t2 = time.perf_counter()
            b = model.track(frame)
            t3 = time.perf_counter()
            if mesh is not None:
                secs["facemesh"] += t2 - t1
            secs["landmarker"] += t3 - t2
            fm.append(a.landmarks if a is not None else b.landmarks)
            ml.append(b.landmarks)
            shapes.append(model_vector(b.blendshapes) if b.blendshapes else np.full(len(ARKIT_NAMES), np.nan))
            mats.append(np.asarray(b.matrix, float) if b.matrix is not None else np.full((4, 4), np.nan))
            index += 1
    finally:
        cap.release()
        if mesh is not None:
            mesh.close()
        model.close()
    return Clip(name or path.stem, path, fps, w, h, fm, ml,
                np.array(shapes).reshape(-1, len(ARKIT_NAMES)), np.array(mats).reshape(-1, 4, 4), secs, backend)


@dataclass
class Solved:
    shapes: np.ndarray          # (n, 52) raw solver output, NaN without a face
    head: np.ndarray            # (n, 3) yaw, pitch, roll
    filt_shapes: np.ndarray     # (n, 52) after the default Shaper (NaN where no face)
    filt_head: np.ndarray       # (n, 3)
    model_head: np.ndarray      # (n, 3) from the matrix (direct)
    model_head_los: np.ndarray  # (n, 3) relative to the line of sight
    head_on_model_points: np.ndarray  # (n, 3) the Solver run on the landmarker's landmarks
    solve_ms: np.ndarray        # per solved frame
    with_time: bool


def solve_clip(clip: Clip) -> Solved:
    """Solver (raw, per frame, one Solver per clip, capture times passed when the
    solver takes them), then the default Shaper over the raw states."""
    from bridge.shape import ShapeOptions, Shaper
    from bridge.solve import Solver

    n, size = clip.n, (clip.width, clip.height)
    with_time = _solve_takes_time()
    nan52, nan3 = np.full((n, 52), np.nan), np.full((n, 3), np.nan)
    shapes, head = nan52.copy(), nan3.copy()
    filt_shapes, filt_head = nan52.copy(), nan3.copy()
    model_head, model_los, head_mp = nan3.copy(), nan3.copy(), nan3.copy()

    # Warm up (first calls pay for lazy set-up), then time each call.
    warm = Solver(*size)
    for pts in [p for p in clip.landmarks if p is not None][:20]:
        warm.solve(pts, size)

    solver, shaper = Solver(*size), Shaper(ShapeOptions())
    states, times = [], []
    for i, pts in enumerate(clip.landmarks):
        t = i / clip.fps
        state = None
        if pts is not None:
            start = time.perf_counter()
            state = solver.solve(pts, size, time=t) if with_time else solver.solve(pts, size)
            times.append(time.perf_counter() - start)
            shapes[i], head[i] = state.blendshapes, state.head_angles
        states.append(state)
    for i, state in enumerate(states):
        shaped, _ = shaper.update(i / clip.fps, state)
        if state is not None:
            filt_shapes[i], filt_head[i] = shaped.blendshapes, shaped.head_angles

    other = Solver(*size)
    for i in range(n):
        m = clip.model_matrix[i]
        if np.isfinite(m).all():
            model_head[i] = model_head_angles(m)
            model_los[i] = model_head_angles_line_of_sight(m)
        if clip.model_landmarks[i] is not None:
            head_mp[i] = other.solve(clip.model_landmarks[i], size).head_angles
    return Solved(shapes, head, filt_shapes, filt_head, model_head, model_los, head_mp,
                  np.array(times) * 1000.0, with_time)


def pearson(a: np.ndarray, b: np.ndarray) -> float | None:
    """Pearson r, or None when either side is constant (r undefined)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if len(a) < 3 or np.std(a) < FLAT_STD or np.std(b) < FLAT_STD:
        return None
    return float(np.corrcoef(a, b)[0, 1])


@dataclass
class Pair:
    r: float | None
    mad: float
    bias: float          # mean(solver - model)
    n: int
    flat: str = ""       # "solver" / "model" / "both" when r is undefined


def compare(solver: np.ndarray, model: np.ndarray) -> Pair:
    ok = np.isfinite(solver) & np.isfinite(model)
    s, m = solver[ok], model[ok]
    if not len(s):
        return Pair(None, float("nan"), float("nan"), 0, "no frames")
    flat = ""
    if np.std(s) < FLAT_STD and np.std(m) < FLAT_STD:
        flat = "both"
    elif np.std(s) < FLAT_STD:
        flat = "solver"
    elif np.std(m) < FLAT_STD:
        flat = "model"
    return Pair(pearson(s, m), float(np.mean(np.abs(s - m))), float(np.mean(s - m)), int(len(s)), flat)


def frame_counts(clip: Clip) -> dict[str, int]:
    fm = np.array([p is not None for p in clip.landmarks])
    md = np.isfinite(clip.model_shapes).any(axis=1) & np.isfinite(clip.model_matrix.reshape(clip.n, -1)).all(axis=1)
    return {"frames": clip.n, "no_face_solver": int((~fm).sum()), "no_face_model": int((~md).sum()),
            "skipped": int((~(fm & md)).sum()), "compared": int((fm & md).sum())}


def _both(clip: Clip, solved: Solved) -> np.ndarray:
    fm = np.isfinite(solved.shapes).all(axis=1)
    md = np.isfinite(solved.model_head).all(axis=1) & np.isfinite(clip.model_shapes).any(axis=1)
    return fm & md


def agreement(clip: Clip, solved: Solved) -> dict:
    """Per channel (COMPARED and every other ARKit channel) and per head axis, on frames
    where both sides found a face."""
    both = _both(clip, solved)
    shapes = {name: compare(solved.shapes[both, ARKIT_INDEX[name]], clip.model_shapes[both, ARKIT_INDEX[name]])
              for name in ARKIT_NAMES if name != "tongueOut"}
    head = {axis: compare(solved.head[both, k], solved.model_head[both, k]) for k, axis in enumerate(AXES)}
    los = {axis: compare(solved.head[both, k], solved.model_head_los[both, k]) for k, axis in enumerate(AXES)}
    ok_mp = both & np.isfinite(solved.head_on_model_points).all(axis=1)
    mp = {axis: compare(solved.head_on_model_points[ok_mp, k], solved.model_head[ok_mp, k])
          for k, axis in enumerate(AXES)}
    slope = {}
    for k, axis in enumerate(AXES):
        m = solved.model_head[both, k]
        slope[axis] = float(np.polyfit(m, solved.head[both, k], 1)[0]) if both.sum() > 2 and np.std(m) > 1e-6 else None
    return {"shapes": shapes, "head": head, "head_los": los, "head_model_points": mp, "slope": slope}


def convention_check(clip: Clip, solved: Solved) -> dict | None:
    """The sign check of the matrix conversion on one clip: the most frontal frame and
    the most turned one (by the model's direct angles), solver vs model, and r of the
    solver's yaw against the direct conversion and against the transposed matrix's."""
    both = np.flatnonzero(_both(clip, solved))
    if len(both) < 3:
        return None
    frontal = int(both[np.argmin(np.linalg.norm(solved.model_head[both], axis=1))])
    turned = int(both[np.argmax(np.abs(solved.model_head[both, 0]))])
    transposed = np.array([matrix_to_angles(_rotation(clip.model_matrix[i]).T) for i in both])
    r = {}
    for k, axis in enumerate(AXES):
        r[axis] = (pearson(solved.head[both, k], solved.model_head[both, k]),
                   pearson(solved.head[both, k], transposed[:, k]))
    return {"clip": clip.name, "frontal": (frontal, solved.head[frontal], solved.model_head[frontal]),
            "turned": (turned, solved.head[turned], solved.model_head[turned]), "r": r}


def pooled(clips: list[Clip], solveds: list[Solved]) -> tuple[Clip, Solved]:
    """All clips' frames as one (for pooled statistics)."""
    cat = lambda xs: np.concatenate(xs, axis=0)  # noqa: E731
    clip = Clip("pooled", Path("-"), 30.0, 0, 0,
                sum((c.landmarks for c in clips), []), sum((c.model_landmarks for c in clips), []),
                cat([c.model_shapes for c in clips]), cat([c.model_matrix for c in clips]),
                backend=clips[0].backend if clips else "facemesh")
    s = Solved(*(cat([getattr(x, f) for x in solveds]) for f in
                 ("shapes", "head", "filt_shapes", "filt_head", "model_head", "model_head_los",
                  "head_on_model_points", "solve_ms")), with_time=solveds[0].with_time)
    return clip, s


# =============================================================================== (d) jitter and lag

def stillest_window(series: np.ndarray, length: int) -> int | None:
    """Start of the `length`-frame window whose summed frame-to-frame change (the norm
    of the change of a row of `series`, e.g. (yaw, pitch, roll) in degrees) is
    smallest; windows with a NaN anywhere (no face) don't count. None if none does."""
    series = np.asarray(series, float).reshape(len(series), -1)
    n = len(series)
    if n < length or length < 2:
        return None
    step = np.linalg.norm(np.diff(series, axis=0), axis=1)   # NaN where a face is missing
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


_MODEL_HAS = np.array([n != "tongueOut" for n in ARKIT_NAMES])   # the model has no tongueOut


def detrended_std(x: np.ndarray) -> np.ndarray:
    """Per column: the standard deviation of what is left after a least-squares
    quadratic over the window (frame index) is taken away: slow real motion (a drift,
    a turn) goes into the quadratic, frame-to-frame jitter stays."""
    x = np.asarray(x, float).reshape(len(x), -1)
    t = np.arange(len(x), dtype=float)
    t = (t - t.mean()) / max(t.std(), 1e-9)
    basis = np.stack([np.ones_like(t), t, t * t], axis=1)
    coef, *_ = np.linalg.lstsq(basis, x, rcond=None)
    return np.std(x - basis @ coef, axis=0)


@dataclass
class ShapeJitter:
    start: int
    raw_mean: float                # mean std over the live channels
    raw_max: tuple[float, str]     # largest std over the live channels, and which
    filt_mean: float
    filt_max: tuple[float, str]
    model_max: tuple[float, str]   # the model's largest std over the same window
    filt_detr_mean: float          # filtered, detrended (detrended_std)
    filt_detr_max: tuple[float, str]


@dataclass
class Jitter:
    start: int                     # the head-stillest window
    length: int
    motion: float                  # deg, summed frame-to-frame head change in it
    head_raw: np.ndarray           # (3,) std, degrees
    head_filt: np.ndarray
    head_raw_detr: np.ndarray      # (3,) detrended_std
    head_filt_detr: np.ndarray
    model_head: np.ndarray         # (3,) std of the model's (direct) angles, same window
    shapes: ShapeJitter            # blendshapes over the head-stillest window
    shapes_still: ShapeJitter | None   # ... over the model's expression-stillest window


def _shape_jitter(solved: Solved, model_shapes: np.ndarray, start: int, length: int, live: np.ndarray) -> ShapeJitter:
    w = slice(start, start + length)

    def stats(x, channels, spread=lambda v: np.std(v, axis=0)):
        sd = spread(x[w])
        k = int(np.argmax(np.where(channels, sd, -1.0)))
        return float(np.mean(sd[channels])), (float(sd[k]), ARKIT_NAMES[k])

    raw_mean, raw_max = stats(solved.shapes, live)
    filt_mean, filt_max = stats(solved.filt_shapes, live)
    ms = model_shapes[w]
    model_max = stats(np.nan_to_num(model_shapes), _MODEL_HAS)[1] if np.isfinite(ms[:, _MODEL_HAS]).all() \
        else (float("nan"), "-")
    detr_mean, detr_max = stats(solved.filt_shapes, live, detrended_std)
    return ShapeJitter(start, raw_mean, raw_max, filt_mean, filt_max, model_max, detr_mean, detr_max)


def jitter(solved: Solved, fps: float, model_shapes: np.ndarray) -> Jitter | None:
    """Standard deviations over the stillest second.

    The window is the one with the least head motion in the raw solver output. The
    blendshapes are also measured over a second window, the one where the *model's*
    blendshapes change least (with a solver face in every frame): an expression
    change (a blink) in the head-stillest second is motion, not jitter, and choosing
    by the model keeps the solver's own noise out of the choice.
    "Live" channels: those the raw solver sets above 0 somewhere in the clip (the
    always-0 ones would only pull the mean down)."""
    length = int(round(fps))
    start = stillest_window(solved.head, length)
    if start is None:
        return None
    w = slice(start, start + length)
    live = np.nanmax(np.where(np.isfinite(solved.shapes), solved.shapes, 0.0), axis=0) > 0
    if not live.any():
        live[:] = True
    motion = float(np.sum(np.linalg.norm(np.diff(solved.head[w], axis=0), axis=1)))
    mh = solved.model_head[w]
    model_head = np.std(mh, axis=0) if np.isfinite(mh).all() else np.full(3, np.nan)
    expr = np.concatenate([model_shapes[:, _MODEL_HAS], solved.head * 0.0], axis=1)  # NaN: no face either side
    expr_start = stillest_window(expr, length)
    return Jitter(start, length, motion, np.std(solved.head[w], axis=0), np.std(solved.filt_head[w], axis=0),
                  detrended_std(solved.head[w]), detrended_std(solved.filt_head[w]), model_head, _shape_jitter(solved, model_shapes, start, length, live),
                  _shape_jitter(solved, model_shapes, expr_start, length, live) if expr_start is not None else None)


STILL_PHOTOS = ("skimage_astronaut.png", "liveportrait_d8.jpg", "liveportrait_d30.jpg", "liveportrait_d38.jpg",
                "deepface_img11.jpg", "deepface_img17.jpg")   # one face each
STILL_FRAMES = 120          # 4 s at 30 fps
STILL_SETTLE = 20           # frames left out while the tracker and filter settle
SENSOR_NOISE = 2.0          # grey levels of Gaussian noise per pixel and frame, like a webcam
STILL_MAX_SIDE = 720        # photos are scaled to a webcam-like size first


@dataclass
class StillJitter:
    photo: str
    head_raw: np.ndarray        # (3,) std, degrees
    head_filt: np.ndarray
    shapes_raw: tuple           # (std, channel) of the worst channel
    shapes_filt: tuple


def still_jitter(data: Path = DEFAULT_DATA, photos=STILL_PHOTOS, seed: int = 0,
                 backend: str | None = None) -> list[StillJitter]:
    """Jitter with a known truth: a still photo is a face that does not move. Each
    frame is the photo plus fresh sensor noise, tracked as video (our tracker,
    `backend`, in tracking / VIDEO mode), solved with capture times and shaped with
    the default filter; every movement of the output is then jitter."""
    import cv2

    from bridge.shape import ShapeOptions, Shaper
    from bridge.solve import Solver

    backend = resolve_backend(backend)
    rng = np.random.default_rng(seed)
    out = []
    for photo in photos:
        image = cv2.imread(str(data / "stills" / photo))
        if image is None:
            continue
        scale = STILL_MAX_SIDE / max(image.shape[:2])
        if scale < 1:
            image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        h, w = image.shape[:2]
        tracker, solver, shaper = open_ours(backend, data), Solver(w, h), Shaper(ShapeOptions())
        raw_head, raw_shapes, filt_head, filt_shapes = [], [], [], []
        try:
            for i in range(STILL_FRAMES):
                noisy = np.clip(image + rng.normal(0.0, SENSOR_NOISE, image.shape), 0, 255).astype(np.uint8)
                found = tracker.track(_frame(i, i / 30.0, noisy))
                state = None
                if found.landmarks is not None:
                    state = solver.solve(found.landmarks, (w, h), time=i / 30.0)
                shaped, _ = shaper.update(i / 30.0, state)
                if state is not None and i >= STILL_SETTLE:
                    raw_head.append(state.head_angles)
                    raw_shapes.append(state.blendshapes)
                    filt_head.append(shaped.head_angles)
                    filt_shapes.append(shaped.blendshapes)
        finally:
            tracker.close()
        if len(raw_head) < STILL_FRAMES // 2:
            continue

        def worst(shapes):
            sd = np.std(np.array(shapes), axis=0)
            k = int(np.argmax(sd))
            return float(sd[k]), ARKIT_NAMES[k]

        out.append(StillJitter(photo, np.std(raw_head, axis=0), np.std(filt_head, axis=0),
                               worst(raw_shapes), worst(filt_shapes)))
    return out


def _default_filter() -> str:
    from bridge.shape import DEFAULT_BETA, DEFAULT_MIN_CUTOFF

    return f"{DEFAULT_MIN_CUTOFF:g} Hz, beta {DEFAULT_BETA:g}"


def step_lag(jaw_step: float, yaw_step: float, fps: float = 30.0, options=None) -> dict[str, tuple]:
    """Frames until the default Shaper's output passes 50 % and 90 % of a step.

    LAG_SETTLE_FRAMES neutral FaceStates (FaceState.neutral()) at t = i / fps, then
    from frame t0 = LAG_SETTLE_FRAMES on the same state with jawOpen = jaw_step and
    head yaw = yaw_step degrees, held for LAG_AFTER_FRAMES. Returned per channel:
    (k50, k90), k = frames after t0 of the first output >= that fraction of the step;
    0 = the step frame itself already passes it. None = not within LAG_AFTER_FRAMES.
    """
    from bridge.shape import ShapeOptions, Shaper

    shaper = Shaper(options or ShapeOptions())
    neutral = FaceState.neutral()
    stepped = FaceState.neutral()
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
        for k, v in enumerate(trace):
            if v >= level * step:
                return k
        return None

    return {"jawOpen": (first(jaw, jaw_step, 0.5), first(jaw, jaw_step, 0.9)),
            "yaw": (first(yaw, yaw_step, 0.5), first(yaw, yaw_step, 0.9))}


# =============================================================================== (f) plots

COLOR_SOLVER = (0, 128, 255)    # BGR orange
COLOR_MODEL = (190, 110, 30)    # BGR blue
COLOR_GRID = (225, 225, 225)
COLOR_AXIS = (90, 90, 90)
COLOR_TEXT = (30, 30, 30)
FONT = 0  # cv2.FONT_HERSHEY_SIMPLEX


def _nice_step(span: float, ticks: int) -> float:
    raw = max(span, 1e-9) / max(ticks, 1)
    mag = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 5, 10):
        if raw <= m * mag:
            return m * mag
    return 10 * mag


def _segments(xs_px: np.ndarray, ys_px: np.ndarray) -> list[np.ndarray]:
    ok = np.isfinite(ys_px)
    segs, cur = [], []
    for x, y, good in zip(xs_px, ys_px, ok):
        if good:
            cur.append((int(round(x)), int(round(y))))
        elif cur:
            segs.append(cur)
            cur = []
    if cur:
        segs.append(cur)
    return [np.array(s, np.int32).reshape(-1, 1, 2) for s in segs if len(s) >= 1]


def plot_clip(path: Path, title: str, panels: list[tuple[str, np.ndarray, np.ndarray, tuple | None, str]],
              width: int = 1500, backend: str = "facemesh") -> None:
    """Stacked panels (name, solver series, model series, (lo, hi) or None, unit), x = frame
    index; drawn with OpenCV and written as PNG."""
    import cv2

    left, right, top, ph, gap, bottom = 78, 24, 64, 150, 30, 56
    H = top + len(panels) * (ph + gap) - gap + bottom
    img = np.full((H, width, 3), 255, np.uint8)
    n = max(len(p[1]) for p in panels)
    x_px = left + np.arange(n) * (width - left - right - 1) / max(n - 1, 1)
    xstep = _nice_step(n, 12)

    cv2.putText(img, title, (left, 26), FONT, 0.65, COLOR_TEXT, 1, cv2.LINE_AA)
    x = width - right
    ours = f"solver ({TRACKER_NAMES[backend]} + Solver, raw)"
    for label, color in (("model (Face Landmarker)", COLOR_MODEL), (ours, COLOR_SOLVER)):
        (tw, _), _ = cv2.getTextSize(label, FONT, 0.5, 1)
        x -= tw
        cv2.putText(img, label, (x, 26), FONT, 0.5, COLOR_TEXT, 1, cv2.LINE_AA)
        cv2.line(img, (x - 38, 21), (x - 8, 21), color, 3, cv2.LINE_AA)
        x -= 38 + 30

    for p, (name, solver, model, yrange, unit) in enumerate(panels):
        y0 = top + p * (ph + gap)
        y1 = y0 + ph
        finite = np.concatenate([np.asarray(solver, float), np.asarray(model, float)])
        finite = finite[np.isfinite(finite)]
        if yrange is None:
            lo, hi = (float(finite.min()), float(finite.max())) if len(finite) else (-1.0, 1.0)
            ystep = _nice_step(max(hi - lo, 1.0), 4)
            lo, hi = math.floor(lo / ystep) * ystep, math.ceil(hi / ystep) * ystep
            if hi - lo < ystep:
                hi = lo + ystep
        else:
            lo, hi = yrange
            ystep = (hi - lo) / 4
        to_y = lambda v: y1 - (np.asarray(v, float) - lo) / (hi - lo) * ph  # noqa: E731
        # grid and ticks
        v = lo
        while v <= hi + 1e-9:
            yy = int(round(float(to_y(v))))
            cv2.line(img, (left, yy), (width - right, yy), COLOR_GRID, 1)
            cv2.line(img, (left - 5, yy), (left, yy), COLOR_AXIS, 1)
            label = f"{v:g}"
            (tw, th), _ = cv2.getTextSize(label, FONT, 0.42, 1)
            cv2.putText(img, label, (left - 9 - tw, yy + th // 2), FONT, 0.42, COLOR_TEXT, 1, cv2.LINE_AA)
            v += ystep
        if lo < 0 < hi:
            yy = int(round(float(to_y(0.0))))
            cv2.line(img, (left, yy), (width - right, yy), (190, 190, 190), 1)
        xt = 0
        while xt < n:
            xx = int(round(x_px[int(xt)]))
            cv2.line(img, (xx, y0), (xx, y1), COLOR_GRID, 1)
            cv2.line(img, (xx, y1), (xx, y1 + 5), COLOR_AXIS, 1)
            label = f"{int(xt)}"
            (tw, th), _ = cv2.getTextSize(label, FONT, 0.42, 1)
            cv2.putText(img, label, (xx - tw // 2, y1 + 8 + th), FONT, 0.42, COLOR_TEXT, 1, cv2.LINE_AA)
            xt += xstep
        cv2.rectangle(img, (left, y0), (width - right, y1), COLOR_AXIS, 1)
        cv2.putText(img, name + (f" ({unit})" if unit else ""), (left + 6, y0 + 17), FONT, 0.52,
                    COLOR_TEXT, 1, cv2.LINE_AA)
        for series, color, thick in ((model, COLOR_MODEL, 2), (solver, COLOR_SOLVER, 1)):
            ys = np.clip(to_y(series), y0, y1)
            ys[~np.isfinite(np.asarray(series, float))] = np.nan
            segs = _segments(x_px[: len(ys)], ys)
            cv2.polylines(img, [s for s in segs if len(s) > 1], False, color, thick, cv2.LINE_AA)
            for s in segs:
                if len(s) == 1:
                    cv2.circle(img, tuple(int(c) for c in s[0, 0]), 1, color, -1)
    cv2.putText(img, "frame", (width // 2 - 20, H - 12), FONT, 0.5, COLOR_TEXT, 1, cv2.LINE_AA)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), img, [cv2.IMWRITE_PNG_COMPRESSION, 9]):
        raise OSError(f"could not write {path}")


def plot_panels(clip: Clip, solved: Solved) -> list:
    panels = [(name, solved.shapes[:, ARKIT_INDEX[name]], clip.model_shapes[:, ARKIT_INDEX[name]], (0.0, 1.0), "")
              for name in PLOT_CHANNELS]
    panels.append(("head yaw", solved.head[:, 0], solved.model_head[:, 0], None, "deg"))
    return panels


# =============================================================================== (g) report

def _fmt(v, digits=2, none="-"):
    if v is None:
        return none
    if isinstance(v, float) and not math.isfinite(v):
        return none
    return f"{v:.{digits}f}"


def _r_cell(p: Pair) -> str:
    if p.r is None:
        return f"flat ({p.flat})" if p.flat else "-"
    return f"{p.r:.3f}"


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


def _machine() -> str:
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count()
    versions = []
    for mod in ("mediapipe", "cv2", "numpy"):
        try:
            versions.append(f"{mod} {__import__(mod).__version__}")
        except Exception:
            pass
    return (f"{platform.node() or 'unknown host'}: {cpu or platform.machine()}, {cores} cores, "
            f"{platform.system()} {platform.release()}, Python {platform.python_version()}, " + ", ".join(versions))


@dataclass
class Results:
    labelled: list[LabelledFrame]          # in their video: the targets are scored on these
    labelled_stills: list[LabelledFrame]   # the same frames as still photos
    clips: list[Clip]
    solveds: list[Solved]
    agreements: dict            # clip name (and "pooled") -> agreement()
    counts: dict                # clip name -> frame_counts()
    jitters: dict               # clip name -> Jitter | None
    lags: dict                  # step name -> step_lag()
    stills: list = field(default_factory=list)   # still_jitter()
    pooled: tuple | None = None  # (Clip, Solved) of all clips' frames
    runtime: float = 0.0
    command: str = ""
    backend: str = "facemesh"    # our tracker (the model side is always the Face Landmarker)


def _labelled_section(frames: list[LabelledFrame], title: str, intro: str, scored: bool = True) -> list[str]:
    L = []
    sol = labelled_scores(frames, "solver")
    mod = labelled_scores(frames, "model") if any(f.model is not None for f in frames) else None
    L.append(f"## {title}\n")
    L.append(intro + "\n")
    L.append(f"{len(frames)} frames of `frames/labels.csv`. Eyes: `closed` = both eyes closed, `one_closed` "
             "= exactly one (the side must match when the note names it: *left-eye* = the subject's own left), "
             "`open` and `lowered` = both open. Mouth: `lips_parted` is not scored. A frame without a face "
             "counts as a miss.\n")
    rows = []
    for cat in CATEGORIES:
        s = sol[cat]
        row = [cat, str(s), ", ".join(s.misses) or "none"]
        if mod:
            m = mod[cat]
            row += [str(m), ", ".join(m.misses) or "none"]
        if scored:
            row.append(f"{'>= ' if LABEL_TARGETS[cat] < 1 else ''}{LABEL_TARGETS[cat]:.0%} "
                       f"{met(s.total > 0 and s.fraction >= LABEL_TARGETS[cat] - 1e-9)}")
        rows.append(row)
    header = (["category", "solver", "solver misses"] + (["model", "model misses"] if mod else [])
              + (["target (solver)"] if scored else []))
    L.append(_md_table(header, rows) + "\n")
    rows = []
    for f in frames:
        def cells(values, side):
            if values is None:
                return ["no face"]
            j = judge(f, side)
            mark = lambda c: "" if j[c] in (True, None) else " ✗"  # noqa: E731
            return [f"{values['eyeBlinkLeft']:.2f} / {values['eyeBlinkRight']:.2f}{mark('eyes')}",
                    f"{values['jawOpen']:.2f}{mark('mouth')}",
                    f"{values['mouthSmileLeft']:.2f} / {values['mouthSmileRight']:.2f}{mark('smile')}"]
        row = [f.file, f"{f.eyes}{' (' + f.eye_side + ')' if f.eyes == 'one_closed' and f.eye_side else ''}",
               f.mouth, str(f.smile)]
        row += cells(f.solver, "solver") if f.solver is not None else ["no face ✗", "", ""]
        if mod:
            row += cells(f.model, "model") if f.model is not None else ["no face ✗", "", ""]
        rows.append(row)
    header = ["file", "eyes", "mouth", "smile", "solver blink L / R", "solver jaw", "solver smile L / R"]
    if mod:
        header += ["model blink L / R", "model jaw", "model smile L / R"]
    L.append("Per frame (✗ = scored wrong):\n")
    L.append(_md_table(header, rows) + "\n")
    return L


def render(res: Results) -> str:
    """The generated part of docs/accuracy.md (everything before the notes)."""
    L = []
    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    names = [c.name for c in res.clips]
    pooled_key = "pooled"
    with_time = res.solveds[0].with_time if res.solveds else False
    ours = TRACKER_NAMES[res.backend]
    if res.backend == "facemesh":
        tracked_by = ("MediaPipe Face Mesh landmarks (refined, 478 points; static mode for the labelled stills, "
                      "tracking mode for the clips)")
        still_mode, video_mode = "Face Mesh static mode", "Face Mesh tracking mode"
    else:
        tracked_by = ("MediaPipe Face Landmarker landmarks (`--backend landmarker`: the model's own 478 points; "
                      "IMAGE mode for the labelled stills, VIDEO mode for the clips)")
        still_mode, video_mode = "Face Landmarker IMAGE mode", "Face Landmarker VIDEO mode"
    L.append("# Accuracy of the solver\n")
    L.append("Generated by `bench/accuracy.py`; do not edit above *Notes*, regenerate instead (from the "
             "repository root, with the shared data in `../shared/data`):\n")
    L.append("```sh\npython bench/accuracy.py [--data ../shared/data] [--out docs] [--clips d3,d9,d18,d6]\n```\n")
    L.append(f"- Run: `{res.command}` on {now}, {res.runtime:.0f} s.")
    L.append(f"- Machine: {_machine()}.")
    L.append(f"- Solver: `bridge.solve.Solver` on {tracked_by}, raw per-frame output unless marked "
             "*filtered*. On the clips the solver gets each frame's capture time "
             f"(index / fps){'' if with_time else ' — not supported by this Solver, so it got none'}; "
             "the stills get none.")
    L.append("- Model: MediaPipe Face Landmarker v2 (`models/face_landmarker.task`, its 52-blendshape model and "
             "facial transformation matrix), IMAGE mode on the stills, VIDEO mode on the clips.")
    L.append(f"- Thresholds: eye closed if its eyeBlink >= {BLINK_CLOSED}; mouth open if jawOpen >= {JAW_OPEN} "
             "(the threshold of `tests/test_solve.py`); smiling if max(mouthSmileLeft, mouthSmileRight) >= "
             f"{SMILE_ON}. Same thresholds for the model's scores.")
    L.append(f"- Targets: labelled eyes {TARGET_EYES:.0%}, mouth {TARGET_MOUTH:.0%}, smile >= {TARGET_SMILE:.0%}; "
             f"r >= {TARGET_R} on {', '.join(R_TARGET_CHANNELS)}; head within {TARGET_HEAD_DEG:g} deg of the "
             f"model on average; jitter <= {TARGET_JITTER_DEG} deg (head) and <= {TARGET_JITTER_SHAPE} "
             f"(every blendshape); lag <= {TARGET_LAG_FRAMES} frame.\n")

    # ---- summary
    sol = labelled_scores(res.labelled, "solver")
    agp = res.agreements[pooled_key]
    rows = []
    for cat in CATEGORIES:
        s = sol[cat]
        rows.append([f"labelled {cat} (in their video)", f"{'>= ' if LABEL_TARGETS[cat] < 1 else ''}{LABEL_TARGETS[cat]:.0%}",
                     str(s), met(s.total > 0 and s.fraction >= LABEL_TARGETS[cat] - 1e-9)])
    for cat, s in labelled_scores(res.labelled_stills, "solver").items():
        rows.append([f"labelled {cat} (as still photos, reference)", "-", str(s), ""])
    for name in R_TARGET_CHANNELS:
        p = agp["shapes"][name]
        rows.append([f"r {name} (pooled)", f">= {TARGET_R}", _r_cell(p), met(p.r is not None and p.r >= TARGET_R)])
    for axis in AXES:
        p = agp["head"][axis]
        rows.append([f"head {axis} MAD vs the model's matrix (pooled)", f"<= {TARGET_HEAD_DEG:g} deg",
                     f"{_fmt(p.mad)} deg", met(p.mad <= TARGET_HEAD_DEG)])
    # Relative to the line of sight is another quantity (the solver's fit, like the
    # matrix, measures against the camera's axis), shown for reference.
    for axis in AXES:
        p = agp["head_los"][axis]
        rows.append([f"head {axis} MAD vs the matrix taken along the line of sight (reference)", "-",
                     f"{_fmt(p.mad)} deg", ""])
    if res.stills:
        for k, axis in enumerate(AXES):
            worst, photo = max((float(j.head_filt[k]), j.photo) for j in res.stills)
            rows.append([f"jitter head {axis}, still photo + sensor noise, filtered std (worst photo)",
                         f"<= {TARGET_JITTER_DEG} deg", f"{worst:.3f} deg ({photo})", met(worst <= TARGET_JITTER_DEG)])
        (value, channel), photo = max((j.shapes_filt, j.photo) for j in res.stills)
        rows.append(["jitter blendshapes, still photo + sensor noise, filtered std (worst channel and photo)",
                     f"<= {TARGET_JITTER_SHAPE}", f"{value:.4f} ({channel}, {photo})",
                     met(value <= TARGET_JITTER_SHAPE)])
    js = [j for j in res.jitters.values() if j is not None]
    if js:
        # The clips never hold still: these include real motion, so they are shown for
        # reference, not scored against the jitter target.
        for k, axis in enumerate(AXES):
            worst, name = max((float(j.head_filt_detr[k]), n) for n, j in res.jitters.items() if j is not None)
            rows.append([f"head {axis}, filtered, detrended std over the head-stillest second of a clip (reference)",
                         "-", f"{worst:.3f} deg ({name})", ""])
    for step, jaw_step, yaw_step in LAG_STEPS:
        for ch, amp in (("jawOpen", jaw_step), ("yaw", yaw_step)):
            k50, k90 = res.lags[step][ch]
            ok = k50 is not None and k50 <= TARGET_LAG_FRAMES
            unit = " deg" if ch == "yaw" else ""
            rows.append([f"lag, {ch} step 0 -> {amp:g}{unit}: frames to 50 % (and to 90 %)",
                         f"<= {TARGET_LAG_FRAMES} frame", f"{_lag(k50)} ({_lag(k90)}) frames", met(ok)])
    L.append("## Summary\n")
    L.append(_md_table(["figure", "target", "measured", ""], rows) + "\n")

    # ---- (a) + (c)
    lowered_as_closed = [f for f in res.labelled_stills
                         if f.eyes == "lowered" and f.solver is not None and predict(f.solver)["eyes"] == "closed"]
    L += _labelled_section(
        res.labelled, "(a) + (c) Labelled frames, in their video",
        "Each labelled frame is frame N of its clip, so it is scored as a live tracker sees it: the clip "
        f"runs from its start through N ({video_mode}, the solver with capture times; the model in "
        "VIDEO mode). The targets are scored on this table.")
    L += _labelled_section(
        res.labelled_stills, "Labelled frames as still photos (for reference)",
        f"The same PNGs one by one ({still_mode}, no capture times; the model in IMAGE mode). "
        "Without capture times the solver cannot tell lowered eyes from closed ones (docs/channels.md)"
        + (", so " + ", ".join(f"{f.file.rsplit('.', 1)[0]} (lowered)" for f in lowered_as_closed)
           + (" reads" if len(lowered_as_closed) == 1 else " read") + " closed here." if lowered_as_closed else "."),
        scored=False)

    # ---- (b) blendshapes
    L.append("## (b) Agreement with the model on the clips\n")
    L.append("Frame by frame, the solver's raw output against the Face Landmarker's scores on the same decoded "
             "frames. Frames where either side found no face are skipped:\n")
    rows = []
    for key in names:
        c = res.counts[key]
        rows.append([key, c["frames"], c["no_face_solver"], c["no_face_model"], c["skipped"], c["compared"]])
    tot = {k: sum(res.counts[n][k] for n in names) for k in res.counts[names[0]]} if names else {}
    if names:
        rows.append(["pooled", *(tot[k] for k in ("frames", "no_face_solver", "no_face_model", "skipped", "compared"))])
    L.append(_md_table(["clip", "frames", "no face (solver)", "no face (model)", "skipped", "compared"], rows) + "\n")
    L.append(f"Pearson r (target >= {TARGET_R} on {', '.join(R_TARGET_CHANNELS)}; `flat` = one side's std "
             f"is below {FLAT_STD:g}: it never moves and r is not computed) / mean absolute difference:\n")
    keys = names + [pooled_key]
    rows = []
    for name in COMPARED:
        row = [name]
        for key in keys:
            p = res.agreements[key]["shapes"][name]
            cell = f"{_r_cell(p)} / {_fmt(p.mad, 3)}"
            if name in R_TARGET_CHANNELS:
                cell += " " + met(p.r is not None and p.r >= TARGET_R)
            row.append(cell)
        rows.append(row)
    L.append(_md_table(["channel"] + [f"{k} r / MAD" for k in keys], rows) + "\n")

    # ---- head
    L.append("### Head pose against the model's transformation matrix\n")
    L.append(
        "MediaPipe's facial transformation matrix maps the canonical face (cm; X = the subject's own left, "
        "Y up, Z out of the face) into its metric camera space (right-handed: X right, Y up, camera at the "
        "origin looking down -Z). The solver's rigid fit maps the same canonical face into the same kind of "
        "frame (image x right, y up, z towards the camera), so **direct** = `matrix_to_angles(R)` on the "
        "matrix's rotation block (re-orthonormalised by SVD), with no sign change: yaw + = turned to the "
        "subject's own left, pitch + = looking up, roll + = tilted to the own left shoulder. "
        + _convention_text(res) + "\n\n"
        "**Line of sight**: the model's camera is a perspective one, so a face off the image centre that "
        "looks into the lens is turned in camera space, while the solver, working on image coordinates, "
        "reads it as frontal (the project's convention: looking straight into the camera = identity). This "
        "column takes the model's rotation relative to the direction from the face to the camera: "
        "angles of `L^T R`, with `L = Ry(yaw_los) Rx(-pitch_los)` turning +Z onto `-t/|t|` (t = the "
        "matrix's translation; the model's own assumed field of view is baked into t). Both are marked "
        "against the target.\n")
    rows = []
    for key in keys:
        a = res.agreements[key]
        for axis in AXES:
            d, l, mp = a["head"][axis], a["head_los"][axis], a["head_model_points"][axis]
            rows.append([key, axis, f"{_fmt(d.mad)} {met(d.mad <= TARGET_HEAD_DEG)}", _fmt(d.bias), _r_cell(d),
                         _fmt(a["slope"][axis]), f"{_fmt(l.mad)} {met(l.mad <= TARGET_HEAD_DEG)}", _fmt(l.bias),
                         _fmt(mp.mad)])
    L.append(_md_table(["clip", "axis", "MAD direct (deg)", "bias direct", "r direct", "slope solver/model",
                        "MAD line of sight", "bias line of sight", "MAD, solver on the model's landmarks"],
                       rows) + "\n")
    L.append("bias = mean(solver - model); slope = least-squares slope of the solver's angle on the model's "
             "(direct). The last column runs the same Solver on the Face Landmarker's own landmarks and "
             + ("compares with the direct angles: it separates the fit (solver) from the landmarks (Face Mesh vs "
                "the landmarker's mesh).\n" if res.backend == "facemesh" else
                "compares with the direct angles: on this backend those are our landmarks, so it repeats the "
                "direct column.\n"))

    # ---- (d)
    L.append("## (d) Jitter and lag\n")
    L.append("**Jitter with a known truth (the scored figure).** A still photo is a face that does not move. "
             f"Each of {STILL_FRAMES} frames at 30 fps is the photo (scaled to at most {STILL_MAX_SIDE} px) plus "
             f"fresh Gaussian sensor noise of {SENSOR_NOISE:g} grey levels per pixel, tracked as video "
             f"({video_mode}), solved with capture times and shaped with the default filter "
             f"(`ShapeOptions()`: One Euro min_cutoff {_default_filter()}). Every movement of the output is "
             f"jitter; the first {STILL_SETTLE} frames are left out while tracker and filter settle. Std per head "
             "axis (degrees) and of the worst blendshape channel:\n")
    rows = [[j.photo, " / ".join(f"{v:.3f}" for v in j.head_raw),
             " / ".join(f"{v:.3f}" for v in j.head_filt) + " " + met(bool(np.all(j.head_filt <= TARGET_JITTER_DEG))),
             f"{j.shapes_raw[0]:.4f} ({j.shapes_raw[1]})",
             f"{j.shapes_filt[0]:.4f} ({j.shapes_filt[1]}) {met(j.shapes_filt[0] <= TARGET_JITTER_SHAPE)}"]
            for j in res.stills]
    L.append(_md_table(["photo", "head std raw (y / p / r)", "head std filtered", "worst blendshape raw",
                        "worst blendshape filtered"], rows) + "\n")
    L.append("**On the clips (reference only):** the clips never hold still, so these windows contain real "
             "motion as well as jitter. Per clip the stillest second (30 frames at 30 fps) is found automatically: the window, "
             "with a face in every frame, whose summed frame-to-frame change of the raw solver's (yaw, pitch, "
             "roll) is smallest. Over it: the standard deviation of each head angle and of each blendshape, raw "
             f"and *filtered* (the default `Shaper(ShapeOptions())`, One Euro min_cutoff {_default_filter()}, run "
             "over the whole clip at t = index / fps). Blendshapes: mean over the channels the raw solver sets "
             "above 0 somewhere in the clip, and the largest channel. The model's own std over the same window "
             "shows how still the face really was (it is unfiltered, so it includes the model's own noise); an "
             "expression change inside the head-stillest second is real motion, hence the second window for "
             "the blendshapes. "
             f"Targets (filtered): <= {TARGET_JITTER_DEG} deg per head axis, <= {TARGET_JITTER_SHAPE} per "
             "blendshape.\n")
    rows = []
    for key in names:
        j = res.jitters.get(key)
        if j is None:
            rows.append([key, "no still window with a face", "", "", ""])
            continue
        rows.append([key, f"{j.start}-{j.start + j.length - 1} ({j.motion:.1f} deg)",
                     " / ".join(f"{v:.3f}" for v in j.head_raw),
                     " / ".join(f"{v:.3f}" for v in j.head_filt) + " " + met(bool(np.all(j.head_filt <= TARGET_JITTER_DEG))),
                     " / ".join(_fmt(float(v), 3) for v in j.model_head),
                     " / ".join(f"{v:.3f}" for v in j.head_raw_detr),
                     " / ".join(f"{v:.3f}" for v in j.head_filt_detr) + " "
                     + met(bool(np.all(j.head_filt_detr <= TARGET_JITTER_DEG)))])
    L.append("Head, over the head-stillest second (yaw / pitch / roll, degrees; *detrended* = std about a "
             "least-squares quadratic over the second, which takes slow real motion out and leaves "
             "frame-to-frame jitter):\n")
    L.append(_md_table(["clip", "window (summed head motion)", "std raw", "std filtered", "model std",
                        "detrended raw", "detrended filtered"], rows) + "\n")
    rows = []
    for key in names:
        j = res.jitters.get(key)
        if j is None:
            continue
        for label, sj in (("head-stillest", j.shapes), ("expression-stillest (model)", j.shapes_still)):
            if sj is None:
                rows.append([key, label, "none", "", "", "", ""])
                continue
            rows.append([key, label, f"{sj.start}-{sj.start + j.length - 1}",
                         f"{sj.raw_mean:.4f} / {sj.raw_max[0]:.4f} ({sj.raw_max[1]})",
                         f"{sj.filt_mean:.4f} / {sj.filt_max[0]:.4f} ({sj.filt_max[1]}) "
                         f"{met(sj.filt_max[0] <= TARGET_JITTER_SHAPE)}",
                         f"{_fmt(sj.model_max[0], 4)} ({sj.model_max[1]})",
                         f"{sj.filt_detr_mean:.4f} / {sj.filt_detr_max[0]:.4f} ({sj.filt_detr_max[1]}) "
                         f"{met(sj.filt_detr_max[0] <= TARGET_JITTER_SHAPE)}"])
    L.append("Blendshapes (std: mean over live channels / largest channel), over the head-stillest second "
             "and over the second where the model's 51 scores change least (summed frame-to-frame norm), "
             "with a solver face in every frame:\n")
    L.append(_md_table(["clip", "window", "frames", "std raw mean / max", "std filtered mean / max",
                        "model std max, same window", "detrended filtered mean / max"], rows) + "\n")
    L.append("Lag: the default Shaper is fed FaceState.neutral() for "
             f"{LAG_SETTLE_FRAMES} frames at 30 fps (t = i / 30), then, from frame t0 on, the same state with "
             "jawOpen and head yaw stepped up together and held. Reported: k = the number of frames after t0 "
             "of the first output that reaches 50 % / 90 % of the step (k = 0: the step frame's own output "
             "already does; k = 1: one frame later). The One Euro filter's cutoff rises with speed, so the lag "
             f"depends on the step's size: two sizes. The lag is the 50 % point (the delay of the step's middle); "
             f"the 90 % point shows how long it takes to settle. Target: lag <= {TARGET_LAG_FRAMES} frame.\n")
    rows = []
    for step, jaw_step, yaw_step in LAG_STEPS:
        for ch, amp, unit in (("jawOpen", jaw_step, ""), ("head yaw", yaw_step, " deg")):
            k50, k90 = res.lags[step]["jawOpen" if ch == "jawOpen" else "yaw"]
            rows.append([f"{ch} 0 -> {amp:g}{unit}",
                         f"{_lag(k50)} {met(k50 is not None and k50 <= TARGET_LAG_FRAMES)}",
                         f"{_lag(k90)} {met(k90 is not None and k90 <= TARGET_LAG_FRAMES)}"])
    L.append(_md_table(["step", "frames to 50 %", "frames to 90 %"], rows) + "\n")

    # ---- (e)
    L.append("## (e) Solver time\n")
    L.append("`Solver.solve` alone per frame with a face (after 20 warm-up calls), one thread, timed with "
             "perf_counter; the tracker rates are the models' own calls in the same run (decode excluded).\n")
    rows = []
    for c, s in zip(res.clips, res.solveds):
        rows.append([c.name, f"{np.median(s.solve_ms):.3f}" if len(s.solve_ms) else "-",
                     f"{np.percentile(s.solve_ms, 95):.3f}" if len(s.solve_ms) else "-",
                     f"{c.n / c.seconds['facemesh']:.0f}" if c.seconds.get("facemesh") else "-",
                     f"{c.n / c.seconds['landmarker']:.0f}" if c.seconds.get("landmarker") else "-"])
    allms = np.concatenate([s.solve_ms for s in res.solveds]) if res.solveds else np.array([])
    if len(allms):
        fm = sum(c.seconds.get("facemesh", 0) for c in res.clips)
        ld = sum(c.seconds.get("landmarker", 0) for c in res.clips)
        n = sum(c.n for c in res.clips)
        rows.append(["all", f"{np.median(allms):.3f}", f"{np.percentile(allms, 95):.3f}",
                     f"{n / fm:.0f}" if fm else "-", f"{n / ld:.0f}" if ld else "-"])
    L.append(_md_table(["clip", "solve median (ms)", "solve p95 (ms)", "Face Mesh (frames/s)",
                        "Face Landmarker (frames/s)"], rows) + "\n")

    # ---- (f)
    L.append("## (f) Plots\n")
    L.append("Solver (orange, raw) against the model (blue) over each clip: eyeBlinkLeft, eyeBlinkRight, "
             "jawOpen, mouthSmileLeft and head yaw (model: direct conversion). Gaps: no face.\n")
    for key in names:
        L.append(f"![{key}](accuracy/{key}.png)\n")

    # ---- diagnostics
    L.append("## All channels, pooled (diagnostic)\n")
    L.append("Every ARKit channel the model has, pooled over the clips on the compared frames: r / MAD as "
             f"above (`flat`: std < {FLAT_STD:g} on that side), the means, how often the solver reads exactly 0 and >= 0.99 (saturated), and the model's "
             "largest value. Not targets; for spotting flat, saturated or opposite channels.\n")
    pc, ps = res.pooled
    both = _both(pc, ps)
    rows = []
    for name in ARKIT_NAMES:
        if name == "tongueOut":
            continue
        i = ARKIT_INDEX[name]
        s, m = ps.shapes[both, i], pc.model_shapes[both, i]
        p = agp["shapes"][name]
        rows.append([name, _r_cell(p), _fmt(p.mad, 3), _fmt(float(np.mean(s)), 3) if len(s) else "-",
                     _fmt(float(np.mean(m)), 3) if len(m) else "-",
                     f"{100.0 * np.mean(s == 0):.0f} %" if len(s) else "-",
                     f"{100.0 * np.mean(s >= 0.99):.1f} %" if len(s) else "-",
                     _fmt(float(np.max(m)), 3) if len(m) else "-"])
    L.append(_md_table(["channel", "r", "MAD", "solver mean", "model mean", "solver = 0", "solver >= 0.99",
                        "model max"], rows) + "\n")
    return "\n".join(L)


def _convention_text(res: Results) -> str:
    check = next((c for c in (convention_check(clip, s) for clip, s in zip(res.clips, res.solveds)) if c), None)
    if check is None:
        return ""
    a = lambda v: "(" + ", ".join(f"{x:.1f}" for x in v) + ")"  # noqa: E731
    fi, fs, fm = check["frontal"]
    ti, ts, tm = check["turned"]
    r = check["r"]
    return (f"Checked on {check['clip']} (yaw, pitch, roll, deg): its most frontal frame ({fi}) reads solver "
            f"{a(fs)} vs model {a(fm)}, its most turned one ({ti}) solver {a(ts)} vs model {a(tm)}; r of the "
            "solver against the direct conversion / against the transposed matrix (the inverse map): "
            + ", ".join(f"{axis} {_fmt(r[axis][0], 3)} / {_fmt(r[axis][1], 3)}" for axis in AXES)
            + ". " + _sign_verdict(r))


def _sign_verdict(r: dict) -> str:
    bad = [axis for axis in AXES if r[axis][0] is not None and r[axis][0] < 0]
    if bad:
        return f"**The solver's sign disagrees with the model's on {', '.join(bad)}.**"
    return "Positive on every axis: the direct conversion has the solver's signs, no flip needed."


def _lag(k) -> str:
    return f"> {LAG_AFTER_FRAMES}" if k is None else str(k)


def write_report(path: Path, generated: str) -> str:
    """Write the generated text, then `## Notes`, the marker and whatever followed the
    marker in the existing file (the hand-written notes)."""
    tail = "\n"
    if path.exists():
        old = path.read_text(encoding="utf-8")
        at = old.find(NOTES_MARKER)
        if at >= 0:
            tail = old[at + len(NOTES_MARKER):]
    text = generated.rstrip("\n") + "\n\n## Notes\n\n" + NOTES_MARKER + tail
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return text


# =============================================================================== main

def run(data: Path, out: Path, clips: list[str], command: str = "", log=print,
        backend: str | None = None) -> Results:
    """Everything, with the Solver on `backend`'s landmarks (None: default_backend())."""
    start = time.perf_counter()
    backend = resolve_backend(backend)
    model_path = data / MODEL_FILE
    log(f"labelled frames (stills, {TRACKER_NAMES[backend]}) ...")
    stills = labelled_frames(data, with_model=True, backend=backend)
    tracked, solveds, agreements, counts, jitters = [], [], {}, {}, {}
    for name in clips:
        path = clip_path(data, name)
        t0 = time.perf_counter()
        clip = track_clip(path, model_path, name, backend=backend)
        solved = solve_clip(clip)
        tracked.append(clip)
        solveds.append(solved)
        agreements[name] = agreement(clip, solved)
        counts[name] = frame_counts(clip)
        jitters[name] = jitter(solved, clip.fps, clip.model_shapes)
        plot_clip(out / "accuracy" / f"{name}.png",
                  f"{path.name}: solver vs Face Landmarker, {clip.n} frames at {clip.fps:g} fps",
                  plot_panels(clip, solved), backend=backend)
        log(f"{name}: {clip.n} frames, {time.perf_counter() - t0:.1f} s")
    pc, ps = pooled(tracked, solveds)
    agreements["pooled"] = agreement(pc, ps)
    lags = {step: step_lag(jaw, yaw) for step, jaw, yaw in LAG_STEPS}
    log("labelled frames (in their video) ...")
    labelled = labelled_in_video(data, {c.name: (c, s) for c, s in zip(tracked, solveds)}, backend=backend)
    log("jitter on still photos ...")
    res = Results(labelled, stills, tracked, solveds, agreements, counts, jitters, lags, pooled=(pc, ps),
                  stills=still_jitter(data, backend=backend), command=command, backend=backend)
    res.runtime = time.perf_counter() - start
    return res


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="the shared data folder (default ../shared/data)")
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="where accuracy.md and accuracy/*.png go (docs)")
    parser.add_argument("--clips", default=",".join(DEFAULT_CLIPS), help="comma-separated clips (d3,d9,d18,d6)")
    parser.add_argument("--backend", choices=BACKENDS, default=None,
                        help="the tracker whose landmarks the Solver gets (default: facemesh when the installed "
                             "mediapipe has it, else landmarker); the model side is always the Face Landmarker")
    args = parser.parse_args(argv)
    data, out = Path(args.data), Path(args.out)
    clips = [c.strip() for c in args.clips.split(",") if c.strip()]
    missing = [p for p in (data / "frames" / "labels.csv", data / MODEL_FILE) if not p.is_file()]
    if missing:
        print(f"accuracy: test data not found: {missing[0]} (the shared data lives in ../shared/data)", file=sys.stderr)
        return 2
    if not clips:
        print("accuracy: no clips given", file=sys.stderr)
        return 2
    backend = args.backend or default_backend()
    if backend == "facemesh" and default_backend() != "facemesh":
        from bridge.tracking.facemesh import NOT_INSTALLED
        print(f"accuracy: --backend facemesh: {NOT_INSTALLED}", file=sys.stderr)
        return 2
    try:
        for c in clips:
            clip_path(data, c)
    except FileNotFoundError as exc:
        print(f"accuracy: {exc}", file=sys.stderr)
        return 2
    command = "python bench/accuracy.py" + ("" if argv is None and len(sys.argv) <= 1 else
                                            " " + " ".join(sys.argv[1:] if argv is None else argv))
    res = run(data, out, clips, command, log=lambda m: print(m, file=sys.stderr, flush=True), backend=backend)
    generated = render(res)
    write_report(out / "accuracy.md", generated)
    print(generated)
    print(f"wrote {out / 'accuracy.md'} and {len(clips)} plot(s) in {out / 'accuracy'}; "
          f"{res.runtime:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
