"""VMC-protocol encoding: a FaceState in, the frame's OSC datagrams out. Never touches sockets.

Fast path: every message's bytes are fixed except its trailing float arguments
(names, type tags and the frame's layout never change). So the constructor has
python-osc build the whole frame once with placeholder floats, remembers where
the changing floats sit, and encode() only packs those floats into a copy of
that template and cuts it into datagrams.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pythonosc import osc_bundle_builder
from pythonosc.osc_message import OscMessage
from pythonosc.osc_message_builder import OscMessageBuilder
from pythonosc.parsing import osc_types

from .state import (
    ARKIT_NAMES, VRM0_NAMES, VRM1_NAMES, FaceState, vrm1_values, angles_to_quat, pascal_case, quat_conjugate,
    quat_multiply, slerp_from_identity,
)

# /VMC/Ext/OK arguments: loaded, calibration state, calibration mode (0 = normal), tracking.
_LOADED, _NORMAL_MODE = 1, 0
CALIBRATION_STATES = (0, 1, 2, 3)  # uncalibrated, waiting, calibrating, calibrated
CALIBRATED = 3
# Share of the head rotation carried by the neck; the head bone carries the rest.
NECK_SHARE = 0.4
# Local bone offsets in metres, Unity frame (+X = character's right, +Z = forward),
# sent in every /VMC/Ext/Bone/Pos. EVMC4U and the VMC samples set localPosition from
# them, so without --avatar these stand in for a typical avatar's.
BONE_POSITIONS = {
    "Neck": (0.0, 0.1, 0.0),
    "Head": (0.0, 0.08, 0.0),
    "LeftEye": (-0.03, 0.06, 0.08),
    "RightEye": (0.03, 0.06, 0.08),
}
BONES = ("Neck", "Head", "LeftEye", "RightEye")  # bone_rotations() rows follow this order
ROOT_POSE = ("root", 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0)
_IDENTITY = np.array([0.0, 0.0, 0.0, 1.0])
_QUAT = 4     # floats per quaternion
_FLOAT = 4    # bytes per OSC float32
_BUNDLE_ITEM_SIZE = 4  # the int32 size prefix of each bundle element
# "#bundle\0" + the "immediately" timetag, as python-osc writes it.
BUNDLE_HEADER = osc_bundle_builder.OscBundleBuilder(osc_bundle_builder.IMMEDIATELY).build().dgram
# Bytes per datagram: what the VMC reference sender keeps to; unfragmented on any
# Ethernet path, IPv4 or IPv6.
DEFAULT_MAX_PACKET = 1200


@dataclass(frozen=True)
class VmcOptions:
    arkit_names: str = "pascal"   # "pascal" (EyeBlinkLeft) or "camel" (eyeBlinkLeft)
    bundle: bool = True            # False: every message is its own datagram
    max_packet: int = DEFAULT_MAX_PACKET  # bytes per datagram (bundles split to fit)
    vrm_names: str = "0"           # "0": VRM 0.x presets (A, Blink_L ...); "1": VRM 1.0 (aa, blinkLeft ...)
    root: bool = False             # send /VMC/Ext/Root/Pos (receivers then pin the model at the origin)
    bone_positions: tuple = ()     # (bone, (x, y, z)) pairs replacing BONE_POSITIONS' (an avatar's own)


# Subject frame -> Unity frame is the reflection X -> -X; for a quaternion (x, y, z, w) -> (x, -y, -z, w).
_TO_UNITY = np.array([1.0, -1.0, -1.0, 1.0])


def to_unity_quats(quats: np.ndarray) -> np.ndarray:
    """Rows of subject-frame quaternions -> Unity's, always finite and unit length."""
    q = np.asarray(quats, dtype=float) * _TO_UNITY
    norm = np.sqrt(np.einsum("ij,ij->i", q, q))[:, None]
    ok = np.isfinite(norm) & (norm > 1e-9)
    return np.where(ok, q / np.where(ok, norm, 1.0), _IDENTITY)


def bone_rotations(state: FaceState) -> np.ndarray:
    """Local Unity rotations (x, y, z, w), one row per bone in BONES order, for a sanitized state."""
    return bone_rotations_from(state.head_angles, state.eye_angles)


def bone_rotations_from(head_angles, eye_angles) -> np.ndarray:
    """bone_rotations() from the angles alone: head (yaw, pitch, roll), eyes ((yaw, pitch) left, right)."""
    head = angles_to_quat(*head_angles)
    neck = slerp_from_identity(head, NECK_SHARE)
    # Neck * Head-local == the measured head rotation.
    head_local = quat_multiply(quat_conjugate(neck), head)
    (left_yaw, left_pitch), (right_yaw, right_pitch) = np.reshape(eye_angles, (2, 2))
    left_eye = angles_to_quat(left_yaw, left_pitch)
    right_eye = angles_to_quat(right_yaw, right_pitch)
    return to_unity_quats([neck, head_local, left_eye, right_eye])


def _build(address: str, args: tuple) -> OscMessage:
    builder = OscMessageBuilder(address)
    for arg in args:
        kind = {str: "s", int: "i", float: "f"}[type(arg)]
        builder.add_arg(arg, kind)
    return builder.build()


def split_datagrams(sizes: list[int], *, bundle: bool, max_packet: int) -> list[list[int]]:
    """Message indices per datagram, packed greedily in order (bundles), or one each.
    Raises ValueError naming the size needed when a message can't fit."""
    if not sizes:
        return []
    if not bundle:
        if max(sizes) > max_packet:
            raise ValueError(f"the largest message needs {max(sizes)} bytes")
        return [[i] for i in range(len(sizes))]
    need = len(BUNDLE_HEADER) + _BUNDLE_ITEM_SIZE + max(sizes)
    if need > max_packet:
        raise ValueError(f"a bundle of the largest message needs {need} bytes")
    groups, used = [], max_packet
    for i, size in enumerate(sizes):
        if used + _BUNDLE_ITEM_SIZE + size > max_packet:
            groups.append([])
            used = len(BUNDLE_HEADER)
        groups[-1].append(i)
        used += _BUNDLE_ITEM_SIZE + size
    return groups



class VmcEncoder:
    """`blend_names` replaces the default clip list (the VRM names, then the ARKit names);
    such an encoder is fed with encode_floats(), since the values are the caller's
    (bridge.outputs: presets)."""

    def __init__(self, options: VmcOptions = VmcOptions(), *, blend_names: tuple[str, ...] | None = None):
        if options.arkit_names not in ("pascal", "camel"):
            raise ValueError(f"arkit_names must be 'pascal' or 'camel', not {options.arkit_names!r}")
        self.options = options
        if options.vrm_names not in ("0", "1"):
            raise ValueError(f"vrm_names must be '0' or '1', not {options.vrm_names!r}")
        arkit = ARKIT_NAMES if options.arkit_names == "camel" else tuple(map(pascal_case, ARKIT_NAMES))
        self._custom_names = blend_names is not None
        self.blend_names = tuple(blend_names) if self._custom_names else \
            (VRM0_NAMES if options.vrm_names == "0" else VRM1_NAMES) + arkit

        # Each message: (address, constant leading args, number of changing trailing floats).
        positions = {**BONE_POSITIONS, **dict(options.bone_positions)}
        if set(positions) != set(BONES):
            raise ValueError(f"bone_positions may name only {', '.join(BONES)}")
        bone_msgs = [("/VMC/Ext/Bone/Pos", (b, *map(float, positions[b])), _QUAT) for b in BONES]
        self._layout = [
            ("/VMC/Ext/OK", (_LOADED,), 0),  # + calibration state, mode and tracking, see _messages
            ("/VMC/Ext/T", (), 1),
            *([("/VMC/Ext/Root/Pos", ROOT_POSE, 0)] if options.root else []),
            *bone_msgs,
            *[("/VMC/Ext/Blend/Val", (name,), 1) for name in self.blend_names],
            ("/VMC/Ext/Blend/Apply", (), 0),
        ]
        self.float_count = sum(n for _, _, n in self._layout)
        self._placeholder = np.zeros(self.float_count)
        messages = self._messages(self._placeholder, tracking=True, calibration_state=CALIBRATED)
        self._groups = self._split([m.size for m in messages])
        template, self._spans, float_offsets = self._frame(messages)
        # One template per (tracking, calibration state): they differ only in OK's ints.
        self._templates = {(True, CALIBRATED): template}
        # Byte index of every changing float byte, in float order.
        self._float_index = (np.asarray(float_offsets)[:, None] + np.arange(_FLOAT)).ravel()

    # ---- the slow, readable description of a frame (python-osc builds it) ----

    def _messages(self, floats: np.ndarray, *, tracking: bool, calibration_state: int) -> list[OscMessage]:
        """The frame's messages, given the changing floats in layout order (see frame_floats)."""
        out, i = [], 0
        for address, args, n in self._layout:
            if address == "/VMC/Ext/OK":
                args = (*args, calibration_state, _NORMAL_MODE, int(bool(tracking)))
            out.append(_build(address, (*args, *map(float, floats[i:i + n]))))
            i += n
        return out

    def frame_floats(self, state: FaceState, time: float) -> np.ndarray:
        """The frame's changing floats in layout order: time, bone quaternions, blend values."""
        if self._custom_names:
            raise TypeError("an encoder with its own blend_names takes its values through encode_floats()")
        s = state.sanitized()
        return np.concatenate([
            [time if np.isfinite(time) else 0.0],
            bone_rotations(s).ravel(),
            s.vrm if self.options.vrm_names == "0" else vrm1_values(s.vrm, s.blendshapes),
            s.blendshapes,
        ])

    # ---- fast path ----

    def encode(self, state: FaceState, *, time: float, tracking: bool,
               calibration_state: int = CALIBRATED) -> list[bytes]:
        """`calibration_state` goes out in /VMC/Ext/OK: 2 while calibrating, 3 after."""
        return self.encode_floats(self.frame_floats(state, time), tracking=tracking,
                                  calibration_state=calibration_state)

    def encode_floats(self, floats: np.ndarray, *, tracking: bool,
                      calibration_state: int = CALIBRATED) -> list[bytes]:
        """The datagrams for the frame's changing floats in layout order (see frame_floats):
        float_count finite values, time first, then the bone quaternions, then blend_names' values."""
        frame = self._template(bool(tracking), calibration_state).copy()
        frame[self._float_index] = np.asarray(floats, dtype=float).astype(">f4").view(np.uint8)
        data = frame.tobytes()
        return [data[start:end] for start, end in self._spans]

    def _template(self, tracking: bool, calibration_state: int) -> np.ndarray:
        key = (tracking, calibration_state)
        if key not in self._templates:
            if calibration_state not in CALIBRATION_STATES:
                raise ValueError(f"calibration_state must be one of {CALIBRATION_STATES}, not {calibration_state!r}")
            messages = self._messages(self._placeholder, tracking=tracking, calibration_state=calibration_state)
            self._templates[key] = self._frame(messages)[0]
        return self._templates[key]

    # ---- layout, done once ----

    def _split(self, sizes: list[int]) -> list[list[int]]:
        try:
            return split_datagrams(sizes, bundle=self.options.bundle, max_packet=self.options.max_packet)
        except ValueError as error:
            raise ValueError(f"max_packet {self.options.max_packet} is too small: {error}") from None

    def _frame(self, messages: list[OscMessage]):
        """All datagrams concatenated as a uint8 template, their (start, end) spans,
        and the byte offsets of the changing floats."""
        chunks, spans, float_offsets, pos = [], [], [], 0
        for group in self._groups:
            start = pos
            if self.options.bundle:
                chunks.append(BUNDLE_HEADER)
                pos += len(BUNDLE_HEADER)
            for i in group:
                msg = messages[i]
                if self.options.bundle:
                    chunks.append(osc_types.write_int(msg.size))
                    pos += _BUNDLE_ITEM_SIZE
                chunks.append(msg.dgram)
                pos += msg.size
                # The changing floats are each message's last arguments.
                n = self._layout[i][2]
                float_offsets.extend(pos - _FLOAT * (n - k) for k in range(n))
            spans.append((start, pos))
        template = np.frombuffer(b"".join(chunks), dtype=np.uint8).copy()
        return template, spans, float_offsets
