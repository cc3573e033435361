"""Limits of a lab server, and the aiosmtpd session that enforces them.

Thirty people typing SMTP by hand into servers on one shared host, kernels interrupted and
re-run: the lab server must keep answering, never hang a notebook, and never store half a
message. Stock aiosmtpd 1.4.6 has no connection cap, no recipient limit, no limit on AUTH
attempts, accepts a NUL byte inside ``MAIL FROM:<…>``, keeps an idle connection for five
minutes and closes it without a word. :class:`Limits` names every bound in one place, with
defaults safe for a classroom, and :class:`LimitedSMTP` (an aiosmtpd ``SMTP`` subclass) enforces
them, each with a proper SMTP reply that says which limit was hit.

============================  ===========  ====================================================
``Limits`` field              default      when it is exceeded
============================  ===========  ====================================================
``max_message_size``          10 MiB       ``552 5.3.4`` after the data (nothing is stored);
                                           advertised as ``SIZE`` in the EHLO reply, and a
                                           larger ``MAIL FROM:<…> SIZE=`` is refused at once
``max_line_length``           1001 bytes   ``500 5.5.2`` (a message line: RFC 5321 §4.5.3.1.6)
``max_command_length``        512 bytes    ``500 5.5.2`` (a command line: RFC 5321 §4.5.3.1.4)
``max_recipients``            100          ``452 4.5.3`` for each further ``RCPT TO``
                                           (RFC 5321 §4.5.3.1.10); send the rest in another
                                           transaction
``max_connections``           20           ``421 4.7.0`` instead of the greeting, then close;
                                           the next client is served once a slot frees
``max_auth_failures``         3            ``421 4.7.0`` after the third ``535``, then close
``idle_timeout``              120 s        ``421 4.4.2``, then close (also bounds one DATA
                                           upload and a stuck handler hook)
``max_session_time``          900 s        ``421 4.4.2``, then close (even a client that sends
                                           ``NOOP`` every second)
``strict_line_endings``       ``False``    when ``True``: ``550 5.6.0`` for a message with a
                                           bare CR or LF (otherwise it is stored and flagged
                                           ``"bare-lf"`` / ``"bare-cr"``)
``max_messages``              10,000       the mailbox drops its oldest messages (a
                                           ``MailboxWarning`` once; ``maildir=`` keeps all)
``max_mailbox_bytes``         100 MiB      the same, counted in bytes of raw content
============================  ===========  ====================================================

``None`` switches a limit off (except the two line lengths). Two more rules hold whatever the
limits: a control character (NUL, CR, LF, …) or invalid UTF-8 in a ``MAIL FROM`` / ``RCPT TO``
address is refused with ``501 5.1.7`` / ``501 5.1.3`` naming it, and a line that starts an HTTP
request (``GET``, ``POST``, ``CONNECT``, ``HEAD``, ``PUT`` — a browser aimed at the port) gets
a short ``421`` and the connection is closed, as Postfix does.

aiosmtpd's own knobs do part of the work — ``data_size_limit``, ``timeout``,
``line_length_limit`` and ``command_size_limit`` — and :class:`LimitedSMTP` sets them from
:class:`Limits`; passing ``data_size_limit=`` or ``timeout=`` directly still works and wins.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import re
from dataclasses import dataclass
from typing import Any

from aiosmtpd.smtp import SMTP, syntax

__all__ = ["ConnectionGate", "LimitedSMTP", "Limits"]

log = logging.getLogger("smtplab")

MiB = 1024 * 1024

#: aiosmtpd keywords that :class:`Limits` sets, with the field each comes from.
SMTP_KNOBS = {"data_size_limit": "max_message_size", "timeout": "idle_timeout"}

# An idle timeout of "None" still needs a number for aiosmtpd's timer: a year will do.
_NO_TIMEOUT = 365 * 24 * 3600.0


@dataclass(frozen=True)
class Limits:
    """Every bound of a lab server, with defaults safe for a classroom.

    Pass one to ``start_server(limits=Limits(max_recipients=5))``; the module docstring has
    the table of defaults and the reply each limit gives. ``None`` switches a limit off.

    Attributes:
        max_message_size: Bytes of message content (after the dot-unstuffing); advertised in
            EHLO as ``SIZE``. 10 MiB.
        max_line_length: Bytes of one line, CRLF included, before aiosmtpd stops reading it
            (1001: RFC 5321 §4.5.3.1.6's 1000 plus a leading dot).
        max_command_length: Bytes of one command line (RFC 5321 §4.5.3.1.4: 512).
        max_recipients: Accepted ``RCPT TO`` per message (RFC 5321 §4.5.3.1.8 asks servers to
            take at least 100).
        max_connections: Sessions open at once on one server.
        max_auth_failures: Rejected AUTH attempts (``535``) per connection before it is closed.
        idle_timeout: Seconds a client may stay silent (or take over one DATA upload, or wait
            on a handler hook) before the server says ``421`` and closes.
        max_session_time: Seconds one connection may last, however busy.
        strict_line_endings: Refuse messages with a bare CR or LF instead of flagging them.
        max_messages: Messages the lab server's mailbox keeps in memory (oldest dropped).
        max_mailbox_bytes: Bytes of raw content the mailbox keeps in memory (oldest dropped).
    """

    max_message_size: int | None = 10 * MiB
    max_line_length: int = 1001
    max_command_length: int = 512
    max_recipients: int | None = 100
    max_connections: int | None = 20
    max_auth_failures: int | None = 3
    idle_timeout: float | None = 120.0
    max_session_time: float | None = 900.0
    strict_line_endings: bool = False
    max_messages: int | None = 10_000
    max_mailbox_bytes: int | None = 100 * MiB

    def __post_init__(self) -> None:
        for item in dataclasses.fields(self):
            value = getattr(self, item.name)
            if item.name == "strict_line_endings":
                if not isinstance(value, bool):
                    raise TypeError(f"strict_line_endings must be True or False, not {value!r}")
                continue
            if value is None and item.name not in ("max_line_length", "max_command_length"):
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                off = (
                    ""
                    if item.name in ("max_line_length", "max_command_length")
                    else " (or None for no limit)"
                )
                raise ValueError(f"Limits.{item.name} must be a positive number{off}, not {value!r}")
            if not item.name.endswith(("timeout", "_time")) and not isinstance(value, int):
                raise ValueError(f"Limits.{item.name} must be a whole number, not {value!r}")
        if self.max_line_length < 80 or self.max_command_length < 80:
            raise ValueError("Limits.max_line_length and max_command_length must be at least 80 bytes")

    def smtp_options(self) -> dict[str, Any]:
        """The keywords of aiosmtpd's ``SMTP`` class these limits set."""
        return {
            "data_size_limit": self.max_message_size,
            "timeout": self.idle_timeout if self.idle_timeout is not None else _NO_TIMEOUT,
        }

    def replace(self, **changes: Any) -> Limits:
        """A copy with some fields changed: ``Limits().replace(max_recipients=5)``."""
        return dataclasses.replace(self, **changes)


class ConnectionGate:
    """Counts one server's open sessions against ``Limits.max_connections``.

    One gate per listening server, shared by all its sessions; used only on the server's
    event loop, so it needs no lock.

    Attributes:
        limit: Sessions allowed at once (``None``: no limit).
        open: Sessions open now.
        refused: Connections turned away so far because the server was full.
    """

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self.open = 0
        self.refused = 0

    def enter(self) -> bool:
        """Take a slot; False (and one more refusal counted) when none is free."""
        if self.limit is not None and self.open >= self.limit:
            self.refused += 1
            return False
        self.open += 1
        return True

    def leave(self) -> None:
        """Give a slot back."""
        self.open -= 1

    def __repr__(self) -> str:
        return f"<ConnectionGate {self.open}/{self.limit} open, {self.refused} refused>"


# Browsers and proxies aimed at an SMTP port start with one of these (RFC 9110 §9.3).
HTTP_METHODS = ("GET", "POST", "CONNECT", "HEAD", "PUT")

_CONTROL_NAMES = {0: "NUL byte", 9: "tab", 10: "line feed (LF)", 13: "carriage return (CR)", 127: "DEL"}
_BAD_ADDRESS_CHAR = re.compile("[\x00-\x1f\x7f\udc80-\udcff]")


def address_problem(text: str) -> str | None:
    """Describe the first control character or invalid UTF-8 byte in ``text``, or None.

    aiosmtpd decodes command arguments with ``surrogateescape``, so an invalid UTF-8 byte
    arrives as a lone surrogate (U+DC80–U+DCFF).
    """
    match = _BAD_ADDRESS_CHAR.search(text)
    if match is None:
        return None
    char = ord(match.group())
    if char >= 0xDC80:
        return f"byte 0x{char - 0xDC00:02X} at position {match.start()} is not valid UTF-8"
    name = _CONTROL_NAMES.get(char, "control character")
    return f"{name} (0x{char:02X}) at position {match.start()}; control characters are not allowed"


def bare_line_ending(content: bytes) -> str | None:
    """``"LF"`` or ``"CR"`` when ``content`` has a line ending other than CRLF, else None."""
    rest = content.replace(b"\r\n", b"")
    if b"\n" in rest:
        return "LF"
    if b"\r" in rest:
        return "CR"
    return None


class LimitedSMTP(SMTP):
    """aiosmtpd's SMTP session with :class:`Limits` enforced.

    Args:
        handler: The aiosmtpd handler, as for ``SMTP``.
        limits: The limits to enforce (classroom defaults when omitted).
        gate: The :class:`ConnectionGate` shared by all sessions of one server; without one,
            ``max_connections`` is not enforced.
        **kwargs: Any keyword of aiosmtpd's ``SMTP``; ``data_size_limit`` and ``timeout``
            given here win over ``limits``.

    Replies the server writes on its own — the ``421`` before closing an idle, too long or
    refused connection — and every reply that goes through :meth:`push` pass through
    :meth:`_replied`, a hook for subclasses that record the dialogue.
    """

    def __init__(
        self,
        handler: Any,
        *,
        limits: Limits | None = None,
        gate: ConnectionGate | None = None,
        **kwargs: Any,
    ) -> None:
        self.limits = limits if limits is not None else Limits()
        # Read by SMTP.__init__ (the StreamReader's limit) and by _handle_client: set first.
        self.line_length_limit = self.limits.max_line_length
        self.command_size_limit = self.limits.max_command_length
        super().__init__(handler, **{**self.limits.smtp_options(), **kwargs})
        # aiosmtpd keeps command_size_limits in one dict shared by every session of every
        # server, clears it at each new connection and grows MAIL's entry at each EHLO; give
        # each session its own.
        limit = self.command_size_limit
        self.command_size_limits = collections.defaultdict(lambda: limit)
        self._gate = gate
        self._has_slot = False
        self._refused = False
        self._auth_failures = 0
        self._last_code = 0
        self._lifetime_handle: asyncio.TimerHandle | None = None

    # -- connection ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self.transport is not None:  # STARTTLS: the same connection, the session starts over
            super().connection_made(transport)
            return
        if self._gate is not None and not self._gate.enter():
            # RFC 5321 §3.1: a server may refuse a connection with 421 instead of its greeting.
            self._refused = True
            self.transport = transport
            self.session = self._create_session()
            self.session.peer = transport.get_extra_info("peername")
            log.info("%r refused: %d connections open (the limit)", self.session.peer, self._gate.open)
            full = self._gate.limit
            # Said on the next loop turn, so that a subclass can finish setting up first.
            self.loop.call_soon(
                self._goodbye,
                f"421 4.7.0 {self.hostname} Too many connections ({full} open, the server's "
                "limit): try again later",
            )
            return
        self._has_slot = self._gate is not None
        super().connection_made(transport)
        if self.limits.max_session_time is not None:
            self._lifetime_handle = self.loop.call_later(self.limits.max_session_time, self._session_expired)

    def connection_lost(self, error: Exception | None) -> None:
        if self._lifetime_handle is not None:
            self._lifetime_handle.cancel()
            self._lifetime_handle = None
        if self._has_slot:
            self._has_slot = False
            assert self._gate is not None
            self._gate.leave()
        if self._refused:
            self.transport = None
            asyncio.StreamReaderProtocol.connection_lost(self, error)
            return
        super().connection_lost(error)

    def data_received(self, data: bytes) -> None:
        if not self._refused:
            super().data_received(data)

    def eof_received(self) -> bool | None:
        if self._refused:
            return False
        return super().eof_received()

    def _timeout_cb(self) -> None:
        # Stock aiosmtpd closes without a word; RFC 5321 §4.5.3.2.7 lets a server time out,
        # and a 421 first tells the learner why the connection went away.
        self._goodbye(
            f"421 4.4.2 {self.hostname} Timeout: no complete command for "
            f"{self._timeout_duration:g} s, closing connection"
        )

    def _session_expired(self) -> None:
        self._goodbye(
            f"421 4.4.2 {self.hostname} Session too long: connections last at most "
            f"{self.limits.max_session_time:g} s, closing connection"
        )

    def _goodbye(self, reply: str) -> None:
        """Write a last reply straight to the transport and close it (for callbacks)."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        self._replied(reply)
        transport.write(reply.encode("ascii", "replace") + b"\r\n")
        transport.close()

    async def _hang_up(self, reply: str) -> None:
        """Send a last reply and close, from inside a command (as aiosmtpd's QUIT does)."""
        await self.push(reply)
        if self.transport is not None:
            self.transport.close()
        if self._handler_coroutine is not None:
            self._handler_coroutine.cancel()
            # Stop here, so that commands the client already sent behind this one are not
            # answered on the closing connection (aiosmtpd's QUIT would answer them).
            await asyncio.sleep(0)

    # -- replies ---------------------------------------------------------------------------

    def _replied(self, text: str) -> None:
        """Called with every reply line the session sends; subclasses may record it."""

    def _reword(self, text: str) -> str:
        """aiosmtpd's stock replies to a limit, with an enhanced code and the limit itself."""
        if text == "552 Error: Too much mail data":
            return (
                f"552 5.3.4 Message too big: the limit is {self.data_size_limit} bytes (SIZE in "
                "the EHLO reply); nothing was stored"
            )
        if text == "552 Error: message size exceeds fixed maximum message size":
            return (
                f"552 5.3.4 Message size exceeds the limit of {self.data_size_limit} bytes (SIZE "
                "in the EHLO reply)"
            )
        if text == "500 Command line too long":
            return (
                f"500 5.5.2 Command line too long: the limit is {self.command_size_limit} bytes "
                "(RFC 5321 section 4.5.3.1.4)"
            )
        if text == "500 Line too long (see RFC5321 4.5.3.1.6)":
            return (
                f"500 5.5.2 Line too long: a message line may have {self.line_length_limit} bytes "
                "at most (RFC 5321 section 4.5.3.1.6); nothing was stored"
            )
        return text

    async def push(self, status: Any) -> None:
        text = status.decode("utf-8", "surrogateescape") if isinstance(status, bytes) else status
        reworded = self._reword(text)
        if reworded is not text:
            status = text = reworded
        self._last_code = int(text[:3]) if text[:3].isdigit() else 0
        self._replied(text)
        await super().push(status)

    # -- commands --------------------------------------------------------------------------

    async def _check_address(self, arg: str | None, code: str, what: str) -> bool:
        """Refuse control characters and invalid UTF-8 in an envelope address; True if refused."""
        problem = address_problem(arg or "")
        if problem is None:
            return False
        await self.push(f"501 {code} Bad {what} address: {problem}")
        return True

    @syntax("MAIL FROM: <address>", extended=" [SP <mail-parameters>]")
    async def smtp_MAIL(self, arg: str | None) -> None:
        if await self.check_helo_needed() or await self.check_auth_needed("MAIL"):
            return
        if await self._check_address(arg, "5.1.7", "sender"):  # RFC 3463 §3.2: X.1.7
            return
        await super().smtp_MAIL(arg)

    @syntax("RCPT TO: <address>", extended=" [SP <mail-parameters>]")
    async def smtp_RCPT(self, arg: str | None) -> None:
        if await self.check_helo_needed() or await self.check_auth_needed("RCPT"):
            return
        if await self._check_address(arg, "5.1.3", "recipient"):  # RFC 3463 §3.2: X.1.3
            return
        limit = self.limits.max_recipients
        envelope = self.envelope
        if (
            limit is not None
            and envelope is not None
            and envelope.mail_from
            and len(envelope.rcpt_tos) >= limit
        ):
            # RFC 5321 §4.5.3.1.10: 452 tells the client to send the rest in a new transaction.
            await self.push(
                f"452 4.5.3 Too many recipients: {limit} per message at most; send the rest "
                "in another transaction"
            )
            return
        await super().smtp_RCPT(arg)

    @syntax("AUTH <mechanism>")
    async def smtp_AUTH(self, arg: str) -> None:
        self._last_code = 0
        await super().smtp_AUTH(arg)
        limit = self.limits.max_auth_failures
        if self._last_code != 535 or self.session is None or self.session.authenticated:
            return
        self._auth_failures += 1
        if limit is not None and self._auth_failures >= limit:
            log.info("%r closed after %d failed AUTH attempts", self.session.peer, self._auth_failures)
            await self._hang_up(
                f"421 4.7.0 {self.hostname} Too many failed AUTH attempts ({self._auth_failures}), "
                "closing connection"
            )

    async def _not_a_web_server(self, arg: str | None) -> None:
        # A browser (or a proxy probe) aimed at the SMTP port: answer briefly and hang up,
        # rather than a 500 for every header line (Postfix does the same).
        log.info("%r sent an HTTP request; closing", self.session.peer if self.session else None)
        await self._hang_up(f"421 4.7.0 {self.hostname} This is an SMTP server, not a web server")

    # No @syntax: HELP never lists them.
    smtp_GET = smtp_POST = smtp_CONNECT = smtp_HEAD = smtp_PUT = _not_a_web_server

    # -- handler hooks ---------------------------------------------------------------------

    async def _call_handler_hook(self, command: str, *args: Any) -> Any:
        if command == "DATA" and self.limits.strict_line_endings and self.envelope is not None:
            ending = bare_line_ending(self.envelope.original_content or b"")
            if ending is not None:
                return (
                    f"550 5.6.0 Message refused: it contains a bare {ending}; SMTP lines end "
                    "with CRLF (RFC 5321 section 2.3.8). Nothing was stored"
                )
        try:
            return await super()._call_handler_hook(command, *args)
        except Exception as error:
            log.exception("handle_%s raised", command)
            if command == "PROXY":
                return False
            reply = f"451 4.3.0 Error in handle_{command}: {type(error).__name__}"
            return [reply] if command == "EHLO" and self._ehlo_hook_ver == "new" else reply
