"""The one door to aiosmtpd's internals: the lab's SMTP session and its Controller.

aiosmtpd documents handlers, ``authenticator=``, ``auth_mechanism`` and the ``Controller``
keywords; what a lab server needs beyond that — recording every line, the limits of a classroom,
a ``421`` before closing, no self-test connection at start, AUTH over implicit TLS — reaches into
aiosmtpd's private names, internal methods and stock reply texts. All of that is in this module
and nowhere else in smtplab, and :data:`UPSTREAM_NAMES` lists it; ``tests/test_upstream_contract.py``
checks every name there against the installed aiosmtpd, so a version bump that moves one fails
in one place, loudly. (pyproject.toml pins aiosmtpd below the next minor release.)

The rest of smtplab talks to this module through plain objects:

* :class:`LabController` takes a socket the lab already bound, the :class:`~smtplab.limits.Limits`
  to enforce and a :class:`Callbacks` — how a session reports to the lab: it opened (the lab
  answers with the :class:`~smtplab.transcript.Transcript` to record into), it closed, a handler
  hook failed (the lab answers with the reply to give);
* :func:`authenticate` and :func:`mimic_signature` serve ``smtplab.auth`` and ``smtplab.handlers``.

Each stage of a session — connect, EHLO, MAIL, RCPT, DATA, end of data, AUTH — asks the lab once,
before its reply, through :meth:`LabSMTP.intervene` and ``Callbacks.before_reply``: one place where
a lab can hold back, replace or refuse a reply (an :class:`Intervention`).

What the session says has two more single homes: :data:`STOCK_REPLIES`, the lab's words (with
the enhanced status codes of RFC 3463) for each of aiosmtpd's stock replies, and
:meth:`LabSMTP.compose_ehlo`, where the EHLO reply aiosmtpd wrote gets the lab's keywords
(:attr:`LabSMTP.EHLO_KEYWORDS`).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import contextvars
import functools
import inspect
import logging
import re
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiosmtpd import __version__ as AIOSMTPD_VERSION
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Session, TLSSetupException, syntax

from smtplab import protocol
from smtplab.errors import ServerStartError
from smtplab.limits import ConnectionGate, Limits

if TYPE_CHECKING:
    from smtplab.tls import TLSSummary
    from smtplab.transcript import Transcript

__all__ = [
    "AIOSMTPD_VERSION",
    "STAGES",
    "UPSTREAM_NAMES",
    "Callbacks",
    "Intervention",
    "LabController",
    "LabSMTP",
    "authenticate",
    "authenticator_present",
    "mimic_signature",
    "smtp_options",
]

log = logging.getLogger("smtplab")

#: Every aiosmtpd (and asyncio) name this module uses beyond the documented API, by owner:
#: tests/test_upstream_contract.py checks each one exists with the shape relied on here.
UPSTREAM_NAMES: dict[str, tuple[str, ...]] = {
    "aiosmtpd.smtp.SMTP": (
        "_original_transport",  # connection_made: set once STARTTLS has begun
        "_auth_require_tls",  # connection_made: implicit TLS counts as TLS for AUTH
        "_cb_client_connected",  # the StreamReader swapped for a recording one
        "_create_session",  # sessions without the login_data deprecation log line
        "_smtp_methods",  # HELP lists the commands
        "_syntax_available",  # HELP lists only those available now
        "_timeout_cb",  # a 421 before closing an idle connection
        "_timeout_duration",  # named in that 421
        "_handler_coroutine",  # hanging up from inside a command
        "_handle_client",  # the session's task: its log records are the session's notes
        "_call_handler_hook",  # limits and handler errors around every hook
        "_ehlo_hook_ver",  # a failed new-style handle_EHLO must return a list
        "_authenticator",  # CRAM-MD5 hands its answer to the authenticator
        "_authenticate",
        "_reader",  # the session's StreamReader (readuntil is recorded)
        "command_size_limits",  # a class-wide dict, made per session here
        "line_length_limit",
        "command_size_limit",
    ),
    "aiosmtpd.smtp.Session": ("_login_data",),
    "aiosmtpd.controller.Controller": (
        "_create_server",  # serve a socket bound by smtplab
        "_factory_invoker",
        "_run",
        "_thread",
        "_thread_exception",
        "_cleanup",
        "_trigger_server",  # replaced: no self-test connection
    ),
    "asyncio.BaseSelectorEventLoop": ("_transports",),  # every connection, aborted at stop
}


def _coded(enhanced: str, more: str = "") -> Callable[..., str]:
    """aiosmtpd's own words with the enhanced status code RFC 3463 gives them (and ``more``)."""
    return lambda session, text, *parts: f"{text[:3]} {enhanced} {text[4:]}{more}"


def _ok(session: LabSMTP, text: str) -> str:
    # RFC 3463 §3.2: X.1.0 for a sender (other address status), X.1.5 for a valid recipient.
    return f"250 {_OK_CODES.get(session._replying_to, '2.0.0')} OK"


_OK_CODES = {"MAIL": "2.1.0", "RCPT": "2.1.5"}


def _not_recognized(session: LabSMTP, text: str, command: str) -> str:
    if command.isprintable() and command.isascii():
        return f'500 5.5.1 Error: command "{command}" not recognized (HELP lists the commands)'
    return (
        "500 5.5.2 Error: binary data, not an SMTP command (a client that starts TLS at once, "
        "on a port that speaks plain text first?)"
    )


def _strict_ascii(session: LabSMTP, text: str) -> str:
    if session._in_data:  # RFC 3463 §3.7: X.6.0 media; RFC 6531 §3.5: X.6.7 a non-ASCII address
        return (
            "500 5.6.0 Error: strict ASCII mode: the message has 8-bit bytes, and this server is ASCII only"
        )
    return "500 5.6.7 Error: strict ASCII mode: a command has non-ASCII characters, and this server does not offer SMTPUTF8"


def _need_rcpt(session: LabSMTP, text: str) -> str:
    envelope, accepted = session._unrecorded_recipients
    if envelope is not session.envelope or not accepted:
        return "503 5.5.1 Error: need RCPT command"
    return (
        "503 5.5.1 Error: need RCPT command: no recipient is in the envelope, though handle_RCPT "
        f"answered 2xx to {accepted} RCPT TO; a handle_RCPT that accepts an address must append it "
        "to envelope.rcpt_tos"
    )


#: aiosmtpd's own stock replies, by their text as aiosmtpd writes it (``{name}`` where it puts
#: a value), and the lab's words for each: the enhanced status code RFC 2034 §4 asks for once
#: ENHANCEDSTATUSCODES is advertised (RFC 3463 codes: X.5.1 bad sequence or command, X.5.2
#: syntax, X.5.4 arguments, X.7.0 security), and the limit itself where one was hit. Every reply
#: a session sends passes through :meth:`LabSMTP.push`, which looks it up here: the one place
#: where stock replies are reworded. A handler hook's own reply is sent as the hook wrote it.
#:
#: Not here, by RFC 2034 §4: the greeting and the replies to HELO and EHLO (``501 Syntax: EHLO
#: hostname``), sent before the extension is agreed, and the 3yz replies (354, 334), for which
#: RFC 3463 has no class.
STOCK_REPLIES: dict[str, Callable[..., str]] = {
    "552 Error: Too much mail data": lambda s, _: (
        f"552 5.3.4 Message too big: the limit is {s.data_size_limit} bytes (SIZE in the EHLO "
        "reply); nothing was stored"
    ),
    "552 Error: message size exceeds fixed maximum message size": lambda s, _: (
        f"552 5.3.4 Message size exceeds the limit of {s.data_size_limit} bytes (SIZE in the EHLO reply)"
    ),
    "500 Command line too long": lambda s, _: (
        f"500 5.5.2 Command line too long: the limit is {s.command_size_limit} bytes "
        "(RFC 5321 section 4.5.3.1.4)"
    ),
    "500 Line too long (see RFC5321 4.5.3.1.6)": lambda s, _: (
        f"500 5.5.2 Line too long: a message line may have {s.line_length_limit} bytes at most "
        "(RFC 5321 section 4.5.3.1.6); nothing was stored"
    ),
    "250 OK": _ok,
    "221 Bye": _coded("2.0.0"),
    "220 Ready to start TLS": _coded("2.0.0"),
    "252 Cannot VRFY user, but will accept message and attempt delivery": _coded("2.0.0"),
    "500 Error: bad syntax": _coded("5.5.2", ": a command is a name such as NOOP, in ASCII"),
    '500 Error: command "{command}" not recognized': _not_recognized,
    "500 Error: strict ASCII mode": _strict_ascii,
    "500 Error: command 'AUTH' not recognized": _coded("5.5.1", ": AUTH needs EHLO, not HELO"),
    "503 Error: send {helo} first": _coded("5.5.1"),
    "503 Error: nested MAIL command": _coded("5.5.1"),
    "503 Error: need MAIL command": _coded("5.5.1"),
    "503 Error: need RCPT command": _need_rcpt,
    "503 Already authenticated": _coded("5.5.1"),
    "530 Must issue a STARTTLS command first": _coded("5.7.0"),  # RFC 3207 §4's own words
    "554 Command refused due to lack of security": _coded("5.7.0"),
    "454 TLS not available": _coded("4.7.0"),
    "501 Not enough value": _coded("5.5.4", ": AUTH needs a mechanism, e.g. AUTH PLAIN"),
    "501 Too many values": _coded("5.5.4", ": AUTH <mechanism> [initial-response]"),
    "501 Syntax: QUIT": _coded("5.5.4"),
    "501 Syntax: RSET": _coded("5.5.4"),
    "501 Syntax: DATA": _coded("5.5.4"),
    "501 Syntax: STARTTLS": _coded("5.5.4"),
    "501 Syntax: VRFY <address>": _coded("5.5.4"),
    "502 Could not VRFY {arg}": _coded("5.5.4"),
    "501 Syntax: MAIL FROM: <address>{extended}": _coded("5.5.4"),  # + " [SP <mail-parameters>]"
    "501 Syntax: RCPT TO: <address>{extended}": _coded("5.5.4"),
    "501 Error: BODY can only be one of 7BIT, 8BITMIME": _coded("5.5.4"),
    "501 Error: SMTPUTF8 takes no arguments": _coded("5.5.4"),
    "501 Error: SMTPUTF8 disabled": _coded("5.5.4"),
    "555 MAIL FROM parameters not recognized or not implemented": _coded("5.5.4"),
    "555 RCPT TO parameters not recognized or not implemented": _coded("5.5.4"),
}

# The stock replies with a value in them, as patterns ('500 Error: command "(.*)" not
# recognized'), by their reply code: most lines are looked up in STOCK_REPLIES alone.
_STOCK_PATTERNS: dict[str, list[tuple[re.Pattern[str], Callable[..., str]]]] = {}
for _text, _reword in STOCK_REPLIES.items():
    if "{" in _text:
        _pattern = re.compile(re.sub(r"\\\{\w+\\\}", "(.*)", re.escape(_text)))
        _STOCK_PATTERNS.setdefault(_text[:3], []).append((_pattern, _reword))


def reworded(session: LabSMTP, text: str) -> str | None:
    """The lab's words for one of aiosmtpd's :data:`STOCK_REPLIES`, or ``None`` for any other line."""
    reword = STOCK_REPLIES.get(text)
    if reword is not None:
        return reword(session, text)
    if text[4:5].isdigit() and text[5:6] == ".":  # "250 2.1.5 …": has its enhanced code already
        return None
    for pattern, reword in _STOCK_PATTERNS.get(text[:3], ()):
        match = pattern.fullmatch(text)
        if match is not None:
            return reword(session, text, *match.groups())
    return None


#: Where a session asks the lab before it replies (see :meth:`LabSMTP.intervene`).
STAGES = ("connect", "EHLO", "MAIL", "RCPT", "DATA", "end of data", "AUTH")

# Browsers and proxies aimed at an SMTP port start with one of these (RFC 9110 §9.3).
HTTP_METHODS = ("GET", "POST", "CONNECT", "HEAD", "PUT")


@functools.cache
def smtp_options() -> frozenset[str]:
    """The keywords aiosmtpd's ``SMTP`` class takes (those a lab server passes through)."""
    return frozenset(inspect.signature(SMTP.__init__).parameters) - {"self", "handler", "loop"}


# -- what the lab gives a session -----------------------------------------------------------------


@dataclass(frozen=True)
class Intervention:
    """What the lab does at a stage instead of (or before) the usual reply.

    Attributes:
        reply: A reply line to give instead of the usual one (``None``: the usual one).
        disconnect: Close the connection instead of replying.
        delay: Seconds to wait first (the session's other work goes on meanwhile).
        note: Why, for the server's transcript.
    """

    reply: str | None = None
    disconnect: bool = False
    delay: float = 0.0
    note: str = ""


@dataclass(frozen=True)
class Callbacks:
    """How a lab session reports to the lab; each is called on the server's event loop.

    Attributes:
        opened: A connection was accepted; called with the client's and the server's socket
            addresses, returns the transcript the session records into (the lab keeps it).
        handler_error: A handler hook raised; called with the hook's name and the exception,
            returns the reply line to give the client.
        closed: The connection is gone; called with its transcript.
        before_reply: Called at each of :data:`STAGES` with the stage and the session, before
            the reply; returns ``None`` (go on) or an :class:`Intervention`.
    """

    opened: Callable[[Any, Any], Transcript]
    handler_error: Callable[[str, BaseException], str]
    closed: Callable[[Transcript], None] | None = None
    before_reply: Callable[[str, LabSMTP], Intervention | None] | None = None


# -- the session --------------------------------------------------------------------------------


class _RecordingReader(asyncio.StreamReader):
    """A StreamReader that tells its session about every line it hands out.

    aiosmtpd reads commands, AUTH answers and message lines through ``readuntil()`` (``readline``
    goes through it too), so recording here sees exactly what the server saw, in order, once.
    """

    _lab_session: LabSMTP

    async def readuntil(self, separator: bytes = b"\n") -> bytes:
        line = await super().readuntil(separator)
        self._lab_session.heard(line)
        return line


class _LabSession(Session):
    """aiosmtpd's Session without the deprecation log line that every successful AUTH writes."""

    @property  # type: ignore[override]
    def login_data(self) -> Any:
        return self._login_data

    @login_data.setter
    def login_data(self, value: Any) -> None:
        self._login_data = value


class LabSMTP(SMTP):
    """aiosmtpd's SMTP session within a lab's :class:`~smtplab.limits.Limits`, recording itself.

    Args:
        handler: The aiosmtpd handler.
        limits: The limits to enforce (classroom defaults when omitted).
        gate: The :class:`~smtplab.limits.ConnectionGate` shared by the sessions of one server;
            without one, ``max_connections`` is not enforced.
        callbacks: How to report to the lab (:class:`Callbacks`); without them nothing is recorded.
            An exception in a session (not in a handler hook) is reported through
            ``handler_error`` as ``"the SMTP session"``.
        sessions: A set the session is in while its connection is open (the Controller's).
        switched_off: Extensions switched off (names of :data:`smtplab.protocol.EXTENSIONS`,
            e.g. ``{"SIZE", "HELP"}``): left out of the EHLO reply (:meth:`compose_ehlo`), and
            refused when used anyway, as a server without them would.
        **kwargs: Keywords of aiosmtpd's ``SMTP``; ``data_size_limit`` and ``timeout`` given
            here win over ``limits``.

    Attributes:
        transcript: The session's record (from ``callbacks.opened``), or ``None``.
        switched_off: The extensions switched off.
    """

    def __init__(
        self,
        handler: Any,
        *,
        limits: Limits | None = None,
        gate: ConnectionGate | None = None,
        callbacks: Callbacks | None = None,
        sessions: set[LabSMTP] | None = None,
        switched_off: frozenset[str] = frozenset(),
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
        self._callbacks = callbacks
        self._ask = callbacks.before_reply if callbacks is not None else None  # the stage hook
        self._sessions = sessions
        self.transcript: Transcript | None = None
        self._has_slot = False
        self._refused = False
        self._greeted = False
        self._auth_failures = 0
        self._last_reply = ""
        self._lifetime_handle: asyncio.TimerHandle | None = None
        self._tls_on = False
        self._in_data = False
        self._recording_reader: asyncio.StreamReader | None = None
        self._replying_to: str | None = None  # MAIL or RCPT while aiosmtpd answers one of them
        # Recipients a handle_RCPT hook accepted without adding them to this envelope.
        self._unrecorded_recipients: tuple[Any, int] = (None, 0)
        self._hook_reply: Any = None  # a handler hook's reply, sent as written
        self._ehlo_lines: list[str] | None = None  # the EHLO reply while aiosmtpd composes it
        self.switched_off = frozenset(switched_off)
        # RFC 2034 §3: a server that does not offer ENHANCEDSTATUSCODES sends reply codes alone.
        self._codes_alone = "ENHANCEDSTATUSCODES" in self.switched_off

    def _create_session(self) -> Session:
        return _LabSession(self.loop)

    # -- connection ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self._sessions is not None:
            self._sessions.add(self)
        if self.transport is not None and self._original_transport is not None:
            # STARTTLS: the same connection, and the session starts over (RFC 3207 §4.2).
            super().connection_made(transport)
            self._tls_on = True
            self._event(f"TLS started (STARTTLS): {_headline(self.tls_summary())}")
            return
        self._tls_on = transport.get_extra_info("sslcontext") is not None
        if self._gate is not None and not self._gate.enter():
            self._refuse(transport)
            return
        self._has_slot = self._gate is not None
        super().connection_made(transport)
        if self._tls_on:
            # Implicit TLS (RFC 8314 §3): the whole session is encrypted, so AUTH's TLS
            # requirement is met. Stock aiosmtpd only counts STARTTLS and hides AUTH here
            # (aiosmtpd issues #281/#274).
            self._auth_require_tls = False
        if self.limits.max_session_time is not None:
            self._lifetime_handle = self.loop.call_later(self.limits.max_session_time, self._session_expired)
        self._open_record(transport)

    def _open_record(self, transport: asyncio.BaseTransport) -> None:
        if self._callbacks is None:
            return
        peer = transport.get_extra_info("peername")
        self.transcript = self._callbacks.opened(peer, transport.get_extra_info("sockname"))
        how = f" over implicit TLS: {_headline(self.tls_summary())}" if self._tls_on else ""
        from smtplab.render import format_address  # once per connection

        self._event(f"connection from {format_address(peer)}{how}")

    def _refuse(self, transport: asyncio.BaseTransport) -> None:
        # RFC 5321 §3.1: a server may refuse a connection with 421 instead of its greeting.
        assert self._gate is not None
        self._refused = True
        self.transport = transport
        self.session = self._create_session()
        self.session.peer = transport.get_extra_info("peername")
        log.info("%r refused: %d connections open (the limit)", self.session.peer, self._gate.open)
        self._open_record(transport)
        # Said on the next loop turn, once the connection is fully set up.
        self.loop.call_soon(
            self._goodbye,
            f"421 4.7.0 {self.hostname} Too many connections: {self._gate.limit} are open, this server's "
            "limit (Limits.max_connections); try again later",
        )

    def connection_lost(self, error: Exception | None) -> None:
        if self._lifetime_handle is not None:
            self._lifetime_handle.cancel()
            self._lifetime_handle = None
        if self._has_slot:
            self._has_slot = False
            assert self._gate is not None
            self._gate.leave()
        try:
            if self._refused:
                self.transport = None
                asyncio.StreamReaderProtocol.connection_lost(self, error)
            else:
                super().connection_lost(error)
        finally:
            if self._sessions is not None:
                self._sessions.discard(self)
            if self.transcript is not None:
                self._event("connection closed")
                if self._callbacks is not None and self._callbacks.closed is not None:
                    self._callbacks.closed(self.transcript)

    def data_received(self, data: bytes) -> None:
        if not self._refused:
            super().data_received(data)

    def eof_received(self) -> bool | None:
        if self._refused:
            return False
        return super().eof_received()

    def _cb_client_connected(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._callbacks is not None:
            reader.__class__ = _RecordingReader
            reader._lab_session = self  # type: ignore[attr-defined]
            self._recording_reader = reader
        super()._cb_client_connected(reader, writer)

    def tls_summary(self) -> TLSSummary | None:
        """The TLS session of this connection (STARTTLS or implicit), or ``None`` in plain text."""
        if self.session is not None and self.session.ssl:
            info: Any = self.session.ssl
        elif self._tls_on:
            info = self.transport
        else:
            return None
        from smtplab.tls import summarize

        return summarize(info)

    # -- what goes wrong in a session ----------------------------------------------------------

    async def _handle_client(self) -> None:
        _SESSION.set(self)  # this task's context: aiosmtpd's log records from here are this session's
        await super()._handle_client()

    async def handle_exception(self, error: Exception) -> str:
        """What aiosmtpd does with an exception a command raised (outside a handler hook).

        Stock aiosmtpd logs its traceback (printed into a notebook or a terminal) and answers
        ``500 Error: (Name) text``. A client that breaks off the TLS handshake after STARTTLS
        is no error of the server's: the transcript notes it in one line (aiosmtpd then closes
        the connection). Anything else is reported to the lab (kept in ``server.errors``, with
        its traceback) and answered ``451 4.3.0``: a local error in processing (RFC 5321 §4.2.3).
        A handler's own ``handle_exception`` still decides, as in aiosmtpd.
        """
        if hasattr(self.event_handler, "handle_exception"):
            return await super().handle_exception(error)
        if isinstance(error, TLSSetupException):
            cause = error.__cause__ or error
            self._event(f"TLS handshake failed after STARTTLS: {_one_line(cause)}")
            return ""  # not sent: aiosmtpd closes the connection
        if self._callbacks is None:
            log.error(
                "%r: SMTP session error: %s", self.session.peer if self.session else None, _one_line(error)
            )
            return f"451 4.3.0 Error in the SMTP session: {type(error).__name__}"
        return self._callbacks.handler_error("the SMTP session", error)

    def note(self, text: str) -> None:
        """Note one line in this session's transcript (what aiosmtpd would have logged)."""
        self._event(text)

    # -- ending a connection -----------------------------------------------------------------

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
        """Write a last reply straight to the transport and close it (for timer callbacks)."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if self._codes_alone:
            reply = _codes_alone(reply)
        self._said(reply)
        transport.write(reply.encode("ascii", "replace") + b"\r\n")  # type: ignore[attr-defined]
        transport.close()

    async def hang_up(self, reply: str | None = None) -> None:
        """Send a last reply (if any) and close, from inside a command (as aiosmtpd's QUIT does)."""
        if reply is not None:
            await self.push(reply)
        if self.transport is not None:
            self.transport.close()
        if self._handler_coroutine is not None:
            self._handler_coroutine.cancel()
            # Stop here, so that commands the client already sent behind this one are not
            # answered on the closing connection (aiosmtpd's QUIT would answer them).
            await asyncio.sleep(0)

    # -- recording ---------------------------------------------------------------------------

    def heard(self, line: bytes) -> None:
        """Record one line the client sent (called by the reader, in order)."""
        if self.transcript is not None:
            self.transcript.record("client", line, self._tls_on)

    def _said(self, text: str) -> None:
        self._last_reply = text
        if self.transcript is None:
            return
        if self._in_data:  # no DATA hook ran: aiosmtpd refused the content, or had no one to ask
            self._end_of_data(None, accepted=text.startswith("2"))
        self.transcript.record("server", text, self._tls_on)
        if text.startswith("354"):
            # The message content is recorded as a summary at its end (RFC 5321 §4.1.1.4), not
            # line by line: meanwhile the reader goes without recording, which costs nothing.
            self._in_data = True
            if self._recording_reader is not None:
                self._recording_reader.__class__ = asyncio.StreamReader

    def _end_of_data(self, content: bytes | None, *, accepted: bool = False) -> None:
        """Record the message content by its size as sent, then the "." that ended it."""
        self._in_data = False
        if self._recording_reader is not None:
            self._recording_reader.__class__ = _RecordingReader
        assert self.transcript is not None
        if content is None:
            what = "received" if accepted else "refused by the server, not kept"
            self.transcript.record("event", f"message data: {what}", self._tls_on)
            self.transcript.record("client", ".", self._tls_on)
            return
        # On the wire every line that starts with "." had one more (RFC 5321 §4.5.2).
        stuffed = content.count(b"\r\n.") + content.startswith(b".")
        self.transcript.message_data(content.count(b"\r\n"), len(content) + stuffed, tls=self._tls_on)

    def _event(self, text: str) -> None:
        if self.transcript is not None:
            self.transcript.record("event", text, self._tls_on)

    async def push(self, status: Any) -> None:
        text = status.decode("utf-8", "surrogateescape") if isinstance(status, bytes) else status
        if not self._greeted:  # aiosmtpd's first push is the greeting
            self._greeted = True
            if self._ask is not None and await self._stage_done("connect"):
                return
        if self._ehlo_lines is not None:
            self._ehlo_lines.append(text)  # sent once composed (smtp_EHLO)
            return
        if status is not self._hook_reply:
            lab_words = reworded(self, text)
            if lab_words is not None:
                status = text = lab_words
        if self._codes_alone:
            status = text = _codes_alone(text)
        self._said(text)
        await super().push(status)

    async def _push_lines(self, lines: list[str]) -> None:
        for line in lines:
            await self.push(line)

    # -- asking the lab before a reply ---------------------------------------------------------

    async def intervene(self, stage: str) -> str | None:
        """Ask the lab about ``stage`` before replying (the one place each stage does so).

        Returns:
            ``None`` to reply as usual, a reply line to give instead, or ``""`` when the lab
            closed the connection (nothing more to say).
        """
        if self._ask is None:
            return None
        intervention = self._ask(stage, self)
        if intervention is None:
            return None
        if intervention.note:
            self._event(f"the lab intervenes at {stage}: {intervention.note}")
        if intervention.delay > 0:
            await asyncio.sleep(intervention.delay)
        if intervention.disconnect:
            self._event(f"the lab closes the connection at {stage}")
            await self.hang_up()
            return ""
        if intervention.reply is not None:
            self._event(f"reply given by the lab, not by the session: {intervention.reply}")
        return intervention.reply

    async def _stage_done(self, stage: str) -> bool:
        """Let the lab intervene at ``stage``; True when it replied or hung up instead.

        Callers test ``self._ask`` first, so that a session without the hook pays nothing.
        """
        reply = await self.intervene(stage)
        if reply is None:
            return False
        if reply:
            self._said(reply)
            await super().push(reply)
        return True

    # -- commands --------------------------------------------------------------------------

    async def _bad_address(self, arg: str | None, command: str, code: str, what: str) -> bool:
        """Refuse control characters and invalid UTF-8 in an envelope address; True if refused.

        A session not greeted yet (or not authenticated where it must be) hears that first.
        """
        problem = protocol.argument_problem(arg) if arg else None
        if problem is None:
            return False  # aiosmtpd's own checks come next, and answer
        if not await self.check_helo_needed() and not await self.check_auth_needed(command):
            await self.push(f"501 {code} Bad {what} address: {problem}")
        return True

    async def _needs_smtputf8(self, arg: str | None, command: str) -> bool:
        """Refuse a non-ASCII address sent without SMTPUTF8, as RFC 6531 says; True if refused.

        RFC 6531 §3.4: a client may send a non-ASCII address only in a transaction whose MAIL
        FROM has the SMTPUTF8 parameter (offered in the EHLO reply); §3.5: otherwise the server
        answers 553 with the enhanced code X.6.7. The reply stays ASCII: this client has not
        said it reads UTF-8.
        """
        if not arg or arg.isascii() or not self.enable_SMTPUTF8:
            return False
        address, params = _address_and_parameters(arg)
        if address.isascii():
            return False  # a parameter that is not ASCII: aiosmtpd's own checks answer
        extended = self.session is not None and self.session.extended_smtp
        envelope = self.envelope
        if command == "MAIL" and extended and "SMTPUTF8" in params:
            return False
        if command == "RCPT" and (envelope is None or not envelope.mail_from or envelope.smtp_utf8):
            return False  # no MAIL yet (aiosmtpd says so), or one with SMTPUTF8
        if await self.check_helo_needed() or await self.check_auth_needed(command):
            return True
        if not extended:
            how = "SMTPUTF8 is an ESMTP extension: greet with EHLO (not HELO), then send MAIL FROM:<...> SMTPUTF8"
        elif command == "MAIL":
            how = "To use it, send MAIL FROM:<...> SMTPUTF8 (the EHLO reply offers SMTPUTF8)"
        else:
            how = "Send RSET, then MAIL FROM:<...> SMTPUTF8 (the EHLO reply offers SMTPUTF8)"
        if command == "MAIL":
            what = "sender address refused: it needs SMTPUTF8 (RFC 6531)."
        else:
            what = (
                "recipient address refused: it needs SMTPUTF8 (RFC 6531), and this transaction's "
                "MAIL FROM had no SMTPUTF8 parameter."
            )
        await self.push(f"553 5.6.7 Non-ASCII {what} {how}")
        return True

    @syntax("EHLO hostname")
    async def smtp_EHLO(self, hostname: str) -> None:
        if self._ask is not None and await self._stage_done("EHLO"):
            return
        # aiosmtpd writes its EHLO reply (and a handle_EHLO hook changes it); the lab collects
        # those lines and sends what compose_ehlo() makes of them.
        self._ehlo_lines = []
        try:
            await super().smtp_EHLO(hostname)
        finally:
            lines, self._ehlo_lines = self._ehlo_lines, None
        await self._push_lines(self.compose_ehlo(lines))

    #: Keywords the lab adds to aiosmtpd's EHLO reply: ENHANCEDSTATUSCODES (RFC 2034), as every
    #: reply after EHLO carries an enhanced status code (:data:`STOCK_REPLIES`).
    EHLO_KEYWORDS: tuple[str, ...] = ("ENHANCEDSTATUSCODES",)

    def compose_ehlo(self, lines: list[str]) -> list[str]:
        """The EHLO composition point: aiosmtpd's reply lines in, the lab's reply out.

        aiosmtpd writes the server's name, then the keywords its options call for (SIZE,
        8BITMIME, SMTPUTF8, STARTTLS, AUTH) and HELP; a learner's ``handle_EHLO`` may have
        changed them. The lab leaves out the extensions switched off (:attr:`switched_off`) and
        adds :attr:`EHLO_KEYWORDS` before the last line (RFC 5321 §4.1.1.1: one keyword per line,
        ``250-`` on every line but the last). A refusal is sent as it is.
        """
        if not lines or not all(line[:4] in ("250-", "250 ") for line in lines):
            return lines
        off = self.switched_off
        texts = [lines[0][4:], *(line[4:] for line in lines[1:] if line[4:].split(" ")[0].upper() not in off)]
        added = [keyword for keyword in self.EHLO_KEYWORDS if keyword not in texts[1:] and keyword not in off]
        at = len(texts) - 1 if len(texts) > 1 else 1
        texts[at:at] = added
        return [f"250{'-' if n < len(texts) - 1 else ' '}{text}" for n, text in enumerate(texts)]

    async def _not_offered(self, what: str, reply: str) -> bool:
        """Refuse what an extension switched off would allow; True if refused."""
        extension = protocol.EXTENSIONS[what]
        await self.push(
            f"{reply}: this server does not offer {what} ({extension.rfc}), so it is not in its EHLO reply"
        )
        return True

    async def _unoffered_parameter(self, arg: str | None) -> bool:
        """555 for a MAIL FROM parameter whose extension is switched off (RFC 5321 §4.1.1.11)."""
        if not arg or ">" not in arg or self.session is None or not self.session.extended_smtp:
            return False  # aiosmtpd's own checks answer these
        if self.envelope is not None and self.envelope.mail_from:
            return False  # a nested MAIL: aiosmtpd answers 503
        for word in arg.rsplit(">", 1)[1].split():
            keyword = word.split("=", 1)[0].upper()
            extension = protocol.MAIL_PARAMETERS.get(keyword)
            if extension is not None and extension in self.switched_off:
                return await self._not_offered(
                    extension, f"555 5.5.4 MAIL FROM parameter {word} not recognized"
                )
        return False

    @syntax("MAIL FROM: <address>", extended=" [SP <mail-parameters>]")
    async def smtp_MAIL(self, arg: str | None) -> None:
        if await self._bad_address(arg, "MAIL", "5.1.7", "sender"):  # RFC 3463 §3.2: X.1.7
            return
        if await self._needs_smtputf8(arg, "MAIL"):
            return
        if await self._unoffered_parameter(arg):
            return
        if self._ask is not None and self.session.host_name and await self._stage_done("MAIL"):
            return
        self._replying_to = "MAIL"
        try:
            await super().smtp_MAIL(arg)
        finally:
            self._replying_to = None

    @syntax("RCPT TO: <address>", extended=" [SP <mail-parameters>]")
    async def smtp_RCPT(self, arg: str | None) -> None:
        if await self._bad_address(arg, "RCPT", "5.1.3", "recipient"):  # RFC 3463 §3.2: X.1.3
            return
        if await self._needs_smtputf8(arg, "RCPT"):
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
                f"452 4.5.3 Too many recipients: {limit} per message at most; send the rest in another transaction"
            )
            return
        if self._ask is not None and self.session.host_name and await self._stage_done("RCPT"):
            return
        self._replying_to = "RCPT"
        self._last_reply = ""
        recorded = len(envelope.rcpt_tos) if envelope is not None else 0
        try:
            await super().smtp_RCPT(arg)
        finally:
            self._replying_to = None
        if (
            self._last_reply.startswith("2")
            and envelope is self.envelope
            and envelope is not None
            and len(envelope.rcpt_tos) == recorded
            and hasattr(self.event_handler, "handle_RCPT")
        ):
            # The hook answered yes but kept nothing: DATA will answer "503 need RCPT command".
            before, accepted = self._unrecorded_recipients
            self._unrecorded_recipients = (envelope, accepted + 1 if before is envelope else 1)
            self._event("handle_RCPT accepted the address but did not append it to envelope.rcpt_tos")

    @syntax("DATA")
    async def smtp_DATA(self, arg: str | None) -> None:
        if self._ask is not None and await self._stage_done("DATA"):
            return
        await super().smtp_DATA(arg)  # type: ignore[arg-type]

    @syntax("STARTTLS", when="tls_context")
    async def smtp_STARTTLS(self, arg: str) -> None:
        if self._tls_on and not arg:
            # RFC 3207 §4.2: once TLS is on, no second handshake. Stock aiosmtpd answers 220 and
            # nests TLS inside TLS, which asyncio cannot do (a traceback on the server's loop).
            await self.push("554 5.5.1 Error: TLS already active")  # Postfix's words
            return
        await super().smtp_STARTTLS(arg)

    @syntax("AUTH <mechanism>")
    async def smtp_AUTH(self, arg: str) -> None:
        if "AUTH" in self.switched_off:
            await self._not_offered("AUTH", "502 5.5.1 AUTH not implemented")
            return
        if self._ask is not None and await self._stage_done("AUTH"):
            return
        self._last_reply = ""
        await super().smtp_AUTH(arg)
        limit = self.limits.max_auth_failures
        if not self._last_reply.startswith("535") or self.session is None or self.session.authenticated:
            return
        self._auth_failures += 1
        if limit is not None and self._auth_failures >= limit:
            log.info("%r closed after %d failed AUTH attempts", self.session.peer, self._auth_failures)
            await self.hang_up(
                f"421 4.7.0 {self.hostname} Too many failed AUTH attempts ({self._auth_failures}), "
                "closing connection"
            )

    @syntax("EXPN <list>")
    async def smtp_EXPN(self, arg: str | None) -> None:
        # Stock aiosmtpd always answers 502; the lab expands its own lists (RFC 5321 §3.5.2).
        if await self.check_auth_needed("EXPN"):
            return
        if not arg:
            await self.push("501 5.5.4 Syntax: EXPN <list>")
            return
        directory = getattr(self.event_handler, "directory", None)
        if directory is None:
            await self.push("502 5.5.1 EXPN not implemented")
            return
        await self._push_lines(directory.expand(arg))

    @syntax("HELP [command]")
    async def smtp_HELP(self, arg: str | None) -> None:
        # RFC 5321 §4.1.1.8: the reply to HELP is 214; stock aiosmtpd answers 250.
        if "HELP" in self.switched_off:
            await self._not_offered("HELP", "502 5.5.1 HELP not implemented")
            return
        if await self.check_auth_needed("HELP"):
            return
        available = sorted(
            n
            for n, m in self._smtp_methods.items()
            if self._syntax_available(m) and n not in self.switched_off
        )
        if arg:
            name = arg.upper()
            command = protocol.COMMANDS.get(name)
            if name not in available or command is None:
                await self.push(f"501 5.5.4 HELP: no command {arg!r} here; HELP alone lists them")
                return
            where = f"{command.rfc} {command.section}".replace("§", "section ")  # ASCII-only replies
            await self.push(f"214 2.0.0 {command.syntax} - {command.purpose} ({where})")
            return
        lines = ["Commands of this lab server (HELP <command> for one):"]
        lines += [protocol.COMMANDS[n].syntax for n in available if n in protocol.COMMANDS]
        lines.append("End of HELP")
        # RFC 2034 §4: the same enhanced code on every line of a reply.
        await self._push_lines(
            [f"214{'-' if n < len(lines) - 1 else ' '}2.0.0 {t}" for n, t in enumerate(lines)]
        )

    async def _not_a_web_server(self, arg: str | None) -> None:
        # A browser (or a proxy probe) aimed at the SMTP port: answer briefly and hang up,
        # rather than a 500 for every header line (Postfix does the same).
        log.info("%r sent an HTTP request; closing", self.session.peer if self.session else None)
        await self.hang_up(f"421 4.7.0 {self.hostname} This is an SMTP server, not a web server")

    # No @syntax: HELP never lists them.
    smtp_GET = smtp_POST = smtp_CONNECT = smtp_HEAD = smtp_PUT = _not_a_web_server

    # -- handler hooks ---------------------------------------------------------------------

    async def _call_handler_hook(self, command: str, *args: Any) -> Any:
        if command == "DATA":
            if self._in_data and self.envelope is not None:
                self._end_of_data(self.envelope.original_content or b"")
            if self.limits.strict_line_endings and self.envelope is not None:
                endings = protocol.bare_line_endings(self.envelope.original_content or b"")
                if endings:
                    return (
                        f"550 5.6.0 Message refused: it contains a bare {endings[0]}; SMTP lines end "
                        "with CRLF (RFC 5321 section 2.3.8). Nothing was stored"
                    )
            if self._ask is not None:
                reply = await self.intervene("end of data")
                if reply is not None:
                    return reply
        try:
            self._hook_reply = await super()._call_handler_hook(command, *args)
            return self._hook_reply
        except Exception as error:  # noqa: BLE001 - reported to the lab, answered 451
            log.error("handle_%s raised %s", command, _one_line(error))  # no traceback: see server.errors
            if command == "PROXY":
                return False
            reply = f"451 4.3.0 Error in handle_{command}: {type(error).__name__}"
            if self._callbacks is not None:
                reply = self._callbacks.handler_error(f"handle_{command}", error)
            return [reply] if command == "EHLO" and self._ehlo_hook_ver == "new" else reply


def _codes_alone(reply: str) -> str:
    """``"250 2.1.0 OK"`` -> ``"250 OK"``: a reply without its enhanced status code."""
    parsed = protocol.parse_reply_line(reply)
    if parsed is None or parsed.enhanced is None:
        return reply.rstrip()
    return f"{reply[:4]}{parsed.text}".rstrip()  # the code and its separator, then the text


def _one_line(error: BaseException) -> str:
    """``SSLError: [SSL: UNEXPECTED_MESSAGE] unexpected message (_ssl.c:1006)``, on one line."""
    return _printable(f"{type(error).__name__}: {error}" if str(error) else type(error).__name__)


def _printable(text: str, limit: int = 200) -> str:
    """``text`` on one line, control characters escaped (``\\x16``), at most ``limit`` characters."""
    flat = "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


# The lab session whose task is running (set in LabSMTP._handle_client): aiosmtpd logs with the
# peer only, and a log record is attributed to its session through this.
_SESSION: contextvars.ContextVar[LabSMTP | None] = contextvars.ContextVar("smtplab_session", default=None)


class _LabThread(threading.Thread):
    """The thread of a lab server's event loop (each session of that server runs on it)."""


class _SessionNotes(logging.Filter):
    """aiosmtpd's warnings and tracebacks from a lab server become one-line notes.

    aiosmtpd logs through the ``mail.log`` logger; with no logging set up, Python prints each
    warning — ``unrecognised: ^V^C…`` for a binary line, a traceback for a failed TLS
    handshake — on stderr, which is the notebook's cell or the ``smtplab serve`` terminal. On a
    lab server's thread, a record of WARNING or more goes instead to the session's transcript as
    one line (or, outside a session, to the ``smtplab`` logger at INFO); records from other
    aiosmtpd servers, and INFO and below, pass as usual.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING or not isinstance(threading.current_thread(), _LabThread):
            return True
        message, args = record.msg, record.args
        if isinstance(message, str) and message.startswith("%r ") and isinstance(args, tuple) and args:
            message, args = message[3:], args[1:]  # aiosmtpd starts with the peer: the session says it
        try:
            text = str(message) % args if args else str(message)
        except (TypeError, ValueError):
            text = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            text += f" ({_one_line(record.exc_info[1])})"
        session = _SESSION.get()
        if session is not None:
            session.note(f"aiosmtpd: {_printable(text)}")
        else:
            log.info("aiosmtpd on a lab server: %s", _printable(text))
        return False


def _quiet_aiosmtpd_logs() -> None:
    """Put :class:`_SessionNotes` on aiosmtpd's logger, once (it only acts on lab servers' threads)."""
    logger = logging.getLogger("mail.log")
    if not any(isinstance(f, _SessionNotes) for f in logger.filters):
        logger.addFilter(_SessionNotes())


def _address_and_parameters(arg: str) -> tuple[str, list[str]]:
    """``"FROM:<a@b> SMTPUTF8"`` -> ``("FROM:<a@b>", ["SMTPUTF8"])``: the address, the parameters."""
    if ">" in arg:
        address, _, rest = arg.rpartition(">")
        return address, rest.upper().split()
    address, *params = arg.split()
    return address, [param.upper() for param in params]


def _headline(summary: TLSSummary | None) -> str:
    return summary.headline if summary is not None else "details unavailable"


# -- AUTH and handlers ----------------------------------------------------------------------------


def authenticator_present(server: SMTP) -> bool:
    """Whether the server was given an ``authenticator=`` (rather than a legacy ``auth_callback``)."""
    return getattr(server, "_authenticator", None) is not None


def authenticate(server: SMTP, mechanism: str, auth_data: Any) -> AuthResult | None:
    """Hand a mechanism's answer to the server's ``authenticator=``; ``None`` if it has none.

    An ``auth_<NAME>`` hook written for aiosmtpd (CRAM-MD5, in :mod:`smtplab.auth`) decides
    nothing itself: the authenticator does, as for aiosmtpd's built-in PLAIN and LOGIN.
    """
    if not authenticator_present(server):
        return None  # only the legacy auth_callback, which understands LoginPassword alone
    return server._authenticate(mechanism, auth_data)


def mimic_signature(wrapper: Callable[..., Any], hook: Callable[..., Any]) -> None:
    """Make ``wrapper`` (a guard around a learner's hook) look like ``hook`` to aiosmtpd.

    aiosmtpd tells the old 4-argument ``handle_EHLO`` from the new 5-argument one by counting
    the parameters of the hook it finds, so a guard taking ``*args`` must show the hook's own.
    """
    wrapper.__signature__ = inspect.signature(hook)  # type: ignore[attr-defined]


# -- the Controller -------------------------------------------------------------------------------


class LabController(Controller):
    """A Controller serving a socket smtplab already bound, with no self-test connection.

    Stock aiosmtpd binds the socket itself (so a taken port costs its whole ``ready_timeout``)
    and connects to itself at every start (aiosmtpd issue #388 makes that fail for port 0).

    Args:
        handler: The aiosmtpd handler.
        sock: A listening, non-blocking socket (TCP or Unix-domain).
        limits: The limits every session enforces.
        callbacks: How sessions report to the lab; ``None`` records nothing.
        name: The thread's name.
        switched_off: The extensions switched off (see :class:`LabSMTP`).
        **kwargs: Keywords of aiosmtpd's ``Controller`` and ``SMTP``.

    Attributes:
        gate: Counts this server's open sessions against ``limits.max_connections``.
        sessions: The sessions open now.
    """

    def __init__(
        self,
        handler: Any,
        sock: socket.socket,
        *,
        limits: Limits,
        callbacks: Callbacks | None = None,
        name: str = "smtplab-server",
        switched_off: frozenset[str] = frozenset(),
        **kwargs: Any,
    ) -> None:
        address = sock.getsockname()  # a Unix-domain socket's name is its path
        host, port = (address, 0) if isinstance(address, str) else address[:2]
        super().__init__(handler, hostname=host, port=port, **kwargs)
        self.address = address
        self.limits = limits
        self.callbacks = callbacks
        self.switched_off = switched_off
        self.gate = ConnectionGate(limits.max_connections)
        self.sessions: set[LabSMTP] = set()
        self._sock = sock
        self._name = name

    def factory(self) -> SMTP:
        return LabSMTP(
            self.handler,
            limits=self.limits,
            gate=self.gate,
            callbacks=self.callbacks,
            sessions=self.sessions,
            switched_off=self.switched_off,
            **self.SMTP_kwargs,
        )

    def _create_server(self) -> Any:
        return self.loop.create_server(self._factory_invoker, sock=self._sock, ssl=self.ssl_context)

    def _trigger_server(self) -> None:  # pragma: no cover - start() below never calls it
        raise NotImplementedError("the lab server's socket is listening already; there is nothing to trigger")

    def _run(self, ready_event: threading.Event) -> None:
        try:
            super()._run(ready_event)
        finally:
            ready_event.set()  # also on failure, so start() reports it at once

    def start(self) -> None:
        """Start the server's thread; returns once it is serving (or raises why not)."""
        ready = threading.Event()
        _quiet_aiosmtpd_logs()
        self._thread = _LabThread(target=self._run, args=(ready,), name=self._name, daemon=True)
        self._thread.start()
        if not ready.wait(self.ready_timeout):
            raise ServerStartError(
                f"the server thread did not start within {self.ready_timeout:g} s; the machine "
                "may be very busy. Try again, or pass a larger ready_timeout."
            )
        if self._thread_exception is not None:
            raise self._thread_exception
        # The socket is listening already, so no test connection is needed. Building one
        # session object on the loop surfaces bad options now rather than at the first client.
        future = asyncio.run_coroutine_threadsafe(self._probe(), self.loop)
        future.result(self.ready_timeout)
        if self._thread_exception is not None:
            raise self._thread_exception

    async def _probe(self) -> None:
        self._factory_invoker()

    async def _shutdown(self) -> None:
        """Close the listener and every session, and let their callbacks run, then stop."""
        assert self.server is not None
        # Stop accepting, then let connections accepted a moment ago set up their transport
        # before Server.close(): asyncio 3.11 silently drops one that is set up after it,
        # leaving its socket open.
        with contextlib.suppress(NotImplementedError):  # loops without add/remove_reader
            self.loop.remove_reader(self._sock.fileno())
        await asyncio.sleep(0)
        self.server.close()
        current = asyncio.current_task()
        for _ in range(3):  # closing a session can wake a task of its own: go round again
            _abort_connections(self.loop)
            tasks = [task for task in asyncio.all_tasks() if task is not current]
            for task in tasks:
                task.cancel()
            if tasks:
                await asyncio.wait(tasks, timeout=2.0)
            await asyncio.sleep(0)  # run the transports' connection_lost callbacks
            if not tasks and not self.sessions:
                break
        self.loop.stop()

    def stop(self, no_assert: bool = False) -> None:
        """Close every session and the listener, end the thread, close the socket; safe twice."""
        thread = self._thread
        if thread is not None and thread.is_alive() and not self.loop.is_closed():
            if self.server is not None:
                self.loop.call_soon_threadsafe(lambda: self.loop.create_task(self._shutdown()))
            else:
                self.loop.call_soon_threadsafe(self.loop.stop)
            thread.join()
        self._thread = None
        if not self.loop.is_closed():  # a failed start never closes its loop
            self.loop.close()
        self._sock.close()
        self._cleanup()


def _abort_connections(loop: asyncio.AbstractEventLoop) -> None:
    """Abort every connection ``loop`` still has open, at the socket level.

    Closing a session's own transport is not enough: a TLS transport closed twice (aiosmtpd's
    QUIT, then its stream writer) forgets its socket, so that ``abort()`` no longer reaches it;
    a TLS close waits for the client's close_notify, which may never come before the loop ends;
    and a connection still in its TLS handshake has no session yet. asyncio's selector loops
    keep every socket transport they made, which is what is aborted here.
    """
    for transport in list(getattr(loop, "_transports", {}).values()):
        if transport is not None:
            transport.abort()  # does nothing to a connection already lost
