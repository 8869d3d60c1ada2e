"""The FaceLandmarker model file: where it is, fetching it, checking it.

MediaPipe does not download models; apps do. We use MediaPipe's official
``face_landmarker.task`` (float16, v1), kept in the user cache folder
(platformdirs: ``~/.cache/facemocap-osc/models`` on Linux, honouring
``XDG_CACHE_HOME``; ``~/Library/Caches/facemocap-osc/models`` on macOS;
``%LOCALAPPDATA%\\facemocap-osc\\Cache\\models`` on Windows).

Where the model comes from, first match wins:
1. ``--model PATH`` (any FaceLandmarker bundle; never the network);
2. the environment variable ``FACEMOCAP_MODEL`` (a file; never the network);
3. the cached file, checked by size and sha256 on every start (a damaged one is
   fetched again);
4. a download from ``FACEMOCAP_MODEL_URL`` (a studio mirror, a file:// URL on an
   air-gapped machine) or else MediaPipe's own address. Proxies come from the
   standard variables (``https_proxy``, ``no_proxy`` ...), as urllib reads them.

A download goes to a temporary file beside the cache entry, is checked against
the official size and sha256, and only then renamed into place: the cache never
holds half a file, whatever fails (network, HTTP error, a truncated or wrong file,
Ctrl-C).
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import logging
import os
import socket
import ssl
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from bridge import __version__

log = logging.getLogger("facemocap.tracking")

MODEL_NAME = "face_landmarker.task"
MODEL_SIZE = 3_758_596
MODEL_SHA256 = "64184e229b263107bc2b804c6625db1341ff2bb731874b0bcc2fe6544e0bc9ff"
MODEL_URL = ("https://storage.googleapis.com/mediapipe-models/face_landmarker/"
             "face_landmarker/float16/1/face_landmarker.task")
ENV_MODEL = "FACEMOCAP_MODEL"
ENV_URL = "FACEMOCAP_MODEL_URL"
TIMEOUT = 30.0          # seconds without a byte before a download gives up
_CHUNK = 64 * 1024
HOW_TO_GET = (f"run `facemocap-osc model download` when online, or give --model PATH or "
              f"{ENV_MODEL}=PATH (a {MODEL_NAME} file)")


class ModelError(Exception):
    """A one-line, user-facing message about the model file."""


@dataclass
class Located:
    path: Path
    origin: str          # "--model", FACEMOCAP_MODEL, "cache" or "download"


def cache_dir() -> Path:
    import platformdirs
    return Path(platformdirs.user_cache_dir("facemocap-osc", appauthor=False)) / "models"


def cached_path() -> Path:
    return cache_dir() / MODEL_NAME


def model_url() -> str:
    return os.environ.get(ENV_URL, "").strip() or MODEL_URL


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check(path: Path) -> None:
    """Raise ModelError unless ``path`` is MediaPipe's official bundle (size, sha256)."""
    try:
        size = path.stat().st_size
        if size != MODEL_SIZE:
            raise ModelError(f"{path}: {size:,} bytes, expected {MODEL_SIZE:,} "
                             f"(a truncated or different file)")
        digest = sha256_of(path)
    except FileNotFoundError:
        raise ModelError(f"{path}: file not found") from None
    except OSError as exc:
        raise ModelError(f"{path}: cannot be read: {exc.strerror or exc}") from None
    if digest != MODEL_SHA256:
        raise ModelError(f"{path}: sha256 {digest[:16]}…, expected {MODEL_SHA256[:16]}… "
                         f"(not MediaPipe's official {MODEL_NAME})")


def _given_file(path: str, origin: str) -> Located:
    p = Path(path).expanduser()
    if not p.exists():
        raise ModelError(f"{origin} {path}: file not found")
    if p.is_dir():
        raise ModelError(f"{origin} {path}: is a folder, not a {MODEL_NAME} file")
    return Located(p, origin)


def locate(given: str | None = None, *, download: bool = True) -> Located:
    """The model to use (see the module docstring for the order).

    download=False: never touch the network; a missing model is a ModelError.
    Raises ModelError with one line saying what went wrong and how to fix it.
    """
    if given:
        return _given_file(given, "--model")
    env = os.environ.get(ENV_MODEL, "").strip()
    if env:
        return _given_file(env, ENV_MODEL)
    path = cached_path()
    if path.exists():
        try:
            check(path)
            return Located(path, "cache")
        except ModelError as damaged:
            if not download:
                raise ModelError(f"the cached model is damaged ({damaged}); {HOW_TO_GET}") from None
            log.warning("the cached model is damaged (%s); downloading it again", damaged)
    elif not download:
        raise ModelError(f"no face landmarker model in {path.parent}; {HOW_TO_GET}")
    try:
        return Located(fetch(), "download")
    except ModelError as error:
        raise ModelError(f"{error}; {HOW_TO_GET}") from None


def _ssl_context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    # python.org's macOS builds ship without CA certificates; certifi (which
    # mediapipe installs) has them.
    if not context.get_ca_certs() and not os.environ.get("SSL_CERT_FILE"):
        try:
            import certifi
            context.load_verify_locations(certifi.where())
        except Exception:
            pass
    return context


def _reason(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}".strip()
    if isinstance(exc, urllib.error.URLError):
        exc = exc.reason if isinstance(exc.reason, BaseException) else exc
        if isinstance(exc, str):
            return exc
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return f"no answer for {TIMEOUT:g} s"
    if isinstance(exc, ssl.SSLError):
        return f"TLS: {exc.reason or exc}"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def fetch(url: str | None = None, dest: Path | None = None, *, progress: bool | None = None) -> Path:
    """Download the model to ``dest`` (default: the cache), verified, atomically.

    progress: a tqdm bar on stderr; None = only when stderr is a terminal.
    """
    from tqdm import tqdm

    url = url or model_url()
    dest = Path(dest) if dest is not None else cached_path()
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if scheme not in ("http", "https", "file"):
        raise ModelError(f"{ENV_URL if url != MODEL_URL else 'model URL'} {url!r}: "
                         f"expected an http://, https:// or file:// address")
    where = f"cannot download the face landmarker model from {url}"
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = tempfile.NamedTemporaryFile(dir=dest.parent, prefix=f".{MODEL_NAME}.", suffix=".part",
                                          delete=False)
    except OSError as exc:
        raise ModelError(f"cannot write to the model cache folder {dest.parent}: "
                         f"{exc.strerror or exc} (set XDG_CACHE_HOME to a writable folder, "
                         f"or {ENV_MODEL} to a downloaded file)") from None
    tmp_path = Path(tmp.name)
    try:
        log.info("downloading the face landmarker model (%.1f MB) from %s", MODEL_SIZE / 1e6, url)
        digest = hashlib.sha256()
        got = 0
        try:
            request = urllib.request.Request(url, headers={"User-Agent": f"facemocap-osc/{__version__}"})
            context = _ssl_context() if scheme == "https" else None
            with urllib.request.urlopen(request, timeout=TIMEOUT, context=context) as response, \
                    tqdm(total=MODEL_SIZE, unit="B", unit_scale=True, unit_divisor=1024, desc=MODEL_NAME,
                         file=sys.stderr, disable=(None if progress is None else not progress),
                         leave=True) as bar:
                while True:
                    block = response.read(_CHUNK)
                    if not block:
                        break
                    got += len(block)
                    if got > MODEL_SIZE:
                        raise ModelError(f"{where}: it sent more than the {MODEL_SIZE:,} bytes of "
                                         f"MediaPipe's {MODEL_NAME} (a different file)")
                    digest.update(block)
                    tmp.write(block)
                    bar.update(len(block))
        except ModelError:
            raise
        except http.client.IncompleteRead:
            raise ModelError(f"{where}: the download stopped after {got:,} of {MODEL_SIZE:,} bytes "
                             f"(truncated)") from None
        except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as exc:
            after = f" after {got:,} of {MODEL_SIZE:,} bytes" if got else ""
            raise ModelError(f"{where}: {_reason(exc)}{after}") from None
        if got != MODEL_SIZE:
            raise ModelError(f"{where}: the download stopped after {got:,} of {MODEL_SIZE:,} bytes (truncated)")
        if digest.hexdigest() != MODEL_SHA256:
            raise ModelError(f"{where}: sha256 {digest.hexdigest()[:16]}…, expected {MODEL_SHA256[:16]}… "
                             f"(not MediaPipe's official {MODEL_NAME})")
        try:
            tmp.flush()
            os.fsync(tmp.fileno())
            tmp.close()
            os.replace(tmp_path, dest)
        except OSError as exc:
            raise ModelError(f"cannot save the model to {dest}: {exc.strerror or exc}") from None
        log.info("saved the face landmarker model to %s", dest)
        return dest
    finally:
        if not tmp.closed:
            tmp.close()
        if tmp_path.exists():
            try:
                tmp_path.unlink()
            except OSError:
                pass


# --------------------------------------------------------------------------- `facemocap-osc model`


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="facemocap-osc model",
        description=f"The FaceLandmarker model file ({MODEL_NAME}, {MODEL_SIZE:,} bytes).",
        epilog=f"Environment: {ENV_MODEL}=PATH uses that file; {ENV_URL}=URL downloads from a mirror; "
               f"XDG_CACHE_HOME moves the cache (Linux). Exit codes: 0 ok, 1 `path`: not downloaded "
               f"yet, 2 error.")
    sub = p.add_subparsers(dest="command", metavar="{download,path,verify}", required=True)
    d = sub.add_parser("download", help="fetch the model into the cache (verified); nothing to do if it is there")
    d.add_argument("--force", action="store_true", help="download again even if the cached copy is good")
    sub.add_parser("path", help="print where the model is (or would be, once downloaded)")
    v = sub.add_parser("verify", help="check the model's size and sha256")
    v.add_argument("path", nargs="?", help=f"the file to check (default: {ENV_MODEL}, else the cached copy)")
    return p


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.WARNING, format="facemocap-osc: %(message)s", stream=sys.stderr)
    logging.getLogger("facemocap").setLevel(logging.INFO)
    args = _parser().parse_args(argv)
    try:
        if args.command == "download":
            path = cached_path()
            if not args.force and path.exists():
                try:
                    check(path)
                    print(path)
                    log.info("already downloaded and verified")
                    return 0
                except ModelError as damaged:
                    log.warning("the cached model is damaged (%s); downloading it again", damaged)
            print(fetch(dest=path))
            return 0
        if args.command == "path":
            env = os.environ.get(ENV_MODEL, "").strip()
            path = Path(env).expanduser() if env else cached_path()
            print(path)
            if not path.is_file():
                print(f"facemocap-osc: {'that file does not exist' if env else 'not downloaded yet'} "
                      f"(`facemocap-osc model download` fetches it)", file=sys.stderr)
                return 1
            return 0
        # verify
        env = os.environ.get(ENV_MODEL, "").strip()
        path = Path(args.path or env or cached_path()).expanduser()
        check(path)
        print(f"ok: {path} ({MODEL_SIZE:,} bytes, sha256 {MODEL_SHA256[:16]}…)")
        return 0
    except ModelError as error:
        print(f"facemocap-osc: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
