"""Output presets: loading and validation, the map stage, and each shipped preset's
wire format, decoded by python-osc and by an independent decoder (liblo's oscdump)."""

import math
import queue
import shlex
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import numpy as np
import pytest
from pythonosc.osc_bundle import OscBundle
from pythonosc.osc_message import OscMessage
from pythonosc.osc_message_builder import OscMessageBuilder
from pythonosc.parsing import osc_types
from support import tracker_command
from test_oscdump import oscdump  # noqa: F401  (the fixture: a live oscdump and a target to it)

from bridge.outputs import (
    CHANNELS, GROUPS, LandmarkChunks, OscFrame, PresetError, channel, load_preset, preset_from_dict, presets_dir,
    shipped_presets,
)
from bridge.state import ARKIT_NAMES, VRM0_NAMES, VRM1_FROM_VRM0, FaceState, pascal_case
from bridge.vmc import BONES, VmcEncoder, VmcOptions, bone_rotations

REPO = Path(__file__).resolve().parents[1]
SHIPPED = {"vmc", "vmc-perfect-sync", "vrchat", "vrchat-eyes", "osc", "landmarks"}
MAX_PACKET = 1200
OSCDUMP_TIMEOUT = 5.0
OSCDUMP_DECIMALS = 1e-6   # oscdump prints floats with %f
WIDTH, HEIGHT = 640, 480


def state(seed=1, **kw) -> FaceState:
    rng = np.random.default_rng(seed)
    s = FaceState.neutral()
    s.blendshapes, s.vrm = rng.random(52), rng.random(16)
    s.head_angles = np.array([20.0, -10.0, 5.0])
    s.head_position = np.array([0.02, -0.01, -0.45])
    s.eye_angles = np.array([[12.0, -4.0], [9.0, 3.0]])
    for k, v in kw.items():
        setattr(s, k, np.asarray(v, float))
    return s


def landmarks(seed=2) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.random((478, 3)) * [WIDTH, HEIGHT, WIDTH] - [0, 0, WIDTH / 2]).astype(np.float32)


def encode(name, s=None, *, tracking=True, lm=None, **overrides):
    encoder = load_preset(name, overrides=overrides or None).encoder()
    return encoder.encode(s or state(), time=2.5, tracking=tracking, calibration_state=3,
                          landmarks=lm, image_size=(WIDTH, HEIGHT), frame_index=41)


def decode(datagrams) -> list[list[tuple[str, str, list]]]:
    """Per datagram, its messages as (address, type tags, args), by python-osc."""
    out = []
    for d in datagrams:
        dgrams = [m.dgram for m in OscBundle(d)] if OscBundle.dgram_is_bundle(d) else [d]
        out.append([_message(m) for m in dgrams])
    return out


def _message(dgram):
    msg = OscMessage(dgram)
    _, index = osc_types.get_string(dgram, 0)
    tags = osc_types.get_string(dgram, index)[0][1:] if index < len(dgram) else ""
    return msg.address, tags, list(msg.params)


def flat(datagrams):
    return [m for group in decode(datagrams) for m in group]


# ---- the shipped presets ----

def test_the_shipped_presets_are_found_and_load():
    assert set(shipped_presets()) == SHIPPED
    assert presets_dir().is_dir()
    for name in SHIPPED:
        preset = load_preset(name)
        assert preset.name == name and preset.description and "\n" not in preset.description
        preset.encoder()


def test_presets_command_lists_one_line_each():
    proc = subprocess.run([*tracker_command(), "presets"], capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert sorted(line.split()[0] for line in lines) == sorted(SHIPPED)
    for line in lines:
        name = line.split()[0]
        assert line[len(name):].strip() == load_preset(name).description


VMC_CLIPS = ["A", "I", "U", "E", "O", "Blink", "Blink_L", "Blink_R", "LookUp", "LookDown", "LookLeft", "LookRight"]


def _reference_vmc(names, values, overrides):
    """What the VMC encoder itself sends for these clip names and values."""
    encoder = VmcEncoder(VmcOptions(bundle=overrides.get("bundle", True), max_packet=1200), blend_names=names)

    def encode(s, t, tracking, calibration):
        san = s.sanitized()
        floats = np.concatenate([[t if math.isfinite(t) else 0.0], bone_rotations(san).ravel(), values(san)])
        return encoder.encode_floats(floats, tracking=tracking, calibration_state=calibration)
    return encode


@pytest.mark.parametrize("name, overrides", [
    ("vmc", {}), ("vmc", {"bundle": False}), ("vmc", {"vrm_names": "1"}),
    ("vmc-perfect-sync", {}), ("vmc-perfect-sync", {"names": "camel"}),
    ("vmc-perfect-sync", {"names": "camel", "bundle": False})])
def test_vmc_presets_are_byte_identical_to_the_vmc_encoder(name, overrides):
    vrm = [VRM0_NAMES.index(n) for n in VMC_CLIPS]
    if name == "vmc":
        to_vrm1 = {old: new for new, old in VRM1_FROM_VRM0.items() if old}
        names = [to_vrm1[n] for n in VMC_CLIPS] if overrides.get("vrm_names") == "1" else VMC_CLIPS
        reference = _reference_vmc(names, lambda san: san.vrm[vrm], overrides)
    else:
        names = list(ARKIT_NAMES) if overrides.get("names") == "camel" else [pascal_case(n) for n in ARKIT_NAMES]
        reference = _reference_vmc(names, lambda san: san.blendshapes, overrides)
    preset = load_preset(name, overrides=overrides).encoder()
    rng = np.random.default_rng(7)
    for i in range(60):
        s = state(seed=i, head_angles=rng.normal(0, 60, 3), eye_angles=rng.normal(0, 30, (2, 2)))
        s.blendshapes = rng.random(52) * 1.4 - 0.2          # out of range: clamped the same way
        if i == 1:
            s.blendshapes[:], s.head_angles[:] = -0.0, -0.0
        if i == 2:
            s.blendshapes[5], s.head_angles[0], s.eye_angles[1, 1] = np.nan, np.inf, -np.inf
        for tracking, calibration in ((True, 3), (False, 3), (True, 2)):
            t = i / 30.0 if i != 3 else math.nan
            assert preset.encode(s, time=t, tracking=tracking, calibration_state=calibration) == \
                reference(s, t, tracking, calibration)


# ---- golden frames, python-osc ----

@pytest.mark.parametrize("name, clips", [("vmc", VMC_CLIPS),
                                         ("vmc-perfect-sync", [pascal_case(n) for n in ARKIT_NAMES])])
def test_vmc_golden(name, clips):
    datagrams = encode(name)
    assert all(OscBundle.dgram_is_bundle(d) and len(d) <= MAX_PACKET for d in datagrams)
    msgs = flat(datagrams)
    # No /VMC/Ext/Root/Pos: receivers would pin the avatar at the origin every frame.
    assert [(a, t) for a, t, _ in msgs] == (
        [("/VMC/Ext/OK", "iiii"), ("/VMC/Ext/T", "f")]
        + [("/VMC/Ext/Bone/Pos", "sfffffff")] * 4 + [("/VMC/Ext/Blend/Val", "sf")] * len(clips)
        + [("/VMC/Ext/Blend/Apply", "")])
    assert msgs[0][2] == [1, 3, 0, 1] and msgs[1][2] == [2.5]
    assert [args[0] for _, _, args in msgs[2:6]] == list(BONES)
    assert [args[0] for _, _, args in msgs[6:-1]] == clips
    assert all(0.0 <= args[1] <= 1.0 for _, _, args in msgs[6:-1])


def test_root_is_a_preset_option(tmp_path):
    path = tmp_path / "with-root.toml"
    path.write_text((presets_dir() / "vmc.toml").read_text().replace("# root = true", "root = true"))
    msgs = flat(load_preset(str(path)).encoder().encode(state(), time=0.0, tracking=True))
    assert [a for a, _, _ in msgs][2] == "/VMC/Ext/Root/Pos" and msgs[2][2] == ["root", 0, 0, 0, 0, 0, 0, 1]


FLAGS = ("EyeTrackingActive", "LipTrackingActive", "ExpressionTrackingActive")


def test_vrchat_golden():
    datagrams = encode("vrchat")
    unified = GROUPS["unified"]
    assert len(datagrams) == 7
    assert all(OscBundle.dgram_is_bundle(d) and len(d) <= MAX_PACKET for d in datagrams)
    assert len(encode("vrchat", bundle=False)) == 6 + len(unified)
    msgs = flat(datagrams)
    assert [(a, t) for a, t, _ in msgs[:6]] == \
        [(f"/avatar/parameters/{f}", "T") for f in FLAGS] + [(f"/avatar/parameters/FT/{f}", "T") for f in FLAGS]
    assert [t for _, t, _ in flat(encode("vrchat", tracking=False))[:6]] == ["F"] * 6
    # Never VRChat's own eye tracking beside the avatar's eye parameters: eyes driven twice.
    assert not any(a.startswith("/tracking/") for a, _, _ in msgs)
    assert [a for a, _, _ in msgs[6:]] == [f"/avatar/parameters/FT/{c.name}" for c in unified]
    assert {t for _, t, _ in msgs[6:]} == {"f"}
    for c, (_, _, (value,)) in zip(unified, msgs[6:]):
        assert c.low <= value <= c.high, c.name


def test_vrchat_eyes_golden():
    msgs = flat(encode("vrchat-eyes"))
    assert [(a, t) for a, t, _ in msgs] == [("/tracking/eye/LeftRightPitchYaw", "ffff"),
                                            ("/tracking/eye/EyesClosedAmount", "f")]


def test_vrchat_prefix_can_be_dropped(tmp_path):
    text = (presets_dir() / "vrchat.toml").read_text().replace('prefix = "FT/"', 'prefix = ""')
    path = tmp_path / "vrchat-plain.toml"
    path.write_text(text)
    msgs = flat(load_preset(str(path)).encoder().encode(state(), time=0.0, tracking=True))
    assert "/avatar/parameters/v2/JawOpen" in [a for a, _, _ in msgs]


def test_vrchat_values_follow_vrchat_and_vrcft_conventions():
    def sent(name="vrchat", **kw):
        return {a: args for a, _, args in flat(encode(name, state(**kw)))}
    b = {n: i for i, n in enumerate(ARKIT_NAMES)}
    shapes = np.zeros(52)
    shapes[b["eyeBlinkLeft"]], shapes[b["eyeWideRight"]] = 1.0, 1.0
    shapes[b["eyeSquintLeft"]], shapes[b["eyeSquintRight"]] = 0.2, 0.6
    shapes[b["jawRight"]], shapes[b["mouthSmileLeft"]] = 0.5, 0.8
    # Eyes 15 degrees up and 20 degrees to the user's right (our yaw + is to the own left).
    v = sent(blendshapes=shapes, eye_angles=[[-20.0, 15.0], [-20.0, 15.0]])
    p = "/avatar/parameters/FT/v2/"
    assert v[p + "EyeLidLeft"] == [0.0]                      # closed
    assert v[p + "EyeLidRight"] == [1.0]                     # open (0.75) and widened
    assert v[p + "EyeSquint"] == [pytest.approx(0.6)]         # VRCFT: the larger eye's, not the mean
    assert v[p + "JawX"] == [0.5] and v[p + "MouthSmileLeft"] == [pytest.approx(0.8)]
    # VRCFT's gaze is normalised Cartesian: tan of the angle (its core takes atan back).
    assert v[p + "EyeLeftX"][0] == pytest.approx(math.tan(math.radians(20)), abs=1e-6)
    assert v[p + "EyeLeftY"][0] == pytest.approx(math.tan(math.radians(15)), abs=1e-6)
    eyes = sent("vrchat-eyes", blendshapes=shapes, eye_angles=[[-20.0, 15.0], [-20.0, 15.0]])
    assert eyes["/tracking/eye/EyesClosedAmount"] == [0.5]
    # VRChat: pitch + = down, yaw + = right; its docs' example for this gaze is (-15.25, 20.13).
    assert eyes["/tracking/eye/LeftRightPitchYaw"] == [pytest.approx(x) for x in (-15.0, 20.0, -15.0, 20.0)]
    open_eyes = sent(blendshapes=np.zeros(52))
    assert open_eyes[p + "EyeLidLeft"] == [0.75]
    assert sent("vrchat-eyes", blendshapes=np.zeros(52))["/tracking/eye/EyesClosedAmount"] == [0.0]


def test_osc_golden():
    s = state()
    datagrams = encode("osc", s)
    assert len(datagrams) == 2 and all(OscBundle.dgram_is_bundle(d) and len(d) <= MAX_PACKET for d in datagrams)
    msgs = flat(datagrams)
    assert [(a, t) for a, t, _ in msgs[:5]] == [
        ("/face/found", "i"), ("/face/head/rotation", "fff"), ("/face/head/position", "fff"),
        ("/face/eye/left", "ff"), ("/face/eye/right", "ff")]
    assert msgs[0][2] == [1]
    np.testing.assert_allclose(msgs[1][2], s.head_angles, atol=1e-5)
    np.testing.assert_allclose(msgs[2][2], s.head_position, atol=1e-6)
    np.testing.assert_allclose(msgs[3][2] + msgs[4][2], s.eye_angles.ravel(), atol=1e-5)
    blend = msgs[5:]
    assert [a for a, _, _ in blend] == [f"/face/blend/{n}" for n in ARKIT_NAMES]
    assert {t for _, t, _ in blend} == {"f"}
    np.testing.assert_allclose([args[0] for _, _, args in blend], s.blendshapes, atol=1e-6)
    assert flat(encode("osc", s, tracking=False))[0][2] == [0]


def test_osc_without_bundles_sends_one_message_per_datagram():
    datagrams = encode("osc", bundle=False)
    assert len(datagrams) == 5 + 52 and not any(OscBundle.dgram_is_bundle(d) for d in datagrams)


def test_landmarks_golden():
    lm = landmarks()
    datagrams = encode("landmarks", lm=lm)
    # 100 landmarks a message: 1252 B, within what IPv4 and IPv6 carry unfragmented (1452).
    assert len(datagrams) == 5 and all(len(d) <= 1452 for d in datagrams)
    assert not any(OscBundle.dgram_is_bundle(d) for d in datagrams)
    points = []
    for (address, tags, args), expected_first in zip(flat(datagrams), range(0, 478, 100)):
        assert (address, tags) == ("/facemocap/landmarks", "ifiib")
        frame, t, first, count, blob = args
        assert (frame, t, first, count) == (41, 2.5, expected_first, min(100, 478 - expected_first))
        assert len(blob) == count * 12
        points.append(np.frombuffer(blob, dtype="<f4").reshape(count, 3))
    expected = (lm.astype(np.float64) / WIDTH).astype(np.float32)  # all axes on the width scale
    np.testing.assert_array_equal(np.concatenate(points), expected)


def test_landmark_bytes_match_python_osc_built_messages():
    lm = landmarks(5)
    datagrams = LandmarkChunks("/facemocap/landmarks", 100).encode(lm, (WIDTH, HEIGHT), frame_index=9, time=0.25)
    normalised = (lm.astype(np.float64) / WIDTH).astype("<f4")
    for datagram, first in zip(datagrams, range(0, 478, 100)):
        count = min(100, 478 - first)
        b = OscMessageBuilder("/facemocap/landmarks")
        for value, kind in ((9, "i"), (0.25, "f"), (first, "i"), (count, "i"),
                            (normalised[first:first + count].tobytes(), "b")):
            b.add_arg(value, kind)
        assert datagram == b.build().dgram


def test_landmarks_are_sent_only_with_a_face_and_finite_values():
    assert encode("landmarks", lm=None) == []
    bad = landmarks()
    bad[10, 1] = np.nan
    assert encode("landmarks", lm=bad) == []
    encoder = load_preset("landmarks").encoder()
    assert encoder.wants_landmarks and not load_preset("vmc").encoder().wants_landmarks
    assert encoder.encode(state(), time=0.0, tracking=True, landmarks=landmarks(), image_size=None) == []


def test_osc_frame_fast_path_matches_python_osc():
    frame = OscFrame([("/a", "fi"), ("/b/c", "f"), ("/d", "")], bundle=True, max_packet=MAX_PACKET)
    got = frame.pack(np.array([1.5, -2.25]), np.array([7]))
    from pythonosc.osc_bundle_builder import IMMEDIATELY, OscBundleBuilder
    bundle = OscBundleBuilder(IMMEDIATELY)
    for address, args in (("/a", [(1.5, "f"), (7, "i")]), ("/b/c", [(-2.25, "f")]), ("/d", [])):
        b = OscMessageBuilder(address)
        for value, kind in args:
            b.add_arg(value, kind)
        bundle.add_content(b.build())
    assert got == [bundle.build().dgram]


# ---- golden frames, oscdump (liblo) ----

def _oscdump_messages(lines, count):
    out, deadline = [], time.monotonic() + OSCDUMP_TIMEOUT
    while len(out) < count:
        try:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            pytest.fail(f"oscdump printed {len(out)} of {count} messages")
        line = line.replace("[", '"[').replace(" byte blob]", ' byte blob]"')
        parts = shlex.split(line)
        if parts[1] != "/probe":
            out.append((parts[1], parts[2] if len(parts) > 2 else "", parts[3:]))
    return out


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_oscdump_decodes_every_preset(oscdump, name):  # noqa: F811
    target, lines = oscdump
    datagrams = encode(name, lm=landmarks())
    ours = flat(datagrams)
    failed_before = target.failed_datagrams
    target.send(datagrams)
    theirs = _oscdump_messages(lines, len(ours))
    assert target.failed_datagrams == failed_before
    assert [(a, t) for a, t, _ in theirs] == [(a, t) for a, t, _ in ours]
    for (_, tags, printed), (_, _, args) in zip(theirs, ours):
        for tag, text, value in zip(tags, printed, args):
            if tag == "f":
                assert float(text) == pytest.approx(value, abs=OSCDUMP_DECIMALS)
            elif tag == "i":
                assert int(text) == value
            elif tag == "s":
                assert text == value
            elif tag in "TF":
                assert text == f"#{tag}" and value is (tag == "T")
            else:
                assert text == f"[{len(value)} byte blob]"


# ---- the map stage ----

def preset(text: str, tmp_path, name="p.toml", **overrides):
    path = tmp_path / name
    path.write_text(text)
    return load_preset(str(path), overrides=overrides or None)


VMC_HEAD = 'description = "t"\nprotocol = "vmc"\n'
OSC_HEAD = 'description = "t"\nprotocol = "osc"\nport = 7000\n[osc]\nblend = "/x/{name}"\n'


def values(p, s):
    return {a.rsplit("/", 1)[-1] if p.protocol == "osc" else args[0]: args[-1]
            for a, _, args in flat(p.encoder().encode(s, time=0.0, tracking=True))
            if a.startswith("/x/") or a == "/VMC/Ext/Blend/Val"}


def test_gain_offset_curve_and_clamp(tmp_path):
    p = preset(OSC_HEAD + """
[channels]
include = ["jawOpen", "mouthSmileLeft", "mouthSmileRight", "eyeBlinkLeft", "v2/JawX", "v2/MouthX"]
[channels.gain]
jawOpen = 2.0
[channels.offset]
mouthSmileLeft = -0.1
[channels.curve]
mouthSmileRight = "smoothstep"
eyeBlinkLeft = { gamma = 2.0 }
"v2/JawX" = "smoothstep"
[channels.clamp]
jawOpen = [0.0, 0.9]
"v2/MouthX" = [-0.5, 0.5]
""", tmp_path)
    b = {n: i for i, n in enumerate(ARKIT_NAMES)}
    shapes = np.zeros(52)
    shapes[[b["jawOpen"], b["mouthSmileLeft"], b["mouthSmileRight"], b["eyeBlinkLeft"]]] = [0.3, 0.05, 0.25, 0.5]
    shapes[b["jawLeft"]], shapes[b["mouthLeft"]] = 0.25, 0.9
    v = values(p, state(blendshapes=shapes))
    assert v["JawOpen"] == pytest.approx(0.6)                      # gain
    assert v["MouthSmileLeft"] == 0.0                               # offset, then clamped to 0..1
    assert v["MouthSmileRight"] == pytest.approx(0.15625)           # smoothstep(0.25)
    assert v["EyeBlinkLeft"] == pytest.approx(0.25)                 # gamma 2
    assert v["JawX"] == pytest.approx(-0.15625)                     # curves keep the sign
    assert v["MouthX"] == -0.5                                      # clamped
    shapes[b["jawOpen"]] = 0.8
    assert values(p, state(blendshapes=shapes))["JawOpen"] == pytest.approx(0.9)


def test_defaults_renames_exclude_and_names(tmp_path):
    p = preset(VMC_HEAD + """
names = "camel"
[channels]
include = ["vrm0", "arkit"]
exclude = ["tongueOut", "LookUp"]
[channels.defaults]
gain = 0.5
[renames]
JawOpen = "MouthOpen"
A = "aa_custom"
""", tmp_path)
    s = state()
    v = values(p, s)
    assert "tongueOut" not in v and "LookUp" not in v and "jawOpen" not in v
    assert v["MouthOpen"] == pytest.approx(0.5 * s.blendshape("jawOpen"), abs=1e-6)
    assert v["aa_custom"] == pytest.approx(0.5 * s.vrm[0], abs=1e-6)
    assert "eyeBlinkLeft" in v and len(v) == 16 + 52 - 2


def test_gain_on_head_yaw_turns_the_vmc_bones(tmp_path):
    p = preset(VMC_HEAD + '[channels]\ninclude = ["arkit"]\n[channels.gain]\nheadYaw = 2.0\n', tmp_path)
    doubled = state(head_angles=[20.0, 0.0, 0.0])
    reference = VmcEncoder().encode(state(head_angles=[40.0, 0.0, 0.0]), time=0.0, tracking=True)
    bones = lambda d: [m for m in flat(d) if m[0] == "/VMC/Ext/Bone/Pos"]  # noqa: E731
    assert bones(p.encoder().encode(doubled, time=0.0, tracking=True)) == bones(reference)


def test_every_channel_name_resolves_in_both_styles():
    for c in CHANNELS:
        assert channel(c.name) is c
        if c.restyle:
            assert channel(pascal_case(c.name)) is c


# ---- validation: every error names the file and the key, on one line ----

BAD = [
    (VMC_HEAD + '[channels.gain]\nJawOpen = "x"\n', "key 'channels.gain.JawOpen' must be a number, got 'x'"),
    (VMC_HEAD + 'colour = 3\n', "unknown key 'colour'"),
    ('protocol = "vmc"\n', "missing key 'description'"),
    ('description = "t"\nprotocol = "midi"\n', "key 'protocol' must be \"vmc\" or \"osc\", got 'midi'"),
    (VMC_HEAD + 'port = 70000\n', "key 'port' must be between 1 and 65535, got 70000"),
    (VMC_HEAD + 'port = true\n', "key 'port' must be a whole number, got true"),
    (VMC_HEAD + 'bundle = "yes"\n', "key 'bundle' must be true or false"),
    (VMC_HEAD + 'max_packet = 100\n', "key 'max_packet' must be between 128 and 1472"),
    (OSC_HEAD.replace("[osc]", "max_packet = 128\n[osc]") + f'[[osc.messages]]\naddress = "/{"a" * 150}"\nargs = ["found"]\n',
     "key 'max_packet' is too small"),
    (VMC_HEAD + 'names = "snake"\n', "key 'names' must be \"pascal\" or \"camel\""),
    (VMC_HEAD + '[channels]\ninclude = ["jawOpn"]\n', "key 'channels.include[0]' names an unknown channel or group 'jawOpn' (did you mean 'jawOpen'?)"),
    (VMC_HEAD + '[channels]\ninclude = "arkit"\n', "key 'channels.include' must be a list of strings"),
    (VMC_HEAD + '[channels]\ninclude = ["arkit"]\n[channels.clamp]\nJawOpen = [1, 0]\n', "key 'channels.clamp.JawOpen' must have low < high"),
    (VMC_HEAD + '[channels]\ninclude = ["arkit"]\n[channels.clamp]\nJawOpen = 1\n', "key 'channels.clamp.JawOpen' must be [low, high]"),
    (VMC_HEAD + '[channels]\ninclude = ["arkit"]\n[channels.curve]\nJawOpen = "cubic"\n', "key 'channels.curve.JawOpen' must be \"linear\", \"smoothstep\" or { gamma = NUMBER }"),
    (VMC_HEAD + '[channels]\ninclude = ["arkit"]\n[channels.curve]\nJawOpen = { gamma = 0 }\n', "key 'channels.curve.JawOpen.gamma' must be between 0.05 and 20"),
    (VMC_HEAD + '[channels]\ninclude = ["arkit"]\n[channels.gain]\nA = 2\n', "key 'channels.gain.A': channel 'A' is not sent by this preset"),
    (VMC_HEAD + '[channels]\ninclude = ["arkit"]\n[channels.gain]\nBogus = 2\n', "key 'channels.gain.Bogus' names an unknown channel 'Bogus'"),
    (VMC_HEAD + '[channels]\ninclude = ["arkit"]\n[channels.curve]\nheadYaw = "smoothstep"\n', "'headYaw' is in deg"),
    (VMC_HEAD + '[channels]\ninclude = ["arkit"]\n[channels.defaults]\nwobble = 1\n', "unknown key 'channels.defaults.wobble'"),
    (VMC_HEAD + '[channels]\ninclude = ["arkit"]\n[renames]\nJawOpen = "JawLeft"\n', "would both go out as 'JawLeft'"),
    (VMC_HEAD + '[channels]\ninclude = ["arkit"]\n[renames]\nJawOpen = 5\n', "key 'renames.JawOpen' must be a non-empty string, got 5"),
    (VMC_HEAD + '[osc]\nblend = "/x/{name}"\n', "key 'osc' is only for protocol = \"osc\""),
    ('description = "t"\nprotocol = "osc"\n[osc]\nblend = "/x/{name}"\n', "missing key 'port'"),
    (OSC_HEAD.replace("/x/{name}", "/x/name"), "key 'osc.blend' must contain {name}"),
    (OSC_HEAD.replace("/x/{name}", "/x y/{name}") + '[channels]\ninclude = ["arkit"]\n', "key 'osc.blend' gives the OSC address '/x y/x'"),
    (OSC_HEAD + '[[osc.messages]]\naddress = "/h"\nargs = ["headYw"]\n', "key 'osc.messages[0].args[0]' names an unknown channel 'headYw' (did you mean 'headYaw'?)"),
    (OSC_HEAD + '[[osc.messages]]\nargs = ["headYaw"]\n', "missing key 'osc.messages[0].address'"),
    (OSC_HEAD + '[[osc.messages]]\naddress = "h"\nargs = ["found"]\n', "key 'osc.messages[0].address' gives the OSC address 'h'"),
    (OSC_HEAD + '[osc.landmarks]\nchunk = 200\n', "key 'osc.landmarks.chunk' is too large"),
    (OSC_HEAD, "the preset sends nothing"),
    (OSC_HEAD + '[channels]\ninclude = ["unified"]\n[channels.gain]\n"v2/JawOpen" = []\n', "key 'channels.gain.\"v2/JawOpen\"' must be a number, got []"),
    ('description = "t"\nprotocol = "vmc"\n[channels\n', "not valid TOML"),
]


@pytest.mark.parametrize("text, expected", BAD, ids=[str(i) for i in range(len(BAD))])
def test_a_bad_preset_names_the_file_and_the_key(tmp_path, text, expected):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(PresetError) as error:
        load_preset(str(path)).encoder()
    message = str(error.value)
    assert message.startswith(f"{path}: ") and expected in message, message
    assert "\n" not in message


def test_missing_and_unknown_presets(tmp_path):
    with pytest.raises(PresetError, match=r"unknown preset 'nope' \(shipped: landmarks, osc, vmc, vmc-perfect-sync, vrchat, vrchat-eyes"):
        load_preset("nope")
    with pytest.raises(PresetError, match="file not found"):
        load_preset(str(tmp_path / "missing.toml"))


def test_the_command_line_reports_a_bad_preset_in_one_line(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text(VMC_HEAD + '[channels.gain]\nJawOpen = "x"\n')
    proc = subprocess.run([*tracker_command(), "--demo", "--frames", "3", "--quiet", "--control-port", "0",
                           "--preset", str(path)], capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and f"{path}: key 'channels.gain.JawOpen' must be a number, got 'x'" in lines[0]


def test_preset_from_dict_takes_overrides_for_vmc_presets_only():
    data = tomllib.loads((presets_dir() / "osc.toml").read_text())
    p = preset_from_dict(data, name="osc", source="osc.toml", overrides={"names": "pascal", "vrm_names": "1",
                                                                         "bundle": False})
    assert p.names == "camel" and not p.bundle


# ---- packaging ----

def test_pyproject_maps_the_presets_folder_into_the_package():
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert "bridge.presets" in config["packages"]
    assert config["package-dir"]["bridge.presets"] == "presets"
    assert "*.toml" in config["package-data"]["bridge.presets"]


def test_a_built_package_carries_the_presets_and_finds_them(tmp_path):
    """setuptools' build_py on a copy of the project (no network, no wheel package):
    the built tree has bridge/presets/*.toml and bridge.outputs finds them there."""
    project = tmp_path / "project"
    project.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for folder in ("bridge", "presets"):
        shutil.copytree(REPO / folder, project / folder, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, project / name)
    build = tmp_path / "lib"
    proc = subprocess.run([sys.executable, "-c", "from setuptools import setup; setup()", "-q", "build_py",
                           "--build-lib", str(build)], cwd=project, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0 and "No module named 'setuptools'" in proc.stderr:
        pytest.skip("setuptools is not installed in this environment")
    assert proc.returncode == 0, proc.stderr
    assert {p.name for p in (build / "bridge" / "presets").glob("*.toml")} == {f"{n}.toml" for n in SHIPPED}
    check = ("import bridge.outputs as o; d = o.presets_dir(); "
             "print(d); print(' '.join(o.shipped_presets())); o.load_preset('vrchat').encoder()")
    proc = subprocess.run([sys.executable, "-c", check], cwd=tmp_path, capture_output=True, text=True, timeout=60,
                          env={"PYTHONPATH": str(build), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    folder, names = proc.stdout.strip().splitlines()
    assert Path(folder) == build / "bridge" / "presets" and set(names.split()) == SHIPPED


def test_a_full_landmark_chunk_is_1252_bytes():
    # address (24) + type tags ",ifiib" (8) + i f i i (16) + blob size (4) + 100 x 3 float32 (1200)
    assert LandmarkChunks("/facemocap/landmarks", 100).message_size(100) == 1252


def test_special_message_arguments(tmp_path):
    p = preset(OSC_HEAD + '[[osc.messages]]\naddress = "/status"\nargs = ["time", "calibration", "found", "headYaw"]\n',
               tmp_path)
    encoder = p.encoder()
    msgs = flat(encoder.encode(state(), time=7.25, tracking=False, calibration_state=2))
    assert msgs == [("/status", "fiif", [7.25, 2, 0, 20.0])]
