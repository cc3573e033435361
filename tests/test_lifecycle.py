"""What background lab services share: the loopback rule, listening at once, the registry by name."""

from __future__ import annotations

import socket

import pytest

from smtplab._lifecycle import Registry, is_loopback, listen
from smtplab.errors import PortInUseError, ServerStartError


class Service:
    def __init__(self, name: str, port: int = 1) -> None:
        self.name = name
        self.port = port
        self.address = ("127.0.0.1", port)
        self.starts = self.stops = 0

    def start(self) -> None:
        self.starts += 1

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


def test_registry_replaces_a_namesake_once_its_successor_started_and_stops_everything():
    registry: Registry[Service] = Registry("test service", replaced=Replaced)
    first, second, other = Service("a"), Service("a", port=2), Service("b", port=3)
    registry.add(first)
    registry.add(other)
    assert registry.holder(3) == "the test service 'b' in this kernel" and registry.holder(4) is None
    succession = registry.succession(second)
    assert succession.listen(lambda: "bound", holds=lambda old: old.port == second.port) == "bound"
    assert first.stops == 0  # not before its successor serves
    with pytest.warns(Replaced, match="stopped the test service 'a' that was running on 127.0.0.1:1"):
        succession.done(stacklevel=1)
    assert first.stops == 1
    registry.discard(first)  # the old one stopping later does not remove its successor
    assert registry.running() == [second, other]
    assert registry.stop_all() == 2 and (second.stops, other.stops) == (1, 1)
    registry.discard(second)
    registry.discard(other)
    assert registry.running() == []
    registry.succession(Service("a")).done(stacklevel=1)  # nothing to replace: no warning


def test_a_failed_succession_leaves_the_namesake_running_or_starts_it_again():
    registry: Registry[Service] = Registry("test service", replaced=Replaced)
    old = Service("a")
    registry.add(old)
    elsewhere = registry.succession(Service("a", port=2))
    error = elsewhere.failed(PortInUseError(98, "port 2 on 127.0.0.1 is already in use"))
    assert isinstance(error, PortInUseError) and error.strerror == (
        "port 2 on 127.0.0.1 is already in use. The test service 'a' on 127.0.0.1:1 is still running."
    )
    assert (old.stops, old.starts) == (0, 0)

    same_port = registry.succession(Service("a"))
    same_port.listen(lambda: "bound", holds=lambda namesake: namesake.port == 1)
    assert old.stops == 1  # its port is the one asked for: it had to stop first
    error = same_port.failed(ServerStartError("the lab server could not start: no threads"))
    assert isinstance(error, ServerStartError) and str(error).endswith(
        "no threads. The test service 'a' was stopped to free port 1, and is running again."
    )
    assert old.starts == 1


def test_listen_gives_a_socket_ready_to_accept():
    sock = listen("localhost", 0, what="the test")
    try:
        with socket.create_connection(sock.getsockname()[:2], timeout=5):
            pass
    finally:
        sock.close()
