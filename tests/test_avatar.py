import math
import struct

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from pygltflib import GLTF2, Node, Scene

from bridge.avatar import Avatar, AvatarError, bone_offsets, load_avatar
from bridge.vmc import BONE_POSITIONS

# One head rig in glTF terms: (x, y, z) local translations of neck, head, left eye, right eye,
# for a VRM 1.0 file (the model faces +Z, its left side at +X).
NECK, HEAD, LEFT_EYE, RIGHT_EYE = (0.0, 0.1, -0.01), (0.0, 0.08, 0.005), (0.031, 0.06, 0.07), (-0.031, 0.06, 0.07)
# The same rig in Unity (UniVRM reverses X for VRM 1.0): the left eye at -X, as in bridge.vmc.
UNITY = {"Neck": (0.0, 0.1, -0.01), "Head": (0.0, 0.08, 0.005),
         "LeftEye": (-0.031, 0.06, 0.07), "RightEye": (0.031, 0.06, 0.07)}


def turned(t):
    """A VRM 1.0 translation as a VRM 0.x file holds it (the model faces -Z: turned 180 degrees about Y)."""
    return (-t[0], t[1], -t[2])


def matrix(t):
    """A column-major glTF matrix: a 90-degree turn about Y, then the translation t (column 3)."""
    return [0.0, 0.0, -1.0, 0.0,
            0.0, 1.0, 0.0, 0.0,
            1.0, 0.0, 0.0, 0.0,
            t[0], t[1], t[2], 1.0]


def rig_nodes(neck, head, left_eye, right_eye, *, head_matrix=False):
    """hips(0) > neck(1) > head(2) > eyes(3, 4); the head given by a matrix if asked."""
    head_node = Node(name="head", matrix=matrix(head), children=[3, 4]) if head_matrix else \
        Node(name="head", translation=list(head), children=[3, 4])
    return [
        Node(name="hips", translation=[0.0, 1.0, 0.0], children=[1]),
        Node(name="neck", translation=list(neck), children=[2]),
        head_node,
        Node(name="leftEye", translation=list(left_eye)),
        Node(name="rightEye", translation=list(right_eye)),
    ]


BONE_NODES = {"hips": 0, "neck": 1, "head": 2, "leftEye": 3, "rightEye": 4}


def vrm0_extension(bones=BONE_NODES):
    return {"VRM": {"specVersion": "0.0",
                    "humanoid": {"humanBones": [{"bone": b, "node": i, "useDefaultValues": True}
                                                for b, i in bones.items()]}}}


def vrm1_extension(bones=BONE_NODES):
    return {"VRMC_vrm": {"specVersion": "1.0",
                         "humanoid": {"humanBones": {b: {"node": i} for b, i in bones.items()}}}}


def write_gltf(path, nodes, extensions):
    gltf = GLTF2(scene=0, scenes=[Scene(nodes=[0])], nodes=nodes,
                 extensions=extensions, extensionsUsed=list(extensions))
    assert gltf.save_binary(str(path))
    return path


def vrm0_file(tmp_path, *, bones=BONE_NODES, head_matrix=True, name="avatar0.vrm"):
    nodes = rig_nodes(*map(turned, (NECK, HEAD, LEFT_EYE, RIGHT_EYE)), head_matrix=head_matrix)
    return write_gltf(tmp_path / name, nodes, vrm0_extension(bones))


def vrm1_file(tmp_path, *, bones=BONE_NODES, head_matrix=True, name="avatar1.vrm"):
    nodes = rig_nodes(NECK, HEAD, LEFT_EYE, RIGHT_EYE, head_matrix=head_matrix)
    return write_gltf(tmp_path / name, nodes, vrm1_extension(bones))


def glb(document: str, *, bin_chunk: bytes = b"") -> bytes:
    """A binary glTF holding this JSON text as is (for what pygltflib will not write: NaN, bad types)."""
    body = document.encode() + b" " * (-len(document.encode()) % 4)
    chunks = struct.pack("<I4s", len(body), b"JSON") + body
    if bin_chunk:
        chunks += struct.pack("<I4s", len(bin_chunk), b"BIN\0") + bin_chunk
    return struct.pack("<4sII", b"glTF", 2, 12 + len(chunks)) + chunks


def raw_vrm1(tmp_path, neck_node: str, *, bones='{"neck": {"node": 0}, "head": {"node": 1}}') -> str:
    """A VRM 1.0 file whose node 0 (the neck) is the JSON text neck_node."""
    path = tmp_path / "raw.vrm"
    path.write_bytes(glb('{"asset": {"version": "2.0"}, "nodes": [' + neck_node + ', {"translation": [0, 0.08, 0]}],'
                        '"extensions": {"VRMC_vrm": {"humanoid": {"humanBones": ' + bones + '}}}}'))
    return path


def assert_offsets(offsets, expected):
    assert set(offsets) == set(expected)
    for bone, value in expected.items():
        assert offsets[bone] == pytest.approx(value, abs=1e-12), bone
        assert all(type(v) is float for v in offsets[bone])


# --------------------------------------------------------------------------- reading


@pytest.mark.parametrize("head_matrix", [False, True], ids=["trs", "matrix"])
def test_vrm0_offsets_reverse_z(tmp_path, head_matrix):
    path = vrm0_file(tmp_path, head_matrix=head_matrix)
    avatar = load_avatar(path)
    assert avatar == Avatar(path=path, vrm_version="0", offsets=avatar.offsets)
    # glTF (x, y, z) -> Unity (x, y, -z)
    assert_offsets(avatar.offsets, {b: (x, y, -z) for b, (x, y, z) in
                                    zip(UNITY, map(turned, (NECK, HEAD, LEFT_EYE, RIGHT_EYE)))})


@pytest.mark.parametrize("head_matrix", [False, True], ids=["trs", "matrix"])
def test_vrm1_offsets_reverse_x(tmp_path, head_matrix):
    avatar = load_avatar(vrm1_file(tmp_path, head_matrix=head_matrix))
    assert avatar.vrm_version == "1"
    # glTF (x, y, z) -> Unity (-x, y, z)
    assert_offsets(avatar.offsets, {b: (-x, y, z) for b, (x, y, z) in zip(UNITY, (NECK, HEAD, LEFT_EYE, RIGHT_EYE))})


def test_one_rig_gives_one_unity_pose_in_either_version(tmp_path):
    # The same head saved as VRM 0.x (facing -Z) and as VRM 1.0 (facing +Z) lands in
    # Unity facing +Z, its left eye at -X like bridge.vmc's nominal one.
    assert_offsets(bone_offsets(vrm0_file(tmp_path)), UNITY)
    assert_offsets(bone_offsets(vrm1_file(tmp_path)), UNITY)
    for eye in ("LeftEye", "RightEye"):
        assert math.copysign(1, UNITY[eye][0]) == math.copysign(1, BONE_POSITIONS[eye][0])
        assert UNITY[eye][2] > 0 and BONE_POSITIONS[eye][2] > 0


def test_matrix_translation_is_column_3(tmp_path):
    # Row-major reading would take elements 3, 7, 11 (all 0 here) instead of 12, 13, 14.
    nodes = rig_nodes(NECK, HEAD, LEFT_EYE, RIGHT_EYE)
    nodes[1] = Node(name="neck", matrix=matrix((0.25, 0.5, 0.75)), children=[2])
    offsets = bone_offsets(write_gltf(tmp_path / "m.vrm", nodes, vrm1_extension()))
    assert offsets["Neck"] == pytest.approx((-0.25, 0.5, 0.75))


def test_bone_offsets_is_load_avatar_offsets(tmp_path):
    path = vrm1_file(tmp_path)
    assert bone_offsets(path) == load_avatar(str(path)).offsets


def test_node_without_translation_is_at_its_parent(tmp_path):
    nodes = rig_nodes(NECK, HEAD, LEFT_EYE, RIGHT_EYE)
    nodes[2] = Node(name="head", children=[3, 4])
    assert bone_offsets(write_gltf(tmp_path / "t.vrm", nodes, vrm1_extension()))["Head"] == (0.0, 0.0, 0.0)


@pytest.mark.parametrize("make", [vrm0_file, vrm1_file], ids=["vrm0", "vrm1"])
def test_missing_eyes_are_left_out(tmp_path, make):
    bones = {b: i for b, i in BONE_NODES.items() if b != "rightEye"}
    assert set(bone_offsets(make(tmp_path, bones=bones))) == {"Neck", "Head", "LeftEye"}
    bones.pop("leftEye")
    assert set(bone_offsets(make(tmp_path, bones=bones))) == {"Neck", "Head"}


def test_vrm1_is_read_when_both_extensions_are_there(tmp_path):
    nodes = rig_nodes(NECK, HEAD, LEFT_EYE, RIGHT_EYE)
    avatar = load_avatar(write_gltf(tmp_path / "both.vrm", nodes, {**vrm0_extension(), **vrm1_extension()}))
    assert avatar.vrm_version == "1"
    assert_offsets(avatar.offsets, UNITY)


# --------------------------------------------------------------------------- errors


def error(path) -> str:
    with pytest.raises(AvatarError) as info:
        load_avatar(path)
    message = str(info.value)
    assert "\n" not in message
    assert str(path) in message
    return message


@pytest.mark.parametrize("make", [vrm0_file, vrm1_file], ids=["vrm0", "vrm1"])
@pytest.mark.parametrize("bone", ["neck", "head"])
def test_missing_required_bone(tmp_path, make, bone):
    bones = {b: i for b, i in BONE_NODES.items() if b != bone}
    assert f"no '{bone}' bone" in error(make(tmp_path, bones=bones))


def test_plain_glb_without_vrm(tmp_path):
    path = write_gltf(tmp_path / "plain.glb", rig_nodes(NECK, HEAD, LEFT_EYE, RIGHT_EYE), {})
    assert error(path).endswith("is a glTF file without VRM humanoid data")


@pytest.mark.parametrize("extension", [
    {"VRM": {"meta": {}}},
    {"VRM": {"humanoid": {"humanBones": {"neck": {"node": 1}}}}},  # 1.0's layout under 0.x's name
    {"VRMC_vrm": {"humanoid": {"humanBones": [{"bone": "neck", "node": 1}]}}},
    {"VRMC_vrm": "humanoid"},
], ids=["no-humanoid", "vrm0-dict", "vrm1-list", "not-an-object"])
def test_vrm_extension_without_humanoid(tmp_path, extension):
    path = write_gltf(tmp_path / "x.vrm", rig_nodes(NECK, HEAD, LEFT_EYE, RIGHT_EYE), extension)
    assert "without VRM humanoid data" in error(path)


def test_missing_file(tmp_path):
    assert error(tmp_path / "nowhere.vrm").endswith("no such file")


def test_folder(tmp_path):
    assert error(tmp_path).endswith("it is a folder")


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04 a zip file", b'{"asset": {"version": "2.0"}}', b"glT"],
                         ids=["empty", "zip", "gltf-json", "short"])
def test_not_binary_gltf(tmp_path, content):
    path = tmp_path / "x.vrm"
    path.write_bytes(content)
    assert "is not a VRM or binary glTF file" in error(path)


@pytest.mark.parametrize("content", [
    struct.pack("<4sII", b"glTF", 2, 44) + b"\xff" * 32,
    glb("not json"),
    glb("[1, 2]"),
    glb('{"nodes": [1]}'),
    struct.pack("<4sII", b"glTF", 2, 12),  # no chunks at all
    struct.pack("<4sII", b"glTF", 2, 26) + glb("{}")[12:] + b"\0\0",  # 2 bytes of a next chunk header
], ids=["garbage", "not-json", "json-list", "node-not-object", "no-chunks", "half-chunk-header"])
def test_damaged_gltf(tmp_path, content):
    path = tmp_path / "x.vrm"
    path.write_bytes(content)
    assert "is a damaged glTF file (" in error(path)


def test_cut_short(tmp_path):
    data = vrm1_file(tmp_path).read_bytes()
    path = tmp_path / "cut.vrm"
    path.write_bytes(data[:-1])
    assert error(path).endswith(f"is cut short ({len(data) - 1} of its {len(data)} bytes)")
    path.write_bytes(b"glTF" + b"\xff" * 40)
    assert error(path).endswith("is cut short (44 of its 4294967295 bytes)")


@pytest.mark.parametrize("index", ["5", "-1", "true", '"1"', "1.0", "null"])
def test_bad_node_index(tmp_path, index):
    bones = '{"neck": {"node": ' + index + '}, "head": {"node": 1}}'
    path = raw_vrm1(tmp_path, '{"translation": [0, 0.1, 0]}', bones=bones)
    assert "'neck' bone's node index" in error(path)


def test_bad_node_index_vrm0(tmp_path):
    assert "'leftEye' bone's node index 9" in error(vrm0_file(tmp_path, bones={**BONE_NODES, "leftEye": 9}))


@pytest.mark.parametrize("node", [
    '{"translation": [NaN, 0.1, 0]}',
    '{"translation": [0, 1e999, 0]}',
    '{"matrix": [1,0,0,0, 0,1,0,0, 0,0,1,0, 0,0,-Infinity,1]}',
    '{"matrix": [NaN,0,0,0, 0,1,0,0, 0,0,1,0, 0,0.1,0,1]}',  # any non-finite element
])
def test_non_finite(tmp_path, node):
    assert "non-finite" in error(raw_vrm1(tmp_path, node))


@pytest.mark.parametrize("node", ['{"translation": [0, 0.1]}', '{"matrix": [1, 0, 0]}', '{"translation": "up"}'])
def test_malformed_transform(tmp_path, node):
    assert "malformed" in error(raw_vrm1(tmp_path, node))


def test_null_node(tmp_path):
    assert "node 0 (the 'neck' bone) is not a glTF node" in error(raw_vrm1(tmp_path, "null"))


def test_odd_vrm0_bone_entries_are_skipped(tmp_path):
    path = tmp_path / "odd.vrm"
    path.write_bytes(glb('{"asset": {"version": "2.0"}, "nodes": [{"translation": [0, 0.1, 0.02]}, {}],'
                         '"extensions": {"VRM": {"humanoid": {"humanBones": [7, {"bone": ["neck"]}, {"node": 1},'
                         '{"bone": "neck", "node": 0}, {"bone": "head", "node": 1}, {"bone": "neck", "node": 1}]}}}}'))
    # The first entry of a bone counts, as a list is read in order.
    assert bone_offsets(path) == {"Neck": (0.0, 0.1, -0.02), "Head": (0.0, 0.0, 0.0)}


def test_every_truncation_is_an_avatar_error(tmp_path):
    data = vrm0_file(tmp_path).read_bytes()
    path = tmp_path / "cut.vrm"
    for size in range(len(data)):
        path.write_bytes(data[:size])
        with pytest.raises(AvatarError):
            load_avatar(path)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_corrupted_bytes_give_an_avatar_or_an_avatar_error(tmp_path, data):
    original = bytearray(vrm1_file(tmp_path).read_bytes())
    for _ in range(data.draw(st.integers(1, 4))):
        original[data.draw(st.integers(0, len(original) - 1))] = data.draw(st.integers(0, 255))
    path = tmp_path / "corrupt.vrm"
    path.write_bytes(bytes(original))
    try:
        avatar = load_avatar(path)
    except AvatarError as exc:
        assert "\n" not in str(exc)
    else:
        assert {"Neck", "Head"} <= set(avatar.offsets)
        assert all(math.isfinite(v) for t in avatar.offsets.values() for v in t)



def test_the_tracker_sends_the_avatars_offsets(tmp_path):
    """--avatar end to end: the console script, a VRM 0.x file, a receiver."""
    import subprocess

    from support import Receiver, tracker_command
    from test_end_to_end import frames_from
    receiver = Receiver()
    try:
        proc = subprocess.run([*tracker_command(), "--demo", "--fast", "--frames", "3", "--quiet",
                               "--control-port", "0", "--port", str(receiver.port),
                               "--avatar", str(vrm0_file(tmp_path))],
                              capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    finally:
        receiver.close()
    assert proc.returncode == 0, proc.stderr
    frames = frames_from(receiver.datagrams)
    assert len(frames) == 3
    for frame in frames:
        sent = {bone: values[:3] for bone, values in frame["bones"].items()}
        assert set(sent) == set(UNITY)
        for bone, value in UNITY.items():
            assert sent[bone] == pytest.approx(value, abs=1e-7), bone   # float32 on the wire
