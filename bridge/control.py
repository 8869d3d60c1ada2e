"""The OSC control port: other programs (a Stream Deck, a show controller, a
script) can ask the running tracker to recalibrate.

    /facemocap/calibrate            capture a new neutral (default length)
    /facemocap/calibrate f SECONDS  ... over SECONDS (0.5-60)

A python-osc BlockingOSCUDPServer runs on a daemon thread. It knows nothing
about faces: it only queues requests, which the frame loop polls. Anything else
that arrives (other addresses, wrong arguments, not OSC at all) is ignored;
malformed requests and undecodable datagrams are counted and logged at debug
level, never raised.
"""

from __future__ import annotations

import errno
import logging
import math
import queue
import threading
from dataclasses import dataclass

from pythonosc.dispatcher import Dispatcher
from pythonosc.osc_packet import OscPacket, ParseError
from pythonosc.osc_server import BlockingOSCUDPServer

from bridge.calibrate import MAX_CAPTURE_SECONDS, MIN_CAPTURE_SECONDS

log = logging.getLogger("facemocap.control")

DEFAULT_CONTROL_PORT = 39540        # the VMC protocol's "performer" port
CONTROL_HOST = "127.0.0.1"          # local programs only: nothing on the network can poke the tracker
CALIBRATE_ADDRESS = "/facemocap/calibrate"
# Cheap pre-filter: a VMC stream sent here by mistake (hundreds of datagrams a
# second) is skipped without parsing it.
_OUR_PREFIX = b"/facemocap/"
POLL_SECONDS = 0.1                  # how quickly close() stops the server thread
# Windows reports a busy port as WSAEADDRINUSE (10048), not EADDRINUSE.
_ADDRESS_IN_USE = {errno.EADDRINUSE, getattr(errno, "WSAEADDRINUSE", errno.EADDRINUSE)}


class ControlError(Exception):
    """The control port cannot be opened; one line for the user."""

    def __init__(self, message: str, *, in_use: bool = False):
        super().__init__(message)
        self.in_use = in_use


@dataclass(frozen=True)
class CalibrateRequest:
    seconds: float | None    # None: the tracker's default length


def parse_calibrate_args(args: tuple) -> CalibrateRequest | None:
    """The request for /facemocap/calibrate's arguments, or None when they are malformed."""
    if not args:
        return CalibrateRequest(None)
    if len(args) != 1:
        return None
    (value,) = args
    # bool is an int in Python; an OSC T/F argument is not a length.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if not (math.isfinite(value) and MIN_CAPTURE_SECONDS <= value <= MAX_CAPTURE_SECONDS):
        return None
    return CalibrateRequest(float(value))


class _CountingDispatcher(Dispatcher):
    """Parses each datagram itself so it can count what it drops (python-osc's
    own dispatcher swallows parse errors silently)."""

    def __init__(self, port: "ControlPort"):
        super().__init__()
        self._port = port

    def call_handlers_for_packet(self, data: bytes, client_address) -> list:
        if _OUR_PREFIX not in data:
            return []
        try:
            messages = [timed.message for timed in OscPacket(data).messages]
        except (ParseError, ValueError, IndexError, UnicodeDecodeError) as error:
            self._port.count_malformed(f"undecodable datagram from {client_address}: {error}")
            return []
        for message in messages:
            if message.address == CALIBRATE_ADDRESS:
                self._port.on_calibrate(tuple(message.params), client_address)
        # Never any reply: the sender may not be listening, and we are no OSC query server.
        return []


class _Server(BlockingOSCUDPServer):
    def __init__(self, address, dispatcher, port: "ControlPort"):
        self._port = port
        super().__init__(address, dispatcher)

    def verify_request(self, request, client_address) -> bool:
        # python-osc drops datagrams that don't look like OSC here, uncounted; count them.
        ok = super().verify_request(request, client_address)
        if not ok:
            self._port.count_malformed(f"a non-OSC datagram from {client_address}")
        return ok

    def handle_error(self, request, client_address) -> None:
        # socketserver would print a traceback to stderr; a control message must never do that.
        self._port.count_malformed(f"a datagram from {client_address} failed", exc_info=True)


class ControlPort:
    """Listens on CONTROL_HOST:port on a daemon thread; poll() from the frame loop."""

    def __init__(self, port: int, host: str = CONTROL_HOST):
        self._requests: queue.SimpleQueue[CalibrateRequest] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self.malformed = 0
        try:
            self._server = _Server((host, port), _CountingDispatcher(self), self)
        except OSError as error:
            in_use = error.errno in _ADDRESS_IN_USE
            reason = "address already in use" if in_use else (error.strerror or str(error))
            raise ControlError(f"cannot listen for control messages on {host}:{port}: {reason}",
                               in_use=in_use) from None
        self.host, self.port = self._server.server_address[:2]
        self._thread = threading.Thread(target=self._server.serve_forever, args=(POLL_SECONDS,),
                                        name="facemocap-control", daemon=True)
        self._thread.start()

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    # ---- called on the server thread ----

    def on_calibrate(self, args: tuple, sender) -> None:
        request = parse_calibrate_args(args)
        if request is None:
            self.count_malformed(f"{CALIBRATE_ADDRESS} from {sender} with bad arguments {args!r} "
                                 f"(expected none, or seconds {MIN_CAPTURE_SECONDS:g}-{MAX_CAPTURE_SECONDS:g})")
            return
        self._requests.put(request)

    def count_malformed(self, what: str, exc_info: bool = False) -> None:
        with self._lock:
            self.malformed += 1
        log.debug("control port: ignored %s", what, exc_info=exc_info)

    # ---- called on the frame loop's thread ----

    def poll(self) -> CalibrateRequest | None:
        """The newest request since the last poll (older ones are superseded), or None."""
        latest = None
        while True:
            try:
                latest = self._requests.get_nowait()
            except queue.Empty:
                return latest

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def __enter__(self) -> "ControlPort":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
