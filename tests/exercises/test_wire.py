"""Wire predicates: command order, refusals, QUIT, TLS before AUTH, CRLF, dot-stuffing, the end of DATA, the greeting."""

from __future__ import annotations

import base64
import smtplib
import socket

import pytest

from smtplab.exercises import run_in_lab, wire

GOOD_DATA = b"Subject: dots\r\n\r\n..hidden line\r\nlast line\r\n.\r\n"


def reply(reader) -> bytes:
    """One whole reply (every line of a multi-line one)."""
    lines = [reader.readline()]
    while lines[-1][3:4] == b"-":
        lines.append(reader.readline())
    return b"".join(lines)


def raw_client(*steps: bytes | tuple[bytes, bool], read_greeting: bool = True, drain: bool = False):
    """A learner's hand-written client: sends each step, waiting for a reply unless told not to.

    ``drain=True`` reads what is left until the server closes, as a pipelining client reads its
    replies at the end: closing with replies unread resets the connection, and the server may
    drop what it had not read yet.
    """

    def talk(address):
        with socket.create_connection(address, timeout=10) as sock, sock.makefile("rb") as reader:
            if read_greeting:
                reply(reader)
            for step in steps:
                data, answered = step if isinstance(step, tuple) else (step, True)
                sock.sendall(data)
                if answered:
                    reply(reader)
            if drain:
                reader.read()

    return talk


def session(*middle: bytes | tuple[bytes, bool], end=(b"QUIT\r\n",), **options):
    steps = [
        b"EHLO me\r\n",
        b"MAIL FROM:<a@example.test>\r\n",
        b"RCPT TO:<b@example.test>\r\n",
        *middle,
        *end,
    ]
    return raw_client(*steps, **options)


def run(code, **options):
    return run_in_lab(code, give="address", **options)


def test_a_clean_session_has_no_problem():
    trial = run(session(b"DATA\r\n", GOOD_DATA))
    assert wire.commands(trial) == ["EHLO", "MAIL", "RCPT", "DATA", "QUIT"]
    assert wire.missing_in_order(trial, ["ehlo", "mail", "rcpt", "data", "quit"]) is None
    assert wire.bad_line_endings(trial) == wire.unstuffed_dots(trial) == wire.unended_data(trial) == []
    assert wire.refusals(trial) == [] and wire.sessions_without_quit(trial) == []
    assert wire.auth_in_clear(trial) == []
    (dialogue,) = wire.dialogues(trial)
    assert [line.kind for line in dialogue.lines] == ["command"] * 4 + ["data"] * 4 + [
        "end-of-data",
        "command",
    ]
    assert [line.reply for line in dialogue.lines if line.kind != "data"] == [250, 250, 250, 354, 250, 221]
    assert dialogue.replies[0] == 220 and not dialogue.encrypted
    assert trial.messages[0].raw.endswith(b".hidden line\r\nlast line\r\n")


def test_order_and_refusals_come_from_the_server_transcript():
    trial = run(raw_client(b"EHLO me\r\n", b"RCPT TO:<b@example.test>\r\n", b"QUIT\r\n"))
    assert wire.missing_in_order(trial, ["EHLO", "MAIL", "RCPT"]) == "MAIL"
    (refused,) = wire.refusals(trial)
    assert (
        refused.verb == "RCPT"
        and refused.code == 503
        and str(refused).startswith("RCPT TO:<b@example.test> → 503")
    )


def test_a_session_without_quit_is_found():
    trial = run(session(end=()))
    assert wire.sessions_without_quit(trial) == [1]
    assert wire.missing_in_order(trial, ["EHLO", "QUIT"]) == "QUIT"


def test_bare_line_endings_are_found_on_the_wire():
    trial = run(raw_client(b"EHLO me\n", b"MAIL FROM:<a@example.test>\r\n", b"NOOP\r\n"), allow_errors=True)
    (problem,) = wire.bad_line_endings(trial)
    assert problem.line.number == 1 and problem.line.ending == "LF" and "bare LF" in problem.what
    assert str(problem).startswith("line 1 (command): 'EHLO me\\n': ends with a bare LF")


def test_a_bare_cr_inside_message_data_is_found_and_flagged_by_the_server_too():
    trial = run(session(b"DATA\r\n", b"Subject: cr\r\n\r\nhalf\rline\r\n.\r\n"))
    (problem,) = wire.bad_line_endings(trial)
    assert problem.line.kind == "data" and "bare CR" in problem.what
    assert "bare-cr" in trial.messages[0].flags


def test_a_command_without_any_line_ending_times_out_and_is_found():
    trial = run(raw_client(b"EHLO me\r\n", (b"NOOP", False), b""), timeout=0.5, allow_errors=True)
    assert trial.timed_out
    (problem,) = wire.bad_line_endings(trial)
    assert problem.line.text == "NOOP" and problem.line.ending == "" and "still waiting" in problem.what


def test_missing_dot_stuffing_is_found():
    trial = run(session(b"DATA\r\n", b"Subject: dots\r\n\r\n.hidden\r\n.\r\n"))
    (problem,) = wire.unstuffed_dots(trial)
    assert problem.line.text == ".hidden" and "single '.'" in problem.what
    assert b"\r\nhidden\r\n" in trial.messages[0].raw  # the server removed the dot


def test_data_ended_with_bare_line_feeds_leaves_the_server_waiting():
    trial = run(session(b"DATA\r\n", b"Subject: lf\r\n\r\nhello\n.\n"), timeout=0.5, allow_errors=True)
    assert trial.timed_out and not trial.messages
    problems = wire.unended_data(trial)
    assert [p.line.kind for p in problems] == ["end-of-data"] and "other than '.\\r\\n'" in problems[0].what


def test_data_that_never_ends_is_found():
    trial = run(
        session(b"DATA\r\n", (b"Subject: x\r\n\r\nhello\r\n", False), b""), timeout=0.5, allow_errors=True
    )
    (problem,) = wire.unended_data(trial)
    assert problem.line.text == "hello" and "never got its end line" in problem.what


def test_a_last_line_without_crlf_before_the_dot_is_found():
    trial = run(session(b"DATA\r\n", b"Subject: x\r\n\r\nhello\n.\r\n"), timeout=0.5, allow_errors=True)
    problems = wire.unended_data(trial)
    assert [(p.line.text, p.line.ending) for p in problems] == [("hello", "LF")]


def test_a_client_that_talks_before_the_greeting_is_caught():
    rude = raw_client(b"EHLO me\r\n", b"QUIT\r\n", read_greeting=False)
    polite = raw_client(b"EHLO me\r\n", b"QUIT\r\n")
    rude_trial = run(lambda address: rude(address), greeting_delay=0.3)
    polite_trial = run(lambda address: polite(address), greeting_delay=0.3)
    assert [d.number for d in wire.early_talkers(rude_trial)] == [1]
    assert wire.early_talkers(polite_trial) == []


def test_auth_before_tls_is_found_and_secrets_stay_masked():
    secret = base64.b64encode(b"\0alice\0wonderland")
    options = {"auth": {"alice": "wonderland"}, "auth_require_tls": False}
    trial = run(raw_client(b"EHLO me\r\n", b"AUTH PLAIN " + secret + b"\r\n", b"QUIT\r\n"), options=options)
    (exchange,) = wire.auth_in_clear(trial)
    assert exchange.code == 235 and secret.decode() not in str(exchange)
    assert not any(secret.decode() in line for line in wire.heard(trial))


def test_auth_inside_starttls_is_fine_and_the_wire_stops_at_tls():
    def login_over_tls(address, context):
        with smtplib.SMTP(*address) as client:
            client.starttls(context=context)
            client.login("alice", "wonderland")

    options = {"tls": "starttls", "auth": {"alice": "wonderland"}}
    trial = run_in_lab(lambda server: None, options=options)  # to reach the lab CA's client context
    context = trial.server.client_context()
    trial = run(lambda address: login_over_tls(address, context), options=options)
    assert wire.auth_in_clear(trial) == [] and "AUTH" in wire.commands(trial)
    (dialogue,) = wire.dialogues(trial)
    assert dialogue.encrypted and [line.text for line in dialogue.lines][-1] == "STARTTLS"


def test_wire_predicates_need_the_tap_and_the_greeting_check_a_delay():
    trial = run_in_lab(lambda server: None)
    with pytest.raises(ValueError, match="give='address'"):
        wire.dialogues(trial)
    with pytest.raises(ValueError, match="greeting_delay"):
        wire.early_talkers(run(lambda address: None))


def test_implicit_tls_is_opaque_on_the_wire():
    options = {"tls": "implicit"}
    context = run_in_lab(lambda server: server.client_context(), options=options).result

    def over_tls(address):
        with smtplib.SMTP_SSL(*address, context=context) as client:
            client.noop()

    trial = run(over_tls, options=options, greeting_delay=0.1)
    (dialogue,) = wire.dialogues(trial)
    assert dialogue.encrypted and dialogue.lines == () and wire.bad_line_endings(trial) == []
    assert wire.commands(trial) == ["NOOP", "QUIT"]  # the server's transcript still knows
    with pytest.raises(ValueError, match="implicit TLS"):
        wire.early_talkers(trial)


def test_commands_sent_before_the_reply_to_the_one_before_are_found():
    pipelined = raw_client(  # one write: no reply can reach the client between its lines
        (
            b"EHLO me\r\nMAIL FROM:<a@example.test>\r\nRCPT TO:<b@example.test>\r\nDATA\r\n"
            b"Subject: x\r\n\r\nhi\r\n.\r\nQUIT\r\n",
            False,
        ),
        drain=True,
    )
    trial = run(pipelined, greeting_delay=0.2)
    assert wire.early_talkers(trial) == [] and len(trial.messages) == 1, "the lab server answers them all"
    problems = wire.unawaited_replies(trial)
    assert [p.line.text for p in problems] == [
        "MAIL FROM:<a@example.test>",
        "RCPT TO:<b@example.test>",
        "DATA",
        "Subject: x",  # the first line of the message: before the 354
        "QUIT",  # after the ".", before its 250
    ]
    assert "before the 354 reply to DATA" in problems[3].what
    assert "before the reply to the line before it" in str(problems[0])
    assert wire.unawaited_replies(run(session(b"DATA\r\n", GOOD_DATA))) == []


def test_a_multi_line_reply_reaches_the_client_whole(lab_server):
    from smtplab.exercises.tap import WireTap

    with WireTap(lab_server.address) as tap, socket.create_connection(tap.address, timeout=5) as sock:
        sock.recv(1024)  # the greeting
        sock.sendall(b"EHLO me\r\n")
        reply = sock.recv(4096)  # one recv: the tap passes a multi-line reply on in one piece
        assert reply.startswith(b"250-") and reply.endswith(b"250 HELP\r\n")
        sock.sendall(b"QUIT\r\n")
        assert sock.recv(1024).startswith(b"221")
