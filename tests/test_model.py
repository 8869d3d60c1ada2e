"""The FaceLandmarker model file: cache, download, verification, `facemocap-osc model`.

Nothing here reaches the internet: downloads come from tests/support.py's
ModelServer on 127.0.0.1 (the shared model, and broken variants of it), and the
user cache is a temp folder (XDG_CACHE_HOME).
"""

from __future__ import annotations

import io
import os
import socket
import subprocess
from pathlib import Path

import pytest

from bridge.tracking import model
from bridge.tracking.model import MODEL_SHA256, MODEL_SIZE, ModelError
from support import MODEL_FILE, tracker_command

needs_model = pytest.mark.skipif(not MODEL_FILE.is_file(),
                                 reason=f"the shared model {MODEL_FILE} is not there (../shared/data)")


@pytest.fixture
def cache(monkeypatch, tmp_path):
    folder = tmp_path / "cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(folder))
    monkeypatch.delenv("FACEMOCAP_MODEL", raising=False)
    return folder


def _leftovers(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]   # nothing listens there once closed


def test_the_shared_file_is_the_official_one():
    if not MODEL_FILE.is_file():
        pytest.skip(f"{MODEL_FILE} not there")
    assert MODEL_FILE.stat().st_size == MODEL_SIZE
    assert model.sha256_of(MODEL_FILE) == MODEL_SHA256


def test_cache_follows_xdg_cache_home(cache):
    assert model.cached_path() == cache / "facemocap-osc" / "models" / "face_landmarker.task"


@needs_model
def test_download_verifies_and_renames_into_place(cache, model_server, monkeypatch):
    monkeypatch.setenv("FACEMOCAP_MODEL_URL", model_server.url())
    located = model.locate()
    assert located.origin == "download" and located.path == model.cached_path()
    assert model.sha256_of(located.path) == MODEL_SHA256
    assert _leftovers(cache) == [located.path]         # no .part file left
    before = model_server.hits.get("/face_landmarker.task", 0)
    assert model.locate().origin == "cache"             # verified, not fetched again
    assert model_server.hits.get("/face_landmarker.task", 0) == before


@needs_model
def test_progress_bar_on_a_terminal(cache, model_server, monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self):
            return True
    fake = Terminal()
    monkeypatch.setattr("sys.stderr", fake)
    model.fetch(model_server.url(), cache / "m.task", progress=True)
    text = fake.getvalue()
    assert "face_landmarker.task" in text and "100%" in text


@needs_model
@pytest.mark.parametrize("path,expected", [
    ("/404", "HTTP 404"),
    ("/500", "HTTP 500"),
    ("/short.task", "stopped after 100,000 of 3,758,596 bytes (truncated)"),
    ("/cut.task", "stopped after 100,000 of 3,758,596 bytes (truncated)"),
    ("/wrong.task", "not MediaPipe's official face_landmarker.task"),
    ("/big.task", "more than the 3,758,596 bytes"),
])
def test_bad_downloads_are_one_line_and_leave_nothing(cache, model_server, monkeypatch, path, expected):
    monkeypatch.setenv("FACEMOCAP_MODEL_URL", model_server.url(path))
    with pytest.raises(ModelError) as info:
        model.locate()
    message = str(info.value)
    assert expected in message and "\n" not in message, message
    assert "facemocap-osc model download" in message     # and how to go on
    assert _leftovers(cache) == []


def test_no_network(cache, monkeypatch):
    monkeypatch.setenv("FACEMOCAP_MODEL_URL", f"http://127.0.0.1:{_closed_port()}/face_landmarker.task")
    with pytest.raises(ModelError, match="Connection refused"):
        model.locate()
    assert _leftovers(cache) == []


def test_not_a_url(cache, monkeypatch):
    monkeypatch.setenv("FACEMOCAP_MODEL_URL", "ftp://example.invalid/m.task")
    with pytest.raises(ModelError, match="expected an http://, https:// or file:// address"):
        model.locate()


@needs_model
def test_a_file_url_for_air_gapped_machines(cache, monkeypatch):
    monkeypatch.setenv("FACEMOCAP_MODEL_URL", MODEL_FILE.as_uri())
    assert model.locate().origin == "download"
    assert model.sha256_of(model.cached_path()) == MODEL_SHA256


@pytest.mark.skipif(os.geteuid() == 0 if hasattr(os, "geteuid") else True,
                    reason="root can write anywhere; the read-only case is checked with a file in the way")
def test_unwritable_cache_folder(cache, model_server, monkeypatch):
    cache.mkdir()
    cache.chmod(0o500)
    try:
        with pytest.raises(ModelError, match="cannot write to the model cache folder"):
            model.locate()
    finally:
        cache.chmod(0o700)


def test_cache_folder_that_cannot_be_made(cache, model_server, monkeypatch):
    cache.parent.mkdir(exist_ok=True)
    cache.write_text("a file where the cache folder should be")   # works as root too
    with pytest.raises(ModelError) as info:
        model.locate()
    assert "cannot write to the model cache folder" in str(info.value)
    assert "XDG_CACHE_HOME" in str(info.value)


@needs_model
def test_damaged_cache_is_fetched_again(cache, model_server, monkeypatch):
    monkeypatch.setenv("FACEMOCAP_MODEL_URL", model_server.url())
    path = model.cached_path()
    path.parent.mkdir(parents=True)
    path.write_bytes(MODEL_FILE.read_bytes()[:-10] + bytes(10))   # right size, wrong bytes
    with pytest.raises(ModelError, match="damaged"):
        model.locate(download=False)
    assert model.locate().origin == "download"
    assert model.sha256_of(path) == MODEL_SHA256


@needs_model
def test_damaged_cache_and_no_network_keeps_the_old_file(cache, monkeypatch):
    monkeypatch.setenv("FACEMOCAP_MODEL_URL", f"http://127.0.0.1:{_closed_port()}/x")
    path = model.cached_path()
    path.parent.mkdir(parents=True)
    path.write_bytes(b"half a model")
    with pytest.raises(ModelError, match="Connection refused"):
        model.locate()
    assert path.read_bytes() == b"half a model" and len(_leftovers(cache)) == 1


@needs_model
def test_ctrl_c_during_download_leaves_nothing(cache, model_server, monkeypatch):
    import tqdm

    def interrupt(self, n=1):
        raise KeyboardInterrupt
    monkeypatch.setattr(tqdm.tqdm, "update", interrupt)
    with pytest.raises(KeyboardInterrupt):
        model.fetch(model_server.url())
    assert _leftovers(cache) == []


def test_given_files_never_touch_the_network(cache, monkeypatch, tmp_path):
    monkeypatch.setenv("FACEMOCAP_MODEL_URL", f"http://127.0.0.1:{_closed_port()}/x")
    mine = tmp_path / "mine.task"
    mine.write_bytes(b"x")
    assert model.locate(str(mine)) == model.Located(mine, "--model")
    monkeypatch.setenv("FACEMOCAP_MODEL", str(mine))
    assert model.locate() == model.Located(mine, "FACEMOCAP_MODEL")
    monkeypatch.setenv("FACEMOCAP_MODEL", str(tmp_path / "gone.task"))
    with pytest.raises(ModelError, match="FACEMOCAP_MODEL .*gone.task: file not found"):
        model.locate()
    with pytest.raises(ModelError, match="is a folder"):
        model.locate(str(tmp_path))


# --------------------------------------------------------------------------- the command


def _model_cmd(*args, env=None):
    return subprocess.run([*tracker_command(), "model", *args], capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL, env={**os.environ, **(env or {})})


@needs_model
def test_model_commands(cache, model_server):
    env = {"FACEMOCAP_MODEL_URL": model_server.url()}
    where = model.cached_path()
    proc = _model_cmd("path", env=env)
    assert proc.returncode == 1 and proc.stdout.strip() == str(where) and "not downloaded yet" in proc.stderr
    proc = _model_cmd("verify", env=env)
    assert proc.returncode == 2 and "file not found" in proc.stderr
    proc = _model_cmd("download", env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(where) and where.is_file()
    assert "\r" not in proc.stderr                           # no progress bar without a terminal
    proc = _model_cmd("download", env=env)
    assert proc.returncode == 0 and "already downloaded" in proc.stderr
    proc = _model_cmd("path", env=env)
    assert proc.returncode == 0 and proc.stdout.strip() == str(where)
    proc = _model_cmd("verify", env=env)
    assert proc.returncode == 0 and proc.stdout.startswith(f"ok: {where}")
    where.write_bytes(b"damaged")
    proc = _model_cmd("verify", env=env)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1 and "7 bytes" in proc.stderr
    proc = _model_cmd("download", "--force", env={"FACEMOCAP_MODEL_URL": model_server.url("/404")})
    assert proc.returncode == 2 and "HTTP 404" in proc.stderr
    assert where.read_bytes() == b"damaged"                  # a failed download replaces nothing


def test_model_command_usage():
    proc = _model_cmd()
    assert proc.returncode == 2 and "download" in proc.stderr
