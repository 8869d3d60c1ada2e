"""Output presets: what goes to a receiver, in which dialect. Never touches sockets.

A preset is a TOML file (the shipped ones are in the repository's presets/ folder,
installed as bridge/presets). Loading one validates every key and fails with a
PresetError naming the file and the key. A loaded Preset builds an encoder:

    encoder = preset.encoder()
    datagrams = encoder.encode(state, time=t, tracking=True, calibration_state=3,
                               landmarks=None, image_size=None, frame_index=None)

Three stages, each cheap:

* channels (bridge.outputs.channels): every value a preset can send is a *channel*
  of the catalogue (the ARKit shapes, the VRM presets, head and eye angles,
  VRCFaceTracking's Unified Expressions from bridge.outputs.unified, VRChat's eye
  values). Each is a fixed linear combination of the sanitized FaceState vector and
  a few computed extras, so a preset's channels are one gather plus one small matrix
  product.
* map (ChannelMap): per channel gain, offset, curve and clamp, vectorised; the
  identity parts are skipped.
* encode: VMC through bridge.vmc.VmcEncoder; plain OSC through OscFrame
  (bridge.outputs.framing), which, like VmcEncoder, has python-osc build every
  message once and then only patches the changing 4-byte arguments; the raw
  landmarks through LandmarkChunks.

A target's address family may lower a preset's datagram limit (IPv6: 1452, see
bridge.send), and an avatar's own bone offsets replace the nominal ones
(bridge.avatar): both are given to Preset.encoder().
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from ..state import VRM1_FROM_VRM0, FaceState
from ..vmc import CALIBRATED, DEFAULT_MAX_PACKET, VmcEncoder, VmcOptions, bone_rotations_from
from .channels import (
    _BONE_CHANNELS, _LOOKUP, CHANNELS, GROUPS, SPECIAL_ARGS, BASE_SIZE, Channel, ChannelMap, ChannelSettings, Curve,
    base_vector, channel,
)
from .framing import LandmarkChunks, OscFrame, split_datagrams

__all__ = [
    "BASE_SIZE", "CHANNELS", "GROUPS", "SPECIAL_ARGS", "Channel", "ChannelMap", "ChannelSettings", "Curve",
    "LandmarkChunks", "OscFrame", "Preset", "PresetError", "base_vector", "channel", "load_preset",
    "preset_from_dict", "presets_dir", "shipped_presets", "split_datagrams",
]

DEFAULT_PRESET = "vmc"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_VMC_PORT = 39539
# 1472: the most an IPv4 datagram carries unfragmented on Ethernet (IPv6: 1452, see
# bridge.send.UNFRAGMENTED; a target's family lowers the limit, never raises it).
MAX_PACKET_RANGE = (128, 1472)
MAX_NAME = 63                     # characters in a VMC name (what receivers accept)


class PresetError(Exception):
    """A preset that can't be used; the message is one line naming the file and key."""


# --------------------------------------------------------------------------- presets

@dataclass(frozen=True)
class OscMessageSpec:
    address: str
    args: tuple[str, ...]     # channel names (f) or SPECIAL_ARGS


@dataclass(frozen=True)
class Preset:
    name: str
    source: str                  # the file, as errors name it
    description: str
    protocol: str                # "vmc" | "osc"
    host: str
    port: int
    bundle: bool
    max_packet: int
    root: bool                   # vmc: send /VMC/Ext/Root/Pos
    names: str                   # "pascal" | "camel"
    prefix: str
    channels: tuple[Channel, ...]          # sent as values: Blend/Val or the `blend` address
    output_names: tuple[str, ...]          # their names on the wire (style + renames)
    settings: dict = field(default_factory=dict)   # Channel -> ChannelSettings (non-default only)
    blend: str | None = None               # osc: address template with {name}
    messages: tuple[OscMessageSpec, ...] = ()
    landmarks: tuple[str, int] | None = None   # osc: (address, chunk)

    @property
    def used_channels(self) -> tuple[Channel, ...]:
        """Every channel the encoder computes: the sent ones, then message arguments and bones."""
        out = list(self.channels)
        extra = [channel(n) for n in _BONE_CHANNELS] if self.protocol == "vmc" else \
            [channel(a) for m in self.messages for a in m.args if a not in SPECIAL_ARGS]
        for c in extra:
            if c not in out:
                out.append(c)
        return tuple(out)

    def encoder(self, *, max_packet: int | None = None, bone_positions: dict | None = None):
        """max_packet: a lower datagram limit than the preset's (a target's address
        family); bone_positions: an avatar's own bone offsets (VMC, see bridge.avatar)."""
        preset = self if max_packet is None or max_packet >= self.max_packet else \
            dataclasses.replace(self, max_packet=max_packet)
        if self.protocol == "vmc":
            return VmcPresetEncoder(preset, bone_positions or {})
        return OscPresetEncoder(preset)

    def blend_address(self, name: str) -> str:
        return self.blend.replace("{prefix}", self.prefix).replace("{name}", name)


class _PresetEncoder:
    def __init__(self, preset: Preset):
        self.preset = preset
        used = list(preset.used_channels)
        self._map = ChannelMap(used, [preset.settings.get(c, ChannelSettings()) for c in used])
        self._index = {c.name: i for i, c in enumerate(used)}
        self.wants_landmarks = False

    def channel_values(self, state: FaceState) -> np.ndarray:
        """The used channels' mapped values (preset.used_channels order)."""
        base = base_vector(state, extras=self._map.needs_extras, unified=self._map.needs_unified)
        return self._map(base)


class VmcPresetEncoder(_PresetEncoder):
    """The VMC frame (OK, T, Root if asked, four bones, Blend/Val per channel, Apply) of bridge.vmc."""

    def __init__(self, preset: Preset, bone_positions: dict):
        super().__init__(preset)
        options = VmcOptions(bundle=preset.bundle, max_packet=preset.max_packet, root=preset.root,
                             bone_positions=tuple(bone_positions.items()))
        try:
            self._vmc = VmcEncoder(options, blend_names=preset.output_names)
        except ValueError as error:
            raise PresetError(f"{preset.source}: key 'max_packet' is too small: {error}") from None
        self._bones = np.array([self._index[n] for n in _BONE_CHANNELS])
        self._sent = np.arange(len(preset.channels))

    def encode(self, state: FaceState, *, time: float, tracking: bool, calibration_state: int = CALIBRATED,
               landmarks=None, image_size=None, frame_index=None) -> list[bytes]:
        v = self.channel_values(state)
        angles = v[self._bones]
        floats = np.concatenate([[time if math.isfinite(time) else 0.0],
                                 bone_rotations_from(angles[:3], angles[3:].reshape(2, 2)).ravel(),
                                 v[self._sent]])
        return self._vmc.encode_floats(floats, tracking=tracking, calibration_state=calibration_state)


class OscPresetEncoder(_PresetEncoder):
    """Plain OSC: the extra messages in preset order, then one `blend` message per channel,
    then (with a face) the landmark chunks."""

    def __init__(self, preset: Preset):
        super().__init__(preset)
        layout, f_src, i_src = [], [], []
        time_slot = len(self._index)              # floats are gathered from [values..., time]
        for m in preset.messages:
            tags = "".join(SPECIAL_ARGS.get(a, "f") for a in m.args)
            layout.append((m.address, tags))
            for a in m.args:
                if a == "time":
                    f_src.append(time_slot)
                elif a == "tracking":
                    pass                                  # in the type tag, see below
                elif a in SPECIAL_ARGS:
                    i_src.append(("found", "calibration").index(a))
                else:
                    f_src.append(self._index[channel(a).name])
        if preset.blend is not None:
            for i, name in enumerate(preset.output_names):
                layout.append((preset.blend_address(name), "f"))
                f_src.append(i)
        try:
            # One frame per tracking state: they differ only in the bools' type tags.
            self._frames_by_tracking = {
                True: OscFrame(layout, bundle=preset.bundle, max_packet=preset.max_packet),
                False: OscFrame([(a, tags.replace("T", "F")) for a, tags in layout], bundle=preset.bundle,
                                max_packet=preset.max_packet),
            }
        except ValueError as error:
            raise PresetError(f"{preset.source}: key 'max_packet' is too small: {error}") from None
        self._frame = self._frames_by_tracking[True]
        self._f_src = np.array(f_src, dtype=np.intp)
        self._i_src = np.array(i_src, dtype=np.intp)
        self._landmarks = LandmarkChunks(*preset.landmarks) if preset.landmarks else None
        if self._landmarks is not None:
            need = self._landmarks.message_size(self._landmarks.chunk)
            if need > preset.max_packet:   # checked on load, but a target's family may lower the limit
                raise PresetError(f"{preset.source}: key 'osc.landmarks.chunk' is too large for this target: "
                                  f"{self._landmarks.chunk} landmarks need {need} bytes, more than {preset.max_packet}")
        self.wants_landmarks = self._landmarks is not None
        self._frames = 0

    def encode(self, state: FaceState, *, time: float, tracking: bool, calibration_state: int = CALIBRATED,
               landmarks=None, image_size=None, frame_index=None) -> list[bytes]:
        out = []
        if self._frame.spans:
            floats = np.append(self.channel_values(state), time if math.isfinite(time) else 0.0)[self._f_src]
            ints = np.array([1 if tracking else 0, calibration_state])[self._i_src]
            out = self._frames_by_tracking[bool(tracking)].pack(floats, ints)
        if self._landmarks is not None and landmarks is not None:
            index = self._frames if frame_index is None else frame_index
            out += self._landmarks.encode(landmarks, image_size, frame_index=index, time=time)
        self._frames += 1
        return out


# --------------------------------------------------------------------------- loading

_TOP_KEYS = ("description", "protocol", "host", "port", "bundle", "max_packet", "root", "names", "prefix",
             "channels", "renames", "osc")
_CHANNEL_KEYS = ("include", "exclude", "defaults", "gain", "offset", "curve", "clamp")
_SETTING_KEYS = ("gain", "offset", "curve", "clamp")
_OSC_KEYS = ("blend", "messages", "landmarks")
_ADDRESS_FORBIDDEN = set(" #*,?[]{}")
GAIN_LIMIT = 1000.0
GAMMA_RANGE = (0.05, 20.0)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


class _Checker:
    """Checked access to a parsed preset; every error names the file and the dotted key."""

    def __init__(self, source: str):
        self.source = source

    def fail(self, message: str):
        raise PresetError(f"{self.source}: {message}")

    def bad(self, key: str, expected: str, value):
        self.fail(f"key '{key}' must be {expected}, got {_show(value)}")

    def table(self, data, key: str, allowed: tuple[str, ...]) -> dict:
        if not isinstance(data, dict):
            self.bad(key, "a table", data)
        for k in data:
            if k not in allowed:
                where = f"{key}.{k}" if key else k
                self.fail(f"unknown key '{where}' (expected one of: {', '.join(allowed)})")
        return data

    def string(self, value, key: str, *, empty: bool = False) -> str:
        if not isinstance(value, str) or (not empty and not value.strip()):
            self.bad(key, "a string" if empty else "a non-empty string", value)
        return value

    def choice(self, value, key: str, options: tuple[str, ...]) -> str:
        if value not in options:
            self.bad(key, " or ".join(f'"{o}"' for o in options), value)
        return value

    def integer(self, value, key: str, low: int, high: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            self.bad(key, "a whole number", value)
        if not low <= value <= high:
            self.fail(f"key '{key}' must be between {low} and {high}, got {value}")
        return value

    def number(self, value, key: str, low: float = -math.inf, high: float = math.inf) -> float:
        if not _is_number(value):
            self.bad(key, "a number", value)
        if not low <= value <= high:
            self.fail(f"key '{key}' must be between {low:g} and {high:g}, got {value:g}")
        return float(value)

    def boolean(self, value, key: str) -> bool:
        if not isinstance(value, bool):
            self.bad(key, "true or false", value)
        return value

    def strings(self, value, key: str) -> list[str]:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.bad(key, "a list of strings", value)
        return value

    def address(self, value: str, key: str) -> str:
        if not value.startswith("/") or not value.isascii() or not value.isprintable() \
                or _ADDRESS_FORBIDDEN & set(value) or "//" in value:
            self.fail(f"key '{key}' gives the OSC address {value!r}: an address starts with '/' and has "
                      f"printable ASCII without spaces, '//' or any of #*,?[]{{}}")
        return value

    def channel(self, value: str, key: str) -> Channel:
        if value not in _LOOKUP:
            hint = _suggest(value)
            self.fail(f"key '{key}' names an unknown channel {value!r}"
                      + (f" (did you mean {hint!r}?)" if hint else " (see `facemocap-osc presets` and the README)"))
        return _LOOKUP[value]

    def curve(self, value, key: str) -> Curve:
        if value in ("linear", "smoothstep"):
            return Curve(value)
        if isinstance(value, dict) and set(value) == {"gamma"}:
            return Curve("gamma", self.number(value["gamma"], f"{key}.gamma", *GAMMA_RANGE))
        self.bad(key, '"linear", "smoothstep" or { gamma = NUMBER }', value)

    def clamp(self, value, key: str) -> tuple[float, float]:
        if not (isinstance(value, list) and len(value) == 2 and all(_is_number(v) for v in value)):
            self.bad(key, "[low, high] (two numbers)", value)
        low, high = map(float, value)
        if not low < high:
            self.fail(f"key '{key}' must have low < high, got [{low:g}, {high:g}]")
        return low, high


def _show(value) -> str:
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, bool):
        return "true" if value else "false"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _suggest(name: str) -> str | None:
    import difflib
    found = difflib.get_close_matches(name, list(_LOOKUP), n=1, cutoff=0.75)
    return found[0] if found else None


def _dotted(*parts: str) -> str:
    # A key with characters TOML can't write bare (v2/JawOpen) is shown quoted, as in the file.
    return ".".join(p if p.replace("_", "").replace("-", "").isalnum() else f'"{p}"' for p in parts)


def preset_from_dict(data, *, name: str, source: str, overrides: dict | None = None) -> Preset:
    """Validate a parsed preset. overrides: {"bundle": bool, "names": style, "vrm_names": "0"|"1"},
    the command line's --no-bundle, --arkit-names and --vrm-names (the last two: VMC presets only)."""
    c = _Checker(source)
    data = dict(c.table(data, "", _TOP_KEYS))
    description = c.string(data.get("description", ""), "description") if "description" in data \
        else c.fail("missing key 'description'")
    protocol = c.choice(data.get("protocol"), "protocol", ("vmc", "osc")) if "protocol" in data \
        else c.fail("missing key 'protocol' (\"vmc\" or \"osc\")")
    host = c.string(data.get("host", DEFAULT_HOST), "host")
    if "port" in data:
        port = c.integer(data["port"], "port", 1, 65535)
    elif protocol == "vmc":
        port = DEFAULT_VMC_PORT
    else:
        c.fail("missing key 'port' (the receiver's UDP port)")
    overrides = overrides or {}
    bundle = c.boolean(data.get("bundle", True), "bundle")
    if "bundle" in overrides:
        bundle = overrides["bundle"]
    max_packet = c.integer(data.get("max_packet", DEFAULT_MAX_PACKET), "max_packet", *MAX_PACKET_RANGE)
    root = c.boolean(data.get("root", False), "root")
    if protocol == "osc" and "root" in data:
        c.fail("key 'root' is only for protocol = \"vmc\"")
    names = c.choice(data.get("names", "pascal"), "names", ("pascal", "camel"))
    if protocol == "vmc" and "names" in overrides:
        names = overrides["names"]
    prefix = c.string(data.get("prefix", ""), "prefix", empty=True)
    if protocol == "vmc" and "prefix" in data:
        c.fail("key 'prefix' is only for protocol = \"osc\"")
    if protocol == "vmc" and "osc" in data:
        c.fail("key 'osc' is only for protocol = \"osc\"")

    # -- which channels are sent
    ch = c.table(data.get("channels", {}), "channels", _CHANNEL_KEYS)
    include = c.strings(ch.get("include", []), "channels.include")
    if protocol == "vmc" and overrides.get("vrm_names") in ("0", "1"):
        include = [_vrm_named(entry, overrides["vrm_names"]) for entry in include]
    exclude = c.strings(ch.get("exclude", []), "channels.exclude")

    def expand(entry: str, key: str) -> tuple[Channel, ...]:
        if entry in GROUPS:
            return GROUPS[entry]
        if entry not in _LOOKUP:
            hint = _suggest(entry)
            c.fail(f"key '{key}' names an unknown channel or group {entry!r}"
                   + (f" (did you mean {hint!r}?)" if hint else f" (groups: {', '.join(GROUPS)})"))
        return (_LOOKUP[entry],)

    sent: list[Channel] = []
    for i, entry in enumerate(include):
        for chan in expand(entry, f"channels.include[{i}]"):
            if chan not in sent:
                sent.append(chan)
    dropped = {chan for i, entry in enumerate(exclude) for chan in expand(entry, f"channels.exclude[{i}]")}
    sent = [chan for chan in sent if chan not in dropped]

    # -- osc addresses
    blend, messages, landmarks = None, (), None
    if protocol == "osc":
        osc = c.table(data.get("osc", {}), "osc", _OSC_KEYS)
        if "blend" in osc:
            blend = c.string(osc["blend"], "osc.blend")
            if "{name}" not in blend:
                c.fail("key 'osc.blend' must contain {name}, where each channel's name goes")
            c.address(blend.replace("{prefix}", prefix).replace("{name}", "x"), "osc.blend")
        elif sent:
            c.fail("key 'channels.include' lists channels but there is no 'osc.blend' address to send them to")
        raw = osc.get("messages", [])
        if not isinstance(raw, list):
            c.bad("osc.messages", "an array of tables ([[osc.messages]])", raw)
        specs = []
        for i, m in enumerate(raw):
            key = f"osc.messages[{i}]"
            m = c.table(m, key, ("address", "args"))
            if "address" not in m:
                c.fail(f"missing key '{key}.address'")
            address = c.address(c.string(m["address"], f"{key}.address").replace("{prefix}", prefix),
                                f"{key}.address")
            args = c.strings(m.get("args", []), f"{key}.args")
            if not args:
                c.fail(f"key '{key}.args' must list at least one channel (or found, calibration, time)")
            canonical = tuple(a if a in SPECIAL_ARGS else c.channel(a, f"{key}.args[{j}]").name
                              for j, a in enumerate(args))
            specs.append(OscMessageSpec(address, canonical))
        messages = tuple(specs)
        if "landmarks" in osc:
            lm = c.table(osc["landmarks"], "osc.landmarks", ("address", "chunk"))
            address = c.address(c.string(lm.get("address", "/facemocap/landmarks"), "osc.landmarks.address"),
                                "osc.landmarks.address")
            chunk = c.integer(lm.get("chunk", 100), "osc.landmarks.chunk", 1, 478)
            need = LandmarkChunks(address, chunk).message_size(chunk)
            if need > max_packet:
                c.fail(f"key 'osc.landmarks.chunk' is too large: {chunk} landmarks need {need} bytes, "
                       f"more than max_packet ({max_packet})")
            landmarks = (address, chunk)
        if not (sent or messages or landmarks):
            c.fail("the preset sends nothing: give channels.include with osc.blend, osc.messages or osc.landmarks")

    # -- names on the wire
    renames = data.get("renames", {})
    if not isinstance(renames, dict):
        c.bad("renames", "a table of channel = \"new name\"", renames)
    new_names: dict[Channel, str] = {}
    for key_name, value in renames.items():
        key = _dotted("renames", key_name)
        chan = c.channel(key_name, key)
        if chan not in sent:
            c.fail(f"key '{key}': channel {chan.name!r} is not sent by this preset (see channels.include)")
        new_names[chan] = _wire_name(c, c.string(value, key), key, protocol)
    output = [new_names.get(chan) or chan.styled(names) for chan in sent]
    seen: dict[str, Channel] = {}
    for chan, out in zip(sent, output):
        if out in seen:
            c.fail(f"channels {seen[out].name!r} and {chan.name!r} would both go out as {out!r}: "
                   f"rename one under [renames]")
        seen[out] = chan
        if protocol == "osc":
            c.address(blend.replace("{prefix}", prefix).replace("{name}", out), "osc.blend")
        else:
            _wire_name(c, out, "channels.include", protocol)

    # -- per-channel settings
    preset = Preset(name=name, source=source, description=description, protocol=protocol, host=host, port=port,
                    bundle=bundle, max_packet=max_packet, root=root, names=names, prefix=prefix, channels=tuple(sent),
                    output_names=tuple(output), blend=blend, messages=messages, landmarks=landmarks)
    # Defaults are for the sent channels; message arguments and VMC's bone angles
    # (also channels: gain etc. work on them) take only per-channel settings.
    defaults = c.table(ch.get("defaults", {}), "channels.defaults", _SETTING_KEYS)
    base = _setting_values(c, defaults, "channels.defaults")
    per: dict[Channel, dict] = {chan: dict(base) if chan in sent else {} for chan in preset.used_channels}
    for what in _SETTING_KEYS:
        table = ch.get(what, {})
        if not isinstance(table, dict):
            c.bad(f"channels.{what}", "a table of channel = value (defaults for all go in [channels.defaults])",
                  table)
        for key_name, value in table.items():
            key = _dotted("channels", what, key_name)
            chan = c.channel(key_name, key)
            checked = _setting_values(c, {what: value}, key, single=True)
            if chan not in per:
                c.fail(f"key '{key}': channel {chan.name!r} is not sent by this preset (see channels.include)")
            per[chan].update(checked)
    settings = {}
    for chan, values in per.items():
        s = ChannelSettings(**values)
        if s.curve.kind != "linear" and (chan.low < -1.0 or chan.high > 1.0):
            c.fail(f"a curve other than linear is only for channels in 0..1 or -1..1, and {chan.name!r} "
                   f"is in {chan.unit or 'units'} (key 'channels.curve' or 'channels.defaults.curve')")
        if s != ChannelSettings():
            settings[chan] = s
    return dataclasses.replace(preset, settings=settings)


def _vrm_named(entry: str, version: str) -> str:
    """An include entry in the other VRM version's names (--vrm-names): vrm0 <-> vrm1,
    A <-> aa, Blink_L <-> blinkLeft ...; anything else as it is."""
    if entry in ("vrm0", "vrm1"):
        return "vrm" + version
    pairs = [(old, new) for new, old in VRM1_FROM_VRM0.items() if old]
    table = dict(pairs) if version == "1" else {new: old for old, new in pairs}
    return table.get(entry, entry)


def _setting_values(c: _Checker, table: dict, key: str, single: bool = False) -> dict:
    out = {}
    for what, value in table.items():
        k = key if single else f"{key}.{what}"
        if what == "gain":
            out["gain"] = c.number(value, k, -GAIN_LIMIT, GAIN_LIMIT)
        elif what == "offset":
            out["offset"] = c.number(value, k, -GAIN_LIMIT, GAIN_LIMIT)
        elif what == "curve":
            out["curve"] = c.curve(value, k)
        else:
            out["clamp"] = c.clamp(value, k)
    return out


def _wire_name(c: _Checker, name: str, key: str, protocol: str) -> str:
    if protocol == "osc":
        if not name.isascii() or not name.isprintable() or _ADDRESS_FORBIDDEN & set(name) or not name \
                or name.startswith("/") or name.endswith("/") or "//" in name:
            c.fail(f"key '{key}' gives the name {name!r}, which can't be part of an OSC address "
                   f"(printable ASCII, no spaces or #*,?[]{{}}, no leading, trailing or double '/')")
    elif not name or not name.isprintable() or len(name) > MAX_NAME:
        c.fail(f"key '{key}' gives the name {name!r}: VMC names are 1-{MAX_NAME} printable characters")
    return name


# --------------------------------------------------------------------------- files

def presets_dir() -> Path:
    """The shipped presets: bridge/presets when installed, else the checkout's presets/."""
    installed = resources.files("bridge").joinpath("presets")
    if installed.is_dir():
        return Path(str(installed))
    return Path(__file__).resolve().parent.parent.parent / "presets"


def shipped_presets() -> list[str]:
    folder = presets_dir()
    return sorted(p.stem for p in folder.glob("*.toml")) if folder.is_dir() else []


def _is_path(text: str) -> bool:
    return text.endswith(".toml") or "/" in text or "\\" in text


def load_preset(name_or_path: str, *, overrides: dict | None = None) -> Preset:
    """A shipped preset by name (vmc, osc, ...) or a .toml file by path."""
    if _is_path(name_or_path):
        path, source, name = Path(name_or_path), name_or_path, Path(name_or_path).stem
    else:
        path, source, name = presets_dir() / f"{name_or_path}.toml", f"presets/{name_or_path}.toml", name_or_path
        if not path.is_file():
            raise PresetError(f"unknown preset {name_or_path!r} (shipped: {', '.join(shipped_presets()) or 'none'}; "
                              f"or give the path of a .toml file)")
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise PresetError(f"{source}: file not found") from None
    except (OSError, UnicodeDecodeError) as error:
        raise PresetError(f"{source}: cannot read: {getattr(error, 'strerror', None) or error}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise PresetError(f"{source}: not valid TOML: {error}") from None
    return preset_from_dict(data, name=name, source=source, overrides=overrides)
