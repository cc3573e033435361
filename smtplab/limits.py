"""Limits of a lab server: every bound in one place, and the gate that counts connections.

Thirty people typing SMTP by hand into servers on one shared host, kernels interrupted and
re-run: the lab server must keep answering, never hang a notebook, and never store half a
message. Stock aiosmtpd 1.4.6 has no connection cap, no recipient limit, no limit on AUTH
attempts, accepts a NUL byte inside ``MAIL FROM:<…>``, keeps an idle connection for five
minutes and closes it without a word. :class:`Limits` names every bound in one place, with
defaults safe for a classroom; the lab's aiosmtpd session (:mod:`smtplab._aiosmtpd`) enforces
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
``line_length_limit`` and ``command_size_limit`` — set from :class:`Limits`; passing
``data_size_limit=`` or ``timeout=`` to ``start_server`` still works and sets the same fields.

The module is pure: no I/O, no asyncio, no aiosmtpd.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

__all__ = ["SMTP_KNOBS", "ConnectionGate", "Limits"]

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
