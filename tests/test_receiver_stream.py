"""The receiver's plain layers: VMC parsing, the receiving thread, name mapping, axes.

No Blender needed: these modules never import bpy.
"""

import logging
import math
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from pythonosc.osc_bundle_builder import IMMEDIATELY, OscBundleBuilder
from pythonosc.osc_message_builder import OscMessageBuilder

from blender_receiver.mapping import guess_bone_map, unity_to_blender_rotation
from blender_receiver.receiver import (
    DEFAULT_HOST,
    MAX_DATAGRAM,
    Receiver,
    ReceiverError,
    listens_everywhere,
    parse_allow_list,
    sender_allowed,
)
from blender_receiver.vmc_stream import MAX_BUNDLE_DEPTH, MAX_NAME_LENGTH, VmcStream
from bridge.state import ARKIT_NAMES, VRM0_NAMES, FaceState, pascal_case
from bridge.vmc import VmcEncoder

SENDER = "127.0.0.1:5000"


def message(address, *args):
    builder = OscMessageBuilder(address)
    for arg in args:
        builder.add_arg(arg)
    return builder.build()


def bundle(*messages):
    builder = OscBundleBuilder(IMMEDIATELY)
    for m in messages:
        builder.add_content(m)
    return builder.build().dgram


def collect():
    frames = []
    return VmcStream(frames.append), frames


def apply_dgram():
    return message("/VMC/Ext/Blend/Apply").dgram


def test_a_tracker_frame_parses_into_one_complete_frame():
    stream, frames = collect()
    state = FaceState.neutral()
    state.blendshapes[:] = np.linspace(0, 1, 52)
    state.head_angles[:] = (20.0, 0.0, 0.0)
    for datagram in VmcEncoder().encode(state, time=12.5, tracking=True):
        stream.feed(datagram, SENDER)
    assert len(frames) == 1
    frame = frames[0]
    assert set(frame.bones) == {"Neck", "Head", "LeftEye", "RightEye"}
    assert set(frame.blends) == {pascal_case(n) for n in ARKIT_NAMES} | set(VRM0_NAMES)
    assert frame.blends["JawOpen"] == pytest.approx(state.blendshapes[ARKIT_NAMES.index("jawOpen")], abs=1e-6)
    assert frame.time == pytest.approx(12.5)
    assert frame.tracking is True and frame.sender == SENDER
    assert stream.stats.dropped == 0
    for q in frame.bones.values():
        assert math.isclose(sum(c * c for c in q), 1.0, rel_tol=1e-6)


def test_unbundled_messages_and_extra_arguments_are_accepted_unknown_addresses_ignored():
    stream, frames = collect()
    for m in (
        message("/VMC/Ext/T", 3.0, "extra"),
        message("/VMC/Ext/Blend/Val", "JawOpen", 0.5, 99, "extra"),
        message("/VMC/Ext/Bone/Pos", "Head", 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 2.0, 1.0, 1.0, 1.0),
        message("/VMC/Ext/Unknown/Thing", 1, 2, 3),
        message("/VMC/Ext/Blend/Apply", "extra"),
    ):
        stream.feed(m.dgram, SENDER)
    assert len(frames) == 1
    assert frames[0].blends == {"JawOpen": 0.5}
    assert frames[0].bones["Head"] == (0.0, 0.0, 0.0, 1.0)  # normalised
    assert stream.stats.dropped == 0


BAD_DATAGRAMS = {
    "not OSC": b"hello world",
    "truncated bundle": bundle(message("/VMC/Ext/Blend/Val", "JawOpen", 0.5))[:-8],
    "bad type tag": b"/VMC/Ext/T\x00\x00,Q\x00\x00\x00\x00\x00\x00",
    "empty": b"",
}
BAD_MESSAGES = {
    "value is a string": message("/VMC/Ext/Blend/Val", "JawOpen", "x"),
    "name is a number": message("/VMC/Ext/Blend/Val", 3, 0.5),
    "too few arguments": message("/VMC/Ext/Blend/Val", "JawOpen"),
    "NaN value": message("/VMC/Ext/Blend/Val", "JawOpen", float("nan")),
    "inf value": message("/VMC/Ext/Blend/Val", "JawOpen", float("inf")),
    "bool value": message("/VMC/Ext/Blend/Val", "JawOpen", True),
    "bone with too few floats": message("/VMC/Ext/Bone/Pos", "Head", 0.0, 0.0, 0.0),
    "bone with NaN": message("/VMC/Ext/Bone/Pos", "Head", 0.0, 0.0, 0.0, float("nan"), 0.0, 0.0, 1.0),
    "bone with zero quaternion": message("/VMC/Ext/Bone/Pos", "Head", 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0),
    "time is a string": message("/VMC/Ext/T", "now"),
    "OK without arguments": message("/VMC/Ext/OK"),
    "root with inf": message("/VMC/Ext/Root/Pos", "root", float("inf"), 0.0, 0.0, 0.0, 0.0, 0.0, 1.0),
}
BAD_NAMES = {
    "a name of 5000 characters": message("/VMC/Ext/Blend/Val", "J" * 5000, 0.5),
    "an empty name": message("/VMC/Ext/Blend/Val", "", 0.5),
    "a control character": message("/VMC/Ext/Blend/Val", "Jaw\nOpen", 0.5),
    "a long bone name": message("/VMC/Ext/Bone/Pos", "H" * 1000, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0),
}


@pytest.mark.parametrize("datagram", BAD_DATAGRAMS.values(), ids=BAD_DATAGRAMS.keys())
def test_malformed_datagrams_are_counted(datagram):
    stream, frames = collect()
    stream.feed(datagram, SENDER)
    # python-osc decodes an unknown type tag as "no argument": then the message is short.
    assert stream.stats.dropped == 1 and not frames


@pytest.mark.parametrize("bad", BAD_MESSAGES.values(), ids=BAD_MESSAGES.keys())
def test_bad_arguments_are_dropped_and_counted_and_never_applied(bad):
    stream, frames = collect()
    stream.feed(bad.dgram, SENDER)
    stream.feed(apply_dgram(), SENDER)
    assert stream.stats.bad_messages == 1
    assert frames[0].blends == {} and frames[0].bones == {} and frames[0].time is None


@pytest.mark.parametrize("bad", BAD_NAMES.values(), ids=BAD_NAMES.keys())
def test_bad_names_are_dropped_and_counted(bad):
    stream, frames = collect()
    stream.feed(bad.dgram, SENDER)
    stream.feed(apply_dgram(), SENDER)
    assert stream.stats.bad_names == 1
    assert frames[0].blends == {} and frames[0].bones == {}


def test_the_longest_allowed_name_passes():
    stream, frames = collect()
    stream.feed(message("/VMC/Ext/Blend/Val", "J" * MAX_NAME_LENGTH, 0.5).dgram, SENDER)
    stream.feed(apply_dgram(), SENDER)
    assert frames[0].blends == {"J" * MAX_NAME_LENGTH: 0.5}


def test_a_flood_of_unique_names_is_bounded():
    stream, frames = collect()
    for i in range(3000):
        stream.feed(message("/VMC/Ext/Blend/Val", f"n{i}", 0.1).dgram, SENDER)
    stream.feed(apply_dgram(), SENDER)
    assert len(frames[0].blends) == 1024 and stream.stats.overflow == 3000 - 1024


def test_bad_input_does_not_stop_later_frames():
    stream, frames = collect()
    for bad in [*BAD_DATAGRAMS.values(), *(m.dgram for m in BAD_MESSAGES.values())]:
        stream.feed(bad, SENDER)
    stream.feed(bundle(message("/VMC/Ext/Blend/Val", "JawOpen", 0.7), message("/VMC/Ext/Blend/Apply")), SENDER)
    assert frames[-1].blends == {"JawOpen": pytest.approx(0.7)}


def test_routed_addresses_reach_their_handler_and_handler_errors_are_counted():
    stream, frames = collect()
    got = []
    stream.route("/facemocap/landmarks", lambda params, sender: got.append((params, sender)))
    stream.route("/broken", lambda params, sender: 1 / 0)
    stream.feed(message("/facemocap/landmarks", 1.0, 2.0).dgram, SENDER)
    stream.feed(message("/broken").dgram, SENDER)
    assert got == [([1.0, 2.0], SENDER)]
    assert stream.stats.handler_errors == 1


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=512))
def test_arbitrary_bytes_never_raise(data):
    stream, _ = collect()
    stream.feed(data, SENDER)
    stream.feed(b"#bundle\x00" + data, SENDER)
    stream.feed(b"/VMC/Ext/Blend/Val\x00\x00" + data, SENDER)


# --- the receiving thread ------------------------------------------------------


def send(port, *datagrams):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for d in datagrams:
            sock.sendto(d, ("127.0.0.1", port))


def wait_for(receiver, count, timeout=5.0):
    frames, deadline = [], time.monotonic() + timeout
    while len(frames) < count and time.monotonic() < deadline:
        frames += receiver.take()
        time.sleep(0.005)
    return frames


@pytest.fixture
def receiver():
    r = Receiver("127.0.0.1", 0)
    r.start()
    yield r
    r.stop()


def test_frames_arrive_in_order_through_the_socket(receiver):
    for i in range(50):
        send(receiver.port, bundle(message("/VMC/Ext/T", float(i)), message("/VMC/Ext/Blend/Apply")))
    frames = wait_for(receiver, 50)
    assert [f.time for f in frames] == [float(i) for i in range(50)]


def test_a_64_kb_datagram_is_read_whole(receiver):
    # ~1400 messages in one bundle: python-osc's default 8192-byte read would cut it.
    names = [f"Shape{i:04d}" for i in range(1400)]
    big = bundle(*(message("/VMC/Ext/Blend/Val", n, 0.25) for n in names), message("/VMC/Ext/Blend/Apply"))
    assert 8192 < len(big) <= MAX_DATAGRAM
    send(receiver.port, big)
    frames = wait_for(receiver, 1)
    assert len(frames) == 1 and len(frames[0].blends) == 1024  # the per-frame bound, counted
    assert receiver.stats.overflow == 1400 - 1024 and receiver.stats.malformed == 0


def test_garbage_on_the_socket_is_counted_not_raised(receiver, capfd):
    send(receiver.port, b"\xff" * 100, b"#bundle\x00" + b"\x00" * 3, apply_dgram())
    assert len(wait_for(receiver, 1)) == 1
    assert receiver.stats.malformed == 2
    assert "Traceback" not in capfd.readouterr().err


def test_a_port_in_use_is_a_clear_error_and_stop_releases_the_port(receiver):
    other = Receiver("127.0.0.1", receiver.port)
    with pytest.raises(ReceiverError, match=f"port {receiver.port} is already in use"):
        other.start()
    port = receiver.port
    receiver.stop()
    again = Receiver("127.0.0.1", port)
    again.start()  # the port was released
    assert again.running
    again.stop()
    assert not again.running


def test_a_bad_host_is_a_clear_error():
    with pytest.raises(ReceiverError, match="not a valid address|not an address"):
        Receiver("no.such.host.invalid", 0).start()


# --- mapping ---------------------------------------------------------------------------


def test_bone_map_from_plain_names_mixamo_and_vroid():
    assert guess_bone_map(["root", "neck", "head", "eye.L", "eye.R"]) == {
        "Head": "head", "Neck": "neck", "LeftEye": "eye.L", "RightEye": "eye.R"}
    assert guess_bone_map(["mixamorig:Neck", "mixamorig:Head", "mixamorig:LeftEye", "mixamorig:RightEye"]) == {
        "Head": "mixamorig:Head", "Neck": "mixamorig:Neck",
        "LeftEye": "mixamorig:LeftEye", "RightEye": "mixamorig:RightEye"}
    assert guess_bone_map(["J_Bip_C_Neck", "J_Bip_C_Head", "J_Adj_L_FaceEye", "J_Adj_R_FaceEye"]) == {
        "Head": "J_Bip_C_Head", "Neck": "J_Bip_C_Neck",
        "LeftEye": "J_Adj_L_FaceEye", "RightEye": "J_Adj_R_FaceEye"}
    assert guess_bone_map(["Bone", "Bone.001"]) == {}


def test_bone_map_prefers_the_vrm_humanoid_table():
    bones = ["Head", "Neck", "kao", "kubi", "me_L", "me_R"]
    vrm = {"head": "kao", "neck": "kubi", "left_eye": "me_L", "rightEye": "me_R", "hips": "x"}
    assert guess_bone_map(bones, vrm) == {"Head": "kao", "Neck": "kubi", "LeftEye": "me_L", "RightEye": "me_R"}


def test_bone_map_for_rigify_maps_head_neck_and_the_gaze_controls():
    bones = ["root", "torso", "neck", "head", "eye.L", "eye.R", "eyes", "ORG-eye.L", "ORG-eye.R",
             "MCH-eye.L", "DEF-spine.006"]
    assert guess_bone_map(bones) == {"Head": "head", "Neck": "neck", "LeftEye": "eye.L", "RightEye": "eye.R"}
    # Only the shared control: both eyes turn it (their gaze is averaged).
    shared = ["neck", "head", "eye_common", "ORG-eye.L", "ORG-eye.R", "MCH-eye.L"]
    assert guess_bone_map(shared) == {"Head": "head", "Neck": "neck",
                                      "LeftEye": "eye_common", "RightEye": "eye_common"}
    # A control without the ORG- eye it turns about cannot be aimed: left out.
    assert guess_bone_map(["neck", "head", "eye.L", "eye.R", "ORG-spine"]) == {"Head": "head", "Neck": "neck"}


def _rotate(q_wxyz, v):
    w, x, y, z = q_wxyz
    u = np.array([x, y, z])
    v = np.asarray(v, float)
    return v + 2 * np.cross(u, np.cross(u, v) + w * v)


def test_plus_30_degrees_about_unity_y_turns_the_face_toward_blender_minus_x():
    half = math.radians(30) / 2
    q = unity_to_blender_rotation((0.0, math.sin(half), 0.0, math.cos(half)))
    forward = _rotate(q, (0.0, -1.0, 0.0))
    assert forward == pytest.approx((-0.5, -math.sqrt(3) / 2, 0.0), abs=1e-9)


def test_unity_axes_map_to_blender_axes_as_a_reflection():
    # A rotation about Unity +X (the character's right) is one about Blender -X;
    # about Unity +Z (forward) is one about Blender -Y: the axis map x->-x, z->-y,
    # with the pseudovector sign flip of a reflection applied to the angle's sense.
    half = math.radians(40) / 2
    about_x = unity_to_blender_rotation((math.sin(half), 0.0, 0.0, math.cos(half)))
    about_z = unity_to_blender_rotation((0.0, 0.0, math.sin(half), math.cos(half)))
    assert about_x == pytest.approx((math.cos(half), math.sin(half), 0.0, 0.0))
    assert about_z == pytest.approx((math.cos(half), 0.0, math.sin(half), 0.0))
    # Unity: +X rotation pitches forward (+Z) down (-Y) in its left-handed axes.
    # Blender: the same motion takes forward (-Y) down (-Z).
    assert _rotate(about_x, (0.0, -1.0, 0.0)) == pytest.approx((0.0, -math.cos(2 * half), -math.sin(2 * half)))


# --- found by bench/fuzz.py -------------------------------------------------------------


def raw_bundle(*elements, sizes=None):
    """A bundle whose element sizes may lie (sizes[i] replaces element i's real size)."""
    out = b"#bundle\x00" + b"\x00" * 7 + b"\x01"
    for i, e in enumerate(elements):
        size = len(e) if sizes is None or sizes[i] is None else sizes[i]
        out += struct.pack(">i", size) + e
    return out


def nested(inner, depth):
    data = inner
    for _ in range(depth - 1):
        data = raw_bundle(data)
    return raw_bundle(data)


def feed_in_thread(stream, datagram):
    """A hang guard: python-osc looped forever on some datagrams."""
    worker = threading.Thread(target=stream.feed, args=(datagram, SENDER), daemon=True)
    worker.start()
    worker.join(timeout=30)
    return not worker.is_alive()


@pytest.mark.parametrize("size", [-4, -8, -1, -16, -2**31, 0, 2**31 - 1])
def test_a_bundle_element_size_that_lies_is_malformed_and_never_hangs(size):
    # python-osc's OscPacket loops forever on size -4: it reads the size, steps back
    # onto it, and reads it again (logging a warning each turn).
    stream, frames = collect()
    assert feed_in_thread(stream, raw_bundle(apply_dgram(), sizes=[size]))
    assert stream.stats.malformed == 1 and not frames


def test_bundles_nested_thousands_deep_are_counted_not_recursed_into():
    stream, frames = collect()
    for depth in (MAX_BUNDLE_DEPTH + 1, 500, 1000, 3000):  # python-osc: RecursionError from ~500
        data = nested(apply_dgram(), depth)
        assert len(data) <= 65507
        stream.feed(data, SENDER)
    assert stream.stats.too_deep == 4 and stream.stats.dropped == 4 and not frames
    stream.feed(nested(apply_dgram(), MAX_BUNDLE_DEPTH), SENDER)  # as deep as allowed: applied
    assert len(frames) == 1


def test_unknown_type_tags_and_element_kinds_are_counted_without_logging(caplog):
    stream, frames = collect()
    with caplog.at_level(logging.DEBUG):
        stream.feed(b"/VMC/Ext/T\x00\x00,zzz\x00\x00\x00\x00", SENDER)  # python-osc: a warning per tag
        stream.feed(b"/VMC/Ext/T\x00\x00," + b"Q" * 60000 + b"\x00", SENDER)
        stream.feed(raw_bundle(apply_dgram(), b"garbage!"), SENDER)  # python-osc: a warning with its repr
        stream.feed(b"/VMC/Ext/Blend/\xffVal\x00\x00\x00,sf\x00", SENDER)  # not UTF-8
    assert stream.stats.malformed == 4 and not frames
    assert caplog.records == []


def test_a_huge_double_in_a_rotation_gives_a_unit_quaternion_not_zero():
    # (1e300)^2 overflows to inf; dividing by an infinite norm gave (0, 0, 0, 0),
    # which Blender turns into a 180-degree flip for Euler and axis-angle bones.
    stream, frames = collect()
    bone = OscMessageBuilder("/VMC/Ext/Bone/Pos")
    bone.add_arg("Head")
    for value, kind in ((0.0, "f"),) * 3 + ((1e300, "d"), (0.0, "d"), (0.0, "d"), (1e300, "d")):
        bone.add_arg(value, kind)
    stream.feed(bundle(bone.build(), message("/VMC/Ext/Blend/Apply")), SENDER)
    half = math.sqrt(0.5)
    assert frames[0].bones["Head"] == pytest.approx((half, 0.0, 0.0, half))


def test_messages_in_nested_bundles_come_out_in_packing_order():
    stream, frames = collect()
    inner = raw_bundle(message("/VMC/Ext/Blend/Val", "JawOpen", 0.25).dgram)
    stream.feed(raw_bundle(message("/VMC/Ext/T", 4.0).dgram, inner, apply_dgram()), SENDER)
    assert frames[0].blends == {"JawOpen": 0.25} and frames[0].time == 4.0


# --- binding and the allow-list -------------------------------------------------------


def test_the_receiver_listens_on_this_machine_only_by_default():
    assert Receiver().host == DEFAULT_HOST == "127.0.0.1"
    assert listens_everywhere("0.0.0.0") and listens_everywhere("") and listens_everywhere("::")
    assert listens_everywhere(" 0:0:0:0:0:0:0:0 ")
    assert not listens_everywhere("127.0.0.1") and not listens_everywhere("192.168.1.2")


def test_allow_lists_parse_addresses_and_ranges_separated_by_commas_or_spaces():
    nets = parse_allow_list(" 192.168.1.20, 10.0.0.0/8  ::1,fe80::/10 192.168.2.7/24 ")
    assert [str(n) for n in nets] == ["192.168.1.20/32", "10.0.0.0/8", "::1/128", "fe80::/10", "192.168.2.0/24"]
    assert parse_allow_list("") == () and parse_allow_list(" , ") == ()
    assert sender_allowed("10.1.2.3", nets) and sender_allowed("192.168.2.200", nets)
    assert sender_allowed("::ffff:192.168.1.20", nets)  # IPv4 on a dual-stack socket
    assert sender_allowed("fe80::1%eth0", nets)
    assert not sender_allowed("192.168.1.21", nets) and not sender_allowed("::2", nets)
    assert not sender_allowed("not an address", nets)


@pytest.mark.parametrize("entry", ["example.com", "192.168.1.300", "10.0.0.0/33", "1.2.3.4/x", "::g", "*"])
def test_an_invalid_allow_list_entry_is_a_one_line_error(entry):
    with pytest.raises(ReceiverError) as error:
        parse_allow_list(f"127.0.0.1, {entry}")
    assert str(error.value) == (f"allow-list entry {entry!r} is not an IP address or CIDR range "
                                "(e.g. 192.168.1.20, 192.168.1.0/24 or ::1)")
    receiver = Receiver("127.0.0.1", 0, allow=f"127.0.0.1 {entry}")
    with pytest.raises(ReceiverError, match="allow-list entry"):
        receiver.start()
    assert not receiver.running


def test_senders_not_allowed_are_dropped_before_parsing_and_counted():
    try:
        outsider = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        outsider.bind(("127.0.0.2", 0))
    except OSError:
        pytest.skip("127.0.0.2 is not a loopback address here")
    receiver = Receiver("127.0.0.1", 0, allow="127.0.0.1/32")
    receiver.start()
    try:
        frame = bundle(message("/VMC/Ext/T", 1.0), message("/VMC/Ext/Blend/Apply"))
        for _ in range(3):
            outsider.sendto(frame, ("127.0.0.1", receiver.port))
        outsider.sendto(b"garbage", ("127.0.0.1", receiver.port))
        deadline = time.monotonic() + 5
        while receiver.not_allowed < 4 and time.monotonic() < deadline:
            time.sleep(0.005)
        send(receiver.port, bundle(message("/VMC/Ext/T", 2.0), message("/VMC/Ext/Blend/Apply")))
        frames = wait_for(receiver, 1)
    finally:
        receiver.stop()
        outsider.close()
    assert [f.time for f in frames] == [2.0]
    assert receiver.not_allowed == 4
    assert receiver.stats.datagrams == 1 and receiver.stats.malformed == 0  # never parsed


def test_an_ipv6_host_gets_an_ipv6_socket():
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    receiver = Receiver("::1", 0, allow="::1")
    try:
        receiver.start()
    except ReceiverError as error:
        pytest.skip(f"IPv6 loopback unavailable: {error}")
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
            sock.sendto(bundle(message("/VMC/Ext/T", 3.0), message("/VMC/Ext/Blend/Apply")), ("::1", receiver.port))
        frames = wait_for(receiver, 1)
    finally:
        receiver.stop()
    assert [f.time for f in frames] == [3.0]
    assert frames[0].sender.startswith("[::1]:")


def test_the_receiving_thread_side_imports_without_blender():
    # The socket thread runs receiver.py, vmc_stream.py and landmark_stream.py (and
    # route handlers); Blender data is written only by session.pump on the main
    # thread. These modules must not even be able to reach bpy.
    code = (
        "import sys\n"
        "for name in ('bpy', 'bpy_extras', 'mathutils', 'bmesh'): sys.modules[name] = None\n"
        "import blender_receiver.receiver, blender_receiver.vmc_stream\n"
        "import blender_receiver.landmark_stream, blender_receiver.mapping\n"
    )
    root = Path(__file__).resolve().parents[1]
    result = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
