"""Exercises of ``07-parallel-sending.ipynb``: how many connections, and when to try again."""

from __future__ import annotations

from typing import Any

import aiosmtplib

from smtplab.client import Reply
from smtplab.errors import LabConnectionRefusedError, TLSCertificateError, TLSMismatchError
from smtplab.exercises.lab import learner_function, run_in_lab
from smtplab.exercises.registry import NotYet, exercise

NOTEBOOK = "07-parallel-sending.ipynb"

#: 07.1's lab servers: their connection caps (not the notebook's 4, so a number written in shows),
#: and a reply delay, as in the notebook, that makes every connection wait on its replies.
CAPS = (3, 5)
REPLY_DELAY = 0.005


@exercise(
    "07.1",
    notebook=NOTEBOOK,
    title="The fastest number of connections under a cap",
    hints={
        "no-number": (
            "Your function should end by returning the number of connections — a whole number such "
            "as 6 — not print it or return something else."
        ),
        "same-for-both": (
            "The check asked two lab servers with different caps and got the same answer from both: "
            "the number seems to be written in. Find out how many connections the server you are "
            "given admits at once."
        ),
        "more-than-cap": (
            "More connections than the server admits cannot help: it turns the extra ones away with "
            "421 before they send anything, so any speed they seem to add is chance. Choose the "
            "smallest number that reaches the top speed."
        ),
        "fewer-than-cap": (
            "The server would admit more connections at once than that, and while each connection "
            "waits for its replies another could be sending: count every connection the server "
            "greets with 220 while the others are still open."
        ),
    },
)
def best_connections_under_a_cap(best_connections: Any) -> str:
    """``best_connections(server)`` returns the connection count that sends a batch fastest."""
    best_connections = learner_function(best_connections, "server")
    answers = []
    for cap in CAPS:
        trial = run_in_lab(
            best_connections, options={"limits": {"max_connections": cap}, "reply_delay": REPLY_DELAY}
        )
        answers.append((cap, trial.result, len(trial.transcripts)))
    evidence = [
        f"a server with a cap of {cap}: your function returned {answer!r} (it opened {sessions} connection(s))"
        for cap, answer, sessions in answers
    ]
    for _cap, answer, _ in answers:
        if isinstance(answer, bool) or not isinstance(answer, int):
            raise NotYet("no-number", f"your function returned {_shown(answer)}.", evidence=evidence)
    if answers[0][1] == answers[1][1]:
        raise NotYet(
            "same-for-both",
            f"it returned {answers[0][1]} for caps of {CAPS[0]} and {CAPS[1]} alike.",
            evidence=evidence,
        )
    for cap, answer, _ in answers:
        if answer > cap:
            raise NotYet(
                "more-than-cap",
                f"it returned {answer} for a server that admits {cap} at once.",
                evidence=evidence,
            )
        if answer < cap:
            raise NotYet(
                "fewer-than-cap",
                f"it returned {answer} for a server that admits {cap} at once.",
                evidence=evidence,
            )
    return (
        f"{' and '.join(str(cap) for cap in CAPS)} connections for servers with caps of "
        f"{' and '.join(str(cap) for cap in CAPS)}: fewer would leave the server idle while each one "
        "waits for its replies, more would only be turned away with 421."
    )


def _shown(value: Any) -> str:
    text = repr(value)
    return f"{text[:70]}{'…' if len(text) > 70 else ''}"


#: 07.2's cases: (what happened, should a client try again?, the mistake a wrong answer shows).
#: send_many's own rule, :func:`smtplab.parallel.should_retry`, answers every one of them rightly.
RETRY_CASES: tuple[tuple[Any, bool, str], ...] = (
    (Reply(250, "2.0.0 OK: queued as L000123"), False, "retries-success"),
    (Reply(451, "4.3.0 Temporary local problem: try again later"), True, "ignores-4xx"),
    (Reply(452, "4.5.3 Too many recipients"), True, "ignores-4xx"),
    (Reply(421, "4.4.2 smtplab.test Idle too long, closing"), True, "ignores-4xx"),
    (Reply(550, "5.1.1 <nobody@example.test>: No such user here"), False, "retries-5xx"),
    (Reply(554, "5.7.1 Message refused"), False, "retries-5xx"),
    (
        aiosmtplib.SMTPConnectResponseError(421, "4.7.0 smtplab.test Too many connections: try again later"),
        True,
        "ignores-greeting",
    ),
    (aiosmtplib.SMTPConnectResponseError(554, "5.7.1 No SMTP service here"), False, "retries-5xx"),
    (aiosmtplib.SMTPServerDisconnected("Connection lost"), True, "gives-up-on-drop"),
    (ConnectionResetError(104, "Connection reset by peer"), True, "gives-up-on-drop"),
    (aiosmtplib.SMTPReadTimeoutError("Timed out waiting for server response"), True, "gives-up-on-drop"),
    (LabConnectionRefusedError("nothing is listening on 127.0.0.1:2525"), True, "gives-up-on-drop"),
    (
        TLSCertificateError("certificate verify failed: unable to get local issuer certificate"),
        False,
        "retries-tls",
    ),
    (TLSMismatchError("the server spoke plain SMTP (WRONG_VERSION_NUMBER)"), False, "retries-tls"),
    (ValueError("the recipient address contains a line feed (LF)"), False, "retries-bad-message"),
)


def _case(outcome: Any) -> str:
    if isinstance(outcome, Reply):
        return f"a reply {outcome.code} {outcome.message}"
    return f"{type(outcome).__name__}: {outcome}"


@exercise(
    "07.2",
    notebook=NOTEBOOK,
    title="The retry rule",
    hints={
        "not-bool": "Answer each case with True (try again later) or False (do not).",
        "crashed": (
            "Your function stopped with an exception on one of the cases. Some outcomes are replies, "
            "others are exceptions, and only some exceptions carry a reply code: find out which kind "
            "you were given before reading its attributes."
        ),
        "retries-success": (
            "A 2xx reply means the server took the message: sending it again would deliver it twice."
        ),
        "ignores-4xx": (
            "A 4xx reply means 'not now' (RFC 5321 §4.2.1): the same message may well be taken later, "
            "so try again after a wait."
        ),
        "retries-5xx": (
            "A 5xx reply is final, whether it comes as a reply or inside an exception's code: the server "
            "will refuse the same message again, so trying only adds load."
        ),
        "ignores-greeting": (
            "An exception can carry a reply: a server at its connection cap greets with 421, which "
            "aiosmtplib raises with the code on the exception. 4xx there means 'come back later' too."
        ),
        "gives-up-on-drop": (
            "A dropped connection, a timeout or a refused connection says nothing about the message "
            "itself: connect again and try once more."
        ),
        "retries-tls": (
            "A TLS error is a setting that cannot work (an untrusted certificate, the wrong TLS mode): "
            "it fails the same way every time. Change the setting instead of trying again."
        ),
        "retries-bad-message": (
            "A ValueError says the message itself is wrong (an address with a line break): no server "
            "will ever take it, however often you try."
        ),
    },
)
def retry_rule(should_retry: Any) -> str:
    """``should_retry(outcome)`` says whether to try again after a reply or an exception."""
    should_retry = learner_function(should_retry, "outcome")

    def every_case(_server: Any) -> list[tuple[Any, BaseException | None]]:
        answers: list[tuple[Any, BaseException | None]] = []
        for outcome, _, _ in RETRY_CASES:
            try:
                answers.append((should_retry(outcome), None))
            except Exception as error:  # noqa: BLE001 - which case raised is the finding
                answers.append((None, error))
        return answers

    answers = run_in_lab(every_case).result
    evidence = []
    wrong: list[tuple[str, str]] = []
    for (outcome, expected, mistake), (answer, error) in zip(RETRY_CASES, answers, strict=True):
        if error is not None:
            evidence.append(f"{_case(outcome)} → raised {type(error).__name__}: {error}")
            wrong.append(("crashed", f"should_retry raised {type(error).__name__} for {_case(outcome)}."))
            continue
        verdict = "right" if answer is expected else f"expected {expected}"
        evidence.append(f"{_case(outcome)} → {answer!r} ({verdict})")
        if not isinstance(answer, bool):
            wrong.append(("not-bool", f"should_retry returned {_shown(answer)} for {_case(outcome)}."))
        elif answer is not expected:
            wrong.append((mistake, f"should_retry({_case(outcome)}) returned {answer}, not {expected}."))
    if wrong:
        mistake, message = wrong[0]
        others = len(wrong) - 1
        more = f" ({others} other case{'s' if others != 1 else ''} wrong too: see below)" if others else ""
        raise NotYet(mistake, message + more, evidence=evidence)
    return (
        f"all {len(RETRY_CASES)} cases right: 4xx — as a reply or at the greeting — and lost connections "
        "are tried again; 2xx, 5xx, TLS settings and bad messages are not. That is send_many's rule."
    )
