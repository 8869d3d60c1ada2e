import logging
import socket

import pytest

from bridge.send import TargetError, UdpTarget, parse_port

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
        with UdpTarget("localhost", server.server_address[1]) as target:
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
