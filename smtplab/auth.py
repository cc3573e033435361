"""SMTP AUTH for both ends of the lab: PLAIN, LOGIN and CRAM-MD5.

SMTP AUTH (RFC 4954) carries a SASL exchange inside SMTP: the client sends
``AUTH <mechanism> [initial-response]``, the server may answer ``334 <base64 challenge>``
any number of times, and finally ``235`` (welcome) or ``535`` (credentials invalid).

* **PLAIN** (RFC 4616): one base64 string ``authzid NUL user NUL password``. The password is
  merely encoded, not hidden, so it belongs inside TLS.
* **LOGIN** (draft-murchison-sasl-login): the server prompts ``Username:`` and ``Password:``
  in base64 and the client answers each. Older than PLAIN; same protection (none).
* **CRAM-MD5** (RFC 2195): the server sends a unique challenge, the client answers with its
  user name and ``HMAC-MD5(password, challenge)``; the password never crosses the wire, but
  the server must store it in the clear and MD5 is long obsolete (RFC 8314 prefers TLS).

Server side: :class:`LabAuthenticator` is the ``authenticator=`` for aiosmtpd, and
:class:`CramMD5Mechanism` adds CRAM-MD5, which aiosmtpd lacks. Client side: pure helpers that
build and decode the strings a client sends, for lessons and transcripts.

The lab uses fake credentials only, such as ``alice`` / ``wonderland``.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import re
import secrets
import threading
import time
from collections import Counter, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiosmtpd.smtp import MISSING, SMTP, AuthResult, LoginPassword, auth_mechanism

from smtplab._aiosmtpd import authenticate, authenticator_present
from smtplab.errors import NoCommonMechanismError
from smtplab.protocol import explain
from smtplab.render import display
from smtplab.transcript import MASK

if TYPE_CHECKING:  # pragma: no cover
    from aiosmtpd.smtp import Envelope, Session

    from smtplab.transcript import Line, Transcript

__all__ = [
    "CHOSEN_EVENT",
    "MECHANISMS",
    "AuthAttempt",
    "AuthExchange",
    "AuthStep",
    "CramMD5Mechanism",
    "CramMD5Response",
    "LabAuthenticator",
    "auth_cram_md5",
    "auth_exchanges",
    "choose_mechanism",
    "cram_md5_challenge",
    "cram_md5_response",
    "decode_plain",
    "hmac_md5",
    "login_prompts",
    "login_response",
    "plain_response",
]

MECHANISMS: tuple[str, ...] = ("PLAIN", "LOGIN", "CRAM-MD5")
"""The SASL mechanisms smtplab speaks on both sides."""

_HEX_DIGEST = re.compile(rb"[0-9a-fA-F]{32}")


def hmac_md5(password: str | bytes, challenge: str | bytes) -> str:
    """CRAM-MD5's digest: HMAC-MD5 keyed with the password, of the challenge, in lowercase hex.

    RFC 2195 §2 (HMAC itself: RFC 2104). Both sides compute it: the client to answer, the
    server to check the answer with its own copy of the password.
    """
    key = password.encode("utf-8") if isinstance(password, str) else password
    message = challenge.encode("utf-8") if isinstance(challenge, str) else challenge
    return hmac.new(key, message, "md5").hexdigest()


# --------------------------------------------------------------------------- server side


@dataclass(frozen=True)
class CramMD5Response:
    """A CRAM-MD5 answer as the server received it, handed to the authenticator.

    Attributes:
        login: The user name the client sent.
        challenge: The challenge the server issued (not base64-encoded).
        digest: The client's HMAC-MD5 in lowercase hex (RFC 2195 §2).
    """

    login: bytes
    challenge: bytes
    digest: bytes = field(repr=False)

    def verify(self, password: str | bytes) -> bool:
        """Whether ``digest`` is HMAC-MD5(password, challenge), compared in constant time."""
        expected = hmac_md5(password, self.challenge).encode("ascii")
        return hmac.compare_digest(expected, self.digest.lower())


@dataclass(frozen=True)
class AuthAttempt:
    """One AUTH attempt seen by a :class:`LabAuthenticator` (never holds the password).

    Attributes:
        mechanism: ``"PLAIN"``, ``"LOGIN"`` or ``"CRAM-MD5"``.
        username: The user name the client gave (undecodable bytes replaced).
        success: Whether the credentials were accepted.
        reason: Why, for the lab's eyes only — the client just sees ``535``.
        time: ``time.time()`` of the attempt.
    """

    mechanism: str
    username: str
    success: bool
    reason: str
    time: float


class LabAuthenticator:
    """An aiosmtpd ``authenticator=`` that checks users against a fixed mapping.

    Pass an instance to aiosmtpd (``Controller(..., authenticator=LabAuthenticator(users))``).
    It is a plain (synchronous) callable on purpose: aiosmtpd does not await the
    authenticator, and a coroutine object is truthy, so an ``async def`` authenticator would
    let everybody in. It answers ``AuthResult(success=True, auth_data=username)`` or
    ``AuthResult(success=False, handled=False)``; the latter makes aiosmtpd reply
    ``535 5.7.8 Authentication credentials invalid`` (RFC 4954 §6) — with ``handled=True``
    aiosmtpd would send nothing and the client would hang.

    Args:
        users: User name -> password. Copied; use :meth:`add_user` to change it later.

    Example:
        >>> auth = LabAuthenticator({"alice": "wonderland"})
        >>> auth
        <LabAuthenticator users: alice>
    """

    def __init__(self, users: Mapping[str, str]) -> None:
        self._users: dict[str, str] = {}
        self._lock = threading.Lock()
        self._successes: Counter[str] = Counter()
        self._failures: Counter[str] = Counter()
        self._attempts: deque[AuthAttempt] = deque(maxlen=1000)
        for name, password in users.items():
            self.add_user(name, password)

    def __repr__(self) -> str:
        return f"<LabAuthenticator users: {', '.join(self.users) or '(none)'}>"

    @property
    def users(self) -> tuple[str, ...]:
        """The known user names (passwords are never shown)."""
        with self._lock:
            return tuple(self._users)

    def add_user(self, name: str, password: str) -> None:
        """Add a user or change a password.

        Raises:
            ValueError: ``name`` is empty, or either value is not a ``str`` or holds a NUL
                (which PLAIN uses as its separator, RFC 4616 §2).
        """
        if not isinstance(name, str) or not isinstance(password, str):
            raise ValueError("user names and passwords must be str")
        if not name or "\0" in name or "\0" in password:
            raise ValueError("user names must be non-empty; neither may contain NUL")
        with self._lock:
            self._users[name] = password

    @property
    def successes(self) -> dict[str, int]:
        """Successful logins per user name."""
        with self._lock:
            return dict(self._successes)

    @property
    def failures(self) -> dict[str, int]:
        """Failed logins per user name given (including unknown names)."""
        with self._lock:
            return dict(self._failures)

    @property
    def attempts(self) -> list[AuthAttempt]:
        """The last 1000 attempts, oldest first."""
        with self._lock:
            return list(self._attempts)

    def reset_counts(self) -> None:
        """Forget the counts and attempts (the users stay)."""
        with self._lock:
            self._successes.clear()
            self._failures.clear()
            self._attempts.clear()

    def __call__(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        mechanism: str,
        auth_data: Any,
    ) -> AuthResult:
        """Decide an AUTH attempt; aiosmtpd calls it once per attempt, whatever the mechanism.

        Args:
            server: The aiosmtpd ``SMTP`` protocol instance.
            session: The session (peer, TLS facts...).
            envelope: The (empty) envelope.
            mechanism: The mechanism name, e.g. ``"PLAIN"``.
            auth_data: ``aiosmtpd.smtp.LoginPassword`` for PLAIN and LOGIN, or a
                :class:`CramMD5Response` for CRAM-MD5.

        Returns:
            ``AuthResult(success=True, auth_data=username)`` or
            ``AuthResult(success=False, handled=False)`` (aiosmtpd then replies 535).
        """
        username, ok, reason = self.check(mechanism, auth_data)
        with self._lock:
            (self._successes if ok else self._failures)[username] += 1
            self._attempts.append(AuthAttempt(mechanism, username, ok, reason, time.time()))
        if ok:
            return AuthResult(success=True, auth_data=username)
        return AuthResult(success=False, handled=False)

    def check(self, mechanism: str, auth_data: Any) -> tuple[str, bool, str]:
        """Verify credentials without counting them.

        Returns:
            ``(username, accepted, reason)``.
        """
        login = getattr(auth_data, "login", None)
        if not isinstance(login, bytes):
            return "", False, f"unsupported auth data for {mechanism}: {type(auth_data).__name__}"
        shown = login.decode("utf-8", errors="replace")
        try:
            username = login.decode("utf-8")
        except UnicodeDecodeError:
            return shown, False, "user name is not valid UTF-8"
        with self._lock:
            stored = self._users.get(username)
        known = stored is not None
        # Compare even for unknown users so both cases take about as long.
        password = stored if known else "\0" + secrets.token_hex(8)
        if isinstance(auth_data, CramMD5Response):
            match = auth_data.verify(password)
        elif isinstance(auth_data, LoginPassword):
            match = hmac.compare_digest(password.encode("utf-8"), auth_data.password)
        else:
            return shown, False, f"unsupported auth data for {mechanism}"
        if not known:
            return username, False, f"unknown user {username!r}"
        if not match:
            return username, False, f"wrong password for {username!r} ({mechanism})"
        return username, True, f"{username!r} authenticated with {mechanism}"


def cram_md5_challenge(hostname: str) -> str:
    """A fresh CRAM-MD5 challenge ``<random.timestamp@hostname>`` (RFC 2195 §2).

    Args:
        hostname: The server's name, as in its greeting.

    Returns:
        The challenge text (not yet base64-encoded); unique per call.
    """
    return f"<{secrets.randbelow(10**12)}.{time.time_ns()}@{hostname or 'localhost'}>"


@auth_mechanism("CRAM-MD5")
async def auth_cram_md5(server: SMTP, args: list[str]) -> AuthResult:
    """Run the server side of CRAM-MD5 on an aiosmtpd ``SMTP`` and let its authenticator decide.

    aiosmtpd calls every ``auth_<NAME>`` attribute of the SMTP object *and of the handler*
    as ``method(server, args)``; the decorator names this one ``CRAM-MD5`` even when it is
    attached under another ``auth_`` name (``handler.auth_cram_md5 = auth_cram_md5``).
    The server must have an ``authenticator=`` such as :class:`LabAuthenticator`; the
    authenticator receives a :class:`CramMD5Response`.

    Args:
        server: The aiosmtpd ``SMTP`` instance handling the session.
        args: The AUTH arguments, ``["CRAM-MD5"]`` (an initial response is not allowed).

    Returns:
        The authenticator's ``AuthResult``, or a failure whose reply is already decided.
    """
    if len(args) > 1:
        # RFC 4954 §4: a server-first mechanism with an initial response MUST get 501.
        return AuthResult(
            success=False,
            handled=False,
            message="501 5.5.2 CRAM-MD5 takes no initial response; send AUTH CRAM-MD5 alone",
        )
    if not authenticator_present(server):
        # The legacy auth_callback only understands LoginPassword.
        return AuthResult(
            success=False,
            handled=False,
            message="454 4.7.0 CRAM-MD5 needs an authenticator on this server",
        )
    challenge = cram_md5_challenge(getattr(server, "hostname", "") or "")
    # challenge_auth sends "334 " + base64(challenge) and returns the decoded answer, or
    # MISSING after it has itself replied 501 (client sent "*" or invalid base64).
    answer = await server.challenge_auth(challenge)
    if answer is MISSING:
        return AuthResult(success=False, handled=True)
    assert isinstance(answer, bytes)
    # RFC 2195 §2: "the user name, a space, and the digest" - the digest is the last word.
    login, _, digest = answer.rpartition(b" ")
    if not login or not _HEX_DIGEST.fullmatch(digest):
        return AuthResult(
            success=False,
            handled=False,
            message="501 5.5.2 CRAM-MD5 answer must be base64 of 'user hexdigest'",
        )
    result = authenticate(
        server, "CRAM-MD5", CramMD5Response(login, challenge.encode("utf-8"), digest.lower())
    )
    assert result is not None  # checked above
    return result


class CramMD5Mechanism:
    """Handler mixin that adds CRAM-MD5 to an aiosmtpd server.

    aiosmtpd collects ``auth_*`` methods from the handler too, turning ``__`` into ``-``, so
    ``auth_CRAM__MD5`` is advertised as ``AUTH ... CRAM-MD5``. Inherit it in a handler::

        class Handler(CramMD5Mechanism):
            async def handle_DATA(self, server, session, envelope): ...
    """

    async def auth_CRAM__MD5(self, server: SMTP, args: list[str]) -> AuthResult:
        """Server side of ``AUTH CRAM-MD5`` (RFC 2195); see :func:`auth_cram_md5`."""
        return await auth_cram_md5(server, args)


# --------------------------------------------------------------------------- client side


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _b64decode(text: str | bytes) -> bytes:
    raw = text.encode("ascii") if isinstance(text, str) else text
    raw = raw.strip()
    if raw.startswith(b"334 "):  # accept a whole server line pasted by a learner
        raw = raw[4:].strip()
    try:
        return base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"not valid base64: {text!r}") from exc


def plain_response(user: str, password: str, authzid: str = "") -> str:
    """The PLAIN initial response: base64 of ``authzid NUL user NUL password`` (RFC 4616 §2).

    Send it as ``AUTH PLAIN <response>``. It is encoding, not encryption: anyone who sees it
    can decode it (:func:`decode_plain`), so send it only inside TLS.

    Args:
        user: The authentication identity (who you are).
        password: The password.
        authzid: Whom to act as; empty means "myself" (the usual case).

    Returns:
        The base64 text.

    Raises:
        ValueError: A part contains NUL, the separator.

    Example:
        >>> plain_response("alice", "wonderland")
        'AGFsaWNlAHdvbmRlcmxhbmQ='
    """
    if any("\0" in part for part in (user, password, authzid)):
        raise ValueError("PLAIN parts may not contain NUL (RFC 4616 §2)")
    return _b64(f"{authzid}\0{user}\0{password}".encode())


def decode_plain(b64: str | bytes) -> tuple[str, str, str]:
    """Decode a PLAIN response back into ``(authzid, user, password)``.

    Args:
        b64: The base64 text after ``AUTH PLAIN`` (or after ``334``).

    Returns:
        ``(authzid, user, password)``.

    Raises:
        ValueError: Not base64, not UTF-8, or not three NUL-separated parts.

    Example:
        >>> decode_plain("AGFsaWNlAHdvbmRlcmxhbmQ=")
        ('', 'alice', 'wonderland')
    """
    raw = _b64decode(b64)
    parts = raw.split(b"\0")
    if len(parts) != 3:
        raise ValueError("a PLAIN response has three NUL-separated parts (RFC 4616 §2)")
    try:
        authzid, user, password = (part.decode("utf-8") for part in parts)
    except UnicodeDecodeError as exc:
        raise ValueError("PLAIN parts must be UTF-8 (RFC 4616 §2)") from exc
    return authzid, user, password


def login_prompts() -> dict[str, str]:
    """What the ``334`` prompts of AUTH LOGIN mean (draft-murchison-sasl-login §2.1).

    Servers send a base64 prompt; the client answers the user name prompt with base64 of
    the user name and the password prompt with base64 of the password.

    Returns:
        Base64 prompt -> meaning, covering the common ``Username:``/``Password:`` and the
        ``User Name``/``Password`` (with a trailing NUL) that aiosmtpd sends.
    """
    user = "user name prompt: answer with your user name in base64"
    password = "password prompt: answer with your password in base64"
    prompts = {
        "Username:": user,
        "User Name": user,
        SMTP.AuthLoginUsernameChallenge: user,
        "Password:": password,
        "Password": password,
        SMTP.AuthLoginPasswordChallenge: password,
    }
    return {_b64(text.encode()): f"{text!r} - {meaning}" for text, meaning in prompts.items()}


def login_response(value: str) -> str:
    """The base64 answer to one LOGIN prompt: the user name, then the password.

    AUTH LOGIN (draft-murchison-sasl-login) asks for each in its own ``334`` prompt.
    """
    return _b64(value.encode("utf-8"))


def cram_md5_response(user: str, password: str, challenge_b64: str | bytes) -> str:
    """The client's CRAM-MD5 answer: base64 of ``user SP hex(HMAC-MD5(password, challenge))``.

    Args:
        user: The user name.
        password: The shared secret.
        challenge_b64: The base64 text the server sent after ``334`` (the whole ``334 ...``
            line is accepted too).

    Returns:
        The base64 text to send back (RFC 2195 §2).

    Raises:
        ValueError: ``challenge_b64`` is not base64.

    Example:
        >>> cram_md5_response(
        ...     "tim", "tanstaaftanstaaf", "PDE4OTYuNjk3MTcwOTUyQHBvc3RvZmZpY2UucmVzdG9uLm1jaS5uZXQ+"
        ... )
        'dGltIGI5MTNhNjAyYzdlZGE3YTQ5NWI0ZTZlNzMzNGQzODkw'
    """
    challenge = _b64decode(challenge_b64)
    digest = hmac_md5(password, challenge)
    return _b64(f"{user} {digest}".encode())


def choose_mechanism(
    server_mechanisms: Iterable[str] | str,
    preferred: str | None = None,
    *,
    tls: bool = True,
) -> tuple[str, str]:
    """Pick the AUTH mechanism to use and say why.

    Policy: inside TLS, prefer PLAIN (one round trip, simplest, and TLS already protects
    it), then LOGIN, then CRAM-MD5. Without TLS, prefer CRAM-MD5, the only one that does
    not send the password itself. A mechanism you name in ``preferred`` wins when the
    server offers it.

    Args:
        server_mechanisms: The names after ``250-AUTH`` in the EHLO reply (a string such as
            ``"LOGIN PLAIN"`` works too). Case does not matter.
        preferred: The mechanism the learner asked for, if any.
        tls: Whether the session is inside TLS.

    Returns:
        ``(mechanism, reason)``.

    Raises:
        NoCommonMechanismError: ``preferred`` is not offered, or nothing offered is
            supported by smtplab.
    """
    if isinstance(server_mechanisms, str):
        server_mechanisms = server_mechanisms.split()
    offered = [m.strip().upper() for m in server_mechanisms if m and m.strip()]
    if not offered:
        raise NoCommonMechanismError(
            "the server advertises no AUTH mechanisms; aiosmtpd hides AUTH until the session "
            "is inside TLS (auth_require_tls=True): STARTTLS first (RFC 4954 §4)"
        )
    if preferred is not None:
        wanted = preferred.strip().upper()
        if wanted not in MECHANISMS:
            raise NoCommonMechanismError(
                f"{preferred!r} is not a mechanism smtplab speaks; choose one of {', '.join(MECHANISMS)}"
            )
        if wanted not in offered:
            raise NoCommonMechanismError(
                f"you asked for {wanted} but the server offers only {', '.join(offered)}"
            )
        return wanted, f"you asked for {wanted} and the server offers it"
    order = ("PLAIN", "LOGIN", "CRAM-MD5") if tls else ("CRAM-MD5", "PLAIN", "LOGIN")
    reasons = {
        (True, "PLAIN"): "PLAIN: one round trip and the simplest; TLS already hides the password",
        (True, "LOGIN"): "LOGIN: the server offers no PLAIN; TLS hides the password it sends",
        (True, "CRAM-MD5"): (
            "CRAM-MD5: the only mechanism offered that smtplab speaks; it proves the password "
            "with HMAC-MD5 instead of sending it"
        ),
        (False, "CRAM-MD5"): (
            "CRAM-MD5: without TLS it is the only one that does not send the password itself "
            "(it sends an HMAC-MD5 of the server's challenge)"
        ),
        (False, "PLAIN"): (
            "PLAIN: the server offers no CRAM-MD5; without TLS anyone on the path can decode "
            "the password - use STARTTLS first"
        ),
        (False, "LOGIN"): (
            "LOGIN: the server offers no CRAM-MD5 or PLAIN; without TLS anyone on the path can "
            "decode the password - use STARTTLS first"
        ),
    }
    for name in order:
        if name in offered:
            return name, reasons[(tls, name)]
    raise NoCommonMechanismError(
        f"the server offers {', '.join(offered)}, none of which smtplab speaks ({', '.join(MECHANISMS)})"
    )


# --------------------------------------------------------------------------- reading an exchange

#: How the client's transcript says which mechanism it chose, and why (an event before AUTH).
CHOSEN_EVENT = "AUTH mechanism chosen - "

# The role of each line of an exchange, worked out once from the lines themselves.
_ASK, _ASK_WITH_RESPONSE, _EMPTY_CHALLENGE, _PROMPT_USER, _PROMPT_PASSWORD = range(5)
_CHALLENGE, _ANSWER_PLAIN, _ANSWER_USER, _ANSWER_PASSWORD, _ANSWER_CRAM = range(5, 10)
_ANSWER_OTHER, _CANCEL, _FINAL, _OTHER = range(10, 14)


@dataclass(frozen=True)
class AuthStep:
    """One step of an AUTH exchange, told for people: a line on the wire, or a computation.

    Attributes:
        sender: ``"client"``, ``"server"``, or ``"computed"`` (worked out at one end, never sent).
        wire: The line as it crossed the wire (``""`` for a computed step), secrets masked unless
            revealed.
        decoded: What the base64 in it says, control characters made visible (NUL as ``\\0``),
            the password masked unless revealed; ``""`` when there is nothing to decode.
        meaning: What the step is and why it matters, in a sentence or two.
        tls: Whether the line travelled inside TLS.
        hidden: Whether something in this step is masked (``reveal_secrets=True`` shows it).
    """

    sender: str
    wire: str
    decoded: str
    meaning: str
    tls: bool = False
    hidden: bool = False

    @property
    def marker(self) -> str:
        """``->`` / ``~>`` client, ``<-`` / ``<~`` server (``~`` inside TLS), ``==`` computed."""
        if self.sender == "computed":
            return "=="
        arrow = "~" if self.tls else "-"
        return f"{arrow}>" if self.sender == "client" else f"<{arrow}"


def _visible(text: str) -> str:
    """Decoded text for people: NUL as ``\\0``, as Python writes it; other controls as renderings show them.

    NUL matters here (PLAIN's separator, the end of aiosmtpd's LOGIN prompts), and ``\\0`` reads
    the same in every font.
    """
    return display(text.replace("\0", "\\0"))


def _decode_b64(text: str) -> bytes | None:
    """The bytes a base64 payload stands for (``=`` is the empty response), or ``None``."""
    if text.strip() == "=":  # RFC 4954 §4: an empty initial response
        return b""
    try:
        return _b64decode(text)
    except ValueError:
        return None


def _text(data: bytes | None) -> str | None:
    return None if data is None else data.decode("utf-8", "replace")


class AuthExchange:
    """One AUTH exchange read from a transcript: the mechanism, each step decoded, the outcome.

    Made by :func:`auth_exchanges` from any transcript that saw the exchange in the clear — the
    client's, the lab server's, or a proxy's. Everything a learner might print masks the
    password (and a CRAM-MD5 digest, which allows guessing it offline) unless asked with
    ``reveal_secrets=True``; user names are shown, as the lab's mailbox shows them.

    Args:
        lines: The transcript lines of the exchange: the client's ``AUTH`` command, every
            ``334`` challenge and answer, and the final reply.
        reason: Why the client chose this mechanism, when its transcript says so.

    Attributes:
        lines: As given.
        mechanism: ``"PLAIN"``, ``"LOGIN"``, ``"CRAM-MD5"`` or whatever the client asked for.
        reason: As given.
    """

    def __init__(self, lines: Iterable[Line], *, reason: str = "") -> None:
        self.lines: tuple[Line, ...] = tuple(lines)
        if not self.lines or self.lines[0].sender != "client":
            raise ValueError("an AUTH exchange starts with the client's AUTH command")
        words = self.lines[0].text.split()
        self.mechanism = words[1].upper() if len(words) > 1 else ""
        self.reason = reason
        self._roles, self._values = self._read()

    # -- taking the lines apart -----------------------------------------------------------

    def _read(self) -> tuple[list[int], list[str | None]]:
        """The role of each line, and the text its base64 stands for (``None``: nothing, or not base64)."""
        roles: list[int] = []
        values: list[str | None] = []
        words = self.lines[0].text.split()
        initial = words[2] if len(words) > 2 else None
        answer = {"PLAIN": _ANSWER_PLAIN, "LOGIN": _ANSWER_USER, "CRAM-MD5": _ANSWER_CRAM}.get(
            self.mechanism, _ANSWER_OTHER
        )
        roles.append(_ASK_WITH_RESPONSE if initial is not None else _ASK)
        values.append(_text(_decode_b64(initial)) if initial is not None else None)
        if initial is not None and self.mechanism == "LOGIN":
            answer = _ANSWER_PASSWORD  # the user name came with the command
        for line in self.lines[1:]:
            if line.sender == "server":
                payload = line.text[4:]
                value = _text(_decode_b64(payload)) if line.code == 334 else None
                if line.code != 334:
                    role = _FINAL if line.text[3:4] != "-" else _OTHER
                elif self.mechanism == "PLAIN" or not payload.strip():
                    role = _EMPTY_CHALLENGE
                elif self.mechanism == "LOGIN":
                    asks_password = value is not None and "pass" in value.lower()
                    role = _PROMPT_PASSWORD if asks_password else _PROMPT_USER
                    answer = _ANSWER_PASSWORD if asks_password else _ANSWER_USER
                elif self.mechanism == "CRAM-MD5":
                    role = _CHALLENGE
                else:
                    role = _OTHER
            elif line.text.strip() == "*":
                role, value = _CANCEL, None
            else:
                role, value = answer, _text(_decode_b64(line.text))
            roles.append(role)
            values.append(value)
        return roles, values

    def _value(self, *roles: int) -> str | None:
        return next(
            (v for r, v in zip(self._roles, self._values, strict=True) if r in roles and v is not None), None
        )

    def _plain_parts(self) -> list[str] | None:
        blob = self._value(_ANSWER_PLAIN) if self.mechanism == "PLAIN" else None
        if blob is None and self.mechanism == "PLAIN" and self._roles[0] == _ASK_WITH_RESPONSE:
            blob = self._values[0]
        parts = blob.split("\0") if blob is not None else None
        return parts if parts is not None and len(parts) == 3 else None

    def _cram_answer(self) -> tuple[str, str] | None:
        answer = self._value(_ANSWER_CRAM)
        if answer is None or " " not in answer:
            return None
        user, _, digest = answer.rpartition(" ")
        return user, digest

    # -- what it says ---------------------------------------------------------------------

    @property
    def final(self) -> Line | None:
        """The server's final reply (``235``, ``535``, ``538``…), or ``None`` if none came."""
        return next(
            (line for role, line in zip(self._roles, self.lines, strict=True) if role == _FINAL), None
        )

    @property
    def code(self) -> int | None:
        """The final reply's code, or ``None``."""
        return self.final.code if self.final is not None else None

    @property
    def accepted(self) -> bool:
        """Whether the server answered ``235``."""
        return self.code == 235

    @property
    def tls(self) -> bool:
        """Whether the exchange travelled inside TLS."""
        return self.lines[0].tls

    @property
    def user(self) -> str | None:
        """The user name the client gave, read from the wire (not a secret in the lab)."""
        if self.mechanism == "PLAIN":
            parts = self._plain_parts()
            return parts[1] if parts else None
        if self.mechanism == "LOGIN":
            if self._roles[0] == _ASK_WITH_RESPONSE:
                return self._values[0]
            return self._value(_ANSWER_USER)
        if self.mechanism == "CRAM-MD5":
            answer = self._cram_answer()
            return answer[0] if answer else None
        return None

    def password(self, *, reveal_secrets: bool = False) -> str | None:
        """The password as anyone reading the wire decodes it — ``********`` unless revealed.

        Returns:
            For PLAIN and LOGIN the password the client sent; ``None`` for CRAM-MD5, whose
            password never crosses the wire, and when the exchange holds none.
        """
        if self.mechanism == "PLAIN":
            parts = self._plain_parts()
            found = parts[2] if parts else None
        elif self.mechanism == "LOGIN":
            found = self._value(_ANSWER_PASSWORD)
        else:
            found = None
        return found if found is None or reveal_secrets else MASK

    @property
    def challenge(self) -> str | None:
        """The CRAM-MD5 challenge the server sent, decoded (``None`` for other mechanisms)."""
        return self._value(_CHALLENGE) if self.mechanism == "CRAM-MD5" else None

    def digest(self, *, reveal_secrets: bool = False) -> str | None:
        """The CRAM-MD5 HMAC-MD5 the client sent, in hex — ``********`` unless revealed.

        Masked like a password: with the challenge beside it, it lets anyone guess the password
        offline at the speed of MD5.
        """
        answer = self._cram_answer() if self.mechanism == "CRAM-MD5" else None
        if answer is None:
            return None
        return answer[1] if reveal_secrets else MASK

    def verify(self, password: str) -> bool | None:
        """Whether ``password`` is the one this exchange proved — the server's own check.

        For CRAM-MD5, whether HMAC-MD5(``password``, challenge) is the digest the client sent;
        for PLAIN and LOGIN, whether it is the password read from the wire. ``None`` when the
        exchange holds too little to tell.
        """
        if self.mechanism == "CRAM-MD5":
            answer, challenge = self._cram_answer(), self.challenge
            if answer is None or challenge is None:
                return None
            expected = hmac_md5(password, challenge)
            return hmac.compare_digest(expected, answer[1].lower())
        found = self.password(reveal_secrets=True)
        return None if found is None else hmac.compare_digest(found.encode(), password.encode())

    # -- told step by step ----------------------------------------------------------------

    def steps(self, *, reveal_secrets: bool = False, password: str | None = None) -> list[AuthStep]:
        """Every line of the exchange, decoded and explained; for CRAM-MD5 the computation too.

        Args:
            reveal_secrets: Show the password, the base64 that carries it and CRAM-MD5's digest.
            password: For CRAM-MD5: the password to compute HMAC-MD5 with, to see whether it
                gives the digest the client sent (what the server does with its stored copy).
        """
        steps: list[AuthStep] = []
        for role, value, line in zip(self._roles, self._values, self.lines, strict=True):
            if role == _ANSWER_CRAM:
                steps.append(self._computed_step(line.tls, reveal_secrets, password))
            decoded, hidden = self._decoded(role, value, reveal_secrets)
            wire = line.text if reveal_secrets else line.masked
            hidden = hidden or (not reveal_secrets and line.secret_from is not None)
            steps.append(AuthStep(line.sender, wire, decoded, self._meaning(role, line), line.tls, hidden))
        return steps

    def _decoded(self, role: int, value: str | None, reveal: bool) -> tuple[str, bool]:
        if role in (_CANCEL, _FINAL, _OTHER) or (role == _ASK and value is None):
            return "", False
        if value is None:
            return "(not valid base64)", False
        if role == _ANSWER_PASSWORD or (role == _ASK_WITH_RESPONSE and self.mechanism == "LOGIN"):
            secret = role == _ANSWER_PASSWORD
            return (_visible(value) if reveal or not secret else MASK), secret and not reveal
        if role in (_ANSWER_PLAIN, _ASK_WITH_RESPONSE) and self.mechanism == "PLAIN":
            parts = value.split("\0")
            if not reveal and len(parts) == 3:
                return _visible(f"{parts[0]}\0{parts[1]}\0") + MASK, True
            if not reveal:
                return MASK, True
        unknown = role == _ANSWER_OTHER or (role == _ASK_WITH_RESPONSE and self.mechanism not in MECHANISMS)
        if unknown and not reveal:
            return MASK, True
        if role == _ANSWER_CRAM and not reveal:
            user, space, _ = value.rpartition(" ")
            return (_visible(user) + " " + MASK if space else MASK), True
        return _visible(value), False

    def _computed_step(self, tls: bool, reveal: bool, password: str | None) -> AuthStep:
        challenge = _visible(self.challenge) if self.challenge is not None else "the challenge"
        why = (
            "The client computes this from the challenge and its password, and sends only the "
            "result: the password itself never crosses the wire. The server checks the answer by "
            "doing the same computation, so it must keep the password itself (or an equivalent "
            "key), where a login system would keep only a one-way hash."
        )
        if password is None or self.challenge is None:
            return AuthStep("computed", "", f"HMAC-MD5(key=password, message={challenge})", why, tls)
        digest = hmac_md5(password, self.challenge)
        key = _visible(password) if reveal else MASK
        shown = digest if reveal else MASK
        match = self.verify(password)
        if match:
            verdict = (
                f" With {'this' if reveal else 'the given'} password it gives the digest the client sent."
            )
        elif match is False:
            verdict = (
                f" With {'this' if reveal else 'the given'} password it does not give the digest the client "
                "sent: the server, holding this password, would answer 535."
            )
        else:
            verdict = ""
        return AuthStep(
            "computed",
            "",
            f"HMAC-MD5(key={key}, message={challenge}) = {shown}",
            why + verdict,
            tls,
            not reveal,
        )

    def _meaning(self, role: int, line: Line) -> str:
        mechanism = self.mechanism
        if role == _ASK:
            return {
                "PLAIN": "The client asks for PLAIN, without an initial response: the server will "
                "answer 334 with an empty challenge.",
                "LOGIN": "The client asks for LOGIN: the server will prompt for the user name, then "
                "for the password, each in base64.",
                "CRAM-MD5": "The client asks for CRAM-MD5: the server will send a challenge for the "
                "client to sign with its password.",
            }.get(
                mechanism,
                f"The client asks for {mechanism or 'a mechanism'}, which smtplab does not take apart.",
            )
        if role in (_ASK_WITH_RESPONSE, _ANSWER_PLAIN):
            if mechanism == "LOGIN":
                return "AUTH LOGIN with the user name already in base64: the server will prompt for the password."
            if mechanism == "PLAIN":
                return (
                    "PLAIN's response: base64 of authzid NUL user NUL password (RFC 4616 §2). Base64 "
                    "is an encoding, not encryption: whoever reads this line can decode the password."
                )
            return "A response this lesson does not take apart."
        if role == _EMPTY_CHALLENGE:
            return "An empty challenge: the server waits for the client's response."
        if role == _PROMPT_USER:
            return "The server asks for the user name (the prompt is base64 too)."
        if role == _PROMPT_PASSWORD:
            return "The server asks for the password."
        if role == _CHALLENGE:
            return (
                "The challenge: a random number, a timestamp and the server's name (RFC 2195 §2), new "
                "for every attempt, so an answer recorded once is no use the next time."
            )
        if role == _ANSWER_USER:
            return "The user name, in base64."
        if role == _ANSWER_PASSWORD:
            return (
                "The password, in base64: encoded, not encrypted. Anyone who reads this line can decode it."
            )
        if role == _ANSWER_CRAM:
            return "The user name and the HMAC-MD5 digest in hex, in base64 (RFC 2195 §2)."
        if role == _ANSWER_OTHER:
            return "The client's answer, in base64."
        if role == _CANCEL:
            return "'*' cancels the exchange (RFC 4954 §4); the server answers 501."
        if role == _FINAL:
            return self._outcome(line)
        return explain(line.text) if line.sender == "server" else ""

    def _outcome(self, line: Line) -> str:
        code = line.code
        if code == 235:
            who = f" as {self.user!r}" if self.user else ""
            return f"Accepted: the session is authenticated{who} until it ends."
        if code == 535:
            return (
                "Refused: the user name or the password is wrong. The server does not say which, so "
                "a guesser learns nothing from it."
            )
        if code == 538:
            sent = self._roles[0] == _ASK_WITH_RESPONSE and not self.tls
            already = (
                " The response came with the command, though: it crossed the wire anyway." if sent else ""
            )
            return (
                "Refused before checking anything: this server takes AUTH only inside TLS (RFC 4954 §4). "
                f"STARTTLS first.{already}"
            )
        if code == 501:
            return "Refused: the answer was not base64 of what the mechanism expects, or it was cancelled."
        if code == 504:
            return f"Refused: this server does not speak {self.mechanism or 'that mechanism'}."
        return explain(line.text)

    def text(self, *, reveal_secrets: bool = False, password: str | None = None) -> str:
        """The steps as plain text: the wire line, ``=`` what it decodes to, ``#`` what it means."""
        out = [self.headline]
        for step in self.steps(reveal_secrets=reveal_secrets, password=password):
            out.append(f"{step.marker} {display(step.wire)}" if step.wire else f"{step.marker}")
            if step.decoded:
                out.append(f"   = {step.decoded}")
            out.append(f"   # {step.meaning}")
        return "\n".join(out)

    @property
    def headline(self) -> str:
        """One line: the mechanism, inside TLS or not, and the outcome."""
        where = "inside TLS" if self.tls else "in plain text"
        if self.code is None:
            outcome = "no final reply"
        else:
            outcome = {235: "accepted", 535: "refused", 538: "refused: TLS first"}.get(
                self.code, "not accepted"
            )
            outcome += f" ({self.code})"
        return f"AUTH {self.mechanism or '?'} {where}: {outcome}"

    def __str__(self) -> str:
        return self.text()

    def __repr__(self) -> str:
        return f"<AuthExchange {self.headline}, {len(self.lines)} lines>"


def auth_exchanges(transcript: Transcript | Iterable[Line]) -> list[AuthExchange]:
    """Every AUTH exchange in a transcript, in order, each ready to be told step by step.

    Works on any record that saw the exchange in the clear: ``client.transcript``, a lab
    server's ``server.transcripts[...]``, a proxy connection's transcript. An exchange inside
    TLS that a proxy relayed blind is not there to find.

    Args:
        transcript: A :class:`~smtplab.transcript.Transcript` (or its lines).

    Returns:
        The exchanges, oldest first; an exchange cut short (no final reply yet) is included.
    """
    lines = transcript.lines if hasattr(transcript, "lines") else list(transcript)
    found: list[AuthExchange] = []
    current: list[Line] | None = None
    reason = ""
    for line in lines:
        if line.sender == "event":
            if line.text.startswith(CHOSEN_EVENT):
                reason = line.text[len(CHOSEN_EVENT) :]
            continue
        if current is None:
            if line.sender == "client" and line.text[:5].upper() in ("AUTH ", "AUTH"):
                current = [line]
            continue
        if line.sender == "client" and current[-1].sender == "client":
            # No reply came to the last line (the connection broke): start afresh.
            found.append(AuthExchange(current, reason=reason))
            current, reason = None, ""
            if line.text[:5].upper() in ("AUTH ", "AUTH"):
                current = [line]
            continue
        current.append(line)
        if line.sender == "server" and line.code != 334 and line.text[3:4] != "-":
            found.append(AuthExchange(current, reason=reason))
            current, reason = None, ""
    if current is not None:
        found.append(AuthExchange(current, reason=reason))
    return found
