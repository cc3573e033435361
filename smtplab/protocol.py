"""SMTP itself, as data: commands, reply codes and what is allowed when.

This module answers the questions a learner asks while reading an SMTP conversation:
*what does this command do?*, *what does 550 mean?*, *why did the server say 503?* It holds
no sockets and runs no event loop, so widgets, notebooks, the transcript and error messages can
all share one source of truth.

- :data:`COMMANDS` — every command smtplab speaks, with syntax, purpose and the RFC section;
  :data:`COMMAND_ORDER` — the order a session usually uses them in.
- :data:`REPLY_CODES` — the reply codes of RFC 5321 §4.2 plus those of AUTH (RFC 4954),
  STARTTLS (RFC 3207) and "no mail here" (RFC 7504). :data:`REPLY_CLASSES` and
  :data:`REPLY_CATEGORIES` give the meaning of the first and second digit for any other code.
- :data:`ENHANCED_CODES` — enhanced status codes such as ``5.7.8`` (RFC 3463, RFC 4954).
- :data:`EXTENSIONS` — the ESMTP extensions a server lists in its EHLO reply, and what a server
  without one answers when a client uses it anyway; :data:`MAIL_PARAMETERS` — the MAIL FROM
  parameters they bring.
- :func:`parse_reply_line`, :func:`reply_code` and :func:`explain` — read one reply line and say
  what it means, in the context of the command it answers when that is known (the one reply
  grammar of smtplab: transcripts and the client use it too); :func:`answered_verb` names that
  command.
- :func:`argument_problem` — the one hygiene rule for command arguments (control characters,
  invalid UTF-8), and :func:`bare_line_endings` — line endings other than CRLF in a message.
- :func:`extensions_needed` — which ESMTP extensions a message needs (SMTPUTF8 for non-ASCII
  addresses or headers, 8BITMIME for 8-bit content), and :func:`mail_parameter` — the
  ``MAIL FROM`` parameter that asks for each.
- :class:`SessionState` — the session state machine: which commands make sense now, and the
  reason behind the ``503 Bad sequence of commands`` a server gives when they do not;
  :func:`transitions` lists its moves, as asked of the machine itself (for drawing it).

Example:
    >>> explain("550 5.1.1 <bob@example.org>: no such user")
    '550 5.1.1 — Bad destination mailbox address: no such mailbox here (RFC 3463 §3.2)'
    >>> session = SessionState()
    >>> session.check("MAIL")
    'MAIL FROM needs a greeting first: ...'
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

__all__ = [
    "COMMANDS",
    "COMMAND_ORDER",
    "ENHANCED_CODES",
    "EXTENSIONS",
    "MAIL_PARAMETERS",
    "REPLY_CATEGORIES",
    "REPLY_CLASSES",
    "REPLY_CODES",
    "Command",
    "Extension",
    "ParsedReply",
    "ReplyCode",
    "SessionState",
    "State",
    "Transition",
    "answered_verb",
    "argument_problem",
    "bare_line_endings",
    "explain",
    "extensions_needed",
    "mail_parameter",
    "parse_reply_line",
    "reply_code",
    "transitions",
]


# --------------------------------------------------------------------------------------------
# Commands
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Command:
    """One SMTP command.

    Attributes:
        name: The verb as sent on the wire, e.g. ``"MAIL"``.
        syntax: How the full command line looks, e.g. ``"MAIL FROM:<reverse-path>"``.
        purpose: What the command is for, in one or two plain sentences.
        rfc: The document that defines it, e.g. ``"RFC 5321"``.
        section: The section inside that document, e.g. ``"§4.1.1.2"``.
    """

    name: str
    syntax: str
    purpose: str
    rfc: str
    section: str


def _cmd(name: str, syntax: str, purpose: str, rfc: str, section: str) -> Command:
    return Command(name=name, syntax=syntax, purpose=purpose, rfc=rfc, section=section)


COMMANDS: dict[str, Command] = {
    c.name: c
    for c in (
        _cmd(
            "HELO",
            "HELO <domain>",
            "Say hello and name the client, in plain SMTP without extensions.",
            "RFC 5321",
            "§4.1.1.1",
        ),
        _cmd(
            "EHLO",
            "EHLO <domain>",
            "Say hello and name the client, asking for extended SMTP: the reply lists the "
            "extensions the server offers (SIZE, STARTTLS, AUTH, ...).",
            "RFC 5321",
            "§4.1.1.1",
        ),
        _cmd(
            "MAIL",
            "MAIL FROM:<reverse-path> [parameters]",
            "Start a new message and give the envelope sender, where bounces go.",
            "RFC 5321",
            "§4.1.1.2",
        ),
        _cmd(
            "RCPT",
            "RCPT TO:<forward-path> [parameters]",
            "Add one envelope recipient to the current message; repeat for each recipient.",
            "RFC 5321",
            "§4.1.1.3",
        ),
        _cmd(
            "DATA",
            "DATA",
            "Ask to send the message itself (headers, blank line, body). After the 354 reply, "
            "send the content and end it with a line holding only '.'.",
            "RFC 5321",
            "§4.1.1.4",
        ),
        _cmd(
            "RSET",
            "RSET",
            "Abandon the current message: sender, recipients and content are forgotten. The "
            "connection and greeting stay.",
            "RFC 5321",
            "§4.1.1.5",
        ),
        _cmd(
            "VRFY",
            "VRFY <string>",
            "Ask whether a user or mailbox exists. Most servers refuse to say (252).",
            "RFC 5321",
            "§4.1.1.6",
        ),
        _cmd(
            "EXPN",
            "EXPN <string>",
            "Ask the server to list the members of a mailing list. Usually disabled (502).",
            "RFC 5321",
            "§4.1.1.7",
        ),
        _cmd(
            "HELP",
            "HELP [<string>]",
            "Ask the server for help, in general or about one command.",
            "RFC 5321",
            "§4.1.1.8",
        ),
        _cmd(
            "NOOP",
            "NOOP [<string>]",
            "Do nothing but get a 250: checks that the server is still there.",
            "RFC 5321",
            "§4.1.1.9",
        ),
        _cmd(
            "QUIT",
            "QUIT",
            "Say goodbye: the server answers 221 and closes the connection.",
            "RFC 5321",
            "§4.1.1.10",
        ),
        _cmd(
            "STARTTLS",
            "STARTTLS",
            "Switch the open connection to TLS. After the 220 reply both sides do a TLS "
            "handshake, then the session starts again from scratch: send EHLO again.",
            "RFC 3207",
            "§4",
        ),
        _cmd(
            "AUTH",
            "AUTH <mechanism> [<initial-response>]",
            "Log in with a SASL mechanism such as PLAIN or LOGIN; the server may send 334 "
            "challenges that the client answers in base64. Allowed once per session.",
            "RFC 4954",
            "§4",
        ),
    )
}


# --------------------------------------------------------------------------------------------
# Reply codes
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReplyCode:
    """One three-digit SMTP reply code.

    Attributes:
        code: The number, e.g. ``250``.
        meaning: What it means, in a few words.
        rfc: The document that defines it, e.g. ``"RFC 5321"``.
        section: The section inside that document, e.g. ``"§4.2.2"``.
    """

    code: int
    meaning: str
    rfc: str
    section: str


_5321 = ("RFC 5321", "§4.2.2")
_4954 = ("RFC 4954", "§6")
_7504 = ("RFC 7504", "§3")

REPLY_CODES: dict[int, ReplyCode] = {
    code: ReplyCode(code, meaning, *source)
    for code, meaning, source in (
        (211, "System status, or system help reply", _5321),
        (214, "Help message, meant for a human reader", _5321),
        (220, "Service ready (the greeting; in reply to STARTTLS: begin the TLS handshake)", _5321),
        (221, "Service closing transmission channel: goodbye", _5321),
        (235, "Authentication successful", _4954),
        (250, "Requested mail action okay, completed", _5321),
        (251, "User not local; the server will forward the message", _5321),
        (252, "Cannot verify the user, but will accept the message and try to deliver it", _5321),
        (334, "Authentication continues: answer the server's base64 challenge", ("RFC 4954", "§4")),
        (354, "Start mail input; end it with a line holding only '.'", _5321),
        (421, "Service not available, closing transmission channel", _5321),
        (432, "A password transition is needed", _4954),
        (450, "Requested mail action not taken: mailbox unavailable for now", _5321),
        (451, "Requested action aborted: local error in processing", _5321),
        (452, "Requested action not taken: insufficient system storage", _5321),
        (454, "Temporary authentication failure; after STARTTLS: TLS not available for now", _4954),
        (455, "Server unable to accommodate parameters", _5321),
        (500, "Syntax error, command unrecognized, or line too long", _5321),
        (501, "Syntax error in parameters or arguments", _5321),
        (502, "Command not implemented", _5321),
        (503, "Bad sequence of commands", _5321),
        (504, "Command parameter not implemented", _5321),
        (521, "Host does not accept mail", _7504),
        (530, "Authentication required; from a server that insists on TLS: send STARTTLS first", _4954),
        (534, "Authentication mechanism is too weak", _4954),
        (535, "Authentication credentials invalid", _4954),
        (538, "Encryption required for requested authentication mechanism", _4954),
        (550, "Requested action not taken: mailbox unavailable", _5321),
        (551, "User not local; please try another path", _5321),
        (552, "Requested mail action aborted: exceeded storage allocation", _5321),
        (553, "Requested action not taken: mailbox name not allowed", _5321),
        (554, "Transaction failed; as a greeting: no SMTP service here", _5321),
        (555, "MAIL FROM/RCPT TO parameters not recognized or not implemented", _5321),
        (556, "Domain does not accept mail", ("RFC 7504", "§4")),
    )
}
# STARTTLS (RFC 3207 §4) has no codes of its own: it reuses 220, 454 and 501.

#: What a code means in answer to one command, where that says more than the code alone. The
#: command is a verb, ``""`` for the greeting (no command: the connection opened) and ``"."``
#: for the end of message data; ``"AUTH"`` stands for every step of an AUTH exchange.
REPLIES_IN_CONTEXT: dict[tuple[str, int], ReplyCode] = {
    (verb, code): ReplyCode(code, meaning, *source)
    for verb, code, meaning, source in (
        ("", 220, "Service ready: the server's greeting", ("RFC 5321", "§3.1")),
        (
            "",
            421,
            "Service not available: refused at connect (busy, or too many connections)",
            ("RFC 5321", "§3.1"),
        ),
        (
            "",
            554,
            "No SMTP service here: the connection was refused instead of greeted",
            ("RFC 5321", "§3.1"),
        ),
        (
            "EHLO",
            250,
            "Hello accepted; the lines after the first name the server's extensions",
            ("RFC 5321", "§4.1.1.1"),
        ),
        (
            "HELO",
            250,
            "Hello accepted (plain SMTP: no extensions, those need EHLO)",
            ("RFC 5321", "§4.1.1.1"),
        ),
        ("STARTTLS", 220, "Ready to start TLS: begin the TLS handshake now", ("RFC 3207", "§4")),
        ("STARTTLS", 454, "TLS not available for now", ("RFC 3207", "§4")),
        ("STARTTLS", 501, "Syntax error: STARTTLS takes no parameters", ("RFC 3207", "§4")),
        ("AUTH", 334, "AUTH continues: answer the server's challenge, in base64", ("RFC 4954", "§4")),
        ("AUTH", 235, "Authentication successful", ("RFC 4954", "§6")),
        ("AUTH", 501, "AUTH cancelled, or the answer was not valid base64", ("RFC 4954", "§4")),
        ("AUTH", 535, "Authentication credentials invalid: wrong user name or password", ("RFC 4954", "§6")),
        ("MAIL", 250, "Sender accepted: the mail transaction has begun", ("RFC 5321", "§4.1.1.2")),
        ("RCPT", 250, "Recipient accepted", ("RFC 5321", "§4.1.1.3")),
        ("DATA", 354, "Go ahead: send the message, then a line holding only '.'", ("RFC 5321", "§4.1.1.4")),
        (".", 250, "Message accepted: the server now takes responsibility for it", ("RFC 5321", "§4.1.1.4")),
        (
            "RSET",
            250,
            "Transaction reset: sender, recipients and content are forgotten",
            ("RFC 5321", "§4.1.1.5"),
        ),
        ("NOOP", 250, "OK: the server is there", ("RFC 5321", "§4.1.1.9")),
        ("QUIT", 221, "Goodbye: the server closes the connection", ("RFC 5321", "§4.1.1.10")),
    )
}

# 530 depends on whether the connection is encrypted yet: before STARTTLS a server that insists
# on TLS says 530 too (RFC 3207 §4); once inside TLS only AUTH is left to ask for.
_530_IN_TLS = ReplyCode(530, "Authentication required: log in with AUTH first", "RFC 4954", "§6")
_530_IN_CLEAR = ReplyCode(
    530,
    "Authentication required, or (from a server that insists on TLS) STARTTLS first",
    "RFC 4954 §6,",
    "RFC 3207 §4",
)

# RFC 5321 §4.2.1: the first digit says how it went, the second what it is about.
REPLY_CLASSES: dict[int, str] = {
    2: "Positive completion: the command succeeded",
    3: "Positive intermediate: go on, the server waits for more",
    4: "Transient negative completion: it failed this time, trying again later may work",
    5: "Permanent negative completion: it failed, do not repeat it unchanged",
}
REPLY_CATEGORIES: dict[int, str] = {
    0: "about syntax",
    1: "giving information",
    2: "about the connection",
    3: "unspecified",
    4: "unspecified",
    5: "about the mail system",
}


# --------------------------------------------------------------------------------------------
# Enhanced status codes
# --------------------------------------------------------------------------------------------

# Keys use "X" for the class digit: 2 = success, 4 = transient failure, 5 = permanent failure
# (RFC 3463 §2).
ENHANCED_CODES: dict[str, str] = {
    "X.0.0": "Other or undefined status",
    "X.1.0": "Other address status",
    "X.1.1": "Bad destination mailbox address: no such mailbox here",
    "X.1.2": "Bad destination system address: the domain is unknown or does not take mail",
    "X.1.3": "Bad destination mailbox address syntax",
    "X.1.4": "Destination mailbox address ambiguous",
    "X.1.5": "Destination address valid",
    "X.1.6": "Destination mailbox has moved, no forwarding address",
    "X.1.7": "Bad sender's mailbox address syntax",
    "X.1.8": "Bad sender's system address",
    "X.2.0": "Other or undefined mailbox status",
    "X.2.1": "Mailbox disabled, not accepting messages",
    "X.2.2": "Mailbox full",
    "X.2.3": "Message length exceeds an administrative limit",
    "X.2.4": "Mailing list expansion problem",
    "X.3.0": "Other or undefined mail system status",
    "X.3.1": "Mail system full",
    "X.3.2": "System not accepting network messages",
    "X.3.3": "System not capable of the selected features",
    "X.3.4": "Message too big for system",
    "X.3.5": "System incorrectly configured",
    "X.4.0": "Other or undefined network or routing status",
    "X.4.1": "No answer from host",
    "X.4.2": "Bad connection",
    "X.4.3": "Directory server failure (often DNS)",
    "X.4.4": "Unable to route",
    "X.4.5": "Mail system congestion",
    "X.4.6": "Routing loop detected",
    "X.4.7": "Delivery time expired",
    "X.5.0": "Other or undefined protocol status",
    "X.5.1": "Invalid command: out of sequence or not supported",
    "X.5.2": "Syntax error",
    "X.5.3": "Too many recipients",
    "X.5.4": "Invalid command arguments",
    "X.5.5": "Wrong protocol version",
    "X.5.6": "Authentication exchange line is too long",
    "X.6.0": "Other or undefined media error",
    "X.6.1": "Media not supported",
    "X.6.2": "Conversion required and prohibited",
    "X.6.3": "Conversion required but not supported",
    "X.6.4": "Conversion with loss performed",
    "X.6.5": "Conversion failed",
    "X.6.7": "Non-ASCII addresses not permitted for that sender/recipient: the client must ask for SMTPUTF8",
    "X.7.0": "Other or undefined security status",
    "X.7.1": "Delivery not authorized, message refused",
    "X.7.2": "Mailing list expansion prohibited",
    "X.7.3": "Security conversion required but not possible",
    "X.7.4": "Security features not supported",
    "X.7.5": "Cryptographic failure",
    "X.7.6": "Cryptographic algorithm not supported",
    "X.7.7": "Message integrity failure",
    "X.7.8": "Authentication credentials invalid",
    "X.7.9": "Authentication mechanism is too weak",
    "X.7.11": "Encryption required for requested authentication mechanism",
    "X.7.12": "A password transition is needed",
}
_ENHANCED_CLASSES = {"2": "Success", "4": "Persistent transient failure", "5": "Permanent failure"}
# Where each enhanced code is defined: RFC 4954 §6 added a few; the rest are RFC 3463 §3.1-§3.8,
# one section per subject digit.
_ENHANCED_BY_RFC4954 = frozenset({"X.5.6", "X.7.8", "X.7.9", "X.7.11", "X.7.12"})


def _enhanced_source(key: str) -> str:
    if key in _ENHANCED_BY_RFC4954:
        return "RFC 4954 §6"
    if key == "X.6.7":  # registered by RFC 5248, used as RFC 6531 says
        return "RFC 6531 §3.5"
    return f"RFC 3463 §3.{int(key.split('.')[1]) + 1}"


# --------------------------------------------------------------------------------------------
# ESMTP extensions
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Extension:
    """One ESMTP extension: a keyword a server lists in its reply to EHLO (RFC 5321 §4.1.1.1).

    Attributes:
        name: The keyword as it appears in the EHLO reply, e.g. ``"SIZE"``.
        purpose: What offering it lets a client do, in a sentence.
        rfc: The document that defines it, e.g. ``"RFC 1870"``.
        section: The section inside that document.
        without: What a server that does not offer it answers when a client uses it anyway.
    """

    name: str
    purpose: str
    rfc: str
    section: str
    without: str


EXTENSIONS: dict[str, Extension] = {
    e.name: e
    for e in (
        Extension(
            "SIZE",
            "The server names the largest message it takes (SIZE 10485760), and a client may "
            "declare its message's size in MAIL FROM (SIZE=2048) to be refused before sending it.",
            "RFC 1870",
            "§4",
            "MAIL FROM with a SIZE= parameter gets 555 (parameter not recognized).",
        ),
        Extension(
            "8BITMIME",
            "Message content may hold 8-bit bytes (UTF-8 text without encoding); the client "
            "says so with BODY=8BITMIME in MAIL FROM.",
            "RFC 6152",
            "§2",
            "MAIL FROM with a BODY= parameter gets 555; 8-bit content must be encoded "
            "(quoted-printable or base64) to fit in 7 bits.",
        ),
        Extension(
            "SMTPUTF8",
            "Addresses and headers may be written in UTF-8 (jörg@例え.test); the client says so "
            "with SMTPUTF8 in MAIL FROM.",
            "RFC 6531",
            "§3.1",
            "MAIL FROM with an SMTPUTF8 parameter gets 555, and a non-ASCII address cannot be sent.",
        ),
        Extension(
            "ENHANCEDSTATUSCODES",
            "Every reply carries an enhanced status code after its reply code (250 2.1.5 ...), "
            "which says more precisely what happened (RFC 3463).",
            "RFC 2034",
            "§3",
            "Replies carry the three-digit code alone.",
        ),
        Extension(
            "HELP",
            "The server answers HELP with a list of its commands (a common custom: HELP itself "
            "is a command of RFC 5321 §4.1.1.8, and many servers leave it out).",
            "RFC 5321",
            "§4.1.1.8",
            "HELP gets 502 (command not implemented).",
        ),
        Extension(
            "STARTTLS",
            "The client may turn the connection into a TLS one (STARTTLS, then a handshake, "
            "then EHLO again).",
            "RFC 3207",
            "§4",
            "STARTTLS gets 502 (command not implemented), or 454 (TLS not available for now).",
        ),
        Extension(
            "AUTH",
            "The client may log in with one of the SASL mechanisms listed (AUTH PLAIN LOGIN ...).",
            "RFC 4954",
            "§3",
            "AUTH gets 502 (command not implemented).",
        ),
        Extension(
            "PIPELINING",
            "The client may send several commands at once without waiting for each reply, and "
            "read the replies afterwards, in order.",
            "RFC 2920",
            "§3",
            "A client must wait for each reply before the next command (RFC 5321 §4.3.1); "
            "many servers still answer, some (Postfix, for one) refuse or mark such a client.",
        ),
    )
}

#: The MAIL FROM parameters an extension gives meaning to, and that extension (RFC 1870 §6,
#: RFC 6152 §2, RFC 6531 §3.4): a server that does not offer it answers 555 to the parameter.
MAIL_PARAMETERS: dict[str, str] = {"SIZE": "SIZE", "BODY": "8BITMIME", "SMTPUTF8": "SMTPUTF8"}


# --------------------------------------------------------------------------------------------
# Reading replies
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ParsedReply:
    """One line of a server reply, taken apart.

    Attributes:
        code: The three-digit reply code, e.g. ``250``.
        enhanced: The enhanced status code such as ``"2.1.5"``, or ``None`` if there is none.
        text: The rest of the line, after the code(s).
        last: ``False`` for ``"250-..."`` (more lines follow), ``True`` for ``"250 ..."``.
    """

    code: int
    enhanced: str | None
    text: str
    last: bool


# RFC 5321 §4.2: Reply-code = %x32-35 %x30-35 %x30-39, then "-" (more lines follow) or SP.
_REPLY_RE = re.compile(r"([2-5][0-5][0-9])(?:([ -])(.*))?", re.DOTALL)
# RFC 3463 §2: class "." subject "." detail; subject and detail have 1 to 3 digits.
_ENHANCED_RE = re.compile(r"([245])\.([0-9]{1,3})\.([0-9]{1,3})(?= |$)")


def parse_reply_line(line: str) -> ParsedReply | None:
    """Take one server reply line apart.

    Args:
        line: One line as received, with or without its CRLF, e.g. ``"250-SIZE 1048576"``.

    Returns:
        The parsed line, or ``None`` if the line is not an SMTP reply line.

    Example:
        >>> parse_reply_line("250-SIZE 1048576")
        ParsedReply(code=250, enhanced=None, text='SIZE 1048576', last=False)
        >>> parse_reply_line("535 5.7.8 Authentication credentials invalid").enhanced
        '5.7.8'
    """
    if not isinstance(line, str):
        return None
    match = _REPLY_RE.fullmatch(line.rstrip("\r\n"))
    if match is None:
        return None
    code, separator, text = match.group(1), match.group(2), match.group(3) or ""
    enhanced = _ENHANCED_RE.match(text)
    if enhanced:
        text = text[enhanced.end() :].lstrip(" ")
    return ParsedReply(
        code=int(code),
        enhanced=enhanced.group(0) if enhanced else None,
        text=text,
        last=separator != "-",
    )


def reply_code(line: str) -> int | None:
    """The reply code at the start of a server line, or ``None`` if it is not a reply line.

    The same grammar as :func:`parse_reply_line` (RFC 5321 §4.2), without taking the rest apart:
    ``reply_code("250-SIZE 1000")`` is ``250``; ``reply_code("260 x")`` is ``None``, as the
    second digit of a reply code is 0 to 5.
    """
    match = _REPLY_RE.fullmatch(line.rstrip("\r\n")) if isinstance(line, str) else None
    return int(match.group(1)) if match else None


def _explain_enhanced(enhanced: str) -> tuple[str, str] | None:
    """Return (meaning, source) for an enhanced code; unknown details fall back to X.Y.0."""
    _, subject, detail = enhanced.split(".")
    for key in (f"X.{int(subject)}.{int(detail)}", f"X.{int(subject)}.0"):
        if key in ENHANCED_CODES:
            return ENHANCED_CODES[key], _enhanced_source(key)
    return None


def _explain_code(code: int, verb: str | None = None, tls: bool | None = None) -> str:
    known = REPLY_CODES.get(code)
    if verb is not None:
        known = REPLIES_IN_CONTEXT.get((verb, code), known)
    if code == 530 and tls is not None:
        known = _530_IN_TLS if tls else _530_IN_CLEAR
    if known is not None:
        return f"{known.meaning} ({known.rfc} {known.section})"
    category = REPLY_CATEGORIES[code // 10 % 10]
    return f"{REPLY_CLASSES[code // 100]}, {category} (RFC 5321 §4.2.1)"


def answered_verb(line: str, *, after_334: bool = False) -> str:
    """The command a client line stands for when its reply is explained.

    ``"MAIL FROM:<a@b>"`` → ``"MAIL"``; the end-of-data line → ``"."``; a line sent in answer to a
    ``334`` challenge (a SASL response, or ``*`` to cancel) → ``"AUTH"``: the reply to it belongs to
    the AUTH exchange (RFC 4954 §4).
    """
    return "AUTH" if after_334 else _verb(line)


def explain(reply: int | str, *, command: str | None = None, tls: bool | None = None) -> str:
    """Say in one short sentence what a reply means, in answer to the command it answers.

    A specific enhanced status code (``5.7.11``) is preferred over the three-digit code, whose
    meaning is the fallback; a code nobody registered is explained from its digits
    (RFC 5321 §4.2.1). The command a reply answers changes what some codes mean: ``220`` is the
    greeting when no command was sent, and "begin the TLS handshake" in answer to STARTTLS.

    Args:
        reply: A reply code (``550``), a reply line (``"550 5.1.1 no such user"``) or an enhanced
            status code on its own (``"5.7.8"``).
        command: The command line (or verb) the reply answers: ``""`` for the greeting, ``"."``
            for the end of message data, ``"AUTH"`` for every step of an AUTH exchange (see
            :func:`answered_verb`); ``None`` when unknown.
        tls: Whether the reply came inside TLS, if known.

    Returns:
        For example ``"250 — Requested mail action okay, completed (RFC 5321 §4.2.2)"``, or
        ``""`` if ``reply`` is not an SMTP reply. Never raises.
    """
    if isinstance(reply, bool):
        return ""
    if isinstance(reply, int):
        parsed = parse_reply_line(str(reply))
    elif isinstance(reply, str):
        text = reply.strip()
        if _ENHANCED_RE.fullmatch(text):
            meaning, source = _explain_enhanced(text) or (_ENHANCED_CLASSES[text[0]], "RFC 3463 §2")
            return f"{text} — {meaning} ({source})"
        parsed = parse_reply_line(text)
    else:
        return ""
    if parsed is None:
        return ""
    verb = None if command is None else _verb(command)
    if parsed.enhanced is None:
        return f"{parsed.code} — {_explain_code(parsed.code, verb, tls)}"
    head = f"{parsed.code} {parsed.enhanced}"
    found = _explain_enhanced(parsed.enhanced)
    # A detail digit of 0 means "other or undefined": the basic code then says more.
    generic = parsed.enhanced.endswith(".0")
    if found is None or (generic and parsed.code in REPLY_CODES):
        return f"{head} — {_explain_code(parsed.code, verb, tls)}"
    return f"{head} — {found[0]} ({found[1]})"


# --------------------------------------------------------------------------------------------
# Command arguments and message lines
# --------------------------------------------------------------------------------------------

_CONTROL_NAMES = {0: "NUL byte", 9: "tab", 10: "line feed (LF)", 13: "carriage return (CR)", 127: "DEL"}
# C0 controls, DEL, and the lone surrogates that "surrogateescape" makes of invalid UTF-8.
_BAD_ARGUMENT_CHAR = re.compile("[\x00-\x1f\x7f\udc80-\udcff]")


def argument_problem(text: str) -> str | None:
    """Describe the first control character or invalid UTF-8 byte in a command argument, or None.

    SMTP commands end at CRLF (RFC 5321 §2.3.8), so a CR or LF inside an address would cut the
    command short or smuggle in another; no other control character belongs in one either. The
    client refuses such an argument before sending it, and the lab server answers ``501`` with
    the same words. Text decoded with ``surrogateescape`` (as aiosmtpd decodes arguments)
    carries an invalid UTF-8 byte as a lone surrogate (U+DC80–U+DCFF), named here as the byte.

    Example:
        >>> argument_problem("<bob@example.test>") is None
        True
        >>> argument_problem("<bob\\r\\n@example.test>")
        'carriage return (CR) (0x0D) at position 4; control characters are not allowed'
    """
    match = _BAD_ARGUMENT_CHAR.search(text)
    if match is None:
        return None
    char = ord(match.group())
    if char >= 0xDC80:
        return f"byte 0x{char - 0xDC00:02X} at position {match.start()} is not valid UTF-8"
    name = _CONTROL_NAMES.get(char, "control character")
    return f"{name} (0x{char:02X}) at position {match.start()}; control characters are not allowed"


def bare_line_endings(content: bytes) -> tuple[str, ...]:
    """The line endings other than CRLF in ``content``: ``()``, ``("LF",)``, ``("CR",)`` or both.

    Every line of an SMTP message ends with CRLF (RFC 5321 §2.3.8); a bare LF or CR is what a
    program writing ``\n`` by hand sends, and servers disagree on what it means.
    """
    crlf = content.count(b"\r\n")
    lf, cr = content.count(b"\n") != crlf, content.count(b"\r") != crlf
    return ("LF", "CR") if lf and cr else ("LF",) if lf else ("CR",) if cr else ()


def mail_parameter(extension: str) -> str:
    """The ``MAIL FROM`` parameter that asks for ``extension``, from :data:`MAIL_PARAMETERS`.

    Example:
        >>> mail_parameter("SMTPUTF8"), mail_parameter("8BITMIME")
        ('SMTPUTF8', 'BODY=8BITMIME')
    """
    keyword = next(keyword for keyword, named in MAIL_PARAMETERS.items() if named == extension)
    return keyword if keyword == extension else f"{keyword}={extension}"


_END_OF_HEADERS = re.compile(rb"\r?\n\r?\n")


def extensions_needed(sender: str, recipients: list[str] | tuple[str, ...], content: bytes) -> dict[str, str]:
    """The ESMTP extensions a message needs, each with the reason, in the order to ask for them.

    * ``SMTPUTF8`` (RFC 6531 §3.4): an envelope address, or a header, is not ASCII. Without it a
      server must refuse the address (Postfix: ``501 5.1.7 Bad sender address syntax``), and a
      non-ASCII header would be a protocol violation.
    * ``8BITMIME`` (RFC 6152 §3): some byte of the content has the high bit set (UTF-8 text, a
      ``Content-Transfer-Encoding: 8bit`` body). SMTP itself carries only 7-bit text.

    Args:
        sender: The envelope sender.
        recipients: The envelope recipients.
        content: The message as it will be sent (headers, blank line, body).

    Returns:
        ``{}`` for a plain ASCII message; otherwise e.g. ``{"SMTPUTF8": "the sender
        'jörg@例え.test' is not ASCII", "8BITMIME": "the body has 8-bit bytes"}``.

    Example:
        >>> list(
        ...     extensions_needed(
        ...         "a@example.test", ["b@example.test"], "Subject: Grüße\\r\\n\\r\\nhi".encode()
        ...     )
        ... )
        ['SMTPUTF8', '8BITMIME']
    """
    needed: dict[str, str] = {}
    head, _, body = _split_head(content)
    addresses = [("sender", sender)] + [("recipient", address) for address in recipients]
    odd = next(((role, address) for role, address in addresses if not address.isascii()), None)
    if odd is not None:
        needed["SMTPUTF8"] = f"the {odd[0]} {odd[1]!r} is not ASCII"
    elif not head.isascii():
        line = next(line for line in head.splitlines() if not line.isascii())
        name = line.split(b":", 1)[0].decode("utf-8", "replace")
        needed["SMTPUTF8"] = f"the {name} header is not ASCII"
    if not body.isascii():
        needed["8BITMIME"] = "the body has 8-bit bytes"
    elif not head.isascii():
        needed["8BITMIME"] = "the headers have 8-bit bytes"
    return needed


def _split_head(content: bytes) -> tuple[bytes, bytes, bytes]:
    """Headers, separator, body: the header section ends at the first empty line (RFC 5322 §2.1)."""
    found = _END_OF_HEADERS.search(content)
    if found is None:
        return content, b"", b""
    return content[: found.start()], found.group(), content[found.end() :]


# --------------------------------------------------------------------------------------------
# The session state machine
# --------------------------------------------------------------------------------------------


class State(enum.Enum):
    """Where an SMTP session stands (RFC 5321 §3.3, §4.1.4)."""

    CONNECTED = "connected"  # the greeting arrived; no EHLO/HELO yet
    GREETED = "greeted"  # EHLO/HELO accepted; no message under way
    MAIL = "mail"  # MAIL FROM accepted: a mail transaction is open
    RCPT = "rcpt"  # at least one RCPT TO accepted
    DATA = "data"  # DATA got 354: every line sent now is message content
    CLOSED = "closed"  # QUIT answered with 221, or the server sent 421

    @property
    def meaning(self) -> str:
        """Where the session stands, in words: ``State.MAIL.meaning``."""
        return _STATE_MEANINGS[self]


_STATE_MEANINGS = {
    State.CONNECTED: "the server has greeted (220); the client has not said EHLO or HELO yet",
    State.GREETED: "EHLO or HELO was accepted; no message is under way",
    State.MAIL: "MAIL FROM was accepted: a message has its sender, and no recipient yet",
    State.RCPT: "a recipient was accepted: DATA may follow, or more RCPT TO",
    State.DATA: "DATA got 354: every line sent now is message content, until a line holding only '.'",
    State.CLOSED: "the session is over: QUIT was answered, or the server sent 421",
}


_END_OF_DATA = "."  # the line that ends message content (RFC 5321 §4.1.1.4)
#: Every command, in the order a session usually uses them (the order of ``allowed()``).
COMMAND_ORDER = (
    "EHLO",
    "HELO",
    "STARTTLS",
    "AUTH",
    "MAIL",
    "RCPT",
    "DATA",
    "RSET",
    "VRFY",
    "EXPN",
    "NOOP",
    "HELP",
    "QUIT",
)
_TRANSACTION = (State.MAIL, State.RCPT)


def _verb(command: str) -> str:
    """``"mail from:<a@b>"`` → ``"MAIL"``; the end-of-data line and ``END_DATA`` → ``"."``."""
    words = command.split() if isinstance(command, str) else []
    verb = words[0].upper() if words else ""
    return _END_OF_DATA if verb == "END_DATA" else verb


class SessionState:
    """The state of one SMTP session, as a client sees it.

    Feed it every command sent and the code of the reply with :meth:`advance`; ask
    :meth:`check` before sending to learn whether the command makes sense now and, if not,
    why the server will refuse it. Command names are case-insensitive and may carry their
    arguments (``"MAIL FROM:<a@example.org>"``). While message content is being sent, the only
    command is the end-of-data line ``"."`` (also accepted as ``"END_DATA"``).

    Args:
        tls: ``True`` for a connection that is encrypted from the start (implicit TLS).

    Attributes:
        state: Where the session stands, a :class:`State`.
        tls: Whether the connection is encrypted.
        authenticated: Whether AUTH succeeded (235) in this session.
        esmtp: Whether the last accepted greeting was EHLO (extensions on) rather than HELO.

    Example:
        >>> s = SessionState()
        >>> s.advance("EHLO lab", 250)
        <State.GREETED: 'greeted'>
        >>> s.check("DATA")
        'DATA needs at least one accepted RCPT TO first (RFC 5321 §3.3): ...'
    """

    state: State
    tls: bool
    authenticated: bool
    esmtp: bool

    def __init__(self, *, tls: bool = False) -> None:
        self._tls_from_start = tls
        self.reset()

    def reset(self) -> None:
        """Start over, as on a fresh connection."""
        self.state = State.CONNECTED
        self.tls = self._tls_from_start
        self.authenticated = False
        self.esmtp = False

    def __repr__(self) -> str:
        return (
            f"<SessionState {self.state.name} tls={self.tls} "
            f"authenticated={self.authenticated} esmtp={self.esmtp}>"
        )

    def allowed(self) -> list[str]:
        """Return the commands that make sense now, in the order a session usually uses them."""
        if self.state is State.DATA:
            return [_END_OF_DATA]
        return [name for name in COMMAND_ORDER if self.check(name) is None]

    def check(self, command: str) -> str | None:
        """Say whether ``command`` makes sense now.

        Args:
            command: A command name such as ``"RCPT"``, or a whole command line.

        Returns:
            ``None`` if the command is valid now; otherwise what is wrong and what to send
            first, naming the reply (usually ``503 Bad sequence of commands``) to expect.
        """
        verb = _verb(command)
        if self.state is State.CLOSED:
            return (
                "The session is over (QUIT was answered, or the server sent 421): nothing "
                "more can be sent on this connection. Open a new connection to start again."
            )
        if verb == _END_OF_DATA:
            if self.state is State.DATA:
                return None
            return (
                "A line holding only '.' ends message content, and only after DATA was "
                "answered with 354 (RFC 5321 §4.1.1.4). Here the server reads it as an "
                "unknown command and answers 500."
            )
        if self.state is State.DATA:
            return (
                f"After 354 every line is message content, so {verb or 'this line'} would "
                "become part of the message. First end the content with a line holding "
                "only '.' (RFC 5321 §4.1.1.4); after the server's reply, commands work "
                "again."
            )
        if verb not in COMMANDS:
            return (
                f"{verb or 'An empty line'} is not an SMTP command smtplab knows; the "
                "server answers 500 (command unrecognized). Known commands: " + ", ".join(COMMAND_ORDER) + "."
            )
        rule = getattr(self, f"_check_{verb.lower()}", None)
        return rule() if rule is not None else None

    def advance(self, command: str, code: int) -> State:
        """Update the state from a command and the code of the server's reply.

        A failing reply (4xx or 5xx) changes nothing, except 421 (the server is closing the
        connection) and the reply to the end-of-data line, which ends the message either way.

        Args:
            command: The command sent, e.g. ``"RCPT"``, ``"rcpt to:<bob@example.org>"`` or
                ``"."`` for the end of message content.
            code: The reply code the server answered with.

        Returns:
            The new :attr:`state`.
        """
        verb = _verb(command)
        if self.state is State.CLOSED:
            return self.state
        if code == 421:  # RFC 5321 §3.8: the server closes the channel
            self.state = State.CLOSED
        elif self.state is State.DATA:
            if verb == _END_OF_DATA:
                # RFC 5321 §4.1.1.4: the reply to "." ends the transaction, accepted or not.
                self.state = State.GREETED
        elif verb in ("EHLO", "HELO") and code == 250:
            # RFC 5321 §4.1.4: an accepted greeting also clears any transaction, like RSET.
            self.state, self.esmtp = State.GREETED, verb == "EHLO"
        elif verb == "MAIL" and code == 250:
            self.state = State.MAIL
        elif verb == "RCPT" and code in (250, 251):
            self.state = State.RCPT
        elif verb == "DATA" and code == 354:
            self.state = State.DATA
        elif verb == "RSET" and code == 250 and self.state is not State.CONNECTED:
            self.state = State.GREETED
        elif verb == "STARTTLS" and code == 220:
            # RFC 3207 §4.2: after the handshake both sides forget everything learnt before,
            # so the client must greet again.
            self.state, self.tls = State.CONNECTED, True
            self.esmtp = self.authenticated = False
        elif verb == "AUTH" and code == 235:
            self.authenticated = True
        elif verb == "QUIT" and code == 221:
            self.state = State.CLOSED
        return self.state

    # -- pictures -------------------------------------------------------------------------

    def mermaid(self) -> str:
        """The state machine as a Mermaid ``stateDiagram-v2``, where this session stands marked in words.

        Show it in a notebook with ``IPython.display.Markdown(f"```mermaid\\n{state.mermaid()}\\n```")``.
        """
        from smtplab import render  # only a picture needs the renderer

        return render.state_mermaid(self.state)

    def svg(self) -> str:
        """The state machine as an SVG picture, where this session stands highlighted in words and colour."""
        from smtplab import render

        return render.state_svg(self.state)

    def _repr_html_(self) -> str:
        from smtplab import render

        return render.state_html(self.state, self.allowed())

    # One rule per command whose validity depends on the state. Commands without a rule
    # (EHLO, HELO, RSET, VRFY, EXPN, NOOP, HELP, QUIT) are valid whenever the session is
    # neither closed nor sending message content.

    def _greet_first(
        self, what: str, *, helo: str = "HELO", how: str = "send EHLO (or HELO) to introduce the client"
    ) -> str:
        again = (
            " If you just finished STARTTLS, greet again: TLS starts the session afresh (RFC 3207 §4.2)."
            if self.tls
            else ""
        )
        return (
            f"{what} needs a greeting first: {how} (RFC 5321 §4.1.4). aiosmtpd answers "
            f'503 "Error: send {helo} first".{again}'
        )

    def _check_mail(self) -> str | None:
        if self.state is State.CONNECTED:
            return self._greet_first("MAIL FROM")
        if self.state in _TRANSACTION:
            return (
                "MAIL FROM was already accepted: a mail transaction is open, and each "
                "message has exactly one MAIL FROM (RFC 5321 §4.1.1.2). Finish this message "
                "with RCPT TO and DATA, or send RSET to cancel it, before the next MAIL "
                'FROM. The server answers 503 (aiosmtpd: "Error: nested MAIL command").'
            )
        return None

    def _check_rcpt(self) -> str | None:
        if self.state is State.CONNECTED:
            return self._greet_first("RCPT TO")
        if self.state is State.GREETED:
            return (
                "RCPT TO needs a MAIL FROM first (RFC 5321 §3.3): a message starts with "
                "MAIL FROM:<sender>, then one RCPT TO:<recipient> per recipient. The server "
                'answers 503 (aiosmtpd: "Error: need MAIL command").'
            )
        return None

    def _check_data(self) -> str | None:
        if self.state is State.CONNECTED:
            return self._greet_first("DATA")
        if self.state is State.GREETED:
            return (
                "DATA needs at least one accepted RCPT TO first (RFC 5321 §3.3): send MAIL "
                "FROM, then RCPT TO, then DATA. No message has been started yet, so the "
                'server answers 503 (aiosmtpd: "Error: need RCPT command").'
            )
        if self.state is State.MAIL:
            return (
                "DATA needs at least one accepted RCPT TO first (RFC 5321 §3.3): MAIL FROM "
                "was accepted, but no recipient yet. Send RCPT TO:<recipient> (and check "
                "that it gets 250), then DATA. The server answers 503 "
                '(aiosmtpd: "Error: need RCPT command").'
            )
        return None

    def _check_starttls(self) -> str | None:
        if self.tls:
            hint = " Greet again with EHLO." if self.state is State.CONNECTED else ""
            return (
                "TLS is already active on this connection, and a client must not start it "
                "twice (RFC 3207 §4.2). Servers answer 503 or 554." + hint
            )
        if self.state is State.CONNECTED or not self.esmtp:
            return (
                "STARTTLS is an SMTP extension: send EHLO first (HELO switches extensions "
                "off) and check that the server lists STARTTLS in its reply (RFC 3207 §4)."
            )
        if self.state in _TRANSACTION:
            return (
                "STARTTLS in the middle of a message would throw the message away, because "
                "TLS starts the session afresh (RFC 3207 §4.2). Finish the message with DATA "
                "or cancel it with RSET first; servers usually answer 503."
            )
        return None

    def _check_auth(self) -> str | None:
        if self.state is State.CONNECTED:
            return self._greet_first(
                "AUTH", helo="EHLO", how="send EHLO, whose reply lists the AUTH mechanisms"
            )
        if not self.esmtp:
            return (
                "AUTH is an SMTP extension and HELO switched extensions off: send EHLO "
                "instead (RFC 4954 §4). aiosmtpd answers 500 \"Error: command 'AUTH' not "
                'recognized".'
            )
        if self.authenticated:
            return (
                "This session is already authenticated, and AUTH may succeed only once per "
                'session (RFC 4954 §4). The server answers 503 (aiosmtpd: "Already '
                'authenticated"). To log in as someone else, QUIT and connect again.'
            )
        if self.state in _TRANSACTION:
            return (
                "AUTH is not allowed during a mail transaction (RFC 4954 §4): finish the "
                "message with DATA or cancel it with RSET, then AUTH. A strict server "
                "answers 503 (aiosmtpd 1.4.6 does not check this one)."
            )
        return None


# --------------------------------------------------------------------------------------------
# The machine's moves, for drawing it
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Transition:
    """One move of the session state machine: in ``source``, ``command`` answered ``code`` leads to ``target``.

    Attributes:
        source: The state before the command.
        command: The command's verb, or ``"."`` for the line that ends message content.
        code: The reply that means the command worked (e.g. 354 for DATA).
        target: The state after that reply (the same as ``source`` for NOOP, VRFY …).
    """

    source: State
    command: str
    code: int
    target: State


#: The reply that means a command worked, the one that moves the machine (RFC 5321 §4.3.2).
_WORKED = {
    "EHLO": 250,
    "HELO": 250,
    "STARTTLS": 220,
    "AUTH": 235,
    "MAIL": 250,
    "RCPT": 250,
    "DATA": 354,
    "RSET": 250,
    "VRFY": 250,
    "EXPN": 250,
    "NOOP": 250,
    "HELP": 214,
    "QUIT": 221,
    _END_OF_DATA: 250,
}


def transitions() -> list[Transition]:
    """Every move of :class:`SessionState` on a command that works, found by asking the machine itself.

    For each state (after EHLO where a greeting is needed) and each command valid there, a fresh
    machine is put in that state, told the command got the reply that means it worked, and asked
    where it went: a drawing of the machine can never disagree with the machine. A ``421`` from
    the server closes the session in any state (RFC 5321 §3.8); it is not listed here.
    """
    found = []
    for source in State:
        if source is State.CLOSED:
            continue
        for command in (*COMMAND_ORDER, _END_OF_DATA):
            machine = SessionState()
            machine.state, machine.esmtp = source, source is not State.CONNECTED
            if machine.check(command) is not None:
                continue
            code = _WORKED[command]
            found.append(Transition(source, command, code, machine.advance(command, code)))
    return found
