"""Predicates for checks: what the learner's code said to the lab server, and how it said it.

Two sources, both on a :class:`~smtplab.exercises.lab.Trial`:

- the lab server's transcripts — what the server understood, one line per command or reply,
  with TLS marked — for command order, refusals, QUIT, TLS before AUTH (any ``give=``);
- the wire tap's bytes (``run_in_lab(..., give="address")``) — exactly what was sent, and in
  which order the two sides spoke — for line endings, dot-stuffing, the end of the message data,
  talking before the greeting, and sending a command before the reply to the one before.

Each predicate returns data (lines, problems, names), never a verdict: the check decides which
finding is the mistake, and which hint it deserves. The module is pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from smtplab.protocol import parse_reply_line
from smtplab.transcript import MASK

if TYPE_CHECKING:
    from smtplab.exercises.lab import Trial
    from smtplab.exercises.tap import TappedConnection
    from smtplab.transcript import Line

__all__ = [
    "Dialogue",
    "Exchange",
    "Problem",
    "WireLine",
    "auth_in_clear",
    "bad_line_endings",
    "commands",
    "dialogues",
    "early_talkers",
    "exchanges",
    "heard",
    "missing_in_order",
    "refusals",
    "sessions_without_quit",
    "unawaited_replies",
    "unended_data",
    "unstuffed_dots",
]

_LINES = re.compile(rb"[^\n]*\n|[^\n]+$")
_ENDING_BYTES = {"CRLF": 2, "LF": 1, "CR": 1, "": 0}


def _verb(text: str) -> str:
    words = text.split()
    return words[0].upper() if words else ""


# -- what the server understood (transcripts) ---------------------------------------------------


@dataclass(frozen=True)
class Exchange:
    """A line the client sent and the server's reply to it, from the server's transcript.

    Attributes:
        session: Which session (1 = the first connection).
        command: The client's line (an AUTH answer is masked when shown).
        reply: The server's reply lines (empty if it never answered).
    """

    session: int
    command: Line
    reply: tuple[Line, ...]

    @property
    def verb(self) -> str:
        """The command word, upper-case (``"MAIL"``); ``""`` for an AUTH answer."""
        return "" if self.command.secret_from == 0 else _verb(self.command.text)

    @property
    def code(self) -> int | None:
        """The reply code, or None if the server did not answer."""
        return self.reply[-1].code if self.reply else None

    def __str__(self) -> str:
        reply = " / ".join(line.masked for line in self.reply) or "(no reply)"
        return f"{self.command.masked} → {reply}"


def exchanges(trial: Trial) -> list[Exchange]:
    """Every line the client sent and the server's answer, session by session, in order."""
    found = []
    for session, transcript in enumerate(trial.transcripts, 1):
        command: Line | None = None
        reply: list[Line] = []
        for line in transcript.lines:
            if line.sender == "client":
                if command is not None:
                    found.append(Exchange(session, command, tuple(reply)))
                command, reply = line, []
            elif line.sender == "server" and command is not None:
                reply.append(line)
        if command is not None:
            found.append(Exchange(session, command, tuple(reply)))
    return found


def commands(trial: Trial) -> list[str]:
    """The command words the server heard, in order (``["EHLO", "MAIL", "RCPT", ...]``).

    AUTH answers and the ``.`` that ends message data are left out.
    """
    return [e.verb for e in exchanges(trial) if e.verb and e.command.text != "."]


def missing_in_order(trial: Trial, expected: Sequence[str]) -> str | None:
    """The first of ``expected`` command words the server did not hear in that order, or None.

    Other commands may come in between: ``["EHLO", "MAIL", "RCPT", "DATA", "QUIT"]`` accepts
    a ``NOOP`` anywhere.
    """
    heard_words = iter(commands(trial))
    for word in expected:
        if not any(verb == word.upper() for verb in heard_words):
            return word.upper()
    return None


def refusals(trial: Trial) -> list[Exchange]:
    """Exchanges the server answered with 4xx or 5xx (each with its command)."""
    return [e for e in exchanges(trial) if e.code is not None and e.code >= 400]


def sessions_without_quit(trial: Trial) -> list[int]:
    """Sessions (1-based) that ended without the client sending QUIT (RFC 5321 §4.1.1.10)."""
    quitted = {e.session for e in exchanges(trial) if e.verb == "QUIT"}
    return [n for n in range(1, len(trial.transcripts) + 1) if n not in quitted]


def auth_in_clear(trial: Trial) -> list[Exchange]:
    """AUTH commands sent before TLS was on (RFC 4954 §4: credentials need TLS first)."""
    return [e for e in exchanges(trial) if e.verb == "AUTH" and not e.command.tls]


def heard(trial: Trial) -> list[str]:
    """The server's transcripts as text lines (secrets masked): evidence for a verdict."""
    lines: list[str] = []
    transcripts = trial.transcripts
    for number, transcript in enumerate(transcripts, 1):
        if len(transcripts) > 1:
            lines.append(f"session {number}:")
        lines += transcript.text(annotate=False).splitlines()
    return lines


# -- what crossed the wire (the tap) -----------------------------------------------------------


@dataclass(frozen=True)
class WireLine:
    """One line the client sent, byte for byte, as the tap saw it.

    Attributes:
        raw: The bytes, with whatever line ending was sent (none for an unfinished last line).
        kind: ``"command"``, ``"auth"`` (an answer to a 334 challenge), ``"data"`` (message
            content after DATA's 354) or ``"end-of-data"`` (the line holding the single ``.``).
        number: Its position among the client's lines on this connection, from 1.
        connection: Which connection through the tap, from 1.
        reply: The code of the server's reply to it, if any (data lines get none).
        waited: Whether every reply it had to wait for (the greeting, and the reply to each
            line before it that gets one) had reached the client when it was sent.
    """

    raw: bytes
    kind: str
    number: int
    connection: int = 1
    reply: int | None = None
    waited: bool = True

    @property
    def ending(self) -> str:
        """``"CRLF"``, ``"LF"`` (a bare line feed), ``"CR"`` or ``""`` (no line ending at all)."""
        if self.raw.endswith(b"\r\n"):
            return "CRLF"
        if self.raw.endswith(b"\n"):
            return "LF"
        return "CR" if self.raw.endswith(b"\r") else ""

    @property
    def body(self) -> bytes:
        """The line without its ending."""
        return self.raw[: len(self.raw) - _ENDING_BYTES[self.ending]]

    @property
    def text(self) -> str:
        """The line without its ending, decoded (undecodable bytes kept as escapes)."""
        return self.body.decode("utf-8", "backslashreplace")

    @property
    def shown(self) -> str:
        """The line with its ending made visible, e.g. ``'EHLO me\\n'`` (AUTH answers masked)."""
        if self.kind == "auth":
            return repr(MASK + self.raw[len(self.body) :].decode("ascii"))
        return repr(self.raw.decode("utf-8", "backslashreplace"))

    def __str__(self) -> str:
        where = f"connection {self.connection}, " if self.connection > 1 else ""
        return f"{where}line {self.number} ({self.kind}): {self.shown}"


@dataclass(frozen=True)
class Problem:
    """Something wrong with one line on the wire, said in words."""

    line: WireLine
    what: str

    def __str__(self) -> str:
        return f"{self.line}: {self.what}"


@dataclass(frozen=True)
class Dialogue:
    """One tapped connection, taken apart.

    Attributes:
        number: Which connection, from 1.
        lines: The client's lines up to TLS (after STARTTLS everything is encrypted).
        replies: The codes of the server's complete replies, greeting first.
        encrypted: STARTTLS was accepted, or the server speaks implicit TLS: what was encrypted
            is not readable here.
        spoke_before_greeting: The client sent something before the greeting reached it.
    """

    number: int
    lines: tuple[WireLine, ...]
    replies: tuple[int, ...]
    encrypted: bool
    spoke_before_greeting: bool


def _reply_codes(data: bytes) -> list[int]:
    codes = []
    for raw in _LINES.findall(data):
        parsed = parse_reply_line(raw.decode("utf-8", "replace"))
        if parsed is not None and parsed.last:
            codes.append(parsed.code)
    return codes


def _replies_heard(connection: TappedConnection) -> list[tuple[int, int]]:
    """For each chunk the client sent: (where it starts in the client's bytes, the number of
    complete replies the client had been given by then)."""
    marks, sent, heard = [], 0, b""
    for sender, data in connection.chunks:
        if sender == "client":
            marks.append((sent, len(_reply_codes(heard))))
            sent += len(data)
        else:
            heard += data
    return marks


def _dialogue(number: int, connection: TappedConnection, *, implicit_tls: bool = False) -> Dialogue:
    if implicit_tls:  # RFC 8314 §3: encrypted from the first byte, nothing to read here
        return Dialogue(number, (), (), True, False)
    replies = _reply_codes(connection.sent_by("server"))
    answers = iter(replies[1:])  # the first reply is the greeting
    marks = _replies_heard(connection)
    lines: list[WireLine] = []
    state, encrypted = "command", False
    offset, due = 0, 1  # where the line starts; the replies it must wait for (the greeting first)
    for count, raw in enumerate(_LINES.findall(connection.sent_by("client")), 1):
        heard = max((replies_then for start, replies_then in marks if start <= offset), default=0)
        waited = heard >= due
        offset += len(raw)
        if state == "data":
            if raw.rstrip(b"\r\n") == b".":
                lines.append(WireLine(raw, "end-of-data", count, number, next(answers, None), waited))
                state, due = "command", due + 1
            else:
                lines.append(WireLine(raw, "data", count, number, waited=waited))
            continue
        reply = next(answers, None)
        line = WireLine(raw, state, count, number, reply, waited)
        due += 1
        lines.append(line)
        verb = _verb(line.text) if state == "command" else ""
        if verb == "DATA" and reply in (354, None):  # no reply yet: the client meant data next
            state = "data"
        elif state == "auth" or verb == "AUTH":
            state = "auth" if reply == 334 else "command"
        elif verb == "STARTTLS" and reply == 220:
            encrypted = True  # RFC 3207 §4: the TLS handshake starts right after the 220
            break
    return Dialogue(number, tuple(lines), tuple(replies), encrypted, connection.spoke_before_greeting)


def dialogues(trial: Trial) -> list[Dialogue]:
    """Each connection through the wire tap, taken apart into lines.

    Raises:
        ValueError: The trial did not use the tap (run it with ``give="address"``).
    """
    if not trial.tapped:
        raise ValueError("this predicate reads the wire: run the code with run_in_lab(..., give='address')")
    implicit = trial.server.tls == "implicit"
    return [
        _dialogue(number, connection, implicit_tls=implicit)
        for number, connection in enumerate(trial.connections, 1)
    ]


def _client_lines(trial: Trial) -> Iterable[WireLine]:
    for dialogue in dialogues(trial):
        yield from dialogue.lines


def bad_line_endings(trial: Trial) -> list[Problem]:
    """Lines not ended by CRLF, or with a bare CR inside (RFC 5321 §2.3.8).

    A line with no ending at all is one the server is still waiting to see the end of.
    """
    problems = []
    for line in _client_lines(trial):
        if line.ending == "LF":
            problems.append(Problem(line, "ends with a bare LF (\\n); SMTP lines end with CRLF (\\r\\n)"))
        elif line.ending == "CR":
            problems.append(Problem(line, "ends with a bare CR (\\r); SMTP lines end with CRLF (\\r\\n)"))
        elif line.ending == "":
            problems.append(Problem(line, "has no line ending, so the server is still waiting for its end"))
        elif b"\r" in line.body:
            problems.append(Problem(line, "has a bare CR (\\r) inside; CR may only come right before LF"))
    return problems


def unstuffed_dots(trial: Trial) -> list[Problem]:
    """Message lines starting with a single ``.`` (RFC 5321 §4.5.2: the sender doubles it).

    The server removes the first dot of every such line, so ``.hidden`` arrives as ``hidden``.
    A line that starts with ``..`` may be a correctly stuffed one and is not reported; compare
    the captured message with what was meant to be sent to be sure.
    """
    return [
        Problem(
            line, "starts with a single '.', which the server removes: a leading dot is doubled on the wire"
        )
        for line in _client_lines(trial)
        if line.kind == "data" and line.raw.startswith(b".") and not line.raw.startswith(b"..")
    ]


def unended_data(trial: Trial) -> list[Problem]:
    """Message data that did not end with exactly ``CRLF . CRLF`` (RFC 5321 §4.1.1.4).

    Reports an end line other than ``.\\r\\n``, a line before it not ended by CRLF, and data
    that never got an end line at all (the server is still waiting).
    """
    problems = []
    for dialogue in dialogues(trial):
        before: WireLine | None = None
        in_data = False
        for line in dialogue.lines:
            if line.kind == "data":
                in_data = True
            elif line.kind == "end-of-data":
                if line.raw != b".\r\n":
                    problems.append(Problem(line, "ends the message with something other than '.\\r\\n'"))
                elif before is not None and before.kind == "data" and before.ending != "CRLF":
                    problems.append(
                        Problem(before, "is the last message line, and does not end with CRLF before the '.'")
                    )
                in_data = False
            elif line.kind == "command" and _verb(line.text) == "DATA" and line.reply in (354, None):
                in_data = True
            before = line
        if in_data and not dialogue.encrypted and before is not None:
            problems.append(
                Problem(before, "is the last line sent: the message never got its end line '.\\r\\n'")
            )
    return problems


def unawaited_replies(trial: Trial) -> list[Problem]:
    """Lines sent before the reply they had to wait for had reached the client.

    Without PIPELINING (RFC 2920) a client sends a command, then waits for its reply before the
    next (RFC 5321 §4.3.1); after ``DATA`` it waits for ``354`` before the message. Lines sent
    before the greeting are :func:`early_talkers`, not reported here. The lab server still
    answers such a client, in order; stricter servers refuse it.
    """
    problems = []
    for dialogue in dialogues(trial):
        before: WireLine | None = None
        for line in dialogue.lines:
            content = line.kind in ("data", "end-of-data")  # all of it waits for the one 354
            first_content = content and before is not None and before.kind == "command"
            if not line.waited and line.number > 1 and (first_content or not content):
                what = "the 354 reply to DATA" if content else "the reply to the line before it"
                problems.append(Problem(line, f"was sent before {what} had arrived"))
            before = line
    return problems


def early_talkers(trial: Trial) -> list[Dialogue]:
    """Connections whose client sent something before the server's greeting reached it.

    Such a client did not read the greeting first (RFC 5321 §3.1: the client waits for the
    220). Needs ``run_in_lab(..., give="address", greeting_delay=...)``.

    Raises:
        ValueError: The trial ran without a greeting delay, so an early talker could be missed.
    """
    if trial.tapped and trial.greeting_delay <= 0:
        raise ValueError("early_talkers() needs run_in_lab(..., give='address', greeting_delay=0.3) or so")
    if trial.server.tls == "implicit":
        raise ValueError(
            "with implicit TLS the client speaks first (its TLS hello): there is no plain greeting to wait for"
        )
    return [d for d in dialogues(trial) if d.spoke_before_greeting]
