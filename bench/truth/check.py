"""Track rendered faces with the real tracker (`facemocap-osc export`) and compare.

``python -m bench.truth check --set smoke [--out DIR] [--backend landmarker|facemesh]
[--blendshapes fused|solver|model] [--model PATH]`` links the set's renders, in set order,
into a temporary folder, exports them as photos to CSV and prints, per image, whether a
face was found and the readings of the channels the smoke set exercises next to what was
rendered.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

COLUMNS = ("jawOpen", "eyeBlinkLeft", "eyeBlinkRight", "mouthSmileLeft", "mouthSmileRight",
           "leftEyeYaw", "leftEyePitch", "rightEyeYaw", "rightEyePitch", "headYaw", "headPitch", "headRoll")


def track(images: list[Path], backend="landmarker", blendshapes="fused", model=None, exe=None) -> list[dict]:
    exe = exe or shutil.which("facemocap-osc") or str(Path(sys.executable).with_name("facemocap-osc"))
    with tempfile.TemporaryDirectory() as tmp:
        for i, img in enumerate(images):
            os.symlink(Path(img).resolve(), Path(tmp) / f"{i:05d}.png")
        out = Path(tmp) / "out.csv"
        cmd = [exe, "export", tmp, "-o", str(out), "--format", "csv", "--backend", backend,
               "--blendshapes", blendshapes, "--quiet"]
        if model:
            cmd += ["--model", str(model)]
        subprocess.run(cmd, check=True)
        with open(out, newline="") as f:
            rows = list(csv.DictReader(f))
    if len(rows) != len(images):
        raise RuntimeError(f"{len(images)} images but {len(rows)} rows")
    return rows


def check(out_dir: Path, set_name: str, backend: str, blendshapes: str, model=None) -> list[dict]:
    index = json.loads((out_dir / f"{set_name}.index.json").read_text())
    images = [out_dir / e["image"] for e in index]
    rows = track(images, backend, blendshapes, model)
    table = []
    for e, img, row in zip(index, images, rows):
        meta = json.loads(img.with_suffix(".json").read_text())
        rec = {"name": e["name"], "found": row["found"] in ("1", "True", "true")}
        rec.update({c: float(row[c]) for c in COLUMNS})
        rec["rendered"] = meta["spec"]
        table.append(rec)
    return table


def print_table(table: list[dict], title: str) -> None:
    short = ("jaw", "blkL", "blkR", "smlL", "smlR", "LyYaw", "LyPit", "RyYaw", "RyPit", "hYaw", "hPit", "hRol")
    print(f"\n{title}")
    print(f"{'image':18s} face " + " ".join(f"{s:>6s}" for s in short) + "   rendered")
    for r in table:
        sp = r["rendered"]
        what = ", ".join(f"{k} {v:g}" for k, v in sp["weights"].items())
        g, h = sp["gaze"], sp["head"]
        if g["yaw"] or g["pitch"]:
            what += f" gaze yaw {g['yaw']:+g} pitch {g['pitch']:+g}"
        if h["yaw"] or h["pitch"] or h["roll"]:
            what += f" head yaw {h['yaw']:+g} pitch {h['pitch']:+g} roll {h['roll']:+g}"
        vals = " ".join(f"{r[c]:6.2f}" if abs(r[c]) < 10 else f"{r[c]:6.1f}" for c in COLUMNS)
        print(f"{r['name'][:18]:18s} {'yes ' if r['found'] else 'NO  '} {vals}   {what or 'neutral'} (id {sp['identity_seed']})")
