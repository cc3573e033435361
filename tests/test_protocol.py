"""Tests for smtplab.protocol: commands, reply codes, reply parsing, the session state machine."""

from __future__ import annotations

import doctest

import pytest

from smtplab import protocol
from smtplab.protocol import (
    COMMANDS,
    ENHANCED_CODES,
    REPLY_CATEGORIES,
    REPLY_CLASSES,
    REPLY_CODES,
    ParsedReply,
    SessionState,
    State,
    answered_verb,
    explain,
    extensions_needed,
    mail_parameter,
    parse_reply_line,
)


def test_docstring_examples_hold():
    result = doctest.testmod(protocol, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0


# --- data tables ------------------------------------------------------------------------------


def test_every_command_is_described_with_its_rfc_section():
    expected = {
        "HELO",
        "EHLO",
        "MAIL",
        "RCPT",
        "DATA",
        "RSET",
        "VRFY",
        "EXPN",
        "NOOP",
        "HELP",
        "QUIT",
        "STARTTLS",
        "AUTH",
    }
    assert set(COMMANDS) == expected
    for name, command in COMMANDS.items():
        assert command.name == name
        assert command.syntax.startswith(name)
        assert command.purpose
        assert command.rfc.startswith("RFC ")
        assert command.section.startswith("§")
    assert (COMMANDS["STARTTLS"].rfc, COMMANDS["AUTH"].rfc) == ("RFC 3207", "RFC 4954")


def test_reply_codes_cover_rfc5321_and_the_extensions():
    rfc5321 = {
        211,
        214,
        220,
        221,
        250,
        251,
        252,
        354,
        421,
        450,
        451,
        452,
        455,
        500,
        501,
        502,
        503,
        504,
        550,
        551,
        552,
        553,
        554,
        555,
    }
    extensions = {334, 235, 535, 538, 454, 530, 534, 521, 556}
    assert rfc5321 | extensions <= set(REPLY_CODES)
    for code, reply in REPLY_CODES.items():
        assert reply.code == code
        assert reply.meaning and reply.rfc.startswith("RFC ") and reply.section.startswith("§")
    assert set(REPLY_CLASSES) == {2, 3, 4, 5}
    assert set(REPLY_CATEGORIES) == {0, 1, 2, 3, 4, 5}


@pytest.mark.parametrize(
    "key",
    [
        "X.7.8",
        "X.7.11",
        "X.7.0",
        "X.5.1",
        "X.5.2",
        "X.5.4",
        "X.0.0",
        "X.1.0",
        "X.1.5",
        "X.3.4",
        "X.5.3",
        "X.1.1",
        "X.1.3",
        "X.6.0",
    ],
)
def test_enhanced_codes_sent_by_lab_servers_are_known(key):
    assert ENHANCED_CODES[key]


# --- parse_reply_line -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("250-SIZE 100", ParsedReply(250, None, "SIZE 100", last=False)),
        ("250-smtplab.local\r\n", ParsedReply(250, None, "smtplab.local", last=False)),
        ("250 HELP", ParsedReply(250, None, "HELP", last=True)),
        ("250", ParsedReply(250, None, "", last=True)),
        (
            "354 End data with <CR><LF>.<CR><LF>",
            ParsedReply(354, None, "End data with <CR><LF>.<CR><LF>", last=True),
        ),
        (
            "235 2.7.0 Authentication successful",
            ParsedReply(235, "2.7.0", "Authentication successful", last=True),
        ),
        ("250-2.1.0 Sender OK", ParsedReply(250, "2.1.0", "Sender OK", last=False)),
        (
            "538 5.7.11 Encryption required for requested authentication mechanism\r\n",
            ParsedReply(
                538, "5.7.11", "Encryption required for requested authentication mechanism", last=True
            ),
        ),
        ("250 2.0.0", ParsedReply(250, "2.0.0", "", last=True)),
        ("250-8BITMIME", ParsedReply(250, None, "8BITMIME", last=False)),
    ],
)
def test_parse_reply_line(line, expected):
    assert parse_reply_line(line) == expected


@pytest.mark.parametrize(
    "line",
    [
        "",
        "hello",
        "EHLO lab",
        "25",
        "2500 too long",
        "250x",
        "600 no such class",
        "199 preliminary",
        "260 second digit out of range",
        " 250 leading space",
        None,
        b"250 OK",
    ],
)
def test_parse_reply_line_rejects_what_is_not_a_reply(line):
    assert parse_reply_line(line) is None


# --- explain ----------------------------------------------------------------------------------


def test_explain_a_bare_code():
    assert explain(250) == "250 — Requested mail action okay, completed (RFC 5321 §4.2.2)"
    assert explain("503 Error: need MAIL command") == ("503 — Bad sequence of commands (RFC 5321 §4.2.2)")
    assert "RFC 4954" in explain(535)
    assert "RFC 7504" in explain(521)


def test_explain_prefers_a_specific_enhanced_code():
    assert explain("538 5.7.11 Encryption required") == (
        "538 5.7.11 — Encryption required for requested authentication mechanism (RFC 4954 §6)"
    )
    assert explain("535 5.7.8 Authentication credentials invalid").endswith(
        "Authentication credentials invalid (RFC 4954 §6)"
    )
    assert "Message too big" in explain("552 5.3.4 Message too big for system")
    assert "Too many recipients (RFC 3463 §3.6)" in explain("452 4.5.3 Too many recipients")
    assert "Bad destination mailbox address" in explain("550 5.1.1 <bob@example.org>: unknown")
    assert explain("5.7.11") == (
        "5.7.11 — Encryption required for requested authentication mechanism (RFC 4954 §6)"
    )
    # What the lab server answers a non-ASCII address sent without SMTPUTF8, as RFC 6531 says.
    assert explain("553 5.6.7 Non-ASCII sender address refused") == (
        "553 5.6.7 — Non-ASCII addresses not permitted for that sender/recipient: the client must ask "
        "for SMTPUTF8 (RFC 6531 §3.5)"
    )


def test_explain_generic_enhanced_code_falls_back_to_the_reply_code():
    assert explain("250 2.0.0 OK") == ("250 2.0.0 — Requested mail action okay, completed (RFC 5321 §4.2.2)")
    assert "Service not available" in explain("421 4.7.0 AUTH sent too many times")
    assert "Authentication required" in explain("530 5.7.0 Authentication required")


def test_explain_unknown_codes_from_their_digits():
    assert explain(259) == (
        "259 — Positive completion: the command succeeded, about the mail system (RFC 5321 §4.2.1)"
    )
    assert explain("432 4.7.12 change your password").startswith("432 4.7.12 — A password")
    assert "Transient negative" in explain("401 odd")
    assert "Other or undefined security status" in explain("554 5.7.99 local policy")
    assert explain("5.9.9") == "5.9.9 — Permanent failure (RFC 3463 §2)"


def test_a_reply_is_explained_in_answer_to_its_command():
    greeting = explain("220 mx.example.test ESMTP Postfix", command="")
    assert greeting == "220 — Service ready: the server's greeting (RFC 5321 §3.1)"
    assert "TLS handshake now (RFC 3207 §4)" in explain("220 2.0.0 Ready to start TLS", command="STARTTLS")
    inside = explain("530 5.7.0 Authentication required", command="MAIL FROM:<a@example.test>", tls=True)
    assert "AUTH" in inside and "STARTTLS" not in inside
    before = explain("530 5.7.0 Must issue a STARTTLS command first", command="MAIL FROM:<a@b>", tls=False)
    assert "STARTTLS first" in before
    assert "challenge, in base64" in explain("334 VXNlcm5hbWU6", command="AUTH")
    assert "wrong user name or password" in explain("535 Authentication failed", command="AUTH")
    assert "send the message" in explain("354 End data with <CR><LF>.<CR><LF>", command="DATA")
    assert "Message accepted" in explain("250 2.0.0 Ok: queued as 4B1C2", command=".")
    assert "Sender accepted" in explain("250 2.1.0 Ok", command="MAIL FROM:<a@b>")
    assert "Goodbye" in explain("221 2.0.0 Bye", command="QUIT")
    # Unknown context: the meaning of the code alone, as before.
    assert explain("250 OK") == explain("250 OK", command=None)
    assert "in reply to STARTTLS" in explain("220 ready")
    # A code the context does not change keeps its own meaning.
    assert explain("550 5.1.1 no such user", command="RCPT TO:<x@y>") == explain("550 5.1.1 no such user")


def test_answered_verb_names_the_command_a_reply_answers():
    assert answered_verb("mail FROM:<a@b>") == "MAIL"
    assert answered_verb(".") == "."
    assert answered_verb("") == ""
    assert answered_verb("dXNlcg==", after_334=True) == "AUTH"
    assert answered_verb("*", after_334=True) == "AUTH"


@pytest.mark.parametrize(
    "odd", ["", "hello", "EHLO lab", 99, 1000, 600, -250, True, None, 2.5, b"250 OK", "9.9.9"]
)
def test_explain_never_raises_and_is_empty_for_non_replies(odd):
    assert explain(odd) == ""


# --- the session state machine ----------------------------------------------------------------


def advance_all(session: SessionState, *steps: tuple[str, int]) -> State:
    for command, code in steps:
        session.advance(command, code)
    return session.state


def test_a_normal_session():
    s = SessionState()
    assert (s.state, s.tls, s.authenticated, s.esmtp) == (State.CONNECTED, False, False, False)
    assert "MAIL" not in s.allowed() and "EHLO" in s.allowed()
    for command, code, state in [
        ("EHLO lab.example", 250, State.GREETED),
        ("MAIL FROM:<alice@example.org>", 250, State.MAIL),
        ("RCPT TO:<bob@example.org>", 250, State.RCPT),
        ("rcpt to:<carol@example.org>", 251, State.RCPT),
        ("DATA", 354, State.DATA),
        (".", 250, State.GREETED),
        ("QUIT", 221, State.CLOSED),
    ]:
        assert s.check(command) is None, command
        assert s.advance(command, code) is state
    assert s.esmtp
    assert s.allowed() == []
    assert "session is over" in s.check("NOOP")


def test_allowed_follows_the_state():
    s = SessionState()
    advance_all(s, ("EHLO lab", 250))
    assert s.allowed() == [
        "EHLO",
        "HELO",
        "STARTTLS",
        "AUTH",
        "MAIL",
        "RSET",
        "VRFY",
        "EXPN",
        "NOOP",
        "HELP",
        "QUIT",
    ]
    advance_all(s, ("MAIL", 250))
    assert "RCPT" in s.allowed() and "DATA" not in s.allowed() and "MAIL" not in s.allowed()
    advance_all(s, ("RCPT", 250))
    assert "DATA" in s.allowed()
    advance_all(s, ("DATA", 354))
    assert s.allowed() == ["."]


def test_end_of_data_marker_has_two_spellings():
    s = SessionState()
    advance_all(s, ("EHLO lab", 250), ("MAIL", 250), ("RCPT", 250), ("DATA", 354))
    assert s.check("END_DATA") is None and s.check(".") is None
    assert s.advance("end_data", 250) is State.GREETED
    assert "only after DATA was answered with 354" in s.check(".")


def test_commands_are_case_insensitive():
    s = SessionState()
    assert s.advance("ehlo lab", 250) is State.GREETED
    assert s.check("mail from:<a@example.org>") is None
    assert s.advance("Mail", 250) is State.MAIL


def test_mail_before_greeting_points_to_ehlo():
    message = SessionState().check("MAIL")
    assert message.startswith("MAIL FROM needs a greeting first: send EHLO (or HELO)")
    assert '503 "Error: send HELO first"' in message


def test_rcpt_before_mail():
    s = SessionState()
    advance_all(s, ("EHLO lab", 250))
    message = s.check("RCPT")
    assert message.startswith("RCPT TO needs a MAIL FROM first (RFC 5321 §3.3)")
    assert "503" in message


def test_data_before_mail_and_data_without_recipient_are_told_apart():
    s = SessionState()
    advance_all(s, ("EHLO lab", 250))
    before_mail = s.check("DATA")
    assert before_mail.startswith("DATA needs at least one accepted RCPT TO first (RFC 5321 §3.3)")
    assert "send MAIL FROM, then RCPT TO" in before_mail
    advance_all(s, ("MAIL", 250))
    no_recipient = s.check("DATA")
    assert "MAIL FROM was accepted, but no recipient yet" in no_recipient
    assert no_recipient != before_mail


def test_a_refused_recipient_does_not_open_data():
    s = SessionState()
    assert advance_all(s, ("EHLO lab", 250), ("MAIL", 250), ("RCPT", 550)) is State.MAIL
    assert s.check("DATA") is not None
    assert s.advance("DATA", 503) is State.MAIL


def test_mail_twice():
    s = SessionState()
    advance_all(s, ("EHLO lab", 250), ("MAIL", 250))
    message = s.check("MAIL")
    assert "MAIL FROM was already accepted" in message
    assert "RSET" in message and "nested MAIL command" in message
    advance_all(s, ("RCPT", 250))
    assert s.check("MAIL") == message


def test_auth_rules():
    s = SessionState()
    assert "AUTH needs a greeting first: send EHLO" in s.check("AUTH")
    advance_all(s, ("HELO lab", 250))
    assert not s.esmtp
    assert "HELO switched extensions off" in s.check("AUTH")
    advance_all(s, ("EHLO lab", 250), ("MAIL", 250))
    assert "not allowed during a mail transaction (RFC 4954 §4)" in s.check("AUTH")
    assert s.advance("AUTH PLAIN", 503) is State.MAIL and not s.authenticated
    advance_all(s, ("RSET", 250))
    assert s.check("AUTH PLAIN") is None
    assert advance_all(s, ("AUTH LOGIN", 334), ("AUTH", 535)) is State.GREETED
    assert not s.authenticated
    s.advance("AUTH PLAIN", 235)
    assert s.authenticated and s.state is State.GREETED
    assert "already authenticated" in s.check("AUTH")


def test_starttls_resets_the_session():
    s = SessionState()
    assert "send EHLO first" in s.check("STARTTLS")
    advance_all(s, ("EHLO lab", 250))
    assert s.check("STARTTLS") is None
    assert s.advance("STARTTLS", 454) is State.GREETED and not s.tls
    assert s.advance("STARTTLS", 220) is State.CONNECTED
    assert (s.tls, s.esmtp, s.authenticated) == (True, False, False)
    message = s.check("MAIL")
    assert "greeting first" in message and "RFC 3207 §4.2" in message
    assert "already active" in s.check("STARTTLS")
    advance_all(s, ("EHLO lab", 250))
    assert "twice (RFC 3207 §4.2)" in s.check("STARTTLS")
    assert "STARTTLS" not in s.allowed() and "AUTH" in s.allowed()


def test_starttls_not_during_a_transaction():
    s = SessionState()
    advance_all(s, ("EHLO lab", 250), ("MAIL", 250))
    assert "in the middle of a message" in s.check("STARTTLS")


def test_implicit_tls_and_reset():
    s = SessionState(tls=True)
    assert s.tls
    advance_all(s, ("EHLO lab", 250), ("AUTH PLAIN", 235), ("QUIT", 221))
    s.reset()
    assert (s.state, s.tls, s.authenticated, s.esmtp) == (State.CONNECTED, True, False, False)


def test_rset_ends_the_transaction_but_keeps_the_greeting():
    s = SessionState()
    assert s.advance("RSET", 250) is State.CONNECTED
    assert advance_all(s, ("EHLO lab", 250), ("MAIL", 250), ("RCPT", 250)) is State.RCPT
    assert s.advance("RSET", 250) is State.GREETED
    assert s.esmtp
    assert s.check("MAIL") is None


def test_ehlo_again_resets_the_transaction():
    s = SessionState()
    assert advance_all(s, ("EHLO lab", 250), ("MAIL", 250), ("RCPT", 250), ("HELO lab", 250)) is (
        State.GREETED
    )
    assert not s.esmtp


def test_data_phase_accepts_only_the_end_marker():
    s = SessionState()
    advance_all(s, ("EHLO lab", 250), ("MAIL", 250), ("RCPT", 250), ("DATA", 354))
    for command in ("QUIT", "RSET", "MAIL", "NOOP"):
        assert "message content" in s.check(command)
    assert s.advance("QUIT", 221) is State.DATA
    # The reply to "." ends the message whether it was accepted or refused (RFC 5321 §4.1.1.4).
    assert s.advance(".", 554) is State.GREETED


def test_quit_and_421_close_the_session():
    s = SessionState()
    advance_all(s, ("EHLO lab", 250))
    assert s.advance("QUIT", 501) is State.GREETED
    assert s.advance("QUIT", 221) is State.CLOSED
    assert s.advance("EHLO lab", 250) is State.CLOSED

    for setup in ([], [("EHLO lab", 250), ("MAIL", 250), ("RCPT", 250), ("DATA", 354)]):
        s = SessionState()
        advance_all(s, *setup)
        assert s.advance("NOOP", 421) is State.CLOSED
        assert s.check("EHLO") is not None


def test_unknown_commands_and_failures_leave_the_state_alone():
    s = SessionState()
    advance_all(s, ("EHLO lab", 250))
    assert "not an SMTP command" in s.check("BDAT 100")
    assert "An empty line" in s.check("")
    assert s.advance("BDAT", 250) is State.GREETED
    assert s.advance("MAIL", 550) is State.GREETED
    for command in ("VRFY bob", "EXPN list", "HELP", "NOOP"):
        assert s.check(command) is None
        assert s.advance(command, 250) is State.GREETED
    assert "State.GREETED" not in repr(s) and "GREETED" in repr(s)


# --- one reply grammar, one argument rule, one line-ending rule ---------------------------------


@pytest.mark.parametrize(
    ("line", "code"),
    [("250 OK", 250), ("250-SIZE 1000", 250), ("354", 354), ("559 x", 559), ("260 x", None), ("250x", None)],
)
def test_reply_code_follows_rfc5321_grammar(line, code):
    # RFC 5321 §4.2: Reply-code = %x32-35 %x30-35 %x30-39 -- a second digit above 5 is no reply.
    assert protocol.reply_code(line) == code
    parsed = parse_reply_line(line)
    assert (parsed.code if parsed else None) == code


def test_a_transcript_reads_reply_codes_with_the_same_grammar():
    from smtplab.transcript import Transcript

    t = Transcript()
    assert [t.server(text).code for text in ("259 x", "260 x", "250-a", "250")] == [259, None, 250, 250]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("<alice@example.test>", None),
        ("<bob@exämple.test>", None),  # UTF-8 is fine (SMTPUTF8)
        ("<a\x00b>", "NUL byte (0x00) at position 2; control characters are not allowed"),
        ("<a\tb>", "tab (0x09) at position 2; control characters are not allowed"),
        ("<a\nb>", "line feed (LF) (0x0A) at position 2; control characters are not allowed"),
        ("<a\x7fb>", "DEL (0x7F) at position 2; control characters are not allowed"),
        ("<a\x1bb>", "control character (0x1B) at position 2; control characters are not allowed"),
        ("<a\udcffb>", "byte 0xFF at position 2 is not valid UTF-8"),
    ],
)
def test_argument_problem_names_the_character_and_where(text, problem):
    assert protocol.argument_problem(text) == problem


def test_bare_line_endings_are_found():
    assert protocol.bare_line_endings(b"a\r\nb\r\n") == ()
    assert protocol.bare_line_endings(b"a\nb\r\n") == ("LF",)
    assert protocol.bare_line_endings(b"a\rb\r\n") == ("CR",)
    assert protocol.bare_line_endings(b"a\r\r\n") == ("CR",)
    assert protocol.bare_line_endings(b"a\n\rb") == ("LF", "CR")


def test_extensions_needed_names_each_extension_and_why():
    assert extensions_needed("a@example.test", ["b@example.test"], b"Subject: hi\r\n\r\nhi\r\n") == {}
    assert extensions_needed("jörg@例え.test", ["b@example.test"], b"Subject: hi\r\n\r\nhi\r\n") == {
        "SMTPUTF8": "the sender 'jörg@例え.test' is not ASCII"
    }
    assert extensions_needed("a@example.test", ["b@example.test", "zoë@example.test"], b"\r\nhi") == {
        "SMTPUTF8": "the recipient 'zoë@example.test' is not ASCII"
    }
    body = "Subject: hi\n\nHallo Jörg\n".encode()  # bare LF: still a header section and a body
    assert extensions_needed("a@example.test", ["b@example.test"], body) == {
        "8BITMIME": "the body has 8-bit bytes"
    }
    head = "Subject: Grüße\r\n\r\nhi\r\n".encode()
    assert extensions_needed("a@example.test", ["b@example.test"], head) == {
        "SMTPUTF8": "the Subject header is not ASCII",
        "8BITMIME": "the headers have 8-bit bytes",
    }
    assert [mail_parameter(name) for name in ("SMTPUTF8", "8BITMIME")] == ["SMTPUTF8", "BODY=8BITMIME"]


# --- extensions and the machine's moves ---------------------------------------------------------


def test_every_extension_says_what_it_offers_and_what_a_server_without_it_answers():
    assert {
        "SIZE",
        "8BITMIME",
        "SMTPUTF8",
        "ENHANCEDSTATUSCODES",
        "HELP",
        "STARTTLS",
        "AUTH",
        "PIPELINING",
    } <= set(protocol.EXTENSIONS)
    for name, extension in protocol.EXTENSIONS.items():
        assert extension.name == name and extension.purpose and extension.without
        assert extension.rfc.startswith("RFC ") and extension.section.startswith("§")
    assert "555" in protocol.EXTENSIONS["SIZE"].without and "502" in protocol.EXTENSIONS["HELP"].without


def test_every_state_has_a_meaning_in_words():
    assert all(state.meaning for state in State)
    assert "354" in State.DATA.meaning and "'.'" in State.DATA.meaning


def test_transitions_are_the_machines_own_moves():
    moves = {(t.source, t.command): (t.code, t.target) for t in protocol.transitions()}
    assert moves[(State.CONNECTED, "EHLO")] == (250, State.GREETED)
    assert moves[(State.GREETED, "MAIL")] == (250, State.MAIL)
    assert moves[(State.MAIL, "RCPT")] == (250, State.RCPT)
    assert moves[(State.RCPT, "RCPT")] == (250, State.RCPT)  # another recipient
    assert moves[(State.RCPT, "DATA")] == (354, State.DATA)
    assert moves[(State.DATA, ".")] == (250, State.GREETED)
    assert moves[(State.GREETED, "STARTTLS")] == (220, State.CONNECTED)
    assert moves[(State.RCPT, "RSET")] == (250, State.GREETED)
    assert moves[(State.MAIL, "QUIT")] == (221, State.CLOSED)
    assert (State.CONNECTED, "MAIL") not in moves and (State.GREETED, "DATA") not in moves
    assert [command for state, command in moves if state is State.DATA] == ["."]
    for t in protocol.transitions():  # each move is one the machine makes
        machine = SessionState()
        machine.state, machine.esmtp = t.source, t.source is not State.CONNECTED
        assert machine.check(t.command) is None and machine.advance(t.command, t.code) is t.target


def test_a_session_state_draws_itself_where_it_stands():
    s = SessionState()
    s.advance("EHLO lab", 250)
    html = s._repr_html_()
    assert "Now: greeted (you are here)" in html and "Valid now: EHLO, HELO, STARTTLS" in html
    assert "<svg" in s.svg() and 'state "greeted (you are here)" as greeted' in s.mermaid()
