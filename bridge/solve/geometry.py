"""The solver: 478 landmarks in, a FaceState out. Pure numpy, no I/O, no globals
beyond constants.

1. Head pose: a weighted similarity fit (Umeyama) of MediaPipe's canonical face
   to the observed points, over the stable points MediaPipe itself uses for its
   rigid fit. That gives rotation, scale and position.
2. Everything else is measured on the points brought back into the canonical
   face's frame ("head-aligned": rotation, position and face size removed), so
   turning the head or moving closer changes no expression. Distances there are
   in the canonical face's centimetres.
3. Each measure is mapped to [0, 1] with a documented rest value and range.
"""

from __future__ import annotations

import math

import numpy as np

from bridge import landmarks as lm
from bridge.state import ARKIT_INDEX, VRM0_INDEX, VRM0_NAMES, FaceState, matrix_to_angles

# --- ranges (canonical-face centimetres unless said) --------------------------
# Eye openness, in eye widths: the upper lid's height above the line through the
# eye corners plus half the gap between the lids. The upper lid carries a blink;
# counting it twice keeps a squint (the lower lid rising in a smile) from reading
# as closing. Open eyes read 0.18-0.38, closed ones -0.05-0.06; the ramp between
# goes through a smoothstep so half-open lids stay low and closed ones reach 1.
EYE_OPEN = 0.17
EYE_CLOSED = 0.05
# Eyes opened wider than open eyes ever rest (the shared clips rest at 0.3-0.38).
EYE_WIDE_START, EYE_WIDE_FULL = 0.42, 0.6
# Lower lid height below the eye centre (eye widths): rest about -0.1, raised in a squint.
LOWER_LID_REST = -0.07
LOWER_LID_SQUINT = 0.0
# Iris offset from the eye centre -> gaze angle through an eyeball of this radius.
EYEBALL_RADIUS = 1.25
# Iris rest height above the line through the eye corners, in eye widths.
IRIS_REST_HEIGHT = 0.05
EYE_LOOK_RANGE_YAW = 30.0    # degrees that read as eyeLookIn/Out = 1
EYE_LOOK_RANGE_PITCH = 25.0  # degrees that read as eyeLookUp/Down = 1
# Jaw: nose base to chin with the lips closed (the canonical face's 7.31 less its
# 0.55 lip gap); the chin dropping by JAW_DROP_FULL reads jawOpen = 1. The inner lip
# gap counts too, for faces whose chin the mesh follows poorly.
JAW_REST = 6.8
JAW_DROP_FULL = 2.2
LIP_GAP_CLOSED = 0.4
LIP_GAP_FULL = 3.5
# Mouth corners: rest height relative to the inner lip centre (it rises by
# CORNER_RISE_PER_GAP per cm of lip gap as the lower lip drops), and rest half width.
CORNER_REST_HEIGHT = -0.15
CORNER_RISE_PER_GAP = 0.1
MOUTH_REST_HALF_WIDTH = 2.45
SMILE_WIDEN_WEIGHT = 0.5     # how much the mouth's widening counts towards a smile, with the corners' rise
# Corner rise plus the weighted widening that is still neutral, and that reads as a
# full smile. Resting mouths of the shared clips' three people read up to about
# 0.2-0.55 (90th percentile of frames the Face Landmarker calls unsmiling), smiles
# from 0.45 (an open laugh) to 1.1 (a closed smile).
SMILE_START = 0.45
CORNER_RAISE_FULL = 1.05
MOUTH_WIDEN_FULL = 0.7       # cm of extra half width for a full smile / stretch
MOUTH_NARROW_FULL = 0.7      # cm of lost half width for a full pucker / funnel
# Brow heights above the eye-corner line.
# (the canonical face's values; real faces at rest read within about +-0.3)
BROW_INNER_REST = 1.95
BROW_MIDDLE_REST = 2.15
BROW_OUTER_REST = 1.45
BROW_UP_START, BROW_UP_FULL = 0.25, 0.85
BROW_DOWN_START, BROW_DOWN_FULL = 0.2, 0.7

# Channels measured against the canonical face's own rest value (see _REST), with
# (start, full) ranges in centimetres of change. Faces differ from the canonical one
# by about as much as these expressions move (seen on the shared clips: cheeks
# 0.1-0.4 cm wider, lips 0.1-0.4 cm thinner, chins 0-0.6 cm further back), so each
# start lies beyond those offsets: uncalibrated faces read 0 at rest.
JAW_FORWARD_RANGE = (0.25, 0.8)        # chin moving towards the camera
SHRUG_LOWER_RANGE = (0.1, 0.5)         # lower lip pushed up away from the chin, mouth closed
SHRUG_UPPER_RANGE = (0.2, 0.6)         # upper lip raised towards the nose, mouth closed
PRESS_RANGE = (0.3, 0.7)               # lips thinner at the sides, mouth closed
DIMPLE_RANGE = (0.3, 0.7)              # a mouth corner pulled back, without a smile
CHEEK_PUFF_RANGE = (0.45, 0.9)         # cheeks pushed outwards, mouth closed

# Lowered eyes vs closed eyes. In one frame the landmarks of lids lowered to follow
# a downward gaze and of closed lids are the same; how the lids got there differs.
# A blink or a deliberate closure shuts both eyes within a frame or two; looking
# down lowers the lids over a tenth of a second or more. So an eye whose lids took
# longer than SLOW_CLOSING_SECONDS to close, while the other eye was not open either,
# is "lowered"; and since both eyes look down together, the other eye is too while
# it stays shut. A lowered eye reads a blink of at most LOWERED_BLINK and looks down.
SLOW_CLOSING_SECONDS = 0.08
LOWERED_BLINK = 0.35
LID_WATCH_GAP_SECONDS = 0.5  # a longer gap between frames (face lost) starts afresh

# Assumed horizontal field of view of a webcam, for the head's distance estimate.
CAMERA_FOV_DEGREES = 60.0

# Landmarks are image pixels (a few thousand at most). A backend's garbage beyond this
# (1e30, the float maximum) is clipped to it, so no product in the fit can overflow:
# an inf reaching the SVD makes LAPACK spin forever, a NaN makes it raise.
LANDMARK_LIMIT = 1e9


def _ramp(x: float, lo: float, hi: float) -> float:
    """0 at lo, 1 at hi, clamped (lo may be greater than hi for a falling ramp).

    Plain floats on purpose: ~50 of these run per frame, and numpy's per-call
    overhead on scalars would be most of the solver's time.
    """
    v = (x - lo) / (hi - lo)
    return 0.0 if v < 0.0 else 1.0 if v > 1.0 else v


def _mean(values: list[float], indices) -> float:
    return sum(values[i] for i in indices) / len(indices)


def _degrees_asin(v: float) -> float:
    return math.degrees(math.asin(-1.0 if v < -1.0 else 1.0 if v > 1.0 else v))


class RigidFit:
    """Weighted similarity fit (Umeyama) of a fixed reference: points ~= scale * R @ reference + t.

    The reference side is prepared once; a fit is then one 3x3 SVD.
    """

    def __init__(self, reference: np.ndarray, weights: np.ndarray):
        self.w = weights / weights.sum()
        self.mu_r = self.w @ reference
        centred = reference - self.mu_r
        self.weighted_ref_t = (centred * self.w[:, None]).T
        self.var_r = float(self.w @ np.sum(centred * centred, axis=1))

    def __call__(self, points: np.ndarray):
        """(R, scale, t). Degenerate input (collinear, all equal) gives the identity, not NaN."""
        mu_p = self.w @ points
        cross = self.weighted_ref_t @ (points - mu_p)
        if not np.isfinite(cross).all():   # never hand LAPACK an inf (it hangs) or a NaN (it raises)
            return np.eye(3), 1.0, np.nan_to_num(mu_p, nan=0.0, posinf=0.0, neginf=0.0)
        u, sing, vt = np.linalg.svd(cross)
        rot = vt.T @ u.T
        if np.linalg.det(rot) < 0:  # a reflection: flip the weakest axis
            vt[2] = -vt[2]
            sing[2] = -sing[2]
            rot = vt.T @ u.T
        scale = float(sing.sum()) / self.var_r
        if not np.isfinite(rot).all() or not scale > 1e-9:
            return np.eye(3), 1.0, mu_p
        return rot, scale, mu_p - scale * rot @ self.mu_r


def _head_position(t, scale, width, height):
    """Metres from the camera, subject frame, from the face's size in pixels."""
    focal = (width / 2.0) / np.tan(np.radians(CAMERA_FOV_DEGREES) / 2.0)
    depth_cm = focal / max(scale, 1e-6)  # scale is pixels per canonical centimetre
    x = (t[0] - width / 2.0) / scale
    y = (t[1] + height / 2.0) / scale  # t[1] is -(image y)
    return np.array([x, y, -depth_cm]) / 100.0


# --- measures on head-aligned points --------------------------------------------

def _eye_measures(x, y, outer, inner, upper, lower, iris):
    """Openness, gaze (yaw, pitch) degrees and lower-lid raise for one eye."""
    width = math.hypot(x[outer] - x[inner], y[outer] - y[inner]) or 1e-9
    corner_x = (x[outer] + x[inner]) / 2.0
    corner_y = (y[outer] + y[inner]) / 2.0
    upper_y, lower_y = _mean(y, upper), _mean(y, lower)
    openness = (upper_y - corner_y + 0.5 * (upper_y - lower_y)) / width
    dx = x[iris[0]] - corner_x
    dy = y[iris[0]] - corner_y - IRIS_REST_HEIGHT * width
    yaw = _degrees_asin(dx / EYEBALL_RADIUS)
    pitch = _degrees_asin(dy / EYEBALL_RADIUS)
    return openness, yaw, pitch, (lower_y - corner_y) / width


_EYES = ((lm.LEFT_EYE_OUTER, lm.LEFT_EYE_INNER, lm.LEFT_EYE_UPPER_LID, lm.LEFT_EYE_LOWER_LID, lm.LEFT_IRIS),
         (lm.RIGHT_EYE_OUTER, lm.RIGHT_EYE_INNER, lm.RIGHT_EYE_UPPER_LID, lm.RIGHT_EYE_LOWER_LID, lm.RIGHT_IRIS))


def eye_openness(a: np.ndarray) -> tuple[float, float]:
    """(left, right) eye openness of head-aligned points, as _eye_measures defines it."""
    x, y = a[:, 0].tolist(), a[:, 1].tolist()
    left, right = (_eye_measures(x, y, *eye)[0] for eye in _EYES)
    return left, right


class LidWatch:
    """Per eye: open, closed (a blink) or lowered (looking down), from how fast the
    lids closed. See SLOW_CLOSING_SECONDS."""

    def __init__(self):
        self._last_time: float | None = None
        self._last_open: list[float | None] = [None, None]
        self._state = ["open", "open"]

    def update(self, time: float, openness: tuple[float, float]) -> tuple[bool, bool]:
        if self._last_time is None or not 0 < time - self._last_time < LID_WATCH_GAP_SECONDS:
            self.__init__()
        self._last_time = time
        shut = (EYE_OPEN + EYE_CLOSED) / 2.0
        for eye, other in ((0, 1), (1, 0)):
            if openness[eye] >= EYE_OPEN:
                self._last_open[eye], self._state[eye] = time, "open"
            elif openness[eye] <= shut and self._state[eye] == "open":
                since_open = self._last_open[eye]
                slow = since_open is not None and time - since_open > SLOW_CLOSING_SECONDS
                self._state[eye] = "lowered" if slow and openness[other] < EYE_OPEN else "closed"
        for eye, other in ((0, 1), (1, 0)):
            if self._state[eye] == "closed" and self._state[other] == "lowered":
                self._state[eye] = "lowered"
        return self._state[0] == "lowered", self._state[1] == "lowered"


def measure(a: np.ndarray, lowered: tuple[bool, bool] = (False, False)) -> FaceState:
    """Expression values from head-aligned points (canonical-face centimetres).

    `lowered` (left, right): the eye is looking down rather than closed (LidWatch)."""
    x, y, z = a[:, 0].tolist(), a[:, 1].tolist(), a[:, 2].tolist()
    b = [0.0] * len(ARKIT_INDEX)

    def set_(name, value):
        b[ARKIT_INDEX[name]] = value

    # Eyes.
    l_open, l_yaw, l_pitch, l_low = _eye_measures(x, y, *_EYES[0])
    r_open, r_yaw, r_pitch, r_low = _eye_measures(x, y, *_EYES[1])
    squint = {"Left": _ramp(l_low, LOWER_LID_REST, LOWER_LID_SQUINT),
              "Right": _ramp(r_low, LOWER_LID_REST, LOWER_LID_SQUINT)}
    for side, openness, yaw, pitch, is_lowered in (("Left", l_open, l_yaw, l_pitch, lowered[0]),
                                                   ("Right", r_open, r_yaw, r_pitch, lowered[1])):
        closing = _ramp(openness, EYE_OPEN, EYE_CLOSED)
        blink = closing * closing * (3.0 - 2.0 * closing)
        if is_lowered:
            blink, pitch = LOWERED_BLINK * blink, min(pitch, -closing * EYE_LOOK_RANGE_PITCH)
        set_(f"eyeBlink{side}", blink)
        set_(f"eyeWide{side}", _ramp(openness, EYE_WIDE_START, EYE_WIDE_FULL))
        set_(f"eyeSquint{side}", squint[side])
        outward = yaw if side == "Left" else -yaw  # the left eye looks out towards +X
        set_(f"eyeLookOut{side}", _ramp(outward, 0.0, EYE_LOOK_RANGE_YAW))
        set_(f"eyeLookIn{side}", _ramp(-outward, 0.0, EYE_LOOK_RANGE_YAW))
        set_(f"eyeLookUp{side}", _ramp(pitch, 0.0, EYE_LOOK_RANGE_PITCH))
        set_(f"eyeLookDown{side}", _ramp(-pitch, 0.0, EYE_LOOK_RANGE_PITCH))

    # Mouth.
    gap = max(y[lm.UPPER_LIP_INNER] - y[lm.LOWER_LIP_INNER], 0.0)
    chin_drop = (y[lm.NOSE_BASE] - y[lm.CHIN]) - JAW_REST
    jaw_open = max(_ramp(chin_drop, 0.15, JAW_DROP_FULL), 0.8 * _ramp(gap, LIP_GAP_CLOSED, LIP_GAP_FULL))
    set_("jawOpen", jaw_open)
    lip_x = (x[lm.UPPER_LIP_INNER] + x[lm.LOWER_LIP_INNER]) / 2.0
    lip_y = (y[lm.UPPER_LIP_INNER] + y[lm.LOWER_LIP_INNER]) / 2.0
    half_width = {"Right": lip_x - x[lm.MOUTH_RIGHT_CORNER], "Left": x[lm.MOUTH_LEFT_CORNER] - lip_x}
    corner_height = {"Right": y[lm.MOUTH_RIGHT_CORNER] - lip_y, "Left": y[lm.MOUTH_LEFT_CORNER] - lip_y}
    corner_rest = CORNER_REST_HEIGHT + CORNER_RISE_PER_GAP * gap
    for side in ("Left", "Right"):
        raise_ = corner_height[side] - corner_rest
        widen = half_width[side] - MOUTH_REST_HALF_WIDTH
        smile = _ramp(raise_ + SMILE_WIDEN_WEIGHT * max(widen, 0.0), SMILE_START, CORNER_RAISE_FULL)
        set_(f"mouthSmile{side}", smile)
        set_(f"mouthFrown{side}", _ramp(-raise_, 0.15, CORNER_RAISE_FULL))
        set_(f"mouthStretch{side}", _ramp(widen, 0.15, MOUTH_WIDEN_FULL) * (1.0 - smile))
        set_(f"cheekSquint{side}", smile * squint[side])
    narrow = _ramp(2.0 * MOUTH_REST_HALF_WIDTH - half_width["Left"] - half_width["Right"],
                   0.2, 2.0 * MOUTH_NARROW_FULL)
    opening = _ramp(gap, 0.3, 1.5)
    set_("mouthFunnel", narrow * opening)
    set_("mouthPucker", narrow * (1.0 - opening))
    mouth_shift = (half_width["Right"] - half_width["Left"]) / 2.0  # + = centre moved to own left
    set_("mouthLeft", _ramp(mouth_shift, 0.15, 0.8))
    set_("mouthRight", _ramp(-mouth_shift, 0.15, 0.8))
    chin_shift = x[lm.CHIN]
    set_("jawLeft", _ramp(chin_shift, 0.2, 1.2))
    set_("jawRight", _ramp(-chin_shift, 0.2, 1.2))
    set_("mouthRollUpper", _ramp(y[lm.UPPER_LIP_TOP] - y[lm.UPPER_LIP_INNER], 0.45, 0.1))
    set_("mouthRollLower", _ramp(y[lm.LOWER_LIP_INNER] - y[lm.LOWER_LIP_BOTTOM], 0.7, 0.2))
    # Lips kept together while the chin drops.
    set_("mouthClose", _ramp(chin_drop, 0.15, JAW_DROP_FULL) * (1.0 - _ramp(gap, LIP_GAP_CLOSED, 1.0)))
    for side, upper, lower in (("Left", lm.UPPER_LIP_LEFT, lm.LOWER_LIP_LEFT),
                               ("Right", lm.UPPER_LIP_RIGHT, lm.LOWER_LIP_RIGHT)):
        set_(f"mouthUpperUp{side}", _ramp(y[lm.NOSE_BASE] - y[upper], 1.5, 0.9))
        set_(f"mouthLowerDown{side}", _ramp(y[lower] - y[lm.CHIN], 4.2, 3.5) * jaw_open)

    # Channels measured against the canonical face's rest (see _rest_measures).
    closed = 1.0 - opening
    m = _rest_measures(x, y, z)
    set_("jawForward", _ramp(m["chin_forward"] - _REST["chin_forward"], *JAW_FORWARD_RANGE))
    set_("mouthShrugLower", _ramp(m["lower_lip_to_chin"] - _REST["lower_lip_to_chin"], *SHRUG_LOWER_RANGE)
         * (1.0 - jaw_open))
    set_("mouthShrugUpper", _ramp(_REST["upper_lip_to_nose"] - m["upper_lip_to_nose"], *SHRUG_UPPER_RANGE)
         * (1.0 - jaw_open) * closed)
    set_("cheekPuff", _ramp(m["cheek_half_width"] - _REST["cheek_half_width"], *CHEEK_PUFF_RANGE) * closed)
    for side in ("Left", "Right"):
        set_(f"mouthPress{side}", _ramp(_REST[f"lip_thickness{side}"] - m[f"lip_thickness{side}"], *PRESS_RANGE)
             * closed)
        set_(f"mouthDimple{side}", _ramp(_REST[f"corner_depth{side}"] - m[f"corner_depth{side}"], *DIMPLE_RANGE)
             * (1.0 - b[ARKIT_INDEX[f"mouthSmile{side}"]]))

    # Brows: heights above the eye-corner line of the same side.
    inner_up = 0.0
    for side, eye, inner, middle, outer in (
            ("Left", (lm.LEFT_EYE_OUTER, lm.LEFT_EYE_INNER), lm.LEFT_BROW_INNER, lm.LEFT_BROW_MIDDLE, lm.LEFT_BROW_OUTER),
            ("Right", (lm.RIGHT_EYE_OUTER, lm.RIGHT_EYE_INNER), lm.RIGHT_BROW_INNER, lm.RIGHT_BROW_MIDDLE, lm.RIGHT_BROW_OUTER)):
        eye_line = _mean(y, eye)
        inner_h = _mean(y, inner) - eye_line
        middle_h = _mean(y, middle) - eye_line
        outer_h = _mean(y, outer) - eye_line
        lowered = (BROW_INNER_REST - inner_h + BROW_MIDDLE_REST - middle_h) / 2.0
        set_(f"browDown{side}", _ramp(lowered, BROW_DOWN_START, BROW_DOWN_FULL))
        set_(f"browOuterUp{side}", _ramp(outer_h - BROW_OUTER_REST, BROW_UP_START, BROW_UP_FULL))
        inner_up += 0.5 * _ramp(inner_h - BROW_INNER_REST, BROW_UP_START, BROW_UP_FULL)
    set_("browInnerUp", inner_up)

    # Nose wings rise towards the eyes in a sneer.
    for side, nostril, eye_inner in (("Left", lm.NOSTRIL_LEFT, lm.LEFT_EYE_INNER),
                                     ("Right", lm.NOSTRIL_RIGHT, lm.RIGHT_EYE_INNER)):
        set_(f"noseSneer{side}", _ramp(y[eye_inner] - y[nostril], 4.2, 3.7))

    eye_angles = np.array([[l_yaw, l_pitch], [r_yaw, r_pitch]])
    shapes = np.clip(np.array(b), 0.0, 1.0)  # NaN from degenerate input is cleared by solve()
    return FaceState(blendshapes=shapes, vrm=vrm_presets(shapes, eye_angles), head_angles=np.zeros(3),
                     head_position=np.zeros(3), eye_angles=eye_angles)


def _rest_measures(x, y, z) -> dict[str, float]:
    """Distances whose rest value is the canonical face's own (_REST)."""
    return {
        "chin_forward": z[lm.CHIN],
        "lower_lip_to_chin": y[lm.LOWER_LIP_BOTTOM] - y[lm.CHIN],
        "upper_lip_to_nose": y[lm.NOSE_BASE] - y[lm.UPPER_LIP_TOP],
        "cheek_half_width": (x[lm.CHEEK_LEFT] - x[lm.CHEEK_RIGHT]) / 2.0,
        # Both lips' thickness at the side (outer minus inner contour), not the gap between them.
        "lip_thicknessLeft": (y[lm.UPPER_LIP_LEFT] - y[lm.INNER_LIP_UPPER[2]])
                             + (y[lm.INNER_LIP_LOWER[2]] - y[lm.LOWER_LIP_LEFT]),
        "lip_thicknessRight": (y[lm.UPPER_LIP_RIGHT] - y[lm.INNER_LIP_UPPER[0]])
                              + (y[lm.INNER_LIP_LOWER[0]] - y[lm.LOWER_LIP_RIGHT]),
        "corner_depthLeft": z[lm.MOUTH_LEFT_CORNER],
        "corner_depthRight": z[lm.MOUTH_RIGHT_CORNER],
    }


_CANONICAL = lm.canonical_face()
_REST = _rest_measures(_CANONICAL[:, 0].tolist(), _CANONICAL[:, 1].tolist(), _CANONICAL[:, 2].tolist())


def vrm_presets(b: np.ndarray, eye_angles: np.ndarray) -> np.ndarray:
    """VRM 0.x presets from ARKit values and gaze (documented in the README)."""
    shapes = dict(zip(ARKIT_INDEX, np.asarray(b).tolist()))
    get = shapes.__getitem__
    v = [0.0] * len(VRM0_NAMES)

    def put(name, value):
        v[VRM0_INDEX[name]] = value

    open_ = get("jawOpen")
    rounded = max(get("mouthFunnel"), get("mouthPucker"))
    spread = max((get("mouthSmileLeft") + get("mouthSmileRight")) / 2.0,
                 (get("mouthStretchLeft") + get("mouthStretchRight")) / 2.0)
    put("A", open_ * (1.0 - rounded) * (1.0 - spread))
    put("I", spread * (1.0 - open_) * 0.6)
    put("U", get("mouthPucker"))
    put("E", spread * open_)
    put("O", min(1.0, get("mouthFunnel") * 1.5))
    blink_l, blink_r = get("eyeBlinkLeft"), get("eyeBlinkRight")
    both = min(blink_l, blink_r)
    put("Blink", both)
    put("Blink_L", blink_l - both)
    put("Blink_R", blink_r - both)
    smile = (get("mouthSmileLeft") + get("mouthSmileRight")) / 2.0
    put("Joy", smile * open_)
    put("Fun", smile * (1.0 - open_))
    put("Angry", (get("browDownLeft") + get("browDownRight")) / 2.0 * (1.0 - smile))
    frown = (get("mouthFrownLeft") + get("mouthFrownRight")) / 2.0
    put("Sorrow", max(frown, get("browInnerUp") * frown * 2.0) * (1.0 - smile))
    (left_yaw, left_pitch), (right_yaw, right_pitch) = np.asarray(eye_angles).tolist()
    yaw, pitch = (left_yaw + right_yaw) / 2.0, (left_pitch + right_pitch) / 2.0
    put("LookUp", _ramp(pitch, 0.0, EYE_LOOK_RANGE_PITCH))
    put("LookDown", _ramp(-pitch, 0.0, EYE_LOOK_RANGE_PITCH))
    put("LookLeft", _ramp(yaw, 0.0, EYE_LOOK_RANGE_YAW))
    put("LookRight", _ramp(-yaw, 0.0, EYE_LOOK_RANGE_YAW))
    return np.clip(np.array(v), 0.0, 1.0)
