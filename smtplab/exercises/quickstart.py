"""Exercises of ``00-quickstart.ipynb``: the envelope decides delivery."""

from __future__ import annotations

from typing import Any

from smtplab.client import SyncClient
from smtplab.exercises import wire
from smtplab.exercises.lab import learner_function, run_in_lab
from smtplab.exercises.registry import NotYet, exercise
from smtplab.mailbox import CapturedMessage
from smtplab.server import LabServer

NOTEBOOK = "00-quickstart.ipynb"


@exercise(
    "00.1",
    notebook=NOTEBOOK,
    title="One message, two recipients",
    hints={
        "never-connected": (
            "Your function returned without ever connecting to the server it was given. A Client "
            "connects when its `async with` block starts, as in section 2: send inside that block."
        ),
        "not-awaited": (
            "`client.send(...)` only prepares the sending: nothing happens until it is awaited. "
            "Put `await` in front of it, as in section 2."
        ),
        "nothing-sent": (
            "Your code connected but never started a message (the server heard no MAIL FROM). "
            "Call client.send(...) inside the `async with` block, before it ends."
        ),
        "one-string": (
            "Both addresses went into a single RCPT TO, which the server refused: SMTP names one "
            "recipient per RCPT TO. Give send() a list with one address per item."
        ),
        "refused": (
            "The server refused a command: its reply and the meaning of its code are below. An "
            "address looks like name@example.test."
        ),
        "two-messages": (
            "The server received one message per recipient. One send() with several recipients "
            "makes a single message whose envelope names them all."
        ),
        "one-recipient": (
            "Only one address reached the envelope. The second argument of send() can be a list "
            "of addresses: put both recipients in it."
        ),
        "same-recipient": "Both recipients are the same address: choose two different ones.",
    },
)
def one_message_two_recipients(send_to_two: Any) -> str:
    """``send_to_two(server)`` sends one message to two recipients."""
    trial = run_in_lab(send_to_two)
    trial.raise_if_never_connected()
    forgotten = trial.never_awaited()
    evidence = wire.heard(trial)
    for refused in wire.refusals(trial):
        if refused.verb == "RCPT" and "," in refused.command.text:
            raise NotYet("one-string", f"the server answered {refused}.", evidence=evidence)
        raise NotYet("refused", f"the server answered {refused}.", evidence=evidence)
    messages = trial.messages
    if not messages:
        if forgotten:
            raise NotYet(
                "not-awaited", f"{', '.join(forgotten)}() was called but never awaited.", evidence=evidence
            )
        raise NotYet("nothing-sent", "the lab server received no message.", evidence=evidence)
    if len(messages) > 1:
        envelopes = "; ".join(", ".join(m.rcpt_tos) for m in messages)
        raise NotYet(
            "two-messages",
            f"the lab server received {len(messages)} messages, for: {envelopes}.",
            evidence=evidence,
        )
    message = messages[0]
    recipients = message.rcpt_tos
    if len(recipients) < 2:
        raise NotYet(
            "one-recipient", f"the message's envelope names only {', '.join(recipients)}.", evidence=evidence
        )
    if len(set(recipients)) < len(recipients):
        raise NotYet("same-recipient", f"the envelope names {', '.join(recipients)}.", evidence=evidence)
    return (
        f"one message, {len(recipients)} recipients in its envelope: {', '.join(recipients)}. "
        f"Its To: header is {message.message['To']!r} — SMTP delivered it by the envelope alone."
    )


#: 00.2's mailbox: (envelope recipients, To: header, Subject), oldest first.
_MAILBOX = (
    (["erin@example.test", "frank@example.test"], "team@example.test", "Plans for Monday"),
    (["grace@example.test"], "erin@example.test", "Forwarded: plans"),
    (["erin@example.test"], "heidi@example.test", "Minutes"),
    (["heidi@example.test"], "heidi@example.test", "Lunch?"),
)
_WANTED, _NEWEST, _OLDER, _HEADER_ONLY = "erin@example.test", 2, 0, 1
_NOBODY = "nobody@example.test"


def _fill_mailbox(server: LabServer) -> None:
    with SyncClient(server) as client:
        for recipients, to, subject in _MAILBOX:
            content = f"To: {to}\r\nSubject: {subject}\r\n\r\nHello.\r\n"
            client.send("alice@example.test", recipients, content)
    server.mailbox.wait_for(len(_MAILBOX), timeout=10)


def _listing(messages: list[CapturedMessage]) -> list[str]:
    return [
        f"mailbox[{n}]: envelope to {', '.join(m.rcpt_tos)}; To: {m.message['To']}; Subject: {m.subject}"
        for n, m in enumerate(messages)
    ]


@exercise(
    "00.2",
    notebook=NOTEBOOK,
    title="Find a message by its envelope",
    hints={
        "found-nothing": (
            "A message to that address is in the mailbox, but your function did not find it. Each "
            "message's .rcpt_tos is a tuple of addresses: ask whether the address is *in* it."
        ),
        "oldest": (
            "That is an older message. The mailbox lists messages oldest first, so the newest "
            "match is the last one: search from the end (reversed(mailbox))."
        ),
        "header": (
            "You matched the To: header, which is part of the content and may name anyone. "
            "Delivery follows the envelope: look at .rcpt_tos instead."
        ),
        "not-matching": (
            "That message was not sent to the address at all. Return a message only after checking "
            "that its .rcpt_tos names the address."
        ),
        "not-a-message": (
            "Return the message itself — the CapturedMessage you found in the mailbox — not one of "
            "its parts or a list of them."
        ),
        "none-raises": (
            "When no message matches, the function should say so by returning None, rather than "
            "letting an exception (StopIteration, IndexError…) escape."
        ),
        "found-missing": (
            "Asked for an address nobody wrote to, your function still returned a message. Compare "
            "whole addresses, and return None when nothing matches."
        ),
    },
)
def find_by_envelope(find: Any) -> str:
    """``find(mailbox, recipient)`` returns the newest message whose envelope names recipient."""
    find = learner_function(find, "mailbox", "recipient")

    def both(server: LabServer) -> tuple[Any, Any]:
        found = find(server.mailbox, _WANTED)
        try:
            missing = find(server.mailbox, _NOBODY)
        except Exception as error:  # noqa: BLE001 - which exception it was is the finding
            missing = error
        return found, missing

    trial = run_in_lab(both, before=_fill_mailbox)
    found, missing = trial.result
    messages = trial.messages
    evidence = _listing(messages)
    asked = f"find(mailbox, {_WANTED!r}) returned "
    if found is None:
        raise NotYet("found-nothing", asked + "None.", evidence=evidence)
    if isinstance(found, CapturedMessage) and found in messages:
        where = messages.index(found)
        evidence.append(f"your function returned mailbox[{where}]")
        if where == _OLDER:
            raise NotYet("oldest", asked + f"mailbox[{where}], not the newest match.", evidence=evidence)
        if where == _HEADER_ONLY:
            raise NotYet(
                "header",
                asked + f"mailbox[{where}], whose envelope does not name {_WANTED}.",
                evidence=evidence,
            )
        if where != _NEWEST:
            raise NotYet(
                "not-matching",
                asked + f"mailbox[{where}], sent to {', '.join(found.rcpt_tos)}.",
                evidence=evidence,
            )
    else:
        text = repr(found)
        raise NotYet(
            "not-a-message", asked + f"{text[:80]}{'…' if len(text) > 80 else ''}.", evidence=evidence
        )
    if isinstance(missing, Exception):
        raise NotYet("none-raises", f"find(mailbox, {_NOBODY!r}) raised {type(missing).__name__}.")
    if missing is not None:
        raise NotYet("found-missing", f"find(mailbox, {_NOBODY!r}) returned {missing!r}.")
    return (
        f"found {found.subject!r}, the newest of the {sum(_WANTED in m.rcpt_tos for m in messages)} "
        f"messages whose envelope names {_WANTED} — and None for an address nobody wrote to."
    )
