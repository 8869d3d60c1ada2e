"""What receivers do with the stream: no avatar driven twice, VRChat's names as
VRCFaceTracking's own source spells them."""

from pathlib import Path

import numpy as np
import pytest

from bridge.outputs import load_preset, shipped_presets
from bridge.outputs.unified import NAMES, NOT_SENT
from bridge.state import ARKIT_NAMES, FaceState, pascal_case

DATA = Path(__file__).resolve().parent / "data"


def vrcft_names(kinds=("base", "combined", "head")) -> list[str]:
    """tests/data/vrcft_v2_parameters.txt: extracted from VRCFT's C# source by
    tests/data/extract_vrcft.py, not typed by hand."""
    rows = [line.split("\t") for line in (DATA / "vrcft_v2_parameters.txt").read_text().splitlines()
            if line and not line.startswith("#")]
    return [name for name, kind in rows if kind in kinds]


def sent_addresses(preset: str, tracking=True) -> list[tuple[str, str]]:
    from test_presets import flat
    return [(a, t) for a, t, _ in flat(load_preset(preset).encoder().encode(
        FaceState.neutral(), time=0.0, tracking=tracking))]


# ---- VRChat ----

def test_every_vrcft_v2_parameter_is_sent_or_named_as_not_expressible():
    theirs = vrcft_names()
    assert len(theirs) == len(set(theirs)) == 182
    assert set(NAMES) | set(NOT_SENT) == set(theirs)       # nothing forgotten, nothing invented
    assert not set(NAMES) & set(NOT_SENT)
    blend = [a for a, t in sent_addresses("vrchat") if t == "f"]
    assert blend == [f"/avatar/parameters/FT/v2/{n}" for n in NAMES]


def test_vrchat_sends_vrcft_flags_true_while_tracked():
    rows = [line.split("\t") for line in (DATA / "vrcft_flags.txt").read_text().splitlines()
            if line and not line.startswith("#")]
    flags = [name for name, tags, kind, _ in rows if kind == "flag"]
    assert sorted(flags) == ["ExpressionTrackingActive", "EyeTrackingActive", "LipTrackingActive"]
    for tracking, tag in ((True, "T"), (False, "F")):
        sent = dict(sent_addresses("vrchat", tracking))
        for flag in flags:
            # VRCFT matches .../<flag> with any prefix but v2/: both spellings avatars use.
            assert sent[f"/avatar/parameters/{flag}"] == sent[f"/avatar/parameters/FT/{flag}"] == tag
            assert f"/avatar/parameters/FT/v2/{flag}" not in sent
    natives = {name for name, tags, kind, _ in rows if kind == "native"}
    eyes = dict(sent_addresses("vrchat-eyes"))
    assert set(eyes) <= natives and set(eyes) == {"/tracking/eye/LeftRightPitchYaw", "/tracking/eye/EyesClosedAmount"}
    assert eyes["/tracking/eye/LeftRightPitchYaw"] == next(tags for n, tags, *_ in rows
                                                           if n == "/tracking/eye/LeftRightPitchYaw")


# ---- no avatar driven twice ----
#
# An avatar as receivers treat it: every clip it has is applied, and clips that move
# the same morphs add up (UniVRM's blendshape merger sums them). Per region of the face,
# the clips that move it on each kind of avatar: a standard VRM avatar (VRoid's
# presets: the visemes move the mouth, Blink both lids, Blink_L / _R one, Joy and its
# kin the eyes, brows and mouth at once), and a perfect-sync avatar, which has those
# same presets and the 52 ARKit clips besides.

PRESET_REGIONS = {
    **{v: {"mouth"} for v in ("A", "I", "U", "E", "O")},
    "Blink": {"left lid", "right lid"}, "Blink_L": {"left lid"}, "Blink_R": {"right lid"},
    **{e: {"left lid", "right lid", "brows", "mouth"} for e in ("Joy", "Angry", "Sorrow", "Fun")},
    **{look: {"gaze"} for look in ("LookUp", "LookDown", "LookLeft", "LookRight")},
}


def arkit_region(name: str) -> set[str]:
    if name.startswith("eyeBlink") or name.startswith("eyeSquint") or name.startswith("eyeWide"):
        return {"left lid" if name.endswith("Left") else "right lid"}
    if name.startswith("eyeLook"):
        return {"gaze"}
    if name.startswith("brow"):
        return {"brows"}
    if name.startswith(("cheek", "nose")):
        return {"cheeks"}
    return {"mouth"}


AVATARS = {
    "standard VRM": set(PRESET_REGIONS),
    "perfect sync": set(PRESET_REGIONS) | {pascal_case(n) for n in ARKIT_NAMES} | set(ARKIT_NAMES),
}


def regions_of(clip: str) -> set[str]:
    if clip in PRESET_REGIONS:
        return PRESET_REGIONS[clip]
    return arkit_region(clip[:1].lower() + clip[1:])


def family(clip: str) -> str:
    """Clips of one family share a region by design (visemes mix; Blink and Blink_L
    split one lid's closure); clips of two families in one region add up."""
    if clip in ("A", "I", "U", "E", "O"):
        return "visemes"
    if clip.startswith("Blink"):
        return "blinks"
    if clip.startswith("Look"):
        return "looks"
    return "emotions" if clip in PRESET_REGIONS else "arkit"


def demo_states(n=300):
    from support import demo_solver
    from bridge.demo_face import demo_landmarks
    solver = demo_solver()
    return [solver.solve(demo_landmarks(i / 30), (640, 480), time=i / 30) for i in range(n)]


def double_driven(p, avatar: str, states) -> list[str]:
    """What drives a region of this avatar twice when it is sent preset p."""
    encoder = p.encoder()
    applied = [(i, name) for i, name in enumerate(p.output_names) if name in AVATARS[avatar]]
    values = np.array([encoder.channel_values(s)[:len(p.channels)] for s in states])
    problems = []
    # One family of clips per region (never A and JawOpen, Blink and EyeBlinkLeft) ...
    for region in ("mouth", "left lid", "right lid", "brows", "gaze", "cheeks"):
        moving = {family(name) for i, name in applied if region in regions_of(name) and values[:, i].max() > 0}
        if len(moving) > 1:
            problems.append(f"{region}: {sorted(moving)}")
    # ... and within the VRM presets, a lid closes once (Blink + Blink_L is that eye's
    # blink) and the visemes add up to one mouth shape at most.
    col = {name: i for i, name in applied}
    for side in ("L", "R"):
        if "Blink" in col and f"Blink_{side}" in col:
            lid = values[:, col["Blink"]] + values[:, col[f"Blink_{side}"]]
            if lid.max() > 1.0 + 1e-6:
                problems.append(f"lid {side} closes {lid.max():.2f}")
    visemes = [col[v] for v in ("A", "I", "U", "E", "O") if v in col]
    if visemes and values[:, visemes].sum(axis=1).max() > 1.0 + 1e-6:
        problems.append(f"visemes sum to {values[:, visemes].sum(axis=1).max():.2f}")
    return problems


@pytest.fixture(scope="module")
def states():
    return demo_states()


@pytest.mark.parametrize("preset", [p for p in shipped_presets() if load_preset(p).protocol == "vmc"])
@pytest.mark.parametrize("avatar", sorted(AVATARS))
def test_no_region_of_any_avatar_is_driven_twice(preset, avatar, states):
    assert double_driven(load_preset(preset), avatar, states) == []


def test_the_check_catches_the_old_default(tmp_path, states):
    """What the vmc preset used to send (all VRM 0.x presets + the 52 ARKit clips)."""
    path = tmp_path / "old.toml"
    path.write_text('description = "old"\nprotocol = "vmc"\n[channels]\ninclude = ["vrm0", "arkit"]\n')
    old = load_preset(str(path))
    # Joy & co. smile and close the eyes on top of the visemes and blinks ...
    assert any(p.startswith("mouth") for p in double_driven(old, "standard VRM", states))
    # ... and a perfect-sync avatar gets A and JawOpen, Blink and EyeBlinkLeft.
    problems = double_driven(old, "perfect sync", states)
    assert any(p.startswith("mouth") and "arkit" in p for p in problems)
    assert any(p.startswith("left lid") and "arkit" in p for p in problems)
