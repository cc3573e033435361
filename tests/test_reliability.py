"""The lab server under bad input, load and faults: every limit, input hygiene, lifecycle."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import signal
import smtplib
import socket
import ssl
import stat
import subprocess
import sys
import threading
import time
import warnings
from typing import Any

import aiosmtplib
import pytest

import smtplab
from smtplab import Limits
from smtplab.auth import plain_response
from smtplab.errors import MailboxWarning, SharedHostWarning
from smtplab.hints import render
from tests.conftest import open_fds, thread_names
from tests.wire import Wire

HOST = "smtplab.test"


def hello(wire: Wire) -> list[str]:
    assert wire.line().startswith(f"220 {HOST}")
    return wire.command("EHLO client.test")


def envelope(wire: Wire, *recipients: str) -> None:
    assert wire.command("MAIL FROM:<alice@example.test>") == ["250 2.1.0 OK"]
    for rcpt in recipients or ("bob@example.test",):
        assert wire.command(f"RCPT TO:<{rcpt}>") == ["250 2.1.5 OK"]
    assert wire.command("DATA")[0].startswith("354")


def closed(transcript: Any) -> threading.Event:
    """An event set once the server has recorded the end of the session."""
    assert transcript is not None
    done = threading.Event()

    def watch(line: Any) -> None:
        if line.sender == "event" and line.text == "connection closed":
            done.set()

    transcript.observe(watch)
    if any(line.text == "connection closed" for line in transcript.lines):
        done.set()
    return done


def send(server: smtplab.LabServer, subject: str = "hi", **kwargs: Any) -> None:
    with smtplib.SMTP(*server.address, timeout=5) as client:
        client.sendmail(
            "alice@example.test", ["bob@example.test"], f"Subject: {subject}\r\n\r\nhello\r\n", **kwargs
        )


# -- defaults and options -----------------------------------------------------------------------


def test_a_lab_server_has_classroom_limits_by_default(lab_server):
    assert lab_server.limits == Limits()
    assert (lab_server.mailbox.max_messages, lab_server.mailbox.max_bytes) == (10_000, 100 * 1024 * 1024)
    with Wire(lab_server.address) as wire:
        assert "250-SIZE 10485760" in hello(wire)


def test_limits_take_a_dict_and_aiosmtpd_knobs_fold_in():
    assert smtplab.LabServer(limits={"max_recipients": 5}).limits.max_recipients == 5
    folded = smtplab.LabServer(data_size_limit=100, timeout=30).limits
    assert (folded.max_message_size, folded.idle_timeout) == (100, 30)
    assert smtplab.LabServer(data_size_limit=0).limits.max_message_size is None  # aiosmtpd: 0 = no limit
    with pytest.raises(
        TypeError, match=r"limits= or aiosmtpd's data_size_limit= \(Limits.max_message_size\)"
    ):
        smtplab.LabServer(limits=Limits(), data_size_limit=100)
    with pytest.raises(TypeError, match="max_recipient"):
        smtplab.LabServer(limits={"max_recipient": 5})
    with pytest.raises(TypeError, match=r"smtplab.Limits or a dict"):
        smtplab.LabServer(limits=5)


# -- every limit, on the wire and through smtplab's client -------------------------------------


@pytest.mark.server_options(limits=Limits(max_message_size=2000))
def test_message_size(lab_server):
    with Wire(lab_server.address) as wire:
        hello(wire)
        envelope(wire)
        (reply,) = wire.command(b"Subject: big\r\n\r\n" + (b"x" * 78 + b"\r\n") * 40 + b".")
        assert reply.startswith("552 5.3.4 Message too big: the limit is 2000 bytes")
        assert wire.command("QUIT") == ["221 2.0.0 Bye"]

    async def with_the_client() -> smtplab.SendResult:
        async with smtplab.Client(lab_server) as client:
            await client.ehlo()
            assert client.extensions["size"] == "2000"
            return await client.send(
                "a@example.test", "b@example.test", "Subject: big\n\n" + ("y" * 70 + "\n") * 50
            )

    result = asyncio.run(with_the_client())
    assert result.reply.code == 552 and result.reply.enhanced == "5.3.4" and not result.ok
    send(lab_server, "small")
    assert [m.subject for m in lab_server.mailbox.wait_for(1)] == ["small"]  # never half a message


@pytest.mark.server_options(limits=Limits(max_recipients=3))
def test_recipients_per_message(lab_server):
    recipients = [f"r{n}@example.test" for n in range(5)]
    with Wire(lab_server.address) as wire:
        hello(wire)
        wire.command("MAIL FROM:<a@example.test>")
        replies = [wire.command(f"RCPT TO:<{r}>")[0] for r in recipients]
        assert replies[:3] == ["250 2.1.5 OK"] * 3
        assert (
            replies[3:]
            == ["452 4.5.3 Too many recipients: 3 per message at most; send the rest in another transaction"]
            * 2
        )
    with smtplab.SyncClient(lab_server) as client:
        result = client.send("a@example.test", recipients, "Subject: many\r\n\r\nhi")
    assert result.ok and result.accepted == recipients[:3]
    assert {r.enhanced for r in result.refused.values()} == {"4.5.3"}
    assert lab_server.mailbox.wait_for(1)[0].rcpt_tos == tuple(recipients[:3])


@pytest.mark.server_options(limits=Limits(max_line_length=300, max_command_length=200))
def test_line_and_command_length(lab_server):
    with Wire(lab_server.address) as wire:
        hello(wire)
        assert wire.command("MAIL FROM:<" + "a" * 300 + "@example.test>")[0].startswith(
            "500 5.5.2 Command line too long"
        )
        envelope(wire)
        assert wire.command(b"Subject: wide\r\n\r\n" + b"w" * 400 + b"\r\n.")[0].startswith(
            "500 5.5.2 Line too long: a message line may have 300 bytes at most"
        )
        assert wire.command("QUIT") == ["221 2.0.0 Bye"]
    assert lab_server.mailbox.received == 0


@pytest.mark.server_options(limits=Limits(idle_timeout=0.3, max_session_time=600))
def test_idle_time(lab_server):
    with Wire(lab_server.address) as idle:
        hello(idle)
        idle.send(b"MAIL FROM:<trickle")  # a command that never ends is idleness too
        assert idle.line() == f"421 4.4.2 {HOST} Timeout: no complete command for 0.3 s, closing connection"
        assert idle.rest() == b""
    server_side = lab_server.transcripts[-1].text()
    assert "<- 421 4.4.2" in server_side, "the server's transcript shows why it closed"


# The idle limit is far away, so however slowly a busy machine sends the NOOPs, the session
# limit is what ends the session.
@pytest.mark.server_options(limits=Limits(idle_timeout=600, max_session_time=0.6))
def test_session_time(lab_server):
    with Wire(lab_server.address) as busy:
        hello(busy)
        while (reply := busy.command("NOOP")) == ["250 2.0.0 OK"]:
            pass
        assert reply == [
            f"421 4.4.2 {HOST} Session too long: connections last at most 0.6 s, closing connection"
        ]
    server_side = lab_server.transcripts[-1].text()
    assert "<- 421 4.4.2" in server_side, "the server's transcript shows why it closed"


@pytest.mark.parametrize(
    "request_line",
    [
        "GET / HTTP/1.1",
        "POST /login HTTP/1.1",
        "CONNECT example.test:443 HTTP/1.1",
        "HEAD / HTTP/1.0",
        "PUT /x HTTP/1.1",
    ],
)
def test_a_browser_aimed_at_the_port_is_hung_up_on(lab_server, request_line):
    with Wire(lab_server.address) as wire:
        assert wire.line().startswith("220")
        wire.send(f"{request_line}\r\nHost: 127.0.0.1\r\nAccept: */*\r\n\r\n")
        assert wire.line() == f"421 4.7.0 {HOST} This is an SMTP server, not a web server"
        assert wire.rest() == b""
    with Wire(lab_server.address) as wire:
        assert wire.line().startswith("220"), "the server still answers"


# -- many users at once ---------------------------------------------------------------------------


def test_sixteen_senders_five_hundred_messages_each_nothing_lost(lab_server):
    senders, each = 16, 500
    errors: list[BaseException] = []

    def sender(k: int) -> None:
        try:
            with smtplib.SMTP(*lab_server.address, timeout=10) as client:
                for n in range(each):
                    body = f"Subject: {k}-{n}\r\nX-Sender: {k}\r\n\r\nmessage {n} from sender {k}\r\n"
                    client.sendmail(f"s{k}@example.test", [f"r{k}@example.test"], body)
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    started = time.perf_counter()
    threads = [threading.Thread(target=sender, args=(k,)) for k in range(senders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    messages = lab_server.mailbox.wait_for(senders * each, timeout=30)
    elapsed = time.perf_counter() - started
    assert not errors
    assert len(messages) == senders * each == lab_server.mailbox.received and lab_server.mailbox.dropped == 0
    subjects = [m.subject for m in messages]
    assert len(set(subjects)) == senders * each, "every message exactly once"
    for message in messages:
        k, n = message.subject.split("-")
        assert message.mail_from == f"s{k}@example.test" and message.rcpt_tos == (f"r{k}@example.test",)
        assert message.raw.endswith(f"message {n} from sender {k}\r\n".encode())
    print(f"\n16 x 500 messages (smtplib, threads): {elapsed:.2f} s, {senders * each / elapsed:.0f} msg/s")


def test_concurrent_lab_clients_lose_nothing(lab_server):
    senders, each = 16, 200

    async def sender(k: int) -> None:
        async with smtplab.Client(lab_server, record=False) as client:
            for n in range(each):
                result = await client.send(
                    "a@example.test", "b@example.test", f"Subject: c{k}-{n}\r\n\r\nhi\r\n"
                )
                assert result.ok, result

    async def everyone() -> None:
        await asyncio.gather(*(sender(k) for k in range(senders)))

    started = time.perf_counter()
    asyncio.run(everyone())
    messages = lab_server.mailbox.wait_for(senders * each, timeout=30)
    elapsed = time.perf_counter() - started
    assert sorted(m.subject for m in messages) == sorted(
        f"c{k}-{n}" for k in range(senders) for n in range(each)
    )
    print(
        f"\n16 x 200 messages (smtplab.Client, asyncio): {elapsed:.2f} s, {senders * each / elapsed:.0f} msg/s"
    )


@pytest.mark.server_options(limits=Limits(max_connections=100))
def test_a_flood_of_idle_and_slow_connections_does_not_stall_a_new_client(lab_server):
    idle = [Wire(lab_server.address) for _ in range(50)]
    slow = [Wire(lab_server.address) for _ in range(20)]
    try:
        for n, wire in enumerate(slow):  # slowloris: half a command, half a message
            hello(wire)
            if n % 2:
                wire.send(b"MAIL FROM:<slow")
            else:
                envelope(wire)
                wire.send(b"Subject: never ends\r\n\r\n" + b"z" * 500)
        started = time.perf_counter()
        send(lab_server, "prompt")
        assert lab_server.mailbox.wait_for(1)[0].subject == "prompt"
        served = time.perf_counter() - started
        print(f"\nserved beside 50 idle and 20 slow connections in {served * 1000:.1f} ms")
        assert served < 2.0
    finally:
        for wire in idle + slow:
            wire.close()


@pytest.mark.server_options(limits=Limits(max_connections=20))
def test_the_connection_cap_refuses_with_421_and_a_freed_slot_serves_again(lab_server):
    holders = [Wire(lab_server.address) for _ in range(20)]
    try:
        for wire in holders:
            assert wire.line().startswith("220")
        with Wire(lab_server.address) as refused:
            assert (
                refused.line()
                == f"421 4.7.0 {HOST} Too many connections: 20 are open, this server's limit (Limits.max_connections); try again later"
            )
            assert refused.rest() == b""
        with pytest.raises(smtplib.SMTPConnectError) as caught:
            smtplib.SMTP(*lab_server.address, timeout=5)
        assert caught.value.smtp_code == 421
        lab_client = smtplab.Client(lab_server)
        with pytest.raises(aiosmtplib.SMTPConnectResponseError) as refused_by_lab_client:
            asyncio.run(lab_client.connect())
        assert (
            refused_by_lab_client.value.code == 421
            and "Too many connections" in refused_by_lab_client.value.message
        )
        assert lab_client.greeting.code == 421  # the refusal is in the client's transcript too
        assert any(line.code == 421 for line in lab_client.transcript.replies)
        assert holders[0].command("QUIT") == ["221 2.0.0 Bye"]
        assert holders[0].rest() == b""  # the server has closed it, and freed its slot
        send(lab_server, "after a slot freed")
        assert lab_server.mailbox.wait_for(1)[0].subject == "after a slot freed"
    finally:
        for wire in holders:
            wire.close()


# -- AUTH and TLS ---------------------------------------------------------------------------------


@pytest.mark.server_options(tls="starttls", auth={"alice": "wonderland"})
def test_repeated_wrong_passwords_close_the_connection(lab_server):
    async def guess() -> tuple[list[int], bool, int]:
        client = smtplab.Client(lab_server, tls="starttls")
        await client.connect()
        codes = [(await client.login("alice", f"guess{n}")).code for n in range(3)]
        try:  # the server has said 421 and hung up: the next command reads it, or finds it gone
            codes.append((await client.noop()).code)
        except aiosmtplib.SMTPServerDisconnected:
            codes.append(0)
        still = client.connected
        await client.close()
        async with smtplab.Client(lab_server, tls="starttls") as again:
            ok = (await again.login("alice", "wonderland")).code
        return codes, still, ok

    codes, still_connected, ok = asyncio.run(guess())
    assert codes[:3] == [535, 535, 535] and codes[3] in (421, 0) and not still_connected and ok == 235
    refused = [t for t in lab_server.transcripts if "Too many failed AUTH attempts" in t.text()]
    assert len(refused) == 1
    assert lab_server.auth.failures == {"alice": 3}


def starttls(server: smtplab.LabServer, wire: Wire, pipelined: bytes = b"") -> tuple[ssl.SSLSocket, Any]:
    hello(wire)
    wire.send(b"STARTTLS\r\n" + pipelined)
    assert wire.line() == "220 2.0.0 Ready to start TLS"
    tls = server.client_context().wrap_socket(wire.sock, server_hostname="127.0.0.1")
    return tls, tls.makefile("rb")


def read_reply(reader: Any) -> list[str]:
    lines = [reader.readline().decode().rstrip("\r\n")]
    while len(lines[-1]) > 3 and lines[-1][3] == "-":
        lines.append(reader.readline().decode().rstrip("\r\n"))
    return lines


@pytest.mark.server_options(tls="starttls", auth={"alice": "wonderland"})
def test_wrong_passwords_on_the_wire(lab_server):
    with Wire(lab_server.address) as wire:
        tls, reader = starttls(lab_server, wire)
    with tls, reader:
        tls.sendall(b"EHLO client.test\r\n")
        assert "250-AUTH CRAM-MD5 LOGIN PLAIN" in read_reply(reader)
        wrong = f"AUTH PLAIN {plain_response('alice', 'guess')}\r\n".encode()
        for _ in range(3):
            tls.sendall(wrong)
            assert read_reply(reader) == ["535 5.7.8 Authentication credentials invalid"]
        assert read_reply(reader) == [
            f"421 4.7.0 {HOST} Too many failed AUTH attempts (3), closing connection"
        ]
        assert reader.read() == b""


@pytest.mark.server_options(tls="starttls")
def test_cve_2024_34083_no_plaintext_command_survives_starttls(lab_server):
    # STARTTLS and an injected RSET in one packet: RFC 3207 §4.2 says discard what came in the
    # clear; aiosmtpd 1.4.4 answered the RSET inside TLS.
    with Wire(lab_server.address) as wire:
        tls, reader = starttls(lab_server, wire, pipelined=b"RSET\r\n")
    with tls, reader:
        tls.sendall(b"EHLO inside.test\r\n")
        assert read_reply(reader)[0] == f"250-{HOST}", "the first reply inside TLS answers EHLO"
        tls.sendall(b"NOOP\r\n")
        assert read_reply(reader) == ["250 2.0.0 OK"]
        tls.sendall(b"QUIT\r\n")
        assert read_reply(reader) == ["221 2.0.0 Bye"]
    heard = [line.text for line in lab_server.transcripts[-1].lines if line.sender == "client"]
    assert "RSET" not in heard and heard[-3:] == ["EHLO inside.test", "NOOP", "QUIT"]


# -- input hygiene --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "reply"),
    [
        (
            b"MAIL FROM:<alice\x00@example.test>",
            "501 5.1.7 Bad sender address: NUL byte (0x00) at position 11",
        ),
        (b"MAIL FROM:<al\x1bice@example.test>", "501 5.1.7 Bad sender address: control character (0x1B)"),
        (
            b"MAIL FROM:<\xc3\x28@example.test>",
            "501 5.1.7 Bad sender address: byte 0xC3 at position 6 is not valid UTF-8",
        ),
        (
            b"RCPT TO:<bob\x00evil@example.test>",
            "501 5.1.3 Bad recipient address: NUL byte (0x00) at position 7",
        ),
        (b"RCPT TO:<bob\x7f@example.test>", "501 5.1.3 Bad recipient address: DEL (0x7F)"),
    ],
)
def test_control_characters_in_addresses_are_refused(lab_server, command, reply):
    with Wire(lab_server.address) as wire:
        hello(wire)
        if command.startswith(b"RCPT"):
            wire.command("MAIL FROM:<alice@example.test>")
        (answer,) = wire.command(command)
        assert answer.startswith(reply)
        assert wire.command("NOOP") == ["250 2.0.0 OK"]
    with smtplab.SyncClient(lab_server) as client, pytest.raises(ValueError, match="NUL byte"):
        client.mail("alice\x00@example.test")  # smtplab's client refuses to send it at all


@pytest.mark.parametrize(("body", "flag"), [(b"one\ntwo\r\n", "bare-lf"), (b"one\rtwo\r\n", "bare-cr")])
def test_bare_line_endings_are_flagged_end_to_end(lab_server, body, flag):
    with Wire(lab_server.address) as wire:
        hello(wire)
        envelope(wire)
        assert wire.command(b"Subject: endings\r\n\r\n" + body + b".")[0].startswith("250 2.0.0 OK")
    (message,) = lab_server.mailbox.wait_for(1)
    assert message.flags == (flag,) and message.raw == b"Subject: endings\r\n\r\n" + body


@pytest.mark.server_options(limits=Limits(strict_line_endings=True))
def test_strict_line_endings_refuse_the_message(lab_server):
    with Wire(lab_server.address) as wire:
        hello(wire)
        envelope(wire)
        (reply,) = wire.command(b"Subject: endings\r\n\r\none\ntwo\r\n.")
        assert reply.startswith("550 5.6.0 Message refused: it contains a bare LF")
        envelope(wire)
        assert wire.command(b"Subject: fine\r\n\r\nok\r\n.")[0].startswith("250")
    assert [m.subject for m in lab_server.mailbox.wait_for(1)] == ["fine"]


@pytest.mark.parametrize("end", [b"\n.\n", b"\r.\r", b"\n.\r\n", b"\r\n.\n", b"\r.\r\n"])
def test_cve_2024_27305_smuggling_gives_one_message(lab_server, end):
    # SMTP smuggling: a server that ends DATA at anything but CRLF.CRLF would run the
    # injected MAIL/RCPT/DATA as a second message (aiosmtpd 1.4.4).
    smuggled = (
        b"Subject: outer\r\n\r\nhello"
        + end
        + b"MAIL FROM:<admin@example.test>\r\nRCPT TO:<victim@example.test>\r\n"
        b"DATA\r\nSubject: smuggled\r\n\r\nevil\r\n"
    )
    with Wire(lab_server.address) as wire:
        hello(wire)
        envelope(wire)
        wire.send(smuggled + b".\r\nQUIT\r\n")
        assert wire.reply()[0].startswith("250 2.0.0 OK")
        assert wire.reply() == ["221 2.0.0 Bye"], "nothing else was answered"
        assert wire.rest() == b""
    (message,) = lab_server.mailbox.wait_for(1)
    assert message.rcpt_tos == ("bob@example.test",) and message.subject == "outer"
    assert b"MAIL FROM:<admin@example.test>" in message.raw and message.flags
    commands = [line.text for line in lab_server.transcripts[-1].lines if line.sender == "client"]
    assert not any("admin@" in text for text in commands)


def test_invalid_utf8_is_stored_and_shown_safely(lab_server):
    raw = b"Subject: caf\xe9 \xff\r\nFrom: \xfe <alice@example.test>\r\n\r\nbody \xc3\x28 \xed\xa0\x80\r\n"
    with Wire(lab_server.address) as wire:
        assert wire.line().startswith("220")
        wire.command(b"EHLO \xff\xfe.test")
        envelope(wire)
        assert wire.command(raw + b".")[0].startswith("250")
    (message,) = lab_server.mailbox.wait_for(1)
    assert message.raw == raw
    shown = [repr(message), message.subject, message.text, str(message.message)]
    transcript = message.transcript
    shown += [transcript.text(), transcript.html(), transcript.mermaid(), repr(transcript)]
    shown.append(json.dumps(transcript.to_dicts()))
    for text in shown:
        text.encode("utf-8")  # printable in a notebook: no lone surrogates


# -- mailbox bounds --------------------------------------------------------------------------------


def test_a_bounded_mailbox_with_a_maildir_keeps_everything_on_disk(tmp_path):
    maildir = tmp_path / "Maildir"
    with smtplab.start_server(name="bounded", maildir=maildir, limits=Limits(max_messages=5)) as server:
        with pytest.warns(MailboxWarning, match="dropped the 1 oldest"):  # noqa: PT031 - the sixth send drops one
            for n in range(12):
                send(server, f"m{n}")
            server.mailbox.wait_for(12)
        assert [m.subject for m in server.mailbox] == [f"m{n}" for n in range(7, 12)]
        assert (server.mailbox.received, server.mailbox.dropped) == (12, 7)
    assert sorted(m["Subject"] for m in server.maildir) == sorted(f"m{n}" for n in range(12))


# -- faults ----------------------------------------------------------------------------------------


STAGES = {
    "after the banner": [],
    "after EHLO": [b"EHLO client.test\r\n"],
    "in the middle of MAIL": [b"EHLO client.test\r\n", b"MAIL FROM:<alice@exa"],
    "in the middle of DATA": [
        b"EHLO client.test\r\n",
        b"MAIL FROM:<a@example.test>\r\n",
        b"RCPT TO:<b@example.test>\r\n",
        b"DATA\r\n",
        b"Subject: partial\r\n\r\nhalf a mes",
    ],
    "after DATA, before QUIT": [
        b"EHLO client.test\r\n",
        b"MAIL FROM:<a@example.test>\r\n",
        b"RCPT TO:<b@example.test>\r\n",
        b"DATA\r\n",
        b"Subject: complete\r\n\r\nall of it\r\n.\r\n",
    ],
}


@pytest.mark.parametrize("stage", STAGES)
def test_a_client_vanishing_at_any_stage(lab_server, stage, caplog):
    wire = Wire(lab_server.address)
    assert wire.line().startswith("220")
    for chunk in STAGES[stage]:
        wire.send(chunk)
        if chunk.endswith(b"\r\n"):
            wire.reply()
    done = closed(lab_server.transcript_for(wire.sock.getsockname()))
    wire.close()
    assert done.wait(5), "the server noticed"
    send(lab_server, "next")
    subjects = [m.subject for m in lab_server.mailbox.wait_for(2 if stage.startswith("after DATA") else 1)]
    assert subjects == (["complete", "next"] if stage.startswith("after DATA") else ["next"])
    assert lab_server.errors == []
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


class Stuck:
    """A learner's handler whose hook waits forever for a message about 'stuck'."""

    def __init__(self) -> None:
        self.entered = threading.Event()

    async def handle_DATA(self, server, session, envelope):
        if b"stuck" in envelope.content:
            self.entered.set()
            await asyncio.Event().wait()
        return "250 2.0.0 fine"


def test_an_interrupted_send_leaves_nothing_behind(caplog):
    # A kernel interrupt cancels the cell's task: here, while the server holds the message.
    handler = Stuck()
    with smtplab.start_server(name="interrupt", handler=handler) as server:

        async def interrupted() -> None:
            client = smtplab.Client(server)
            task = asyncio.create_task(
                client.send("a@example.test", "b@example.test", "Subject: stuck\r\n\r\nx")
            )
            assert await asyncio.get_running_loop().run_in_executor(None, handler.entered.wait, 5)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            # The late reply could be taken for the next command's: the client hung up.
            assert not client.connected
            assert "interrupted while waiting for a reply" in client.transcript.text()
            assert (await client.send("a@example.test", "b@example.test", "Subject: again\r\n\r\nx")).ok
            await client.quit()

        asyncio.run(interrupted())
        assert closed(server.transcripts[0]).wait(5), "the server ended the stuck session"
        assert [m.subject for m in server.mailbox.wait_for(1)] == ["again"]
    gc.collect()
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING and r.name == "asyncio"]


def test_a_kernel_interrupt_during_a_sync_send(caplog):
    # Jupyter's "interrupt kernel" sends SIGINT: KeyboardInterrupt in the main thread while a
    # SyncClient waits for smtplab's background loop.
    handler = Stuck()
    main = threading.get_ident()

    def interrupt() -> None:
        if handler.entered.wait(5):
            signal.pthread_kill(main, signal.SIGINT)

    with smtplab.start_server(name="sigint", handler=handler) as server:
        client = smtplab.SyncClient(server)
        threading.Thread(target=interrupt).start()
        with pytest.raises(KeyboardInterrupt):
            client.send("a@example.test", "b@example.test", "Subject: stuck\r\n\r\nx")
        result = client.send("a@example.test", "b@example.test", "Subject: re-run\r\n\r\nx")  # the cell again
        assert result.ok
        client.quit()
        assert [m.subject for m in server.mailbox.wait_for(1)] == ["re-run"]
        assert closed(server.transcripts[0]).wait(5)
    gc.collect()
    assert not [r for r in caplog.records if r.name == "asyncio"]


@pytest.mark.server_options(handler=Stuck(), limits=Limits(idle_timeout=0.3))
def test_the_idle_timeout_ends_a_session_stuck_in_a_hook(lab_server):
    with (
        pytest.raises(smtplib.SMTPDataError) as caught,
        smtplib.SMTP(*lab_server.address, timeout=5) as client,
    ):
        client.sendmail("a@example.test", ["b@example.test"], "Subject: stuck\r\n\r\nx")
    assert caught.value.smtp_code == 421 and b"4.4.2" in caught.value.smtp_error
    assert lab_server.mailbox.received == 0


def test_a_hook_that_waits_forever_stalls_only_its_own_session(caplog):
    handler = Stuck()
    with smtplab.start_server(name="stuck", handler=handler) as server:
        outcome: list[BaseException] = []

        def stuck_sender() -> None:
            try:
                with smtplib.SMTP(*server.address, timeout=10) as client:
                    client.sendmail("a@example.test", ["b@example.test"], "Subject: stuck\r\n\r\nx")
            except BaseException as error:  # noqa: BLE001 - the outcome is the point
                outcome.append(error)

        stuck = threading.Thread(target=stuck_sender)
        stuck.start()
        assert handler.entered.wait(5)
        started = time.perf_counter()
        send(server, "others are served")
        assert time.perf_counter() - started < 2
        assert [m.subject for m in server.mailbox.wait_for(1)] == ["others are served"]
    stuck.join(5)  # stopping the server ended the stuck session
    assert not stuck.is_alive() and isinstance(outcome[0], smtplib.SMTPServerDisconnected)
    gc.collect()
    assert not [r for r in caplog.records if r.name == "asyncio"]


@pytest.mark.parametrize("tls", ["implicit", "starttls"])
def test_stopping_with_tls_clients_open_leaks_nothing(tls):
    # Closing a TLS session politely waits for the client's close_notify; a stopping server
    # cannot wait for an idle client.
    fds = open_fds()
    for _ in range(5):
        server = smtplab.start_server(name="tls-stop", tls=tls)
        if tls == "implicit":
            client = smtplib.SMTP_SSL(*server.address, context=server.client_context(), timeout=5)
        else:
            client = smtplib.SMTP(*server.address, timeout=5)
            client.starttls(context=server.client_context())
        client.ehlo()
        server.stop()
        client.close()
    gc.collect()  # an unclosed socket would warn here, and warnings are errors
    assert open_fds() == fds


def test_many_start_stop_cycles_with_open_clients_leak_nothing(caplog):
    async def nothing() -> None:
        pass

    smtplab.aio.run(nothing())  # the sync client's loop thread, started once per process
    threads, fds = thread_names(), open_fds()
    for cycle in range(30):
        server = smtplab.start_server(name="cycles", limits=Limits(max_connections=3))
        idle = Wire(server.address)
        half = smtplib.SMTP(*server.address, timeout=5)
        half.ehlo()
        half.mail("a@example.test")
        client = smtplab.SyncClient(server)
        client.connect()
        client.mail("a@example.test") if cycle % 2 else client.ehlo()
        with Wire(server.address) as refused:  # the fourth: over the cap
            assert refused.line().startswith("421 4.7.0")
        arriving = socket.create_connection(server.address)  # still being accepted at stop()
        server.stop()
        client.close()
        half.close()
        idle.close()
        arriving.close()
    gc.collect()  # an unclosed socket would warn here, and warnings are errors
    assert thread_names() == threads
    assert open_fds() == fds
    noise = [r.getMessage() for r in caplog.records if r.name == "asyncio" or r.levelno >= logging.ERROR]
    assert not noise


# -- one host, many users ------------------------------------------------------------------------


def test_a_unix_socket_server_is_private_and_works_as_usual():
    server = smtplab.start_server(name="private", unix_socket=True)
    path = server.socket_path
    try:
        directory = os.stat(os.path.dirname(path))
        assert directory.st_uid == os.getuid() and stat.S_IMODE(directory.st_mode) == 0o700
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600 and server.address == path
        assert repr(server).startswith(f"<LabServer 'private' running on {path}")
        with Wire(path) as wire:
            hello(wire)
            envelope(wire)
            assert wire.command(b"Subject: by hand\r\n\r\nhi\r\n.")[0].startswith("250")
        with smtplab.SyncClient(server) as client:
            assert client.send("a@example.test", "b@example.test", "Subject: by client\r\n\r\nhi").ok
            assert "connection from a local socket" in client.pair().text()
        assert [m.subject for m in server.mailbox.wait_for(2)] == ["by hand", "by client"]
        server.restart()
        assert server.socket_path == path
        with smtplab.SyncClient(server) as client:
            assert client.noop().code == 250
    finally:
        server.stop()
    assert not os.path.exists(path) and not os.path.exists(os.path.dirname(path))


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs root to act as another user"
)
def test_another_user_reaches_a_port_but_not_a_unix_socket():
    attempt = (
        "import socket, sys\n"
        "target = sys.argv[1]\n"
        "family = socket.AF_UNIX if target.startswith('/') else socket.AF_INET\n"
        "address = target if family == socket.AF_UNIX else ('127.0.0.1', int(target))\n"
        "s = socket.socket(family)\n"
        "s.settimeout(5)\n"
        "try:\n"
        "    s.connect(address)\n"
        "    print(s.recv(100).decode().split()[0])\n"
        "except OSError as error:\n"
        "    print(type(error).__name__)\n"
    )

    def as_nobody(target: str) -> str:
        for python in (sys.executable, "/usr/bin/python3", "/usr/local/bin/python3"):
            try:
                done = subprocess.run(
                    [python, "-c", attempt, target],
                    user=65534,
                    group=65534,
                    capture_output=True,
                    text=True,
                    timeout=10,
                    cwd="/",
                )
            except (PermissionError, FileNotFoundError):
                continue  # this interpreter is not reachable for that user
            return done.stdout.strip() or done.stderr
        pytest.skip("no Python interpreter the user 'nobody' may run")

    with (
        smtplab.start_server(name="open") as open_server,
        smtplab.start_server(name="private", unix_socket=True) as private,
    ):
        assert as_nobody(str(open_server.port)) == "220"  # 127.0.0.1 is everybody's
        assert as_nobody(private.socket_path) == "PermissionError"


def test_a_unix_socket_in_a_shared_directory_is_refused_with_fixes_that_work(tmp_path, monkeypatch):
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    shared.chmod(0o755)
    with pytest.raises(smtplab.ServerStartError, match=r"open to other users .*drwxr-xr-x") as refused:
        smtplab.start_server(unix_socket=shared / "lab.sock")
    assert smtplab.running_servers() == []
    assert "unix_socket='~/.smtplab/lab.sock' (created with mode 0700), or unix_socket=True." in str(
        refused.value
    )
    in_a_terminal = render(refused.value, "cli")
    assert "--unix-socket ~/.smtplab/lab.sock (created with mode 0700), or --unix-socket without a PATH." in (
        in_a_terminal
    )
    assert "unix_socket=" not in in_a_terminal
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # the suggested path, made private
    for suggested in ("~/.smtplab/lab.sock", True):
        with (
            smtplab.start_server(name="advised", unix_socket=suggested) as server,
            Wire(server.socket_path) as wire,
        ):
            assert wire.line().startswith("220")


def test_a_unix_socket_path_is_made_private_and_a_stale_one_replaced(tmp_path):
    path = tmp_path / "mine" / "lab.sock"
    with smtplab.start_server(name="at-a-path", unix_socket=path) as server:
        assert server.socket_path == str(path)
        assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
        with pytest.raises(smtplab.PortInUseError, match="another server is listening"):
            smtplab.start_server(name="second", unix_socket=path)
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))  # as a crashed kernel leaves it: a socket file nobody listens on
    stale.close()
    with smtplab.start_server(name="again", unix_socket=path) as server, Wire(str(path)) as wire:
        assert wire.line().startswith("220")


def test_unix_socket_and_a_port_do_not_mix():
    with pytest.raises(ValueError, match="replaces host and port"):
        smtplab.LabServer(unix_socket=True, port=2525)


def test_on_a_jupyterhub_a_tcp_server_hints_once_at_unix_socket(monkeypatch):
    monkeypatch.setenv("JUPYTERHUB_USER", "alice")
    monkeypatch.setattr("smtplab.server._shared_host_hinted", False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        smtplab.LabServer(unix_socket=True)  # private already: nothing to say
    with pytest.warns(SharedHostWarning, match="other users of the machine can connect.*unix_socket=True"):
        smtplab.LabServer()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        smtplab.LabServer()  # once is enough


def test_in_a_kubernetes_pod_of_its_own_a_tcp_server_says_nothing(monkeypatch):
    """Zero to JupyterHub gives each user a pod, and each pod its own 127.0.0.1: no neighbour shares it."""
    monkeypatch.setenv("JUPYTERHUB_USER", "alice")
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    monkeypatch.setattr("smtplab.server._shared_host_hinted", False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        smtplab.LabServer()
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST")
    with pytest.warns(SharedHostWarning):
        smtplab.LabServer()
