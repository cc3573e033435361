"""Limits and LimitedSMTP on a plain aiosmtpd Controller: every limit's reply, on the wire."""

from __future__ import annotations

import asyncio
import threading
import time
import weakref
from collections.abc import Iterator
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

from smtplab.auth import plain_response
from smtplab.limits import ConnectionGate, LimitedSMTP, Limits, address_problem, bare_line_ending
from tests.wire import Wire

HOST = "limits.test"


class Keep:
    """A handler keeping every message it is given."""

    def __init__(self) -> None:
        self.messages: list[Any] = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(envelope)
        return "250 2.0.0 kept"


class LimitedController(Controller):
    """aiosmtpd's own Controller serving LimitedSMTP on a port the OS picks."""

    def __init__(self, handler: Any, limits: Limits, **kwargs: Any) -> None:
        super().__init__(handler, hostname="127.0.0.1", port=0, server_hostname=HOST, **kwargs)
        self.limits = limits
        self.gate = ConnectionGate(limits.max_connections)
        self.sessions: weakref.WeakSet[LimitedSMTP] = weakref.WeakSet()

    def factory(self) -> SMTP:
        session = LimitedSMTP(self.handler, limits=self.limits, gate=self.gate, **self.SMTP_kwargs)
        self.sessions.add(session)
        return session

    def _trigger_server(self) -> None:
        # The port is only known once listening (aiosmtpd issue #388); build one session
        # on the loop instead of the stock test connection.
        self.address = self.server.sockets[0].getsockname()[:2]

        async def build() -> None:
            self._factory_invoker()

        asyncio.run_coroutine_threadsafe(build(), self.loop).result(5)

    def stop(self, no_assert: bool = False) -> None:
        async def close_sessions() -> None:
            for session in list(self.sessions):
                if session.transport is not None:
                    session.transport.close()
            tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            if tasks:
                await asyncio.wait(tasks, timeout=2)

        asyncio.run_coroutine_threadsafe(close_sessions(), self.loop).result(5)
        super().stop(no_assert)


@pytest.fixture
def serve() -> Iterator[Any]:
    """serve(limits, handler=None, **aiosmtpd_options) -> a running LimitedController."""
    started: list[LimitedController] = []

    def start(limits: Limits | None = None, handler: Any = None, **options: Any) -> LimitedController:
        controller = LimitedController(handler or Keep(), limits or Limits(), **options)
        controller.start()
        started.append(controller)
        return controller

    yield start
    for controller in started:
        controller.stop()


def hello(wire: Wire) -> list[str]:
    assert wire.line().startswith(f"220 {HOST}")
    return wire.command("EHLO client.test")


# -- the Limits value -------------------------------------------------------------------------


def test_defaults_are_for_a_classroom():
    limits = Limits()
    assert limits.max_message_size == 10 * 1024 * 1024
    assert (limits.max_recipients, limits.max_connections, limits.max_auth_failures) == (100, 20, 3)
    assert (limits.idle_timeout, limits.max_session_time) == (120.0, 900.0)
    assert (limits.max_line_length, limits.max_command_length) == (1001, 512)
    assert not limits.strict_line_endings
    assert limits.smtp_options() == {"data_size_limit": 10 * 1024 * 1024, "timeout": 120.0}


def test_limits_are_frozen_and_replace_makes_a_copy():
    limits = Limits()
    with pytest.raises(AttributeError):
        limits.max_recipients = 5  # type: ignore[misc]
    assert limits.replace(max_recipients=5).max_recipients == 5 and limits.max_recipients == 100


def test_none_switches_a_limit_off():
    limits = Limits(max_message_size=None, max_recipients=None, idle_timeout=None, max_connections=None)
    assert limits.smtp_options()["data_size_limit"] is None
    assert limits.smtp_options()["timeout"] > 3600 * 24 * 300  # aiosmtpd needs a number


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("max_recipients", 0, "positive number"),
        ("max_connections", -1, "positive number"),
        ("max_message_size", True, "positive number"),
        ("max_recipients", 2.5, "whole number"),
        ("idle_timeout", "60", "positive number"),
        ("max_line_length", None, "positive number,"),
        ("max_command_length", 20, "at least 80"),
        ("strict_line_endings", 1, "True or False"),
    ],
)
def test_bad_values_are_named(field, value, message):
    with pytest.raises((ValueError, TypeError), match=message) as caught:
        Limits(**{field: value})
    assert field in str(caught.value)


def test_address_problems_are_described():
    assert address_problem("FROM:<alice@example.test>") is None
    assert address_problem("TO:<bob@exämple.test>") is None  # UTF-8 is fine (SMTPUTF8)
    assert (
        address_problem("FROM:<a\x00b>")
        == "NUL byte (0x00) at position 7; control characters are not allowed"
    )
    assert "line feed (LF) (0x0A) at position 5" in address_problem("TO:<a\nb>")
    assert "DEL (0x7F)" in address_problem("TO:<a\x7fb>")
    assert address_problem("TO:<a\udcffb>") == "byte 0xFF at position 5 is not valid UTF-8"


def test_bare_line_endings_are_found():
    assert bare_line_ending(b"a\r\nb\r\n") is None
    assert bare_line_ending(b"a\nb\r\n") == "LF"
    assert bare_line_ending(b"a\rb\r\n") == "CR"
    assert bare_line_ending(b"a\r\r\n") == "CR"


def test_each_session_has_its_own_command_size_limits():
    # aiosmtpd shares one dict between all sessions and clears it at every new connection.
    loop = asyncio.new_event_loop()
    one = LimitedSMTP(Keep(), loop=loop)
    two = LimitedSMTP(Keep(), limits=Limits(max_command_length=100), loop=loop)
    try:
        assert one.command_size_limits is not two.command_size_limits is not SMTP.command_size_limits
        assert one.command_size_limits["MAIL"] == 512 and two.command_size_limits["MAIL"] == 100
    finally:
        loop.close()


# -- limits on the wire -----------------------------------------------------------------------


def test_message_size_is_advertised_and_enforced(serve):
    handler = Keep()
    server = serve(Limits(max_message_size=1000), handler)
    with Wire(server.address) as wire:
        assert "250-SIZE 1000" in hello(wire)
        assert wire.command("MAIL FROM:<a@example.test> SIZE=1001") == [
            "552 5.3.4 Message size exceeds the limit of 1000 bytes (SIZE in the EHLO reply)"
        ]
        wire.command("MAIL FROM:<a@example.test>")
        wire.command("RCPT TO:<b@example.test>")
        assert wire.command("DATA")[0].startswith("354")
        wire.send(b"Subject: big\r\n\r\n" + (b"x" * 98 + b"\r\n") * 10 + b".\r\n")
        assert wire.reply() == [
            "552 5.3.4 Message too big: the limit is 1000 bytes (SIZE in the EHLO reply); nothing was stored"
        ]
        assert handler.messages == []
        # The session goes on: a message within the limit is accepted.
        wire.command("MAIL FROM:<a@example.test>")
        wire.command("RCPT TO:<b@example.test>")
        wire.command("DATA")
        assert wire.command(b"Subject: small\r\n\r\nhi\r\n.") == ["250 2.0.0 kept"]
    assert [m.content for m in handler.messages] == [b"Subject: small\r\n\r\nhi\r\n"]


def test_long_lines_are_refused_and_not_stored(serve):
    handler = Keep()
    server = serve(Limits(max_line_length=200, max_command_length=100), handler)
    with Wire(server.address) as wire:
        hello(wire)
        assert wire.command("NOOP " + "x" * 120) == [
            "500 5.5.2 Command line too long: the limit is 100 bytes (RFC 5321 section 4.5.3.1.4)"
        ]
        wire.command("MAIL FROM:<a@example.test>")
        wire.command("RCPT TO:<b@example.test>")
        wire.command("DATA")
        assert wire.command(b"Subject: long\r\n\r\n" + b"y" * 300 + b"\r\n.")[0].startswith(
            "500 5.5.2 Line too long: a message line may have 200 bytes at most"
        )
        assert wire.command("NOOP") == ["250 OK"]
    assert handler.messages == []


def test_recipients_per_message(serve):
    handler = Keep()
    server = serve(Limits(max_recipients=2), handler)
    with Wire(server.address) as wire:
        hello(wire)
        assert wire.command("RCPT TO:<early@example.test>") == ["503 Error: need MAIL command"]
        wire.command("MAIL FROM:<a@example.test>")
        assert wire.command("RCPT TO:<b1@example.test>") == ["250 OK"]
        assert wire.command("RCPT TO:<b2@example.test>") == ["250 OK"]
        assert wire.command("RCPT TO:<b3@example.test>") == [
            "452 4.5.3 Too many recipients: 2 per message at most; send the rest in another transaction"
        ]
        wire.command("DATA")
        assert wire.command(b"Subject: two\r\n\r\nhi\r\n.") == ["250 2.0.0 kept"]
        # A new transaction starts counting again.
        wire.command("MAIL FROM:<a@example.test>")
        assert wire.command("RCPT TO:<b3@example.test>") == ["250 OK"]
    assert handler.messages[0].rcpt_tos == ["b1@example.test", "b2@example.test"]


def test_connection_cap_refuses_then_serves_a_freed_slot(serve):
    server = serve(Limits(max_connections=2))
    first, second = Wire(server.address), Wire(server.address)
    assert first.line().startswith("220") and second.line().startswith("220")
    with Wire(server.address) as third:
        assert (
            third.line()
            == f"421 4.7.0 {HOST} Too many connections (2 open, the server's limit): try again later"
        )
        assert third.rest() == b""
    assert server.gate.refused == 1
    first.command("QUIT")
    assert first.rest() == b""
    first.close()
    with Wire(server.address) as fourth:  # the slot QUIT freed
        assert fourth.line().startswith("220")
        assert fourth.command("QUIT") == ["221 Bye"]
    second.close()


def authenticate(server, session, envelope, mechanism, auth_data):
    assert isinstance(auth_data, LoginPassword)
    return AuthResult(success=auth_data.password == b"wonderland", handled=False)


def test_auth_failures_close_the_connection(serve):
    server = serve(Limits(max_auth_failures=3), authenticator=authenticate, auth_require_tls=False)
    wrong = "AUTH PLAIN " + plain_response("alice", "looking-glass")
    with Wire(server.address) as wire:
        hello(wire)
        assert wire.command(wrong) == ["535 5.7.8 Authentication credentials invalid"]
        assert wire.command("AUTH PLAIN !!!") == ["501 5.5.2 Can't decode base64"]  # not a failed password
        assert wire.command(wrong) == ["535 5.7.8 Authentication credentials invalid"]
        assert wire.command(wrong + "\r\nNOOP") == ["535 5.7.8 Authentication credentials invalid"]
        assert wire.line() == f"421 4.7.0 {HOST} Too many failed AUTH attempts (3), closing connection"
        assert wire.rest() == b"", "the pipelined NOOP is not answered"
    with Wire(server.address) as wire:  # a new connection may try again, and succeed
        hello(wire)
        assert wire.command("AUTH PLAIN " + plain_response("alice", "wonderland"))[0].startswith("235")


def test_idle_timeout_says_421_before_closing(serve):
    server = serve(Limits(idle_timeout=0.3))
    started = time.perf_counter()
    with Wire(server.address) as wire:
        hello(wire)
        wire.send(b"NOOP")  # half a command does not count
        assert wire.line() == f"421 4.4.2 {HOST} Timeout: no complete command for 0.3 s, closing connection"
        assert wire.rest() == b""
        assert 0.3 <= time.perf_counter() - started < 2


def test_session_lifetime_ends_even_a_busy_session(serve):
    server = serve(Limits(max_session_time=0.3, idle_timeout=10))
    started = time.perf_counter()
    with Wire(server.address) as wire:
        hello(wire)
        replies = []
        while (reply := wire.command("NOOP")) == ["250 OK"]:  # keep-alives do not help
            replies.append(reply)
        assert reply == [
            f"421 4.4.2 {HOST} Session too long: connections last at most 0.3 s, closing connection"
        ]
        assert 0.3 <= time.perf_counter() - started < 2 and len(replies) > 1


@pytest.mark.parametrize("method", ["GET", "POST", "CONNECT", "HEAD", "PUT", "get"])
def test_http_requests_are_hung_up_on(serve, method):
    server = serve()
    with Wire(server.address) as wire:
        assert wire.line().startswith("220")
        wire.send(f"{method} / HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: browser\r\n\r\n")
        assert wire.line() == f"421 4.7.0 {HOST} This is an SMTP server, not a web server"
        assert wire.rest() == b"", "header lines are not answered"


def test_help_lists_smtp_commands_only(serve):
    server = serve()
    with Wire(server.address) as wire:
        hello(wire)
        (reply,) = wire.command("HELP")
        assert "MAIL" in reply and "RCPT" in reply and "AUTH" in reply and "GET" not in reply
        assert wire.command("HELP MAIL") == ["250 Syntax: MAIL FROM: <address> [SP <mail-parameters>]"]


@pytest.mark.parametrize(
    ("command", "reply"),
    [
        (b"MAIL FROM:<a\x00b@example.test>", "501 5.1.7 Bad sender address: NUL byte (0x00) at position 7"),
        (
            b"MAIL FROM:<a\x01b@example.test>",
            "501 5.1.7 Bad sender address: control character (0x01) at position 7",
        ),
        (
            b"MAIL FROM:<a\xffb@example.test>",
            "501 5.1.7 Bad sender address: byte 0xFF at position 7 is not valid UTF-8",
        ),
        (b"RCPT TO:<b\x00@example.test>", "501 5.1.3 Bad recipient address: NUL byte (0x00) at position 5"),
        (b"RCPT TO:<b\tc@example.test>", "501 5.1.3 Bad recipient address: tab (0x09) at position 5"),
        (
            b"RCPT TO:<b\rc@example.test>",
            "501 5.1.3 Bad recipient address: carriage return (CR) (0x0D) at position 5",
        ),
    ],
)
def test_control_characters_and_bad_utf8_in_addresses(serve, command, reply):
    handler = Keep()
    server = serve(handler=handler)
    with Wire(server.address) as wire:
        hello(wire)
        if command.startswith(b"RCPT"):
            wire.command("MAIL FROM:<a@example.test>")
        (answer,) = wire.command(command)
        assert answer.startswith(reply)
        assert wire.command("NOOP") == ["250 OK"]


def test_address_checks_come_after_the_sequence_checks(serve):
    server = serve()
    with Wire(server.address) as wire:
        assert wire.line().startswith("220")
        assert wire.command(b"MAIL FROM:<a\x00b@example.test>") == ["503 Error: send HELO first"]


@pytest.mark.parametrize("strict", [False, True])
def test_bare_line_endings_in_data(serve, strict):
    handler = Keep()
    server = serve(Limits(strict_line_endings=strict), handler)
    with Wire(server.address) as wire:
        hello(wire)
        wire.command("MAIL FROM:<a@example.test>")
        wire.command("RCPT TO:<b@example.test>")
        wire.command("DATA")
        (reply,) = wire.command(b"Subject: lf\r\n\r\none\ntwo\r\n.")
    if strict:
        assert reply == (
            "550 5.6.0 Message refused: it contains a bare LF; SMTP lines end with CRLF "
            "(RFC 5321 section 2.3.8). Nothing was stored"
        )
        assert handler.messages == []
    else:
        assert reply == "250 2.0.0 kept"
        assert handler.messages[0].content == b"Subject: lf\r\n\r\none\ntwo\r\n"


class Broken:
    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        raise RuntimeError("oops")

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        if hostname == "crash":
            raise KeyError(hostname)
        session.host_name = hostname
        return responses


def test_a_raising_handler_gets_451_and_the_session_goes_on(serve, caplog):
    server = serve(handler=Broken())
    with Wire(server.address) as wire:
        assert wire.line().startswith("220")
        assert wire.command("EHLO crash") == ["451 4.3.0 Error in handle_EHLO: KeyError"]
        assert wire.command("EHLO fine")[0] == f"250-{HOST}"
        wire.command("MAIL FROM:<a@example.test>")
        assert wire.command("RCPT TO:<b@example.test>") == ["451 4.3.0 Error in handle_RCPT: RuntimeError"]
        assert wire.command("NOOP") == ["250 OK"]
    assert "handle_RCPT raised" in caplog.text


def test_gate_counts_and_releases():
    gate = ConnectionGate(1)
    assert gate.enter() and not gate.enter()
    gate.leave()
    assert gate.enter() and gate.refused == 1
    assert repr(gate) == "<ConnectionGate 1/1 open, 1 refused>"
    unlimited = ConnectionGate(None)
    assert all(unlimited.enter() for _ in range(1000))


def test_controller_threads_end(serve):
    before = threading.active_count()
    server = serve()
    with Wire(server.address) as wire:
        hello(wire)
    server.stop()
    server.stop = lambda no_assert=False: None  # the fixture's stop: already done
    assert threading.active_count() == before
