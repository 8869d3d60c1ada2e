"""Command line: `facemocap-osc [source] [options]`."""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import os
import signal
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bridge import __version__

if TYPE_CHECKING:
    from bridge.calibrate import Neutral

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 39539
DEFAULT_PRESET = "vmc"
EXIT_USAGE = 2

log = logging.getLogger("facemocap")


class UsageError(Exception):
    """A one-line, user-facing error: printed without a traceback, exit code 2."""


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got '{text}'") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a number above 0, got '{text}'")
    return value


def _float(text: str, *, allow_zero: bool) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got '{text}'") from None
    if not (value > 0 or (allow_zero and value == 0)) or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number {'of 0 or more' if allow_zero else 'above 0'}, got '{text}'")
    return value


def _positive_float(text: str) -> float:
    return _float(text, allow_zero=False)


def _non_negative_float(text: str) -> float:
    return _float(text, allow_zero=True)


def add_tracking_arguments(group, *, what: str, takes_note: str = "") -> None:
    """--backend, --model, --blendshapes: the same for the live run and the export."""
    group.add_argument("--backend", choices=("auto", "landmarker", "facemesh"), default="auto",
                       help="landmarker: MediaPipe Tasks FaceLandmarker (its model is downloaded once, "
                            "see `facemocap-osc model`); facemesh: the legacy Face Mesh, offline, only "
                            "with pip install \".[legacy]\" on Python <= 3.12; auto (default): the "
                            f"landmarker when its model can be had, else Face Mesh{takes_note}")
    group.add_argument("--model", metavar="PATH",
                       help="a face_landmarker.task to use (default: $FACEMOCAP_MODEL, else the cached "
                            "download)")
    group.add_argument("--blendshapes", choices=("fused", "solver", "model"), default="fused",
                       help=f"which blendshape values {what}: fused (default): the landmarker model's "
                            "scores combined with our geometric solver, channel by channel (with Face Mesh, "
                            "which has no scores, the solver's alone); solver: our geometric solver's only, "
                            "on either backend; model: the landmarker model's own scores (landmarker only, or a "
                            "take recorded with it)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="facemocap-osc",
        description="Track a face with MediaPipe and send it as VMC-protocol OSC "
                    "(52 ARKit blendshapes, VRM presets, head, neck and eye bones) over UDP, "
                    "or in other dialects through output presets (`facemocap-osc presets` lists them).",
        epilog="Examples:\n"
               "  facemocap-osc                           webcam 0 -> 127.0.0.1:39539\n"
               "  facemocap-osc --demo                    synthetic face, no camera needed\n"
               "  facemocap-osc --video take.mp4 --fast   a file, as fast as possible\n"
               "  facemocap-osc --images 'shots/*.jpg'    photos, each solved on its own\n"
               "  facemocap-osc --images frames/ --sequence --fps 25   one video's frames, as a video\n"
               "  facemocap-osc model download            fetch the tracking model once (else on first use)\n"
               "  facemocap-osc --calibrate 2 --profile alice   capture a neutral face, save it\n"
               "  facemocap-osc --profile alice               use the saved neutral face\n"
               "  facemocap-osc presets                   list the output presets\n"
               "  facemocap-osc --preset vrchat           VRChat's OSC on 127.0.0.1:9000\n"
               "  facemocap-osc --target vmc --target osc@127.0.0.1:7000   two receivers at once\n"
               "Exit codes: 0 done or stopped with Ctrl-C, 1 --record failed while running, "
               "2 bad input (camera, file, option, a damaged --replay take).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")

    src = p.add_argument_group("source (one of)")
    one = src.add_mutually_exclusive_group()
    one.add_argument("--camera", type=int, metavar="N", default=None,
                     help="webcam index (default: 0 when no other source is given)")
    one.add_argument("--video", metavar="PATH", help="a video file, played at its own frame rate")
    one.add_argument("--images", metavar="DIR_OR_GLOB",
                     help="a folder or glob of photos, in file-name order, one frame each; every photo "
                          "is solved on its own (no smoothing, nothing carried over from the others: "
                          "the same values as that photo alone)")
    one.add_argument("--demo", action="store_true",
                     help="a built-in synthetic animated face: needs no camera and no model")
    one.add_argument("--replay", metavar="TAKE",
                     help="a take recorded with --record (.jsonl or .jsonl.gz), at its original timing")
    src.add_argument("--fast", action="store_true",
                     help="process --video/--demo/--replay as fast as possible instead of in real time")
    src.add_argument("--record", metavar="PATH",
                     help="also save the take (landmarks and solved values) to PATH: .jsonl or .jsonl.gz")
    src.add_argument("--sequence", action="store_true",
                     help="--images are the frames of one video: track, smooth and solve them as a video "
                          "(frame times from --fps)")
    src.add_argument("--fps", type=_positive_float, default=30.0,
                     help="frame rate of --images and --demo (default: 30)")
    src.add_argument("--frames", type=_positive_int, metavar="N", help="stop after N frames")
    src.add_argument("--duration", type=_positive_float, metavar="S", help="stop after S seconds")

    trk = p.add_argument_group("tracking")
    add_tracking_arguments(trk, what="go out")

    out = p.add_argument_group("output (UDP; VMC protocol unless a preset says otherwise)")
    out.add_argument("--preset", metavar="NAME_OR_PATH",
                     help=f"output preset: a shipped one (vmc, vmc-perfect-sync, vrchat, vrchat-eyes, osc, "
                          f"landmarks: see `facemocap-osc presets`) or a .toml file (default: {DEFAULT_PRESET})")
    out.add_argument("--host", help=f"receiver address (default: the preset's, {DEFAULT_HOST} for the shipped ones)")
    out.add_argument("--port", help=f"receiver UDP port (default: the preset's, {DEFAULT_PORT} for vmc)")
    out.add_argument("--target", action="append", metavar="PRESET[@HOST[:PORT]]",
                     help="send to this receiver through this preset; repeat for several receivers "
                          "(instead of --preset/--host/--port), e.g. --target vmc --target osc@127.0.0.1:7000")
    out.add_argument("--no-bundle", action="store_true",
                     help="send plain OSC messages instead of bundles, for receivers that can't take bundles")
    out.add_argument("--arkit-names", choices=("pascal", "camel"), default=None,
                     help="VMC presets: perfect-sync clip names EyeBlinkLeft (pascal, the default) or eyeBlinkLeft (camel)")
    out.add_argument("--vrm-names", choices=("0", "1"), default=None,
                     help="VMC presets: expression names VRM 0.x A, Blink_L ... (0, vmc's) or VRM 1.0 aa, blinkLeft ... (1)")
    out.add_argument("--avatar", metavar="MODEL.vrm",
                     help="VMC presets: send this VRM avatar's own neck, head and eye bone offsets "
                          "(receivers such as EVMC4U apply bone positions every frame)")
    out.add_argument("--mirror", action="store_true",
                     help="mirror the avatar: your left becomes its right (default: it copies your sides)")

    shp = p.add_argument_group("smoothing (One Euro filter)")
    from bridge.shape import DEFAULT_BETA, DEFAULT_MIN_CUTOFF
    shp.add_argument("--min-cutoff", type=_positive_float, default=DEFAULT_MIN_CUTOFF,
                     help=f"Hz; lower = smoother when still, more lag (default: {DEFAULT_MIN_CUTOFF})")
    shp.add_argument("--beta", type=_non_negative_float, default=DEFAULT_BETA,
                     help=f"speed response; higher = less lag in fast moves (default: {DEFAULT_BETA})")

    cal = p.add_argument_group("calibration (neutral face)")
    from bridge.calibrate import MAX_CAPTURE_SECONDS, MIN_CAPTURE_SECONDS
    from bridge.control import DEFAULT_CONTROL_PORT
    cal.add_argument("--calibrate", metavar="SECONDS",
                     help=f"capture your neutral (resting) face during the first SECONDS "
                          f"({MIN_CAPTURE_SECONDS:g}-{MAX_CAPTURE_SECONDS:g}) of face frames, then subtract it")
    cal.add_argument("--profile", metavar="NAME",
                     help="use the neutral face saved as NAME; with --calibrate, capture it and save it as NAME")
    cal.add_argument("--control-port", metavar="PORT",
                     help=f"UDP port on 127.0.0.1 for OSC /facemocap/calibrate [seconds] "
                          f"(default: {DEFAULT_CONTROL_PORT}; 0 = off)")
    cal.add_argument("--adaptive-range", action="store_true",
                     help="scale each blendshape by its own recent maximum, so your fullest expression reaches 1")

    ui = p.add_argument_group("display")
    ui.add_argument("--preview", action="store_true",
                    help="show a window with the mesh and live blendshape bars (Esc or q quits, c calibrates)")
    ui.add_argument("--quiet", action="store_true", help="no live status line")
    ui.add_argument("--verbose", action="store_true", help="debug logging")
    return p


def _configure_logging(verbose: bool) -> None:
    """Our loggers ("facemocap.*") at INFO (DEBUG with --verbose); libraries' (matplotlib,
    absl ...) only from WARNING."""
    logging.basicConfig(level=logging.WARNING, format="facemocap-osc: %(message)s", stream=sys.stderr)
    logging.getLogger("facemocap").setLevel(logging.DEBUG if verbose else logging.INFO)


def _on_sigterm(signum, frame):
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["presets"]:
        return _list_presets(argv[1:])
    if argv[:1] == ["model"]:
        from bridge.tracking.model import main as model_main
        return model_main(argv[1:])
    if argv[:1] == ["export"]:
        from bridge.export import main as export_main
        return export_main(argv[1:])
    args = build_parser().parse_args(argv)
    _configure_logging(args.verbose)
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        return _run(args)
    except UsageError as error:
        print(f"facemocap-osc: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 0


def _list_presets(extra: list[str]) -> int:
    """`facemocap-osc presets`: one line per shipped preset, with its description."""
    from bridge.outputs import PresetError, load_preset, presets_dir, shipped_presets
    if extra:
        print(f"facemocap-osc: error: `facemocap-osc presets` takes no arguments, got {' '.join(extra)!r}",
              file=sys.stderr)
        return EXIT_USAGE
    names = shipped_presets()
    if not names:
        print(f"facemocap-osc: error: no presets found in {presets_dir()}", file=sys.stderr)
        return EXIT_USAGE
    width = max(map(len, names))
    try:
        for name in names:
            preset = load_preset(name)
            print(f"{name:<{width}}  {preset.description}")
        sys.stdout.flush()
    except PresetError as error:
        print(f"facemocap-osc: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:   # `facemocap-osc presets | head -1`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


@dataclass
class TargetSpec:
    """One receiver as the command line gave it: a preset, maybe a host and a port."""
    preset: str
    host: str | None = None
    port: str | None = None
    text: str = ""            # as given, for errors


def parse_target(text: str) -> TargetSpec:
    """PRESET[@HOST[:PORT]]; HOST may be [IPv6] (with a port) or bare IPv6 (without)."""
    def bad(why: str):
        raise UsageError(f"invalid --target {text!r}: {why} (expected PRESET[@HOST[:PORT]], "
                         f"e.g. osc@127.0.0.1:7000)")
    preset, at, where = text.rpartition("@")
    if not at:
        preset, where = text, ""
    if not preset.strip():
        bad("no preset")
    host = port = None
    if at:
        if not where:
            bad("nothing after '@'")
        if where.startswith("["):
            inside, close, rest = where[1:].partition("]")
            if not close or not inside:
                bad("the host in [...] is empty or not closed")
            host = inside
            if rest:
                if not rest.startswith(":") or len(rest) == 1:
                    bad("expected :PORT after ']'")
                port = rest[1:]
        elif where.count(":") == 1:
            host, port = where.split(":")
            if not port:
                bad("no port after ':'")
            host = host or None         # "osc@:7000": the preset's host
        else:
            host = where
    return TargetSpec(preset.strip(), host, port, text)


def _target_specs(args) -> list[TargetSpec]:
    if args.target:
        given = [o for o, v in (("--preset", args.preset), ("--host", args.host), ("--port", args.port)) if v]
        if given:
            raise UsageError(f"--target cannot be combined with {', '.join(given)}: "
                             f"give each receiver as --target PRESET@HOST:PORT")
        return [parse_target(t) for t in args.target]
    return [TargetSpec(args.preset or DEFAULT_PRESET, args.host, args.port, args.preset or DEFAULT_PRESET)]


def _preset_overrides(args) -> dict:
    overrides = {}
    if args.no_bundle:
        overrides["bundle"] = False
    if args.arkit_names:
        overrides["names"] = args.arkit_names
    if args.vrm_names:
        overrides["vrm_names"] = args.vrm_names
    return overrides


def _unparsable(source, error: BaseException) -> str:
    """One line for a file the TOML / JSON parser itself gave up on with something other
    than its own decode error: nesting too deep (RecursionError), a number with
    thousands of digits (ValueError from Python's int limit)."""
    text = (str(error).strip().splitlines() or [type(error).__name__])[0]
    if isinstance(error, RecursionError):
        text = "nested too deeply"
    elif "integer string conversion" in text:
        text = "a number has too many digits"
    return f"{source}: cannot be parsed: {text}"


def _load_preset(spec: TargetSpec, overrides: dict):
    from bridge.outputs import PresetError, load_preset
    try:
        return load_preset(spec.preset, overrides=overrides)
    except (RecursionError, ValueError) as error:   # from tomllib, past its TOMLDecodeError
        given = spec.preset   # named as load_preset names it
        source = given if given.endswith(".toml") or "/" in given or "\\" in given else f"presets/{given}.toml"
        raise PresetError(_unparsable(source, error)) from None


def _open_outputs(args, stack) -> list:
    """The receivers' encoders and sockets; any that can't be set up is a UsageError."""
    from bridge.outputs import PresetError
    from bridge.pipeline import Output
    from bridge.send import TargetError, UdpTarget, parse_port
    specs = _target_specs(args)
    overrides = _preset_overrides(args)
    presets = []
    for spec in specs:
        try:
            presets.append(_load_preset(spec, overrides))
        except PresetError as error:
            raise UsageError(f"--target {spec.text!r}: {error}" if args.target else str(error)) from None
    if (args.arkit_names or args.vrm_names) and not any(p.protocol == "vmc" for p in presets):
        option = "--arkit-names" if args.arkit_names else "--vrm-names"
        raise UsageError(f"{option} is for VMC presets (vmc, vmc-perfect-sync), and no target uses one")
    bones = _avatar_bones(args, presets)
    outputs = []
    for spec, preset in zip(specs, presets):
        try:
            port = parse_port(spec.port) if spec.port is not None else preset.port
            target = stack.enter_context(UdpTarget(spec.host or preset.host, port))
            # Datagrams the target's address family carries unfragmented (IPv6: 1452).
            encoder = preset.encoder(max_packet=target.unfragmented, bone_positions=bones)
        except (TargetError, PresetError) as error:
            raise UsageError(f"--target {spec.text!r}: {error}" if args.target else str(error)) from None
        outputs.append(Output(encoder, target, label=f"{preset.name}@{target.address}", preset=preset))
    return outputs


def _avatar_bones(args, presets) -> dict:
    """--avatar: the avatar's own Neck / Head / eye offsets for the VMC bones."""
    if args.avatar is None:
        return {}
    if not any(p.protocol == "vmc" for p in presets):
        raise UsageError("--avatar is for VMC presets (its bone offsets go out in /VMC/Ext/Bone/Pos), "
                         "and no target uses one")
    from bridge.avatar import AvatarError, load_avatar
    try:
        avatar = load_avatar(args.avatar)
    except AvatarError as error:
        raise UsageError(str(error)) from None
    log.info("bone offsets from %s (VRM %s): %s", args.avatar, avatar.vrm_version,
             ", ".join(f"{b} {x:+.3f} {y:+.3f} {z:+.3f}" for b, (x, y, z) in avatar.offsets.items()))
    return dict(avatar.offsets)


def _describe(output, avatar: str | None = None) -> str:
    preset = output.preset
    kind = "VMC" if preset.protocol == "vmc" else "OSC"
    limit = output.encoder.preset.max_packet      # the preset's, or lower for the address family
    framing = f"bundles of <= {limit} B" if preset.bundle else f"plain messages of <= {limit} B"
    if preset.protocol == "osc" and not preset.channels and not preset.messages:
        framing = "landmarks only"
    if preset.protocol == "vmc":
        # EVMC4U and Warudo apply bone positions: without the avatar's own they move its head.
        framing += f", bone offsets from {avatar}" if avatar else ", nominal bone offsets: see --avatar"
    return f"{output.label} ({kind}, {framing})"


def _open_source(args):
    from bridge import sources
    if args.replay:
        from bridge.record import open_replay
        return open_replay(args.replay, paced=not args.fast)
    if args.demo:
        return sources.open_demo(fps=args.fps, paced=not args.fast)
    if args.video:
        return sources.open_video(args.video, paced=not args.fast)
    if args.images:
        return sources.open_images(args.images, fps=args.fps, sequence=args.sequence)
    return sources.open_camera(args.camera if args.camera is not None else 0)


@dataclass
class CalibrationArgs:
    """The calibration options, checked."""
    seconds: float | None          # --calibrate
    profile: str | None            # --profile
    neutral: Neutral | None        # the loaded profile (--profile without --calibrate)
    control_port: int              # 0 = off
    control_port_given: bool       # the user chose the port (busy -> error, not a warning)


def _calibrate_seconds(text: str) -> float:
    from bridge.calibrate import MAX_CAPTURE_SECONDS, MIN_CAPTURE_SECONDS
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not MIN_CAPTURE_SECONDS <= value <= MAX_CAPTURE_SECONDS:
        raise UsageError(f"invalid --calibrate {text!r}: expected seconds from "
                         f"{MIN_CAPTURE_SECONDS:g} to {MAX_CAPTURE_SECONDS:g}")
    return value


def _control_port(text: str | None) -> int:
    from bridge.control import DEFAULT_CONTROL_PORT
    from bridge.send import TargetError, parse_port
    if text is None:
        return DEFAULT_CONTROL_PORT
    if text.strip() == "0":
        return 0
    try:
        return parse_port(text)
    except TargetError:
        raise UsageError(f"invalid --control-port {text!r}: expected 1-65535, or 0 for none") from None


def _check_calibration(args) -> CalibrationArgs:
    from bridge.calibrate import ProfileError, check_profile_name, ensure_profiles_dir, load_profile, profile_path
    seconds = _calibrate_seconds(args.calibrate) if args.calibrate is not None else None
    neutral = None
    if args.profile is not None:
        try:
            check_profile_name(args.profile)
            if seconds is None:
                neutral = load_profile(args.profile)
            else:
                ensure_profiles_dir()   # fail now, not after the performer held still
        except ProfileError as error:
            raise UsageError(str(error)) from None
        except (RecursionError, ValueError) as error:   # from json, past its JSONDecodeError
            raise UsageError(_unparsable(profile_path(args.profile), error)) from None
    return CalibrationArgs(seconds, args.profile, neutral, _control_port(args.control_port),
                           control_port_given=args.control_port is not None)


def _open_control(calibration: CalibrationArgs):
    """The control port listener, or None (off, or the default port is busy)."""
    from bridge.control import ControlError, ControlPort
    if not calibration.control_port:
        return None
    try:
        return ControlPort(calibration.control_port)
    except ControlError as error:
        if calibration.control_port_given:
            raise UsageError(f"{error} (choose another --control-port, or 0 for none)") from None
        log.warning("%s; running without the control port (choose one with --control-port PORT)", error)
        return None


def _profile_saver(name: str | None):
    """on_calibrated for the run loop: save every new neutral under --profile (if given)."""
    if name is None:
        return None
    from bridge.calibrate import ProfileError, save_profile

    def save(neutral) -> None:
        try:
            path = save_profile(name, neutral)
        except ProfileError as error:
            log.warning("neutral face not saved: %s", error)
        else:
            log.info("saved the neutral face as profile '%s' (%s)", name, path)
    return save


def _photos(args) -> bool:
    """--images without --sequence: every file is its own photo."""
    return bool(args.images) and not args.sequence


def _check_photo_options(args) -> None:
    """Options that learn from a run of frames have nothing to learn from independent photos."""
    if args.sequence and not args.images:
        raise UsageError("--sequence is for --images (a folder of one video's frames); "
                         "other sources are sequences already")
    if not _photos(args):
        return
    given = [option for option, value in (("--calibrate", args.calibrate is not None),
                                          ("--adaptive-range", args.adaptive_range),
                                          ("--control-port", (args.control_port or "0").strip() != "0"))
             if value]
    if given:
        raise UsageError(f"{given[0]} needs a sequence of frames, and --images photos are each their own "
                         f"(add --sequence if they are the frames of one video)")


def _prepare_shaper(args, calibration: CalibrationArgs):
    from bridge.shape import ShapeOptions, Shaper
    shaper = Shaper(ShapeOptions(min_cutoff=args.min_cutoff, beta=args.beta, mirror=args.mirror,
                                 adaptive_range=args.adaptive_range, still=_photos(args)))
    if calibration.neutral is not None:
        shaper.calibrator.neutral = calibration.neutral
    if calibration.seconds is not None:
        shaper.calibrator.start_capture(calibration.seconds)
    return shaper


def _log_calibration_plan(calibration: CalibrationArgs, control) -> None:
    # Logged only once everything has started: a failing start prints its one error line alone.
    if calibration.neutral is not None:
        log.info("neutral face from profile '%s'", calibration.profile)
    if calibration.seconds is not None:
        log.info("calibrating during the first %g s of face: hold a neutral face", calibration.seconds)
    if control is not None:
        log.info("recalibrate any time: OSC /facemocap/calibrate [seconds] to %s", control.address)


def _run(args) -> int:
    with contextlib.ExitStack() as stack:   # closes the targets' sockets however the run ends
        return _run_with(args, stack)


def _run_with(args, stack) -> int:
    from bridge import sources, tracking
    from bridge.calibrate import DEFAULT_CAPTURE_SECONDS
    from bridge.pipeline import Limits, StatusLine, run

    landmarks_only = args.demo or args.replay   # no images: nothing to track
    # A take may hold the model's scores (checked once it is open); the demo never has any.
    if landmarks_only and (args.backend != "auto" or args.model or (args.demo and args.blendshapes == "model")):
        given = "--backend" if args.backend != "auto" else "--model" if args.model else "--blendshapes model"
        raise UsageError(f"{'--demo' if args.demo else '--replay'} gives landmarks, not images: "
                         f"it takes no {given}")
    _check_photo_options(args)
    calibration = _check_calibration(args)
    if _photos(args):   # no recalibration from photos: nothing to listen for
        calibration.control_port = 0
    outputs = _open_outputs(args, stack)
    shaper = _prepare_shaper(args, calibration)
    try:
        source = _open_source(args)
    except sources.SourceError as error:
        raise UsageError(str(error)) from None
    control = recorder = tracker = None
    try:
        scores = None   # whether the frames carry the model's scores: the tracker's say
        if args.replay:
            scores = source.has_scores
            if args.blendshapes == "model" and not scores:
                raise UsageError(f"--blendshapes model: take '{args.replay}' has no model scores (recorded "
                                 f"with Face Mesh, the demo or an older facemocap-osc); use fused or solver")
        tracker = _open_tracker(args, source)
        blendshapes = effective_blendshapes(args.blendshapes, tracker.backend, scores=scores)
        recorder = _open_recorder(args, source, tracker, blendshapes)
        preview = None
        if args.preview:
            from bridge.preview import Preview, PreviewError
            try:
                preview = Preview()
            except PreviewError as error:
                raise UsageError(str(error)) from None
        # Opened last: everything that can refuse to start has been checked already.
        control = _open_control(calibration)
        log.info("%s -> %s", source.name, ", ".join(_describe(o, args.avatar) for o in outputs))
        if not landmarks_only:
            log.info("tracking with %s", tracker.description)
            if blendshapes != args.blendshapes:   # fused on Face Mesh: said once, not refused
                log.info("--blendshapes %s: the legacy Face Mesh has no blendshape scores, so the values "
                         "are the geometric solver's alone", args.blendshapes)
        _log_calibration_plan(calibration, control)
        try:
            stats = run(source, tracker, shaper, outputs=outputs, blendshapes=args.blendshapes,
                        limits=Limits(frames=args.frames, duration=args.duration),
                        status=StatusLine(enabled=not args.quiet), preview=preview, control=control,
                        calibrate_seconds=calibration.seconds or DEFAULT_CAPTURE_SECONDS,
                        on_calibrated=_profile_saver(calibration.profile), recorder=recorder)
        except (sources.SourceError, tracking.TrackingError) as error:
            raise UsageError(str(error)) from None
        finally:
            if preview is not None:
                preview.close()
    finally:
        if tracker is not None:
            tracker.close()
        if recorder is not None:
            _close_recorder(recorder)
        if control is not None:
            control.close()
            if control.malformed:
                log.info("the control port ignored %d malformed message(s); --verbose shows them",
                         control.malformed)
        source.close()
    if shaper.calibrator.capturing:
        log.warning("the run ended before the calibration finished%s",
                    f": profile '{calibration.profile}' not saved" if calibration.profile else "")
    sent = sum(o.target.sent_datagrams for o in outputs)
    per_target = "" if len(outputs) == 1 else " (" + ", ".join(
        f"{o.label}: {o.target.sent_datagrams}" for o in outputs) + ")"
    failed = [f"{o.label}: {o.target.failed_datagrams}" for o in outputs if o.target.failed_datagrams]
    p50, p99 = stats.latency_percentile(50), stats.latency_percentile(99)
    latency = f"; capture -> send latency p50 {p50:.1f} ms, p99 {p99:.1f} ms" if p50 is not None else ""
    log.info("done: %d frames, face in %d, %d datagrams sent%s%s%s", stats.frames, stats.faces, sent, per_target,
             f"; not delivered: {', '.join(failed)}" if failed else "", latency)
    if getattr(source, "error", None):   # a damaged take: what was valid was replayed
        print(f"facemocap-osc: error: {source.error}", file=sys.stderr)
        return 2
    return 1 if stats.record_error else 0


def _close_recorder(recorder) -> None:
    from bridge.record import RecordError
    try:
        recorder.close()
    except RecordError as error:
        log.error("%s", error)


def _open_tracker(args, source):
    """The tracker for the source's images (a pass-through for landmark sources)."""
    from bridge import tracking
    if args.demo or args.replay:
        return tracking.Tracker()
    try:
        # Only "model" insists on the landmarker; "fused" takes its scores when it runs.
        return tracking.open_tracker(args.backend, model_path=args.model, static=source.static,
                                     blendshapes=args.blendshapes == "model")
    except tracking.TrackingError as error:
        raise UsageError(str(error)) from None


def effective_blendshapes(mode: str, backend: str | None, *, scores: bool | None = None) -> str:
    """The blendshapes a run really gives: "fused" without the landmarker's scores (Face
    Mesh, the demo, a take recorded without them) is the solver's geometry.
    scores: whether the frames carry the model's scores (default: the landmarker's do;
    a replayed take's header says)."""
    if scores is None:
        scores = backend == "landmarker"
    return mode if scores else "solver"


def _open_recorder(args, source, tracker, blendshapes: str):
    """The --record writer, opened before any frame so a bad path fails at start."""
    if not args.record:
        return None
    from bridge.record import RecordError, TakeWriter, source_header
    backend = "demo" if args.demo else tracker.backend
    try:
        return TakeWriter.open(args.record, source_header(
            source, backend=backend, description=f"images {args.images}" if args.images else None,
            blendshapes=blendshapes))
    except RecordError as error:
        raise UsageError(str(error)) from None
