"""Exercises of ``02-handlers.ipynb``: a hook that refuses, a relay, the client's side of a fault."""

from __future__ import annotations

import email.utils
import itertools
import smtplib
from typing import Any

from smtplab.exercises import wire
from smtplab.exercises.lab import Trial, learner_function, run_in_lab
from smtplab.exercises.registry import NotYet, exercise
from smtplab.server import LabServer, start_server

NOTEBOOK = "02-handlers.ipynb"
DOMAIN = "example.test"
TIMEOUT = 5.0

_next_hops = itertools.count(1)


def _evidence(trial: Trial) -> list[str]:
    """What the learner's hooks raised (server.errors), then what the server heard."""
    failures = [
        f"server.errors: {f.hook} raised {type(f.error).__name__}: {f.error}" for f in trial.server.errors
    ]
    return [*failures, *wire.heard(trial)]


def _make(answer: Any, *parameters: Any) -> Any:
    """The learner's handler, made from their class; NotYet if making it fails."""
    try:
        return answer(*parameters)
    except Exception as error:  # noqa: BLE001 - the learner's exception is the finding
        raise NotYet("raised", f"making the handler raised {type(error).__name__}: {error}") from None


# -- 02.1: only one domain ------------------------------------------------------------------------

#: Recipients the check tries, and whether a handler for example.test should take each.
PROBES = (
    ("bob@example.test", True),
    ("Carol@EXAMPLE.TEST", True),
    ("mallory@example.com", False),
    ("eve@notexample.test", False),
    ("trudy@example.test.evil.test", False),
)


def _try_recipients(server: LabServer) -> dict[str, Any]:
    """Offer every probe recipient in one transaction, then the message; every reply, by address."""
    replies: dict[str, Any] = {}
    with smtplib.SMTP(*server.address, timeout=TIMEOUT) as client:
        client.ehlo("checker.example.test")
        client.mail("alice@example.test")
        for recipient, _ in PROBES:
            code, text = client.rcpt(recipient)
            replies[recipient] = (code, text.decode("utf-8", "replace"))
        if any(code == 250 for code, _ in replies.values()):
            try:
                code, text = client.data("Subject: Exercise 02.1\r\n\r\nFor example.test only.\r\n")
            except smtplib.SMTPDataError as refused:  # e.g. 503: no recipient in the envelope
                code, text = refused.smtp_code, refused.smtp_error
            replies["DATA"] = (code, text.decode("utf-8", "replace"))
    return replies


@exercise(
    "02.1",
    notebook=NOTEBOOK,
    title="Only one domain",
    hints={
        "no-rcpt-hook": (
            "The check finds no handle_RCPT on your handler. aiosmtpd calls a hook only when its name "
            "is exactly handle_RCPT (upper case), with the parameters (self, server, session, envelope, "
            "address, rcpt_options)."
        ),
        "hook-failed": (
            "Your handle_RCPT raised an exception or returned nothing, so the client got a 451 naming "
            "the hook. The error is below."
        ),
        "refused-own": (
            "Your hook refused an address of example.test itself. Look at how it compares the address "
            "with the domain: print the part you compare for bob@example.test."
        ),
        "case": (
            "Domain names are not case-sensitive (RFC 5321 §2.4): EXAMPLE.TEST is example.test. Compare "
            "the domain after putting both in the same case."
        ),
        "accepts-others": (
            "Your hook accepted a recipient of another domain. It must refuse every recipient whose "
            "domain is not example.test, and add only the others to the envelope."
        ),
        "suffix": (
            "notexample.test ends with 'example.test' too. Compare the whole domain — everything after "
            "the @ — rather than the end of the address."
        ),
        "substring": (
            "An address can contain 'example.test' and still belong to another domain "
            "(example.test.evil.test). Compare the whole domain, not whether it appears somewhere."
        ),
        "temporary": (
            "A 4xx reply means 'try again later', so the sender's server would keep retrying for days. "
            "A recipient that will never be accepted gets a 5xx reply, such as 550."
        ),
        "not-added": (
            "Your hook answered 250 but did not add the recipient to the envelope, so the message had "
            "nobody to go to. A handle_RCPT that accepts appends the address to envelope.rcpt_tos."
        ),
    },
)
def only_one_domain(handler_class: Any) -> str:
    """``handler_class()`` makes a handler whose ``handle_RCPT`` accepts only example.test."""
    handler = _make(learner_function(handler_class))
    if not callable(getattr(handler, "handle_RCPT", None)):
        raise NotYet("no-rcpt-hook", f"{type(handler).__name__} has no handle_RCPT method.")
    trial = run_in_lab(_try_recipients, options={"handler": handler})
    replies: dict[str, Any] = trial.result
    evidence = _evidence(trial)
    if trial.server.errors or any(
        code == 451 and "Error in handle_" in text for code, text in replies.values()
    ):
        raise NotYet("hook-failed", "the client got a 451 reply from the lab's guard.", evidence=evidence)
    for recipient, wanted in PROBES:
        code, text = replies[recipient]
        said = f"RCPT TO:<{recipient}> got {code} {text}"
        if wanted and code != 250:
            mistake = "case" if recipient != recipient.lower() else "refused-own"
            raise NotYet(mistake, f"{said}.", evidence=evidence)
        if not wanted and code == 250:
            domain = recipient.split("@")[1]
            mistake = {"notexample.test": "suffix", "example.test.evil.test": "substring"}.get(
                domain, "accepts-others"
            )
            raise NotYet(mistake, f"{said}.", evidence=evidence)
        if not wanted and 400 <= code < 500:
            raise NotYet("temporary", f"{said}.", evidence=evidence)
    accepted = tuple(recipient for recipient, wanted in PROBES if wanted)
    delivered = trial.messages[0].rcpt_tos if trial.messages else ()
    if tuple(address.lower() for address in delivered) != tuple(a.lower() for a in accepted):
        code, text = replies.get("DATA", (None, ""))
        raise NotYet(
            "not-added",
            f"the message reached the server for {list(delivered) or 'nobody'} (DATA got {code} {text}).",
            evidence=evidence,
        )
    refused = [replies[recipient][0] for recipient, wanted in PROBES if not wanted]
    return (
        f"{' and '.join(accepted)} were accepted and reached the envelope; the three addresses of "
        f"other domains were refused ({', '.join(map(str, refused))}) — even the two that look alike."
    )


# -- 02.2: a relay --------------------------------------------------------------------------------

MESSAGE = b"Subject: Relay me\r\nFrom: alice@example.test\r\n\r\nHello, next hop.\r\n"
RELAY_NAME = "relay.example.test"


class _RefuseNobody:
    """The next hop's handler: nobody@ does not exist there."""

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        if address.lower().startswith("nobody@"):
            return "550 5.1.1 No such user here"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"


def _through_relay(server: LabServer) -> list[tuple[int, str]]:
    """One message for bob@ (who exists at the next hop), one for nobody@ (who does not)."""
    replies = []
    for recipient in ("bob@example.test", "nobody@example.test"):
        with smtplib.SMTP(*server.address, timeout=TIMEOUT * 2) as client:
            client.ehlo("laptop.example.test")
            client.mail("alice@example.test")
            code, text = client.rcpt(recipient)
            if code == 250:
                code, text = client.data(MESSAGE)
            replies.append((code, text.decode("utf-8", "replace")))
    return replies


def _received(raw: bytes) -> tuple[str, bool]:
    """The first header, unfolded, and whether it is a Received: header."""
    first = raw.split(b"\r\n\r\n", 1)[0].decode("utf-8", "replace").split("\r\n")
    lines = [first[0], *itertools.takewhile(lambda line: line[:1] in (" ", "\t"), first[1:])]
    header = " ".join(line.strip() for line in lines)
    return header, header.lower().startswith("received:")


@exercise(
    "02.2",
    notebook=NOTEBOOK,
    title="Write a relay",
    hints={
        "no-data-hook": (
            "The check finds no handle_DATA on your relay: that is the hook that gets the whole "
            "message, and where a relay passes it on."
        ),
        "hook-failed": (
            "Your handle_DATA raised an exception, so the client got a 451 naming the hook. The error "
            "is below."
        ),
        "not-forwarded": (
            "Nothing reached the next hop. In handle_DATA, connect to the next hop (the (host, port) "
            "your class was given) and send the message there before replying."
        ),
        "envelope-changed": (
            "The next hop got the message with another envelope. A relay keeps the envelope it was "
            "given: envelope.mail_from as the sender, envelope.rcpt_tos as the recipients."
        ),
        "no-received": (
            "The message reached the next hop without a Received: header. Every server that passes a "
            "message on adds one (RFC 5321 §4.4), so the path can be traced afterwards."
        ),
        "received-not-on-top": (
            "There is a Received: header, but not on top. Each server puts its own above all the "
            "others, so they read newest first: prepend it to the message bytes."
        ),
        "received-fields": (
            "Your Received: header misses a part. It says which host the message came from (from …), "
            "which server received it (by …), and ends with '; ' and the date (email.utils.formatdate())."
        ),
        "content-changed": (
            "The message itself changed on the way. A relay adds its header and passes everything "
            "else on byte for byte: use envelope.original_content, and end the header line with \\r\\n."
        ),
        "bounce-swallowed": (
            "The next hop refused nobody@example.test, but your relay told its client 250. The client "
            "believes the mail will arrive, and nobody will ever tell the sender. Reply with a refusal "
            "when the next hop refuses."
        ),
        "bounce-softened": (
            "The next hop refused permanently (5xx), but your relay answered with a 4xx: the client "
            "will try again and again, for days, for a mailbox that does not exist. Keep the refusal permanent."
        ),
    },
)
def write_a_relay(relay_class: Any) -> str:
    """``relay_class(next_hop)`` passes each message on to ``next_hop`` with a Received: header."""
    make = learner_function(relay_class, "next_hop")
    hop = start_server(
        name=f"exercise-next-hop-{next(_next_hops)}",
        hostname="next-hop.example.test",
        handler=_RefuseNobody(),
    )
    try:
        relay = _make(make, hop.address)
        if not callable(getattr(relay, "handle_DATA", None)):
            raise NotYet("no-data-hook", f"{type(relay).__name__} has no handle_DATA method.")
        trial = run_in_lab(
            _through_relay,
            options={"handler": relay, "hostname": RELAY_NAME},
            timeout=TIMEOUT * 3,
        )
    finally:
        hop.stop()
    return _judge_relay(trial, hop)


def _judge_relay(trial: Trial, hop: LabServer) -> str:
    (to_bob, to_nobody) = trial.result
    arrived = [m for m in hop.mailbox if "bob@example.test" in m.rcpt_tos]
    evidence = _evidence(trial)
    if hop.transcripts:
        evidence += ["", "the next hop heard:", *hop.transcripts[0].text(annotate=False).splitlines()]
    if trial.server.errors:
        raise NotYet("hook-failed", "the client got a 451 reply from the lab's guard.", evidence=evidence)
    if not arrived:
        raise NotYet(
            "not-forwarded",
            f"the next hop received no message for bob@example.test; your relay answered {to_bob[0]} {to_bob[1]}.",
            evidence=evidence,
        )
    message = arrived[0]
    if (message.mail_from, message.rcpt_tos) != ("alice@example.test", ("bob@example.test",)):
        raise NotYet(
            "envelope-changed",
            f"the next hop got MAIL FROM:<{message.mail_from}> and RCPT TO: {', '.join(message.rcpt_tos)}.",
            evidence=evidence,
        )
    raw = message.raw
    header, on_top = _received(raw)
    shown = raw.decode("utf-8", "replace").splitlines()[:8]
    if b"received:" not in raw.lower():
        raise NotYet("no-received", "the message at the next hop has no Received: header.", evidence=shown)
    if not on_top:
        raise NotYet(
            "received-not-on-top", f"the message at the next hop starts with {header!r}.", evidence=shown
        )
    words = header.split(";")
    date = (
        email.utils.parsedate_to_datetime(words[-1].strip()) if len(words) > 1 and words[-1].strip() else None
    )
    if " from " not in f" {header.lower()} " or " by " not in f" {header.lower()} " or date is None:
        raise NotYet("received-fields", f"the header reads {header!r}.", evidence=shown)
    added = raw[: len(raw) - len(MESSAGE)]
    if not raw.endswith(MESSAGE) or not added.endswith(b"\r\n") or b"\r\n\r\n" in added:
        raise NotYet(
            "content-changed",
            "the message at the next hop is not the one sent, under the header.",
            evidence=shown,
        )
    code, text = to_nobody
    said = f"for nobody@example.test your relay answered {code} {text}"
    if code < 400:
        raise NotYet("bounce-swallowed", said + ".", evidence=evidence)
    if code < 500:
        raise NotYet("bounce-softened", said + ".", evidence=evidence)
    return (
        f"the next hop received the message with its envelope and your header on top ({header[:60]}…), "
        f"and the refusal of nobody@example.test came back to the client as {code}."
    )


# -- 02.3: predict the client's reaction to three faults ------------------------------------------

#: What smtplib's sendmail() can do: return (a dict of the refused recipients), or raise one of these.
REACTIONS = (
    "returns",
    "SMTPSenderRefused",
    "SMTPRecipientsRefused",
    "SMTPDataError",
    "SMTPServerDisconnected",
)

#: The three faults: (the fault, as server.inject's arguments) and the recipients sendmail() is given.
FAULTS: dict[str, tuple[dict[str, Any], list[str]]] = {
    "a": (
        {"stage": "RCPT", "reply": "550 5.1.1 No such user here"},
        ["bob@example.test", "carol@example.test"],
    ),
    "b": ({"stage": "end of data", "reply": "451 4.3.0 Try again later"}, ["bob@example.test"]),
    "c": ({"stage": "MAIL", "disconnect": True}, ["bob@example.test"]),
}


def _reactions(server: LabServer) -> dict[str, str]:
    """What sendmail() does against each fault, armed one at a time on ``server``."""
    seen = {}
    for key, (fault, recipients) in FAULTS.items():
        armed = server.inject(**fault)
        try:
            with smtplib.SMTP(*server.address, timeout=TIMEOUT) as client:
                client.sendmail("alice@example.test", recipients, "Subject: 02.3\r\n\r\nHello.\r\n")
            seen[key] = "returns"
        except smtplib.SMTPException as error:
            seen[key] = type(error).__name__
        finally:
            armed.cancel()
    return seen


@exercise(
    "02.3",
    notebook=NOTEBOOK,
    title="Predict the client's reaction to three faults",
    hints={
        "not-a-dict": "Give a dict with one prediction per fault, keyed 'a', 'b' and 'c'.",
        "missing": "Predict all three faults: the dict needs the keys 'a', 'b' and 'c', and no others.",
        "unknown-reaction": (
            "Each prediction is one of the words the exercise lists: 'returns', or the name of an smtplib "
            "exception spelled exactly as smtplib spells it (mind the capitals)."
        ),
        "partial-refusal": (
            "Fault (a) fires once (times=1 is the default), and the message has two recipients: how many "
            "of them are refused? Then read what sendmail() does when some, but not all, recipients are "
            "refused: help(smtplib.SMTP.sendmail)."
        ),
        "rcpt-fault": (
            "Fault (a) answers RCPT TO, the command that names a recipient — not MAIL FROM, and not "
            "the message. Which recipients does it refuse, and what does sendmail() do then?"
        ),
        "temporary-is-a-refusal": (
            "451 is temporary, but it still says no: the server did not take the message. sendmail() "
            "does not return quietly when the message itself is refused."
        ),
        "end-of-data": (
            "Fault (b) waits at 'end of data': sender and recipients were accepted, and the server "
            "answers after the whole message has been sent, about the message itself."
        ),
        "hang-up": (
            "Fault (c) sends no reply at all: the server closes the connection. What does smtplib "
            "raise when the other side has gone?"
        ),
    },
)
def predict_the_faults(predictions: Any) -> str:
    """``predictions`` maps 'a', 'b', 'c' to what sendmail() does against each fault."""
    if not isinstance(predictions, dict):
        raise NotYet("not-a-dict", f"you passed a {type(predictions).__name__}.")
    if set(predictions) != set(FAULTS):
        raise NotYet("missing", f"your dict has the keys {sorted(map(str, predictions))}.")
    for key, guess in predictions.items():
        if guess not in REACTIONS:
            raise NotYet(
                "unknown-reaction", f"{guess!r} (for {key}) is not one of: {', '.join(map(repr, REACTIONS))}."
            )
    seen = run_in_lab(_reactions).result
    evidence = [
        f"({key}) server.inject({_arguments(FAULTS[key][0])}): sendmail() {_said(seen[key])}"
        for key in FAULTS
    ]
    wrong = {key for key in FAULTS if predictions[key] != seen[key]}
    if "a" in wrong:
        mistake = "partial-refusal" if predictions["a"] == "SMTPRecipientsRefused" else "rcpt-fault"
        raise NotYet(mistake, f"(a) you predicted {predictions['a']}.")
    if "b" in wrong:
        mistake = "temporary-is-a-refusal" if predictions["b"] == "returns" else "end-of-data"
        raise NotYet(mistake, f"(b) you predicted {predictions['b']}.")
    if "c" in wrong:
        raise NotYet("hang-up", f"(c) you predicted {predictions['c']}.")
    return "all three right. What happened:\n" + "\n".join(evidence)


def _arguments(fault: dict[str, Any]) -> str:
    stage = fault["stage"]
    return ", ".join([repr(stage), *(f"{k}={v!r}" for k, v in fault.items() if k != "stage")])


def _said(reaction: str) -> str:
    return "returned (the refused recipients in a dict)" if reaction == "returns" else f"raised {reaction}"
