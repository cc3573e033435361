"""Exercises of ``03-smtp-conversation.ipynb``: an SMTP client from a bare socket, a transcript put
back in order, the reply codes of a transcript filled in.

The two transcripts are real: each is what a fresh private lab server said in a scripted
session (made once per process), so the puzzle a learner sees and the answer a check expects
come from the same conversation, and always match what the lab server says.
"""

from __future__ import annotations

import functools
import random
import re
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from smtplab.client import SyncClient
from smtplab.exercises import wire
from smtplab.exercises.lab import learner_function, run_in_lab
from smtplab.exercises.registry import NotYet, exercise
from smtplab.protocol import SessionState, State, parse_reply_line
from smtplab.server import LabServer

__all__ = ["BLANK", "blanked_transcript", "shuffled_transcript"]

NOTEBOOK = "03-smtp-conversation.ipynb"

#: What stands for a missing reply code in :func:`blanked_transcript`.
BLANK = "___"

_CLIENT_NAME = "client.example.test"

# -- 03.1: an SMTP client with a socket only -------------------------------------------------------

#: The message 03.1's check asks the learner's function to send (its own addresses, not bob's:
#: the function must use what it is given). One line starts with a dot.
SOCKET_SENDER, SOCKET_RECIPIENT = "alice@example.test", "carol@example.test"
SOCKET_LINES = (
    "Subject: Sent with a socket",
    "",
    "Hello Carol,",
    ".this line starts with a dot, which SMTP must not lose",
    "Regards, Alice",
)
_GREETING_DELAY = 0.3  # seconds the tap holds the greeting: a client that does not read it talks first
# Names a client built from a socket alone has no use for.
_LIBRARIES = frozenset({"smtplib", "aiosmtplib", "smtplab", "SMTP", "SMTP_SSL", "SyncClient", "send_message"})


def _names_used(function: Callable[..., Any]) -> set[str]:
    """Every global and attribute name ``function``'s code (nested code included) refers to."""
    code = getattr(function, "__code__", None)
    names: set[str] = set()
    stack = [code] if code is not None else []
    while stack:
        current = stack.pop()
        names.update(current.co_names)
        stack.extend(const for const in current.co_consts if hasattr(const, "co_names"))
    return names


@exercise(
    "03.1",
    notebook=NOTEBOOK,
    title="An SMTP client with a socket only",
    hints={
        "used-a-library": (
            "This exercise is about the bytes themselves: build the client from the socket module "
            "alone (a connection, sendall, recv), without smtplib or smtplab's client."
        ),
        "never-connected": (
            "Your function never connected to the address it was given. It is a (host, port) pair: "
            "open a TCP connection to it first."
        ),
        "greeting-not-read": (
            "The server speaks first. Read its 220 greeting before you send anything: a client that "
            "talks before the greeting is one many servers hang up on (RFC 5321 §3.1)."
        ),
        "line-endings": (
            "Every SMTP line ends with the two bytes CR LF (\\r\\n), commands and message lines "
            "alike; \\n alone is a different line ending. The evidence shows each line as it was sent."
        ),
        "not-waiting": (
            "Send one command, then read its whole reply before the next: without PIPELINING in the "
            "EHLO reply a client waits for each reply (RFC 5321 §4.3.1), and after DATA it waits for "
            "the 354 before the message. A reply can span several lines: the last one has a space "
            "after its code."
        ),
        "no-end-of-data": (
            "The server is still reading the message: it ends only at a line holding a single dot, "
            "right after the CR LF of the last message line (RFC 5321 §4.1.1.4)."
        ),
        "refused": (
            "The server refused a command: its reply and the meaning of its code are below. Check the "
            "order (a greeting, MAIL FROM, RCPT TO, DATA) and the form, e.g. MAIL FROM:<address>."
        ),
        "incomplete": (
            "The server never heard a whole transaction: a message takes MAIL FROM, then RCPT TO, "
            "then DATA, each after the reply to the one before."
        ),
        "dot-not-doubled": (
            "A message line that starts with '.' needs one more '.' in front on the wire "
            "(dot-stuffing, RFC 5321 §4.5.2); the server takes it away again. Without it the dot is "
            "lost — and a line holding only '.' would end the message there."
        ),
        "several-messages": "The server received more than one message: send the content once, in one DATA.",
        "ignored-arguments": (
            "Use the sender and the recipient your function is given: the check calls it with "
            "addresses of its own."
        ),
        "content-differs": (
            "The message arrived, but not as the lines given: send each of them, in order, with "
            "nothing added or lost (the empty line between the headers and the body is one of them)."
        ),
        "no-quit": "End the session: send QUIT and read the 221 before you close the socket.",
    },
)
def socket_client(send_with_socket: Any) -> str:
    """``send_with_socket(address, sender, recipient, lines)`` sends one message, socket only."""
    send = learner_function(send_with_socket, "address", "sender", "recipient", "lines")
    libraries = sorted(_names_used(send) & _LIBRARIES)
    if libraries:
        raise NotYet("used-a-library", f"your function uses {', '.join(libraries)}.")
    trial = run_in_lab(
        lambda address: send(address, SOCKET_SENDER, SOCKET_RECIPIENT, list(SOCKET_LINES)),
        give="address",
        greeting_delay=_GREETING_DELAY,
        allow_errors=True,
    )
    evidence = wire.heard(trial)
    if not trial.connections:
        trial.raise_for_trouble()
        raise NotYet("never-connected", "nothing connected to the address your function was given.")
    if wire.early_talkers(trial):
        first = wire.dialogues(trial)[0].lines[:1]
        said = f" ({first[0].shown})" if first else ""
        raise NotYet(
            "greeting-not-read", f"your client sent its first line{said} before the greeting reached it."
        )
    endings = wire.bad_line_endings(trial)
    if endings:
        raise NotYet("line-endings", str(endings[0]) + ".", evidence=[str(problem) for problem in endings])
    refused = wire.refusals(trial)  # before the rest: a refusal throws everything after it off
    if refused:
        first = refused[0]
        meaning = first.reply[-1].meaning if first.reply else ""
        raise NotYet("refused", f"the server answered {first}. {meaning}", evidence=evidence)
    for finding, mistake in (
        (wire.unawaited_replies(trial), "not-waiting"),
        (wire.unended_data(trial), "no-end-of-data"),
    ):
        if finding:
            raise NotYet(mistake, str(finding[0]) + ".", evidence=[str(problem) for problem in finding])
    trial.raise_for_trouble()
    missing = wire.missing_in_order(trial, ["MAIL", "RCPT", "DATA"])
    if missing is not None or not trial.messages:
        raise NotYet("incomplete", f"the server never heard {missing or 'a message end'}.", evidence=evidence)
    unstuffed = wire.unstuffed_dots(trial)
    if unstuffed:
        raise NotYet("dot-not-doubled", str(unstuffed[0]) + ".", evidence=evidence)
    messages = trial.messages
    if len(messages) > 1:
        raise NotYet("several-messages", f"the server received {len(messages)} messages.", evidence=evidence)
    message = messages[0]
    if message.mail_from != SOCKET_SENDER or message.rcpt_tos != (SOCKET_RECIPIENT,):
        raise NotYet(
            "ignored-arguments",
            f"the check asked for {SOCKET_SENDER} to {SOCKET_RECIPIENT}; the envelope says "
            f"{message.mail_from} to {', '.join(message.rcpt_tos)}.",
            evidence=evidence,
        )
    expected = ("\r\n".join(SOCKET_LINES) + "\r\n").encode()
    if message.raw != expected:
        raise NotYet(
            "content-differs",
            f"the server stored {message.raw!r}; the lines given make {expected!r}.",
            evidence=evidence,
        )
    if wire.sessions_without_quit(trial):
        raise NotYet("no-quit", "the connection ended without QUIT.", evidence=evidence)
    commands = ", ".join(wire.commands(trial))
    return (
        f"the server heard {commands}, each after the reply before it, every line ended by CR LF; the "
        f"dotted line went out as '..this line…' and arrived as '.this line…', and the message ended "
        "with CR LF . CR LF. That is an SMTP client."
    )


# -- the two transcripts ---------------------------------------------------------------------------

_LUNCH = ("Subject: Lunch?", "", "Noon, at the usual place?")


def _lines_of(script: Callable[[SyncClient], object], content: Sequence[str]) -> tuple[str, ...]:
    """What a fresh private lab server heard and said in ``script``: "C: …" and "S: …" lines,
    the message content (recorded by its size) given back as the lines that were sent, the
    message id as the first one's (see ``_QUEUE_ID``)."""

    def session(server: LabServer) -> None:
        with SyncClient(server, name=_CLIENT_NAME) as client:
            script(client)

    trial = run_in_lab(session)
    (transcript,) = trial.transcripts
    lines: list[str] = []
    for line in transcript.lines:
        if line.sender == "event":
            if line.text.startswith("message data"):
                lines += [f"C: {text}" for text in content]
            continue
        text = _QUEUE_ID.sub("queued as L000001", line.text)
        lines.append(f"{'C' if line.sender == 'client' else 'S'}: {text}")
    return tuple(lines)


# The id in "250 … queued as L000042" counts the messages this process has captured: the puzzles
# show the first one's, so they read the same in every kernel (and in a grader's).
_QUEUE_ID = re.compile(r"queued as \S+")


def _lunch(client: SyncClient) -> None:
    client.ehlo()
    client.mail("alice@example.test")
    client.rcpt("bob@example.test")
    client.rcpt("carol@example.test")
    client.raw("DATA")
    for text in _LUNCH:
        client.data_line(text)
    client.end_data()


@functools.cache
def _ordered() -> tuple[str, ...]:
    return _lines_of(_lunch, _LUNCH)


def shuffled_transcript() -> list[str]:
    """03.2's puzzle: the lines of a real SMTP session, shuffled ("C: " client, "S: " server)."""
    lines = list(_ordered())
    random.Random(3).shuffle(lines)
    return lines


def _exchanges(lines: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """Each client line of the right order and the reply it got (message content: no reply)."""
    replies: dict[str, tuple[str, ...]] = {}
    command, reply = None, []
    for line in lines[1:]:
        if line.startswith("C: "):
            if command is not None:
                replies[command] = tuple(reply)
            command, reply = line, []
        else:
            reply.append(line)
    if command is not None:
        replies[command] = tuple(reply)
    return replies


def _code(line: str) -> int:
    parsed = parse_reply_line(line[3:])
    return parsed.code if parsed is not None else 0


def _verb(line: str) -> str:
    text = line[3:].strip()
    return "." if text == "." else (text.split() or [""])[0].upper()


@exercise(
    "03.2",
    notebook=NOTEBOOK,
    title="Put a shuffled transcript back in order",
    hints={
        "not-a-list": "Answer with a list of the transcript's lines (strings), in the order you put them.",
        "changed-lines": (
            "Use every line of the shuffled transcript exactly once, as it is: reorder them, do not "
            "add, drop or edit any."
        ),
        "greeting-first": "Who speaks first in SMTP? Not the client: it waits for the server's greeting.",
        "multiline": (
            "A multi-line reply keeps its lines together, and its last line is the one with a space "
            "after the code; every line before it has a hyphen there."
        ),
        "command-without-reply": (
            "Each command gets its reply before the next command is sent: a client line, then the "
            "server's answer to it."
        ),
        "wrong-reply": (
            "That reply answers another command. Read what each reply says, and which command it "
            "could be the answer to (354 invites the message; 221 says goodbye)."
        ),
        "sequence": (
            "The commands are in an order the server refuses: follow the state machine (greeting, "
            "EHLO, MAIL FROM, RCPT TO, DATA, the message, QUIT)."
        ),
        "content-order": (
            "The message itself is in the wrong order: headers first, then the empty line, then the "
            "body, then the line holding only '.'."
        ),
    },
)
def transcript_order(ordered: Any) -> str:
    """``ordered``: the lines of :func:`shuffled_transcript`, back in the order they were said."""
    right = _ordered()
    if not isinstance(ordered, (list, tuple)) or not all(isinstance(line, str) for line in ordered):
        raise NotYet("not-a-list", f"you passed {type(ordered).__name__}, not a list of lines.")
    given, wanted = Counter(ordered), Counter(right)
    if given != wanted:
        missing, extra = list((wanted - given).elements()), list((given - wanted).elements())
        said = "; ".join(
            part
            for part in (
                f"missing: {', '.join(map(repr, missing))}" if missing else "",
                f"not in the transcript (or once too often): {', '.join(map(repr, extra))}" if extra else "",
            )
            if part
        )
        raise NotYet("changed-lines", f"your lines differ from the shuffled ones — {said}.")
    if not ordered[0].startswith("S: 220"):
        raise NotYet("greeting-first", f"your first line is {ordered[0]!r}.")
    replies = _exchanges(right)
    content = [line for line in right if _is_content(line, right)]
    machine = SessionState()
    evidence = [f"{n:2}  {line}" for n, line in enumerate(ordered, 1)]
    index = 1
    while index < len(ordered):
        if machine.state is State.DATA:  # the message, up to the line holding only "."
            end = ordered.index("C: .", index) if "C: ." in ordered[index:] else len(ordered)
            if list(ordered[index:end]) != content or end == len(ordered):
                shown = [line[3:] for line in ordered[index:end]]
                raise NotYet(
                    "content-order", f"after the 354 your message reads {shown!r}.", evidence=evidence
                )
            index = end
        line = ordered[index]
        where = f"line {index + 1} ({line!r})"
        if line.startswith("S: "):
            raise NotYet("wrong-reply", f"{where} is a reply with no command before it.", evidence=evidence)
        problem = machine.check(line[3:])
        if problem is not None:
            raise NotYet("sequence", f"{where}: {problem}", evidence=evidence)
        end = index + 1
        while end < len(ordered) and ordered[end].startswith("S: "):
            end += 1
        reply = tuple(ordered[index + 1 : end])
        if not reply:
            raise NotYet(
                "command-without-reply", f"{where} gets no reply before the next line.", evidence=evidence
            )
        own = replies[line]
        if reply != own:
            if sorted(reply) == sorted(own):
                raise NotYet(
                    "multiline", f"the reply to {where} has its lines out of order.", evidence=evidence
                )
            raise NotYet("wrong-reply", f"{where} is answered {' / '.join(reply)!r}.", evidence=evidence)
        machine.advance(_verb(line), _code(reply[-1]))
        index = end
    return (
        f"all {len(ordered)} lines in an order the session could have had: the greeting, then each command "
        "followed by its own reply, the message between the 354 and the '.', and QUIT last."
    )


def _is_content(line: str, lines: Sequence[str]) -> bool:
    """Whether ``line`` of the right order is message content (between the 354 and the '.')."""
    start = next(n for n, text in enumerate(lines) if text.startswith("S: 354"))
    end = lines.index("C: .")
    return line in lines[start + 1 : end]


# -- 03.3: reply codes -------------------------------------------------------------------------------


def _codes_session(client: SyncClient) -> None:
    client.ehlo()
    client.mail("alice@example.test")
    client.raw("DATA")  # too early: no recipient yet
    client.rcpt("bob@example.test")
    client.raw("DATA")
    for text in _LUNCH:
        client.data_line(text)
    client.end_data()
    client.vrfy("carol@example.test")


@functools.cache
def _with_codes() -> tuple[str, ...]:
    return _lines_of(_codes_session, _LUNCH)


def _blank_code(line: str) -> str:
    return f"S: {BLANK}{line[6:]}" if line.startswith("S: ") and _code(line) else line


def blanked_transcript() -> list[str]:
    """03.3's puzzle: a real SMTP session with every reply code replaced by ``___``."""
    return [_blank_code(line) for line in _with_codes()]


def _replies() -> list[tuple[str, int, str]]:
    """Each reply of 03.3's session: (the command it answers, its code, its last line)."""
    found, command = [], "(the connection opened)"
    for line in _with_codes():
        if line.startswith("C: "):
            command = line[3:]
        elif parse_reply_line(line[3:]) is not None and parse_reply_line(line[3:]).last:  # type: ignore[union-attr]
            found.append((command, _code(line), line[3:]))
    return found


_SPECIFIC = {  # the mistake a wrong code is taken for, by the code it should have been
    220: "greeting",
    354: "intermediate",
    503: "sequence",
    252: "vrfy",
    221: "goodbye",
}


@exercise(
    "03.3",
    notebook=NOTEBOOK,
    title="Fill in the reply codes",
    hints={
        "not-a-list": "Answer with a list of numbers, one per reply, e.g. [220, 250, …].",
        "wrong-count": (
            "Give one code per reply, in order. A multi-line reply (several lines, the same code on "
            "each) counts once."
        ),
        "enhanced-disagrees": (
            "Some replies carry an enhanced status code after the reply code, like 2.1.5: its first "
            "digit is the reply code's first digit, so it tells you the class."
        ),
        "greeting": (
            "The first reply is the greeting, sent before any command: its code says the service is "
            "ready (the 22x codes are about the connection)."
        ),
        "intermediate": (
            "After DATA nothing has been done yet: the server invites the message. Which first digit "
            "means 'go on, I am waiting for more'?"
        ),
        "sequence": (
            "That command came too early, and the server refused it for good: a 5yz code, the one "
            "section 3 met when DATA came before any recipient ('bad sequence of commands'). "
            "protocol.explain(code) says what any code you guess means."
        ),
        "vrfy": (
            "VRFY got a positive answer that promises nothing: the server neither confirms nor denies "
            "the user. It is a 2yz code, but not 250."
        ),
        "goodbye": ("QUIT's reply is about the connection (second digit 2): the server closes the channel."),
        "wrong-code": (
            "Look at each reply's words: 2yz means done, 3yz go on, 4yz not now, 5yz no. The second "
            "digit says what it is about (0 syntax, 1 information, 2 connection, 5 mail system)."
        ),
    },
)
def reply_codes(codes: Any) -> str:
    """``codes``: the reply codes of :func:`blanked_transcript`, one per reply, in order."""
    replies = _replies()
    if isinstance(codes, (str, bytes)) or not isinstance(codes, (list, tuple)):
        raise NotYet("not-a-list", f"you passed {type(codes).__name__}, not a list of codes.")
    try:
        given = [int(code) for code in codes]
    except (TypeError, ValueError):
        raise NotYet("not-a-list", f"{list(codes)!r} holds something that is not a number.") from None
    if len(given) != len(replies):
        raise NotYet("wrong-count", f"you gave {len(given)} codes for {len(replies)} replies.")
    evidence = [
        f"{'ok   ' if code == want else 'WRONG'} {code} for the reply to {command}: {BLANK}{text[3:]}"
        for code, (command, want, text) in zip(given, replies, strict=True)
    ]
    wrong = [
        (n, code, reply)
        for n, (code, reply) in enumerate(zip(given, replies, strict=True), 1)
        if code != reply[1]
    ]
    if not wrong:
        return (
            f"all {len(replies)} codes right: the greeting, a multi-line 250 to EHLO, a 503 for DATA "
            "out of order, 354 to go on, and the rest."
        )
    for n, code, (command, _, text) in wrong:
        enhanced = parse_reply_line(text)
        if enhanced is not None and enhanced.enhanced and str(code)[:1] != enhanced.enhanced[0]:
            raise NotYet(
                "enhanced-disagrees",
                f"reply {n} (to {command}) carries {enhanced.enhanced}, and you wrote {code}.",
                evidence=evidence,
            )
    n, code, (command, want, _) = wrong[0]
    mistake = _SPECIFIC.get(want, "wrong-code")
    others = f" ({len(wrong) - 1} more below)" if len(wrong) > 1 else ""
    raise NotYet(mistake, f"reply {n}, to {command}, is not {code}{others}.", evidence=evidence)
