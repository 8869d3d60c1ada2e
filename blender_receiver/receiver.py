"""The receiving thread: UDP socket -> VmcStream -> a mailbox of frames. No bpy.

One python-osc BlockingOSCUDPServer on one thread keeps datagrams in order. Its
maximum datagram size is raised from 8192 to 65535 so nothing is silently cut.
Blender data is never touched here. The main thread calls `take()` and gets the
frames that completed since its last call.
"""

from __future__ import annotations

import collections
import errno
import socket
import threading

from pythonosc.dispatcher import Dispatcher
from pythonosc.osc_server import BlockingOSCUDPServer

from .vmc_stream import VmcFrame, VmcStream

# About 10 s at 60 fps. If Blender stalls for longer, the oldest frames go (and are counted).
MAILBOX_FRAMES = 600
MAX_DATAGRAM = 65535
RECEIVE_BUFFER = 4 * 1024 * 1024


class ReceiverError(Exception):
    """Starting failed; the message is one line meant for the user."""


class _StreamDispatcher(Dispatcher):
    """Hands each whole datagram to the stream instead of python-osc's dispatch.

    The stock dispatcher swallows parse errors silently and sleeps until future
    bundle time tags; we want every problem counted and no waiting.
    """

    def __init__(self, stream: VmcStream):
        super().__init__()
        self.stream = stream

    def call_handlers_for_packet(self, data, client_address):
        self.stream.feed(data, f"{client_address[0]}:{client_address[1]}")
        return []


class _Server(BlockingOSCUDPServer):
    max_packet_size = MAX_DATAGRAM

    def server_bind(self):
        # A bigger kernel buffer rides out a busy moment (the OS may cap it).
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
        super().server_bind()

    def verify_request(self, request, client_address):
        return True  # let the stream see (and count) non-OSC datagrams too

    def handle_error(self, request, client_address):
        self.dispatcher.stream.stats.handler_errors += 1  # never a traceback on stderr


class Receiver:
    """Listens on host:port until stop(). `take()` drains the completed frames."""

    def __init__(self, host: str = "127.0.0.1", port: int = 39539):
        self.host, self.port = host, port
        self.stream = VmcStream(self._deliver)
        self.overflowed = 0
        self._mailbox: collections.deque[VmcFrame] = collections.deque()
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def stats(self):
        return self.stream.stats

    def start(self) -> None:
        if self.running:
            return
        if not 0 <= self.port < 65536:
            raise ReceiverError(f"port {self.port} is out of range (0-65535)")
        try:
            server = _Server((self.host, self.port), _StreamDispatcher(self.stream))
        except socket.gaierror:
            raise ReceiverError(f"host {self.host!r} is not a valid address") from None
        except OSError as error:
            raise ReceiverError(_bind_message(error, self.host, self.port)) from None
        self.port = server.server_address[1]  # port 0 asks the OS for a free one
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.1},
            name="facemocap-receiver", daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()  # returns once serve_forever has left its loop
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        self._thread = None

    def take(self) -> list[VmcFrame]:
        with self._lock:
            frames = list(self._mailbox)
            self._mailbox.clear()
        return frames

    def _deliver(self, frame: VmcFrame) -> None:
        with self._lock:
            if len(self._mailbox) >= MAILBOX_FRAMES:
                self._mailbox.popleft()
                self.overflowed += 1
            self._mailbox.append(frame)


def _bind_message(error: OSError, host: str, port: int) -> str:
    if error.errno == errno.EADDRINUSE:
        return f"port {port} is already in use on {host} (is another receiver running?)"
    if error.errno == errno.EADDRNOTAVAIL:
        return f"{host} is not an address of this machine"
    if error.errno == errno.EACCES:
        return f"not allowed to listen on port {port}"
    return f"cannot listen on {host}:{port}: {error.strerror or error}"
