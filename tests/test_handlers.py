"""Tests for smtplab.handlers: capture, the guard around a learner's hooks, VRFY and EXPN answers."""

from __future__ import annotations

import inspect
from types import SimpleNamespace
from typing import Any

import pytest

from smtplab.handlers import (
    CaptureHandler,
    Directory,
    HandlerError,
    LabHandler,
    check_handler,
    check_reply,
    describe_failure,
)
from smtplab.mailbox import Mailbox
from tests.conftest import run


def envelope(content: bytes = b"Subject: hi\r\n\r\nhello\r\n", **fields: Any) -> SimpleNamespace:
    """What aiosmtpd hands a handler after DATA (only the attributes capture reads)."""
    values = {
        "mail_from": "alice@example.test",
        "rcpt_tos": ["bob@example.test"],
        "original_content": content,
        "content": content,
        "mail_options": [],
        "rcpt_options": [],
    }
    return SimpleNamespace(**{**values, **fields})


SESSION = SimpleNamespace(
    peer=("127.0.0.1", 50000), host_name="client.test", authenticated=False, auth_data=None
)


class Reports:
    """The lab's side of a LabHandler: failures become replies, and are kept."""

    def __init__(self) -> None:
        self.failures: list[HandlerError] = []

    def __call__(self, hook: str, error: BaseException) -> str:
        failure = describe_failure(hook, error)
        self.failures.append(failure)
        return failure.reply


# -- capture --------------------------------------------------------------------------------------


def test_capture_stores_the_envelope_and_flags_bare_line_endings():
    box = Mailbox()
    capture = CaptureHandler(box)
    reply = run(capture.handle_DATA(SimpleNamespace(), SESSION, envelope(b"a\nb\r\n")))
    (message,) = box
    assert reply == f"250 2.0.0 OK: queued as {message.id}"
    assert (message.mail_from, message.rcpt_tos, message.helo) == (
        "alice@example.test",
        ("bob@example.test",),
        "client.test",
    )
    assert message.flags == ("bare-lf",) and message.tls is None and message.transcript is None


def test_capture_reads_tls_and_transcript_from_the_session_when_it_has_them():
    box = Mailbox()
    server = SimpleNamespace(tls_summary=lambda: "TLSv1.3", transcript="the record")
    CaptureHandler(box).capture(server, SESSION, envelope())
    assert (box[0].tls, box[0].transcript) == ("TLSv1.3", "the record")


def test_capture_writes_a_maildir_with_the_envelope_as_headers(tmp_path):
    capture = CaptureHandler(Mailbox(), maildir=tmp_path / "Maildir")
    capture.capture(SimpleNamespace(), SESSION, envelope(rcpt_tos=["bob@example.test", "carol@example.test"]))
    (stored,) = list(capture.maildir)
    assert stored["Return-Path"] == "<alice@example.test>"
    assert stored.get_all("Delivered-To") == ["bob@example.test", "carol@example.test"]


# -- the guard ------------------------------------------------------------------------------------


class Learner:
    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        return "550 5.1.1 no such user" if address.startswith("bob") else "250 OK"

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        return responses

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        envelope.mail_from = address  # forgets to return a reply

    def handle_NOOP(self, server, session, envelope, arg):  # a plain def
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        return "554 5.7.1 not today" if b"spam" in envelope.content else "250 fine"

    async def auth_SECRET(self, server, args):
        return None


def test_the_guard_passes_replies_through_and_keeps_the_hook_signature():
    reports = Reports()
    learner = Learner()
    handler = LabHandler(CaptureHandler(Mailbox()), learner, report=reports)
    assert (
        run(handler.handle_RCPT(None, SESSION, envelope(), "bob@example.test", []))
        == "550 5.1.1 no such user"
    )
    # aiosmtpd tells old and new handle_EHLO apart by their parameters: the guard shows the hook's.
    assert list(inspect.signature(handler.handle_EHLO).parameters) == [
        "server",
        "session",
        "envelope",
        "hostname",
        "responses",
    ]
    assert handler.auth_SECRET == learner.auth_SECRET  # mechanisms are passed on untouched
    assert reports.failures == []


@pytest.mark.parametrize(
    ("hook", "args", "expected"),
    [
        ("handle_MAIL", ("a@example.test", []), "returned None; return a reply line"),
        ("handle_NOOP", ("",), "must be 'async def'"),
    ],
)
def test_a_mistake_in_a_hook_becomes_a_451_naming_it(hook, args, expected):
    reports = Reports()
    handler = LabHandler(CaptureHandler(Mailbox()), Learner(), report=reports)
    reply = run(getattr(handler, hook)(None, SESSION, envelope(), *args))
    assert reply.startswith(f"451 4.3.0 Error in {hook}: TypeError:") and reply.endswith(
        "(details in server.errors)"
    )
    (failure,) = reports.failures
    assert failure.hook == hook and expected in str(failure.error) and "Traceback" in failure.traceback


def test_data_is_captured_only_when_the_learners_hook_accepts_it():
    box = Mailbox()
    handler = LabHandler(CaptureHandler(box), Learner(), report=Reports())
    assert run(handler.handle_DATA(None, SESSION, envelope(b"spam\r\n"))) == "554 5.7.1 not today"
    assert run(handler.handle_DATA(None, SESSION, envelope(b"ham\r\n"))) == "250 fine"
    assert [message.raw for message in box] == [b"ham\r\n"]


def test_without_a_learners_handler_everything_is_captured_and_vrfy_asks_the_directory():
    box = Mailbox()
    handler = LabHandler(
        CaptureHandler(box), None, report=Reports(), directory=Directory(["alice@example.test"])
    )
    assert run(handler.handle_DATA(None, SESSION, envelope())).startswith("250 2.0.0 OK: queued as L")
    assert run(handler.handle_VRFY(None, SESSION, envelope(), "alice")) == "250 2.1.5 <alice@example.test>"
    assert len(box) == 1


def test_check_handler_names_every_plain_def_hook():
    (problem,) = check_handler(Learner())
    assert "Learner.handle_NOOP is a plain 'def'" in problem and "async def handle_NOOP" in problem


def test_check_handler_suggests_the_hook_a_misspelled_name_meant():
    class Typos:
        async def handle_rcpt(self, server, session, envelope, address, rcpt_options): ...
        async def handle_Data(self, server, session, envelope): ...
        async def handle_RCPT_TO(self, server, session, envelope, address, rcpt_options): ...
        async def handle_bounce(self, message): ...  # a helper of the learner's
        async def handle_exception(self, error): ...  # called by aiosmtpd, lower case

    problems = check_handler(Typos())
    assert [problem.split(" is never called")[0] for problem in problems] == [
        "Typos.handle_Data",
        "Typos.handle_RCPT_TO",
        "Typos.handle_bounce",
        "Typos.handle_rcpt",
    ]
    data, rcpt_to, bounce, rcpt = problems
    assert data.endswith("did you mean handle_DATA?") and rcpt.endswith("did you mean handle_RCPT?")
    assert rcpt_to.endswith("did you mean handle_RCPT?")
    assert "aiosmtpd calls handle_<COMMAND> in capitals" in bounce and "rename it" in bounce


def test_check_reply_is_where_a_hooks_reply_is_checked():
    assert check_reply("handle_RCPT", "250 OK") == "250 OK"
    assert check_reply("handle_EHLO", ["250-lab.test", "250 HELP"]) == ["250-lab.test", "250 HELP"]
    with pytest.raises(TypeError, match="handle_RCPT returned None"):
        check_reply("handle_RCPT", None)
    with pytest.raises(ValueError, match=r"handle_RCPT returned 'OK fine', which is not an SMTP reply"):
        check_reply("handle_RCPT", "OK fine")
    with pytest.raises(TypeError, match=r"handle_MAIL returned 250 \(an int\)"):
        check_reply("handle_MAIL", 250)
    with pytest.raises(ValueError, match=r"handle_EHLO returned 'HELP'"):
        check_reply("handle_EHLO", ["250-lab.test", "HELP"])


def test_a_failure_reply_is_one_short_ascii_line():
    failure = describe_failure("handle_DATA", ValueError("two\r\nlines, and ünïcode " + "x" * 300))
    assert failure.reply.startswith("451 4.3.0 Error in handle_DATA: ValueError: two lines, and ")
    assert "\r" not in failure.reply and "\n" not in failure.reply and failure.reply.isascii()
    assert len(failure.reply) <= 200 and failure.reply.endswith("...")


# -- VRFY and EXPN --------------------------------------------------------------------------------


def test_directory_answers_vrfy():
    directory = Directory(["Alice Liddell <alice@example.test>", "bob@example.test", "bob@elsewhere.test"])
    assert directory.verify("alice") == "250 2.1.5 Alice Liddell <alice@example.test>"
    assert directory.verify("<bob@example.test>") == "250 2.1.5 <bob@example.test>"
    assert directory.verify("bob").startswith("553 5.1.4 User ambiguous")
    assert directory.verify("carol") == "550 5.1.1 carol: no such mailbox here"
    assert Directory().verify("anyone").startswith("252 2.1.5 Cannot VRFY user")


def test_directory_expands_lists_one_member_per_line():
    directory = Directory(lists={"team": ["alice@example.test", "Bob <bob@example.test>"], "empty": []})
    assert directory.expand("TEAM") == ["250-2.1.5 <alice@example.test>", "250 2.1.5 Bob <bob@example.test>"]
    assert directory.expand("empty") == ["250 2.1.5 empty has no members"]
    assert directory.expand("nobody") == ["550 5.1.1 nobody: no such list here (lists: empty, team)"]
    (refusal,) = Directory().expand("team")
    assert refusal.startswith("502 5.5.1 EXPN is disabled") and "start_server(lists=" in refusal
