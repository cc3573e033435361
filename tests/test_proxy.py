"""The lab man-in-the-middle: faithful relay, STARTTLS stripping, blind TLS relay, loopback only."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import smtplib
import socket
import subprocess
import threading
from collections.abc import Iterator

import aiosmtplib
import pytest

import smtplab
from smtplab.proxy import NO_TLS_REPLY, strip_starttls
from smtplab.server import ReplacedServerWarning
from tests.conftest import free_port, thread_names
from tests.wire import Wire

CREDENTIALS = base64.b64encode(b"\0alice\0wonderland").decode()  # AUTH PLAIN's initial response
MESSAGE = "From: alice@example.test\r\nTo: bob@example.test\r\nSubject: plans\r\n\r\nMeet at noon.\r\n"


@contextlib.contextmanager
def lesson_server(**options: object) -> Iterator[smtplab.LabServer]:
    """A STARTTLS lab server taking AUTH PLAIN and LOGIN, in plain text too: the lesson's explicit opt-in."""
    options.setdefault("auth_require_tls", False)
    server = smtplab.start_server(
        tls="starttls",
        auth={"alice": "wonderland"},
        auth_mechanisms=("PLAIN", "LOGIN"),  # as most submission servers offer
        name="proxied",
        **options,
    )
    try:
        yield server
    finally:
        server.stop()


async def opportunistic_aiosmtplib(proxy: smtplab.LabProxy, server: smtplab.LabServer) -> bool:
    """aiosmtplib with its default start_tls=None: upgrades only when offered. Returns whether it did."""
    smtp = aiosmtplib.SMTP(
        hostname=proxy.host, port=proxy.port, tls_context=server.client_context(), timeout=5
    )
    await smtp.connect()
    transport = smtp.transport  # the TLS one when it upgraded
    try:
        encrypted = smtp.get_transport_info("sslcontext") is not None
        await smtp.login("alice", "wonderland")
        await smtp.sendmail("alice@example.test", ["bob@example.test"], MESSAGE)
        await smtp.quit()
    finally:
        smtp.close()
        if transport is not None:
            transport.abort()  # a TLS close waits for close_notify, which asyncio.run() does not
    return encrypted


def opportunistic_smtplib(proxy: smtplab.LabProxy, server: smtplab.LabServer) -> bool:
    """A stdlib script that upgrades only when offered. Returns whether it did."""
    with smtplib.SMTP(proxy.host, proxy.port, timeout=5) as s:
        s.ehlo()
        encrypted = False
        if s.has_extn("starttls"):
            s.starttls(context=server.client_context())
            s.ehlo()
            encrypted = True
        s.login("alice", "wonderland")
        s.sendmail("alice@example.test", ["bob@example.test"], MESSAGE)
    return encrypted


def send_through(proxy: smtplab.LabProxy, server: smtplab.LabServer, client: str) -> bool:
    if client == "aiosmtplib":
        return asyncio.run(opportunistic_aiosmtplib(proxy, server))
    return opportunistic_smtplib(proxy, server)


# -- the pure part ----------------------------------------------------------------------------------


def test_strip_starttls_deletes_the_line_and_keeps_the_reply_well_formed():
    lines = ["250-lab.test", "250-SIZE 100", "250-STARTTLS", "250 HELP"]
    kept, edits = strip_starttls(lines)
    assert kept == ["250-lab.test", "250-SIZE 100", "250 HELP"]
    assert [(e.kind, e.original, e.relayed) for e in edits] == [("deleted", "250-STARTTLS", None)]

    last = ["250-lab.test", "250-8BITMIME", "250 STARTTLS"]  # the last line goes: its space moves up
    kept, edits = strip_starttls(last)
    assert kept == ["250-lab.test", "250 8BITMIME"]
    assert [(e.kind, e.original, e.relayed) for e in edits] == [
        ("deleted", "250 STARTTLS", None),
        ("rewritten", "250-8BITMIME", "250 8BITMIME"),
    ]
    assert strip_starttls(["250-lab.test", "250 HELP"]) == (["250-lab.test", "250 HELP"], [])
    assert strip_starttls(["250-lab.test", "250 starttls"])[0] == ["250 lab.test"]


# -- the attack ---------------------------------------------------------------------------------


@pytest.mark.parametrize("client", ["aiosmtplib", "smtplib"])
def test_an_opportunistic_client_logs_in_in_clear_text_through_a_stripping_proxy(client):
    with lesson_server() as server, smtplab.start_proxy(server, strip_starttls=True) as proxy:
        assert send_through(proxy, server, client) is False  # never upgraded
        (connection,) = proxy.wait_for(1)
        captured = server.mailbox.wait_for(1)[0]
    assert captured.tls is None and captured.auth_user == "alice"  # the server saw a plain-text login
    record = connection.transcript
    shown, revealed = record.text(), record.text(reveal_secrets=True)
    # masked unless revealed, like every transcript; revealed, the password decodes
    assert "AUTH PLAIN ********" in shown and CREDENTIALS not in shown
    line = next(line for line in record if line.text.upper().startswith("AUTH PLAIN"))
    assert base64.b64decode(line.text.split()[-1]) == b"\0alice\0wonderland"
    assert CREDENTIALS in revealed
    # what the proxy changed is marked, and only that
    assert [(e.kind, e.original) for e in connection.edits] == [("deleted", "250-STARTTLS")]
    assert "proxy CHANGED the reply: deleted '250-STARTTLS'" in shown
    assert "<- 250-STARTTLS" in shown  # the server's own words stay on record
    assert connection.messages == [MESSAGE.encode()]  # and it read the mail too
    assert not connection.tls_relayed and connection.closed


@pytest.mark.parametrize("client", ["aiosmtplib", "smtplib"])
def test_the_same_client_through_a_faithful_proxy_upgrades_and_the_proxy_sees_no_credentials(client):
    with lesson_server() as server, smtplab.start_proxy(server) as proxy:
        assert send_through(proxy, server, client) is True
        (connection,) = proxy.wait_for(1)
        captured = server.mailbox.wait_for(1)[0]
    assert captured.tls is not None and captured.auth_user == "alice"
    revealed = connection.transcript.text(reveal_secrets=True)
    assert "AUTH" not in revealed.replace("250-AUTH", "") and CREDENTIALS not in revealed
    assert "plans" not in revealed and connection.messages == []
    assert connection.tls_relayed and not connection.edits
    assert connection.ciphertext_from_client > 0 and connection.ciphertext_from_server > 0
    assert "sees only ciphertext" in revealed
    assert f"{connection.ciphertext_from_client} bytes from the client" in revealed


def test_a_client_that_requires_starttls_fails_closed_and_names_the_attack():
    with lesson_server() as server, smtplab.start_proxy(server, strip_starttls=True) as proxy:
        client = smtplab.SyncClient(
            host=proxy.host, port=proxy.port, tls="starttls", tls_context=server.client_context()
        )
        with pytest.raises(smtplab.TLSMismatchError, match="STARTTLS-stripping attack") as error:
            client.connect()
        client.close()
        (connection,) = proxy.wait_for(1)
    assert "never fall back to plain text" in str(error.value)
    revealed = connection.transcript.text(reveal_secrets=True)
    assert "AUTH PLAIN" not in revealed and "MAIL FROM" not in revealed  # nothing given away
    assert server.mailbox.received == 0


def test_the_same_client_through_a_faithful_proxy_gets_tls():
    with lesson_server() as server, smtplab.start_proxy(server) as proxy:
        with smtplab.SyncClient(
            host=proxy.host, port=proxy.port, tls="starttls", tls_context=server.client_context()
        ) as client:
            assert client.tls_active
            assert client.login("alice", "wonderland").code == 235
        (connection,) = proxy.wait_for(1)
    assert connection.tls_relayed and "AUTH" not in connection.transcript.text(reveal_secrets=True).replace(
        "250-AUTH", ""
    )


def test_a_server_that_keeps_auth_for_tls_gives_the_stripper_nothing():
    # The defaults: AUTH offered only after STARTTLS, and with require_tls no mail before it either.
    with lesson_server(auth_require_tls=True, require_tls=True) as server:
        with smtplab.start_proxy(server, strip_starttls=True) as proxy:
            with pytest.raises(aiosmtplib.SMTPException, match="AUTH"):
                asyncio.run(opportunistic_aiosmtplib(proxy, server))
            with smtplib.SMTP(proxy.host, proxy.port, timeout=5) as s:
                s.ehlo()
                assert not s.has_extn("starttls") and not s.has_extn("auth")
                code, text = s.mail("alice@example.test")
                assert code == 530 and b"STARTTLS" in text  # "Must issue a STARTTLS command first"
            proxy.wait_for(2)
    revealed = "\n".join(t.text(reveal_secrets=True) for t in proxy.transcripts)
    assert CREDENTIALS not in revealed and "AUTH PLAIN" not in revealed
    assert server.mailbox.received == 0


def test_a_client_that_sends_starttls_anyway_hears_what_a_server_without_tls_says():
    with lesson_server() as server, smtplab.start_proxy(server, strip_starttls=True) as proxy:
        with Wire(proxy.address) as wire:
            assert wire.reply()[0].startswith("220")
            ehlo = wire.command("EHLO wire.test")
            assert "250-STARTTLS" not in ehlo and ehlo[-1].startswith("250 ")
            assert all(line.startswith("250-") for line in ehlo[:-1])
            assert wire.command("STARTTLS") == [NO_TLS_REPLY]
            assert wire.command("NOOP")[0].startswith("250")  # still plain text, still talking
            assert wire.command("QUIT")[0].startswith("221")
        (connection,) = proxy.wait_for(1)
        server_side = server.transcripts[-1]
    assert [e.kind for e in connection.edits] == ["deleted", "answered"]
    assert connection.edits[1].original == "STARTTLS" and connection.edits[1].relayed == NO_TLS_REPLY
    assert "proxy ANSWERED in the server's place" in connection.transcript.text()
    assert not any(line.text == "STARTTLS" for line in server_side)  # the server never saw it


def test_a_lab_server_without_starttls_answers_as_the_stripping_proxy_does():
    with smtplab.start_server(name="no-tls") as server, Wire(server.address) as wire:
        wire.reply()
        wire.command("EHLO wire.test")
        assert wire.command("STARTTLS") == [NO_TLS_REPLY]


def test_pipelined_commands_are_relayed_in_order():
    with lesson_server() as server, smtplab.start_proxy(server) as proxy:
        with Wire(proxy.address) as wire:
            wire.reply()
            wire.command("EHLO wire.test")
            wire.send("MAIL FROM:<a@example.test>\r\nRCPT TO:<b@example.test>\r\nDATA\r\n")
            assert [wire.code(), wire.code(), wire.code()] == [250, 250, 354]
            wire.send("Subject: piped\r\n\r\nSTARTTLS\r\n.\r\nQUIT\r\n")  # STARTTLS here is message text
            assert wire.code() == 250 and wire.code() == 221
        (connection,) = proxy.wait_for(1)
        assert server.mailbox.wait_for(1)[0].subject == "piped"
    assert connection.messages == [b"Subject: piped\r\n\r\nSTARTTLS\r\n"] and not connection.tls_relayed


# -- other tools through the proxy ----------------------------------------------------------------


def test_swaks_through_proxies(tmp_path):
    with lesson_server() as server:
        ca = str(server.lab_tls.write_files(tmp_path).ca_cert)
        swaks = [
            "swaks", "--server", "127.0.0.1", "--to", "bob@example.test", "--from", "alice@example.test",
            "--auth", "PLAIN", "--auth-user", "alice", "--auth-password", "wonderland",
            "--tls-verify", "--tls-ca-path", ca, "--timeout", "10",
        ]  # fmt: skip
        with smtplab.start_proxy(server) as proxy:
            done = subprocess.run(
                [*swaks, "--port", str(proxy.port), "--tls"], capture_output=True, text=True, timeout=60
            )
            assert done.returncode == 0, done.stdout + done.stderr
            (connection,) = proxy.wait_for(1)
            assert connection.tls_relayed and CREDENTIALS not in connection.transcript.text(
                reveal_secrets=True
            )
        with smtplab.start_proxy(server, strip_starttls=True) as proxy:
            # --tls requires it: swaks stops before AUTH; --tls-optional-strict is opportunistic
            done = subprocess.run(
                [*swaks, "--port", str(proxy.port), "--tls"], capture_output=True, text=True, timeout=60
            )
            assert done.returncode != 0 and "did not advertise STARTTLS" in done.stderr
            opportunistic = [*swaks, "--port", str(proxy.port), "--tls-optional-strict"]
            done = subprocess.run(opportunistic, capture_output=True, text=True, timeout=60)
            assert done.returncode == 0, done.stdout + done.stderr
            required, opportunistic_run = proxy.wait_for(2)
            assert CREDENTIALS not in required.transcript.text(reveal_secrets=True)
            assert CREDENTIALS in opportunistic_run.transcript.text(reveal_secrets=True)
        assert [m.tls is not None for m in server.mailbox.wait_for(2)] == [True, False]


def test_openssl_s_client_starttls_through_a_faithful_proxy(tmp_path):
    with lesson_server() as server, smtplab.start_proxy(server) as proxy:
        ca = str(server.lab_tls.write_files(tmp_path).ca_cert)
        done = subprocess.run(
            ["openssl", "s_client", "-starttls", "smtp", "-connect", f"{proxy.host}:{proxy.port}",
             "-CAfile", ca, "-verify_return_error", "-verify_hostname", "localhost", "-crlf", "-quiet"],
            input="EHLO openssl.test\nQUIT\n", capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert "250-AUTH LOGIN PLAIN" in done.stdout and "221" in done.stdout  # said inside TLS
        (connection,) = proxy.wait_for(1)
    assert connection.tls_relayed
    assert "AUTH LOGIN PLAIN" in "\n".join(line.text for line in connection.transcript if not line.tls)
    assert "openssl.test" not in connection.transcript.text()  # its EHLO went inside TLS: unseen


# -- loopback only ----------------------------------------------------------------------------------


@pytest.mark.parametrize("upstream", [("192.0.2.25", 25), ("0.0.0.0", 25), ("::", 25)])
def test_only_loopback_upstreams_are_relayed_to(upstream):
    with pytest.raises(ValueError, match="loopback only") as error:
        smtplab.start_proxy(upstream)
    assert "never for anyone else's traffic" in str(error.value)


def test_the_proxy_listens_only_on_loopback():
    with lesson_server() as server:
        with pytest.raises(ValueError, match="loopback only"):
            smtplab.start_proxy(server, host="0.0.0.0")


def test_bad_upstreams_are_named():
    with pytest.raises(TypeError, match=r"LabServer or a \(host, port\)"):
        smtplab.start_proxy("127.0.0.1:25")
    server = smtplab.start_server(name="stopped")
    server.stop()
    with pytest.raises(ValueError, match="is stopped"):
        smtplab.start_proxy(server)
    with smtplab.start_server(name="private", unix_socket=True) as private:
        with pytest.raises(ValueError, match="Unix-domain socket"):
            smtplab.start_proxy(private)
    with smtplab.start_server(name="implicit", tls="implicit") as implicit:
        with pytest.raises(ValueError, match="no STARTTLS to strip"):
            smtplab.start_proxy(implicit, strip_starttls=True)


def test_implicit_tls_is_relayed_blind_from_the_first_byte():
    with (
        smtplab.start_server(tls="implicit", name="implicit") as server,
        smtplab.start_proxy(server) as proxy,
    ):
        with smtplab.SyncClient(
            host=proxy.host, port=proxy.port, tls="implicit", tls_context=server.client_context()
        ) as client:
            assert client.send("alice@example.test", "bob@example.test", MESSAGE).ok
        (connection,) = proxy.wait_for(1)
    assert connection.tls_relayed and "implicit TLS" in connection.transcript.text()
    assert not [line for line in connection.transcript if line.sender != "event"]  # not one readable line


# -- lifecycle ---------------------------------------------------------------------------------------


def test_ready_on_return_stop_twice_and_a_readable_repr():
    before = thread_names()
    with lesson_server() as server:
        proxy = smtplab.start_proxy(server, strip_starttls=True, name="mitm")
        assert proxy.port != server.port and proxy.address == ("127.0.0.1", proxy.port)
        assert smtplab.running_proxies() == [proxy]
        with Wire(proxy.address) as wire:  # ready on return: no waiting
            assert wire.reply()[0].startswith("220")
        text = repr(proxy)
        assert f"'mitm' running on 127.0.0.1:{proxy.port}" in text and f"127.0.0.1:{server.port}" in text
        assert "stripping STARTTLS" in text and "1 connection(s)" in text
        proxy.stop()
        proxy.stop()
        assert not proxy.running and "stopped" in repr(proxy) and smtplab.running_proxies() == []
        assert len(proxy.transcripts) == 1  # records outlive the proxy
    assert thread_names() == before


def test_stop_cuts_open_connections():
    with lesson_server() as server:
        proxy = smtplab.start_proxy(server)
        with Wire(proxy.address, timeout=5) as wire:
            wire.reply()
            proxy.stop()
            assert wire.rest() == b""  # the connection closed, no hang
        (connection,) = proxy.connections
        assert connection.closed and connection.transcript[-1].text == "connection closed"


def test_a_taken_port_fails_at_once():
    with lesson_server() as server, smtplab.start_proxy(server) as proxy:
        with pytest.raises(smtplab.PortInUseError, match="port=0"):
            smtplab.start_proxy(server, port=proxy.port, name="second")
        with smtplab.start_proxy(server, port=free_port(), name="explicit") as explicit:
            assert explicit.running


def test_a_proxy_of_the_same_name_replaces_the_old_one():
    with lesson_server() as server:
        first = smtplab.start_proxy(server)
        with pytest.warns(ReplacedServerWarning, match="lab proxy 'proxy'"):
            second = smtplab.start_proxy(server)
        assert not first.running and smtplab.running_proxies() == [second]
        assert smtplab.stop_all_proxies() == 1 and not second.running


def test_a_failed_start_leaves_the_running_proxy_of_the_same_name_running():
    with lesson_server() as server, smtplab.start_proxy(server) as running:
        with socket.socket() as squatter:
            squatter.bind(("127.0.0.1", 0))
            squatter.listen()
            with pytest.raises(smtplab.PortInUseError, match=r"The lab proxy .proxy. on .* is still running"):
                smtplab.start_proxy(server, port=squatter.getsockname()[1])
        assert running.running and smtplab.running_proxies() == [running]


def test_an_unreachable_server_gets_the_client_a_421():
    with lesson_server() as server, smtplab.start_proxy(server) as proxy:
        server.stop()
        with Wire(proxy.address) as wire:
            reply = wire.reply()
        (connection,) = proxy.wait_for(1)
    assert reply[0].startswith("421 4.4.0 The lab proxy could not reach the server")
    assert connection.edits[0].kind == "answered"


def test_wait_for_says_what_it_waited_for():
    with lesson_server() as server, smtplab.start_proxy(server) as proxy, Wire(proxy.address) as wire:
        wire.reply()
        with pytest.raises(TimeoutError, match="0 of the 1 connection"):
            proxy.wait_for(1, timeout=0.05)


def test_many_clients_at_once():
    with lesson_server() as server, smtplab.start_proxy(server) as proxy:
        errors: list[BaseException] = []

        def one(n: int) -> None:
            try:
                with smtplib.SMTP(proxy.host, proxy.port, timeout=10) as s:
                    s.sendmail("a@example.test", ["b@example.test"], f"Subject: {n}\r\n\r\nhi\r\n")
            except BaseException as error:  # noqa: BLE001 - reported below
                errors.append(error)

        threads = [threading.Thread(target=one, args=(n,)) for n in range(10)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert not errors
        assert sorted(m.subject for m in server.mailbox.wait_for(10)) == sorted(str(n) for n in range(10))
        assert len(proxy.wait_for(10)) == 10


def test_message_copies_are_bounded(monkeypatch):
    monkeypatch.setattr("smtplab.proxy._KEEP_MESSAGE_BYTES", len(MESSAGE) + 10)
    with lesson_server() as server, smtplab.start_proxy(server, strip_starttls=True) as proxy:
        with smtplib.SMTP(proxy.host, proxy.port, timeout=5) as s:
            for _ in range(2):
                s.sendmail("alice@example.test", ["bob@example.test"], MESSAGE)
        (connection,) = proxy.wait_for(1)
    assert connection.messages == [MESSAGE.encode()]  # the second did not fit
    assert (
        f"{len(MESSAGE)} bytes, relayed in plain text: the proxy read it all" in connection.transcript.text()
    )


def test_a_client_made_from_the_proxy_trusts_the_lab_ca_behind_it_and_reads_naturally():
    with lesson_server() as server, smtplab.start_proxy(server) as faithful:
        with smtplab.SyncClient(faithful, tls="starttls") as client:
            assert (client.host, client.port) == faithful.address and client.proxy is faithful
            assert client.tls_active and client.login("alice", "wonderland").code == 235
        with pytest.raises(LookupError, match=r"proxy.connections\[-1\].transcript"):
            client.pair()
    with lesson_server() as server, smtplab.start_proxy(server, strip_starttls=True) as stripping:
        client = smtplab.SyncClient(stripping, tls="starttls")
        with pytest.raises(
            smtplab.TLSMismatchError, match="the lab proxy in front of the server deleted"
        ) as caught:
            client.connect()
        client.close()
        with smtplab.SyncClient(stripping) as fooled:  # the lesson: a client that does not insist
            assert "STARTTLS" not in fooled.ehlo().message
            assert fooled.login("alice", "wonderland").code == 235
        revealed = stripping.wait_for(2)[-1].transcript.text(reveal_secrets=True)
    assert "STARTTLS-stripping attack" in str(caught.value)
    assert "start_server" not in str(caught.value)  # the server has TLS: no such fix to offer
    assert base64.b64encode(b"\0alice\0wonderland").decode() in revealed
    # in front of a server without TLS, the offer is missing for real: starting it with TLS is the fix
    with (
        smtplab.start_server(name="plain") as plain,
        smtplab.start_proxy(plain, strip_starttls=True) as proxy,
    ):
        with pytest.raises(smtplab.TLSMismatchError, match=r"start_server\(tls='starttls'\)"):
            smtplab.SyncClient(proxy, tls="starttls").connect()
