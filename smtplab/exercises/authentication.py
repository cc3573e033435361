"""Exercises of ``05-auth.ipynb``: AUTH PLAIN and CRAM-MD5 worked out by hand, checked by a server."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import inspect
from typing import Any

from smtplab.auth import AuthExchange, auth_exchanges, hmac_md5
from smtplab.client import Client
from smtplab.exercises import wire
from smtplab.exercises.lab import Trial, learner_function, run_in_lab
from smtplab.exercises.registry import NotYet, exercise
from smtplab.server import LabServer
from smtplab.transcript import MASK

NOTEBOOK = "05-auth.ipynb"

#: The lab's fake credentials, the only ones its exercises use.
USER, PASSWORD = "alice", "wonderland"

#: A lab server that offers STARTTLS and takes AUTH only inside TLS (the default).
_SERVER = {"tls": "starttls", "auth": {USER: PASSWORD}}


def _exchanges(trial: Trial) -> list[AuthExchange]:
    return [exchange for transcript in trial.transcripts for exchange in auth_exchanges(transcript)]


def _decoded(text: str) -> bytes | None:
    try:
        return base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None


def _plain_argument(exchange: AuthExchange) -> str:
    """What the client sent as PLAIN's response: after the command, or after the empty 334."""
    words = exchange.lines[0].text.split()
    if len(words) > 2:
        return words[2]
    answers = [line.text for line in exchange.lines[1:] if line.sender == "client"]
    return answers[0] if answers else ""


def _plain_mistake(argument: str) -> tuple[str, str] | None:
    """The mistake in a PLAIN response that did not log in, said in words; None if it looks right."""
    if argument.strip() == "*":
        return None  # cancelled (RFC 4954 §4): nothing to take apart
    if argument[:2] in ("b'", 'b"'):
        return "bytes-repr", f"the server received {argument[:12]}…, the way Python prints bytes."
    blob = _decoded(argument)
    if blob is None:
        return "not-base64", "what followed AUTH PLAIN was not base64, so the server could not decode it."
    parts = blob.split(b"\0")
    shown = blob.decode("utf-8", "replace")
    if len(parts) == 1:
        return (
            "separator",
            f"it decodes to {shown.replace(PASSWORD, MASK)!r}: no NUL byte separates the parts.",
        )
    if len(parts) == 2:
        return (
            "missing-nul",
            f"it decodes to {shown.replace(PASSWORD, MASK)!r}: two parts, where PLAIN has three.",
        )
    return None


@exercise(
    "05.1",
    notebook=NOTEBOOK,
    title="AUTH PLAIN by hand",
    hints={
        "not-awaited": (
            "A client's methods only prepare a command until they are awaited: put `await` in front of "
            "each one, as in section 3."
        ),
        "never-connected": (
            "Your function returned without ever connecting to the server it was given. Open the "
            "connection with `async with` and log in inside that block."
        ),
        "no-auth": (
            "The server never heard an AUTH command. Send it yourself with client.raw(...): the "
            "command word, the mechanism's name, then your base64 string."
        ),
        "in-clear": (
            "This server takes AUTH only inside TLS, and refused before looking at your string: the "
            "password would have crossed the wire readable. Make the client start TLS when it "
            "connects, as section 5 does."
        ),
        "no-ehlo": (
            "After STARTTLS the session starts over and the server forgets your EHLO (RFC 3207 §4.2): "
            "greet it again before AUTH."
        ),
        "other-mechanism": (
            "This exercise is about PLAIN: one AUTH command that carries the whole base64 string. "
            "Compute the string yourself instead of letting another mechanism do the work."
        ),
        "bytes-repr": (
            "base64.b64encode() returns bytes, and putting bytes into an f-string writes b'…' around "
            "them. Turn the base64 bytes into text (they are ASCII) before building the command."
        ),
        "not-base64": (
            "PLAIN's response is base64: encode the bytes of the three parts with the base64 module "
            "rather than sending them as they are."
        ),
        "separator": (
            "PLAIN separates its parts with a NUL byte ('\\0' in Python), not a colon or a space: "
            "authzid NUL user NUL password (RFC 4616 §2)."
        ),
        "missing-nul": (
            "PLAIN has three parts — authzid, user, password — and the first is usually empty. Empty "
            "is fine, but the NUL after it must still be there, so the string starts with a NUL."
        ),
        "wrong-credentials": (
            "Your string is well formed, but the server does not know those credentials. The lab's "
            "user is alice, her password wonderland: decode your string and compare, letter for letter."
        ),
        "refused": "The server refused the AUTH command: its reply and the meaning of its code are below.",
    },
)
def auth_plain_by_hand(log_in: Any) -> str:
    """``log_in(server)`` connects with STARTTLS and logs in with ``raw("AUTH PLAIN …")``."""
    trial = run_in_lab(learner_function(log_in, "server"), options=_SERVER)
    trial.raise_if_never_connected()
    forgotten = trial.never_awaited()
    evidence = wire.heard(trial)
    exchanges = _exchanges(trial)
    if not exchanges:
        if forgotten:
            raise NotYet(
                "not-awaited", f"{', '.join(forgotten)}() was called but never awaited.", evidence=evidence
            )
        raise NotYet("no-auth", "the server heard no AUTH command.", evidence=evidence)
    if any(e.accepted and e.mechanism == "PLAIN" and e.tls for e in exchanges):
        exchange = next(e for e in exchanges if e.accepted and e.mechanism == "PLAIN" and e.tls)
        return (
            f"the server heard AUTH PLAIN inside TLS and answered {exchange.code}. Your string decodes to "
            f"{exchange.steps()[0].decoded or 'authzid NUL user NUL password'}: whoever could read it would "
            "have the password — which is why it travelled inside TLS."
        )
    last = exchanges[-1]
    said = f"the server answered {last.final.text}" if last.final is not None else "the server never answered"
    if last.mechanism != "PLAIN":
        raise NotYet("other-mechanism", f"the client used AUTH {last.mechanism}; {said}.", evidence=evidence)
    if last.code == 538 or not last.tls:
        raise NotYet("in-clear", f"AUTH PLAIN was sent before TLS started; {said}.", evidence=evidence)
    if last.code == 503 and "EHLO" in (last.final.text if last.final else ""):
        raise NotYet("no-ehlo", f"{said}.", evidence=evidence)
    argument = _plain_argument(last)
    found = _plain_mistake(argument)
    if found is not None:
        mistake, what = found
        raise NotYet(mistake, f"{what} ({said}.)", evidence=evidence)
    if last.code == 535:
        user = last.user or "?"
        raise NotYet(
            "wrong-credentials",
            f"your string decodes to user {user!r} and a password; {said}.",
            evidence=evidence,
        )
    raise NotYet("refused", f"{said}.", evidence=evidence)


# -- 05.2: CRAM-MD5 --------------------------------------------------------------------------------


def _digests(challenge_b64: str) -> dict[str, str]:
    """The digests the usual mistakes give, in hex, by mistake."""
    challenge = base64.b64decode(challenge_b64)
    secret = PASSWORD.encode()
    return {
        "right": hmac_md5(secret, challenge),
        "challenge-not-decoded": hmac.new(secret, challenge_b64.encode(), "md5").hexdigest(),
        "swapped": hmac.new(challenge, secret, "md5").hexdigest(),
        "plain-md5": hashlib.md5(secret + challenge).hexdigest(),
        "plain-md5-reversed": hashlib.md5(challenge + secret).hexdigest(),
    }


def _cram_mistake(answer: str, challenge_b64: str) -> tuple[str, str]:
    """What is wrong with a CRAM-MD5 answer the server did not accept, as (mistake, finding)."""
    blob = _decoded(answer)
    if blob is None:
        return "not-base64", f"your function returned {answer[:40]!r}, which is not base64."
    text = blob.decode("utf-8", "replace")
    user, space, digest = text.rpartition(" ")
    if not space or not user:
        return "no-user", f"it decodes to {text[:60]!r}: no user name, then a space, before the digest."
    if len(digest) == 64 and all(c in "0123456789abcdefABCDEF" for c in digest):
        return "wrong-hash", "the digest has 64 hex digits: that is SHA-256, not MD5."
    if len(digest) != 32 or any(c not in "0123456789abcdefABCDEF" for c in digest):
        what = repr(digest[:40]) if digest.isascii() and digest.isprintable() else "bytes that are not text"
        return "not-hex", f"after the user name comes {what}, not 32 hexadecimal digits."
    found = {value: name for name, value in _digests(challenge_b64).items()}.get(digest.lower())
    findings = {
        "right": ("wrong-user", f"the digest is right, but the user name is {user!r}."),
        "plain-md5": ("plain-md5", "the digest is MD5 of the password and the challenge glued together."),
        "plain-md5-reversed": (
            "plain-md5",
            "the digest is MD5 of the challenge and the password glued together.",
        ),
        "challenge-not-decoded": (
            "challenge-not-decoded",
            "the digest is HMAC-MD5 keyed with the password, of the challenge as base64 text.",
        ),
        "swapped": ("swapped", "the digest is HMAC-MD5 keyed with the challenge, of the password."),
    }
    if found is not None:
        return findings[found]
    return "wrong-digest", "the digest is 32 hex digits, but not HMAC-MD5(password, challenge)."


async def _cram_session(server: LabServer, answer_for: Any) -> tuple[str, Any, Any]:
    """Ask the server for a CRAM-MD5 challenge, let the learner's function answer, send the answer."""
    async with Client(server, tls="starttls") as client:
        await client.ehlo()
        challenge = await client.raw("AUTH CRAM-MD5")
        answer = answer_for(challenge.message, USER, PASSWORD)
        if inspect.isawaitable(answer):
            answer = await answer
        if not isinstance(answer, str) or "\r" in answer or "\n" in answer:
            await client.close()  # the answer cannot be sent as one line: hang up
            return challenge.message, answer, None
        return challenge.message, answer, await client.raw(answer)


@exercise(
    "05.2",
    notebook=NOTEBOOK,
    title="A CRAM-MD5 answer by hand",
    hints={
        "returned-bytes": (
            "Your function returned bytes. The answer travels as a line of text: turn the base64 "
            "bytes into a str (they are ASCII) before returning them."
        ),
        "not-text": "Return the answer as a str: the base64 line the client sends back after the 334.",
        "line-break": (
            "The answer must be one line: without a line break in it. The client adds the CRLF that "
            "ends the line itself."
        ),
        "not-base64": (
            "The answer is base64 of 'user digest', like every SASL answer in SMTP: encode the text "
            "before returning it."
        ),
        "no-user": (
            "The answer names who is logging in: the user name, a space, then the digest "
            "(RFC 2195 §2) — all of that encoded as base64."
        ),
        "wrong-hash": "CRAM-MD5 uses HMAC with MD5 (hashlib's md5), whose hex digest has 32 digits.",
        "not-hex": (
            "The digest goes in as hexadecimal text — 32 digits 0-9a-f — not as raw bytes or as "
            "base64: HMAC objects can give you either."
        ),
        "challenge-not-decoded": (
            "You signed the challenge as it appears on the wire, in base64. The server signed what it "
            "stands for: decode the challenge first, then compute the HMAC over those bytes."
        ),
        "swapped": (
            "HMAC takes the key first and the message second. In CRAM-MD5 the password is the key "
            "and the (decoded) challenge the message."
        ),
        "plain-md5": (
            "An MD5 hash of the password and challenge glued together is not an HMAC: HMAC mixes the "
            "key in twice, with padding. Python's hmac module does it for you."
        ),
        "wrong-digest": (
            "The digest is not HMAC-MD5 of the decoded challenge keyed with the password. Print the "
            "decoded challenge and compare your steps with section 7."
        ),
        "wrong-user": "The digest is right, but the user name in front of it is not the lab's user alice.",
    },
)
def cram_md5_by_hand(answer: Any) -> str:
    """``answer(challenge, user, password)`` returns the base64 CRAM-MD5 answer to a 334 challenge."""
    answer = learner_function(answer, "challenge", "user", "password")
    trial = run_in_lab(lambda server: _cram_session(server, answer), options=_SERVER)
    challenge, given, reply = trial.result
    evidence = [
        f"challenge (base64): {challenge}",
        f"… which decodes to: {base64.b64decode(challenge).decode()}",
    ]
    evidence += wire.heard(trial)
    if isinstance(given, (bytes, bytearray)):
        raise NotYet("returned-bytes", f"your function returned {bytes(given)[:40]!r}.", evidence=evidence)
    if not isinstance(given, str):
        raise NotYet(
            "not-text", f"your function returned {type(given).__name__} {given!r:.60}.", evidence=evidence
        )
    if reply is None:
        raise NotYet(
            "line-break", f"your function returned {given!r:.60}, with a line break.", evidence=evidence
        )
    if reply.code == 235:
        return (
            "the server computed HMAC-MD5 from the challenge and its own copy of the password, got your "
            "digest, and answered 235. The password never crossed the wire — and the server had to keep "
            "it to check you."
        )
    mistake, finding = _cram_mistake(given, challenge)
    raise NotYet(mistake, f"{finding} The server answered {reply.code} {reply.message}.", evidence=evidence)
