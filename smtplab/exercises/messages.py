"""Exercises of ``04-messages-and-mime.ipynb``: a message's MIME structure, and its hidden recipients."""

from __future__ import annotations

import email.utils
from collections.abc import Iterable
from email.message import Message
from typing import Any

from smtplab import mime
from smtplab.client import SyncClient
from smtplab.exercises import wire
from smtplab.exercises.lab import learner_function, run_in_lab
from smtplab.exercises.registry import NotYet, exercise
from smtplab.mailbox import CapturedMessage
from smtplab.server import LabServer

NOTEBOOK = "04-messages-and-mime.ipynb"


# -- 04.1: a multipart/alternative message with an attachment --------------------------------------


def _leaves(part: Message) -> list[Message]:
    return [p for p in part.walk() if not p.is_multipart()]


def _is_attachment(part: Message) -> bool:
    return part.get_content_disposition() == "attachment" or (
        part.get_filename() is not None and part.get_content_disposition() != "inline"
    )


def _structure_mistake(message: Message) -> tuple[str, str] | None:
    """What keeps ``message`` from being text + HTML alternatives plus an attachment, or None."""
    html = [p for p in _leaves(message) if p.get_content_type() == "text/html"]
    if not html:
        return "no-html", "the message has no text/html part."
    alternative = next((p for p in message.walk() if p.get_content_type() == "multipart/alternative"), None)
    if alternative is None:
        return (
            "not-alternative",
            "no multipart/alternative part offers the text and the HTML as choices.",
        )
    choices = [p.get_content_type() for p in alternative.iter_parts()]  # type: ignore[attr-defined]
    html_inside = any(p.get_content_type() == "text/html" for p in alternative.walk())
    if "text/plain" not in choices or not html_inside:
        return (
            "not-alternative",
            f"the multipart/alternative part holds {', '.join(choices)}, not the text and the HTML.",
        )
    if choices.index("text/plain") > max(n for n, c in enumerate(choices) if c != "text/plain"):
        return "html-first", f"the alternatives come in the order {', '.join(choices)}."
    inside = [p for p in alternative.walk() if not p.is_multipart() and _is_attachment(p)]
    if inside:
        return "attachment-inside", "an attachment sits inside the multipart/alternative part."
    attached = [p for p in _leaves(message) if _is_attachment(p)]
    if not attached:
        return "no-attachment", "nothing is attached (no part with Content-Disposition: attachment)."
    if any(p.get_filename() is None for p in attached):
        return "no-filename", "an attachment has no file name."
    return None


def _addresses_missing(message: Message) -> str | None:
    """Which of From / To is missing (or holds no address), in words; None when both are there."""
    to = [a for _, a in email.utils.getaddresses([str(v) for v in message.get_all("To", [])]) if a]
    missing = [name for name, ok in (("From", message["From"] is not None), ("To", bool(to))) if not ok]
    return " and ".join(f"{name} header" for name in missing) or None


@exercise(
    "04.1",
    notebook=NOTEBOOK,
    title="Text, HTML and an attachment",
    hints={
        "not-a-message": (
            "Return an email.message.EmailMessage: the object section 2 builds with EmailMessage() "
            "and fills with set_content() and its friends, not a string of headers."
        ),
        "no-addresses": (
            "The message needs a From header and a To header: the check sends it, and takes its "
            "envelope from them."
        ),
        "no-html": (
            "Add an HTML version of the text as an *alternative*: EmailMessage has a method for that "
            "(section 2), which makes a multipart/alternative part."
        ),
        "not-alternative": (
            "The HTML must be an alternative to the plain text — the same content, either to be "
            "shown — not a separate part or an attachment. Set the text first, then add the HTML "
            "with the method that adds alternatives."
        ),
        "html-first": (
            "Alternatives go from plainest to richest: the reader shows the *last* one it can "
            "(RFC 2046 §5.1.4). Set the plain text as the content, then add the HTML."
        ),
        "attachment-inside": (
            "The attachment is inside the multipart/alternative part, as if it were a third way to "
            "show the same text. Attach it to the message itself, after both bodies are set."
        ),
        "no-attachment": (
            "Attach a file too: any bytes will do, with a content type and a file name (section 2 "
            "attaches a small CSV)."
        ),
        "no-filename": "Give the attachment a file name (filename=...): a mail program shows and saves it by that name.",
    },
)
def text_html_and_attachment(build_message: Any) -> str:
    """``build_message()`` returns an EmailMessage: text and HTML alternatives, and an attachment."""
    build = learner_function(build_message)

    def attempt(server: LabServer) -> Any:
        message = build()
        if isinstance(message, Message) and _addresses_missing(message) is None:
            with SyncClient(server) as client:
                client.send_message(message)
        return message

    trial = run_in_lab(attempt)
    message = trial.result
    if not isinstance(message, Message):  # EmailMessage, or the older email.mime classes
        shown = repr(message)
        raise NotYet(
            "not-a-message",
            f"build_message() returned {type(message).__name__} {shown[:60]}{'…' if len(shown) > 60 else ''}.",
        )
    missing = _addresses_missing(message)
    if missing is not None:
        raise NotYet("no-addresses", f"the message has no {missing}.")
    evidence = wire.heard(trial)
    if not trial.messages:
        refused = wire.refusals(trial)
        said = f"the server answered {refused[0]}" if refused else "nothing was captured"
        raise NotYet("no-addresses", f"the message could not be sent: {said}.", evidence=evidence)
    captured = trial.messages[0].message  # what arrived, parsed again: the structure on the wire
    found = _structure_mistake(captured)
    if found is not None:
        raise NotYet(found[0], found[1], evidence=mime.mime_tree(captured).splitlines())
    names = ", ".join(a.filename or "?" for a in mime.attachments(captured))
    return (
        f"the lab server received a multipart/mixed message: text and HTML as alternatives, and {names} "
        f"attached.\n{mime.mime_tree(captured)}"
    )


# -- 04.2: the recipient no header names ---------------------------------------------------------

#: 04.2's mailbox: (envelope recipients, headers, a line of the body), oldest first.
_MAILBOX: tuple[tuple[tuple[str, ...], dict[str, str], str], ...] = (
    (
        ("bob@example.test", "carol@example.test", "dave@example.test"),
        {"To": "Bob <bob@example.test>", "Cc": "carol@example.test", "Subject": "Plans"},
        "See you on Monday.",
    ),
    (("erin@example.test",), {"To": "Team <team@example.test>", "Subject": "Minutes"}, "Minutes attached."),
    (
        ("frank@example.test", "grace@example.test"),
        {"To": "frank@example.test, Grace Hopper <grace@example.test>", "Subject": "Lunch"},
        "Noon?",
    ),
    (
        ("ivan@example.test", "judy@example.test"),
        {"To": "Ivan <ivan@example.test>", "Subject": "Report"},
        "P.S. I have sent a copy to judy@example.test.",
    ),
)
_SENDER = "alice@example.test"


def _named(headers: dict[str, str]) -> set[str]:
    """The addresses the To: and Cc: headers name, lower case."""
    values = [value for name, value in headers.items() if name in ("To", "Cc")]
    return {address.lower() for _, address in email.utils.getaddresses(values)}


def _expected(envelope: Iterable[str], headers: dict[str, str]) -> set[str]:
    named = _named(headers)
    return {r.lower() for r in envelope if r.lower() not in named}


def _fill_mailbox(server: LabServer) -> None:
    with SyncClient(server) as client:
        for recipients, headers, body in _MAILBOX:
            head = "".join(f"{name}: {value}\r\n" for name, value in {"From": _SENDER, **headers}.items())
            client.send(_SENDER, list(recipients), f"{head}\r\n{body}\r\n")
    server.mailbox.wait_for(len(_MAILBOX), timeout=10)


def _as_set(found: Any, index: int) -> set[str]:
    if isinstance(found, (str, bytes)) or not isinstance(found, Iterable):
        raise NotYet(
            "not-a-collection",
            f"for mailbox[{index}] your function returned {type(found).__name__} {found!r:.60}.",
        )
    items = list(found)
    if not all(isinstance(item, str) for item in items):
        raise NotYet(
            "not-a-collection", f"for mailbox[{index}] your function returned {items!r:.80}: not addresses."
        )
    return {item.strip().strip("<>").lower() for item in items}


def _listing(messages: list[CapturedMessage], answers: list[set[str]]) -> list[str]:
    lines = []
    for n, (message, answer) in enumerate(zip(messages, answers, strict=True)):
        headers = "; ".join(
            f"{k}: {message.message[k]}" for k in ("To", "Cc") if message.message[k] is not None
        )
        lines.append(f"mailbox[{n}]: envelope {', '.join(message.rcpt_tos)} | {headers}")
        lines.append(f"    your function returned {sorted(answer) or 'nothing'}")
    return lines


@exercise(
    "04.2",
    notebook=NOTEBOOK,
    title="The recipient no header names",
    hints={
        "not-a-collection": (
            "Return a list (or a set) of addresses — an empty one when every recipient is named in "
            "a header, and a list of one for a single address."
        ),
        "everyone": (
            "That is every envelope recipient. Keep only those that no To: or Cc: header names: "
            "compare each envelope address with the addresses in those headers."
        ),
        "backwards": (
            "Your answer holds addresses that are in a header but not in the envelope: the "
            "comparison runs the other way round. Start from the envelope (.rcpt_tos)."
        ),
        "display-names": (
            "A header may say 'Grace Hopper <grace@example.test>': compared whole, it never equals "
            "the address. email.utils.getaddresses() takes header values apart into (name, address) pairs."
        ),
        "cc-missed": (
            "Cc: names recipients too. Look at every header that names recipients — To: and Cc: — "
            "not only To:."
        ),
        "body": (
            "You looked in the whole message, body included. A body may mention any address; only "
            "the headers (message.message['To'], ['Cc']) say who it was addressed to."
        ),
        "found-none": (
            "Some of these messages do have such a recipient. The Bcc: header is gone by the time "
            "a message arrives (it is removed before sending): compare the envelope with the To: "
            "and Cc: headers instead."
        ),
        "not-matching": (
            "For some messages your answer differs from the envelope recipients that no To: or Cc: "
            "header names: compare with the listing below."
        ),
    },
)
def recipient_in_no_header(hidden_recipients: Any) -> str:
    """``hidden_recipients(message)`` returns the envelope recipients that no To:/Cc: header names."""
    find = learner_function(hidden_recipients, "message")
    trial = run_in_lab(lambda server: [find(message) for message in server.mailbox], before=_fill_mailbox)
    messages = trial.messages
    answers = [_as_set(found, n) for n, found in enumerate(trial.result)]
    expected = [_expected(r, h) for r, h, _ in _MAILBOX]
    envelopes = [{r.lower() for r in recipients} for recipients, _, _ in _MAILBOX]
    evidence = _listing(messages, answers)
    if answers == expected:
        return (
            f"found {', '.join(sorted(set().union(*expected)))}: in the envelope, in no header — a Bcc "
            "recipient, a list member, or someone copied without being named."
        )
    if answers == envelopes:
        raise NotYet("everyone", "your function returned every envelope recipient.", evidence=evidence)
    named = [_named(headers) for _, headers, _ in _MAILBOX]
    outside = [
        (n, (a - envelopes[n]) & named[n]) for n, a in enumerate(answers) if (a - envelopes[n]) & named[n]
    ]
    if outside:
        n, extra = outside[0]
        raise NotYet(
            "backwards",
            f"for mailbox[{n}] it returned {', '.join(sorted(extra))}, which a header names but the "
            "envelope does not.",
            evidence=evidence,
        )
    if "grace@example.test" in answers[2] or "bob@example.test" in answers[0]:
        raise NotYet(
            "display-names",
            "it returned a recipient whose header names them with a display name.",
            evidence=evidence,
        )
    if "carol@example.test" in answers[0]:
        raise NotYet(
            "cc-missed", "for mailbox[0] it returned carol, whom the Cc: header names.", evidence=evidence
        )
    if not any(answers):
        raise NotYet("found-none", "your function found nobody, in any message.", evidence=evidence)
    if answers[:3] == expected[:3] and not answers[3]:
        raise NotYet(
            "body",
            "for mailbox[3] it returned nothing, though no header names judy@example.test.",
            evidence=evidence,
        )
    wrong = next(n for n in range(len(answers)) if answers[n] != expected[n])
    raise NotYet(
        "not-matching",
        f"for mailbox[{wrong}] it returned {sorted(answers[wrong]) or 'nothing'}.",
        evidence=evidence,
    )
