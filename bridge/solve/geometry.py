"""The geometric path: landmarks in, measures and values out. Pure numpy, no I/O,
no state.

1. Head pose: a weighted similarity fit (Umeyama) of MediaPipe's canonical face
   to the observed points, over the stable points MediaPipe itself uses for its
   rigid fit. That gives rotation, scale and position.
2. The expression is measured on the points brought back into the canonical
   face's frame ("head-aligned": rotation, position and face size removed), so
   turning the head or moving closer changes no expression: MEASURES, in the
   canonical face's centimetres (eye measures in eye widths).
3. expression() maps each measure's change from a rest value (this person's, or
   REST_PRIOR's) to [0, 1] through the documented ranges below.
"""

from __future__ import annotations

import math

import numpy as np

from bridge import landmarks as lm
from bridge.solve.neutral import RestEstimator
from bridge.state import ARKIT_INDEX, VRM0_INDEX, VRM0_NAMES, FaceState

# --- ranges ----------------------------------------------------------------------
# Every expression is a measure's change from its rest value (this person's, see
# bridge/solve/neutral.py; PRIOR before that), in canonical-face centimetres unless
# said; "(start, full)" ranges map through _ramp.
#
# Eye openness, in eye widths: the upper lid's height above the line through the
# eye corners plus half the gap between the lids. The upper lid carries a blink;
# counting it twice keeps a squint (the lower lid rising in a smile) from reading
# as closing. Blinks are read as a fraction of this person's open eye (a ratio, as
# eyes differ in shape by as much as a blink moves them), through a smoothstep so
# half-open lids stay low and closed ones reach 1.
EYE_REST_MIN = 0.15          # a rest estimate never makes an eye this narrow count as open
EYE_OPEN_RATIO = 0.57
EYE_CLOSED_RATIO = 0.17
# Where eyeBlink passes 0.5: below this fraction of the open eye the lids count as shut.
EYE_SHUT_RATIO = (EYE_OPEN_RATIO + EYE_CLOSED_RATIO) / 2.0
EYE_WIDE_RANGE = (0.12, 0.3)     # opened wider than this person's rest
SQUINT_RANGE = (0.03, 0.1)       # the lower lid rising, eye widths
# Iris offset from the eye centre -> gaze angle through an eyeball of this radius, per
# axis: MediaPipe's iris moves as a 1.12 cm eyeball's would sideways but under half as far
# up and down (the lids cover the iris; measured on rendered eyeballs turned +-25 deg,
# bench/truth: with one 1.25 cm radius yaw read 0.90 and pitch 0.44 of the rendered angle).
EYEBALL_RADIUS_YAW = 1.12
EYEBALL_RADIUS_PITCH = 0.56
# MediaPipe's iris reads higher as the eye turns sideways (renders turned +-25 deg: +4 to +8
# deg of pitch, lids following or fixed): this much pitch per degree of yaw is taken off.
PITCH_PER_YAW = 0.12
EYE_LOOK_RANGE_YAW = 30.0    # degrees that read as eyeLookIn/Out = 1
EYE_LOOK_RANGE_PITCH = 25.0  # degrees that read as eyeLookUp/Down = 1
# Jaw: the chin dropping from the nose base by 2.0 cm reads jawOpen = 1. The chin's rest is
# this person's, and it wanders by up to 0.5-0.7 cm with closed lips (the mesh follows
# chins loosely), hence the start. The inner lip gap counts too, against no rest
# (closed lips are 0 apart on everyone): on the 19 people's labelled frames closed
# mouths read a gap of at most 0.17 cm bar tracking slips, open ones from 0.74.
CHIN_DROP_RANGE = (0.3, 2.0)
LIP_GAP_RANGE = (0.3, 2.0)
LIP_GAP_WEIGHT = 0.8
CLOSE_GAP_RANGE = (0.4, 1.0)     # mouthClose: lips still together
OPENING_RANGE = (0.3, 1.5)       # funnel (open) vs pucker (closed)
# Mouth corners: height relative to the inner lip centre, less CORNER_RISE_PER_GAP per
# cm of lip gap (the centre drops with the lower lip), and half width.
CORNER_RISE_PER_GAP = 0.1
SMILE_WIDEN_WEIGHT = 0.5     # how much the mouth's widening counts towards a smile, with the corners' rise
SMILE_RANGE = (0.45, 1.05)
FROWN_RANGE = (0.15, 1.05)
STRETCH_RANGE = (0.15, 0.7)
NARROW_RANGE = (0.2, 1.4)        # both half widths lost, pucker / funnel
MOUTH_SHIFT_RANGE = (0.15, 0.8)
JAW_SIDE_RANGE = (0.2, 1.2)
ROLL_UPPER_RANGE = (-0.14, -0.49)    # upper lip red shrinking
ROLL_LOWER_RANGE = (-0.12, -0.62)
UPPER_UP_RANGE = (-0.21, -0.81)      # upper lip side rising towards the nose
LOWER_DOWN_RANGE = (-0.375, -1.075)  # lower lip side dropping towards the chin
# Brow heights above the eye-corner line, against this person's (the brows' resting
# heights differ by +-0.3 cm between people, the expressions' first millimetres don't).
BROW_UP_RANGE = (0.1, 0.7)
BROW_DOWN_RANGE = (0.1, 0.6)
SNEER_RANGE = (0.1, 0.6)             # nostril wing rising towards the inner eye corner
JAW_FORWARD_RANGE = (0.25, 0.8)        # chin moving towards the camera
SHRUG_LOWER_RANGE = (0.1, 0.5)         # lower lip pushed up away from the chin, mouth closed
SHRUG_UPPER_RANGE = (0.2, 0.6)         # upper lip raised towards the nose, mouth closed
PRESS_RANGE = (0.3, 0.7)               # lips thinner at the sides, mouth closed
DIMPLE_RANGE = (0.3, 0.7)              # a mouth corner pulled back, without a smile
CHEEK_PUFF_RANGE = (0.45, 0.9)         # cheeks pushed outwards, mouth closed
LOWERED_BLINK = 0.35       # a lowered eye (bridge.solve.lids) reads at most this blink

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
    """Openness and lower-lid height (eye widths), iris offset from the corners' midpoint (cm)."""
    width = math.hypot(x[outer] - x[inner], y[outer] - y[inner]) or 1e-9
    corner_x = (x[outer] + x[inner]) / 2.0
    corner_y = (y[outer] + y[inner]) / 2.0
    upper_y, lower_y = _mean(y, upper), _mean(y, lower)
    openness = (upper_y - corner_y + 0.5 * (upper_y - lower_y)) / width
    return openness, (lower_y - corner_y) / width, x[iris[0]] - corner_x, y[iris[0]] - corner_y


_EYES = ((lm.LEFT_EYE_OUTER, lm.LEFT_EYE_INNER, lm.LEFT_EYE_UPPER_LID, lm.LEFT_EYE_LOWER_LID, lm.LEFT_IRIS),
         (lm.RIGHT_EYE_OUTER, lm.RIGHT_EYE_INNER, lm.RIGHT_EYE_UPPER_LID, lm.RIGHT_EYE_LOWER_LID, lm.RIGHT_IRIS))

_BROWS = (((lm.LEFT_EYE_OUTER, lm.LEFT_EYE_INNER), lm.LEFT_BROW_INNER, lm.LEFT_BROW_MIDDLE, lm.LEFT_BROW_OUTER),
          ((lm.RIGHT_EYE_OUTER, lm.RIGHT_EYE_INNER), lm.RIGHT_BROW_INNER, lm.RIGHT_BROW_MIDDLE, lm.RIGHT_BROW_OUTER))

# The geometric measures of one frame, in this order (see measures()). Each has a rest
# value: this person's (bridge.solve.neutral) or, before there is one, PRIOR.
MEASURES = (
    "eye_open_L", "eye_open_R",          # lid openness, eye widths
    "lower_lid_L", "lower_lid_R",        # lower lid height above the corner line, eye widths
    "iris_x_L", "iris_x_R",              # iris centre right of the corners' midpoint, cm
    "iris_y_L", "iris_y_R",              # iris centre above it, cm
    "lip_gap",                           # inner lips apart, cm
    "nose_chin",                         # nose base above the chin, cm
    "corner_L", "corner_R",              # mouth corner above the inner-lip centre, less the gap's share, cm
    "half_width_L", "half_width_R",      # mouth corner out from the lip centre, cm
    "upper_red", "lower_red",            # lip red heights at the centre, cm
    "upper_lift_L", "upper_lift_R",      # nose base above the upper lip's side, cm
    "lower_drop_L", "lower_drop_R",      # lower lip's side above the chin, cm
    "chin_x",                            # chin towards own left, cm
    "brow_inner_L", "brow_inner_R",      # brow heights above the eye-corner line, cm
    "brow_middle_L", "brow_middle_R",
    "brow_outer_L", "brow_outer_R",
    "sneer_L", "sneer_R",                # nostril wing below the inner eye corner, cm
    "chin_forward",                      # chin towards the camera, cm
    "lower_lip_chin",                    # lower lip bottom above the chin, cm
    "upper_lip_nose",                    # nose base above the upper lip top, cm
    "cheek_half_width",                  # cheeks apart / 2, cm
    "lip_thickness_L", "lip_thickness_R",   # both lips' red at the side, cm
    "corner_depth_L", "corner_depth_R",  # mouth corner towards the camera, cm
)
M = {name: i for i, name in enumerate(MEASURES)}


# The landmarks the measures read: the solver aligns only these (a fifth of the 478).
USED = tuple(sorted({
    *(i for eye in _EYES for part in eye for i in (part if isinstance(part, tuple) else (part,))),
    *(i for brow in _BROWS for part in brow for i in (part if isinstance(part, tuple) else (part,))),
    lm.UPPER_LIP_INNER, lm.LOWER_LIP_INNER, lm.UPPER_LIP_TOP, lm.LOWER_LIP_BOTTOM,
    lm.MOUTH_LEFT_CORNER, lm.MOUTH_RIGHT_CORNER, lm.UPPER_LIP_LEFT, lm.UPPER_LIP_RIGHT,
    lm.LOWER_LIP_LEFT, lm.LOWER_LIP_RIGHT, *lm.INNER_LIP_UPPER, *lm.INNER_LIP_LOWER,
    lm.NOSE_BASE, lm.CHIN, lm.NOSTRIL_LEFT, lm.NOSTRIL_RIGHT, lm.CHEEK_LEFT, lm.CHEEK_RIGHT,
}))
USED_INDEX = np.array(USED)


def measures(a: np.ndarray) -> list[float]:
    """The MEASURES of head-aligned points (canonical-face centimetres), all 478."""
    return measures_of_used(a[USED_INDEX])


def measures_of_used(used: np.ndarray) -> list[float]:
    """The MEASURES from the head-aligned USED landmarks only, in USED's order."""
    x, y, z = (dict(zip(USED, column)) for column in used.T.tolist())
    lo, ll, lx, ly = _eye_measures(x, y, *_EYES[0])
    ro, rl, rx, ry = _eye_measures(x, y, *_EYES[1])
    gap = max(y[lm.UPPER_LIP_INNER] - y[lm.LOWER_LIP_INNER], 0.0)
    lip_x = (x[lm.UPPER_LIP_INNER] + x[lm.LOWER_LIP_INNER]) / 2.0
    lip_y = (y[lm.UPPER_LIP_INNER] + y[lm.LOWER_LIP_INNER]) / 2.0
    corner_share = CORNER_RISE_PER_GAP * gap
    brows = []
    for eye, inner, middle, outer in _BROWS:
        line = _mean(y, eye)
        brows.append((_mean(y, inner) - line, _mean(y, middle) - line, _mean(y, outer) - line))
    return [
        lo, ro, ll, rl, lx, rx, ly, ry,
        gap, y[lm.NOSE_BASE] - y[lm.CHIN],
        y[lm.MOUTH_LEFT_CORNER] - lip_y - corner_share, y[lm.MOUTH_RIGHT_CORNER] - lip_y - corner_share,
        x[lm.MOUTH_LEFT_CORNER] - lip_x, lip_x - x[lm.MOUTH_RIGHT_CORNER],
        y[lm.UPPER_LIP_TOP] - y[lm.UPPER_LIP_INNER], y[lm.LOWER_LIP_INNER] - y[lm.LOWER_LIP_BOTTOM],
        y[lm.NOSE_BASE] - y[lm.UPPER_LIP_LEFT], y[lm.NOSE_BASE] - y[lm.UPPER_LIP_RIGHT],
        y[lm.LOWER_LIP_LEFT] - y[lm.CHIN], y[lm.LOWER_LIP_RIGHT] - y[lm.CHIN],
        x[lm.CHIN],
        brows[0][0], brows[1][0], brows[0][1], brows[1][1], brows[0][2], brows[1][2],
        y[lm.LEFT_EYE_INNER] - y[lm.NOSTRIL_LEFT], y[lm.RIGHT_EYE_INNER] - y[lm.NOSTRIL_RIGHT],
        z[lm.CHIN],
        y[lm.LOWER_LIP_BOTTOM] - y[lm.CHIN],
        y[lm.NOSE_BASE] - y[lm.UPPER_LIP_TOP],
        (x[lm.CHEEK_LEFT] - x[lm.CHEEK_RIGHT]) / 2.0,
        (y[lm.UPPER_LIP_LEFT] - y[lm.INNER_LIP_UPPER[2]]) + (y[lm.INNER_LIP_LOWER[2]] - y[lm.LOWER_LIP_LEFT]),
        (y[lm.UPPER_LIP_RIGHT] - y[lm.INNER_LIP_UPPER[0]]) + (y[lm.INNER_LIP_LOWER[0]] - y[lm.LOWER_LIP_RIGHT]),
        z[lm.MOUTH_LEFT_CORNER], z[lm.MOUTH_RIGHT_CORNER],
    ]


# Each measure's rest before this person's own is known (and for photos), and how far
# a person's may lie from it: the median, and 1.25 times the 10-90 % spread, of the
# rests of the 19 people of the shared clips (their neutral estimates over each clip,
# on the Face Landmarker's and Face Mesh's landmarks alike, which agree). Real faces
# are not the canonical one: their cheeks are 0.5 cm wider, chins 0.9 cm further back.
# The lip gap has no rest: closed lips are 0 apart on everyone.
REST_PRIOR = {
    "eye_open_L": (0.353, 0.210),
    "eye_open_R": (0.353, 0.210),
    "lower_lid_L": (-0.094, 0.126),
    "lower_lid_R": (-0.094, 0.126),
    "iris_x_L": (0.097, 0.344),
    "iris_x_R": (-0.097, 0.344),
    "iris_y_L": (0.153, 0.191),
    "iris_y_R": (0.153, 0.191),
    "lip_gap": (0.0, 0.0),
    "nose_chin": (7.281, 1.372),
    "corner_L": (-0.048, 0.667),
    "corner_R": (-0.048, 0.667),
    "half_width_L": (2.755, 0.861),
    "half_width_R": (2.755, 0.861),
    "upper_red": (0.689, 0.424),
    "lower_red": (1.130, 0.444),
    "upper_lift_L": (2.023, 0.734),
    "upper_lift_R": (2.023, 0.734),
    "lower_drop_L": (4.261, 0.986),
    "lower_drop_R": (4.261, 0.986),
    "chin_x": (-0.032, 0.361),
    "brow_inner_L": (2.192, 1.688),
    "brow_inner_R": (2.192, 1.688),
    "brow_middle_L": (2.593, 1.842),
    "brow_middle_R": (2.593, 1.842),
    "brow_outer_L": (1.715, 1.284),
    "brow_outer_R": (1.715, 1.284),
    "sneer_L": (4.665, 0.619),
    "sneer_R": (4.665, 0.619),
    "chin_forward": (3.411, 0.829),
    "lower_lip_chin": (3.439, 1.227),
    "upper_lip_nose": (1.592, 0.494),
    "cheek_half_width": (4.342, 0.330),
    "lip_thickness_L": (0.655, 0.547),
    "lip_thickness_R": (0.655, 0.547),
    "corner_depth_L": (3.771, 0.551),
    "corner_depth_R": (3.771, 0.551),
}
PRIOR = {name: prior for name, (prior, _) in REST_PRIOR.items()}
PRIOR_VECTOR = np.array([PRIOR[n] for n in MEASURES])
_REST_HALF_RANGE = np.array([REST_PRIOR[n][1] for n in MEASURES])
EYE_REST = (PRIOR["eye_open_L"] + PRIOR["eye_open_R"]) / 2.0


def expression(m: list[float], rest: list[float], lowered: tuple[bool, bool] = (False, False)):
    """(blendshapes (52,), eye angles (2, 2)) from this frame's MEASURES and the rest
    values they are taken against. `lowered` (left, right): the eye looks down rather
    than closed (bridge.solve.lids)."""
    d = [v - r for v, r in zip(m, rest)]   # each measure's change from rest
    b = [0.0] * len(ARKIT_INDEX)

    def set_(name, value):
        b[ARKIT_INDEX[name]] = value

    # Eyes: openness as a fraction of this person's open eye.
    ratios = eye_ratios(m, rest)
    closings, blinks, yaws, pitches = [], [], [], []
    for k, s in ((0, "_L"), (1, "_R")):
        closing = _ramp(ratios[k], EYE_OPEN_RATIO, EYE_CLOSED_RATIO)
        closings.append(closing)
        blinks.append(closing * closing * (3.0 - 2.0 * closing))
        yaws.append(_degrees_asin(d[M["iris_x" + s]] / EYEBALL_RADIUS_YAW))
        pitches.append(_degrees_asin(d[M["iris_y" + s]] / EYEBALL_RADIUS_PITCH))
    # Both eyes look one way: their mean, each counted by how open it is. MediaPipe's two
    # irises of one face read up to 8 deg apart (renders), and a closing eye's, half under
    # the lid, reads low (a rendered blink: -18 deg): its weight falls fast as it closes,
    # and a shut eye takes the open one's gaze.
    wl, wr = (1.0 - closings[0]) ** 4 + 1e-3, (1.0 - closings[1]) ** 4 + 1e-3
    yaw = (wl * yaws[0] + wr * yaws[1]) / (wl + wr)
    pitch = (wl * pitches[0] + wr * pitches[1]) / (wl + wr) - PITCH_PER_YAW * abs(yaw)
    # Shutting lids push MediaPipe's iris sideways (rendered blinks: 0.2 cm, half an eye's
    # turn). Pitch keeps its reading: lowered lids follow a downward look (lids.py).
    yaw *= 1.0 - min(blinks)
    eye_angles = []
    for side, k, is_lowered in (("Left", 0, lowered[0]), ("Right", 1, lowered[1])):
        s = "_L" if k == 0 else "_R"
        blink, eye_pitch = blinks[k], pitch
        if is_lowered:
            blink, eye_pitch = LOWERED_BLINK * blink, min(pitch, -closings[k] * EYE_LOOK_RANGE_PITCH)
        squint = _ramp(d[M["lower_lid" + s]], *SQUINT_RANGE)
        set_(f"eyeBlink{side}", blink)
        set_(f"eyeWide{side}", _ramp(d[M["eye_open" + s]], *EYE_WIDE_RANGE))
        set_(f"eyeSquint{side}", squint)
        outward = yaw if side == "Left" else -yaw  # the left eye looks out towards +X
        set_(f"eyeLookOut{side}", _ramp(outward, 0.0, EYE_LOOK_RANGE_YAW))
        set_(f"eyeLookIn{side}", _ramp(-outward, 0.0, EYE_LOOK_RANGE_YAW))
        set_(f"eyeLookUp{side}", _ramp(eye_pitch, 0.0, EYE_LOOK_RANGE_PITCH))
        set_(f"eyeLookDown{side}", _ramp(-eye_pitch, 0.0, EYE_LOOK_RANGE_PITCH))
        eye_angles.append([yaw, eye_pitch])

    # Mouth.
    gap = max(d[M["lip_gap"]], 0.0)
    chin_drop = d[M["nose_chin"]]
    jaw_open = max(_ramp(chin_drop, *CHIN_DROP_RANGE), LIP_GAP_WEIGHT * _ramp(gap, *LIP_GAP_RANGE))
    set_("jawOpen", jaw_open)
    smiles = {}
    for side, s in (("Left", "_L"), ("Right", "_R")):
        raise_ = d[M["corner" + s]]
        widen = d[M["half_width" + s]]
        smile = _ramp(raise_ + SMILE_WIDEN_WEIGHT * max(widen, 0.0), *SMILE_RANGE)
        smiles[side] = smile
        squint = b[ARKIT_INDEX[f"eyeSquint{side}"]]
        set_(f"mouthSmile{side}", smile)
        set_(f"mouthFrown{side}", _ramp(-raise_, *FROWN_RANGE))
        set_(f"mouthStretch{side}", _ramp(widen, *STRETCH_RANGE) * (1.0 - smile))
        set_(f"cheekSquint{side}", smile * squint)
        set_(f"mouthUpperUp{side}", _ramp(d[M["upper_lift" + s]], *UPPER_UP_RANGE))
        set_(f"mouthLowerDown{side}", _ramp(d[M["lower_drop" + s]], *LOWER_DOWN_RANGE) * jaw_open)
    narrow = _ramp(-(d[M["half_width_L"]] + d[M["half_width_R"]]), *NARROW_RANGE)
    opening = _ramp(gap, *OPENING_RANGE)
    closed = 1.0 - opening
    set_("mouthFunnel", narrow * opening)
    set_("mouthPucker", narrow * closed)
    shift = (d[M["half_width_R"]] - d[M["half_width_L"]]) / 2.0  # + = centre moved to own left
    set_("mouthLeft", _ramp(shift, *MOUTH_SHIFT_RANGE))
    set_("mouthRight", _ramp(-shift, *MOUTH_SHIFT_RANGE))
    set_("jawLeft", _ramp(d[M["chin_x"]], *JAW_SIDE_RANGE))
    set_("jawRight", _ramp(-d[M["chin_x"]], *JAW_SIDE_RANGE))
    set_("mouthRollUpper", _ramp(d[M["upper_red"]], *ROLL_UPPER_RANGE))
    set_("mouthRollLower", _ramp(d[M["lower_red"]], *ROLL_LOWER_RANGE))
    # Lips kept together while the chin drops.
    set_("mouthClose", _ramp(chin_drop, *CHIN_DROP_RANGE) * (1.0 - _ramp(gap, *CLOSE_GAP_RANGE)))
    set_("jawForward", _ramp(d[M["chin_forward"]], *JAW_FORWARD_RANGE))
    set_("mouthShrugLower", _ramp(d[M["lower_lip_chin"]], *SHRUG_LOWER_RANGE) * (1.0 - jaw_open))
    set_("mouthShrugUpper", _ramp(-d[M["upper_lip_nose"]], *SHRUG_UPPER_RANGE) * (1.0 - jaw_open) * closed)
    set_("cheekPuff", _ramp(d[M["cheek_half_width"]], *CHEEK_PUFF_RANGE) * closed)
    for side, s in (("Left", "_L"), ("Right", "_R")):
        set_(f"mouthPress{side}", _ramp(-d[M["lip_thickness" + s]], *PRESS_RANGE) * closed)
        set_(f"mouthDimple{side}", _ramp(-d[M["corner_depth" + s]], *DIMPLE_RANGE) * (1.0 - smiles[side]))

    # Brows.
    inner_up = 0.0
    for side, s in (("Left", "_L"), ("Right", "_R")):
        lowered_by = -(d[M["brow_inner" + s]] + d[M["brow_middle" + s]]) / 2.0
        set_(f"browDown{side}", _ramp(lowered_by, *BROW_DOWN_RANGE))
        set_(f"browOuterUp{side}", _ramp(d[M["brow_outer" + s]], *BROW_UP_RANGE))
        inner_up += 0.5 * _ramp(d[M["brow_inner" + s]], *BROW_UP_RANGE)
        # Nose wings rise towards the eyes in a sneer.
        set_(f"noseSneer{side}", _ramp(-d[M["sneer" + s]], *SNEER_RANGE))
    set_("browInnerUp", inner_up)
    return b, eye_angles


def eye_rest(rest: list[float]) -> float:
    """The open eye both eyes are read against: the wider rest of the two (a wink or a
    droopy lid pulls one eye's estimate down; the eyes of a face are the same size)."""
    return max(rest[M["eye_open_L"]], rest[M["eye_open_R"]], EYE_REST_MIN)


def eye_ratios(m: list[float], rest: list[float]) -> tuple[float, float]:
    """(left, right) openness as a fraction of the rest openness."""
    open_ = eye_rest(rest)
    return m[M["eye_open_L"]] / open_, m[M["eye_open_R"]] / open_


# The neutral estimator's quantile per measure (bridge.solve.neutral): high for eye
# openness (blinks and downward looks only close it), low for what expressions only
# grow (lip gap, chin drop, mouth corners: smiles outnumber frowns), the middle else.
_QUANTILE = dict.fromkeys(MEASURES, 0.5)
_QUANTILE.update({"eye_open_L": 0.7, "eye_open_R": 0.7, "lip_gap": 0.2, "nose_chin": 0.2,
                  "corner_L": 0.35, "corner_R": 0.35})
def rest_sample(m: list[float]) -> np.ndarray:
    """What a frame adds to the rest estimate: its measures, less the openness of an
    eye that is shut by the prior's measure (closed or lowered lids are never an open
    eye's rest, however long they last)."""
    v = np.array(m)
    for k in (M["eye_open_L"], M["eye_open_R"]):
        if v[k] / EYE_REST <= EYE_SHUT_RATIO:
            v[k] = np.nan
    return v


def rest_estimator() -> RestEstimator:
    return RestEstimator(PRIOR_VECTOR, [_QUANTILE[n] for n in MEASURES],
                         PRIOR_VECTOR - _REST_HALF_RANGE, PRIOR_VECTOR + _REST_HALF_RANGE)


def face_state(b, eye_angles) -> FaceState:
    """A FaceState (head pose left at zero) from expression()'s values."""
    shapes = np.clip(np.array(b), 0.0, 1.0)  # NaN from degenerate input is cleared by Solver.solve
    eyes = np.array(eye_angles, dtype=np.float64)
    return FaceState(blendshapes=shapes, vrm=vrm_presets(shapes, eyes), head_angles=np.zeros(3),
                     head_position=np.zeros(3), eye_angles=eyes)


def vrm_presets(b: np.ndarray, eye_angles: np.ndarray) -> np.ndarray:
    """VRM 0.x presets from ARKit values and gaze (documented in the README)."""
    shapes = np.asarray(b, dtype=np.float64).tolist()
    index = ARKIT_INDEX

    def get(name):
        return shapes[index[name]]
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
    # A receiver adds the visemes' morphs up: keep their sum within one full mouth shape.
    mouth = sum(v[VRM0_INDEX[n]] for n in ("A", "I", "U", "E", "O"))
    if mouth > 1.0:
        for n in ("A", "I", "U", "E", "O"):
            v[VRM0_INDEX[n]] /= mouth
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
