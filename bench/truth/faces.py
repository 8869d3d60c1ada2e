"""Faces with known ARKit weights, built from the ICT-FaceKit head (pure numpy, no bpy).

A face is ``neutral + sum_i a_i * identity_deltas[i] + sum_j w_j * expression_deltas[j]``
(ICT's own way of combining its shapes), then each eyeball is turned for the gaze and
the whole head is turned for the head pose. Everything is described by a `FaceSpec`,
which serialises to JSON exactly (``FaceSpec.from_json(spec.to_json()) == spec``).

Coordinates are ICT's: centimetres, +y up, the face looks along +z, +x is the subject's
own LEFT (``eyeBlink_L`` closes the eye at x > 0, the eye on the image's right for a
camera in front of the face).

Conventions (the same as `bridge.state` / the stream, all degrees):

* weights: the 52 ARKit camelCase names (``eyeBlinkLeft`` ...), Left/Right = the subject's
  own sides. ``browInnerUp`` and ``cheekPuff`` drive both ICT halves (``_L``/``_R``) with
  the same weight. ``tongueOut`` has no shape in ICT: it cannot be rendered and is
  rejected (`UNRENDERABLE`).
* gaze ``(yaw, pitch)``: both eyes, relative to the head; yaw + = looks to own left,
  pitch + = looks up. Each eyeball's vertices are rotated about its centre by
  ``R = Ry(yaw) @ Rx(-pitch)``, so the eye's forward axis (+z) becomes
  ``(sin(yaw)cos(pitch), sin(pitch), cos(yaw)cos(pitch))``: pitch = asin(dir_y) and
  yaw = atan2(dir_x, dir_z) exactly. The ``eyeLook*`` shapes only move the lids (the
  eyeballs do not turn); with ``lids_follow_gaze`` (default) a gaze also adds them, as a
  real lid follows the eye: eyeLookOut/In = |yaw| / GAZE_RANGE_YAW, eyeLookUp/Down =
  |pitch| / GAZE_RANGE_PITCH (clipped to 1; the same ranges as bridge.solve.geometry's
  EYE_LOOK_RANGE_*), added to any explicit weight. `FaceSpec.effective_weights()` is what
  was rendered, and the ground truth for the eyeLook channels.
* head ``(yaw, pitch, roll)``: yaw + = turns to own left, pitch + = looks up, roll + =
  tilts towards the own left shoulder. Decision: the HEAD is rotated (all vertices, about
  `HEAD_PIVOT`, a point in the neck), the camera and the lights stay put, as for a real
  person turning in front of a webcam in a lit room. ``R = Ry(yaw) @ Rx(-pitch) @
  Rz(-roll)`` (roll first, yaw last: the intrinsic yaw-pitch-roll order).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

DATA_DIR = Path(os.environ.get(
    "FACEMOCAP_ICT_DIR",
    Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "ict-facekit")).resolve()

# The 52 ARKit names, in ARKit's (and bridge.state.ARKIT_NAMES') order.
ARKIT_NAMES = (
    "eyeBlinkLeft", "eyeLookDownLeft", "eyeLookInLeft", "eyeLookOutLeft", "eyeLookUpLeft",
    "eyeSquintLeft", "eyeWideLeft", "eyeBlinkRight", "eyeLookDownRight", "eyeLookInRight",
    "eyeLookOutRight", "eyeLookUpRight", "eyeSquintRight", "eyeWideRight", "jawForward",
    "jawLeft", "jawRight", "jawOpen", "mouthClose", "mouthFunnel", "mouthPucker", "mouthLeft",
    "mouthRight", "mouthSmileLeft", "mouthSmileRight", "mouthFrownLeft", "mouthFrownRight",
    "mouthDimpleLeft", "mouthDimpleRight", "mouthStretchLeft", "mouthStretchRight",
    "mouthRollLower", "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper",
    "mouthPressLeft", "mouthPressRight", "mouthLowerDownLeft", "mouthLowerDownRight",
    "mouthUpperUpLeft", "mouthUpperUpRight", "browDownLeft", "browDownRight", "browInnerUp",
    "browOuterUpLeft", "browOuterUpRight", "cheekPuff", "cheekSquintLeft", "cheekSquintRight",
    "noseSneerLeft", "noseSneerRight", "tongueOut",
)
UNRENDERABLE = ("tongueOut",)          # no tongue shape in ICT-FaceKit
RENDERABLE = tuple(n for n in ARKIT_NAMES if n not in UNRENDERABLE)

# Vertex ranges (inclusive start, exclusive stop) of the ICT generic mesh. vertex_indices.json
# holds no eyeball ranges; these come from the OBJ's material groups (checked: each group is
# one contiguous range) and ICT's documented layout (face / head+neck / mouth socket / eye
# sockets). The eyeball = sclera + iris.
RANGES = {
    "face": (0, 9409),
    "head_neck": (9409, 11248),
    "mouth_socket": (11248, 13294),
    "eye_socket_left": (13294, 13678),
    "eye_socket_right": (13678, 14062),
    "gums_tongue": (14062, 17039),
    "teeth": (17039, 21451),
    "sclera_left": (21451, 22221),
    "iris_left": (22221, 23021),
    "sclera_right": (23021, 23791),
    "iris_right": (23791, 24591),
    "lacrimal_fluid": (24591, 24999),
    "eye_blend": (24999, 25047),
    "eye_occlusion": (25047, 25351),
    "eyelashes": (25351, 26719),
}
EYEBALL = {"left": (21451, 23021), "right": (23021, 24591)}   # subject's own sides (+x = left)
GAZE_RANGE_YAW = 30.0      # deg of yaw that make eyeLookIn/Out = 1
GAZE_RANGE_PITCH = 25.0    # deg of pitch that make eyeLookUp/Down = 1
HEAD_PIVOT = np.array([0.0, -4.0, 0.0])    # cm: in the neck, below and behind the ears' line
N_IDENTITIES = 100


_UNSUFFIXED = ("jawLeft", "jawRight", "mouthLeft", "mouthRight")


def ict_names(arkit_name: str) -> tuple[str, ...]:
    """The ICT expression shape(s) an ARKit name drives (``eyeBlinkLeft`` -> ``eyeBlink_L``)."""
    if arkit_name in UNRENDERABLE:
        raise ValueError(f"{arkit_name} cannot be rendered: ICT-FaceKit has no shape for it")
    if arkit_name not in ARKIT_NAMES:
        raise ValueError(f"unknown ARKit name {arkit_name!r}")
    if arkit_name in ("browInnerUp", "cheekPuff"):
        return (arkit_name + "_L", arkit_name + "_R")
    if arkit_name in _UNSUFFIXED:  # ICT keeps ARKit's names for these (own left: +x)
        return (arkit_name,)
    for side, suffix in (("Left", "_L"), ("Right", "_R")):
        if arkit_name.endswith(side):
            return (arkit_name[: -len(side)] + suffix,)
    return (arkit_name,)


@dataclass(frozen=True)
class Shapes:
    neutral: np.ndarray              # (V, 3) float64
    expression_names: tuple[str, ...]
    expression_deltas: np.ndarray    # (53, V, 3) float32
    identity_deltas: np.ndarray      # (100, V, 3) float32
    eyeball_centres: dict            # side -> (3,) centre of the neutral eyeball


def _sphere_centre(points: np.ndarray) -> np.ndarray:
    a = np.c_[2 * points, np.ones(len(points))]
    x = np.linalg.lstsq(a, (points ** 2).sum(1), rcond=None)[0]
    return x[:3]


@lru_cache(maxsize=2)
def load_shapes(data_dir: str | os.PathLike | None = None) -> Shapes:
    """Load shapes.npz (about 250 MB as float32; cached)."""
    path = Path(data_dir or DATA_DIR) / "shapes.npz"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found (set FACEMOCAP_ICT_DIR to the ict-facekit folder)")
    with np.load(path) as d:
        neutral = d["neutral"].astype(np.float64)
        shapes = Shapes(
            neutral=neutral,
            expression_names=tuple(str(n) for n in d["expression_names"]),
            expression_deltas=d["expression_deltas"].astype(np.float32),
            identity_deltas=d["identity_deltas"].astype(np.float32),
            # sphere fit of the sclera (the outer eyeball shell; its cornea bulge moves the
            # fit by < 0.05 cm)
            eyeball_centres={side: _sphere_centre(neutral[a:a + 770]) for side, (a, _) in EYEBALL.items()},
        )
    return shapes


# --------------------------------------------------------------------------- rotations

def _rx(deg: float) -> np.ndarray:
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def _ry(deg: float) -> np.ndarray:
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def _rz(deg: float) -> np.ndarray:
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def gaze_matrix(yaw: float, pitch: float) -> np.ndarray:
    """Eye rotation: yaw + = towards own left (+x), pitch + = up (+y)."""
    return _ry(yaw) @ _rx(-pitch)


def head_matrix(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """Head rotation: yaw + = own left, pitch + = up, roll + = towards own left shoulder."""
    return _ry(yaw) @ _rx(-pitch) @ _rz(-roll)


# --------------------------------------------------------------------------- the spec

def _floats(values, n: int, what: str) -> tuple[float, ...]:
    values = tuple(float(v) for v in values)
    if len(values) != n or not all(math.isfinite(v) for v in values):
        raise ValueError(f"{what} must be {n} finite numbers, got {values}")
    return values


@dataclass(frozen=True)
class FaceSpec:
    """One face to render. All fields are plain numbers/strings, so JSON is exact.

    identity: ``identity_weights`` (explicit, up to 100 coefficients) wins; else
    ``identity_seed`` draws ``a ~ N(0, identity_scale)`` for all 100 identity shapes with
    ``numpy.random.default_rng(seed)``; ``identity_seed=None`` and no weights = ICT's mean
    (generic neutral) face.
    """

    weights: dict = field(default_factory=dict)                 # ARKit name -> weight
    identity_seed: int | None = None
    identity_scale: float = 0.8
    identity_weights: tuple | None = None
    gaze: tuple = (0.0, 0.0)                                    # yaw, pitch (deg)
    head: tuple = (0.0, 0.0, 0.0)                               # yaw, pitch, roll (deg)
    lids_follow_gaze: bool = True
    name: str = ""                                              # a label; not hashed

    def __post_init__(self):
        weights = {}
        for k, v in dict(self.weights).items():
            ict_names(k)  # validates
            v = float(v)
            if not math.isfinite(v):
                raise ValueError(f"weight {k} is not finite")
            if v != 0.0:
                weights[k] = v
        object.__setattr__(self, "weights", dict(sorted(weights.items())))
        object.__setattr__(self, "gaze", _floats(self.gaze, 2, "gaze"))
        object.__setattr__(self, "head", _floats(self.head, 3, "head"))
        object.__setattr__(self, "identity_scale", float(self.identity_scale))
        object.__setattr__(self, "lids_follow_gaze", bool(self.lids_follow_gaze))
        if self.identity_seed is not None:
            object.__setattr__(self, "identity_seed", int(self.identity_seed))
        if self.identity_weights is not None:
            iw = tuple(float(v) for v in self.identity_weights)
            if len(iw) > N_IDENTITIES:
                raise ValueError(f"at most {N_IDENTITIES} identity weights")
            object.__setattr__(self, "identity_weights", iw)

    # -- identity / weights as arrays
    def identity_vector(self) -> np.ndarray:
        a = np.zeros(N_IDENTITIES)
        if self.identity_weights is not None:
            a[: len(self.identity_weights)] = self.identity_weights
        elif self.identity_seed is not None:
            a = np.random.default_rng(self.identity_seed).normal(0.0, self.identity_scale, N_IDENTITIES)
        return a

    def effective_weights(self) -> dict:
        """The ARKit weights rendered: ``weights`` plus, with lids_follow_gaze, the gaze's
        eyeLook* lid shapes (yaw + = own left: the left eye looks out, the right one in)."""
        w = dict(self.weights)
        yaw, pitch = self.gaze
        if self.lids_follow_gaze and (yaw or pitch):
            def add(name, value):
                if value > 0:
                    w[name] = w.get(name, 0.0) + min(value, 1.0)
            lx, ly = yaw / GAZE_RANGE_YAW, pitch / GAZE_RANGE_PITCH
            add("eyeLookOutLeft", lx), add("eyeLookInLeft", -lx)
            add("eyeLookInRight", lx), add("eyeLookOutRight", -lx)
            for side in ("Left", "Right"):
                add("eyeLookUp" + side, ly), add("eyeLookDown" + side, -ly)
        return dict(sorted(w.items()))

    def expression_vector(self, names: tuple[str, ...]) -> np.ndarray:
        w = np.zeros(len(names))
        for arkit, value in self.effective_weights().items():
            for ict in ict_names(arkit):
                w[names.index(ict)] += value
        return w

    def arkit_vector(self) -> np.ndarray:
        """(52,) the rendered weights in ARKIT_NAMES order (tongueOut = 0)."""
        w = self.effective_weights()
        return np.array([w.get(n, 0.0) for n in ARKIT_NAMES])

    # -- JSON
    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "weights": dict(self.weights),
            "identity_seed": self.identity_seed,
            "identity_scale": self.identity_scale,
            "identity_weights": None if self.identity_weights is None else list(self.identity_weights),
            "gaze": {"yaw": self.gaze[0], "pitch": self.gaze[1]},
            "head": {"yaw": self.head[0], "pitch": self.head[1], "roll": self.head[2]},
            "lids_follow_gaze": self.lids_follow_gaze,
        }

    @classmethod
    def from_dict(cls, d: dict) -> "FaceSpec":
        g, h = d.get("gaze", {}), d.get("head", {})
        iw = d.get("identity_weights")
        return cls(weights=d.get("weights", {}), identity_seed=d.get("identity_seed"),
                   identity_scale=d.get("identity_scale", 0.8),
                   identity_weights=None if iw is None else tuple(iw),
                   gaze=(g.get("yaw", 0.0), g.get("pitch", 0.0)),
                   head=(h.get("yaw", 0.0), h.get("pitch", 0.0), h.get("roll", 0.0)),
                   lids_follow_gaze=bool(d.get("lids_follow_gaze", True)), name=d.get("name", ""))

    def to_json(self, **kw) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, **kw)

    @classmethod
    def from_json(cls, text: str) -> "FaceSpec":
        return cls.from_dict(json.loads(text))

    def key(self) -> dict:
        """What identifies the geometry (everything but the name)."""
        d = self.to_dict()
        d.pop("name")
        return d


def spec_hash(spec: FaceSpec, settings: dict, version: str) -> str:
    """16 hex digits of sha256 over the spec's geometry, the render settings and a version."""
    blob = json.dumps({"spec": spec.key(), "settings": settings, "version": version},
                      sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


# --------------------------------------------------------------------------- building

def build_vertices(spec: FaceSpec, shapes: Shapes | None = None) -> np.ndarray:
    """(V, 3) float64 vertex positions of the face the spec describes (ICT frame, cm)."""
    s = shapes or load_shapes()
    a = spec.identity_vector()
    w = spec.expression_vector(s.expression_names)
    v = s.neutral.copy()
    nz = np.flatnonzero(a)
    if nz.size:
        v += np.tensordot(a[nz], s.identity_deltas[nz], axes=1)
    nz = np.flatnonzero(w)
    if nz.size:
        v += np.tensordot(w[nz], s.expression_deltas[nz], axes=1)

    if spec.gaze != (0.0, 0.0):
        r = gaze_matrix(*spec.gaze)
        for side, (lo, hi) in EYEBALL.items():
            # the eyeball's centre moves with the identity (and with any shape): follow the
            # mean displacement of its vertices from the neutral
            centre = s.eyeball_centres[side] + (v[lo:hi] - s.neutral[lo:hi]).mean(0)
            v[lo:hi] = (v[lo:hi] - centre) @ r.T + centre
    if spec.head != (0.0, 0.0, 0.0):
        r = head_matrix(*spec.head)
        v = (v - HEAD_PIVOT) @ r.T + HEAD_PIVOT
    return v


def load_obj_faces(data_dir: str | os.PathLike | None = None) -> list[tuple[str, list[int]]]:
    """The OBJ's polygons as (material group, 0-based vertex indices), in file order."""
    faces, mat = [], ""
    with open(Path(data_dir or DATA_DIR) / "generic_neutral_mesh.obj") as f:
        for line in f:
            if line.startswith("usemtl"):
                mat = line.split()[1]
            elif line.startswith("f "):
                faces.append((mat, [int(t.split("/")[0]) - 1 for t in line.split()[1:]]))
    return faces


def eyeball_centres(v: np.ndarray, shapes: Shapes | None = None) -> dict:
    """Centres of the eyeballs of built vertices ``v`` (sphere fits)."""
    return {side: _sphere_centre(v[lo:lo + 770]) for side, (lo, _) in EYEBALL.items()}
