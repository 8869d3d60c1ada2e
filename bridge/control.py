"""The OSC control port: other programs (a Stream Deck, a show controller, a
script) can ask the running tracker to recalibrate.

    /facemocap/calibrate            capture a new neutral (default length)
    /facemocap/calibrate f SECONDS  ... over SECONDS (0.5-60)

A python-osc BlockingOSCUDPServer runs on a daemon thread, on 127.0.0.1 only. It
knows nothing about faces: it only queues requests, which the frame loop polls.
Anything else that arrives (other addresses, wrong arguments, not OSC at all) is
ignored; malformed requests and undecodable datagrams are counted and logged at
debug level, never raised.

Bundles are taken apart here without recursion, every element size checked, and
only our own messages are decoded (by python-osc, once their type tags are known
to be ones it decodes). python-osc's OscPacket loops forever on a bundle element
of negative size, recurses once per nesting level (RecursionError at ~500) and
logs a root-logger warning per unknown type tag: all found by bench/fuzz.py. The
Blender add-on has the same walker (blender_receiver/vmc_stream.py); it cannot
import the bridge, so this is a copy.
"""

from __future__ import annotations

import errno
import logging
import math
import queue
import threading
from dataclasses import dataclass

from pythonosc.dispatcher import Dispatcher
from pythonosc.osc_message import OscMessage
from pythonosc.osc_server import BlockingOSCUDPServer

from bridge.calibrate import MAX_CAPTURE_SECONDS, MIN_CAPTURE_SECONDS

log = logging.getLogger("facemocap.control")

DEFAULT_CONTROL_PORT = 39540        # the VMC protocol's "performer" port
CONTROL_HOST = "127.0.0.1"          # local programs only: nothing on the network can poke the tracker
CALIBRATE_ADDRESS = "/facemocap/calibrate"
# Cheap pre-filter: a VMC stream sent here by mistake (hundreds of datagrams a
# second) is skipped without parsing it.
_OUR_PREFIX = b"/facemocap/"
_CALIBRATE = CALIBRATE_ADDRESS.encode() + b"\x00"
MAX_BUNDLE_DEPTH = 16               # OSC senders nest one or two levels
_BUNDLE = b"#bundle\x00"
_BUNDLE_HEADER = 16                 # "#bundle\0" and the 8-byte time tag
_KNOWN_TAGS = b"ifsbhdrmtTFN[]"     # the argument types python-osc decodes
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


class Malformed(Exception):
    """Not well-formed OSC."""


class TooDeep(Malformed):
    """Bundles nested deeper than MAX_BUNDLE_DEPTH."""


def split_datagram(data: bytes, max_depth: int = MAX_BUNDLE_DEPTH) -> list[bytes]:
    """The messages of one datagram in packing order, walked with an explicit stack;
    every element size must be positive and fit its bundle. Raises Malformed / TooDeep."""
    if data[:1] == b"/":
        return [data]
    if not data.startswith(_BUNDLE) or len(data) < _BUNDLE_HEADER:
        raise Malformed("neither a message nor a bundle")
    messages = []
    ends = [len(data)]
    pos = _BUNDLE_HEADER
    while ends:
        end = ends[-1]
        if pos == end:
            ends.pop()
            continue
        if end - pos < 4:
            raise Malformed("a bundle element size is cut off")
        size = int.from_bytes(data[pos:pos + 4], "big", signed=True)
        pos += 4
        if size <= 0 or size > end - pos:
            raise Malformed(f"a bundle element claims {size} bytes, {end - pos} are left")
        if data[pos] == 0x2F:  # "/"
            messages.append(data[pos:pos + size])
            pos += size
        elif data.startswith(_BUNDLE, pos) and size >= _BUNDLE_HEADER:
            if len(ends) >= max_depth:
                raise TooDeep(f"bundles nested deeper than {max_depth} levels")
            ends.append(pos + size)
            pos += _BUNDLE_HEADER
        else:
            raise Malformed("a bundle element is neither a message nor a bundle")
    return messages


def decode_message(data: bytes) -> OscMessage:
    """A message decoded by python-osc once its type tags are ones it decodes. Raises Malformed."""
    nul = data.find(b"\x00")
    if nul < 0:
        raise Malformed("the address is not terminated")
    tags_at = (nul + 4) & ~3
    if tags_at < len(data):
        if data[tags_at:tags_at + 1] != b",":
            raise Malformed("no type tag string")
        tags_end = data.find(b"\x00", tags_at)
        if tags_end < 0:
            raise Malformed("the type tags are not terminated")
        if data[tags_at + 1:tags_end].translate(None, _KNOWN_TAGS):
            raise Malformed("unknown type tags")
    try:
        return OscMessage(data)
    except Exception as error:  # ParseError; UnicodeDecodeError for non-UTF-8 strings
        raise Malformed(str(error)) from None


def describe_args(args: tuple, limit: int = 5) -> str:
    """A short, flat description of OSC arguments for a log line. Never repr() them
    whole: an argument can be an array nested thousands deep (type tags "[[[[..."),
    whose repr raises RecursionError (found by bench/fuzz.py), or 64 KB of text."""
    def one(value) -> str:
        if isinstance(value, list):
            return f"<array of {len(value)}>"
        if isinstance(value, (bytes, bytearray)):
            return f"<blob of {len(value)} bytes>"
        if value is None or isinstance(value, (bool, int, float)):
            return repr(value)
        if isinstance(value, str):
            return repr(value[:40]) + ("..." if len(value) > 40 else "")
        return f"<{type(value).__name__}>"

    shown = ", ".join(one(v) for v in args[:limit])
    more = f", ... {len(args)} in all" if len(args) > limit else ""
    return f"({shown}{more})"


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
            requests = [decode_message(m) for m in split_datagram(data) if m.startswith(_CALIBRATE)]
        except TooDeep as error:
            self._port.count_malformed(f"a datagram from {client_address}: {error}", too_deep=True)
            return []
        except Malformed as error:
            self._port.count_malformed(f"undecodable datagram from {client_address}: {error}")
            return []
        for message in requests:
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
            self._port.count_datagram()
        return ok

    def process_request(self, request, client_address) -> None:
        try:
            super().process_request(request, client_address)
        finally:
            self._port.count_datagram()  # once handled, so `datagrams` means "done with"

    def handle_error(self, request, client_address) -> None:
        # Only reached if something escaped the dispatcher, which would be a bug.
        # socketserver would print a traceback to stderr; a control message must never do that.
        self._port.count_malformed(f"a datagram from {client_address} failed", exc_info=True, error=True)


class ControlPort:
    """Listens on CONTROL_HOST:port on a daemon thread; poll() from the frame loop."""

    def __init__(self, port: int, host: str = CONTROL_HOST):
        self._requests: queue.SimpleQueue[CalibrateRequest] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self.datagrams = 0      # every datagram the port has finished with
        self.malformed = 0      # every one dropped as bad, whatever the reason (includes the two below)
        self.bad_args = 0       # /facemocap/calibrate with wrong arguments
        self.too_deep = 0       # bundles nested deeper than MAX_BUNDLE_DEPTH
        self.errors = 0         # exceptions that escaped the dispatcher (a bug: must stay 0)
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
            self.count_malformed(f"{CALIBRATE_ADDRESS} from {sender} with bad arguments {describe_args(args)} "
                                 f"(expected none, or seconds {MIN_CAPTURE_SECONDS:g}-{MAX_CAPTURE_SECONDS:g})",
                                 bad_args=True)
            return
        self._requests.put(request)

    def count_datagram(self) -> None:
        with self._lock:
            self.datagrams += 1

    def count_malformed(self, what: str, exc_info: bool = False, *, bad_args: bool = False,
                        too_deep: bool = False, error: bool = False) -> None:
        with self._lock:
            self.malformed += 1
            self.bad_args += bad_args
            self.too_deep += too_deep
            self.errors += error
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
