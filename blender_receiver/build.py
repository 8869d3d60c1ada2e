"""Build the FaceMocap Receiver Blender extension zip.

    python -m blender_receiver.build [--dist DIR]

Writes `<dist>/<id>-<version>.zip` with `blender_manifest.toml` at the zip root, as
Blender's "Install from Disk" expects. The wheels the manifest lists are fetched
with pip into `blender_receiver/wheels/` when missing, and reused when present.

This runs on machines without Blender: it must never import bpy or `bridge`.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

SOURCE_DIR = Path(__file__).resolve().parent
MANIFEST = "blender_manifest.toml"
REQUIRED_KEYS = (
    "schema_version",
    "id",
    "version",
    "name",
    "type",
    "blender_version_min",
    "license",
)
WHEEL_ENTRY = re.compile(r"\./wheels/([^/\\]+\.whl)")
# Folders that are build inputs or by-products, never add-on code. `wheels/` is
# handled separately so only the wheels the manifest lists are shipped.
SKIPPED_DIRS = {"__pycache__", "dist", "wheels"}
SKIPPED_FILES = {"build.py"}
# A fixed timestamp so two builds of the same tree give byte-identical zips.
ZIP_DATE = (1980, 1, 1, 0, 0, 0)


class BuildError(Exception):
    """A problem with the add-on sources; main() reports it as one line."""


def read_manifest(source_dir: Path) -> dict:
    path = source_dir / MANIFEST
    try:
        manifest = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BuildError(f"{MANIFEST}: not found in {source_dir}") from None
    except tomllib.TOMLDecodeError as exc:
        raise BuildError(f"{MANIFEST}: invalid TOML: {exc}") from None
    validate_manifest(manifest)
    return manifest


def validate_manifest(manifest: dict) -> None:
    for key in REQUIRED_KEYS:
        if key not in manifest:
            raise BuildError(f"{MANIFEST}: missing key '{key}'")
    wheels = manifest.get("wheels", [])
    if not isinstance(wheels, list):
        raise BuildError(f"{MANIFEST}: key 'wheels' must be a list")
    for entry in wheels:
        if not isinstance(entry, str) or not WHEEL_ENTRY.fullmatch(entry):
            raise BuildError(
                f"{MANIFEST}: key 'wheels': entry {entry!r} is not './wheels/<file>.whl'"
            )


def wheel_names(manifest: dict) -> list[str]:
    return [WHEEL_ENTRY.fullmatch(entry).group(1) for entry in manifest.get("wheels", [])]


def wheel_requirement(filename: str) -> str:
    """`python_osc-1.10.2-py3-none-any.whl` -> `python-osc==1.10.2` (PEP 427 names)."""
    parts = filename[: -len(".whl")].split("-")
    if len(parts) not in (5, 6):
        raise BuildError(f"{MANIFEST}: key 'wheels': {filename!r} is not a wheel file name")
    name, version = parts[0], parts[1]
    return f"{name.replace('_', '-')}=={version}"


def fetch_wheel(wheels_dir: Path, filename: str) -> None:
    requirement = wheel_requirement(filename)
    command = [
        sys.executable, "-m", "pip", "download", requirement,
        "--no-deps", "--only-binary=:all:", "--dest", str(wheels_dir),
    ]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        detail = lines[-1] if lines else f"exit status {result.returncode}"
        raise BuildError(f"pip download {requirement} failed: {detail}")


def ensure_wheels(source_dir: Path, filenames: list[str]) -> list[Path]:
    wheels_dir = source_dir / "wheels"
    paths = []
    for filename in filenames:
        path = wheels_dir / filename
        if not path.is_file():
            wheels_dir.mkdir(exist_ok=True)
            fetch_wheel(wheels_dir, filename)
        # pip may pick a different file for the same version (another tag): the
        # manifest names one exact file, so that file has to be there.
        if not path.is_file():
            raise BuildError(
                f"{MANIFEST}: wheel 'wheels/{filename}' is still missing after pip download; "
                f"check the file name in key 'wheels'"
            )
        paths.append(path)
    return paths


def is_addon_file(relative: Path) -> bool:
    parts = relative.parts
    if any(part.startswith(".") for part in parts):
        return False
    if parts[0] in SKIPPED_DIRS or "__pycache__" in parts:
        return False
    return relative.suffix != ".pyc" and relative.as_posix() not in SKIPPED_FILES


def addon_files(source_dir: Path, dist_dir: Path) -> list[Path]:
    files = []
    for path in source_dir.rglob("*"):
        # A --dist inside the source folder must not pack old zips into new ones.
        if not path.is_file() or path.is_relative_to(dist_dir):
            continue
        if is_addon_file(path.relative_to(source_dir)):
            files.append(path)
    return files


def write_zip(zip_path: Path, source_dir: Path, files: list[Path]) -> None:
    zip_path.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = zip_path.with_name(zip_path.name + ".tmp")
    with zipfile.ZipFile(tmp_path, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(files, key=lambda p: p.relative_to(source_dir).as_posix()):
            info = zipfile.ZipInfo(path.relative_to(source_dir).as_posix(), ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, path.read_bytes())
    # Replace at the end so an interrupted build never leaves a half-written zip.
    tmp_path.replace(zip_path)


def build_extension(dist_dir: Path | None = None, source_dir: Path | None = None) -> Path:
    """Build the extension zip and return its path."""
    source_dir = Path(source_dir or SOURCE_DIR).resolve()
    dist_dir = Path(dist_dir or source_dir.parent / "dist").resolve()
    manifest = read_manifest(source_dir)
    wheels = ensure_wheels(source_dir, wheel_names(manifest))
    files = addon_files(source_dir, dist_dir) + wheels
    zip_path = dist_dir / f"{manifest['id']}-{manifest['version']}.zip"
    write_zip(zip_path, source_dir, files)
    return zip_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m blender_receiver.build",
        description="Build the FaceMocap Receiver Blender extension zip.",
    )
    parser.add_argument(
        "--dist", type=Path, default=None,
        help="output folder (default: dist/ next to blender_receiver/)",
    )
    args = parser.parse_args(argv)
    try:
        zip_path = build_extension(args.dist)
    except (BuildError, OSError) as exc:
        print(f"facemocap-receiver build: error: {exc}", file=sys.stderr)
        return 2
    print(zip_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
