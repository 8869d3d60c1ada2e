"""Named, seeded sets of `FaceSpec`s.

Sets
----
``smoke`` (11 faces)
    Each face checks one thing the tracker must read the right way round.
``full`` (issue 14's set; see `full_groups` for the groups and their counts)
    Every renderable channel alone at 1.0 / 0.5 / 0.25, common pairs, a few hundred random
    sparse combinations over 8 identities, neutral faces of every identity, head yaw/pitch
    +-20 deg (some with expressions) and gaze yaw +-25 / pitch +-20 deg. Ordered so the most
    valuable faces render first (a partial render is still useful): neutrals, singles at 1.0,
    singles at 0.5, gaze, head, pairs, singles at 0.25, randoms.
``ci`` (24 faces, all of them also in ``full``, so they share its cache)
    Two neutrals, one single at 1.0 per channel family (left/right pairs for blink, smile
    and jaw), two gazes and two head poses.

Every spec has a readable, unique name (``jawOpen_1.0``, ``pair_smile+jawOpen_0.8``,
``rand017_id4``, ``gaze_yaw-25``, ``head_pitch+20_smile``...). Singles, pairs, gaze and head
faces are on identity 1 (``id1``) unless the name says otherwise.

Identities: `IDENTITIES` maps a label to ``(identity_seed, identity_scale)``: the seed draws
all 100 ICT identity coefficients ``~ N(0, scale)`` (`FaceSpec.identity_vector`). ICT's
basis carries no sex or age labels, so "both sexes" is left to the spread of eight seeded
draws at scales 0.6-1.1 (the ICT README: weights ~N(0, 0.5-1) give different people).
Identity 1 = seed 1, scale 0.8, the smoke set's identity, so the two sets share renders.

Randoms: `random_combos` draws, with ``numpy.random.default_rng(RANDOM_SEED)``, 2-4 distinct
renderable channels, each at a weight ~ U(0.2, 1.0) (rounded to 0.01 so the names and
JSON stay short), and an identity cycling through all eight. Both halves of a left/right
pair may be drawn; opposing shapes (blink + wide, jawLeft + jawRight) may be too -- that is
cross-talk material, not an error. ``python -m bench.truth sets`` prints the counts.
"""

from __future__ import annotations

import numpy as np

from bench.truth.faces import GAZE_RANGE_PITCH, GAZE_RANGE_YAW, RENDERABLE, FaceSpec

SMOKE_IDENTITIES = (1, 2)

# label -> (identity_seed, identity_scale)
IDENTITIES = {
    1: (1, 0.8), 2: (2, 0.8), 3: (3, 1.0), 4: (4, 0.6),
    5: (5, 1.1), 6: (6, 0.7), 7: (7, 0.9), 8: (8, 1.0),
}
RANDOM_SEED = 14
N_RANDOM = 400
SECONDS_PER_IMAGE = 3.0      # 384x384, 16 samples, 2 cores


def smoke() -> list[FaceSpec]:
    """Eleven faces, each checking one thing the tracker must read the right way round (plus
    a both-eyes blink and fixed-lid gazes, which tell render faults from tracker limits)."""
    a, b = SMOKE_IDENTITIES
    return [
        FaceSpec(name="neutral_id1", identity_seed=a),
        FaceSpec(name="neutral_id2", identity_seed=b),
        FaceSpec(name="jawOpen_1.0", identity_seed=a, weights={"jawOpen": 1.0}),
        FaceSpec(name="eyeBlinkLeft_1.0", identity_seed=a, weights={"eyeBlinkLeft": 1.0}),
        FaceSpec(name="eyeBlinkBoth_1.0", identity_seed=a, weights={"eyeBlinkLeft": 1.0, "eyeBlinkRight": 1.0}),
        FaceSpec(name="mouthSmile_0.8", identity_seed=a, weights={"mouthSmileLeft": 0.8, "mouthSmileRight": 0.8}),
        FaceSpec(name="gaze_yaw+25", identity_seed=a, gaze=(25.0, 0.0)),
        FaceSpec(name="gaze_pitch+20", identity_seed=a, gaze=(0.0, 20.0)),
        FaceSpec(name="gaze_yaw+25_fixedlids", identity_seed=a, gaze=(25.0, 0.0), lids_follow_gaze=False),
        FaceSpec(name="gaze_pitch+20_fixedlids", identity_seed=a, gaze=(0.0, 20.0), lids_follow_gaze=False),
        FaceSpec(name="head_yaw+20", identity_seed=a, head=(20.0, 0.0, 0.0)),
    ]


# --------------------------------------------------------------------------- full

def face(name: str, ident: int = 1, weights=None, **kw) -> FaceSpec:
    seed, scale = IDENTITIES[ident]
    return FaceSpec(name=name, identity_seed=seed, identity_scale=scale, weights=weights or {}, **kw)


def both(channel: str, w: float) -> dict:
    """``mouthSmile`` -> both sides at w; a channel without sides -> itself."""
    if channel + "Left" in RENDERABLE:
        return {channel + "Left": w, channel + "Right": w}
    return {channel: w}


def _fmt(v: float) -> str:
    return f"{v:+g}"


def neutrals() -> list[FaceSpec]:
    return [face(f"neutral_id{i}", i) for i in IDENTITIES]


# What a face can do with each channel "alone". eyeLook*: the eyes turn (both, as eyes do)
# and the lids follow (FaceSpec.effective_weights gives the eyeLook weights of the
# gaze); the lid shapes with the eyes ahead are no face a tracker reading the iris could
# see. mouthClose: ARKit's mouthClose is lips kept together on an open jaw, so it
# rides on jawOpen at the same weight (ICT's shape alone pushes the lips through each other).
GAZE_OF = {   # eyeLook channel -> (yaw, pitch) in degrees at weight 1
    "eyeLookOutLeft": (GAZE_RANGE_YAW, 0.0), "eyeLookInLeft": (-GAZE_RANGE_YAW, 0.0),
    "eyeLookInRight": (GAZE_RANGE_YAW, 0.0), "eyeLookOutRight": (-GAZE_RANGE_YAW, 0.0),
    "eyeLookUpLeft": (0.0, GAZE_RANGE_PITCH), "eyeLookUpRight": (0.0, GAZE_RANGE_PITCH),
    "eyeLookDownLeft": (0.0, -GAZE_RANGE_PITCH), "eyeLookDownRight": (0.0, -GAZE_RANGE_PITCH),
}


def as_face(name: str, ident: int, weights: dict) -> FaceSpec:
    """A face from ARKit weights, with eyeLook* as a gaze and mouthClose on jawOpen (GAZE_OF)."""
    w = {k: v for k, v in weights.items() if k not in GAZE_OF}
    yaw = pitch = 0.0
    for ch, v in weights.items():
        if ch in GAZE_OF:
            yaw += GAZE_OF[ch][0] * v
            pitch += GAZE_OF[ch][1] * v
    if "mouthClose" in w:
        w["jawOpen"] = max(w.get("jawOpen", 0.0), w["mouthClose"])
    yaw = float(np.clip(round(yaw, 2), -GAZE_RANGE_YAW, GAZE_RANGE_YAW))
    pitch = float(np.clip(round(pitch, 2), -GAZE_RANGE_PITCH, GAZE_RANGE_PITCH))
    return face(name, ident, w, gaze=(yaw, pitch))


def singles(w: float) -> list[FaceSpec]:
    tag = {1.0: "1.0", 0.5: "0.5", 0.25: "0.25"}.get(w, f"{w:g}")
    out, seen = [], set()
    for ch in RENDERABLE:
        spec = as_face(f"{ch}{'+jawOpen' if ch == 'mouthClose' else ''}_{tag}", 1, {ch: w})
        if ch in GAZE_OF:       # Out Left and In Right are one gaze: render it once, named by the first
            if spec.gaze in seen:
                continue
            seen.add(spec.gaze)
            spec = face(f"gaze_{ch}_{tag}", 1, gaze=spec.gaze)
        out.append(spec)
    return out


def gaze() -> list[FaceSpec]:
    out = []
    for yaw in (-25, -10, 10, 25):
        out.append(face(f"gaze_yaw{_fmt(yaw)}", 1, gaze=(yaw, 0.0)))
    for pitch in (-20, -10, 10, 20):
        out.append(face(f"gaze_pitch{_fmt(pitch)}", 1, gaze=(0.0, pitch)))
    for yaw, pitch in ((25, 20), (-25, 20), (25, -20), (-25, -20)):
        out.append(face(f"gaze_yaw{_fmt(yaw)}_pitch{_fmt(pitch)}", 1, gaze=(yaw, pitch)))
    for yaw, pitch in ((25, 0), (-25, 0), (0, 20), (0, -20)):     # eyeballs only: render vs tracker
        tag = f"yaw{_fmt(yaw)}" if yaw else f"pitch{_fmt(pitch)}"
        out.append(face(f"gaze_{tag}_fixedlids", 1, gaze=(yaw, pitch), lids_follow_gaze=False))
    for ident in (3, 5):                                            # other identities
        for yaw, pitch in ((-25, 0), (25, 0), (0, 20), (0, -20)):
            tag = f"yaw{_fmt(yaw)}" if yaw else f"pitch{_fmt(pitch)}"
            out.append(face(f"gaze_{tag}_id{ident}", ident, gaze=(yaw, pitch)))
    return out


def head() -> list[FaceSpec]:
    out = []
    for yaw in (-20, -10, 10, 20):
        out.append(face(f"head_yaw{_fmt(yaw)}", 1, head=(yaw, 0.0, 0.0)))
    for pitch in (-20, -10, 10, 20):
        out.append(face(f"head_pitch{_fmt(pitch)}", 1, head=(0.0, pitch, 0.0)))
    for yaw, pitch in ((20, 20), (-20, -20)):
        out.append(face(f"head_yaw{_fmt(yaw)}_pitch{_fmt(pitch)}", 1, head=(yaw, pitch, 0.0)))
    for ident in (2, 4):
        out.append(face(f"head_yaw+20_id{ident}", ident, head=(20.0, 0.0, 0.0)))
        out.append(face(f"head_pitch-20_id{ident}", ident, head=(0.0, -20.0, 0.0)))
    # with expressions (a turned head must not change what the face reads)
    out += [
        face("head_yaw+20_jawOpen", 1, {"jawOpen": 0.7}, head=(20.0, 0.0, 0.0)),
        face("head_yaw-20_smile", 1, both("mouthSmile", 0.8), head=(-20.0, 0.0, 0.0)),
        face("head_yaw+20_eyeBlinkLeft", 1, {"eyeBlinkLeft": 1.0}, head=(20.0, 0.0, 0.0)),
        face("head_yaw-20_eyeBlinkRight", 1, {"eyeBlinkRight": 1.0}, head=(-20.0, 0.0, 0.0)),
        face("head_pitch+20_browInnerUp", 1, {"browInnerUp": 0.8}, head=(0.0, 20.0, 0.0)),
        face("head_pitch-20_mouthPucker", 1, {"mouthPucker": 0.8}, head=(0.0, -20.0, 0.0)),
        face("head_yaw+20_gaze_yaw-25", 1, head=(20.0, 0.0, 0.0), gaze=(-25.0, 0.0)),
        face("head_pitch+20_gaze_pitch-20", 1, head=(0.0, 20.0, 0.0), gaze=(0.0, -20.0)),
    ]
    return out


# (label, weights at 1.0: channel -> relative weight); `both` names expand to left+right
PAIRS = (
    ("smile+jawOpen", {"mouthSmile": 1, "jawOpen": 1}),
    ("blink+smile", {"eyeBlink": 1, "mouthSmile": 1}),
    ("pucker+jawOpen", {"mouthPucker": 1, "jawOpen": 1}),
    ("funnel+jawOpen", {"mouthFunnel": 1, "jawOpen": 1}),
    ("browInnerUp+browOuterUp", {"browInnerUp": 1, "browOuterUp": 1}),
    ("squint+smile", {"eyeSquint": 1, "mouthSmile": 1}),
    ("cheekSquint+smile", {"cheekSquint": 1, "mouthSmile": 1}),
    ("browDown+eyeSquint", {"browDown": 1, "eyeSquint": 1}),
    ("browDown+noseSneer", {"browDown": 1, "noseSneer": 1}),
    ("eyeWide+browInnerUp", {"eyeWide": 1, "browInnerUp": 1}),
    ("jawOpen+mouthClose", {"jawOpen": 1, "mouthClose": 1}),
    ("jawOpen+mouthStretch", {"jawOpen": 1, "mouthStretch": 1}),
    ("jawOpen+mouthLowerDown", {"jawOpen": 1, "mouthLowerDown": 1}),
    ("frown+mouthShrugLower", {"mouthFrown": 1, "mouthShrugLower": 1}),
    ("mouthPress+mouthRollLower", {"mouthPress": 1, "mouthRollLower": 1}),
    ("mouthUpperUp+noseSneer", {"mouthUpperUp": 1, "noseSneer": 1}),
    ("cheekPuff+mouthPucker", {"cheekPuff": 1, "mouthPucker": 1}),
    ("smileLeft+eyeBlinkLeft", {"mouthSmileLeft": 1, "eyeBlinkLeft": 1}),   # one-sided: a wink-smile
    ("jawLeft+mouthLeft", {"jawLeft": 1, "mouthLeft": 1}),
    ("dimple+smile", {"mouthDimple": 1, "mouthSmile": 1}),
)


def pairs() -> list[FaceSpec]:
    out = []
    for ident, w in ((1, 0.8), (2, 0.5)):
        for label, chans in PAIRS:
            weights = {}
            for ch, rel in chans.items():
                weights.update(both(ch, rel * w))
            out.append(face(f"pair_{label}_{w:g}" + ("" if ident == 1 else f"_id{ident}"), ident, weights))
    return out


def random_combos(n: int = N_RANDOM, seed: int = RANDOM_SEED) -> list[FaceSpec]:
    rng = np.random.default_rng(seed)
    idents = list(IDENTITIES)
    out = []
    for i in range(n):
        k = int(rng.integers(2, 5))
        chans = rng.choice(len(RENDERABLE), size=k, replace=False)
        ws = np.round(rng.uniform(0.2, 1.0, size=k), 2)
        ident = idents[i % len(idents)]
        out.append(as_face(f"rand{i:03d}_id{ident}", ident,
                           {RENDERABLE[c]: float(w) for c, w in zip(chans, ws)}))
    return out


def full_groups() -> dict[str, list[FaceSpec]]:
    """The full set's groups, in render order (most valuable first)."""
    return {
        "neutral": neutrals(),
        "single_1.0": singles(1.0),
        "single_0.5": singles(0.5),
        "gaze": gaze(),
        "head": head(),
        "pair": pairs(),
        "single_0.25": singles(0.25),
        "random": random_combos(),
    }


def full() -> list[FaceSpec]:
    return [s for g in full_groups().values() for s in g]


CI_SINGLES = (
    "eyeBlinkLeft", "eyeBlinkRight", "eyeSquintLeft", "eyeWideLeft", "jawOpen", "jawLeft",
    "jawRight", "mouthSmileLeft", "mouthSmileRight", "mouthFunnel", "mouthPucker", "mouthLeft",
    "mouthRollLower", "mouthUpperUpLeft", "browDownLeft", "browInnerUp", "cheekPuff", "noseSneerLeft",
)
CI_OTHERS = ("neutral_id1", "neutral_id2", "gaze_yaw+25", "gaze_pitch-20", "head_yaw+20", "head_pitch+20")


def ci_groups() -> dict[str, list[FaceSpec]]:
    by_name = {s.name: s for s in full()}
    return {
        "neutral": [by_name[n] for n in CI_OTHERS[:2]],
        "single_1.0": [by_name[f"{c}_1.0"] for c in CI_SINGLES],
        "gaze/head": [by_name[n] for n in CI_OTHERS[2:]],
    }


def ci() -> list[FaceSpec]:
    return [s for g in ci_groups().values() for s in g]


SETS = {"smoke": smoke, "full": full, "ci": ci}
GROUPS = {"smoke": lambda: {"smoke": smoke()}, "full": full_groups, "ci": ci_groups}


def summary(set_name: str, seconds_per_image: float = SECONDS_PER_IMAGE) -> str:
    groups = GROUPS[set_name]()
    total = sum(len(g) for g in groups.values())
    lines = [f"set {set_name}: {total} faces, about {total * seconds_per_image / 60:.0f} min "
             f"at {seconds_per_image:g} s each"]
    for name, specs in groups.items():
        lines.append(f"  {name:12s} {len(specs):4d}")
    return "\n".join(lines)
