"""TLS and AUTH end to end: every mode with every mechanism, two clients, and the failures that teach."""

from __future__ import annotations

import asyncio
import smtplib
import ssl

import pytest

import smtplab
from smtplab.errors import NoCommonMechanismError
from smtplab.tls import LabTLS

USERS = {"alice": "wonderland"}  # the lab's fake credentials
MODES = [None, "starttls", "implicit"]
MECHANISMS = [None, "PLAIN", "LOGIN", "CRAM-MD5"]


def lab(tls, **options):
    if tls is None:
        options.setdefault("auth_require_tls", False)  # the plain-text lesson opts in explicitly
    return smtplab.start_server(tls=tls, auth=USERS, name=f"tls-{tls}", **options)


@pytest.mark.parametrize("mechanism", MECHANISMS)
@pytest.mark.parametrize("tls", MODES)
def test_smtplab_client_matrix(tls, mechanism):
    with lab(tls) as server, smtplab.SyncClient(server, tls=tls) as client:
        assert client.tls_active is (tls is not None)
        client.ehlo()
        if mechanism:
            assert client.login("alice", "wonderland", mechanism=mechanism).code == 235
            assert f"AUTH {mechanism}" in client.transcript.text()
        assert client.send("alice@example.test", "bob@example.test", "Subject: matrix\r\n\r\nhi").ok
        captured = server.mailbox.wait_for(1)[0]
        assert (captured.tls is not None) is (tls is not None)
        assert captured.auth_user == ("alice" if mechanism else None)
        if tls:
            assert captured.tls.version.startswith("TLS") and "Lab CA" in captured.tls.issuer
            assert any(line.tls for line in client.transcript) and any(
                line.tls for line in captured.transcript
            )


@pytest.mark.parametrize("mechanism", MECHANISMS)
@pytest.mark.parametrize("tls", MODES)
def test_stdlib_smtplib_matrix(tls, mechanism):
    with lab(tls) as server:
        context = server.client_context()
        if tls == "implicit":
            client = smtplib.SMTP_SSL("localhost", server.port, context=context, timeout=5)
        else:
            client = smtplib.SMTP("localhost", server.port, timeout=5)
        with client:
            if tls == "starttls":
                assert client.starttls(context=context)[0] == 220
            if mechanism:
                client.user, client.password = "alice", "wonderland"
                client.ehlo_or_helo_if_needed()
                code, _ = client.auth(
                    mechanism, getattr(client, f"auth_{mechanism.lower().replace('-', '_')}")
                )
                assert code == 235
            client.sendmail("alice@example.test", ["bob@example.test"], b"Subject: stdlib\r\n\r\nhi\r\n")
        captured = server.mailbox.wait_for(1)[0]
        assert captured.auth_user == ("alice" if mechanism else None)
        assert (captured.tls is not None) is (tls is not None)


@pytest.mark.parametrize("tls", ["starttls", "implicit"])
def test_implicit_and_starttls_start_without_a_self_test_handshake(tls):
    with lab(tls) as server:
        assert server.transcripts == []  # no connection was made to check readiness


def test_wrong_password_gets_535_quickly():
    with lab("starttls") as server, smtplab.SyncClient(server, tls="starttls", timeout=5) as client:
        client.ehlo()
        reply = client.login("alice", "not-the-password")
        assert reply.code == 535 and "5.7.8" in reply.message
        assert server.auth.failures == {"alice": 1}


def test_auth_before_starttls_is_refused_with_538():
    with lab("starttls") as server, smtplab.SyncClient(server) as client:
        client.ehlo()
        assert "AUTH" not in {k.upper() for k in client.extensions}
        with pytest.raises(NoCommonMechanismError, match="STARTTLS"):
            client.login("alice", "wonderland")
        reply = client.login("alice", "wonderland", mechanism="PLAIN")  # the lesson insists
        assert reply.code == 538 and "5.7.11" in reply.message


def test_require_tls_refuses_mail_before_starttls():
    with smtplab.start_server(tls="starttls", require_tls=True, name="must") as server:
        with smtplab.SyncClient(server) as client:
            client.ehlo()
            assert client.mail("a@example.test").code == 530
        with smtplab.SyncClient(server, tls="starttls") as client:
            assert client.send("a@example.test", "b@example.test", "Subject: x\r\n\r\ny").ok


def test_wrong_ca_fails_with_an_explanation():
    other = LabTLS.create()
    with lab("starttls") as server:
        with pytest.raises(smtplab.TLSCertificateError, match=r"(?i)trust") as caught:
            smtplab.SyncClient(server, tls="starttls", tls_context=other.client_context()).connect()
        assert isinstance(caught.value, ssl.SSLCertVerificationError)
        with pytest.raises(smtplab.TLSCertificateError):  # nor do the system CAs know the lab CA
            smtplab.SyncClient(host="127.0.0.1", port=server.port, tls="starttls").connect()


def test_wrong_hostname_fails_with_an_explanation():
    elsewhere = LabTLS.create(hosts=("mail.example.test",))
    with lab("implicit", lab_tls=elsewhere) as server:
        with pytest.raises(smtplab.TLSCertificateError, match=r"mail.example.test"):
            smtplab.SyncClient(server, tls="implicit").connect()


def test_a_trusted_ca_file_works_for_any_client(tmp_path):
    with lab("implicit") as server:
        files = server.lab_tls.write_files(tmp_path)
        with smtplab.SyncClient(
            host="localhost", port=server.port, tls="implicit", cafile=str(files.ca_cert)
        ) as client:
            assert client.noop().code == 250


def test_validate_certs_false_accepts_anything():
    with lab("implicit", lab_tls=LabTLS.create(hosts=("mail.example.test",))) as server:
        with smtplab.SyncClient(
            host="127.0.0.1", port=server.port, tls="implicit", validate_certs=False
        ) as client:
            assert client.noop().code == 250


def test_a_wrong_name_is_told_with_the_names_of_the_certificate_presented():
    # By port, a client without the server object still finds the lab server's certificate:
    # here one for "localhost" only, whatever the default lab certificate says.
    lab_ca = smtplab.tls.default_lab_tls()
    with lab("starttls", lab_tls=lab_ca.issue(hosts="localhost")) as server:
        direct = smtplab.SyncClient(
            host="127.0.0.1", port=server.port, tls="starttls", tls_context=lab_ca.client_context()
        )
        with pytest.raises(smtplab.TLSCertificateError) as caught:
            direct.connect()
        assert "is for localhost; you connected to '127.0.0.1'" in str(caught.value)
        with smtplab.start_proxy(server) as proxy:  # and through a lab proxy in front of it
            relayed = smtplab.SyncClient(
                host="127.0.0.1", port=proxy.port, tls="starttls", tls_context=lab_ca.client_context()
            )
            with pytest.raises(smtplab.TLSCertificateError, match="is for localhost; you connected to"):
                relayed.connect()
            proxy.wait_for(1)


def test_a_server_that_is_no_lab_server_gets_no_lab_names():
    from tests.handshake import echo_once, serving

    stranger = LabTLS.create(hosts="mail.example.test")
    smtplab.tls.default_lab_tls()  # the default lab certificate exists, and is not this server's

    async def connect() -> BaseException:
        async with serving(stranger.server_context(), echo_once) as port:
            client = smtplab.Client(
                host="localhost", port=port, tls="implicit", tls_context=stranger.client_context(), timeout=5
            )
            with pytest.raises(smtplab.TLSCertificateError) as caught:
                await client.connect()
            return caught.value

    message = str(asyncio.run(connect()))
    # Its own names, read over a second connection: never the default lab certificate's.
    assert "is for mail.example.test; you connected to 'localhost'" in message
    assert "::1" not in message


def test_implicit_client_on_a_plain_port_names_the_mismatch():
    with smtplab.start_server(name="plain") as server:
        with pytest.raises(smtplab.TLSMismatchError, match=r"starttls|plain"):
            smtplab.SyncClient(server, tls="implicit").connect()


def test_plain_client_on_an_implicit_lab_port_is_told_at_once():
    with lab("implicit") as server:
        with pytest.raises(smtplab.TLSMismatchError, match="tls='implicit'"):
            smtplab.SyncClient(server).connect()
        # any other server: the silence until the timeout, then the same advice
        with pytest.raises(smtplab.ClientTimeoutError, match="tls='implicit'") as caught:
            smtplab.SyncClient(host="127.0.0.1", port=server.port, timeout=0.3).connect()
        # the lab server behind that port is named for what it is, not as perhaps overloaded
        assert f"The lab server {server.name!r} on that port is one: it speaks implicit TLS" in str(
            caught.value
        )
        assert "overloaded" not in str(caught.value)


def test_starttls_client_on_a_server_without_starttls():
    with smtplab.start_server(name="plain") as server:
        with pytest.raises(smtplab.TLSMismatchError, match="does not offer STARTTLS"):
            smtplab.SyncClient(server, tls="starttls").connect()


@pytest.mark.parametrize("trouble", ["no STARTTLS offered", "an untrusted certificate"])
def test_a_failed_starttls_hangs_up_even_inside_async_with(trouble):
    # `async with` never calls __aexit__ when connecting fails: the client hangs up by itself.
    with (
        lab("starttls") as server,
        smtplab.start_proxy(server, strip_starttls=trouble.startswith("no")) as proxy,
    ):
        trust = {"tls_context": server.client_context()} if trouble.startswith("no") else {}

        async def connect() -> smtplab.Client:
            client = smtplab.Client(host=proxy.host, port=proxy.port, tls="starttls", **trust)
            with pytest.raises((smtplab.TLSMismatchError, smtplab.TLSCertificateError)):
                async with client:
                    pass
            return client

        client = asyncio.run(connect())
        assert not client.connected
        if trouble.startswith("no"):  # (a failed handshake has already dropped the connection)
            assert client.transcript[-1].text == "connection closed by the client"
        # the proxy saw the client go (after a refused certificate, also the second connection
        # that read it to name its names)
        connections = proxy.wait_for(1 if trouble.startswith("no") else 2)
    assert connections and all(connection.closed for connection in connections)


def test_auth_exchange_is_masked_and_revealable():
    with lab("implicit") as server, smtplab.SyncClient(server, tls="implicit") as client:
        client.ehlo()
        client.login("alice", "wonderland", mechanism="LOGIN")
    shown = client.transcript.text()
    revealed = client.transcript.text(reveal_secrets=True)
    for secret in ("YWxpY2U=", "d29uZGVybGFuZA=="):  # base64 of alice / wonderland
        assert secret not in shown and secret in revealed
        assert secret not in server.transcripts[-1].text()


def test_bad_tls_options_are_named():
    with pytest.raises(ValueError, match=r"require_tls=True.*tls='starttls'"):
        smtplab.start_server(tls="implicit", require_tls=True)
    with pytest.raises(ValueError, match="tls must be"):
        smtplab.start_server(tls="ssl")
    with pytest.raises(ValueError, match="auth must map"):
        smtplab.start_server(auth=["alice"])


@pytest.mark.parametrize("tls", [None, "starttls", "implicit"])
@pytest.mark.parametrize("ending", ["quit", "close", "server hung up"])
def test_the_socket_is_released_when_the_client_is_done(tls, ending):
    # A TLS close() alone waits for the server's close_notify, and does nothing once the server
    # has begun to close: a script's asyncio.run() could end first and leak the socket.
    async def session(server: smtplab.LabServer) -> int:
        client = smtplab.Client(server, tls=tls)
        await client.connect()
        sock = client.smtp.get_transport_info("socket")
        if ending == "quit":
            await client.quit()
        elif ending == "close":
            await client.close()
        else:
            for n in range(3):  # the third wrong password makes the server hang up
                await client.login("alice", f"guess{n}")
            await client.close()
        await asyncio.sleep(0)  # one loop turn for the transport's connection_lost
        return sock.fileno()

    with smtplab.start_server(tls=tls, auth=USERS, auth_require_tls=False, name="release") as server:
        assert asyncio.run(session(server)) == -1
