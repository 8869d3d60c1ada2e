"""Neutral-face calibration: the performer's rest face, captured on request.

A performer whose resting face reads as slightly smiling, brows raised or head
tilted gets that rest face captured (--calibrate, the control port, the preview's
key c) or loaded from a saved profile: a :class:`Neutral`. It holds the rest in the
solver's own terms, and each part is removed where it is read:

* the geometric measures (bridge.solve.geometry.MEASURES: lid openness, iris
  offsets, lip gap, corner and brow heights ...) and the model's raw scores: the
  solver (Solver.set_neutral) takes every measure and score against these instead
  of the rests it estimates from the frames. So the rest face reads 0, every
  channel keeps its full range, and gaze is relative to the rest (the iris offsets
  are measures). Blendshapes and eye angles leave the solver already calibrated.
* head rotation and position: the calibrator here (Neutral.apply), after the
  solver. Rotation as quaternions, R_n^-1 * R, i.e. the turn away from the rest pose
  in the rest pose's own frame (subtracting Euler angles would be wrong as soon as
  the rest pose has a tilt: yaw and roll do not commute); position minus the rest.
* VRM presets are recomputed from the blendshapes and eyes that go out.

Optionally (:class:`AdaptiveRange`) each blendshape channel is also divided by
its slowly decaying running maximum, for performers whose full expressions
never reach the solver's 1.

Everything here works on FaceState in plain numpy; the only I/O is the profile
load/save functions at the bottom.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
import tempfile
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from bridge.solve import geometry, vrm_presets
from bridge.state import (
    ARKIT_NAMES, FaceState, angles_to_quat, matrix_to_angles, quat_conjugate, quat_multiply,
    quat_to_matrix,
)

# ---- capture -----------------------------------------------------------------
MIN_CAPTURE_SECONDS = 0.5        # shortest capture window a user may ask for
MAX_CAPTURE_SECONDS = 60.0       # longest: beyond it a typo (600 for 6.0) is likelier than intent
DEFAULT_CAPTURE_SECONDS = 2.0    # recalibration (key c, OSC) when --calibrate gave no length
MIN_FACE_SECONDS = 0.5           # a neutral needs at least this much face in its window ...
MIN_FACE_FRACTION = 0.5          # ... and at least this share of the window: else keep capturing
# One frame counts for at most this long towards the face time, so a stall
# (a camera hiccup, a paused video) doesn't pass for seconds of face.
MAX_FRAME_SECONDS = 0.1
# Frame times are sums of float steps (29 * (1/30) < 29/30); don't miss a window end by that.
TIME_EPSILON = 1e-6
CALIBRATED_NOTE_SECONDS = 3.0    # how long the status line says "calibrated" afterwards

# VMC /VMC/Ext/OK calibration-state values (VMC protocol spec).
VMC_CALIBRATING = 2
VMC_CALIBRATED = 3

# ---- the model's rest ------------------------------------------------------------
# The solver reads a score as (s - rest) / (1 - rest): a captured rest above this
# would amplify the score's noise by more than 4x (and a rest of 1 would divide by 0).
MAX_CAPTURED_MODEL_REST = 0.75
# The Face Landmarker gives no tongueOut: its rest is 0, as the solver's estimate has it.
_NO_MODEL_SCORE = np.array([n == "tongueOut" for n in ARKIT_NAMES])

# ---- adaptive range --------------------------------------------------------------
ADAPTIVE_FLOOR = 0.5             # running max starts here and never drops below: gain <= 2x
ADAPTIVE_DECAY_SECONDS = 180.0   # time constant of the running max's decay back to the floor


def _head_quat(head_angles) -> np.ndarray:
    return angles_to_quat(*(float(a) for a in head_angles))


def _quat_to_angles(q) -> np.ndarray:
    return np.array(matrix_to_angles(quat_to_matrix(np.asarray(q, float))))


def _vector(values, size: int, what: str) -> np.ndarray | None:
    if values is None:
        return None
    v = np.asarray(values, float)
    if v.shape != (size,):
        raise ValueError(f"a neutral's {what} must be {size} numbers, not shape {v.shape}")
    return v


@dataclass(eq=False)   # numpy fields: == would be ambiguous
class Neutral:
    """The captured rest face, in the solver's raw units.

    measures: (len(geometry.MEASURES),) the geometric rest, or None (the solver keeps
    estimating it); model: (52,) ARKIT_NAMES order, the model's rest scores (tongueOut
    0), or None when the capture had no scores.
    """

    measures: np.ndarray | None
    model: np.ndarray | None
    head_angles: np.ndarray     # (3,) yaw, pitch, roll degrees
    head_position: np.ndarray   # (3,) metres

    def __post_init__(self):
        self.measures = _vector(self.measures, len(geometry.MEASURES), "measures")
        self.model = _vector(self.model, len(ARKIT_NAMES), "model scores")
        self.head_angles = np.asarray(self.head_angles, float).reshape(3)
        self.head_position = np.asarray(self.head_position, float).reshape(3)
        # Precomputed once: it is used every frame.
        self._inverse_head = quat_conjugate(_head_quat(self.head_angles))

    def apply(self, state: FaceState) -> FaceState:
        """The head pose relative to this rest face. Blendshapes and eyes pass through:
        the solver already read them against this neutral (Solver.set_neutral). VRM is
        left to the caller (Calibrator recomputes it once, after the optional adaptive
        range)."""
        head = quat_multiply(self._inverse_head, _head_quat(state.head_angles))
        return FaceState(
            blendshapes=state.blendshapes.copy(),
            vrm=state.vrm.copy(),
            head_angles=_quat_to_angles(head),
            head_position=state.head_position - self.head_position,
            eye_angles=state.eye_angles.copy(),
            measures=state.measures,
            scores=state.scores,
        )


def with_vrm_recomputed(state: FaceState) -> FaceState:
    """VRM presets follow the (changed) blendshapes and eyes."""
    state.vrm = np.asarray(vrm_presets(state.blendshapes, state.eye_angles), float)
    return state


class NeutralAccumulator:
    """Running mean of face states (sums, so a long window costs no memory).

    Measures are summed one by one over the frames that have them finite, the way
    the solver samples its own rest (geometry.rest_sample): a blink during the
    capture is not averaged into the open eye. A measure no frame gave (eyes shut
    throughout) takes the prior's rest. Scores are summed over the frames that have
    all of them (every one but tongueOut, which the model never gives).
    """

    def __init__(self):
        self.count = 0
        self._position = np.zeros(3)
        self._quat_sum = np.zeros(4)
        self.measure_frames = 0
        self._measures = np.zeros(len(geometry.MEASURES))
        self._measure_counts = np.zeros(len(geometry.MEASURES))
        self.score_frames = 0
        self._scores = np.zeros(len(ARKIT_NAMES))

    def add(self, state: FaceState) -> None:
        q = _head_quat(state.head_angles)
        # q and -q are the same rotation: keep all on one hemisphere so they add up.
        if self.count and float(np.dot(q, self._quat_sum)) < 0.0:
            q = -q
        self._position += state.head_position
        self._quat_sum += q
        self.count += 1
        if state.measures is not None:
            m = geometry.rest_sample(list(np.asarray(state.measures, float)))
            finite = np.isfinite(m)
            if finite.any():
                self._measures += np.where(finite, m, 0.0)
                self._measure_counts += finite
                self.measure_frames += 1
        if state.scores is not None:
            scores = np.asarray(state.scores, float)
            if np.isfinite(scores[~_NO_MODEL_SCORE]).all():
                self._scores += np.where(_NO_MODEL_SCORE, 0.0, scores)
                self.score_frames += 1

    def mean(self) -> Neutral:
        if not self.count:
            raise ValueError("no face frames to take a neutral from")
        n = self.count
        # The normalised quaternion sum: the mean rotation for the small spread
        # of a held pose, and free of Euler-angle wrap-around.
        q = self._quat_sum / np.linalg.norm(self._quat_sum)
        measures = None
        if self.measure_frames:
            counts = self._measure_counts
            measures = np.where(counts > 0, self._measures / np.maximum(counts, 1), geometry.PRIOR_VECTOR)
        model = None
        if self.score_frames:
            model = np.clip(self._scores / self.score_frames, 0.0, MAX_CAPTURED_MODEL_REST)
        return Neutral(
            measures=measures,
            model=model,
            head_angles=_quat_to_angles(q),
            head_position=self._position / n,
        )


def _is_usable(state: FaceState) -> bool:
    return bool(np.isfinite(state.vector()).all())


class Capture:
    """One capture window, fed every frame (face or not) with its capture time.

    The window opens at the first face frame and lasts `seconds`; it closes when
    that time is over and the face was seen long enough in it (MIN_FACE_SECONDS,
    MIN_FACE_FRACTION). Otherwise it keeps going: a bad neutral would be worse
    than a late one.
    """

    def __init__(self, seconds: float):
        if not MIN_CAPTURE_SECONDS <= seconds <= MAX_CAPTURE_SECONDS:
            raise ValueError(f"capture seconds must be {MIN_CAPTURE_SECONDS:g}-{MAX_CAPTURE_SECONDS:g}, not {seconds!r}")
        self.seconds = float(seconds)
        self.required_face_seconds = max(MIN_FACE_SECONDS, MIN_FACE_FRACTION * self.seconds)
        self.face_seconds = 0.0
        self._sum = NeutralAccumulator()
        self._started: float | None = None
        self._last_t: float | None = None
        self._last_had_face = False
        self.done = False

    def add(self, t: float, state: FaceState | None) -> None:
        if self.done:
            return
        face = state is not None and _is_usable(state)
        if face:
            if self._started is None:
                self._started = t
            elif self._last_t is not None:
                self.face_seconds += min(max(t - self._last_t, 0.0), MAX_FRAME_SECONDS)
            self._sum.add(state)
        self._last_t, self._last_had_face = t, face
        self.done = self._window_over(t) and self.face_seconds >= self.required_face_seconds - TIME_EPSILON

    def _window_over(self, t: float) -> bool:
        return self._started is not None and t >= self._started + self.seconds - TIME_EPSILON

    def neutral(self) -> Neutral:
        return self._sum.mean()

    def status(self) -> str:
        """What the status line says while capturing."""
        if self._started is None:
            return "calibrating: waiting for a face (hold a neutral face in view)"
        if not self._window_over(self._last_t):
            left = self._started + self.seconds - self._last_t
            if not self._last_had_face:
                return f"calibrating: face lost, hold a neutral face in view ({left:.1f} s left)"
            return f"calibrating: hold a neutral face ({left:.1f} s left)"
        more = max(self.required_face_seconds - self.face_seconds, 0.0)
        return f"calibrating: face missing too often, still capturing ({more:.1f} s of face needed)"


class AdaptiveRange:
    """Per-channel running maximum; output = b / max, so a performer's own
    fullest expression reaches 1.

    The maximum starts at ADAPTIVE_FLOOR and never drops below it (one early
    frame can't stretch a channel by more than 1/floor), never exceeds 1 (values
    are in [0, 1]) and decays back towards the floor with ADAPTIVE_DECAY_SECONDS,
    so an old extreme stops limiting the range after a few minutes.
    """

    def __init__(self, floor: float = ADAPTIVE_FLOOR, decay_seconds: float = ADAPTIVE_DECAY_SECONDS,
                 size: int = len(ARKIT_NAMES)):
        if not 0.0 < floor <= 1.0 or decay_seconds <= 0.0:
            raise ValueError("floor must be in (0, 1] and decay_seconds > 0")
        self.floor, self.decay_seconds = floor, decay_seconds
        self.maximum = np.full(size, floor)
        self._last_t: float | None = None

    def reset(self) -> None:
        self.maximum[:] = self.floor
        self._last_t = None

    def __call__(self, t: float, blendshapes: np.ndarray) -> np.ndarray:
        if self._last_t is not None:
            keep = math.exp(-max(t - self._last_t, 0.0) / self.decay_seconds)
            self.maximum = self.floor + (self.maximum - self.floor) * keep
        self._last_t = t
        b = np.clip(np.nan_to_num(blendshapes, nan=0.0), 0.0, 1.0)
        self.maximum = np.clip(np.maximum(self.maximum, b), self.floor, 1.0)
        return np.clip(b / self.maximum, 0.0, 1.0)


class Calibrator:
    """Raw solved state in, calibrated state out; runs captures when asked.

    Without a neutral and without the adaptive range it passes states through
    untouched. While a capture runs, states go out as before it (uncalibrated at
    start, with the previous neutral on a recalibration), so the avatar never
    jumps to the uncalibrated face mid-show.
    """

    def __init__(self, *, neutral: Neutral | None = None, adaptive_range: bool = False):
        self.neutral = neutral
        self.adaptive = AdaptiveRange() if adaptive_range else None
        self.capture: Capture | None = None
        self._finished: Neutral | None = None
        self._calibrated_at: float | None = None
        self._last_t = 0.0

    # ---- requests ----

    def start_capture(self, seconds: float) -> None:
        """Capture a new neutral over the next `seconds` of face (restarts a running capture)."""
        self.capture = Capture(seconds)

    @property
    def capturing(self) -> bool:
        return self.capture is not None

    def take_finished(self) -> Neutral | None:
        """The neutral a capture produced since the last call (once), else None."""
        finished, self._finished = self._finished, None
        return finished

    # ---- per frame ----

    def process(self, t: float, state: FaceState | None) -> FaceState | None:
        self._last_t = t
        if self.capture is not None:
            self._feed_capture(t, state)
        if state is None or (self.neutral is None and self.adaptive is None):
            return state
        out = self.neutral.apply(state) if self.neutral is not None else state
        if self.adaptive is not None:
            out = replace(out, blendshapes=self.adaptive(t, out.blendshapes))   # never edits the caller's state
        return with_vrm_recomputed(out)

    def _feed_capture(self, t: float, state: FaceState | None) -> None:
        self.capture.add(t, state)
        if not self.capture.done:
            return
        self.neutral = self._finished = self.capture.neutral()
        self.capture = None
        self._calibrated_at = t
        if self.adaptive is not None:
            # Maxima learned on the old scale would cap the new one.
            self.adaptive.reset()

    # ---- reporting ----

    @property
    def vmc_state(self) -> int:
        """/VMC/Ext/OK's calibration state: calibrating while a capture runs, else calibrated
        (a tracker without --calibrate needs none, so it is calibrated as before)."""
        return VMC_CALIBRATING if self.capture is not None else VMC_CALIBRATED

    def status_note(self) -> str:
        """The status line's calibration part for the last processed frame ('' = nothing to say)."""
        if self.capture is not None:
            return self.capture.status()
        if self._calibrated_at is not None and self._last_t - self._calibrated_at < CALIBRATED_NOTE_SECONDS:
            return "calibrated"
        return ""


# ---- profiles ---------------------------------------------------------------------

APP_DIR = "facemocap-osc"
PROFILES_DIR = "profiles"
PROFILE_SUFFIX = ".json"
PROFILE_FORMAT = "facemocap-osc neutral profile"
# 2: the rest in measurement space (measures, model). Version 1 held output-space
# blendshapes and eye angles, which the solver no longer takes: it cannot be converted.
PROFILE_VERSION = 2
# Wins over the platform rules on every platform; tests use it so they never touch a real home.
CONFIG_DIR_ENV = "FACEMOCAP_OSC_CONFIG_DIR"
PROFILE_NAME = re.compile(r"(?!\.)[A-Za-z0-9_.-]{1,64}")
PROFILE_NAME_RULE = "1-64 letters, digits, '_', '.' or '-', not starting with '.'"
# Bounds a stored value must be within (FaceState's own sanitized() ranges).
# Measures are centimetres or eye widths of a face: a few at most, 100 is no face.
MEASURE_BOUNDS = (-100.0, 100.0)
MODEL_BOUNDS = (0.0, MAX_CAPTURED_MODEL_REST)
HEAD_ANGLE_BOUNDS = (-180.0, 180.0)
HEAD_POSITION_BOUNDS = (-100.0, 100.0)
HEAD_ANGLE_KEYS = ("yaw", "pitch", "roll")
POSITION_KEYS = ("x", "y", "z")
PROFILE_UNITS = ("measures in canonical-face centimetres (eye_open and lower_lid in eye widths), "
                 "model scores 0-1, angles in degrees, head_position in metres")


class ProfileError(Exception):
    """A profile that cannot be read or written; one line, naming the file and key."""


def config_dir() -> Path:
    """facemocap-osc's folder in the user's configuration directory."""
    override = os.environ.get(CONFIG_DIR_ENV)
    if override:
        return Path(override)
    if sys.platform.startswith("win"):
        base = os.environ.get("APPDATA") or str(Path.home() / "AppData" / "Roaming")
    elif sys.platform == "darwin":
        base = str(Path.home() / "Library" / "Application Support")
    else:
        # The XDG spec says a relative XDG_CONFIG_HOME is invalid and to be ignored.
        xdg = os.environ.get("XDG_CONFIG_HOME", "")
        base = xdg if os.path.isabs(xdg) else str(Path.home() / ".config")
    return Path(base) / APP_DIR


def profiles_dir() -> Path:
    return config_dir() / PROFILES_DIR


def check_profile_name(name: str) -> str:
    if not PROFILE_NAME.fullmatch(name or ""):
        raise ProfileError(f"invalid profile name {name!r}: use {PROFILE_NAME_RULE}")
    return name


def profile_path(name: str) -> Path:
    return profiles_dir() / (check_profile_name(name) + PROFILE_SUFFIX)


def ensure_profiles_dir() -> Path:
    """Create the profiles folder now, so a run that will save fails at start, not after."""
    folder = profiles_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ProfileError(f"cannot create the profiles folder {folder}: {error.strerror or error}") from None
    return folder


def neutral_to_dict(neutral: Neutral, created: datetime | None = None) -> dict:
    model = None
    if neutral.model is not None:
        # tongueOut left out: the model gives none, so there is no rest to keep.
        model = {n: v for n, v, none in zip(ARKIT_NAMES, neutral.model.tolist(), _NO_MODEL_SCORE) if not none}
    return {
        "format": PROFILE_FORMAT,
        "version": PROFILE_VERSION,
        "created": (created or datetime.now(timezone.utc)).isoformat(timespec="seconds"),
        "units": PROFILE_UNITS,
        "head_angles": dict(zip(HEAD_ANGLE_KEYS, neutral.head_angles.tolist())),
        "head_position": dict(zip(POSITION_KEYS, neutral.head_position.tolist())),
        "measures": None if neutral.measures is None else dict(zip(geometry.MEASURES, neutral.measures.tolist())),
        "model": model,
    }


class _Reader:
    """Checked access to a parsed profile; every error names the file and the dotted key."""

    def __init__(self, path: Path, data):
        self.path, self.data = path, data

    def fail(self, message: str):
        raise ProfileError(f"{self.path}: {message}")

    def get(self, keys: tuple[str, ...]):
        value = self.data
        for depth, key in enumerate(keys):
            if not isinstance(value, dict):
                where = ".".join(keys[:depth]) or "the top level"
                self.fail(f"key '{where}' must be an object")
            if key not in value:
                self.fail(f"missing key '{'.'.join(keys)}'")
            value = value[key]
        return value

    def number(self, keys: tuple[str, ...], bounds: tuple[float, float]) -> float:
        value = self.get(keys)
        # bool is an int in Python, but true/false in a profile is a mistake.
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            self.fail(f"key '{'.'.join(keys)}' must be a number")
        low, high = bounds
        if not low <= value <= high:
            self.fail(f"key '{'.'.join(keys)}' must be between {low:g} and {high:g}, not {value:g}")
        return float(value)


def neutral_from_dict(data, path: Path) -> Neutral:
    r = _Reader(path, data)
    if not isinstance(data, dict):
        r.fail("expected a JSON object")
    version = r.get(("version",))
    if isinstance(version, bool) or not isinstance(version, int):
        r.fail("key 'version' must be a whole number")
    if version == 1:
        r.fail(f"key 'version' is 1: this profile was made by an older facemocap-osc; "
               f"capture it again with --calibrate SECONDS --profile {path.stem}")
    if version != PROFILE_VERSION:
        r.fail(f"key 'version' is {version}; this facemocap-osc reads version {PROFILE_VERSION}")
    return Neutral(
        measures=_optional_table(r, "measures", geometry.MEASURES, MEASURE_BOUNDS),
        model=_model_rest(r),
        head_angles=[r.number(("head_angles", k), HEAD_ANGLE_BOUNDS) for k in HEAD_ANGLE_KEYS],
        head_position=[r.number(("head_position", k), HEAD_POSITION_BOUNDS) for k in POSITION_KEYS],
    )


def _optional_table(r: _Reader, key: str, names, bounds) -> list[float] | None:
    """The numbers of r's object `key`, one per name; null gives None."""
    value = r.get((key,))
    if value is None:
        return None
    if not isinstance(value, dict):
        r.fail(f"key '{key}' must be an object or null")
    return [r.number((key, n), bounds) for n in names]


def _model_rest(r: _Reader) -> list[float] | None:
    scored = [n for n, none in zip(ARKIT_NAMES, _NO_MODEL_SCORE) if not none]
    values = _optional_table(r, "model", scored, MODEL_BOUNDS)
    if values is None:
        return None
    for name in (n for n, none in zip(ARKIT_NAMES, _NO_MODEL_SCORE) if none):
        # facemocap-osc never writes one: a rest for a score that never comes is a hand
        # edit that misunderstood something, worth saying rather than ignoring.
        if name in r.data["model"] and r.number(("model", name), MODEL_BOUNDS) != 0.0:
            r.fail(f"key 'model.{name}' must be 0 or absent: the model gives no {name}")
    rest = iter(values)
    return [0.0 if none else next(rest) for none in _NO_MODEL_SCORE]


def load_profile(name: str) -> Neutral:
    path = profile_path(name)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ProfileError(f"no profile '{name}' (looked for {path}); "
                           f"capture one with --calibrate SECONDS --profile {name}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ProfileError(f"{path}: cannot read: {getattr(error, 'strerror', None) or error}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise ProfileError(f"{path}: not valid JSON ({error.msg} at line {error.lineno}, column {error.colno})") from None
    return neutral_from_dict(data, path)


def save_profile(name: str, neutral: Neutral) -> Path:
    """Write atomically (a temp file in the same folder, then rename): a crash or a
    full disk never leaves a half-written profile behind."""
    path = profile_path(name)
    folder = ensure_profiles_dir()
    text = json.dumps(neutral_to_dict(neutral), indent=2) + "\n"
    tmp = None
    try:
        with tempfile.NamedTemporaryFile("w", encoding="utf-8", dir=folder, prefix=f".{name}.",
                                         suffix=".tmp", delete=False) as f:
            tmp = f.name
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as error:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
        raise ProfileError(f"{path}: cannot write: {error.strerror or error}") from None
    return path
