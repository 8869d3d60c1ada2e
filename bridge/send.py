"""UDP sending of ready-made datagrams. Knows nothing about faces or OSC.

The host is resolved once, when the target is made; later sends use the numeric
address, so a name that stops resolving mid-show changes nothing. A name with both
IPv4 and IPv6 addresses goes to its IPv4 one: Debian 13 and others list `localhost`
as ::1 first, and receivers (Unity apps, VSeeFace, python-osc servers) mostly bind
0.0.0.0 or 127.0.0.1 only. A receiver bound to ::1 alone needs `--host ::1`. The socket is
connected (the kernel reports a receiver that is not listening as ECONNREFUSED) and
non-blocking (a full send buffer is EAGAIN / ENOBUFS, never a stall). Every failed
datagram is counted, by kind, and each kind is logged once per target.
"""

from __future__ import annotations

import errno
import logging
import socket
from collections import Counter

log = logging.getLogger("facemocap.send")

PORT_MIN, PORT_MAX = 1, 65535
# The most a datagram carries without fragmenting on 1500-byte Ethernet: the MTU less
# the IP header (20 bytes IPv4, 40 IPv6) and UDP's 8. A fragmented datagram is lost
# whole when any fragment is.
UNFRAGMENTED = {socket.AF_INET: 1472, socket.AF_INET6: 1452}


class TargetError(Exception):
    """A destination we cannot send to; the message is one line, fit for the user."""


def parse_port(text) -> int:
    try:
        port = int(str(text).strip())
    except ValueError:
        port = 0
    if not PORT_MIN <= port <= PORT_MAX:
        raise TargetError(f"invalid port {str(text)!r}: expected {PORT_MIN}-{PORT_MAX}")
    return port


class UdpTarget:
    """One UDP destination. send() never raises: a live tracker must not die
    because the receiver is closed or the network hiccups."""

    def __init__(self, host: str, port: int, *, socket_factory=socket.socket):
        """socket_factory(family, type, proto): socket.socket, or a stand-in for tests."""
        port = parse_port(port)
        family, kind, proto, sockaddr = resolve(host, port)
        self.host, self.port, self.family = sockaddr[0], port, family
        try:
            self._sock = socket_factory(family, kind, proto)
        except OSError as e:
            raise TargetError(f"cannot open a UDP socket for {host!r}: {e.strerror or e}") from None
        # Never stall the frame loop on a full send buffer: drop instead (EAGAIN).
        self._sock.setblocking(False)
        self.sent_datagrams = self.sent_bytes = self.failed_datagrams = 0
        self.errors: Counter = Counter()   # failed datagrams by kind: "ECONNREFUSED", "EAGAIN" ...
        self._logged_errnos: set = set()
        try:
            # Connected, so the kernel reports "nothing listening" (ICMP port
            # unreachable) as ECONNREFUSED on a later send.
            self._sock.connect(sockaddr)
            self._send = self._sock.send
        except OSError as e:
            # E.g. no route yet: keep going unconnected, send() counts the failures.
            self._log_once(e)
            self._send = lambda datagram: self._sock.sendto(datagram, sockaddr)

    @property
    def unfragmented(self) -> int:
        """The largest datagram this target's address family carries unfragmented."""
        return UNFRAGMENTED.get(self.family, UNFRAGMENTED[socket.AF_INET6])

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def send(self, datagrams: list[bytes]) -> None:
        for datagram in datagrams:
            try:
                self._send(datagram)
            except OSError as e:
                self.failed_datagrams += 1
                self.errors[error_kind(e)] += 1
                self._log_once(e)
            else:
                self.sent_datagrams += 1
                self.sent_bytes += len(datagram)

    def _log_once(self, error: OSError) -> None:
        if error.errno in self._logged_errnos:
            return
        self._logged_errnos.add(error.errno)
        hint = " (is the receiver running?)" if error.errno == errno.ECONNREFUSED else ""
        log.warning("sending to %s failed: %s%s; further errors of this kind are only counted",
                    self.address, error.strerror or error, hint)

    def close(self) -> None:
        try:
            self._sock.close()
        except OSError:
            pass

    def __enter__(self) -> "UdpTarget":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def resolve(host: str, port: int):
    """(family, type, proto, sockaddr) for a UDP destination, IPv4 first (see above)."""
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    except (socket.gaierror, UnicodeError) as e:
        reason = getattr(e, "strerror", None) or str(e)
        raise TargetError(f"cannot resolve host {host!r}: {reason}") from None
    if not found:
        raise TargetError(f"cannot resolve host {host!r}: no address")
    family, kind, proto, _, sockaddr = min(found, key=lambda a: a[0] != socket.AF_INET)
    return family, kind, proto, sockaddr


def error_kind(error: OSError) -> str:
    """A short name for an OSError's kind: its errno's name (ECONNREFUSED ...)."""
    if error.errno is None:
        return type(error).__name__
    return errno.errorcode.get(error.errno, f"errno {error.errno}")
