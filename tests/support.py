"""Helpers shared by test modules (pytest puts this folder on sys.path)."""

import shutil
import socket
import sys
import threading
import time
from pathlib import Path

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def localhost_address() -> tuple[int, str]:
    """(family, address) that UdpTarget sends to for the name localhost: 127.0.0.1
    wherever localhost has an IPv4 address (also on Debian 13, which lists ::1 first)."""
    from bridge.send import resolve
    family, _, _, sockaddr = resolve("localhost", 0)
    return family, sockaddr[0]


def tracker_command() -> list[str]:
    """The installed `facemocap-osc` console script, as users run it."""
    script = Path(sys.executable).with_name("facemocap-osc")
    if script.exists():
        return [str(script)]
    found = shutil.which("facemocap-osc")
    return [found] if found else [sys.executable, "-m", "bridge"]


MODEL_FILE = SHARED_DATA / "models" / "face_landmarker.task"


def backend_skip(backend: str) -> str | None:
    """Why tracking `backend` cannot run in this environment, or None."""
    if backend == "facemesh":
        from bridge.tracking import facemesh_available

        if not facemesh_available():
            return ('facemesh backend: the installed mediapipe has no legacy Face Mesh (it needs mediapipe '
                    '0.10.21: pip install ".[legacy]" on Python <= 3.12)')
        return None
    if not MODEL_FILE.is_file():
        return f"landmarker backend: the shared model {MODEL_FILE} is absent (see ../shared/data/SOURCES.md)"
    return None


class ModelServer:
    """A local HTTP server standing in for MediaPipe's model host, so tests never reach
    the internet. Paths:
      /face_landmarker.task  the shared model (404 when ../shared/data is absent)
      /short.task            its first 100,000 bytes, honestly labelled (a truncated file)
      /cut.task              announces the full size, closes after 100,000 bytes
      /wrong.task            the right size, wrong bytes
      /big.task              more bytes than the model has
      /500                   HTTP 500; anything else 404
    ``hits`` counts requests per path."""

    def __init__(self):
        import http.server
        import threading

        model = MODEL_FILE.read_bytes() if MODEL_FILE.is_file() else None
        hits: dict[str, int] = {}
        self.hits = hits

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):   # quiet
                pass

            def _send(self, body: bytes, *, length: int | None = None, status: int = 200):
                self.send_response(status)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(body) if length is None else length))
                self.end_headers()
                try:
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def do_GET(self):
                path = self.path.split("?")[0]
                hits[path] = hits.get(path, 0) + 1
                if path == "/500":
                    return self._send(b"boom", status=500)
                if model is None:
                    return self._send(b"not found", status=404)
                if path == "/face_landmarker.task":
                    return self._send(model)
                if path == "/short.task":
                    return self._send(model[:100_000])
                if path == "/cut.task":
                    self._send(model[:100_000], length=len(model))
                    self.close_connection = True
                    return
                if path == "/wrong.task":
                    return self._send(bytes(len(model)))
                if path == "/big.task":
                    return self._send(model + bytes(1000))
                return self._send(b"not found", status=404)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str = "/face_landmarker.task") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def demo_solver(**options):
    """A Solver that knows the demo face's rest (the canonical face's measures) as an
    explicit neutral: the synthetic face is a person whose neutral is known, so its
    expressions read from 0 at once instead of after the automatic neutral settles
    (the prior is the population's, not the canonical face's)."""
    import numpy as np

    from bridge.calibrate import Neutral
    from bridge.demo_face import DemoFace, Expression
    from bridge.solve import Solver

    rest = Solver(adapt=False).solve(DemoFace().landmarks(Expression())).measures
    solver = Solver(**options)
    solver.set_neutral(Neutral(rest, None, np.zeros(3), np.zeros(3)))
    return solver


class Receiver:
    """Collects every datagram sent to an ephemeral port on 127.0.0.1 (or on ``host``)."""

    def __init__(self, host: str = "127.0.0.1"):
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 * 1024 * 1024)
        self.sock.bind((host, 0))
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.datagrams: list[bytes] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            try:
                self.datagrams.append(self.sock.recv(65535))
            except socket.timeout:
                pass

    def close(self):
        time.sleep(0.3)
        self._stop.set()
        self._thread.join()
        self.sock.close()
