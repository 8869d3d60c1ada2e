"""The shared data and the tracking runs.

Every clip is decoded once and tracked once per backend (`track_clip`): the
landmarker's VIDEO run gives its landmarks, the model's blendshape scores and its
facial transformation matrix at once; Face Mesh gives landmarks only. The images of
the labelled frames are kept from that same decode, so the photo runs
(`track_photos`) need no second decode or seek.
"""

from __future__ import annotations

import contextlib
import csv
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DATA = ROOT.parent / "shared" / "data"
LABELS_FILE = Path("labels") / "clips.csv"
MODEL_FILE = Path("models") / "face_landmarker.task"
VIDEO_DIR = Path("video")

BACKENDS = ("landmarker", "facemesh")
TRACKER_NAMES = {"facemesh": "Face Mesh", "landmarker": "Face Landmarker"}

CATEGORIES = ("eyes", "mouth", "smile", "brows", "lips")
UNSCORED = "?"
# The values labels/clips.csv may hold per category (SOURCES.md); anything else is a
# typo in the file and stops the run rather than being scored as something.
LABEL_VALUES = {
    "eyes": {"open", "closed", "left_closed", "right_closed", "half", "lowered"},
    "mouth": {"closed", "lips_parted", "open"},
    "smile": {"0", "1"},
    "brows": {"raised", "lowered", "neutral"},
    "lips": {"pucker", "funnel", "none"},
}


# =============================================================================== labels

@dataclass(frozen=True)
class Label:
    """One row of labels/clips.csv: frame `frame` (0-based sequential decode) of `clip`."""
    clip: str
    frame: int
    eyes: str
    mouth: str
    smile: str
    brows: str
    lips: str

    def get(self, category: str) -> str:
        return getattr(self, category)

    @property
    def key(self) -> tuple[str, int]:
        return self.clip, self.frame


def read_labels(data: Path = DEFAULT_DATA) -> list[Label]:
    """labels/clips.csv, checked: an unknown value raises ValueError naming the row."""
    path = data / LABELS_FILE
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    out = []
    for line, row in enumerate(rows, start=2):
        values = {c: row[c].strip() for c in CATEGORIES}
        for c, v in values.items():
            if v != UNSCORED and v not in LABEL_VALUES[c]:
                raise ValueError(f"{path}:{line}: {c} = {v!r} is not one of {sorted(LABEL_VALUES[c])} or '?'")
        out.append(Label(row["clip"].strip(), int(row["frame"]), **values))
    return out


def labels_by_clip(labels: list[Label]) -> dict[str, list[Label]]:
    out: dict[str, list[Label]] = {}
    for label in labels:
        out.setdefault(label.clip, []).append(label)
    return out


def list_clips(data: Path = DEFAULT_DATA) -> list[str]:
    """Every video clip of the data (the stems of video/*.mp4), sorted."""
    return sorted(p.stem for p in (data / VIDEO_DIR).glob("*.mp4"))


def clip_path(data: Path, clip: str) -> Path:
    """DATA/video/<clip>.mp4; FileNotFoundError naming the path when absent."""
    path = data / VIDEO_DIR / f"{clip}.mp4"
    if not path.is_file():
        raise FileNotFoundError(f"no video for clip '{clip}': {path}")
    return path


# =============================================================================== trackers

def facemesh_available() -> bool:
    from bridge.tracking import facemesh_available as available

    return available()


def available_backends(data: Path = DEFAULT_DATA) -> list[str]:
    """The backends this environment can run: the landmarker when DATA has the model,
    Face Mesh when the installed mediapipe has it."""
    out = []
    if (data / MODEL_FILE).is_file():
        out.append("landmarker")
    if facemesh_available():
        out.append("facemesh")
    return out


def open_tracker(backend: str, data: Path, *, static: bool):
    """A started tracker: the Face Landmarker with DATA's model (never downloaded) or the
    legacy Face Mesh; tracking / VIDEO mode unless `static` (IMAGE mode)."""
    from bridge.tracking import open_tracker as open_any

    if backend == "landmarker":
        return open_any("landmarker", model_path=str(data / MODEL_FILE), static=static, download=False)
    if backend == "facemesh":
        return open_any("facemesh", static=static)
    raise ValueError(f"unknown backend '{backend}' (choose {', '.join(BACKENDS)})")


@contextlib.contextmanager
def stderr_kept():
    """Put file descriptor 2 back as it was when the block ends.

    Each tracker captures fd 2 from its start to its first face (bridge.tracking.base.
    NativeStderrFilter) and restores what it saved. Two trackers open at once nest
    those captures, and when the first-opened one sees a face first the second one
    later "restores" the first one's (closed) capture file: everything written to
    stderr afterwards, log lines and tracebacks included, would vanish."""
    try:
        sys.stderr.flush()
    except Exception:
        pass
    saved = os.dup(2)
    try:
        yield
    finally:
        try:
            sys.stderr.flush()
        except Exception:
            pass
        os.dup2(saved, 2)
        os.close(saved)


def as_frame(index: int, t: float, image: np.ndarray):
    from bridge.sources import Frame

    h, w = image.shape[:2]
    return Frame(index, t, image, width=w, height=h)


# =============================================================================== one clip's run

@dataclass
class Track:
    """One backend over one clip (or one set of photos), frame by frame."""
    backend: str
    landmarks: list                 # (478, 3) or None (no face) per frame
    scores: list                    # the model's blendshape dict or None per frame (landmarker only)
    matrices: np.ndarray            # (n, 4, 4) the model's transformation matrix, NaN where none
    seconds: float = 0.0            # time spent in track()

    @property
    def n(self) -> int:
        return len(self.landmarks)

    @property
    def found(self) -> np.ndarray:
        return np.array([p is not None for p in self.landmarks], bool)


@dataclass
class ClipRun:
    """A clip decoded once and tracked by every backend asked for."""
    name: str
    path: Path
    fps: float
    width: int
    height: int
    n: int
    tracks: dict                    # backend -> Track
    images: dict = field(default_factory=dict)   # frame index -> BGR image (the labelled frames)
    decode_seconds: float = 0.0
    complete: bool = True           # False when stopped at `until`

    def time(self, index: int) -> float:
        """Capture time of frame `index`: index / fps, as a camera at the clip's rate gives it."""
        return index / self.fps


def _fps(cap) -> float:
    import cv2

    fps = cap.get(cv2.CAP_PROP_FPS)
    if not (fps and math.isfinite(fps) and fps > 0):
        raise ValueError("the clip states no frame rate; capture times (index / fps) need one")
    return float(fps)


def _record(track_lists: dict, backend: str, found) -> None:
    landmarks, scores, matrices = track_lists[backend]
    landmarks.append(found.landmarks)
    scores.append(found.blendshapes or None)
    matrices.append(np.asarray(found.matrix, float) if found.matrix is not None else np.full((4, 4), np.nan))


def track_clip(data: Path, clip: str, backends: list[str], *, keep: set[int] = frozenset(),
               until: int | None = None, log=None) -> ClipRun:
    """Decode `clip` from frame 0 and run every backend in tracking / VIDEO mode with
    capture times index / fps; keep the images of the frames in `keep`. `until`: stop
    after that frame (the tests need only up to the last labelled one)."""
    import cv2

    path = clip_path(data, clip)
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise OSError(f"cannot open {path}")
    trackers = {}
    with stderr_kept():
        try:
            fps = _fps(cap)
            for b in backends:
                trackers[b] = open_tracker(b, data, static=False)
            run = _decode_and_track(clip, path, cap, fps, trackers, keep, until)
        finally:
            cap.release()
            for tracker in trackers.values():
                tracker.close()
    if log:
        found = ", ".join(f"{TRACKER_NAMES[b]} {int(t.found.sum())}" for b, t in run.tracks.items())
        log(f"{clip}: {run.n} frames at {fps:g} fps tracked ({found} with a face)")
    return run


def _decode_and_track(clip: str, path: Path, cap, fps: float, trackers: dict, keep, until) -> ClipRun:
    lists = {b: ([], [], []) for b in trackers}
    secs = {b: 0.0 for b in trackers}
    images, decode, index, w, h = {}, 0.0, 0, 0, 0
    while until is None or index <= until:
        t0 = time.perf_counter()
        ok, image = cap.read()
        decode += time.perf_counter() - t0
        if not ok:
            break
        h, w = image.shape[:2]
        if index in keep:
            images[index] = image
        frame = as_frame(index, index / fps, image)
        for b, tracker in trackers.items():
            t1 = time.perf_counter()
            found = tracker.track(frame)
            secs[b] += time.perf_counter() - t1
            _record(lists, b, found)
        index += 1
    tracks = {b: Track(b, lm, sc, np.array(mx).reshape(-1, 4, 4), secs[b]) for b, (lm, sc, mx) in lists.items()}
    return ClipRun(clip, path, fps, w, h, index, tracks, images, decode, complete=until is None or index <= until)


def track_photos(data: Path, images: dict, backends: list[str]) -> dict:
    """Each image as a photo: static / IMAGE-mode tracking, no history between them.
    `images`: key -> BGR image; returns backend -> (keys, Track)."""
    out = {}
    keys = list(images)
    for b in backends:
        lists = {b: ([], [], [])}
        start = time.perf_counter()
        with stderr_kept():
            tracker = open_tracker(b, data, static=True)
            try:
                for key in keys:
                    _record(lists, b, tracker.track(as_frame(0, 0.0, images[key])))
            finally:
                tracker.close()
        lm, sc, mx = lists[b]
        out[b] = (keys, Track(b, lm, sc, np.array(mx).reshape(-1, 4, 4), time.perf_counter() - start))
    return out
