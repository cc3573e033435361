"""The lab server: lifecycle, ports, capture through an independent client, handlers, Maildir."""

from __future__ import annotations

import email.policy
import smtplib
import socket
import time
import warnings
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

import smtplab
from smtplab._aiosmtpd import LabController
from smtplab.errors import AuthWithoutTLSWarning, HandlerWarning, RemoteBindWarning, ReplacedServerWarning
from tests.conftest import free_port, open_fds, thread_names
from tests.wire import Wire

ROOT = Path(__file__).resolve().parents[1]


def send(server: smtplab.LabServer, message: EmailMessage | bytes, **kwargs) -> dict:
    with smtplib.SMTP(*server.address, timeout=5) as client:
        if isinstance(message, EmailMessage):
            return client.send_message(message, **kwargs)
        return client.sendmail(
            kwargs.get("from_addr", "alice@example.test"),
            kwargs.get("to_addrs", ["bob@example.test"]),
            message,
        )


def simple_message(subject: str = "hello") -> EmailMessage:
    message = EmailMessage()
    message["From"] = "alice@example.test"
    message["To"] = "bob@example.test"
    message["Subject"] = subject
    message.set_content("Hi Bob,\nthis came through the lab server.\n")
    return message


def test_port_zero_picks_a_free_port_and_reports_it(lab_server):
    assert lab_server.running
    assert lab_server.host == "127.0.0.1"
    assert lab_server.port > 0
    with socket.create_connection(lab_server.address, timeout=5) as sock:
        assert sock.recv(100).startswith(b"220 smtplab.test")


def test_repr_says_where_and_how_many(lab_server):
    assert (
        repr(lab_server)
        == f"<LabServer 'test-{test_repr_says_where_and_how_many.__name__}' running on 127.0.0.1:{lab_server.port}, 0 message(s)>"
    )
    lab_server.stop()
    assert "stopped" in repr(lab_server)


def test_stop_is_idempotent_and_closes_the_port():
    server = smtplab.start_server(name="twice")
    address = server.address
    server.stop()
    server.stop()
    assert not server.running
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(address, timeout=5).close()


def test_context_manager_stops_the_server():
    with smtplab.start_server(name="ctx") as server:
        assert server.running
        send(server, simple_message())
    assert not server.running
    assert len(server.mailbox) == 1


def test_restart_keeps_port_and_mailbox_even_with_time_wait():
    server = smtplab.start_server(name="restart")
    try:
        port = server.port
        send(server, simple_message("before"))  # QUIT: the server closes first, so TIME_WAIT is on its side
        server.restart()
        assert server.running and server.port == port
        send(server, simple_message("after"))
        assert [m.subject for m in server.mailbox.wait_for(2)] == ["before", "after"]
    finally:
        server.stop()


def test_taken_port_fails_fast_and_cleanly():
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        threads, fds = thread_names(), open_fds()
        started = time.perf_counter()
        with pytest.raises(smtplab.PortInUseError) as caught:
            smtplab.start_server(port=port, name="squatted")
        elapsed = time.perf_counter() - started
        assert isinstance(caught.value, OSError)
        assert f"port {port}" in str(caught.value) and "port=0" in str(caught.value)
        assert elapsed < 1.0, f"took {elapsed:.2f} s"
        assert thread_names() == threads and open_fds() == fds
        assert smtplab.running_servers() == []
    with smtplab.start_server(port=port, name="freed") as server:
        assert server.port == port


def test_port_taken_by_another_lab_server_names_it():
    with smtplab.start_server(name="first") as first:
        with pytest.raises(smtplab.PortInUseError, match="lab server 'first'"):
            smtplab.start_server(port=first.port, name="second")


def test_same_name_replaces_the_old_server_and_frees_its_port():
    port = free_port()
    old = smtplab.start_server(port=port, name="cell")
    with pytest.warns(
        ReplacedServerWarning, match=r"stopped the lab server 'cell'.*start_server\(name='lab2'\)"
    ):
        new = smtplab.start_server(port=port, name="cell")
    try:
        assert not old.running and new.running and new.port == port
        assert smtplab.running_servers() == [new]
    finally:
        new.stop()


def test_a_failed_start_leaves_the_running_namesake_running():
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        with smtplab.start_server() as running:  # the default name, "lab"
            with pytest.raises(smtplab.PortInUseError) as caught:
                smtplab.start_server(port=taken)
            assert f"The lab server 'lab' on 127.0.0.1:{running.port} is still running" in str(caught.value)
            assert running.running and smtplab.running_servers() == [running]
            send(running, simple_message("still here"))
            assert running.mailbox.wait_for(1)[0].subject == "still here"


def test_a_namesake_on_the_same_port_is_restored_when_the_new_server_fails(monkeypatch):
    port = free_port()
    with smtplab.start_server(port=port) as old:
        send(old, simple_message("before"))

        start = LabController.start
        failures = [OSError("no threads left")]  # the new server's start fails, the old one's not

        def fail_once(self):
            if failures:
                raise failures.pop()
            start(self)

        monkeypatch.setattr(LabController, "start", fail_once)
        with pytest.raises(smtplab.ServerStartError) as caught:
            smtplab.start_server(port=port)
        message = str(caught.value)
        assert message.startswith("the lab server could not start: no threads left. ")
        assert f"The lab server 'lab' was stopped to free port {port}, and is running again" in message
        assert old.running and old.port == port and smtplab.running_servers() == [old]
        send(old, simple_message("after"))
        assert [m.subject for m in old.mailbox.wait_for(2)] == ["before", "after"]


def test_a_namesake_is_stopped_only_once_its_successor_is_bound():
    with smtplab.start_server(name="cell") as old:
        stopped_while: list[bool] = []
        stop = old.stop

        def watched_stop() -> None:  # when the old one stops, the new one listens already
            stopped_while.append(len(thread_names()) == len(threads) + 1)
            stop()

        threads = thread_names()
        old.stop = watched_stop  # type: ignore[method-assign]
        with pytest.warns(ReplacedServerWarning):
            new = smtplab.start_server(name="cell")
        try:
            assert stopped_while == [True] and not old.running and new.running
            assert smtplab.running_servers() == [new]
        finally:
            new.stop()


def test_observers_hear_each_start_and_stop():
    server = smtplab.LabServer(name="watched")
    seen: list[bool] = []

    @server.observe
    def record(observed: smtplab.LabServer) -> None:
        seen.append(observed.running)

    def broken(observed: smtplab.LabServer) -> None:
        raise RuntimeError("a bug in an observer")

    server.observe(broken)
    server.start()
    server.restart()
    server.stop()
    server.stop()  # already stopped: nothing to tell
    assert seen == [True, False, True, False]
    assert [str(error) for error in server.observer_errors] == ["a bug in an observer"] * 4
    server.unobserve(record)
    server.unobserve(broken)
    server.unobserve(broken)  # not observing: nothing to do
    with server:
        pass
    assert len(seen) == 4


def test_running_servers_and_stop_all():
    a = smtplab.start_server(name="a")
    b = smtplab.start_server(name="b")
    assert smtplab.running_servers() == [a, b]
    assert smtplab.stop_all() == 2
    assert not a.running and not b.running and smtplab.running_servers() == []


def test_stop_all_stops_proxies_too():
    server = smtplab.start_server(name="relayed")
    proxy = smtplab.start_proxy(server)
    assert smtplab.stop_all() == 2
    assert not server.running and not proxy.running and smtplab.running_proxies() == []
    assert smtplab.stop_all_proxies() == 0  # still there, for code that calls it


def test_ipv6_loopback():
    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")
    try:
        server = smtplab.start_server(host="::1", name="v6")
    except smtplab.ServerStartError as error:
        pytest.skip(f"::1 not configured: {error}")
    with server:
        with smtplib.SMTP("::1", server.port, timeout=5) as client:
            client.sendmail("a@example.test", ["b@example.test"], b"Subject: v6\r\n\r\nhi\r\n")
        assert server.mailbox.wait_for(1)[0].subject == "v6"


def test_remote_host_needs_explicit_opt_in():
    with pytest.raises(ValueError, match="allow_remote=True"):
        smtplab.start_server(host="0.0.0.0")
    assert smtplab.running_servers() == []


def test_opting_in_to_remote_warns(monkeypatch):
    monkeypatch.setattr("smtplab.server.is_loopback", lambda host: False)
    with pytest.warns(RemoteBindWarning, match="reachable beyond this machine"):
        server = smtplab.LabServer(allow_remote=True)
    assert not server.running


def test_auth_without_tls_warns_that_it_can_only_get_538_unless_the_lesson_opts_in():
    with pytest.warns(AuthWithoutTLSWarning, match=r"AUTH in plain text gets 538 5\.7\.11") as caught:
        server = smtplab.start_server(auth={"alice": "wonderland"}, name="no-tls")
    (warning,) = caught
    assert warning.filename == __file__  # it points at the learner's line
    message = str(warning.message)
    assert "tls='starttls'" in message and "auth_require_tls=False" in message
    with server, smtplib.SMTP(*server.address, timeout=5) as client:
        client.ehlo()
        assert not client.has_extn("auth")
        assert client.docmd("AUTH", "PLAIN AGFsaWNlAHdvbmRlcmxhbmQ=")[0] == 538
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # each fix it names works, without the warning
        with smtplab.start_server(
            auth={"alice": "wonderland"}, auth_require_tls=False, name="opted"
        ) as opted:
            with smtplib.SMTP(*opted.address, timeout=5) as client:
                assert client.login("alice", "wonderland")[0] == 235
        with smtplab.start_server(auth={"alice": "wonderland"}, tls="starttls", name="tls") as tls:
            with smtplib.SMTP(*tls.address, timeout=5) as client:
                client.starttls(context=tls.client_context())
                assert client.login("alice", "wonderland")[0] == 235


def test_auth_mechanisms_chooses_what_auth_offers():
    with smtplab.start_server(
        tls="starttls", auth={"alice": "wonderland"}, auth_mechanisms=("PLAIN", "login"), name="pl"
    ) as server:
        assert server.auth_mechanisms == ("PLAIN", "LOGIN")
        with smtplib.SMTP(*server.address, timeout=5) as client:
            client.starttls(context=server.client_context())
            client.ehlo()
            assert client.esmtp_features["auth"].split() == ["LOGIN", "PLAIN"]  # no CRAM-MD5
            assert client.docmd("AUTH", "CRAM-MD5")[0] == 504
            assert client.login("alice", "wonderland")[0] == 235
    with smtplab.start_server(tls="starttls", auth={"alice": "wonderland"}, name="all") as server:
        with smtplib.SMTP(*server.address, timeout=5) as client:
            client.starttls(context=server.client_context())
            client.ehlo()
            assert client.esmtp_features["auth"].split() == ["CRAM-MD5", "LOGIN", "PLAIN"]  # all three


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"auth_mechanisms": ("CRAM_MD5",)}, r"no AUTH mechanism 'CRAM_MD5'.*Did you mean 'CRAM-MD5'\?"),
        ({"auth_mechanisms": ()}, r"auth_mechanisms needs at least one of PLAIN, LOGIN, CRAM-MD5"),
        ({"auth_mechanisms": "PLAIN"}, r"a tuple of mechanism names, e\.g\. auth_mechanisms=\('PLAIN',\)"),
        (
            {"auth_mechanisms": ("PLAIN",), "auth_exclude_mechanism": ["LOGIN"]},
            r"give either auth_mechanisms= or aiosmtpd's auth_exclude_mechanism=",
        ),
    ],
)
def test_auth_mechanisms_mistakes_are_named(options, error):
    with pytest.raises(ValueError, match=error):
        smtplab.LabServer(tls="starttls", auth={"alice": "wonderland"}, **options)


def test_auth_mechanisms_needs_auth():
    with pytest.raises(ValueError, match=r"auth_mechanisms= chooses among the mechanisms of auth="):
        smtplab.LabServer(auth_mechanisms=("PLAIN",))


def test_unknown_option_is_named_with_a_suggestion():
    with pytest.raises(TypeError, match=r"'data_size_limt'.*Did you mean 'data_size_limit'"):
        smtplab.start_server(data_size_limt=10)


def test_aiosmtpd_options_pass_through():
    with smtplab.start_server(name="small", data_size_limit=100) as server:
        with pytest.raises(smtplib.SMTPException):
            send(server, b"Subject: big\r\n\r\n" + b"x" * 500 + b"\r\n")
        assert len(server.mailbox) == 0


def test_messages_from_smtplib_arrive_intact(lab_server):
    message = simple_message("intact")
    send(lab_server, message)
    captured = lab_server.mailbox.wait_for(1)[0]
    assert captured.mail_from == "alice@example.test"
    assert captured.rcpt_tos == ("bob@example.test",)
    assert captured.message["Subject"] == "intact"
    assert captured.text == message.get_content()
    assert captured.peer[0] == "127.0.0.1"
    assert captured.helo and captured.id in captured.transcript.text()
    assert captured.flags == ()


def test_non_ascii_addresses_are_refused_without_smtputf8_and_recorded_with_it(lab_server):
    with smtplib.SMTP(*lab_server.address, timeout=5) as client:
        client.ehlo()
        client.sock.sendall("MAIL FROM:<jörg@例え.test>\r\n".encode())  # smtplib would refuse to send it
        code, text = client.getreply()
        assert code == 553 and text.startswith(b"5.6.7 Non-ASCII sender address refused")
        message = simple_message("Grüße")
        message.replace_header("From", "Jörg <jörg@例え.test>")
        client.send_message(message)  # stdlib smtplib adds SMTPUTF8 and BODY=8BITMIME
    captured = lab_server.mailbox.wait_for(1)[0]
    assert captured.mail_from == "jörg@例え.test" and captured.subject == "Grüße"
    assert captured.mail_options[1:] == ("SMTPUTF8", "BODY=8BITMIME")  # after SIZE=…


def test_multipart_with_attachment_arrives_intact(lab_server):
    message = simple_message("with attachment")
    payload = bytes(range(256)) * 40
    message.add_alternative("<p>Hi <b>Bob</b></p>", subtype="html")
    message.add_attachment(payload, maintype="application", subtype="octet-stream", filename="data.bin")
    wire = message.as_bytes(policy=email.policy.SMTP)
    send(lab_server, wire)
    captured = lab_server.mailbox.wait_for(1)[0]
    assert captured.raw == wire
    (attachment,) = list(captured.message.iter_attachments())
    assert attachment.get_filename() == "data.bin"
    assert attachment.get_content() == payload


def test_raw_bytes_are_kept_exactly(lab_server):
    raw = b"Subject: exact\r\nX-Odd:  two  spaces \r\n\r\nline one\r\n..leading dot\r\n"
    send(lab_server, raw)
    assert lab_server.mailbox.wait_for(1)[0].raw == raw  # smtplib dot-stuffs, the server un-stuffs


def test_wait_for_returns_when_enough_arrived(lab_server):
    for n in range(3):
        send(lab_server, simple_message(f"m{n}"))
    assert [m.subject for m in lab_server.mailbox.wait_for(3, timeout=5)] == ["m0", "m1", "m2"]


def test_wait_for_times_out_saying_how_many_arrived(lab_server):
    send(lab_server, simple_message())
    with pytest.raises(TimeoutError, match="for 2 message\\(s\\) but 1 arrived"):
        lab_server.mailbox.wait_for(2, timeout=0.2)


class RejectBob:
    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.startswith("bob@"):
            return "550 5.1.1 <bob@example.test>: no such user here"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"


@pytest.mark.server_options(handler=RejectBob())
def test_custom_handler_rejects_a_recipient(lab_server):
    with smtplib.SMTP(*lab_server.address, timeout=5) as client:
        refused = client.sendmail(
            "alice@example.test", ["bob@example.test", "carol@example.test"], b"Subject: x\r\n\r\nhi\r\n"
        )
        assert refused == {"bob@example.test": (550, b"5.1.1 <bob@example.test>: no such user here")}
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            client.sendmail("alice@example.test", ["bob@example.test"], b"Subject: y\r\n\r\nhi\r\n")
    (captured,) = lab_server.mailbox.wait_for(1)
    assert captured.rcpt_tos == ("carol@example.test",)


class Quarantine:
    async def handle_DATA(self, server, session, envelope):
        if b"spam" in envelope.content:
            return "554 5.7.1 looks like spam"
        return "250 OK, looked at it"


@pytest.mark.server_options(handler=Quarantine())
def test_custom_data_hook_decides_what_is_captured(lab_server):
    with smtplib.SMTP(*lab_server.address, timeout=5) as client:
        with pytest.raises(smtplib.SMTPDataError, match="looks like spam"):
            client.sendmail("a@example.test", ["b@example.test"], b"Subject: s\r\n\r\nspam\r\n")
        assert client.sendmail("a@example.test", ["b@example.test"], b"Subject: h\r\n\r\nham\r\n") == {}
    assert [m.subject for m in lab_server.mailbox.wait_for(1)] == ["h"]


class SyncData:
    def handle_DATA(self, server, session, envelope):
        return "250 OK"


class Crashes:
    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        return 1 / 0


class ForgetsReturn:
    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        envelope.mail_from = address


class NoCode:
    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        envelope.rcpt_tos.append(address)
        return "OK fine"  # no reply code: a malformed line on the wire


@pytest.mark.parametrize(
    ("handler", "hook", "expected"),
    [
        (SyncData(), "handle_DATA", "must be 'async def'"),
        (Crashes(), "handle_RCPT", "ZeroDivisionError: division by zero"),
        (ForgetsReturn(), "handle_MAIL", "returned None"),
        (NoCode(), "handle_RCPT", "returned 'OK fine', which is not an SMTP reply"),
    ],
)
def test_handler_mistakes_give_a_clear_reply_and_a_readable_error(handler, hook, expected):
    if isinstance(handler, SyncData):
        with pytest.warns(HandlerWarning, match="SyncData.handle_DATA is a plain 'def'"):
            server = smtplab.start_server(handler=handler, name="mistake")
    else:
        server = smtplab.start_server(handler=handler, name="mistake")
    with server, smtplib.SMTP(*server.address, timeout=5) as client:
        with pytest.raises(smtplib.SMTPException) as caught:
            client.sendmail("a@example.test", ["b@example.test"], b"Subject: x\r\n\r\nhi\r\n")
        reply = str(caught.value)
        assert "451" in reply and hook in reply and expected in reply
        assert client.noop()[0] == 250, "the session goes on after a handler error"
    (error,) = server.errors
    assert error.hook == hook and expected in str(error) and "Traceback" in error.traceback
    assert len(server.mailbox) == 0


class ForgetsToAppend:
    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        return "250 2.1.5 OK"  # but envelope.rcpt_tos stays empty


@pytest.mark.server_options(handler=ForgetsToAppend())
def test_a_503_after_accepted_recipients_says_the_handler_kept_none(lab_server):
    with smtplib.SMTP(*lab_server.address, timeout=5) as client:
        client.ehlo()
        client.mail("a@example.test")
        assert client.rcpt("b@example.test")[0] == 250
        code, text = client.docmd("DATA")
    assert code == 503 and text.decode().startswith("5.5.1 Error: need RCPT command: no recipient is")
    assert "handle_RCPT answered 2xx to 1 RCPT TO" in text.decode()
    assert "append it to envelope.rcpt_tos" in text.decode()


class Misspelled:
    async def handle_rcpt(self, server, session, envelope, address, rcpt_options):
        return "550 5.1.1 nobody here"

    async def handle_MAIL_FROM(self, server, session, envelope, address, mail_options):
        return "250 OK"


def test_misspelled_hooks_are_named_with_the_one_aiosmtpd_calls():
    with pytest.warns(HandlerWarning) as caught:
        server = smtplab.LabServer(handler=Misspelled())
    assert not server.running
    warned = sorted(str(w.message) for w in caught)
    assert warned[0].startswith("Misspelled.handle_MAIL_FROM is never called: aiosmtpd calls")
    assert "did you mean handle_MAIL?" in warned[0]
    assert warned[1].startswith("Misspelled.handle_rcpt is never called") and "handle_RCPT?" in warned[1]


def test_maildir_survives_a_restart(tmp_path):
    maildir = tmp_path / "Maildir"
    with smtplab.start_server(maildir=maildir, name="md") as server:
        send(server, simple_message("kept 1"))
        server.mailbox.wait_for(1)
    with smtplab.start_server(maildir=maildir, name="md") as server:
        send(server, simple_message("kept 2"))
        server.mailbox.wait_for(1)
        assert len(server.mailbox) == 1
    box = smtplab.LabServer(maildir=maildir).maildir
    stored = sorted(box, key=lambda m: m["Subject"])
    assert [m["Subject"] for m in stored] == ["kept 1", "kept 2"]
    assert stored[0]["Return-Path"] == "<alice@example.test>"
    assert stored[0]["Delivered-To"] == "bob@example.test"


QUIET_SCRIPT = """
import socket, ssl, smtplab
from tests.wire import Wire

class Broken:
    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        raise ValueError("a mistake in a hook")

with smtplab.start_server(tls="starttls", handler=Broken()) as server:
    with Wire(server.address) as wire:  # a client that gives up on the TLS handshake
        wire.line(), wire.command("EHLO x"), wire.command("STARTTLS")
        wire.send(b"\\x16\\x03\\x01\\x00\\x05hello")
        wire.rest()
    with Wire(server.address) as wire:  # binary data, and a hook that raises
        wire.line(), wire.command(b"\\x16\\x03\\x01\\x00\\x05hello"), wire.command("EHLO x")
        wire.command("MAIL FROM:<a@example.test>"), wire.command("RCPT TO:<b@example.test>")
        wire.command("QUIT")
print(len(server.errors), "error(s) kept")
"""


def test_nothing_is_printed_on_stderr_by_a_lab_server_in_trouble():
    # With no logging set up, as in a notebook or under `smtplab serve`, Python prints any log
    # record of WARNING or more on stderr: aiosmtpd's tracebacks and smtplab's own reports.
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", QUIET_SCRIPT], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert (done.returncode, done.stderr, done.stdout) == (0, "", "1 error(s) kept\n")


def test_server_transcripts_record_each_session(lab_server):
    send(lab_server, simple_message())
    lab_server.mailbox.wait_for(1)
    (transcript,) = lab_server.transcripts
    text = transcript.text()
    assert (
        text.index("-> ehlo")
        < text.index("-> mail FROM:<alice@example.test>")
        < text.index("** message data")
    )
    assert lab_server.mailbox[0].transcript is transcript


def test_start_stop_cycles_leak_no_threads_or_descriptors():
    threads, fds = thread_names(), open_fds()
    for cycle in range(100):
        server = smtplab.start_server(name="cycle")
        if cycle % 10 == 0:  # some cycles with an open and a half-finished session
            idle = socket.create_connection(server.address, timeout=5)
            idle.recv(100)
            half = smtplib.SMTP(*server.address, timeout=5)
            half.ehlo()
            half.mail("a@example.test")
            server.stop()
            idle.close()
            half.close()
        else:
            server.stop()
    assert thread_names() == threads
    assert open_fds() == fds


@pytest.mark.parametrize(
    "moment",
    ["in the TLS handshake", "after QUIT, before the TLS goodbye", "in the middle of a session"],
)
def test_stop_closes_every_tls_connection_whatever_its_state(moment):
    # A connection still in its TLS handshake has no SMTP session yet, and a TLS transport that
    # aiosmtpd closed twice (QUIT) no longer reaches its socket: stop() must close both.
    import ssl

    with smtplab.start_server(tls="implicit", name="tls-stop") as server:

        def greeted() -> tuple[ssl.SSLSocket, Any]:
            conn = server.client_context().wrap_socket(
                socket.create_connection(server.address, timeout=5), server_hostname="127.0.0.1"
            )
            reader = conn.makefile("rb")
            assert reader.readline().startswith(b"220")
            return conn, reader

        if moment == "in the TLS handshake":
            conn = socket.create_connection(server.address, timeout=5)
            # Connections are accepted in order: once a later one is greeted, this one has
            # been accepted and waits in its handshake.
            later, reader = greeted()
            reader.close()
            later.close()
        else:
            conn, reader = greeted()
            conn.sendall(b"EHLO me\r\n")
            while not reader.readline().startswith(b"250 "):
                pass
            if moment.startswith("after QUIT"):
                conn.sendall(b"QUIT\r\n")
                assert reader.readline().startswith(b"221")
            reader.close()
        server.stop()
        try:
            # The server's side is gone: the client reads the end of the stream (or a reset),
            # rather than waiting out its timeout.
            assert conn.recv(100) in (b"", b"221 Bye\r\n")
        except (ConnectionResetError, ssl.SSLError):
            pass
        finally:
            conn.close()


# -- the signature a notebook shows ---------------------------------------------------------------


def test_start_server_shows_every_option_with_its_default_and_a_line_of_doc():
    import inspect

    shown = inspect.signature(smtplab.start_server).parameters
    behind = inspect.signature(smtplab.LabServer.__init__).parameters
    assert list(shown) == [name for name in behind if name != "self"]
    assert all(shown[name].default == behind[name].default for name in shown)
    assert list(shown)[-1] == "smtp_options" and shown["smtp_options"].kind is inspect.Parameter.VAR_KEYWORD
    from aiosmtpd.smtp import SMTP

    for name in (
        "auth_required",
        "auth_require_tls",
    ):  # the AUTH switches lessons use, with aiosmtpd's defaults
        assert shown[name].default == inspect.signature(SMTP).parameters[name].default
    doc = smtplab.start_server.__doc__ or ""
    for name in shown:
        assert f"\n        {'**' if name == 'smtp_options' else ''}{name}: " in doc, (
            f"{name} is not documented"
        )


def test_a_mistyped_lab_option_is_named_with_the_one_meant():
    with pytest.raises(TypeError, match=r"unknown option 'tsl'\. Did you mean 'tls'\?"):
        smtplab.start_server(tsl="starttls")
    with pytest.raises(TypeError, match=r"'unix_sock'\. Did you mean 'unix_socket'\?"):
        smtplab.LabServer(unix_sock=True)
    assert smtplab.running_servers() == []


def test_call_in_loop_runs_on_the_servers_own_thread_and_loop(lab_server):
    import asyncio
    import threading

    def where() -> tuple[str, bool]:
        return threading.current_thread().name, asyncio.get_running_loop().is_running()

    name, running = lab_server.call_in_loop(where).result(5)
    assert name == f"smtplab-server-{lab_server.port}" and running
    assert lab_server.call_in_loop(pow, 2, 10).result(5) == 1024
    with pytest.raises(ZeroDivisionError):
        lab_server.call_in_loop(lambda: 1 / 0).result(5)


def test_call_in_loop_on_a_stopped_server_says_to_start_it():
    server = smtplab.LabServer(name="not-yet")
    with pytest.raises(smtplab.ServerNotRunningError, match=r"call server.start\(\) first"):
        server.call_in_loop(print)
    server.start()
    try:
        assert server.call_in_loop(len, "abc").result(5) == 3
    finally:
        server.stop()
    with pytest.raises(smtplab.ServerNotRunningError):
        server.call_in_loop(print)


# -- extensions= ----------------------------------------------------------------------------------


def ehlo_keywords(wire: Wire) -> list[str]:
    """The greeting read, EHLO sent: the extension keywords of the reply (after the name)."""
    assert wire.line().startswith("220 ")
    return [line[4:] for line in wire.command("EHLO client.test")[1:]]


def test_a_lab_server_offers_every_extension_it_can_by_default(lab_server):
    assert lab_server.extensions == {
        "SIZE": True,
        "8BITMIME": True,
        "SMTPUTF8": True,
        "ENHANCEDSTATUSCODES": True,
        "STARTTLS": False,  # no tls="starttls"
        "AUTH": False,  # no users: auth= switches it on (offered once TLS is on)
        "HELP": True,
    }
    with Wire(lab_server.address) as wire:
        assert ehlo_keywords(wire) == ["SIZE 10485760", "8BITMIME", "SMTPUTF8", "ENHANCEDSTATUSCODES", "HELP"]


@pytest.mark.server_options(tls="starttls", auth={"alice": "wonderland"})
def test_starttls_and_auth_are_offered_when_they_can_be(lab_server, client_context):
    with Wire(lab_server.address) as wire:
        assert "STARTTLS" in ehlo_keywords(wire)
    with smtplab.SyncClient(lab_server, tls="starttls") as client:
        assert client.ehlo().code == 250
        assert "starttls" not in client.extensions and client.extensions["auth"] == "CRAM-MD5 LOGIN PLAIN"


SWITCHED_OFF = {  # what a server without the extension answers (RFC 5321 §4.1.1.11, §4.2.4)
    "SIZE": ("MAIL FROM:<a@example.test> SIZE=100", "555 5.5.4 MAIL FROM parameter SIZE=100 not recognized"),
    "8BITMIME": ("MAIL FROM:<a@example.test> BODY=8BITMIME", "555 5.5.4 MAIL FROM parameter BODY=8BITMIME"),
    "SMTPUTF8": ("MAIL FROM:<a@example.test> SMTPUTF8", "555 5.5.4 MAIL FROM parameter SMTPUTF8 not"),
    "HELP": ("HELP", "502 5.5.1 HELP not implemented: this server does not offer HELP"),
    "AUTH": ("AUTH PLAIN AGFsaWNlAHdvbmRlcmxhbmQ=", "502 5.5.1 AUTH not implemented"),
}
USERS = {"alice": "wonderland"}


@pytest.mark.parametrize("name", sorted(SWITCHED_OFF))
def test_an_extension_switched_off_is_not_offered_and_using_it_is_refused(name):
    command, refusal = SWITCHED_OFF[name]
    users = USERS if name == "AUTH" else None  # AUTH is on by default only with users
    with smtplab.start_server(name="switched", extensions={name: False}, auth_require_tls=False) as server:
        assert server.extensions[name] is False
        with Wire(server.address) as wire:
            offered = ehlo_keywords(wire)
            assert not [k for k in offered if k.split(" ")[0] == name], offered
            (reply,) = wire.command(command)
            assert reply.startswith(refusal)
            assert f"does not offer {name} (RFC " in reply
            assert wire.command("MAIL FROM:<a@example.test>") == ["250 2.1.0 OK"], "the session goes on"
    with smtplab.start_server(name="switched", auth=users, auth_require_tls=False) as server:  # offered
        with Wire(server.address) as wire:
            assert any(k.split(" ")[0] == name for k in ehlo_keywords(wire))
            assert not wire.command(command)[-1].startswith(refusal[:3])


def test_without_enhancedstatuscodes_replies_carry_the_code_alone():
    with smtplab.start_server(name="plain-codes", extensions={"ENHANCEDSTATUSCODES": False}) as server:
        with Wire(server.address) as wire:
            assert "ENHANCEDSTATUSCODES" not in ehlo_keywords(wire)
            assert wire.command("MAIL FROM:<a\x01@example.test>")[0].startswith("501 Bad sender address")
            assert wire.command("MAIL FROM:<a@example.test> SIZE=99999999999") == [
                "552 Message size exceeds the limit of 10485760 bytes (SIZE in the EHLO reply)"
            ]
            assert wire.command("MAIL FROM:<a@example.test>") == ["250 OK"]
            assert wire.command("MAIL FROM:<b@example.test>") == ["503 Error: nested MAIL command"]
            assert wire.command("QUIT") == ["221 Bye"]
    with smtplab.start_server(name="plain-codes") as server, Wire(server.address) as wire:
        ehlo_keywords(wire)
        assert wire.command("MAIL FROM:<a\x01@example.test>")[0].startswith("501 5.1.7 Bad sender address")
        assert wire.command("MAIL FROM:<a@example.test>") == ["250 2.1.0 OK"]
        assert wire.command("MAIL FROM:<b@example.test>") == ["503 5.5.1 Error: nested MAIL command"]


def test_without_smtputf8_a_non_ascii_address_is_refused_as_a_server_without_it_would():
    with smtplab.start_server(name="ascii", extensions={"SMTPUTF8": False}) as server:
        with Wire(server.address) as wire:
            assert "SMTPUTF8" not in ehlo_keywords(wire)
            (reply,) = wire.command("MAIL FROM:<jörg@example.test>")
            assert (
                reply.startswith("500 5.6.7 Error: strict ASCII mode") and "does not offer SMTPUTF8" in reply
            )
    with smtplab.start_server(name="ascii") as server, Wire(server.address) as wire:
        ehlo_keywords(wire)
        assert wire.command("MAIL FROM:<jörg@example.test>")[0].startswith("553 5.6.7 Non-ASCII sender")


@pytest.mark.server_options(tls="starttls", auth={"alice": "wonderland"}, auth_mechanisms=("PLAIN",))
def test_auth_when_on_offers_the_mechanisms_chosen(lab_server):
    with smtplab.SyncClient(lab_server, tls="starttls") as client:
        assert client.ehlo().code == 250 and client.extensions["auth"] == "PLAIN"
    with pytest.raises(ValueError, match="give one or the other"):
        smtplab.LabServer(
            auth={"alice": "wonderland"}, auth_mechanisms=("PLAIN",), extensions={"AUTH": False}
        )


def test_extension_names_are_case_insensitive_and_a_stopped_server_keeps_them():
    server = smtplab.LabServer(name="quiet", extensions={"help": False, "Size": False})
    assert not server.extensions["HELP"] and not server.extensions["SIZE"] and server.extensions["8BITMIME"]
    with server, Wire(server.address) as wire:
        assert sorted(ehlo_keywords(wire)) == ["8BITMIME", "ENHANCEDSTATUSCODES", "SMTPUTF8"]


@pytest.mark.parametrize(
    ("extensions", "options", "error", "message"),
    [
        (
            {"SIZ": False},
            {},
            ValueError,
            r"'SIZ'\. Did you mean 'SIZE'\? It can switch: SIZE, 8BITMIME, SMTPUTF8",
        ),
        ({"PIPELINING": True}, {}, ValueError, r"'PIPELINING' \(the lab server never offers it\)"),
        ({"SIZE": "no"}, {}, TypeError, r"extensions\['SIZE'\] must be True or False, not 'no'"),
        (["SIZE"], {}, TypeError, r"must map extension names to True or False, e\.g\. extensions="),
        (
            {"STARTTLS": True},
            {},
            ValueError,
            r"needs the server's certificate: start the server with tls='starttls'",
        ),
        ({"STARTTLS": True}, {"tls": "implicit"}, ValueError, r"encrypted from the first byte"),
        ({"STARTTLS": False}, {"tls": "starttls"}, ValueError, r"leave tls out \(tls=None\)"),
        ({"AUTH": False}, {"auth": {"alice": "wonderland"}}, ValueError, r"give one or the other"),
        ({"AUTH": True}, {}, ValueError, r"needs users to log in: give them with auth="),
        ({"8BITMIME": True}, {"decode_data": True}, ValueError, r"contradicts decode_data=True"),
        ({"SMTPUTF8": True}, {"enable_SMTPUTF8": False}, ValueError, r"contradicts enable_SMTPUTF8=False"),
        ({"SMTPUTF8": False}, {"enable_SMTPUTF8": True}, ValueError, r"contradicts enable_SMTPUTF8=True"),
    ],
)
def test_extensions_are_checked_before_anything_is_opened(extensions, options, error, message):
    taken = socket.create_server(("127.0.0.1", 0))
    try:  # a taken port would fail at once too: the bad switch is named first, nothing is opened
        with pytest.raises(error, match=message):
            smtplab.start_server(port=taken.getsockname()[1], extensions=extensions, **options)
    finally:
        taken.close()
    assert smtplab.running_servers() == []


def test_the_fixes_the_extension_errors_suggest_work(lab_tls):
    with smtplab.start_server(name="fixed", tls="starttls", lab_tls=lab_tls) as server:  # STARTTLS: True
        assert server.extensions["STARTTLS"]
    with smtplab.start_server(name="fixed") as server:  # STARTTLS off: tls left out
        assert not server.extensions["STARTTLS"]
    with smtplab.start_server(name="fixed", extensions={"AUTH": False}) as server:  # auth= left out
        assert not server.extensions["AUTH"]
    with smtplab.start_server(
        name="fixed", tls="starttls", lab_tls=lab_tls, auth={"alice": "wonderland"}
    ) as server:
        assert server.extensions["AUTH"]
    with smtplab.start_server(name="fixed", decode_data=True) as server:
        assert not server.extensions["8BITMIME"]
    with smtplab.start_server(name="fixed", enable_SMTPUTF8=False) as server:
        assert not server.extensions["SMTPUTF8"]
