"""python -m bench.truth sets [--set NAME]
python -m bench.truth render --set smoke|ci|full [--out DIR] [--size N] [--samples N] [--only NAME ...]
                             [--group NAME ...] [--limit N] [--force]
python -m bench.truth check --set smoke [--out DIR] [--backend landmarker|facemesh] [--blendshapes fused|solver|model]"""

from __future__ import annotations

import argparse
import json
import sys
import time

from bench.truth.sets import GROUPS, SETS, summary


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.truth")
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("render", help="render a named set of faces into a cache folder")
    r.add_argument("--set", default="smoke", choices=sorted(SETS))
    r.add_argument("--out", default=None, help="cache folder (default: bench/truth/cache/)")
    r.add_argument("--size", type=int, default=None)
    r.add_argument("--samples", type=int, default=None)
    r.add_argument("--fov", type=float, default=None, help="camera field of view, degrees")
    r.add_argument("--distance", type=float, default=None, help="camera to nose tip, metres")
    r.add_argument("--only", nargs="*", default=None, help="render only specs with these names")
    r.add_argument("--group", nargs="*", default=None, help="render only these groups of the set (see `sets`)")
    r.add_argument("--limit", type=int, default=None, help="stop after rendering N new images (cached ones don't count)")
    r.add_argument("--force", action="store_true", help="re-render even if cached")
    ls = sub.add_parser("sets", help="print the sets' groups, counts and estimated render time")
    ls.add_argument("--set", default=None, choices=sorted(SETS))
    c = sub.add_parser("check", help="track a rendered set with facemocap-osc export and print the readings")
    c.add_argument("--set", default="smoke", choices=sorted(SETS))
    c.add_argument("--out", default=None, help="cache folder the set was rendered into")
    c.add_argument("--backend", default="landmarker", choices=("landmarker", "facemesh"))
    c.add_argument("--blendshapes", default="fused", choices=("fused", "solver", "model"))
    c.add_argument("--model", default=None, help="face_landmarker.task")
    c.add_argument("--json", default=None, help="also write the readings here")
    args = p.parse_args(argv)

    if args.command == "check":
        from pathlib import Path
        from bench.truth.check import check, print_table
        out = Path(args.out) if args.out else Path(__file__).resolve().parent / "cache"
        table = check(out, args.set, args.backend, args.blendshapes, args.model)
        print_table(table, f"{args.set}: {args.backend}, {args.blendshapes}")
        if args.json:
            Path(args.json).write_text(json.dumps(table, indent=1) + "\n")
        return 0 if all(r["found"] for r in table) else 1

    if args.command == "sets":
        for name in [args.set] if args.set else SETS:
            print(summary(name))
        return 0

    return render(args)


def render(args) -> int:
    """Render a set in order, skipping cached faces (so an interrupted run resumes). The
    set's index (`<set>.index.json`: name, group, image, in set order) lists the faces
    rendered so far; it is rewritten every 10 images and on exit, also on SIGTERM/Ctrl-C."""
    import signal
    from pathlib import Path
    from tqdm import tqdm
    from bench.truth.render import DEFAULT_CACHE, Renderer, RenderSettings

    kw = {k: v for k, v in (("size", args.size), ("samples", args.samples),
                            ("fov_deg", args.fov), ("camera_distance", args.distance)) if v is not None}
    groups = GROUPS[args.set]()
    print(summary(args.set), flush=True)
    specs = [(g, s) for g, ss in groups.items() if not args.group or g in args.group for s in ss]
    if args.only:
        specs = [(g, s) for g, s in specs if s.name in args.only]
    t0 = time.perf_counter()
    renderer = Renderer(RenderSettings(**kw))
    out = Path(args.out or DEFAULT_CACHE)
    out.mkdir(parents=True, exist_ok=True)
    todo = [(g, s, renderer.hash(s)) for g, s in specs]
    cached = sum((out / f"{h}.png").is_file() and (out / f"{h}.json").is_file() for _, _, h in todo)
    print(f"scene ready in {time.perf_counter() - t0:.1f} s; {len(todo)} faces, {cached} cached, "
          f"{len(todo) - cached} to render", flush=True)

    def write_index():
        index = [{"name": s.name, "group": g, "image": f"{h}.png"} for g, s, h in todo
                 if (out / f"{h}.png").is_file() and (out / f"{h}.json").is_file()]
        tmp = out / f".{args.set}.index.json.tmp"
        tmp.write_text(json.dumps(index, indent=1) + "\n")
        tmp.replace(out / f"{args.set}.index.json")
        return len(index)

    def stop(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, stop)

    times, failed, interrupted = [], [], False
    bar = tqdm(todo, unit="face", dynamic_ncols=True, mininterval=2.0)
    try:
        for g, spec, _ in bar:
            if args.limit is not None and len(times) >= args.limit:
                break
            try:
                png, sec = renderer.render(spec, out, force=args.force)
            except ValueError as e:         # a spec the face builder rejects: log it, go on
                failed.append(spec.name)
                tqdm.write(f"FAILED {spec.name}: {e}")
                continue
            if sec is not None:
                times.append(sec)
                bar.set_postfix_str(f"{spec.name[:28]} {sec:.1f} s, mean {sum(times) / len(times):.2f} s/img")
                if len(times) % 10 == 0:
                    write_index()
    except KeyboardInterrupt:
        interrupted = True
    finally:
        bar.close()
        n = write_index()
    if times:
        print(f"{sum(times) / len(times):.2f} s per image ({len(times)} rendered)")
    if failed:
        print(f"{len(failed)} faces FAILED: {', '.join(failed)}")
    print(f"{args.set}.index.json: {n} of {len(todo)} faces rendered" + (" (interrupted)" if interrupted else ""),
          flush=True)
    return 130 if interrupted else 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
