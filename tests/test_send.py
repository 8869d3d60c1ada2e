import errno
import logging
import os
import socket

import pytest

from bridge.send import TargetError, UdpTarget, parse_port
from support import localhost_address

RECV_TIMEOUT = 2.0


@pytest.fixture
def receiver():
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(RECV_TIMEOUT)
    yield sock
    sock.close()


def free_udp_port() -> int:
    """A port nobody listens on (bound for a moment, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_datagrams_arrive_in_order(receiver):
    port = receiver.getsockname()[1]
    target = UdpTarget("127.0.0.1", port)
    target.send([b"one", b"two", b"three"])
    assert [receiver.recv(2048) for _ in range(3)] == [b"one", b"two", b"three"]
    assert (target.sent_datagrams, target.sent_bytes, target.failed_datagrams) == (3, 11, 0)
    assert target.address == f"127.0.0.1:{port}"
    target.close()


def test_python_osc_server_receives(receiver):
    from pythonosc.dispatcher import Dispatcher
    from pythonosc.osc_message_builder import OscMessageBuilder
    from pythonosc.osc_server import BlockingOSCUDPServer

    got = []
    dispatcher = Dispatcher()
    dispatcher.map("/x", lambda address, *args: got.append((address, args)))
    server = BlockingOSCUDPServer(("127.0.0.1", 0), dispatcher)
    server.timeout = RECV_TIMEOUT
    try:
        b = OscMessageBuilder("/x")
        b.add_arg(1.5)
        with UdpTarget("127.0.0.1", server.server_address[1]) as target:
            target.send([b.build().dgram])
            server.handle_request()
    finally:
        server.server_close()
    assert got == [("/x", (1.5,))]


def test_ipv6_address_format():
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        target = UdpTarget("::1", 39539)
    except TargetError:
        pytest.skip("no IPv6 loopback")
    assert target.address == "[::1]:39539"
    target.close()


def test_nobody_listening_never_raises_and_logs_once(caplog):
    target = UdpTarget("127.0.0.1", free_udp_port())
    with caplog.at_level(logging.WARNING, logger="facemocap.send"):
        for _ in range(200):
            target.send([b"x" * 100, b"y"])
    warnings = [r for r in caplog.records if r.name == "facemocap.send"]
    # Linux reports ICMP port unreachable as ECONNREFUSED on later sends; other
    # systems may report nothing. Either way: at most one line per kind of error.
    assert len(warnings) <= 1
    assert len({r.getMessage() for r in warnings}) == len(warnings)
    assert target.sent_datagrams + target.failed_datagrams == 400
    if warnings:
        assert target.failed_datagrams > 1
        assert "\n" not in warnings[0].getMessage()
    target.close()


def test_send_after_close_is_counted_not_raised(caplog):
    target = UdpTarget("127.0.0.1", free_udp_port())
    target.close()
    with caplog.at_level(logging.WARNING, logger="facemocap.send"):
        target.send([b"a", b"b"])
    assert target.failed_datagrams == 2
    assert len(caplog.records) == 1


@pytest.mark.parametrize("text", ["0", "65536", "-1", "abc", "", "12.5", None])
def test_invalid_port(text):
    with pytest.raises(TargetError) as e:
        parse_port(text)
    assert str(e.value) == f"invalid port {str(text)!r}: expected 1-65535"
    with pytest.raises(TargetError):
        UdpTarget("127.0.0.1", text)


@pytest.mark.parametrize("text, port", [("39539", 39539), (" 1 ", 1), (65535, 65535)])
def test_valid_port(text, port):
    assert parse_port(text) == port


@pytest.mark.parametrize("host", ["no-such-host.invalid", "a..b"])
def test_unresolvable_host(host):
    with pytest.raises(TargetError) as e:
        UdpTarget(host, 39539)
    message = str(e.value)
    assert host in message and "\n" not in message


def test_a_host_name_is_resolved_once_at_start(monkeypatch):
    family, address = localhost_address()   # where localhost goes first here (::1 on Debian 13)
    receiver = socket.socket(family, socket.SOCK_DGRAM)
    receiver.bind((address, 0))
    receiver.settimeout(RECV_TIMEOUT)
    port = receiver.getsockname()[1]
    target = UdpTarget("localhost", port)
    assert target.host == address

    def no_resolution(*args, **kwargs):
        raise AssertionError("the host was resolved again")

    monkeypatch.setattr(socket, "getaddrinfo", no_resolution)   # as if DNS went away mid-show
    target.send([b"still", b"here"])
    assert [receiver.recv(2048) for _ in range(2)] == [b"still", b"here"]
    receiver.close()
    assert target.failed_datagrams == 0
    target.close()


class _FullBuffer:
    """A non-blocking socket whose send buffer is full: EAGAIN, then ENOBUFS, then EAGAIN ..."""

    def __init__(self, *args):
        self.calls = 0

    def setblocking(self, flag):
        assert flag is False   # never a blocking socket: a full buffer must not stall the frame loop

    def connect(self, address):
        pass

    def send(self, datagram):
        self.calls += 1
        code = errno.EAGAIN if self.calls % 2 else errno.ENOBUFS
        raise OSError(code, os.strerror(code))

    def close(self):
        pass


def test_a_full_send_buffer_is_counted_by_kind_and_logged_once_per_kind(caplog):
    target = UdpTarget("127.0.0.1", 9, socket_factory=_FullBuffer)
    with caplog.at_level(logging.WARNING, logger="facemocap.send"):
        for _ in range(50):
            target.send([b"x", b"y"])
    assert target.failed_datagrams == 100 and target.sent_datagrams == 0
    assert dict(target.errors) == {"EAGAIN": 50, "ENOBUFS": 50}
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2 and all("127.0.0.1:9" in line for line in lines)


def test_a_refused_receiver_is_counted_as_econnrefused():
    target = UdpTarget("127.0.0.1", free_udp_port())
    for _ in range(20):
        target.send([b"x"])
    if target.failed_datagrams:   # Linux; other systems may not report it
        assert set(target.errors) == {"ECONNREFUSED"}
    assert target.failed_datagrams == sum(target.errors.values())
    target.close()


def _resolver_listing_ipv6_first(real):
    """getaddrinfo as on Debian 13, where /etc/hosts gives localhost as ::1 first."""
    def getaddrinfo(host, port, *args, **kwargs):
        found = real(host, port, *args, **kwargs)
        if host == "localhost":
            v6 = (socket.AF_INET6, socket.SOCK_DGRAM, 17, "", ("::1", port, 0, 0))
            v4 = (socket.AF_INET, socket.SOCK_DGRAM, 17, "", ("127.0.0.1", port))
            return [v6, v4]
        return found
    return getaddrinfo


def test_localhost_reaches_a_127_0_0_1_receiver_when_it_resolves_to_ipv6_first(monkeypatch):
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))        # as Unity apps, VSeeFace and python-osc servers bind
    receiver.settimeout(RECV_TIMEOUT)
    monkeypatch.setattr(socket, "getaddrinfo", _resolver_listing_ipv6_first(socket.getaddrinfo))
    assert socket.getaddrinfo("localhost", 1, type=socket.SOCK_DGRAM)[0][0] == socket.AF_INET6
    with UdpTarget("localhost", receiver.getsockname()[1]) as target:
        assert (target.host, target.family, target.unfragmented) == ("127.0.0.1", socket.AF_INET, 1472)
        target.send([b"hello"])
        assert receiver.recv(64) == b"hello" and target.failed_datagrams == 0
    receiver.close()


def test_an_ipv6_only_name_and_address_stay_ipv6():
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
    except OSError as error:
        pytest.skip(f"no IPv6 loopback here: {error}")
    with UdpTarget("::1", 39539) as target:
        # 1500-byte Ethernet less IPv6's 40-byte header and UDP's 8.
        assert (target.host, target.family, target.unfragmented) == ("::1", socket.AF_INET6, 1452)
