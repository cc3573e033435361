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

if TYPE_CHECKING:  # pragma: no cover
    from aiosmtpd.smtp import Envelope, Session

__all__ = [
    "MECHANISMS",
    "AuthAttempt",
    "CramMD5Mechanism",
    "CramMD5Response",
    "LabAuthenticator",
    "auth_cram_md5",
    "choose_mechanism",
    "cram_md5_challenge",
    "cram_md5_response",
    "decode_plain",
    "login_prompts",
    "login_response",
    "plain_response",
]

MECHANISMS: tuple[str, ...] = ("PLAIN", "LOGIN", "CRAM-MD5")
"""The SASL mechanisms smtplab speaks on both sides."""

_HEX_DIGEST = re.compile(rb"[0-9a-fA-F]{32}")


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
        secret = password.encode("utf-8") if isinstance(password, str) else password
        expected = hmac.new(secret, self.challenge, "md5").hexdigest().encode("ascii")
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
    digest = hmac.new(password.encode("utf-8"), challenge, "md5").hexdigest()
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
