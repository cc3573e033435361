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
from smtplab.tls import LabTLS
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
    assert reply.code == 502  # refused: no users here, so the server does not offer AUTH
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


# -- TLS errors tell the truth about the server at hand -------------------------------------------


@pytest.fixture
def other_ca(tmp_path):
    """A CA that is not the lab's (trustme, as a company's own CA would be), its file, and a
    server context presenting its certificate for mail.other.test only."""
    import ssl

    import trustme

    ca = trustme.CA(organization_name="Other Corp")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("mail.other.test").configure_cert(context)
    ca.cert_pem.write_to_path(str(tmp_path / "other-ca.pem"))
    return context, str(tmp_path / "other-ca.pem")


@pytest.mark.parametrize("tls", ["implicit", "starttls"])
def test_a_hostname_mismatch_names_the_presented_certificate_not_the_labs(other_ca, tls):
    from tests.handshake import greet_inside_tls, serving, starttls_peer

    context, cafile = other_ca
    smtplab.tls.default_lab_tls()  # a lab CA exists in the process, as after any lab TLS server

    async def attempt():
        served = (
            serving(context, greet_inside_tls) if tls == "implicit" else serving(None, starttls_peer(context))
        )
        async with served as port:
            client = Client(host="127.0.0.1", port=port, tls=tls, cafile=cafile, timeout=5)
            with pytest.raises(smtplab.TLSCertificateError) as caught:
                await client.connect()
            await client.close()
            return str(caught.value), caught.value

    message, error = run(attempt())
    assert "is for mail.other.test; you connected to '127.0.0.1'" in message
    assert "host='mail.other.test'" in message
    assert "localhost" not in message and "lab" not in message.lower()
    assert "administrator" in message
    assert isinstance(error.original, aiosmtplib.SMTPException | OSError)


def test_an_untrusted_non_lab_certificate_is_not_told_to_trust_the_lab_ca(other_ca):
    from tests.handshake import greet_inside_tls, serving

    context, _ = other_ca
    smtplab.tls.default_lab_tls()

    async def attempt():
        async with serving(context, greet_inside_tls) as port:
            client = Client(host="127.0.0.1", port=port, tls="implicit", timeout=5)
            with pytest.raises(smtplab.TLSCertificateError) as caught:
                await client.connect()
            await client.close()
            return str(caught.value)

    message = run(attempt())
    assert "issued by O=Other Corp" in message
    assert "cafile='ca.pem'" in message
    assert "lab" not in message.lower()


def test_openssl_s_server_certificate_is_named(tmp_path):
    import re
    import shutil
    import subprocess

    assert shutil.which("openssl"), "openssl is needed as a non-lab TLS peer"
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
         "-days", "1", "-subj", "/CN=mx.openssl.test", "-addext", "subjectAltName=DNS:mx.openssl.test"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    peer = subprocess.Popen(
        ["openssl", "s_server", "-accept", "127.0.0.1:0", "-cert", cert, "-key", key],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        port = None
        for _ in range(20):  # "Using default temp DH parameters", then "ACCEPT 127.0.0.1:PORT"
            found = re.match(r"ACCEPT 127\.0\.0\.1:(\d+)", peer.stdout.readline())
            if found:
                port = int(found.group(1))
                break
        assert port, "openssl s_server did not say where it listens"
        for cafile, expected in ((str(cert), "is for mx.openssl.test"), (None, "self-signed certificate")):
            client = smtplab.SyncClient(host="127.0.0.1", port=port, tls="implicit", cafile=cafile, timeout=5)
            with pytest.raises(smtplab.TLSCertificateError) as caught:
                client.connect()
            client.close()
            assert expected in str(caught.value) and "lab" not in str(caught.value).lower()
    finally:
        peer.kill()
        peer.communicate(timeout=10)


@pytest.mark.server_options(tls="implicit")
def test_a_lab_server_reached_by_address_is_told_to_trust_the_lab_ca(lab_server):
    client = smtplab.SyncClient(host=lab_server.host, port=lab_server.port, tls="implicit", timeout=5)
    with pytest.raises(smtplab.TLSCertificateError) as caught:
        client.connect()
    client.close()
    assert "it is a lab server" in str(caught.value) and "issued by O=smtplab, OU=Lab CA" in str(caught.value)
    assert "--cafile ca.pem" in smtplab.hints.render(caught.value, "cli")


@pytest.mark.parametrize("tls", ["implicit", "starttls"])
def test_a_certificate_from_another_lab_ca_is_not_trusted_on_its_name(lab_tls, tls):
    # An impostor's CA may call itself "Lab CA" too: a client that trusts one lab CA is told that
    # this is another, not to trust "the lab CA".
    with smtplab.start_server(name="impostor", tls=tls, lab_tls=LabTLS.create()) as impostor:
        client = smtplab.SyncClient(
            host="127.0.0.1", port=impostor.port, tls=tls, tls_context=lab_tls.client_context(), timeout=5
        )
        with pytest.raises(smtplab.TLSCertificateError) as caught:
            client.connect()
        client.close()
    message = str(caught.value)
    assert "issued by O=smtplab, OU=Lab CA" in message
    assert "trusts a lab CA, but not this one" in message and "an impostor's" in message
    assert "if you did not, do not connect" in message and "it is a lab server" not in message


@pytest.mark.server_options(tls="starttls", auth={"alice": "wonderland"}, auth_required=True)
def test_replies_are_explained_in_answer_to_their_command_on_both_sides(lab_server):
    with smtplab.SyncClient(lab_server, tls="starttls") as client:
        client.ehlo()
        refused = client.mail("alice@example.test")
        login = client.login("alice", "wonderland")
        result = client.send("alice@example.test", "bob@example.test", "Subject: hi\r\n\r\nhi\r\n")
    assert refused.code == 530 and "STARTTLS" not in refused.meaning and "AUTH" in refused.meaning
    assert login.code == 235 and result.ok
    assert client.greeting.answers == "" and "STARTTLS" not in client.greeting.meaning
    for transcript in (client.transcript, lab_server.transcripts[-1]):
        meanings = {line.text[:3] + (line.answers or ""): line.meaning for line in transcript.replies}
        assert "the server's greeting" in meanings["220"] and "STARTTLS" not in meanings["220"]
        assert "TLS handshake" in meanings["220STARTTLS"]
        assert "STARTTLS" not in meanings["530MAIL"]
        assert "Message accepted" in meanings["250."] and "send the message" in meanings["354DATA"]


# -- errors that stand on their own ---------------------------------------------------------------


def stands_alone(
    error: BaseException, original: type[BaseException] | tuple[type[BaseException], ...]
) -> None:
    """The error is raised in place of another (kept on .original), without the chain behind it."""
    import traceback

    assert error.__cause__ is None and error.__suppress_context__, "raised without `from None`"
    assert isinstance(error.original, original), error.original
    shown = "".join(traceback.format_exception(error))
    assert "direct cause" not in shown and "During handling" not in shown
    assert shown.rstrip().splitlines()[-1].startswith(f"smtplab.errors.{type(error).__name__}: ")


def test_friendly_connection_errors_stand_on_their_own():
    with smtplab.start_server(tls="implicit", name="alone-implicit") as implicit:
        plain = smtplab.start_server(name="alone-plain")
        plain_port = plain.port
        with plain:
            cases = [
                (dict(host="127.0.0.1", port=implicit.port, timeout=0.3), smtplab.ClientTimeoutError),
                (dict(host="127.0.0.1", port=implicit.port, tls="implicit"), smtplab.TLSCertificateError),
                (dict(host="127.0.0.1", port=plain_port, tls="implicit"), smtplab.TLSMismatchError),
            ]
            for options, expected in cases:
                client = SyncClient(**options)
                with pytest.raises(expected) as caught:
                    client.connect()
                client.close()
                stands_alone(caught.value, (aiosmtplib.SMTPException, OSError))
    with pytest.raises(smtplab.LabConnectionRefusedError) as caught:
        SyncClient(host="127.0.0.1", port=plain_port).connect()
    stands_alone(caught.value, aiosmtplib.SMTPConnectError)


def test_a_command_timeout_stands_on_its_own():
    release = asyncio.Event()

    class Stuck:
        async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
            await release.wait()  # never set
            return "250 OK"

    with smtplab.start_server(handler=Stuck(), name="stuck") as server, SyncClient(server) as client:
        client.ehlo()
        client.mail("a@example.test")
        with pytest.raises(smtplab.ClientTimeoutError) as caught:
            client.rcpt("b@example.test", timeout=0.2)
    stands_alone(caught.value, aiosmtplib.SMTPTimeoutError)


def test_with_on_the_async_client_says_what_to_use_instead(lab_server):
    with pytest.raises(TypeError) as caught:
        with smtplab.Client(lab_server):
            pass  # never reached
    assert "async with smtplab.Client(" in str(caught.value) and "smtplab.SyncClient(" in str(caught.value)


@pytest.mark.server_options(limits=smtplab.Limits(max_connections=1))
def test_the_connection_cap_is_a_smtplab_error_naming_the_limit(lab_server):
    with SyncClient(lab_server):
        second = SyncClient(lab_server)
        with pytest.raises(smtplab.ServerBusyError) as caught:
            second.connect()
        second.close()
    error = caught.value
    assert isinstance(error, aiosmtplib.SMTPConnectResponseError) and error.code == 421
    assert "Too many connections" in error.message  # the server's own words stay on .message
    assert "Limits.max_connections allows (1 here)" in str(error)
    assert "limits=Limits(max_connections=50)" in str(error) and "send_many" in str(error)
    stands_alone(error, aiosmtplib.SMTPConnectResponseError)
    assert second.greeting.code == 421 and "refused at connect" in second.greeting.meaning


def test_an_injected_421_at_connect_is_not_blamed_on_the_connection_cap(lab_server):
    lab_server.inject("connect", reply="421 4.3.2 Service not available, closing transmission channel")
    with pytest.raises(smtplab.ServerBusyError) as caught:
        SyncClient(lab_server).connect()
    error = caught.value
    assert error.code == 421 and error.message.startswith("4.3.2 Service not available")
    assert "server.inject('connect', ...)" in str(error) and "server.faults" in str(error)
    assert "max_connections" not in str(error)
    with SyncClient(lab_server) as client:  # fired once: the next connection is greeted
        assert client.greeting.code == 220


@pytest.mark.parametrize(
    ("stage", "error", "last_event"),
    [
        ("connect", aiosmtplib.SMTPConnectError, "connection closed by the server before its greeting"),
        ("MAIL", aiosmtplib.SMTPServerDisconnected, "connection closed by the server: no reply to MAIL"),
        ("DATA", aiosmtplib.SMTPServerDisconnected, "connection closed by the server: no reply to DATA"),
        (
            "end of data",
            aiosmtplib.SMTPServerDisconnected,
            "connection closed by the server: no reply to the message content",
        ),
    ],
)
def test_a_server_hanging_up_is_the_last_line_of_the_client_transcript(lab_server, stage, error, last_event):
    lab_server.inject(stage, disconnect=True)
    client = SyncClient(lab_server)
    with pytest.raises(error):  # aiosmtplib's own exception, unchanged
        client.send("alice@example.test", ["bob@example.test"], "Subject: hang-up\r\n\r\nhi\r\n")
    client.close()
    assert client.transcript.text(annotate=False).splitlines()[-1] == f"** {last_event}"


def test_a_sync_call_shows_the_learner_one_frame_of_smtplab_and_the_explanation():
    import traceback

    with pytest.raises(smtplab.LabConnectionRefusedError) as caught:
        SyncClient(host="127.0.0.1", port=free_port()).connect()
    frames = traceback.extract_tb(caught.value.__traceback__)
    assert [frame.name for frame in frames] == [
        "test_a_sync_call_shows_the_learner_one_frame_of_smtplab_and_the_explanation",
        "call",  # SyncClient's face: not the loop thread's frames, nor aiosmtplib's
    ]
    assert caught.value.original.__traceback__ is not None  # the whole story, for whoever wants it


# -- SMTPUTF8 and 8BITMIME (RFC 6531, RFC 6152) ----------------------------------------------------


def international_message():
    from email.message import EmailMessage

    message = EmailMessage()
    message["From"] = "Jörg <jörg@例え.test>"
    message["To"] = "Bob <bob@example.test>"
    message["Subject"] = "Grüße"
    message.set_content("Hallo Jörg")
    return message


def test_a_non_ascii_message_asks_for_smtputf8_and_8bitmime_as_stdlib_does(lab_server):
    import smtplib

    with smtplib.SMTP(*lab_server.address, timeout=5) as stdlib:
        stdlib.send_message(international_message())
    with SyncClient(lab_server) as client:
        assert client.send_message(international_message()).ok
        assert client.send("jörg@例え.test", "bob@example.test", "Subject: hi\r\n\r\nHallo Jörg\r\n").ok
    theirs, ours, plain = lab_server.mailbox.wait_for(3)
    mail = [line.text for t in lab_server.transcripts for line in t if line.text.upper().startswith("MAIL")]
    assert mail[1:] == ["MAIL FROM:<jörg@例え.test> SMTPUTF8 BODY=8BITMIME"] * 2
    assert mail[0] == "mail FROM:<jörg@例え.test> size=189 SMTPUTF8 BODY=8BITMIME"  # stdlib also says SIZE
    assert ours.raw == theirs.raw  # the same bytes: UTF-8 headers, the address whole
    assert ours.raw.startswith("From: Jörg <jörg@例え.test>\r\n".encode())
    assert b"=?utf-8?" not in ours.raw  # no encoded words, least of all inside an address
    assert plain.mail_from == "jörg@例え.test"


def test_only_what_a_message_needs_is_asked_for(lab_server):
    with SyncClient(lab_server) as client:
        client.send("alice@example.test", "bob@example.test", "Subject: hi\r\n\r\nplain\r\n")
        client.send("alice@example.test", "bob@example.test", "Subject: hi\r\n\r\nHallo Jörg\r\n")
        client.send("alice@example.test", "bob@example.test", "Subject: Grüße\r\n\r\nHallo\r\n")
    mail = [line.text for line in client.transcript if line.text.startswith("MAIL")]
    assert mail == [
        "MAIL FROM:<alice@example.test>",
        "MAIL FROM:<alice@example.test> BODY=8BITMIME",
        "MAIL FROM:<alice@example.test> SMTPUTF8 BODY=8BITMIME",
    ]


@pytest.mark.server_options(enable_SMTPUTF8=False)
def test_a_message_is_refused_before_sending_when_the_server_lacks_smtputf8(lab_server):
    with SyncClient(lab_server) as client:
        with pytest.raises(smtplab.ExtensionNotOfferedError) as caught:
            client.send("jörg@例え.test", "bob@example.test", "Subject: hi\r\n\r\nhi\r\n")
        assert client.noop().code == 250  # the connection is still good
    error = caught.value
    assert error.extension == "SMTPUTF8" and isinstance(error, aiosmtplib.SMTPNotSupported)
    assert "the sender 'jörg@例え.test' is not ASCII, so this message needs SMTPUTF8 (RFC 6531" in str(error)
    assert "nothing of the message was sent" in str(error)
    assert not any(line.text.startswith("MAIL") for line in client.transcript)


class No8BitMime:
    """A handler whose server leaves 8BITMIME out of its EHLO reply, as an old server would."""

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        return [line for line in responses if "8BITMIME" not in line]


@pytest.mark.server_options(handler=No8BitMime())
def test_without_8bitmime_raw_8bit_content_is_refused_and_a_message_is_made_7bit(lab_server):
    with SyncClient(lab_server) as client:
        client.ehlo()
        assert "8bitmime" not in client.extensions
        with pytest.raises(smtplab.ExtensionNotOfferedError, match="the body has 8-bit bytes") as caught:
            client.send("alice@example.test", "bob@example.test", "Subject: hi\r\n\r\nHallo Jörg\r\n")
        message = international_message()
        message.replace_header("From", "Jörg <joerg@example.test>")  # ASCII addresses: no SMTPUTF8
        assert client.send_message(message).ok
    assert caught.value.extension == "8BITMIME"
    captured = lab_server.mailbox.wait_for(1)[0]
    assert captured.raw.isascii() and captured.message.get_content().strip() == "Hallo Jörg"
    assert "converted to 7-bit" in client.transcript.text()
    assert "MAIL FROM:<joerg@example.test>" in client.transcript.text()  # and nothing asked for


# -- message content line by line, and the bytes on the wire --------------------------------------


def test_message_content_line_by_line_is_dot_stuffed_and_recorded_like_data(lab_server):
    with SyncClient(lab_server) as client:
        client.ehlo()
        with pytest.raises(
            smtplab.SmtpLabError, match=r"only after it answered DATA with 354; the session is greeted"
        ):
            client.data_line("too early")
        client.mail("alice@example.test")
        client.rcpt("bob@example.test")
        assert client.raw("DATA").code == 354 and client.state.state is State.DATA
        sent = [client.data_line(line) for line in ("Subject: dots", "", ".hidden", ".", "..two", "end")]
        assert sent == [b"Subject: dots\r\n", b"\r\n", b"..hidden\r\n", b"..\r\n", b"...two\r\n", b"end\r\n"]
        with pytest.raises(ValueError, match=r"sends one line, and 'a\\r\\nb' holds a line break"):
            client.data_line("a\r\nb")
        reply = client.end_data()
        assert reply.code == 250 and client.state.state is State.GREETED
        with pytest.raises(smtplab.SmtpLabError, match="send DATA first"):
            client.end_data()
        assert wire(client.transcript)[-2:] == ["-> .", f"<- {reply.code} {reply.message}"]
        summary = [line.text for line in client.transcript if line.sender == "event"][-1]
        assert summary == f"message data: 6 lines, {sum(map(len, sent))} bytes"
        assert wire(client.pair().client) == wire(client.server_transcript)  # both ends agree
    message = lab_server.mailbox.wait_for(1)[0]
    assert message.raw == b"Subject: dots\r\n\r\n.hidden\r\n.\r\n..two\r\nend\r\n"


def test_a_message_with_no_content_lines_ends_at_once(lab_server):
    with SyncClient(lab_server) as client:
        client.ehlo(), client.mail("alice@example.test"), client.rcpt("bob@example.test")
        assert client.raw("DATA").code == 354
        assert client.end_data().code == 250
    assert lab_server.mailbox.wait_for(1)[0].raw == b""


@pytest.mark.server_options(tls="starttls")
def test_wire_observers_see_every_byte_both_ways_and_whether_inside_tls(lab_server):
    seen: list[tuple[str, bytes, bool]] = []
    client = SyncClient(lab_server, tls="starttls")
    client.observe_wire(lambda *chunk: seen.append(chunk))
    client.observe_wire(lambda *chunk: 1 / 0)  # a broken observer breaks nothing
    with client:
        client.noop()
    assert seen[0] == ("server", f"{client.greeting}\r\n".encode(), False)  # the greeting, as its lines
    assert seen[1] == ("client", b"EHLO client.smtplab.test\r\n", False)
    assert ("client", b"STARTTLS\r\n", False) in seen
    assert ("client", b"NOOP\r\n", True) in seen and ("client", b"QUIT\r\n", True) in seen
    said = b"".join(data for sender, data, tls in seen if sender == "server" and tls)
    assert said == b"250 2.0.0 OK\r\n221 2.0.0 Bye\r\n"  # NOOP and QUIT answered inside TLS
    assert b"250-SIZE" in b"".join(data for sender, data, tls in seen if sender == "server" and not tls)
    assert client.wire_errors and all(isinstance(e, ZeroDivisionError) for e in client.wire_errors)
    client.unobserve_wire(seen.append)  # never registered: nothing happens


def test_a_greeting_sent_with_raw_still_tells_the_client_what_the_server_offers(lab_server):
    with SyncClient(lab_server) as client:
        assert client.extensions == {}
        assert client.raw("EHLO by-hand.test").code == 250
        assert {"size", "8bitmime", "help"} <= set(client.extensions) and client.state.esmtp
        assert client.last_reply.code == 250 and client.where == f"{lab_server.host}:{lab_server.port}"


def test_a_server_without_starttls_leaves_no_connection_open_behind_the_error(lab_server):
    client = SyncClient(lab_server, tls="starttls")
    with pytest.raises(smtplab.TLSMismatchError, match="does not offer STARTTLS") as caught:
        client.connect()
    assert "smtplab.start_server(tls='starttls')" in str(caught.value)  # a lab server: start it with TLS
    assert not client.connected
    assert [line.text for line in client.transcript if line.sender == "event"][
        -1
    ] == "connection closed by the client"


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


def test_a_server_that_is_not_a_lab_server_and_lacks_starttls_is_not_told_to_start_one():
    async def attempt() -> str:
        server = await scripted_server({b"EHLO": b"250-mx.other.test\r\n250 SIZE 1000\r\n"}, [])
        try:
            client = Client(
                host="127.0.0.1", port=server.sockets[0].getsockname()[1], tls="starttls", timeout=5
            )
            with pytest.raises(smtplab.TLSMismatchError) as caught:
                await client.connect()
            await client.close()
            return caught.value.hint.render("cli")
        finally:
            server.close()
            await server.wait_closed()

    message = run(attempt())
    assert "does not offer STARTTLS" in message and "turn STARTTLS on in its configuration" in message
    assert "lab" not in message.lower() and "--tls implicit" in message


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
