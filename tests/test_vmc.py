import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from pythonosc.osc_bundle import OscBundle
from pythonosc.osc_bundle_builder import IMMEDIATELY, OscBundleBuilder
from pythonosc.osc_message import OscMessage
from pythonosc.osc_message_builder import OscMessageBuilder
from pythonosc.parsing import osc_types

from bridge.state import (
    ARKIT_NAMES, VRM0_NAMES, FaceState, angles_to_quat, pascal_case, quat_multiply, quat_to_matrix,
)
from bridge.vmc import BONE_POSITIONS, BONES, VmcEncoder, VmcOptions

BUNDLE_HEADER_SIZE, ITEM_PREFIX = 16, 4
FORWARD, UP = np.array([0.0, 0.0, 1.0]), np.array([0.0, 1.0, 0.0])


def state(**kw) -> FaceState:
    s = FaceState.neutral()
    rng = np.random.default_rng(1)
    s.blendshapes, s.vrm = rng.random(52), rng.random(16)
    for k, v in kw.items():
        setattr(s, k, np.asarray(v, float))
    return s


def decode(datagrams):
    """Per datagram, its messages as (address, type tags, args)."""
    out = []
    for d in datagrams:
        if OscBundle.dgram_is_bundle(d):
            dgrams = [m.dgram for m in OscBundle(d)]
        else:
            dgrams = [d]
        out.append([_decode_message(m) for m in dgrams])
    return out


def _decode_message(dgram):
    msg = OscMessage(dgram)
    _, index = osc_types.get_string(dgram, 0)
    tags = osc_types.get_string(dgram, index)[0][1:] if index < len(dgram) else ""
    return msg.address, tags, list(msg.params)


def flat(datagrams):
    return [m for group in decode(datagrams) for m in group]


def bones(datagrams):
    return {args[0]: np.array(args[4:8]) for addr, _, args in flat(datagrams) if addr == "/VMC/Ext/Bone/Pos"}


def rotate(q, v):
    return quat_to_matrix(q) @ v


def frame(s=None, tracking=True, **options):
    return VmcEncoder(VmcOptions(**options)).encode(s or state(), time=12.5, tracking=tracking)


# ---- layout ----

@pytest.mark.parametrize("options", [{}, {"max_packet": 400}, {"bundle": False}, {"root": True}])
def test_message_order_and_apply_last(options):
    datagrams = frame(**options)
    msgs = flat(datagrams)
    addresses = [a for a, _, _ in msgs]
    n_blend = len(VRM0_NAMES) + len(ARKIT_NAMES)
    # No Root/Pos unless asked: receivers pin the model's root to it every frame.
    root = ["/VMC/Ext/Root/Pos"] if options.get("root") else []
    assert addresses == (
        ["/VMC/Ext/OK", "/VMC/Ext/T"] + root + ["/VMC/Ext/Bone/Pos"] * 4
        + ["/VMC/Ext/Blend/Val"] * n_blend + ["/VMC/Ext/Blend/Apply"]
    )
    assert decode(datagrams)[-1][-1] == ("/VMC/Ext/Blend/Apply", "", [])
    assert [m[2][0] for m in msgs if m[0] == "/VMC/Ext/Bone/Pos"] == list(BONES)


@pytest.mark.parametrize("max_packet", [1472, 400, 92])
def test_datagrams_fit_and_are_bundles(max_packet):
    datagrams = frame(max_packet=max_packet)
    assert len(datagrams) > 1  # a full frame never fits one 1472-byte datagram
    assert all(len(d) <= max_packet for d in datagrams)
    assert all(OscBundle.dgram_is_bundle(d) and OscBundle(d).timestamp == IMMEDIATELY for d in datagrams)


def test_greedy_packing():
    datagrams = frame(max_packet=400)
    sizes = [[len(m) for m in (OscBundle(d).content(i).dgram for i in range(OscBundle(d).num_contents))]
             for d in datagrams]
    for group, following in zip(sizes, sizes[1:]):
        # The next datagram's first message would not have fitted.
        assert BUNDLE_HEADER_SIZE + sum(ITEM_PREFIX + s for s in group) + ITEM_PREFIX + following[0] > 400


def test_no_bundle_one_message_per_datagram():
    datagrams = frame(bundle=False)
    assert not any(OscBundle.dgram_is_bundle(d) for d in datagrams)
    assert [len(g) for g in decode(datagrams)] == [1] * len(datagrams)
    assert decode(datagrams)[-1][0][0] == "/VMC/Ext/Blend/Apply"


def test_too_small_max_packet_is_refused():
    with pytest.raises(ValueError):
        VmcEncoder(VmcOptions(max_packet=91))  # the largest message (Bone/Pos RightEye, 72 B) + 20
    with pytest.raises(ValueError):
        VmcEncoder(VmcOptions(bundle=False, max_packet=71))
    VmcEncoder(VmcOptions(bundle=False, max_packet=72))


def test_argument_types():
    tags = {a: t for a, t, _ in flat(frame(root=True))}
    assert tags == {
        "/VMC/Ext/OK": "iiii", "/VMC/Ext/T": "f", "/VMC/Ext/Root/Pos": "sfffffff",
        "/VMC/Ext/Bone/Pos": "sfffffff", "/VMC/Ext/Blend/Val": "sf", "/VMC/Ext/Blend/Apply": "",
    }
    for a, t, _ in flat(frame(root=True)):  # every message, not only the last of each address
        assert t == tags[a]


@pytest.mark.parametrize("tracking", [True, False])
def test_ok_and_time(tracking):
    msgs = {a: args for a, _, args in flat(frame(tracking=tracking, root=True))}
    assert msgs["/VMC/Ext/OK"] == [1, 3, 0, int(tracking)]
    assert msgs["/VMC/Ext/T"] == [12.5]
    assert msgs["/VMC/Ext/Root/Pos"] == ["root", 0, 0, 0, 0, 0, 0, 1]


def test_bone_positions_are_the_avatars_when_given():
    offsets = {"Neck": (0.0, 0.127, 0.0), "Head": (0.0, 0.2, 0.0), "LeftEye": (-0.03, 0.04, -0.02)}
    sent = {args[0]: args[1:4] for a, _, args in flat(frame(bone_positions=tuple(offsets.items())))
            if a == "/VMC/Ext/Bone/Pos"}
    for bone in BONES:
        expected = offsets.get(bone, BONE_POSITIONS[bone])   # an avatar without eye bones: nominal
        assert sent[bone] == pytest.approx(expected, abs=1e-7)
    with pytest.raises(ValueError, match="bone_positions may name only"):
        VmcEncoder(VmcOptions(bone_positions=(("Hips", (0.0, 1.0, 0.0)),)))


# ---- blend values ----

@pytest.mark.parametrize("names, expected", [("pascal", [pascal_case(n) for n in ARKIT_NAMES]),
                                             ("camel", list(ARKIT_NAMES))])
def test_blend_names_and_values(names, expected):
    s = state()
    vals = [args for a, _, args in flat(frame(s, arkit_names=names)) if a == "/VMC/Ext/Blend/Val"]
    assert [n for n, _ in vals] == list(VRM0_NAMES) + expected
    np.testing.assert_allclose([v for _, v in vals], np.concatenate([s.vrm, s.blendshapes]), atol=1e-6)
    assert vals[len(VRM0_NAMES)][0] == ("EyeBlinkLeft" if names == "pascal" else "eyeBlinkLeft")


def test_unknown_name_style_is_refused():
    with pytest.raises(ValueError):
        VmcEncoder(VmcOptions(arkit_names="snake"))


def test_nan_and_inf_never_leave():
    s = state(head_angles=[np.nan, np.inf, -np.inf], eye_angles=[[np.nan, 1], [np.inf, 2]])
    s.blendshapes[:3] = [np.nan, np.inf, -np.inf]
    s.vrm[:2] = [np.inf, 5.0]
    msgs = flat(VmcEncoder().encode(s, time=float("nan"), tracking=True))
    floats = [v for _, _, args in msgs for v in args if isinstance(v, float)]
    assert np.all(np.isfinite(floats))
    blend = [args[1] for a, _, args in msgs if a == "/VMC/Ext/Blend/Val"]
    assert min(blend) >= 0.0 and max(blend) <= 1.0
    for q in bones([d for d in VmcEncoder().encode(s, time=0.0, tracking=True)]).values():
        assert np.linalg.norm(q) == pytest.approx(1.0, abs=1e-6)


# ---- rotations ----

def test_yaw_left_turns_avatar_to_its_left():
    q = bones(frame(state(head_angles=[30, 0, 0])))
    full = quat_multiply(q["Neck"], q["Head"])
    assert full[1] < 0  # negative turn about Unity +Y
    assert np.linalg.norm(full) == pytest.approx(1.0, abs=1e-6)
    assert np.linalg.norm(q["Head"]) == pytest.approx(1.0, abs=1e-6)
    assert rotate(full, FORWARD)[0] < 0  # forward swings to -X, the character's left


def test_pitch_up_turns_forward_upwards():
    q = bones(frame(state(head_angles=[0, 20, 0])))
    forward = rotate(quat_multiply(q["Neck"], q["Head"]), FORWARD)
    assert forward[1] == pytest.approx(np.sin(np.radians(20)), abs=1e-5)


def test_roll_left_tilts_top_to_characters_left():
    q = bones(frame(state(head_angles=[0, 0, 15])))
    assert rotate(quat_multiply(q["Neck"], q["Head"]), UP)[0] < 0


@settings(max_examples=50, deadline=None)
@given(st.tuples(*[st.floats(-80, 80)] * 3))
def test_neck_then_head_equals_measured_rotation(angles):
    q = bones(frame(state(head_angles=angles)))
    # The measured subject-frame rotation, reflected into Unity (x, -y, -z, w).
    expected = angles_to_quat(*angles) * [1, -1, -1, 1]
    got = quat_multiply(q["Neck"], q["Head"])
    assert abs(np.dot(got, expected)) == pytest.approx(1.0, abs=1e-5)  # same rotation (q ~ -q)


def test_neck_carries_part_of_the_turn():
    q = bones(frame(state(head_angles=[40, 0, 0])))
    neck_yaw = np.degrees(2 * np.arcsin(-q["Neck"][1]))
    assert neck_yaw == pytest.approx(0.4 * 40, abs=1e-3)


def test_eyes_come_from_their_own_angles():
    q = bones(frame(state(eye_angles=[[20, 0], [-5, 10]])))
    np.testing.assert_allclose(q["LeftEye"], angles_to_quat(20, 0) * [1, -1, -1, 1], atol=1e-6)
    np.testing.assert_allclose(q["RightEye"], angles_to_quat(-5, 10) * [1, -1, -1, 1], atol=1e-6)
    assert rotate(q["LeftEye"], FORWARD)[0] < 0  # looks to own left = Unity -X


def test_bone_positions():
    pos = {args[0]: args[1:4] for a, _, args in flat(frame()) if a == "/VMC/Ext/Bone/Pos"}
    assert pos["LeftEye"][0] < 0 < pos["RightEye"][0]  # Unity +X is the character's right
    assert pos["LeftEye"][2] > 0  # eyes sit in front of the head bone (+Z = forward)


# ---- fast path == python-osc's own builders ----

def naive_frame(s: FaceState, time: float, tracking: bool, options: VmcOptions) -> list[bytes]:
    """The same frame built message by message with OscMessageBuilder / OscBundleBuilder."""
    san = s.sanitized()
    # Quaternion values are taken from the encoder's output (their meaning is tested
    # above); everything else, and all the framing, is rebuilt here independently.
    q = bones(VmcEncoder(options).encode(s, time=time, tracking=tracking))
    names = ARKIT_NAMES if options.arkit_names == "camel" else [pascal_case(n) for n in ARKIT_NAMES]
    positions = {"Neck": (0, 0.1, 0), "Head": (0, 0.08, 0), "LeftEye": (-0.03, 0.06, 0.08),
                 "RightEye": (0.03, 0.06, 0.08), **dict(options.bone_positions)}
    root = [("/VMC/Ext/Root/Pos", ["root", 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0])] if options.root else []
    content = [
        ("/VMC/Ext/OK", [1, 3, 0, int(tracking)]),
        ("/VMC/Ext/T", [float(time)]),
        *root,
        *[("/VMC/Ext/Bone/Pos", [b, *map(float, positions[b]), *map(float, q[b])]) for b in BONES],
        *[("/VMC/Ext/Blend/Val", [n, float(v)]) for n, v in zip(VRM0_NAMES, san.vrm)],
        *[("/VMC/Ext/Blend/Val", [n, float(v)]) for n, v in zip(names, san.blendshapes)],
        ("/VMC/Ext/Blend/Apply", []),
    ]
    messages = []
    for address, args in content:
        b = OscMessageBuilder(address)
        for a in args:
            b.add_arg(a)
        messages.append(b.build())
    if not options.bundle:
        return [m.dgram for m in messages]
    out, builder, used = [], None, options.max_packet
    for m in messages:
        if used + ITEM_PREFIX + m.size > options.max_packet:
            if builder:
                out.append(builder.build().dgram)
            builder, used = OscBundleBuilder(IMMEDIATELY), BUNDLE_HEADER_SIZE
        builder.add_content(m)
        used += ITEM_PREFIX + m.size
    out.append(builder.build().dgram)
    return out


@pytest.mark.parametrize("options", [VmcOptions(), VmcOptions(max_packet=400), VmcOptions(root=True),
                                     VmcOptions(bundle=False), VmcOptions(arkit_names="camel"),
                                     VmcOptions(bone_positions=(("Head", (0.0, 0.2, 0.01)),))])
@pytest.mark.parametrize("tracking", [True, False])
def test_fast_path_matches_python_osc_bytes(options, tracking):
    s = state(head_angles=[23, -11, 7], eye_angles=[[12, -3], [9, 4]])
    fast = VmcEncoder(options).encode(s, time=3.25, tracking=tracking)
    assert fast == naive_frame(s, 3.25, tracking, options)


def test_encoder_is_reusable_across_frames():
    enc = VmcEncoder()
    a = enc.encode(state(head_angles=[10, 0, 0]), time=1.0, tracking=True)
    enc.encode(state(head_angles=[-50, 20, 3]), time=2.0, tracking=False)
    assert enc.encode(state(head_angles=[10, 0, 0]), time=1.0, tracking=True) == a


def test_vrm_1_names_carry_the_0x_values_and_surprised():
    from bridge.state import VRM1_NAMES

    s = state()
    s.blendshapes[ARKIT_NAMES.index("browInnerUp")] = 1.0
    s.blendshapes[ARKIT_NAMES.index("browOuterUpLeft")] = 1.0
    s.blendshapes[ARKIT_NAMES.index("browOuterUpRight")] = 1.0
    s.blendshapes[ARKIT_NAMES.index("jawOpen")] = 1.0
    frames = decode(VmcEncoder(VmcOptions(vrm_names="1")).encode(s, time=1.0, tracking=True))
    values = {args[0]: args[1] for msgs in frames for address, _, args in msgs if address == "/VMC/Ext/Blend/Val"}
    assert set(VRM1_NAMES) <= set(values) and not set(VRM0_NAMES) & set(values)
    for new, old in (("aa", "A"), ("blinkLeft", "Blink_L"), ("happy", "Joy"), ("relaxed", "Fun"), ("lookUp", "LookUp")):
        assert values[new] == pytest.approx(s.vrm[VRM0_NAMES.index(old)], abs=1e-6)
    assert values["surprised"] == pytest.approx(1.0) and values["neutral"] == 0.0
