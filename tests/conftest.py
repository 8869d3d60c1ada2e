"""Shared fixtures: a real Blender (bpy) with the built receiver add-on installed.

`blender_addon` builds the extension zip with the project's own build command and
installs it the way a user's "Install from Disk" does, so tests exercise the zip
that ships, not the source folder. Tests that need bpy should take one of these
fixtures and `import bpy` inside the test: importing bpy at module level would
start Blender before the fixture can point its user folders at a temp dir.
"""

import os
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
ADDON_ID = "facemocap_receiver"
ADDON_REPO = "user_default"  # the local repository every Blender 4.2+ has
ADDON_MODULE = f"bl_ext.{ADDON_REPO}.{ADDON_ID}"
BPY_MISSING = ("bpy (Blender as a Python module) is not installed; the test extra installs bpy==5.0.1 "
               "on Python 3.11 and bpy==5.2.3 on Python 3.13")


@pytest.fixture(scope="session", autouse=True)
def model_server(tmp_path_factory):
    """Tests never reach the internet: the model's download URL is a local server
    (tests/support.py ModelServer, serving ../shared/data's model) and the user cache
    is a temp folder, for this process and the tracker processes tests start. The
    first run that needs the model downloads it from there, as a user's would."""
    from support import ModelServer

    server = ModelServer()
    saved = {k: os.environ.get(k) for k in ("FACEMOCAP_MODEL", "FACEMOCAP_MODEL_URL", "XDG_CACHE_HOME")}
    os.environ.pop("FACEMOCAP_MODEL", None)
    os.environ["FACEMOCAP_MODEL_URL"] = server.url()
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("user_cache"))
    yield server
    server.close()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


# blender_receiver is not an installed package: `python -m pytest` finds it through
# the working directory, plain `pytest` would not. Appended so it never shadows
# an installed package.
if str(REPO_ROOT) not in sys.path:
    sys.path.append(str(REPO_ROOT))


def _blender_user_env(user_dir: Path) -> dict[str, str]:
    # BLENDER_USER_RESOURCES alone moves every user folder, but the per-folder
    # variables override it, so a developer's own BLENDER_USER_CONFIG (or similar)
    # would leak through: set them all.
    return {
        "BLENDER_USER_RESOURCES": str(user_dir),
        "BLENDER_USER_CONFIG": str(user_dir / "config"),
        "BLENDER_USER_SCRIPTS": str(user_dir / "scripts"),
        "BLENDER_USER_DATAFILES": str(user_dir / "datafiles"),
        "BLENDER_USER_EXTENSIONS": str(user_dir / "extensions"),
    }


def _point_blender_at(user_dir: Path) -> None:
    # Blender reads preferences and scripts from these folders when bpy is first
    # imported, so that import must come after this.
    if sys.modules.get("bpy") is not None:
        pytest.fail(
            "bpy was imported before the blender_addon fixture, so Blender already uses the "
            "real user folders: import bpy inside tests, not at module level"
        )
    # Not restored at teardown: Blender resolves these variables again on every
    # user-folder lookup, for as long as the process lives.
    os.environ.update(_blender_user_env(user_dir))


def _install(bpy, zip_path: Path) -> None:
    # Failures in the add-on's register() surface as RuntimeError from the operator.
    try:
        result = bpy.ops.extensions.package_install_files(
            filepath=str(zip_path), repo=ADDON_REPO, enable_on_install=True
        )
    except RuntimeError as exc:
        pytest.fail(f"installing {zip_path.name} into Blender failed: {exc}")
    assert result == {"FINISHED"}, f"installing {zip_path.name} returned {result}"


def _ensure_enabled(bpy) -> None:
    import addon_utils

    if not addon_utils.check(ADDON_MODULE)[1]:
        bpy.ops.preferences.addon_enable(module=ADDON_MODULE)
    assert addon_utils.check(ADDON_MODULE) == (True, True), f"{ADDON_MODULE} is not enabled"


@pytest.fixture(scope="session")
def blender_addon(tmp_path_factory):
    """The enabled add-on module (`bl_ext.user_default.facemocap_receiver`)."""
    _point_blender_at(tmp_path_factory.mktemp("blender_user"))
    bpy = pytest.importorskip("bpy", reason=BPY_MISSING)
    from blender_receiver.build import build_extension

    zip_path = build_extension(tmp_path_factory.mktemp("blender_dist"))
    # Factory settings first: resetting later would unregister the add-on.
    bpy.ops.wm.read_factory_settings(use_empty=True)
    _install(bpy, zip_path)
    _ensure_enabled(bpy)
    yield sys.modules[ADDON_MODULE]
    # Disabling runs the add-on's unregister(); an exception there makes the
    # operator raise, which pytest reports as a teardown error.
    bpy.ops.preferences.addon_disable(module=ADDON_MODULE)


@pytest.fixture
def blender_scene(blender_addon):
    """An empty scene for each test, with the add-on still enabled.

    read_homefile() replaces all data (objects, meshes, armatures, actions) but
    keeps preferences, so enabled add-ons stay enabled; read_factory_settings()
    would disable them.
    """
    import bpy

    bpy.ops.wm.read_homefile(use_empty=True)
    # A test that reset to factory settings would have disabled the add-on.
    _ensure_enabled(bpy)
    return bpy.context.scene
