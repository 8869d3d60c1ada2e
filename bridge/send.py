"""UDP sending of ready-made datagrams. Knows nothing about faces or OSC.

The host is resolved once, when the target is made; later sends use the numeric
address, so a name that stops resolving mid-show changes nothing. The socket is
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
        try:
            family, kind, proto, _, sockaddr = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0]
        except (socket.gaierror, UnicodeError) as e:
            reason = getattr(e, "strerror", None) or str(e)
            raise TargetError(f"cannot resolve host {host!r}: {reason}") from None
        self.host, self.port = sockaddr[0], port
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


def error_kind(error: OSError) -> str:
    """A short name for an OSError's kind: its errno's name (ECONNREFUSED ...)."""
    if error.errno is None:
        return type(error).__name__
    return errno.errorcode.get(error.errno, f"errno {error.errno}")
