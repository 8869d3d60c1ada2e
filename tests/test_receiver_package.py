"""The Blender add-on as shipped: the build command's zip, and that zip installed in bpy."""

import ast
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from importlib.machinery import PathFinder
from pathlib import Path

import pytest

from blender_receiver import build
from blender_receiver.build import BuildError, build_extension

REPO_ROOT = Path(__file__).resolve().parents[1]
SOURCE_DIR = REPO_ROOT / "blender_receiver"
ZIP_NAME = "facemocap_receiver-0.2.0.zip"
WHEEL = "python_osc-1.10.2-py3-none-any.whl"
# The add-on runs inside Blender's Python, which has neither.
FORBIDDEN_IMPORTS = {"bridge", "mediapipe"}


@pytest.fixture(scope="module")
def built_zip(tmp_path_factory):
    # Also fetches the wheel into blender_receiver/wheels/ once, for the copies below.
    return build_extension(tmp_path_factory.mktemp("dist"))


@pytest.fixture
def source_copy(built_zip, tmp_path):
    """A copy of blender_receiver/ (wheels included) that a test may break."""
    copy = tmp_path / "blender_receiver"
    shutil.copytree(SOURCE_DIR, copy, ignore=shutil.ignore_patterns("__pycache__"))
    return copy


def zip_names(zip_path: Path) -> set[str]:
    with zipfile.ZipFile(zip_path) as archive:
        return set(archive.namelist())


def drop_manifest_key(source: Path, key: str) -> None:
    manifest = source / "blender_manifest.toml"
    text = re.sub(rf"(?m)^{key} = .*\n", "", manifest.read_text())
    manifest.write_text(text)


def test_zip_holds_the_addon_at_its_top_level(built_zip):
    names = zip_names(built_zip)
    assert built_zip.name == ZIP_NAME
    assert {"blender_manifest.toml", "__init__.py", f"wheels/{WHEEL}"} <= names
    assert not any(name.split("/")[-1] == "build.py" for name in names)
    assert not any("__pycache__" in name or name.endswith(".pyc") for name in names)
    assert not any(name.startswith("blender_receiver/") for name in names)


def test_default_dist_is_next_to_the_source_folder(source_copy):
    assert build_extension(source_dir=source_copy) == source_copy.parent / "dist" / ZIP_NAME


def test_repeated_builds_are_identical(built_zip, tmp_path):
    assert build_extension(tmp_path).read_bytes() == built_zip.read_bytes()


def test_only_listed_wheels_are_shipped(source_copy, tmp_path):
    (source_copy / "wheels" / "stale-0.1-py3-none-any.whl").write_bytes(b"not listed")
    names = zip_names(build_extension(tmp_path, source_copy))
    assert [name for name in names if name.startswith("wheels/")] == [f"wheels/{WHEEL}"]


@pytest.mark.parametrize("key", build.REQUIRED_KEYS)
def test_missing_manifest_key_is_named(source_copy, tmp_path, key):
    drop_manifest_key(source_copy, key)
    with pytest.raises(BuildError, match=f"^blender_manifest.toml: missing key '{key}'$"):
        build_extension(tmp_path, source_copy)


def test_wheel_entries_must_point_into_wheels(source_copy, tmp_path):
    manifest = source_copy / "blender_manifest.toml"
    manifest.write_text(manifest.read_text().replace("./wheels/", "./vendor/"))
    with pytest.raises(BuildError, match="^blender_manifest.toml: key 'wheels': .*'./vendor/"):
        build_extension(tmp_path, source_copy)


def test_cli_error_is_one_line_and_exit_2(source_copy, tmp_path, monkeypatch, capsys):
    drop_manifest_key(source_copy, "version")
    monkeypatch.setattr(build, "SOURCE_DIR", source_copy)
    assert build.main(["--dist", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err == "facemocap-receiver build: error: blender_manifest.toml: missing key 'version'\n"


def test_cli_runs_without_blender_or_bridge(built_zip, tmp_path):
    # Setting a sys.modules entry to None makes importing that name fail.
    code = (
        "import runpy, sys; sys.modules['bpy'] = sys.modules['bridge'] = None; "
        "sys.argv = ['build', '--dist', sys.argv[1]]; "
        "runpy.run_module('blender_receiver.build', run_name='__main__')"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{tmp_path / ZIP_NAME}\n"


def test_wheel_requirement_from_file_name():
    assert build.wheel_requirement(WHEEL) == "python-osc==1.10.2"


def test_missing_wheel_is_fetched_with_pip(source_copy, tmp_path, monkeypatch):
    shutil.rmtree(source_copy / "wheels")
    calls = []

    def fake_pip(command, **kwargs):
        calls.append(command)
        dest = Path(command[command.index("--dest") + 1])
        (dest / WHEEL).write_bytes(b"wheel")
        return subprocess.CompletedProcess(command, 0, "", "")

    monkeypatch.setattr(build.subprocess, "run", fake_pip)
    build_extension(tmp_path, source_copy)
    assert calls == [[
        sys.executable, "-m", "pip", "download", "python-osc==1.10.2",
        "--no-deps", "--only-binary=:all:", "--dest", str(source_copy / "wheels"),
    ]]
    build_extension(tmp_path, source_copy)
    assert len(calls) == 1, "a cached wheel must be reused"


def test_wheel_pip_did_not_produce_is_an_error(source_copy, tmp_path, monkeypatch):
    shutil.rmtree(source_copy / "wheels")
    monkeypatch.setattr(
        build.subprocess, "run", lambda command, **kw: subprocess.CompletedProcess(command, 0)
    )
    with pytest.raises(BuildError, match=f"wheels/{WHEEL}' is still missing"):
        build_extension(tmp_path, source_copy)


def absolute_imports(source: str) -> set[str]:
    """Top-level names of the absolute imports in `source` (relative ones are the add-on's own)."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_addon_source_never_imports_bridge_or_mediapipe(built_zip):
    with zipfile.ZipFile(built_zip) as archive:
        sources = {n: archive.read(n).decode() for n in archive.namelist() if n.endswith(".py")}
    assert "__init__.py" in sources
    offenders = {
        name: sorted(absolute_imports(text) & FORBIDDEN_IMPORTS) for name, text in sources.items()
    }
    assert {name: found for name, found in offenders.items() if found} == {}


def built_manifest(zip_path: Path) -> dict:
    with zipfile.ZipFile(zip_path) as archive:
        return tomllib.loads(archive.read("blender_manifest.toml").decode())


def terse_text_error(value) -> str | None:
    """Blender's rule for a tagline or permission reason (its extension validator,
    4.2 to 5.2): a string of at most 64 characters with no surrounding space or
    control characters, ending in a letter, digit or closing bracket (never a period)."""
    if not isinstance(value, str) or not value or value != value.strip():
        return f"{value!r} is not a non-empty stripped string"
    if len(value) > 64:
        return f"{value!r} is {len(value)} characters, more than 64"
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        return f"{value!r} has a control character"
    if not (value[-1].isalnum() or value[-1] in ")]}"):
        return f"{value!r} ends in punctuation"
    return None


def test_built_manifest_declares_the_network_permission(built_zip):
    # The add-on binds a UDP socket to receive the stream, which Blender's
    # extension policy counts as network access: it must be declared, with a reason.
    manifest = built_manifest(built_zip)
    assert manifest["permissions"].keys() == {"network"}
    reason = manifest["permissions"]["network"]
    assert terse_text_error(reason) is None
    assert "UDP" in reason
    assert terse_text_error(manifest["tagline"]) is None


# --- installed in a real Blender (skipped without bpy) -----------------------------


def test_addon_is_enabled_in_blender(blender_addon):
    import addon_utils
    import bpy

    assert blender_addon.__name__ == "bl_ext.user_default.facemocap_receiver"
    assert addon_utils.check(blender_addon.__name__) == (True, True)
    assert blender_addon.__name__ in bpy.context.preferences.addons


def test_addon_is_installed_in_the_temp_user_folder(blender_addon, tmp_path_factory):
    import bpy

    extensions = Path(bpy.utils.user_resource("EXTENSIONS"))
    assert extensions.is_relative_to(tmp_path_factory.getbasetemp())
    assert Path(blender_addon.__file__).parent == extensions / "user_default" / "facemocap_receiver"


def test_wheel_is_installed_into_blender_site_packages(blender_addon):
    import bpy

    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    extensions = Path(bpy.utils.user_resource("EXTENSIONS"))
    site_packages = extensions / ".local" / "lib" / version / "site-packages"
    assert (site_packages / "pythonosc" / "__init__.py").is_file()
    assert str(site_packages) in sys.path
    # In a venv the venv's own python-osc may come first on sys.path; in Blender
    # proper this folder is what the add-on imports from.
    assert PathFinder.find_spec("pythonosc", [str(site_packages)]) is not None
    import pythonosc  # noqa: F401


@pytest.mark.parametrize("run", ["first", "second"])
def test_blender_scene_starts_empty_with_the_addon_enabled(blender_addon, blender_scene, run):
    # Run twice: the second run sees whatever the first left behind, unless the
    # fixture cleared it.
    import addon_utils
    import bpy

    data = bpy.data
    assert not (data.objects or data.meshes or data.armatures or data.actions)
    assert addon_utils.check(blender_addon.__name__) == (True, True)

    armature = data.armatures.new(f"leftover-{run}")
    blender_scene.collection.objects.link(data.objects.new(f"leftover-{run}", armature))
    data.actions.new(f"leftover-{run}")
    data.meshes.new(f"leftover-{run}")


def blender_validate(path: Path) -> subprocess.CompletedProcess:
    """`blender --command extension validate --valid-tags <Blender's tags> <path>` (a zip
    or a source folder), run as the script behind it with this Python, so no Blender
    binary is needed."""
    import bpy

    scripts = Path(bpy.utils.system_resource("SCRIPTS"))
    cli = scripts / "addons_core" / "bl_pkg" / "cli" / "blender_ext.py"
    tags = scripts / "modules" / "_bpy_internal" / "extensions" / "tags.py"
    assert cli.is_file() and tags.is_file(), f"no extension validator under {scripts}"
    command = [sys.executable, str(cli), "validate", "--valid-tags", str(tags), str(path)]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def test_blender_validates_the_built_zip(blender_addon, built_zip):
    result = blender_validate(built_zip)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("reason", [
    "Receive face-tracking data over UDP.",
    "Receive face-tracking data from a tracker over UDP on the local network",
])
def test_blender_rejects_a_network_reason_that_breaks_its_rule(blender_addon, source_copy, reason):
    # Shows the validator above is in force, and agrees with terse_text_error. The
    # folder, not a zip: for a zip it only says "archive has no manifest".
    assert terse_text_error(reason) is not None
    manifest = source_copy / "blender_manifest.toml"
    text, count = re.subn(r'(?m)^network = ".*"$', f'network = "{reason}"', manifest.read_text())
    assert count == 1
    manifest.write_text(text)
    result = blender_validate(source_copy)
    assert result.returncode != 0
    assert 'value of "network"' in result.stdout + result.stderr
