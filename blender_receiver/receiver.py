"""The receiving thread: UDP socket -> VmcStream -> a mailbox of frames. No bpy.

One python-osc BlockingOSCUDPServer on one thread keeps datagrams in order. Its
maximum datagram size is raised from 8192 to 65535 so nothing is silently cut.
Blender data is never touched here. The main thread calls `take()` and gets the
frames that completed since its last call.

It listens on 127.0.0.1 unless told otherwise. An optional allow-list of sender
addresses (IPv4 / IPv6 addresses and CIDR ranges) drops datagrams from anyone else
before they are parsed, and counts them.
"""

from __future__ import annotations

import collections
import errno
import ipaddress
import re
import socket
import threading

from pythonosc.dispatcher import Dispatcher
from pythonosc.osc_server import BlockingOSCUDPServer

from .vmc_stream import VmcFrame, VmcStream

# About 10 s at 60 fps. If Blender stalls for longer, the oldest frames go (and are counted).
MAILBOX_FRAMES = 600
MAX_DATAGRAM = 65535
RECEIVE_BUFFER = 4 * 1024 * 1024


DEFAULT_HOST = "127.0.0.1"  # this machine only
_ALLOW_CACHE = 1024  # sender addresses whose verdict is remembered


class ReceiverError(Exception):
    """Starting failed; the message is one line meant for the user."""


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_allow_list(text: str) -> tuple[Network, ...]:
    """Networks from "192.168.1.20, 10.0.0.0/24 ::1" (commas and/or spaces between
    entries); empty text is an empty tuple, meaning every sender. Raises
    ReceiverError naming the first entry that is not an address or CIDR range."""
    networks = []
    for entry in re.split(r"[\s,;]+", text.strip()):
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry.split("%", 1)[0], strict=False))
        except ValueError:
            shown = entry if len(entry) <= 40 else entry[:40] + "..."
            raise ReceiverError(
                f"allow-list entry {shown!r} is not an IP address or CIDR range "
                f"(e.g. 192.168.1.20, 192.168.1.0/24 or ::1)"
            ) from None
    return tuple(networks)


def sender_allowed(address: str, networks: tuple[Network, ...]) -> bool:
    """Whether a sender's IP (as the socket reports it) is in one of the networks.
    An IPv4 sender seen on a dual-stack IPv6 socket (::ffff:a.b.c.d) matches IPv4 entries."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    candidates = [ip]
    if ip.version == 6 and ip.ipv4_mapped is not None:
        candidates.append(ip.ipv4_mapped)
    return any(c in net for c in candidates for net in networks if c.version == net.version)


def listens_everywhere(host: str) -> bool:
    """True for the wildcard addresses: "", 0.0.0.0, :: (every network interface)."""
    host = host.strip()
    if not host:
        return True
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_unspecified
    except ValueError:
        return False


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip().split("%", 1)[0]).is_loopback
    except ValueError:
        return host.strip().lower() == "localhost"


class _StreamDispatcher(Dispatcher):
    """Hands each whole datagram to the stream instead of python-osc's dispatch.

    The stock dispatcher swallows parse errors silently and sleeps until future
    bundle time tags; we want every problem counted and no waiting.
    """

    def __init__(self, stream: VmcStream, allowed=None):
        super().__init__()
        self.stream = stream
        self.allowed = allowed  # callable(host) -> bool, or None for everyone

    def call_handlers_for_packet(self, data, client_address):
        host, port = client_address[0], client_address[1]
        if self.allowed is None or self.allowed(host):
            self.stream.feed(data, f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
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
        # Only reached if something escaped feed(), which would be a bug: counted,
        # never a traceback on stderr.
        self.dispatcher.stream.stats.internal_errors += 1


class Receiver:
    """Listens on host:port until stop(). `take()` drains the completed frames.

    `allow` is an allow-list of sender addresses (see parse_allow_list); datagrams
    from other senders are dropped unparsed and counted in `not_allowed`.
    """

    def __init__(self, host: str = DEFAULT_HOST, port: int = 39539, allow: str = ""):
        self.host, self.port, self.allow = host, port, allow
        self.stream = VmcStream(self._deliver)
        self.overflowed = 0
        self.not_allowed = 0
        self.networks: tuple[Network, ...] = ()
        self._verdicts: dict[str, bool] = {}
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
        self.networks = parse_allow_list(self.allow)
        self._verdicts.clear()
        dispatcher = _StreamDispatcher(self.stream, self._allowed if self.networks else None)
        # An IPv6 literal (::, ::1) gets an IPv6 socket; anything else, names too, IPv4.
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        try:
            server = _Server((self.host, self.port), dispatcher, family=family)
        except (socket.gaierror, UnicodeError, ValueError):
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

    def _allowed(self, host: str) -> bool:
        verdict = self._verdicts.get(host)
        if verdict is None:
            verdict = sender_allowed(host, self.networks)
            if len(self._verdicts) >= _ALLOW_CACHE:
                self._verdicts.clear()
            self._verdicts[host] = verdict
        if not verdict:
            self.not_allowed += 1
        return verdict

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
