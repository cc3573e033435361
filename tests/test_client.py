"""The client: every command against the lab server, the recorded transcript, errors that teach."""

from __future__ import annotations

import asyncio

import aiosmtpd
import aiosmtplib
import pytest
from aiosmtpd.controller import Controller

import smtplab
from smtplab.client import Client, SyncClient
from smtplab.protocol import State
from tests.conftest import free_port, run

pytestmark = pytest.mark.server_options(
    mailboxes=["Alice Liddell <alice@example.test>", "bob@example.test", "bob@elsewhere.test"],
    lists={"team": ["alice@example.test", "bob@example.test"]},
)


def wire(transcript) -> list[str]:
    """The transcript as marker + text, events left out."""
    return [f"{line.marker} {line.masked}" for line in transcript if line.sender != "event"]


def test_every_command_is_recorded_in_order(lab_server):
    async def session():
        client = Client(lab_server)
        replies = [await client.connect()]
        replies.append(await client.ehlo())
        replies.append(await client.helo())
        replies.append(await client.noop())
        replies.append(await client.vrfy("alice"))
        replies.append(await client.expn("team"))
        replies.append(await client.help("rcpt"))
        replies.append(await client.mail("alice@example.test"))
        replies.append(await client.rcpt("bob@example.test"))
        replies.append(await client.rset())
        replies.append(await client.mail("alice@example.test"))
        replies.append(await client.rcpt("bob@example.test"))
        replies.append(await client.data("Subject: all commands\r\n\r\nhi\r\n"))
        replies.append(await client.quit())
        return client, replies

    client, replies = run(session())
    assert [r.code for r in replies] == [220, 250, 250, 250, 250, 250, 214, 250, 250, 250, 250, 250, 250, 221]
    lines = wire(client.transcript)
    assert lines[:3] == [
        f"<- 220 smtplab.test ESMTP smtplab (aiosmtpd {aiosmtpd.__version__})",
        "-> EHLO client.smtplab.test",
        "<- 250-smtplab.test",
    ]
    sent = [line for line in lines if line.startswith("->")]
    assert sent == [
        "-> EHLO client.smtplab.test",
        "-> HELO client.smtplab.test",
        "-> NOOP",
        "-> VRFY alice",
        "-> EXPN team",
        "-> HELP rcpt",
        "-> MAIL FROM:<alice@example.test>",
        "-> RCPT TO:<bob@example.test>",
        "-> RSET",
        "-> MAIL FROM:<alice@example.test>",
        "-> RCPT TO:<bob@example.test>",
        "-> DATA",
        "-> .",
        "-> QUIT",
    ]
    assert "<- 250 2.1.5 Alice Liddell <alice@example.test>" in lines
    assert [text for text in lines if "2.1.5 <" in text] == [
        "<- 250-2.1.5 <alice@example.test>",
        "<- 250 2.1.5 <bob@example.test>",
    ]
    assert any(
        line.sender == "event" and line.text.startswith("message data: 3 lines,")
        for line in client.transcript
    )
    assert all(
        line.meaning and str(line.code) in line.meaning
        for line in client.transcript.replies
        if line.text[3:4] != "-"
    )
    assert client.state.state is State.CLOSED
    (captured,) = lab_server.mailbox.wait_for(1)
    assert captured.subject == "all commands"


def test_both_records_of_a_session_agree(lab_server):
    async def session():
        async with Client(lab_server) as client:
            await client.send("alice@example.test", "bob@example.test", "Subject: pair\r\n\r\nhi\r\n")
        return client

    client = run(session())
    server_side = lab_server.mailbox.wait_for(1)[0].transcript
    assert client.server_transcript is server_side
    assert wire(client.transcript) == wire(server_side)
    pair = client.pair()
    assert "both" in pair.text() and "-> MAIL FROM:<alice@example.test>" in pair.text()


@pytest.mark.parametrize(
    ("steps", "code", "explanation"),
    [
        (["DATA"], 503, "MAIL"),
        (["RCPT TO:<bob@example.test>"], 503, "MAIL"),
        (["MAIL FROM:<a@example.test>", "DATA"], 503, "RCPT"),
        (["MAIL FROM:<a@example.test>", "MAIL FROM:<a@example.test>"], 503, "MAIL"),
        (["FROBNICATE"], 500, ""),
    ],
)
def test_error_sequences_give_the_right_codes_and_explanations(lab_server, steps, code, explanation):
    async def session():
        async with Client(lab_server) as client:
            await client.ehlo()
            for step in steps[:-1]:
                await client.raw(step)
            advice = client.state.check(steps[-1].split()[0])  # what the state machine predicts
            reply = await client.raw(steps[-1])
            return reply, advice

    reply, advice = run(session())
    assert reply.code == code
    assert str(code) in reply.meaning
    if explanation:
        assert explanation in advice
    else:
        assert advice is not None  # unknown commands are flagged before sending


def test_a_refused_reply_is_data_unless_asked_to_raise(lab_server):
    async def session(raise_errors):
        async with Client(lab_server, raise_errors=raise_errors) as client:
            return await client.raw("DATA")

    assert run(session(False)).code == 503
    with pytest.raises(aiosmtplib.SMTPResponseException) as caught:
        run(session(True))
    assert caught.value.code == 503


def test_send_reports_refused_recipients():
    class NoBob:
        async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
            if address.startswith("bob@"):
                return "550 5.1.1 no bob here"
            envelope.rcpt_tos.append(address)
            return "250 OK"

    with smtplab.start_server(handler=NoBob(), name="nobob") as server, SyncClient(server) as client:
        result = client.send(
            "a@example.test", ["bob@example.test", "carol@example.test"], "Subject: s\r\n\r\nhi"
        )
        assert result.ok and result.accepted == ["carol@example.test"]
        assert result.refused["bob@example.test"].code == 550
        only_bob = client.send("a@example.test", ["bob@example.test"], "Subject: s\r\n\r\nhi")
        assert not only_bob.ok and only_bob.reply.code == 550
        assert client.state.state is State.GREETED  # the empty transaction was reset


def test_send_message_takes_the_envelope_from_headers_and_drops_bcc(lab_server):
    from email.message import EmailMessage

    message = EmailMessage()
    message["From"] = "Alice <alice@example.test>"
    message["To"] = "bob@example.test"
    message["Cc"] = "carol@example.test"
    message["Bcc"] = "dave@example.test"
    message["Subject"] = "headers"
    message.set_content("hi")
    with SyncClient(lab_server) as client:
        assert client.send_message(message).ok
    captured = lab_server.mailbox.wait_for(1)[0]
    assert captured.mail_from == "alice@example.test"
    assert captured.rcpt_tos == ("bob@example.test", "carol@example.test", "dave@example.test")
    assert captured.message["Bcc"] is None and message["Bcc"] == "dave@example.test"


@pytest.mark.parametrize(
    ("bad", "name"),
    [("bob@example.test\r\nRSET", "carriage return"), ("bob\n@x", "line feed"), ("bob\x00@x", "NUL")],
)
def test_control_characters_are_refused_before_sending(lab_server, bad, name):
    with SyncClient(lab_server) as client:
        client.ehlo()
        client.mail("alice@example.test")
        with pytest.raises(ValueError, match=f"{name}.*position"):
            client.rcpt(bad)
        with pytest.raises(ValueError, match=name):
            client.raw(f"VRFY {bad}")
        assert client.rcpt("bob@example.test").code == 250  # the session is unharmed


def test_a_refused_auth_line_does_not_show_its_secret(lab_server):
    with SyncClient(lab_server) as client:
        client.ehlo()
        with pytest.raises(ValueError, match=r"'AUTH PLAIN \*{8}' has a carriage return") as caught:
            client.raw("AUTH PLAIN AGFsaWNlAHdvbmRlcmxhbmQ=\r\n")
        assert "AGFsaWNl" not in str(caught.value)


def test_a_timeout_names_the_command_and_the_wait():
    release = asyncio.Event()

    class Stuck:
        async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
            await release.wait()  # never set: the server never answers RCPT
            return "250 OK"

    with (
        smtplab.start_server(handler=Stuck(), name="stuck") as server,
        SyncClient(server, timeout=5) as client,
    ):
        client.ehlo()
        client.mail("a@example.test")
        with pytest.raises(smtplab.ClientTimeoutError, match=r"RCPT waited 0.2 s") as caught:
            client.rcpt("b@example.test", timeout=0.2)
        assert isinstance(caught.value, TimeoutError)
        assert not client.connected


def test_connection_refused_says_where_and_whether_a_lab_server_runs():
    server = smtplab.start_server(name="gone")
    server.stop()
    with pytest.raises(
        smtplab.LabConnectionRefusedError, match=f"127.0.0.1:{server.port}.*'gone'.*stopped"
    ) as caught:
        SyncClient(server).connect()
    assert isinstance(caught.value, ConnectionRefusedError)
    with pytest.raises(smtplab.LabConnectionRefusedError, match="No lab server is running"):
        SyncClient(host="127.0.0.1", port=server.port).connect()


def test_sync_face_inside_a_running_event_loop(lab_server):
    async def notebook_cell():
        async def anything():
            return None

        pending = anything()
        with pytest.raises(RuntimeError, match="running event loop"):
            asyncio.run(pending)  # what fails in Jupyter...
        pending.close()
        with SyncClient(lab_server) as client:  # ...and what works there
            return client.send("a@example.test", "b@example.test", "Subject: in loop\r\n\r\nhi")

    assert run(notebook_cell()).ok
    assert lab_server.mailbox.wait_for(1)[0].subject == "in loop"


def test_sync_face_outside_any_loop(lab_server):
    with SyncClient(lab_server) as client:
        assert client.noop().code == 250
        assert client.transcript is client.client.transcript
    assert "SyncClient" in repr(client)


def test_auth_secrets_are_masked_everywhere_unless_revealed(lab_server):
    secret = "AGFsaWNlAHdvbmRlcmxhbmQ="  # \0alice\0wonderland, the lab's fake credentials
    with SyncClient(lab_server) as client:
        client.ehlo()
        reply = client.raw(f"AUTH PLAIN {secret}")
    assert reply.code in (503, 538)  # refused in plain text (no AUTH configured here)
    assert secret not in reply.command
    for transcript in (client.transcript, lab_server.transcripts[-1]):
        shown = [
            transcript.text(),
            transcript.html(),
            transcript.mermaid(),
            repr(transcript),
            str(transcript.to_dicts()),
        ]
        assert all(secret not in view for view in shown)
        assert secret in transcript.text(reveal_secrets=True)
    assert secret not in client.pair().html() and secret in client.pair().text(reveal_secrets=True)


def test_works_with_a_plain_aiosmtpd_controller():
    class Sink:
        def __init__(self):
            self.envelopes = []

        async def handle_DATA(self, server, session, envelope):
            self.envelopes.append(envelope)
            return "250 OK"

    sink = Sink()
    controller = Controller(sink, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        with SyncClient(host="127.0.0.1", port=controller.port) as client:
            assert client.ehlo().code == 250 and "SIZE" in {k.upper() for k in client.extensions}
            assert client.send("a@example.test", "b@example.test", "Subject: stock\r\n\r\nhi").ok
            assert client.expn("team").code == 502  # stock aiosmtpd never expands
        assert len(sink.envelopes) == 1
        assert client.server_transcript is None
    finally:
        controller.stop()


def test_bad_construction_is_explained():
    with pytest.raises(TypeError, match="host= and port="):
        Client()
    with pytest.raises(ValueError, match="tls must be"):
        Client(host="127.0.0.1", port=25, tls="yes")


def test_client_and_sync_client_show_every_option_with_a_line_of_doc():
    import inspect

    parameters = inspect.signature(Client).parameters
    assert all(p.default is not inspect.Parameter.empty for p in parameters.values())
    for name in parameters:
        assert f"\n        {name}: " in (Client.__doc__ or ""), f"{name} is not documented"
    assert inspect.signature(SyncClient) == inspect.signature(Client)


def test_a_tls_mode_near_miss_is_refused_before_connecting():
    with pytest.raises(ValueError, match=r"Did you mean tls=None\?"):
        Client(host="127.0.0.1", port=25, tls="none")


@pytest.mark.server_options(tls="starttls", auth={"alice": "wonderland"})
@pytest.mark.client_options(timeout=5)
def test_the_fixture_chain_ends_in_a_client_inside_tls_from_the_runs_ca(
    client, lab_server, lab_tls, client_context
):
    assert lab_server.lab_tls is lab_tls and lab_server.client_context() is client_context
    assert client.tls_active and client.timeout == 5
    assert client.login("alice", "wonderland").code == 235
    assert client.send("alice@example.test", "bob@example.test", "Subject: chain\r\n\r\nhi").ok
    assert lab_server.mailbox.wait_for(1)[0].auth_user == "alice"


@pytest.mark.server_options(auth={"alice": "wonderland"}, auth_require_tls=False)
def test_the_421_after_the_last_failed_login_is_the_next_commands_reply(client, lab_server):
    client.ehlo()
    for guess in ("guess1", "guess2", "guess3"):
        assert client.login("alice", guess, mechanism="PLAIN").code == 535
    reply = client.login("alice", "wonderland", mechanism="PLAIN")  # RFC 5321 §3.8: 421, then close
    assert reply.code == 421 and "Too many failed AUTH attempts" in reply.message
    assert client.state.state is State.CLOSED
    text = client.transcript.text(annotate=False)
    assert text.index("<- 421 4.7.0") > text.rindex("<- 535")
    heard = [line.text for line in lab_server.transcripts[-1] if line.sender == "client"]
    if "** AUTH not sent" in text:  # the 421 came before the fourth AUTH was written
        assert reply.command == "AUTH" and "** the server replied without a command\n<- 421" in text
        assert len([line for line in heard if line.startswith("AUTH")]) == 3
    else:  # it came after, as the reply to the fourth AUTH, which the server never read
        assert reply.command == "AUTH PLAIN ********"
    with pytest.raises(aiosmtplib.SMTPServerDisconnected):
        client.noop()


async def scripted_server(replies: dict[bytes, bytes], heard: list[bytes]) -> asyncio.Server:
    """A raw server: greets, then answers each command word with its bytes (closing after a 421)."""

    async def session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 scripted.test ready\r\n")
        while line := await reader.readline():
            heard.append(line)
            answer = replies.get(line.split()[0].upper(), b"250 OK\r\n")
            writer.write(answer)  # one write, as one read for the client
            await writer.drain()
            if b"\r\n421 " in answer:
                break
        writer.close()

    return await asyncio.start_server(session, "127.0.0.1", 0)


def test_replies_behind_the_one_asked_for_are_recorded_not_mistaken_for_the_next():
    async def scenario() -> None:
        heard: list[bytes] = []
        script = {
            b"NOOP": b"250 noop done\r\n250 nobody asked\r\n",  # an extra reply in the same read
            b"VRFY": b"252 maybe\r\n421 4.3.2 going away now\r\n",  # the same, closing
        }
        server = await scripted_server(script, heard)
        port = server.sockets[0].getsockname()[1]
        try:
            client = Client(host="127.0.0.1", port=port, timeout=5)
            await client.connect()
            assert (await client.noop()).message == "noop done"
            assert (await client.rset()).message == "OK"  # not "nobody asked"
            assert (await client.vrfy("bob")).code == 252
            closing = await client.rset()
            assert closing.code == 421 and closing.message == "4.3.2 going away now"
            assert [line.split()[0] for line in heard] == [b"NOOP", b"RSET", b"VRFY"]
            await client.close()
        finally:
            server.close()
            await server.wait_closed()
        lines = client.transcript.text(annotate=False).splitlines()
        at = lines.index("<- 250 noop done")
        assert lines[at : at + 3] == [
            "<- 250 noop done",
            "** the server replied without a command",
            "<- 250 nobody asked",
        ]
        at = lines.index("<- 252 maybe")
        assert lines[at : at + 4] == [
            "<- 252 maybe",
            "** the server replied without a command",
            "<- 421 4.3.2 going away now",
            "** RSET not sent: the server said 421 and closed",
        ]

    run(scenario())
