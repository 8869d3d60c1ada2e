"""Helpers shared by test modules (pytest puts this folder on sys.path)."""

import shutil
import sys
from pathlib import Path

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def tracker_command() -> list[str]:
    """The installed `facemocap-osc` console script, as users run it."""
    script = Path(sys.executable).with_name("facemocap-osc")
    if script.exists():
        return [str(script)]
    found = shutil.which("facemocap-osc")
    return [found] if found else [sys.executable, "-m", "bridge"]
