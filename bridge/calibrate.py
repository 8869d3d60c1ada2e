"""Neutral-face calibration: the first step of shaping (calibrate -> filter -> map).

A performer whose resting face reads as slightly smiling, brows raised or head
tilted gets that rest face captured once (a :class:`Neutral`) and removed from
every later frame:

* blendshape b -> clip((b - n) / max(1 - n, DENOMINATOR_FLOOR), 0, 1): the rest
  value reads 0 and the channel still reaches 1. The floor keeps a channel that
  rests very high from amplifying its noise (it then tops out below 1).
* head rotation: R_n^-1 * R as quaternions, i.e. the turn away from the rest pose
  in the rest pose's own frame (subtracting Euler angles would be wrong as soon
  as the rest pose has a tilt: yaw and roll do not commute).
* eye angles and head position: minus the rest values.
* VRM presets are recomputed from the calibrated blendshapes and eyes.

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

from bridge.solve import vrm_presets
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

# ---- applying ------------------------------------------------------------------
DENOMINATOR_FLOOR = 0.25         # see the module doc: caps the gain of a high-resting channel at 4x

# ---- adaptive range --------------------------------------------------------------
ADAPTIVE_FLOOR = 0.5             # running max starts here and never drops below: gain <= 2x
ADAPTIVE_DECAY_SECONDS = 180.0   # time constant of the running max's decay back to the floor


def _head_quat(head_angles) -> np.ndarray:
    return angles_to_quat(*(float(a) for a in head_angles))


def _quat_to_angles(q) -> np.ndarray:
    return np.array(matrix_to_angles(quat_to_matrix(np.asarray(q, float))))


@dataclass(eq=False)   # numpy fields: == would be ambiguous
class Neutral:
    """The captured rest face, in raw solver units."""

    blendshapes: np.ndarray     # (52,) ARKIT_NAMES order
    head_angles: np.ndarray     # (3,) yaw, pitch, roll degrees
    eye_angles: np.ndarray      # (2, 2) [[left yaw, pitch], [right yaw, pitch]] degrees
    head_position: np.ndarray   # (3,) metres

    def __post_init__(self):
        self.blendshapes = np.asarray(self.blendshapes, float).reshape(len(ARKIT_NAMES))
        self.head_angles = np.asarray(self.head_angles, float).reshape(3)
        self.eye_angles = np.asarray(self.eye_angles, float).reshape(2, 2)
        self.head_position = np.asarray(self.head_position, float).reshape(3)
        # Precomputed once: they are used every frame.
        self._range = np.maximum(1.0 - self.blendshapes, DENOMINATOR_FLOOR)
        self._inverse_head = quat_conjugate(_head_quat(self.head_angles))

    def apply(self, state: FaceState) -> FaceState:
        """The state relative to this rest face. VRM is left to the caller
        (Calibrator recomputes it once, after the optional adaptive range)."""
        blendshapes = np.clip((state.blendshapes - self.blendshapes) / self._range, 0.0, 1.0)
        head = quat_multiply(self._inverse_head, _head_quat(state.head_angles))
        return FaceState(
            blendshapes=blendshapes,
            vrm=state.vrm.copy(),
            head_angles=_quat_to_angles(head),
            head_position=state.head_position - self.head_position,
            eye_angles=state.eye_angles - self.eye_angles,
        )


def with_vrm_recomputed(state: FaceState) -> FaceState:
    """VRM presets follow the (changed) blendshapes and eyes."""
    state.vrm = np.asarray(vrm_presets(state.blendshapes, state.eye_angles), float)
    return state


class NeutralAccumulator:
    """Running mean of face states (sums, so a long window costs no memory)."""

    def __init__(self):
        self.count = 0
        self._blendshapes = np.zeros(len(ARKIT_NAMES))
        self._eyes = np.zeros((2, 2))
        self._position = np.zeros(3)
        self._quat_sum = np.zeros(4)

    def add(self, state: FaceState) -> None:
        q = _head_quat(state.head_angles)
        # q and -q are the same rotation: keep all on one hemisphere so they add up.
        if self.count and float(np.dot(q, self._quat_sum)) < 0.0:
            q = -q
        self._blendshapes += state.blendshapes
        self._eyes += state.eye_angles
        self._position += state.head_position
        self._quat_sum += q
        self.count += 1

    def mean(self) -> Neutral:
        if not self.count:
            raise ValueError("no face frames to take a neutral from")
        n = self.count
        # The normalised quaternion sum: the mean rotation for the small spread
        # of a held pose, and free of Euler-angle wrap-around.
        q = self._quat_sum / np.linalg.norm(self._quat_sum)
        return Neutral(
            blendshapes=np.clip(self._blendshapes / n, 0.0, 1.0),
            head_angles=_quat_to_angles(q),
            eye_angles=self._eyes / n,
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
PROFILE_VERSION = 1
# Wins over the platform rules on every platform; tests use it so they never touch a real home.
CONFIG_DIR_ENV = "FACEMOCAP_OSC_CONFIG_DIR"
PROFILE_NAME = re.compile(r"(?!\.)[A-Za-z0-9_.-]{1,64}")
PROFILE_NAME_RULE = "1-64 letters, digits, '_', '.' or '-', not starting with '.'"
# Bounds a stored value must be within (FaceState's own sanitized() ranges).
BLENDSHAPE_BOUNDS = (0.0, 1.0)
HEAD_ANGLE_BOUNDS = (-180.0, 180.0)
EYE_ANGLE_BOUNDS = (-90.0, 90.0)
HEAD_POSITION_BOUNDS = (-100.0, 100.0)
HEAD_ANGLE_KEYS = ("yaw", "pitch", "roll")
EYE_KEYS = ("left", "right")
EYE_ANGLE_KEYS = ("yaw", "pitch")
POSITION_KEYS = ("x", "y", "z")


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
    (left_yaw, left_pitch), (right_yaw, right_pitch) = neutral.eye_angles.tolist()
    return {
        "format": PROFILE_FORMAT,
        "version": PROFILE_VERSION,
        "created": (created or datetime.now(timezone.utc)).isoformat(timespec="seconds"),
        "units": "blendshapes 0-1, angles in degrees, head_position in metres",
        "head_angles": dict(zip(HEAD_ANGLE_KEYS, neutral.head_angles.tolist())),
        "eye_angles": {"left": {"yaw": left_yaw, "pitch": left_pitch},
                       "right": {"yaw": right_yaw, "pitch": right_pitch}},
        "head_position": dict(zip(POSITION_KEYS, neutral.head_position.tolist())),
        "blendshapes": dict(zip(ARKIT_NAMES, neutral.blendshapes.tolist())),
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
    if version != PROFILE_VERSION:
        r.fail(f"key 'version' is {version}; this facemocap-osc reads version {PROFILE_VERSION}")
    return Neutral(
        blendshapes=[r.number(("blendshapes", n), BLENDSHAPE_BOUNDS) for n in ARKIT_NAMES],
        head_angles=[r.number(("head_angles", k), HEAD_ANGLE_BOUNDS) for k in HEAD_ANGLE_KEYS],
        eye_angles=[[r.number(("eye_angles", eye, k), EYE_ANGLE_BOUNDS) for k in EYE_ANGLE_KEYS]
                    for eye in EYE_KEYS],
        head_position=[r.number(("head_position", k), HEAD_POSITION_BOUNDS) for k in POSITION_KEYS],
    )


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
