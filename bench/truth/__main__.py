"""python -m bench.truth render --set smoke [--out DIR] [--size N] [--samples N] [--only NAME ...]
python -m bench.truth check --set smoke [--out DIR] [--backend landmarker|facemesh] [--blendshapes fused|solver|model]"""

from __future__ import annotations

import argparse
import json
import sys
import time

from bench.truth.sets import SETS


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
    r.add_argument("--force", action="store_true", help="re-render even if cached")
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

    from bench.truth.render import DEFAULT_CACHE, Renderer, RenderSettings
    kw = {k: v for k, v in (("size", args.size), ("samples", args.samples),
                                         ("fov_deg", args.fov), ("camera_distance", args.distance)) if v is not None}
    specs = SETS[args.set]()
    if args.only:
        specs = [s for s in specs if s.name in args.only]
    t0 = time.perf_counter()
    renderer = Renderer(RenderSettings(**kw))
    print(f"scene ready in {time.perf_counter() - t0:.1f} s; {len(specs)} faces", flush=True)
    out = args.out or DEFAULT_CACHE
    index, times = [], []
    for spec in specs:
        png, sec = renderer.render(spec, out, force=args.force)
        index.append({"name": spec.name, "image": png.name})
        if sec is None:
            print(f"{spec.name:24s} {png.name}  cached", flush=True)
        else:
            times.append(sec)
            print(f"{spec.name:24s} {png.name}  {sec:6.1f} s", flush=True)
    if times:
        print(f"{sum(times) / len(times):.1f} s per image ({len(times)} rendered)")
    from pathlib import Path
    (Path(out) / f"{args.set}.index.json").write_text(json.dumps(index, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
