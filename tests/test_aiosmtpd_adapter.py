"""Tests for smtplab._aiosmtpd: the lab's aiosmtpd session and Controller, limits on the wire."""

from __future__ import annotations

import asyncio
import base64
import logging
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

import smtplab
from smtplab import protocol
from smtplab._aiosmtpd import Callbacks, Intervention, LabController, LabSMTP
from smtplab.auth import plain_response
from smtplab.limits import Limits
from smtplab.transcript import Transcript
from tests.wire import Wire

HOST = "limits.test"


class Keep:
    """A handler keeping every message it is given."""

    def __init__(self) -> None:
        self.messages: list[Any] = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(envelope)
        return "250 2.0.0 kept"


class Lab:
    """What a lab server gives its Controller: callbacks that keep transcripts and errors."""

    def __init__(self, before_reply: Any = None) -> None:
        self.transcripts: list[Transcript] = []
        self.closed: list[Transcript] = []
        self.errors: list[tuple[str, BaseException]] = []
        self.callbacks = Callbacks(
            opened=self.opened,
            handler_error=self.handler_error,
            closed=self.closed.append,
            before_reply=before_reply,
        )

    def opened(self, peer: Any, local: Any) -> Transcript:
        self.transcripts.append(Transcript(title="server", peer=peer, local=local))
        return self.transcripts[-1]

    def handler_error(self, hook: str, error: BaseException) -> str:
        self.errors.append((hook, error))
        return f"451 4.3.0 Error in {hook}: {type(error).__name__}"


@pytest.fixture
def serve() -> Iterator[Any]:
    """serve(limits, handler=None, lab=None, **aiosmtpd_options) -> a running LabController."""
    started: list[LabController] = []

    def start(
        limits: Limits | None = None, handler: Any = None, lab: Lab | None = None, **options: Any
    ) -> LabController:
        sock = socket.create_server(("127.0.0.1", 0))
        sock.setblocking(False)
        controller = LabController(
            handler or Keep(),
            sock,
            limits=limits or Limits(),
            callbacks=(lab or Lab()).callbacks,
            server_hostname=HOST,
            ready_timeout=5,
            **options,
        )
        controller.start()
        started.append(controller)
        return controller

    yield start
    for controller in started:
        controller.stop()


def hello(wire: Wire) -> list[str]:
    assert wire.line().startswith(f"220 {HOST}")
    return wire.command("EHLO client.test")


def test_each_session_has_its_own_command_size_limits():
    # aiosmtpd shares one dict between all sessions and clears it at every new connection.
    loop = asyncio.new_event_loop()
    one = LabSMTP(Keep(), loop=loop)
    two = LabSMTP(Keep(), limits=Limits(max_command_length=100), loop=loop)
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
        assert wire.command("NOOP") == ["250 2.0.0 OK"]
    assert handler.messages == []


def test_recipients_per_message(serve):
    handler = Keep()
    server = serve(Limits(max_recipients=2), handler)
    with Wire(server.address) as wire:
        hello(wire)
        assert wire.command("RCPT TO:<early@example.test>") == ["503 5.5.1 Error: need MAIL command"]
        wire.command("MAIL FROM:<a@example.test>")
        assert wire.command("RCPT TO:<b1@example.test>") == ["250 2.1.5 OK"]
        assert wire.command("RCPT TO:<b2@example.test>") == ["250 2.1.5 OK"]
        assert wire.command("RCPT TO:<b3@example.test>") == [
            "452 4.5.3 Too many recipients: 2 per message at most; send the rest in another transaction"
        ]
        wire.command("DATA")
        assert wire.command(b"Subject: two\r\n\r\nhi\r\n.") == ["250 2.0.0 kept"]
        # A new transaction starts counting again.
        wire.command("MAIL FROM:<a@example.test>")
        assert wire.command("RCPT TO:<b3@example.test>") == ["250 2.1.5 OK"]
    assert handler.messages[0].rcpt_tos == ["b1@example.test", "b2@example.test"]


def test_connection_cap_refuses_then_serves_a_freed_slot(serve):
    server = serve(Limits(max_connections=2))
    first, second = Wire(server.address), Wire(server.address)
    assert first.line().startswith("220") and second.line().startswith("220")
    with Wire(server.address) as third:
        assert (
            third.line()
            == f"421 4.7.0 {HOST} Too many connections: 2 are open, this server's limit (Limits.max_connections); try again later"
        )
        assert third.rest() == b""
    assert server.gate.refused == 1
    first.command("QUIT")
    assert first.rest() == b""
    first.close()
    with Wire(server.address) as fourth:  # the slot QUIT freed
        assert fourth.line().startswith("220")
        assert fourth.command("QUIT") == ["221 2.0.0 Bye"]
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
        assert time.perf_counter() - started >= 0.3, "not before the limit"


def test_session_lifetime_ends_even_a_busy_session(serve):
    server = serve(Limits(max_session_time=0.3, idle_timeout=10))
    started = time.perf_counter()
    with Wire(server.address) as wire:
        hello(wire)
        replies = []
        while (reply := wire.command("NOOP")) == ["250 2.0.0 OK"]:  # keep-alives do not help
            replies.append(reply)
        assert reply == [
            f"421 4.4.2 {HOST} Session too long: connections last at most 0.3 s, closing connection"
        ]
        assert time.perf_counter() - started >= 0.3, "not before the limit"


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
        reply = "\n".join(wire.command("HELP"))
        assert (
            reply.startswith("214-") and reply.splitlines()[-1] == "214 2.0.0 End of HELP"
        )  # RFC 5321 §4.1.1.8
        assert "MAIL FROM:" in reply and "RCPT TO:" in reply and "AUTH" in reply and "GET" not in reply
        (mail,) = wire.command("HELP MAIL")
        assert (
            mail.startswith("214 2.0.0 MAIL FROM:<reverse-path> [parameters] - ")
            and "RFC 5321 section 4.1.1.2" in mail
        )
        assert wire.command("HELP GET")[0].startswith("501 5.5.4 HELP: no command 'GET' here")


def test_what_is_switched_off_is_left_out_of_ehlo_and_help_and_refused(serve):
    server = serve(switched_off=frozenset({"8BITMIME", "SMTPUTF8", "ENHANCEDSTATUSCODES", "AUTH"}))
    with Wire(server.address) as wire:
        assert hello(wire) == [f"250-{HOST}", "250-SIZE 10485760", "250 HELP"]
        reply = "\n".join(wire.command("HELP"))
        assert "MAIL FROM:" in reply and "AUTH" not in reply
        assert wire.command("AUTH PLAIN x")[0].startswith("502 AUTH not implemented"), "no enhanced codes"
        assert wire.command("MAIL FROM:<a@example.test>") == ["250 OK"]


class OldEhloHook:
    async def handle_EHLO(self, server, session, envelope, hostname):
        session.host_name = hostname
        return "250 at your service"


class NewEhloHook:
    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        return [*responses[:-1], "250-X-LAB", responses[-1]]


# Each new session of the old-style hook warns, on the server's thread.
@pytest.mark.filterwarnings("ignore:Use the 5-argument handle_EHLO:DeprecationWarning")
def test_a_handle_ehlo_keeps_its_own_lines_and_switched_off_extensions_are_left_out(serve):
    old = serve(handler=OldEhloHook(), switched_off=frozenset({"SIZE", "SMTPUTF8", "ENHANCEDSTATUSCODES"}))
    with Wire(old.address) as wire:
        assert hello(wire) == [f"250-{HOST}", "250-8BITMIME", "250 at your service"]
        assert wire.command("MAIL FROM:<a@example.test>") == ["250 OK"]
    new = serve(handler=NewEhloHook(), switched_off=frozenset({"SIZE", "8BITMIME", "SMTPUTF8"}))
    with Wire(new.address) as wire:
        assert hello(wire) == [f"250-{HOST}", "250-X-LAB", "250-ENHANCEDSTATUSCODES", "250 HELP"]
        assert wire.command("MAIL FROM:<a@example.test>") == ["250 2.1.0 OK"]


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
        assert wire.command("NOOP") == ["250 2.0.0 OK"]


def test_non_ascii_addresses_need_the_smtputf8_parameter(serve):
    # RFC 6531 §3.4-3.5: without SMTPUTF8 on MAIL, a non-ASCII address is refused with 553 5.6.7.
    handler = Keep()
    server = serve(handler=handler)
    with Wire(server.address) as wire:
        assert "250-SMTPUTF8" in hello(wire)
        (refused,) = wire.command("MAIL FROM:<jörg@例え.test>")
        assert refused.startswith("553 5.6.7 Non-ASCII sender address refused: it needs SMTPUTF8")
        assert "send MAIL FROM:<...> SMTPUTF8 (the EHLO reply offers SMTPUTF8)" in refused
        assert refused.isascii()  # the client did not say it reads UTF-8
        assert wire.command("MAIL FROM:<a@example.test>")[0].startswith("250")  # nothing was started
        (refused,) = wire.command("RCPT TO:<bob@例え.test>")
        assert refused.startswith("553 5.6.7 Non-ASCII recipient address refused: it needs SMTPUTF8")
        assert "this transaction's MAIL FROM had no SMTPUTF8 parameter" in refused
        assert wire.command("RSET")[0].startswith("250")
        assert wire.command("MAIL FROM:<jörg@例え.test> SMTPUTF8 BODY=8BITMIME")[0].startswith("250")
        assert wire.command("RCPT TO:<bob@例え.test>")[0].startswith("250")
        assert wire.command("DATA")[0].startswith("354")
        assert wire.command("Subject: Grüße\r\n\r\nHallo Jörg\r\n.".encode()) == ["250 2.0.0 kept"]
    (envelope,) = handler.messages
    assert (envelope.mail_from, envelope.rcpt_tos) == ("jörg@例え.test", ["bob@例え.test"])
    assert envelope.mail_options == ["SMTPUTF8", "BODY=8BITMIME"]


def test_smtputf8_after_helo_is_explained(serve):
    server = serve()
    with Wire(server.address) as wire:
        wire.line()
        wire.command("HELO client.test")
        (refused,) = wire.command("MAIL FROM:<jörg@example.test>")
        assert refused.startswith("553 5.6.7 Non-ASCII sender address refused: it needs SMTPUTF8")
        assert "greet with EHLO (not HELO)" in refused


def test_every_reply_after_ehlo_carries_an_enhanced_status_code(lab_tls):
    # RFC 2034 §4: once ENHANCEDSTATUSCODES is offered, every 2xx, 4xx and 5xx reply line carries
    # an enhanced code of its class, except the greeting and the replies to HELO and EHLO; 3xx
    # replies have none (RFC 3463 has no class 3).
    options = {"mailboxes": ["alice@example.test"], "lists": {"team": ["alice@example.test"]}}
    auth = {"alice": "wonderland"}
    plain = base64.b64encode(b"\0alice\0wonderland").decode()
    wrong = base64.b64encode(b"\0alice\0wrong").decode()
    with (
        smtplab.start_server(name="walk", tls="starttls", auth=auth, lab_tls=lab_tls, **options) as server,
        smtplab.start_server(name="walk-tls", tls="starttls", require_tls=True, lab_tls=lab_tls) as strict,
        smtplab.start_server(name="walk-plain") as bare,
    ):
        with Wire(server.address) as wire:
            wire.line()
            for command in [
                "MAIL FROM:<a@example.test>", "HELO", "NOOP", "FOO", "", "EHLO", "EHLO client.test",
                "HELP", "HELP MAIL", "HELP NOPE", "VRFY", "VRFY alice", "VRFY nobody", "EXPN",
                "EXPN team", "EXPN nolist", "RCPT TO:<b@example.test>", "DATA", "MAIL FROM:",
                "MAIL FROM:<a@example.test> FOO=BAR", "MAIL FROM:<a@example.test> BODY=BINARYMIME",
                "MAIL FROM:<a@example.test> SMTPUTF8=yes", "MAIL FROM:<a@example.test> SIZE=big",
                "MAIL FROM:<a@example.test> SIZE=99999999999", "MAIL FROM:<jörg@example.test>",
                "MAIL FROM:<a@example.test>", "MAIL FROM:<a@example.test>", "RCPT TO:",
                "RCPT TO:<b@example.test> FOO=1", "RCPT TO:<jörg@example.test>", "RCPT TO:<b@example.test>",
                "DATA x", "DATA", "Subject: walk\r\n\r\nhi\r\n.", "RSET x", "RSET",
                f"AUTH PLAIN {plain}", "STARTTLS x", "STARTTLS",
            ]:  # fmt: skip
                wire.command(command)
            wire.starttls(server.client_context())
            for command in [
                "EHLO client.test", "AUTH", "AUTH PLAIN a b c", "AUTH NOPE", "AUTH LOGIN", "*",
                f"AUTH PLAIN {wrong}", f"AUTH PLAIN {plain}",
                f"AUTH PLAIN {plain}", "QUIT x", "QUIT",
            ]:  # fmt: skip
                wire.command(command)
        with Wire(server.address) as wire:
            wire.line()
            for command in ["HELO client.test", "AUTH PLAIN", "FOO1", "FOO2", "FOO3", "FOO4"]:
                wire.command(command)
            assert wire.command("FOO5")[0].startswith("502 5.5.1 Too many unrecognized commands")
        with Wire(server.address) as wire:
            wire.line()
            wire.command(b"\x16\x03\x01\x00\x05hello")  # a TLS handshake, on a port that speaks plain text
            wire.command(b"\x80\x81 x")
            wire.command("QUIT")
        with Wire(strict.address) as wire:
            wire.line()
            wire.command("EHLO client.test")
            assert wire.command("MAIL FROM:<a@example.test>") == [
                "530 5.7.0 Must issue a STARTTLS command first"
            ]
        with Wire(bare.address) as wire:
            wire.line()
            assert "250-ENHANCEDSTATUSCODES" in wire.command("EHLO client.test")
            assert wire.command("STARTTLS") == ["454 4.7.0 TLS not available"]
            assert wire.command("MAIL FROM:<a@example.test>") == ["250 2.1.0 OK"]
            assert wire.command("RCPT TO:<b@example.test>") == ["250 2.1.5 OK"]
            assert wire.command("QUIT") == ["221 2.0.0 Bye"]
        transcripts = server.transcripts + strict.transcripts + bare.transcripts
    checked = 0
    for transcript in transcripts:
        answering = None  # the command the server's lines answer
        for line in transcript:
            if line.sender == "client":
                answering = line.text.split(" ")[0].upper()
                continue
            reply = protocol.parse_reply_line(line.text) if line.sender == "server" else None
            if reply is None or answering in (None, "HELO", "EHLO"):
                continue
            checked += 1
            if reply.code // 100 == 3:
                assert reply.enhanced is None, line.text
            else:
                assert reply.enhanced is not None and reply.enhanced[0] == str(reply.code)[0], line.text
                assert line.text.isprintable(), line.text
    assert checked > 70


def test_the_ehlo_reply_offers_enhancedstatuscodes_before_its_last_line(serve):
    server = serve()
    with Wire(server.address) as wire:
        lines = hello(wire)
    assert lines[0] == f"250-{HOST}" and lines[-2:] == ["250-ENHANCEDSTATUSCODES", "250 HELP"]


def test_a_handlers_own_replies_are_sent_as_written_and_its_ehlo_changes_kept(serve):
    class Mine(Keep):
        async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
            envelope.rcpt_tos.append(address)
            return "250 OK"  # the learner's words, though aiosmtpd's own "250 OK" gets a code

        async def handle_EHLO(self, server, session, envelope, hostname, responses):
            session.host_name = hostname
            return [line for line in responses if "SMTPUTF8" not in line]

    server = serve(handler=Mine())
    with Wire(server.address) as wire:
        lines = hello(wire)
        assert "250-SMTPUTF8" not in lines and lines[-2:] == ["250-ENHANCEDSTATUSCODES", "250 HELP"]
        assert wire.command("MAIL FROM:<a@example.test>") == ["250 2.1.0 OK"]
        assert wire.command("RCPT TO:<b@example.test>") == ["250 OK"]


def test_address_checks_come_after_the_sequence_checks(serve):
    server = serve()
    with Wire(server.address) as wire:
        assert wire.line().startswith("220")
        assert wire.command(b"MAIL FROM:<a\x00b@example.test>") == ["503 5.5.1 Error: send HELO first"]


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
        assert wire.command("NOOP") == ["250 2.0.0 OK"]
    assert "handle_RCPT raised" in caplog.text


def test_a_failed_starttls_handshake_is_a_one_line_note_not_a_traceback(serve, lab_tls, caplog):
    lab = Lab()
    server = serve(lab=lab, tls_context=lab_tls.server_context())
    with Wire(server.address) as wire:
        hello(wire)
        assert wire.command("STARTTLS") == ["220 2.0.0 Ready to start TLS"]
        wire.send(b"\x16\x03\x01\x00\x05hello")  # not a TLS handshake that can go on
        assert wire.rest() == b""
    server.stop()  # waits for every session's connection_lost
    (transcript,) = lab.closed
    notes = [line.text for line in transcript if line.sender == "event"]
    assert any(note.startswith("TLS handshake failed after STARTTLS: SSLError") for note in notes), notes
    assert all("\n" not in note and "Traceback" not in note for note in notes)
    assert lab.errors == []  # the client's doing, not a mistake in a handler
    assert [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info] == []


def test_starttls_inside_tls_is_refused_as_postfix_does(serve, lab_tls, caplog):
    server = serve(tls_context=lab_tls.server_context())
    with Wire(server.address) as wire:
        hello(wire)
        assert wire.command("STARTTLS") == ["220 2.0.0 Ready to start TLS"]
        wire.starttls(lab_tls.client_context())
        assert "250-STARTTLS" not in wire.command("EHLO client.test")
        assert wire.command("STARTTLS") == ["554 5.5.1 Error: TLS already active"]
        assert wire.command("NOOP") == ["250 2.0.0 OK"]  # the session goes on, still encrypted
    server.stop()
    assert [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info] == []


def test_binary_lines_are_noted_in_the_transcript_not_logged(serve, caplog):
    lab = Lab()
    server = serve(lab=lab)
    with Wire(server.address) as wire:
        hello(wire)
        (reply,) = wire.command(b"\x16\x03\x01\x00\x05hello")
        assert reply.startswith("500 5.5.2 Error: binary data, not an SMTP command")
        wire.command("QUIT")
    server.stop()
    (transcript,) = lab.closed
    notes = [line.text for line in transcript if line.sender == "event"]
    assert "aiosmtpd: unrecognised: \\x16\\x03\\x01\\x00\\x05HELLO" in notes, notes
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_an_unexpected_error_in_a_session_is_reported_once_and_answered_451(serve, monkeypatch, caplog):
    lab = Lab()
    server = serve(lab=lab)

    async def broken_noop(self, arg):
        raise ZeroDivisionError("a bug in the session")

    monkeypatch.setattr(LabSMTP, "smtp_NOOP", broken_noop)
    with Wire(server.address) as wire:
        hello(wire)
        assert wire.command("NOOP") == ["451 4.3.0 Error in the SMTP session: ZeroDivisionError"]
        assert wire.command("RSET") == ["250 2.0.0 OK"]  # and the session goes on
    assert [(hook, type(error)) for hook, error in lab.errors] == [("the SMTP session", ZeroDivisionError)]
    assert [r for r in caplog.records if r.exc_info] == []


def test_controller_threads_end(serve):
    before = threading.active_count()
    server = serve()
    with Wire(server.address) as wire:
        hello(wire)
    server.stop()  # the fixture stops it again: safe
    assert threading.active_count() == before


# -- reporting to the lab ---------------------------------------------------------------------------


def test_a_session_reports_to_the_lab_through_its_callbacks(serve):
    lab = Lab()
    server = serve(lab=lab)
    with Wire(server.address) as wire:
        hello(wire)
        wire.command("MAIL FROM:<a@example.test>")
        wire.command("RCPT TO:<b@example.test>")
        assert wire.command("DATA")[0].startswith("354")
        assert wire.command(b"Subject: x\r\n\r\nhi\r\n.") == ["250 2.0.0 kept"]
        wire.command("QUIT")
        assert wire.rest() == b""
    server.stop()  # waits for every session's connection_lost
    (transcript,) = lab.transcripts
    assert lab.closed == [transcript] and not server.sessions
    text = transcript.text(annotate=False)
    assert text.startswith(f"** connection from 127.0.0.1:{transcript.peer[1]}\n<- 220 {HOST}")
    assert "-> EHLO client.test\n<- 250-limits.test" in text
    assert (
        "-> DATA\n<- 354 End data with <CR><LF>.<CR><LF>\n** message data: 3 lines, 18 bytes\n-> .\n<- 250"
        in text
    )
    assert text.endswith("-> QUIT\n<- 221 2.0.0 Bye\n** connection closed")


STAGE_SCRIPT = [
    ("connect", None),
    ("EHLO", "EHLO client.test"),
    ("AUTH", "AUTH PLAIN " + plain_response("alice", "wonderland")),
    ("MAIL", "MAIL FROM:<a@example.test>"),
    ("RCPT", "RCPT TO:<b@example.test>"),
    ("DATA", "DATA"),
    ("end of data", b"Subject: x\r\n\r\nhi\r\n."),
]


def accept_alice(server, session, envelope, mechanism, auth_data):
    return AuthResult(success=auth_data.login == b"alice", handled=False)


@pytest.mark.parametrize("stage", [name for name, _ in STAGE_SCRIPT])
def test_each_stage_asks_the_lab_once_before_it_replies(serve, stage):
    asked: list[str] = []

    def before_reply(name: str, session: LabSMTP) -> Intervention | None:
        asked.append(name)
        return Intervention(reply=f"554 5.7.1 injected at {name}", note="a test") if name == stage else None

    lab = Lab(before_reply)
    server = serve(lab=lab, authenticator=accept_alice, auth_require_tls=False)
    with Wire(server.address) as wire:
        for name, line in STAGE_SCRIPT:
            reply = wire.reply() if line is None else wire.command(line)
            if name == stage:
                assert reply == [f"554 5.7.1 injected at {name}"]
                break
            assert reply[-1][0] in "23", reply
        assert wire.command("QUIT") == ["221 2.0.0 Bye"]
    server.stop()
    names = [name for name, _ in STAGE_SCRIPT]
    assert asked == names[: names.index(stage) + 1]
    text = lab.transcripts[0].text(annotate=False)
    assert f"** the lab intervenes at {stage}: a test" in text
    assert f"** reply given by the lab, not by the session: 554 5.7.1 injected at {stage}" in text
    assert f"<- 554 5.7.1 injected at {stage}" in text


def test_the_lab_may_hold_back_a_reply_or_close_the_connection(serve):
    def before_reply(name: str, session: LabSMTP) -> Intervention | None:
        if name == "MAIL":
            return Intervention(delay=0.01)
        if name == "RCPT":
            return Intervention(disconnect=True, note="closing on purpose")
        return None

    lab = Lab(before_reply)
    server = serve(lab=lab)
    with Wire(server.address) as wire:
        hello(wire)
        assert wire.command("MAIL FROM:<a@example.test>") == ["250 2.1.0 OK"]  # later, but as usual
        assert wire.command("RCPT TO:<b@example.test>") == [""]
        assert wire.rest() == b""
    server.stop()
    text = lab.transcripts[0].text(annotate=False)
    assert "** the lab closes the connection at RCPT\n** connection closed" in text


def test_a_bad_address_before_the_greeting_gets_one_reply_saying_greet_first(serve):
    server = serve()
    with Wire(server.address) as wire:
        assert wire.line().startswith("220")
        assert wire.command(b"MAIL FROM:<a\x00b@example.test>") == ["503 5.5.1 Error: send HELO first"]
        assert wire.command("NOOP") == ["250 2.0.0 OK"]  # the next reply is NOOP's: nothing was doubled


def test_message_content_is_recorded_as_its_size_on_the_wire_whatever_the_outcome(serve):
    lab = Lab()
    server = serve(Limits(max_message_size=100), lab=lab)
    with Wire(server.address) as wire:
        hello(wire)
        for content, reply in ((b"..dot\r\nline\r\n.", "250"), (b"x" * 200 + b"\r\n.", "552")):
            wire.command("MAIL FROM:<a@example.test>")
            wire.command("RCPT TO:<b@example.test>")
            wire.command("DATA")
            assert wire.command(content)[0].startswith(reply)
        assert wire.command("NOOP") == ["250 2.0.0 OK"]  # commands are recorded again after the data
    server.stop()
    text = lab.transcripts[0].text(annotate=False)
    assert "** message data: 2 lines, 13 bytes\n-> .\n<- 250 2.0.0 kept" in text  # "..dot" as sent
    assert "** message data: refused by the server, not kept\n-> .\n<- 552 5.3.4 Message too big" in text
    assert "-> NOOP\n<- 250 2.0.0 OK" in text and "x" * 200 not in text
