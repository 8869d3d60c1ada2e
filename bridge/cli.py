"""Command line: `facemocap-osc [source] [options]`."""

from __future__ import annotations

import argparse
import logging
import signal
import sys

from bridge import __version__

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
    out.add_argument("--mirror", action="store_true",
                     help="mirror the avatar: your left becomes its right (default: it copies your sides)")

    shp = p.add_argument_group("smoothing (One Euro filter)")
    from bridge.shape import DEFAULT_BETA, DEFAULT_MIN_CUTOFF
    shp.add_argument("--min-cutoff", type=_positive_float, default=DEFAULT_MIN_CUTOFF,
                     help=f"Hz; lower = smoother when still, more lag (default: {DEFAULT_MIN_CUTOFF})")
    shp.add_argument("--beta", type=_non_negative_float, default=DEFAULT_BETA,
                     help=f"speed response; higher = less lag in fast moves (default: {DEFAULT_BETA})")

    ui = p.add_argument_group("display")
    ui.add_argument("--preview", action="store_true",
                    help="show a window with the mesh and live blendshape bars (Esc or q quits)")
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


def _run(args) -> int:
    from bridge import sources, tracking
    from bridge.send import TargetError, UdpTarget, parse_port
    from bridge.shape import ShapeOptions, Shaper
    from bridge.vmc import VmcEncoder, VmcOptions
    from bridge.pipeline import Limits, StatusLine, run

    if args.backend == "landmarker" and not args.model:
        raise UsageError("--backend landmarker needs --model PATH (a face_landmarker.task file)")
    if args.blendshapes == "model" and args.backend != "landmarker":
        raise UsageError("--blendshapes model needs --backend landmarker (Face Mesh has no blendshape model)")
    try:
        target = UdpTarget(args.host, parse_port(args.port))
    except TargetError as error:
        raise UsageError(str(error)) from None
    encoder = VmcEncoder(VmcOptions(arkit_names=args.arkit_names, bundle=not args.no_bundle))
    shaper = Shaper(ShapeOptions(min_cutoff=args.min_cutoff, beta=args.beta, mirror=args.mirror))
    try:
        source = _open_source(args)
    except sources.SourceError as error:
        raise UsageError(str(error)) from None
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
        log.info("%s -> %s (VMC, %s)", source.name, target.address,
                 "bundles" if not args.no_bundle else "plain messages")
        try:
            stats = run(source, tracker, shaper, encoder, target, use_model_blendshapes=use_model,
                        limits=Limits(frames=args.frames, duration=args.duration),
                        status=StatusLine(enabled=not args.quiet), preview=preview)
        except sources.SourceError as error:
            raise UsageError(str(error)) from None
        finally:
            tracker.close()
            if preview is not None:
                preview.close()
    finally:
        source.close()
        target.close()
    log.info("done: %d frames, face in %d, %d datagrams sent", stats.frames, stats.faces,
             target.sent_datagrams)
    return 0
