"""Command line: `facemocap-osc [source] [options]`."""

from __future__ import annotations

import argparse
import logging
import math
import signal
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bridge import __version__

if TYPE_CHECKING:
    from bridge.calibrate import Neutral

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 39539
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


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="facemocap-osc",
        description="Track a face with MediaPipe Face Mesh and send it as VMC-protocol OSC "
                    "(52 ARKit blendshapes, VRM presets, head, neck and eye bones) over UDP.",
        epilog="Examples:\n"
               "  facemocap-osc                           webcam 0 -> 127.0.0.1:39539\n"
               "  facemocap-osc --demo                    synthetic face, no camera needed\n"
               "  facemocap-osc --video take.mp4 --fast   a file, as fast as possible\n"
               "  facemocap-osc --backend landmarker --model face_landmarker.task\n"
               "  facemocap-osc --calibrate 2 --profile alice   capture a neutral face, save it\n"
               "  facemocap-osc --profile alice               use the saved neutral face\n"
               "Exit codes: 0 done or stopped with Ctrl-C, 2 bad input (camera, file, option).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")

    src = p.add_argument_group("source (one of)")
    one = src.add_mutually_exclusive_group()
    one.add_argument("--camera", type=int, metavar="N", default=None,
                     help="webcam index (default: 0 when no other source is given)")
    one.add_argument("--video", metavar="PATH", help="a video file, played at its own frame rate")
    one.add_argument("--images", metavar="DIR_OR_GLOB",
                     help="a folder or glob of images, in file-name order, one frame each")
    one.add_argument("--demo", action="store_true",
                     help="a built-in synthetic animated face: needs no camera and no model")
    src.add_argument("--fast", action="store_true",
                     help="process --video/--demo as fast as possible instead of in real time")
    src.add_argument("--fps", type=_positive_float, default=30.0,
                     help="frame rate of --images and --demo (default: 30)")
    src.add_argument("--frames", type=_positive_int, metavar="N", help="stop after N frames")
    src.add_argument("--duration", type=_positive_float, metavar="S", help="stop after S seconds")

    trk = p.add_argument_group("tracking")
    trk.add_argument("--backend", choices=("facemesh", "landmarker"), default="facemesh",
                     help="facemesh: MediaPipe Face Mesh, bundled, offline (default); "
                          "landmarker: MediaPipe Tasks FaceLandmarker, needs --model")
    trk.add_argument("--model", metavar="PATH", help="face_landmarker.task for --backend landmarker")
    trk.add_argument("--blendshapes", choices=("solver", "model"), default=None,
                     help="which blendshape values go out: our solver's, or the landmarker "
                          "model's (default: model when the backend provides them)")

    out = p.add_argument_group("output (VMC protocol over UDP)")
    out.add_argument("--host", default=DEFAULT_HOST, help=f"receiver address (default: {DEFAULT_HOST})")
    out.add_argument("--port", default=str(DEFAULT_PORT), help=f"receiver UDP port (default: {DEFAULT_PORT})")
    out.add_argument("--no-bundle", action="store_true",
                     help="send plain OSC messages instead of bundles, for receivers that can't take bundles")
    out.add_argument("--arkit-names", choices=("pascal", "camel"), default="pascal",
                     help="perfect-sync clip names: EyeBlinkLeft (pascal, default) or eyeBlinkLeft (camel)")
    out.add_argument("--vrm-names", choices=("0", "1"), default="0",
                     help="expression names: VRM 0.x presets A, Blink_L ... (0, default) or VRM 1.0 aa, blinkLeft ... (1)")
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


def _on_sigterm(signum, frame):
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="facemocap-osc: %(message)s", stream=sys.stderr)
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        return _run(args)
    except UsageError as error:
        print(f"facemocap-osc: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 0


def _open_source(args):
    from bridge import sources
    if args.demo:
        return sources.open_demo(fps=args.fps, paced=not args.fast)
    if args.video:
        return sources.open_video(args.video, paced=not args.fast)
    if args.images:
        return sources.open_images(args.images, fps=args.fps)
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
    from bridge.calibrate import ProfileError, check_profile_name, ensure_profiles_dir, load_profile
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


def _prepare_shaper(args, calibration: CalibrationArgs):
    from bridge.shape import ShapeOptions, Shaper
    shaper = Shaper(ShapeOptions(min_cutoff=args.min_cutoff, beta=args.beta, mirror=args.mirror,
                                 adaptive_range=args.adaptive_range))
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
    from bridge import sources, tracking
    from bridge.calibrate import DEFAULT_CAPTURE_SECONDS
    from bridge.send import TargetError, UdpTarget, parse_port
    from bridge.vmc import VmcEncoder, VmcOptions
    from bridge.pipeline import Limits, StatusLine, run

    if args.backend == "landmarker" and not args.model:
        raise UsageError("--backend landmarker needs --model PATH (a face_landmarker.task file)")
    if args.blendshapes == "model" and args.backend != "landmarker":
        raise UsageError("--blendshapes model needs --backend landmarker (Face Mesh has no blendshape model)")
    calibration = _check_calibration(args)
    try:
        target = UdpTarget(args.host, parse_port(args.port))
    except TargetError as error:
        raise UsageError(str(error)) from None
    encoder = VmcEncoder(VmcOptions(arkit_names=args.arkit_names, bundle=not args.no_bundle,
                                    vrm_names=args.vrm_names))
    shaper = _prepare_shaper(args, calibration)
    try:
        source = _open_source(args)
    except sources.SourceError as error:
        raise UsageError(str(error)) from None
    control = None
    try:
        try:
            tracker = tracking.open_tracker(args.backend, model_path=args.model, static=source.static)
        except tracking.TrackingError as error:
            raise UsageError(str(error)) from None
        preview = None
        if args.preview:
            from bridge.preview import Preview, PreviewError
            try:
                preview = Preview()
            except PreviewError as error:
                raise UsageError(str(error)) from None
        use_model = args.backend == "landmarker" and args.blendshapes != "solver"
        # Opened last: everything that can refuse to start has been checked already.
        control = _open_control(calibration)
        log.info("%s -> %s (VMC, %s)", source.name, target.address,
                 "bundles" if not args.no_bundle else "plain messages")
        _log_calibration_plan(calibration, control)
        try:
            stats = run(source, tracker, shaper, encoder, target, use_model_blendshapes=use_model,
                        limits=Limits(frames=args.frames, duration=args.duration),
                        status=StatusLine(enabled=not args.quiet), preview=preview, control=control,
                        calibrate_seconds=calibration.seconds or DEFAULT_CAPTURE_SECONDS,
                        on_calibrated=_profile_saver(calibration.profile))
        except sources.SourceError as error:
            raise UsageError(str(error)) from None
        finally:
            tracker.close()
            if preview is not None:
                preview.close()
    finally:
        if control is not None:
            control.close()
            if control.malformed:
                log.info("the control port ignored %d malformed message(s); --verbose shows them",
                         control.malformed)
        source.close()
        target.close()
    if shaper.calibrator.capturing:
        log.warning("the run ended before the calibration finished%s",
                    f": profile '{calibration.profile}' not saved" if calibration.profile else "")
    log.info("done: %d frames, face in %d, %d datagrams sent", stats.frames, stats.faces,
             target.sent_datagrams)
    return 0
