"""The face state every stage after the solver passes along, and its name sets.

Conventions (one place, so no stage guesses):

* Subject frame: right-handed, X towards the subject's own left, Y up, Z out of
  the face towards the camera. A face looking straight into the camera has the
  identity rotation. It is MediaPipe's canonical-face frame.
* Angles are degrees. Head: yaw + = turns to own left, pitch + = looks up,
  roll + = tilts towards own left shoulder. Eyes (relative to the head): yaw + =
  looks to own left, pitch + = looks up.
* Left/Right in every name are the subject's own sides.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# ARKit's ARFaceAnchor.BlendShapeLocation order. Live Link Face's CSV takes use it too,
# except that the app writes JawRight before JawLeft and MouthRight before MouthLeft.
ARKIT_NAMES = (
    "eyeBlinkLeft", "eyeLookDownLeft", "eyeLookInLeft", "eyeLookOutLeft", "eyeLookUpLeft",
    "eyeSquintLeft", "eyeWideLeft",
    "eyeBlinkRight", "eyeLookDownRight", "eyeLookInRight", "eyeLookOutRight", "eyeLookUpRight",
    "eyeSquintRight", "eyeWideRight",
    "jawForward", "jawLeft", "jawRight", "jawOpen",
    "mouthClose", "mouthFunnel", "mouthPucker", "mouthLeft", "mouthRight",
    "mouthSmileLeft", "mouthSmileRight", "mouthFrownLeft", "mouthFrownRight",
    "mouthDimpleLeft", "mouthDimpleRight", "mouthStretchLeft", "mouthStretchRight",
    "mouthRollLower", "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper",
    "mouthPressLeft", "mouthPressRight", "mouthLowerDownLeft", "mouthLowerDownRight",
    "mouthUpperUpLeft", "mouthUpperUpRight",
    "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight",
    "cheekPuff", "cheekSquintLeft", "cheekSquintRight",
    "noseSneerLeft", "noseSneerRight",
    "tongueOut",
)
ARKIT_INDEX = {name: i for i, name in enumerate(ARKIT_NAMES)}

# VRM 0.x preset clips we drive (Neutral is the absence of the others).
VRM0_NAMES = (
    "A", "I", "U", "E", "O",
    "Blink", "Blink_L", "Blink_R",
    "Joy", "Angry", "Sorrow", "Fun",
    "LookUp", "LookDown", "LookLeft", "LookRight",
)
VRM0_INDEX = {name: i for i, name in enumerate(VRM0_NAMES)}

# VRM 1.0 expression names, and the 0.x preset each is read from ("surprised" has
# no 0.x preset: see vrm1_values; "neutral" is the absence of the others).
VRM1_FROM_VRM0 = {
    "aa": "A", "ih": "I", "ou": "U", "ee": "E", "oh": "O",
    "happy": "Joy", "angry": "Angry", "sad": "Sorrow", "relaxed": "Fun", "surprised": None,
    "blink": "Blink", "blinkLeft": "Blink_L", "blinkRight": "Blink_R",
    "lookUp": "LookUp", "lookDown": "LookDown", "lookLeft": "LookLeft", "lookRight": "LookRight",
    "neutral": None,
}
VRM1_NAMES = tuple(VRM1_FROM_VRM0)
_VRM1_SOURCE = np.array([VRM0_INDEX[v] if v else -1 for v in VRM1_FROM_VRM0.values()])


def vrm1_values(vrm0: np.ndarray, blendshapes: np.ndarray) -> np.ndarray:
    """VRM 1.0 expression values (VRM1_NAMES order) from the 0.x presets.

    surprised = raised brows (inner and outer, averaged) scaled from half to full by
    wide eyes or an open jaw, whichever is more; neutral is always 0."""
    b = dict(zip(ARKIT_NAMES, np.asarray(blendshapes, float).tolist()))
    brows_up = (b["browInnerUp"] + (b["browOuterUpLeft"] + b["browOuterUpRight"]) / 2.0) / 2.0
    widened = max((b["eyeWideLeft"] + b["eyeWideRight"]) / 2.0, b["jawOpen"])
    values = np.where(_VRM1_SOURCE >= 0, np.asarray(vrm0, float)[_VRM1_SOURCE], 0.0)
    values[VRM1_NAMES.index("surprised")] = brows_up * (0.5 + 0.5 * widened)
    return np.clip(values, 0.0, 1.0)


def pascal_case(name: str) -> str:
    """ARKit camelCase -> the PascalCase perfect-sync models use (eyeBlinkLeft -> EyeBlinkLeft)."""
    return name[:1].upper() + name[1:]


def _swap_left_right(name: str) -> str:
    for a, b in (("Left", "Right"), ("Right", "Left"), ("_L", "_R"), ("_R", "_L")):
        if name.endswith(a):
            return name[: -len(a)] + b
    return name


def _mirror_permutation(names: tuple[str, ...]) -> np.ndarray:
    index = {n: i for i, n in enumerate(names)}
    perm = [index[_swap_left_right(n)] for n in names]
    # LookLeft/LookRight also swap: the avatar mirrors where the subject looks.
    if "LookLeft" in index:
        perm[index["LookLeft"]], perm[index["LookRight"]] = index["LookRight"], index["LookLeft"]
    return np.array(perm)


_ARKIT_MIRROR = _mirror_permutation(ARKIT_NAMES)
_VRM0_MIRROR = _mirror_permutation(VRM0_NAMES)


@dataclass
class FaceState:
    """What the face does in one frame, in plain numbers.

    blendshapes: (52,) in ARKIT_NAMES order, each in [0, 1].
    vrm: (16,) in VRM0_NAMES order, each in [0, 1].
    head_angles: (3,) yaw, pitch, roll in degrees (see module doc).
    head_position: (3,) metres in the subject frame, camera at the origin.
    eye_angles: (2, 2) [[left yaw, left pitch], [right yaw, right pitch]] degrees.
    """

    blendshapes: np.ndarray
    vrm: np.ndarray
    head_angles: np.ndarray
    head_position: np.ndarray
    eye_angles: np.ndarray
    # What the solver read the values from, for a neutral capture (bridge.calibrate):
    # the geometric measures (bridge.solve.geometry.MEASURES) and the model's raw
    # scores (ARKIT_NAMES order, NaN where none). Not sent, not filtered.
    measures: np.ndarray | None = None
    scores: np.ndarray | None = None

    # Layout of vector(): filters and easing work on one flat float array.
    _SLICES = {
        "blendshapes": slice(0, 52),
        "vrm": slice(52, 68),
        "head_angles": slice(68, 71),
        "head_position": slice(71, 74),
        "eye_angles": slice(74, 78),
    }
    SIZE = 78

    def vector(self) -> np.ndarray:
        return np.concatenate([
            self.blendshapes, self.vrm, self.head_angles, self.head_position,
            np.ravel(self.eye_angles),
        ]).astype(np.float64)

    @classmethod
    def from_vector(cls, v: np.ndarray) -> "FaceState":
        s = cls._SLICES
        return cls(
            blendshapes=v[s["blendshapes"]].copy(),
            vrm=v[s["vrm"]].copy(),
            head_angles=v[s["head_angles"]].copy(),
            head_position=v[s["head_position"]].copy(),
            eye_angles=v[s["eye_angles"]].reshape(2, 2).copy(),
        )

    @classmethod
    def neutral(cls, head_position=(0.0, 0.0, -0.5)) -> "FaceState":
        return cls(
            blendshapes=np.zeros(52), vrm=np.zeros(len(VRM0_NAMES)),
            head_angles=np.zeros(3), head_position=np.asarray(head_position, float),
            eye_angles=np.zeros((2, 2)),
        )

    def blendshape(self, name: str) -> float:
        return float(self.blendshapes[ARKIT_INDEX[name]])

    def sanitized(self) -> "FaceState":
        """Finite and in range: NaN/inf become neutral, shapes are clamped to [0, 1]."""
        v = self.vector()
        if not np.isfinite(v).all():
            v = np.nan_to_num(v, nan=0.0, posinf=0.0, neginf=0.0)
        np.clip(v, _LOW, _HIGH, out=v)
        out = FaceState.from_vector(v)
        out.measures, out.scores = self.measures, self.scores
        return out

    def mirrored(self) -> "FaceState":
        """The state of a mirror image: left and right swap, yaw and roll flip."""
        yaw, pitch, roll = self.head_angles
        x, y, z = self.head_position
        (ly, lp), (ry, rp) = self.eye_angles
        return FaceState(
            blendshapes=self.blendshapes[_ARKIT_MIRROR],
            vrm=self.vrm[_VRM0_MIRROR],
            head_angles=np.array([-yaw, pitch, -roll]),
            head_position=np.array([-x, y, z]),
            eye_angles=np.array([[-ry, rp], [-ly, lp]]),
        )


# Bounds of every channel of FaceState.vector(), for sanitized().
_LOW = np.concatenate([np.zeros(68), np.full(3, -180.0), np.full(3, -100.0), np.full(4, -90.0)])
_HIGH = np.concatenate([np.ones(68), np.full(3, 180.0), np.full(3, 100.0), np.full(4, 90.0)])


# ---- rotations -----------------------------------------------------------
# Quaternions are (x, y, z, w), rotating vectors in the subject frame.

# Plain floats inside: these run several times per frame, where numpy's per-call
# overhead on 4-element arrays would cost more than the arithmetic.

def quat_multiply(a, b) -> np.ndarray:
    ax, ay, az, aw = (float(v) for v in a)
    bx, by, bz, bw = (float(v) for v in b)
    return np.array([
        aw * bx + ax * bw + ay * bz - az * by,
        aw * by - ax * bz + ay * bw + az * bx,
        aw * bz + ax * by - ay * bx + az * bw,
        aw * bw - ax * bx - ay * by - az * bz,
    ])


def angles_to_quat(yaw: float, pitch: float, roll: float = 0.0) -> np.ndarray:
    """Yaw about +Y, then pitch, then roll (R = Ry(yaw) Rx(-pitch) Rz(-roll)).

    Pitch + (looks up) is a negative turn about +X (X = own left), roll + (tilts
    to own left) a negative turn about +Z; see the module doc.
    """
    hy, hp, hr = math.radians(yaw) / 2.0, -math.radians(pitch) / 2.0, -math.radians(roll) / 2.0
    sy, cy = math.sin(hy), math.cos(hy)
    sp, cp = math.sin(hp), math.cos(hp)
    sr, cr = math.sin(hr), math.cos(hr)
    # (0, sy, 0, cy) * (sp, 0, 0, cp) * (0, 0, sr, cr), multiplied out.
    return np.array([
        cy * sp * cr + sy * cp * sr,
        sy * cp * cr - cy * sp * sr,
        cy * cp * sr - sy * sp * cr,
        cy * cp * cr + sy * sp * sr,
    ])


def quat_to_matrix(q: np.ndarray) -> np.ndarray:
    x, y, z, w = q
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


def matrix_to_angles(r: np.ndarray) -> tuple[float, float, float]:
    """Inverse of angles_to_quat for a rotation matrix R = Ry(yaw) Rx(-pitch) Rz(-roll)."""
    # R[1,2] = sin(pitch); R[0,2] = sin(yaw)cos(pitch); R[1,0] = -sin(roll)cos(pitch).
    # Plain floats: this runs every frame, where numpy's per-call overhead on scalars dominates.
    (_, r01, r02), (r10, r11, r12), (_, _, r22) = np.asarray(r, dtype=np.float64)[:3, :3].tolist()
    pitch = math.degrees(math.asin(min(max(r12, -1.0), 1.0)))
    return math.degrees(math.atan2(r02, r22)), pitch, math.degrees(math.atan2(-r10, r11))


def slerp_from_identity(q, t: float) -> np.ndarray:
    """The rotation t of the way from identity to q (same axis, t times the angle)."""
    x, y, z, w = (float(v) for v in q)
    if w < 0.0:
        x, y, z, w = -x, -y, -z, -w
    s = math.sqrt(x * x + y * y + z * z)
    if s < 1e-9:
        return np.array([0.0, 0.0, 0.0, 1.0])
    half = t * math.atan2(s, w)
    k = math.sin(half) / s
    return np.array([x * k, y * k, z * k, math.cos(half)])


def quat_conjugate(q) -> np.ndarray:
    return np.array([-q[0], -q[1], -q[2], q[3]])
