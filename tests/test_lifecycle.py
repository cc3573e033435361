"""What background lab services share: the loopback rule, listening at once, the registry by name."""

from __future__ import annotations

import socket

import pytest

from smtplab._lifecycle import Registry, is_loopback, listen
from smtplab.errors import PortInUseError


class Service:
    def __init__(self, name: str) -> None:
        self.name = name
        self.address = ("127.0.0.1", 1)
        self.stops = 0

    def stop(self) -> None:
        self.stops += 1


class Replaced(UserWarning):
    pass


@pytest.mark.parametrize(("host", "loopback"), [("127.0.0.1", True), ("127.8.9.10", True), ("::1", True),
                                                ("localhost", True), ("0.0.0.0", False), ("::", False),
                                                ("", False), ("192.0.2.1", False)])  # fmt: skip
def test_is_loopback(host, loopback):
    assert is_loopback(host) is loopback


def test_listen_on_port_0_and_a_taken_port_at_once():
    sock = listen("127.0.0.1", 0, what="the test")
    try:
        port = sock.getsockname()[1]
        assert port > 0
        with pytest.raises(PortInUseError, match=r"already in use \(by the other one\)\. Use port=0"):
            listen("127.0.0.1", port, what="the test", owner=lambda taken: "the other one")
        with pytest.raises(PortInUseError, match="by another program"):
            listen("127.0.0.1", port, what="the test")
    finally:
        sock.close()


def test_registry_replaces_a_namesake_and_stops_everything():
    registry: Registry[Service] = Registry("test service", replaced=Replaced)
    first, second, other = Service("a"), Service("a"), Service("b")
    registry.add(first)
    registry.add(other)
    with pytest.warns(Replaced, match="stopped the test service 'a' that was running on 127.0.0.1:1"):
        registry.replace_namesake(second, stacklevel=1)
    assert first.stops == 1
    registry.add(second)
    registry.discard(first)  # the old one stopping later does not remove its successor
    assert registry.running() == [second, other]
    assert registry.stop_all() == 2 and (second.stops, other.stops) == (1, 1)
    registry.discard(second)
    registry.discard(other)
    assert registry.running() == []
    registry.replace_namesake(Service("a"), stacklevel=1)  # nothing to replace: no warning


def test_listen_gives_a_socket_ready_to_accept():
    sock = listen("localhost", 0, what="the test")
    try:
        with socket.create_connection(sock.getsockname()[:2], timeout=5):
            pass
    finally:
        sock.close()
