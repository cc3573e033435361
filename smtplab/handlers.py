"""Server handlers: the capture handler, and the guard around a learner's own handler.

aiosmtpd calls *hooks* on a handler object: ``async def handle_RCPT(self, server, session,
envelope, address, rcpt_options)`` and so on, one per SMTP command, each returning the reply
line (``"250 OK"``, ``"550 5.1.1 No such user"``). smtplab teaches that protocol rather than
hiding it: ``start_server(handler=MyHandler())`` runs the learner's hooks unchanged, and the lab
still captures every message the learner's ``handle_DATA`` accepts.

What the guard adds is what a learner needs when a hook goes wrong: a plain ``def`` instead of
``async def``, an exception, a forgotten ``return`` or a reply without its three-digit code each
give the client a clear ``451`` reply naming the hook, and the server keeps the details in
``server.errors`` — where stock aiosmtpd answers an opaque ``500``, or sends the malformed line.
A hook aiosmtpd will never call (``handle_rcpt``, ``handle_MAIL_FROM``) is named, with the one
meant, when the server starts. A hook's own reply is sent as written: the lab server offers
ENHANCEDSTATUSCODES, so a real one would write ``"250 2.1.5 OK"`` where a lesson may write
``"250 OK"``.
"""

from __future__ import annotations

import asyncio
import difflib
import inspect
import logging
import traceback
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from smtplab import protocol
from smtplab.mailbox import CapturedMessage, Mailbox

__all__ = ["CaptureHandler", "Directory", "HandlerError", "LabHandler", "check_handler"]

log = logging.getLogger("smtplab")

# Hooks aiosmtpd calls outside the usual ``await hook(server, session, envelope, *args)`` shape:
# handle_STARTTLS is called synchronously, handle_exception with the error only.
_PASS_THROUGH = frozenset({"handle_STARTTLS", "handle_PROXY", "handle_exception"})

#: Every hook aiosmtpd calls on a handler (aiosmtpd's handler documentation): ``handle_`` and the
#: command in capitals, and ``handle_exception``. Any other ``handle_`` name is never called.
HOOKS = frozenset(
    {f"handle_{command}" for command in ("HELO", "EHLO", "MAIL", "RCPT", "DATA", "RSET", "NOOP", "QUIT")}
    | {"handle_VRFY", "handle_AUTH", "handle_STARTTLS", "handle_PROXY", "handle_exception"}
)


@dataclass(frozen=True)
class HandlerError:
    """A mistake in a server hook, kept for the learner in ``server.errors``.

    Attributes:
        hook: The hook that failed, e.g. ``"handle_DATA"``.
        error: The exception (a ``TypeError`` for a hook that is not ``async def``).
        traceback: The formatted traceback, ready to print.
        reply: The SMTP reply the client was given instead.
        time: When it happened (UTC).
    """

    hook: str
    error: BaseException
    traceback: str
    reply: str
    time: datetime = field(default_factory=lambda: datetime.now(timezone.utc))

    def __str__(self) -> str:
        return f"{self.hook} failed: {type(self.error).__name__}: {self.error}\n{self.traceback}"


def check_handler(handler: object) -> list[str]:
    """Return the problems aiosmtpd would trip over in ``handler``'s hooks, as sentences.

    A hook written with ``def`` where aiosmtpd needs ``async def``, and a ``handle_`` name
    aiosmtpd never calls (with the hook it probably meant).
    """
    problems = []
    for name in dir(handler):
        if not name.startswith("handle_"):
            continue
        hook = getattr(handler, name)
        if callable(hook) and name not in HOOKS:
            problems.append(_never_called(type(handler).__name__, name))
            continue
        if name in _PASS_THROUGH:
            continue
        if callable(hook) and not inspect.iscoroutinefunction(hook):
            problems.append(
                f"{type(handler).__name__}.{name} is a plain 'def'; aiosmtpd awaits its hooks, "
                f"so write 'async def {name}(self, server, session, envelope, ...)'."
            )
    return problems


def _never_called(owner: str, name: str) -> str:
    by_command = {hook[len("handle_") :].upper(): hook for hook in HOOKS}
    wanted = name[len("handle_") :].upper()
    meant = by_command.get(wanted) or next(
        (hook for command, hook in by_command.items() if wanted.startswith(f"{command}_")), None
    )
    if meant is None:
        close = difflib.get_close_matches(wanted, list(by_command), n=1, cutoff=0.7)
        meant = by_command[close[0]] if close else None
    said = f"{owner}.{name} is never called: aiosmtpd calls handle_<COMMAND> in capitals"
    if meant is not None:
        return f"{said} — did you mean {meant}?"
    return f"{said} ({', '.join(sorted(HOOKS))}); if it is a helper of yours, rename it, e.g. _{name}."


def _one_line(text: str, limit: int = 200) -> str:
    """Make text safe for a single SMTP reply line: no CR/LF, ASCII, bounded length."""
    flat = " ".join(text.split()).encode("ascii", "replace").decode("ascii")
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


class CaptureHandler:
    """Capture every message into a :class:`~smtplab.mailbox.Mailbox` (and optionally a Maildir).

    This is the default handler of a lab server: it accepts every message with
    ``250 2.0.0 OK: queued as <id>``.

    Args:
        mailbox: Where captured messages go.
        maildir: A directory to also write each message to, in Maildir format (stdlib
            :class:`mailbox.Maildir`); it survives server restarts.
    """

    def __init__(self, mailbox: Mailbox, *, maildir: str | Path | None = None) -> None:
        self.mailbox = mailbox
        self.maildir = None
        if maildir is not None:
            import mailbox as stdlib_mailbox  # only servers that keep a Maildir need it

            self.maildir = stdlib_mailbox.Maildir(maildir, create=True)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = self.capture(server, session, envelope)
        return f"250 2.0.0 OK: queued as {message.id}"

    def capture(self, server: Any, session: Any, envelope: Any) -> CapturedMessage:
        """Store the envelope as a :class:`CapturedMessage` and return it.

        Runs on the server's event loop, so it only copies references: parsing happens later,
        when someone reads ``message.message``.
        """
        raw = envelope.original_content or envelope.content or b""
        if isinstance(raw, str):  # decode_data=True servers hand over str
            raw = raw.encode("utf-8", "surrogateescape")
        tls_summary = getattr(server, "tls_summary", None)
        tls = tls_summary() if tls_summary is not None else None
        message = CapturedMessage(
            mail_from=envelope.mail_from or "",
            rcpt_tos=tuple(envelope.rcpt_tos),
            raw=raw,
            peer=session.peer,
            helo=session.host_name,
            mail_options=tuple(envelope.mail_options),
            rcpt_options=tuple(envelope.rcpt_options),
            tls=tls,
            auth_user=session.auth_data if session.authenticated else None,
            transcript=getattr(server, "transcript", None),
        )
        if self.maildir is not None:
            self.maildir.add(_delivery_headers(message) + raw)
        self.mailbox.append(message)
        return message


def _delivery_headers(message: CapturedMessage) -> bytes:
    """Headers a final delivery adds (RFC 5321 §4.4 Return-Path), so a Maildir keeps the envelope."""
    lines = [f"Return-Path: <{message.mail_from}>"]
    lines += [f"Delivered-To: {rcpt}" for rcpt in message.rcpt_tos]
    return ("\r\n".join(lines) + "\r\n").encode("utf-8", "surrogateescape")


class Directory:
    """The lab's address book: which mailboxes exist (for VRFY) and which lists (for EXPN).

    Real servers mostly refuse both commands today, because they help spammers harvest
    addresses (RFC 5321 §7.3); a lab server can answer them so learners see what they were for.

    Args:
        mailboxes: Addresses that exist, e.g. ``["alice@example.test"]``; a display name may
            be given as ``"Alice Liddell <alice@example.test>"``.
        lists: Mailing lists by name, e.g. ``{"team": ["alice@example.test", "bob@example.test"]}``.
    """

    def __init__(
        self, mailboxes: Iterable[str] = (), lists: Mapping[str, Iterable[str]] | None = None
    ) -> None:
        import email.utils

        self.mailboxes = {email.utils.parseaddr(entry)[1].lower(): entry for entry in mailboxes}
        self.lists = {
            name.lower(): [str(member) for member in members] for name, members in (lists or {}).items()
        }

    def verify(self, query: str) -> str:
        """The reply to ``VRFY query`` (RFC 5321 §3.5.1, §3.5.3)."""
        if not self.mailboxes:
            return "252 2.1.5 Cannot VRFY user, but will accept message and attempt delivery"
        wanted = query.strip("<>").lower()
        found = [
            entry for address, entry in self.mailboxes.items() if wanted in (address, address.split("@")[0])
        ]
        if len(found) == 1:
            return f"250 2.1.5 {_angle(found[0])}"
        if found:
            return f"553 5.1.4 User ambiguous: {query} could be {', '.join(sorted(found))}"
        return f"550 5.1.1 {query}: no such mailbox here"

    def expand(self, name: str) -> list[str]:
        """The reply lines to ``EXPN name`` (RFC 5321 §3.5.2), one member per line."""
        if not self.lists:
            return [
                "502 5.5.1 EXPN is disabled (most servers refuse it); this lab server has no lists: "
                "start_server(lists={'team': ['alice@example.test', 'bob@example.test']})"
            ]
        members = self.lists.get(name.lower())
        if members is None:
            return [f"550 5.1.1 {name}: no such list here (lists: {', '.join(sorted(self.lists))})"]
        if not members:
            return [f"250 2.1.5 {name} has no members"]
        return [f"250{'-' if n < len(members) - 1 else ' '}2.1.5 {_angle(m)}" for n, m in enumerate(members)]


def _angle(entry: str) -> str:
    return entry if "<" in entry else f"<{entry}>"


Report = Callable[[str, BaseException], str]


class LabHandler:
    """The handler aiosmtpd actually sees: the learner's hooks, guarded, plus capture.

    Every ``handle_*`` hook and ``auth_*`` mechanism of ``user`` is exposed under the same name
    (aiosmtpd discovers hooks with ``dir()``). ``handle_DATA`` runs the learner's hook first
    and captures the message only when the reply it returns is a ``2xx`` acceptance.

    Args:
        capture: The capture handler that stores accepted messages.
        user: The learner's handler, or ``None`` to capture everything.
        report: Called with the hook name and the exception when a hook fails; returns the
            reply to give the client.
        directory: Answers VRFY unless the learner's handler has its own ``handle_VRFY``.
        reply_delay: Seconds to wait before the final reply to DATA, as a distant or busy
            server would (the parallel-sending lesson measures what that costs).
    """

    def __init__(
        self,
        capture: CaptureHandler,
        user: object | None,
        *,
        report: Report,
        directory: Directory | None = None,
        reply_delay: float = 0.0,
    ) -> None:
        self._capture = capture
        self._user = user
        self._report = report
        self.directory = directory or Directory()
        self._reply_delay = reply_delay
        for name in dir(user) if user is not None else ():
            attr = getattr(user, name)
            if name.startswith("auth_") or name in _PASS_THROUGH:
                setattr(self, name, attr)
            elif name.startswith("handle_") and name not in ("handle_DATA", "handle_VRFY") and callable(attr):
                setattr(self, name, self._guard(name, attr))

    def _guard(self, name: str, hook: Callable[..., Any]) -> Callable[..., Awaitable[Any]]:
        async def guarded(*args: Any) -> Any:
            return await self._call(name, hook, *args)

        from smtplab._aiosmtpd import mimic_signature

        mimic_signature(guarded, hook)  # aiosmtpd counts handle_EHLO's parameters
        return guarded

    async def _call(self, name: str, hook: Callable[..., Any], *args: Any) -> Any:
        try:
            result = hook(*args)
            if not inspect.isawaitable(result):
                raise TypeError(
                    f"{name} must be 'async def' (it is a plain 'def'): aiosmtpd awaits every "
                    "hook. Its return value was ignored."
                )
            return check_reply(name, await result)
        except Exception as error:  # noqa: BLE001 - turned into a reply, kept in server.errors
            return self._report(name, error)

    async def handle_VRFY(self, server: Any, session: Any, envelope: Any, address: str) -> str:
        hook = getattr(self._user, "handle_VRFY", None)
        if hook is not None:
            return await self._call("handle_VRFY", hook, server, session, envelope, address)
        return self.directory.verify(address)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self._reply_delay:
            await asyncio.sleep(self._reply_delay)
        status: str | None = None
        hook = getattr(self._user, "handle_DATA", None)
        if hook is not None:
            status = await self._call("handle_DATA", hook, server, session, envelope)
            if not str(status).startswith("2"):
                return status
        try:
            message = self._capture.capture(server, session, envelope)
        except Exception as error:  # noqa: BLE001 - never raise into aiosmtpd
            return self._report("capture", error)
        return status or f"250 2.0.0 OK: queued as {message.id}"


def check_reply(name: str, status: Any) -> Any:
    """What a learner's hook returned, checked before aiosmtpd sends it: the one place to do so.

    A reply is a ``str`` starting with a three-digit code (RFC 5321 §4.2); ``handle_EHLO`` (the
    five-parameter form) returns a list of them. The guard turns each error below into a ``451``
    naming the hook, so no malformed line reaches the client.

    Raises:
        TypeError: The hook returned ``None`` (a forgotten ``return``), or something not a str.
        ValueError: The hook returned a line without a reply code, e.g. ``"OK fine"``.
    """
    if status is None:
        raise TypeError(
            f"{name} returned None; return a reply line such as '250 OK' or '550 5.1.1 No such user'."
        )
    for line in status if isinstance(status, list) and name == "handle_EHLO" else [status]:
        if not isinstance(line, str):
            kind = type(line).__name__
            raise TypeError(
                f"{name} returned {line!r} ({'an' if kind[0] in 'aeiou' else 'a'} {kind}); return a "
                "reply line as a str, such as '250 OK' or '550 5.1.1 No such user'."
            )
        if any(protocol.reply_code(part) is None for part in line.split("\r\n")):
            raise ValueError(
                f"{name} returned {line!r}, which is not an SMTP reply: start it with a three-digit "
                "code, e.g. '250 OK' or '550 5.1.1 No such user' (RFC 5321 section 4.2)."
            )
    return status


def describe_failure(name: str, error: BaseException) -> HandlerError:
    """Build the :class:`HandlerError` record and the ``451`` reply for a failed hook."""
    reply = _one_line(
        f"451 4.3.0 Error in {name}: {type(error).__name__}: {error} (details in server.errors)"
    )
    text = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    return HandlerError(hook=name, error=error, traceback=text, reply=reply)
