"""The one door to aiosmtplib's internals: recording the wire, DATA, and hanging up at once.

aiosmtplib logs nothing of the dialogue, so a transcript has to be taken where bytes meet its
protocol object (``aiosmtplib.protocol.SMTPProtocol``, which the package does not export): every
``write()`` and every ``read_response()``. That, the protocol-level DATA, the ESMTP facts read
from an ``aiosmtplib.SMTP`` and the way a connection is dropped at once are in this module and
nowhere else in smtplab; :data:`UPSTREAM_NAMES` lists them and ``tests/test_upstream_contract.py``
checks them against the installed aiosmtplib (pyproject.toml pins it below the next minor).

The client talks to this module through plain functions, and hands :func:`record` two
callbacks of its own.
"""

from __future__ import annotations

from collections.abc import Callable

import aiosmtplib
from aiosmtplib.protocol import SMTPProtocol

__all__ = [
    "UPSTREAM_NAMES",
    "auth_mechanisms",
    "extensions",
    "hang_up",
    "note_hello",
    "record",
    "send_data",
    "write",
]

#: Every aiosmtplib name used here beyond its documented API, by owner: checked by
#: tests/test_upstream_contract.py.
UPSTREAM_NAMES: dict[str, tuple[str, ...]] = {
    "aiosmtplib.protocol.SMTPProtocol": (
        "write",  # recorded: every byte the client sends; message content line by line
        "read_response",  # recorded: every reply, once, in order
        "data_received",  # recorded: every byte the server sends, as it arrives, and a reply
        #                   no command waits for, which aiosmtplib drops
        "execute_data_command",  # DATA, the content and the final reply under the command lock
        "_response_waiter",  # whether a command waits for the reply being received
        "_response_pending",
        "_buffer",  # a reply that came behind the one a command took, in the same read
    ),
    "aiosmtplib.SMTP": (
        "protocol",  # the connection's SMTPProtocol (set by connect())
        "transport",
        "close",
        "last_ehlo_response",  # a setter that parses the extensions and AUTH mechanisms
        "last_helo_response",
        "esmtp_extensions",
        "server_auth_methods",
    ),
}


Written = Callable[[bytes], None]
Replied = Callable[[aiosmtplib.SMTPResponse], None]
Received = Callable[[bytes], None]
Unsolicited = Callable[[bytes], None]


class _RecordingProtocol(SMTPProtocol):
    """aiosmtplib's protocol, reporting every write and every reply it reads — or would drop."""

    _smtplab_written: Written
    _smtplab_replied: Replied
    _smtplab_received: Received | None
    _smtplab_unsolicited: Unsolicited | None
    _smtplab_extra: bytes

    def write(self, data: bytes) -> None:
        super().write(data)
        self._smtplab_written(data)

    async def read_response(self, timeout: float | None = None) -> aiosmtplib.SMTPResponse:
        response = await super().read_response(timeout=timeout)
        self._smtplab_replied(response)
        extra, self._smtplab_extra = self._smtplab_extra, b""
        if extra and self._smtplab_unsolicited is not None:
            self._smtplab_unsolicited(extra)  # after the reply it came behind, as on the wire
        return response

    def data_received(self, data: bytes) -> None:
        # A server may reply without a command: a 421 before it closes (RFC 5321 §3.8).
        # aiosmtplib drops what comes while no command waits, so that it cannot pass for the
        # next command's reply; the recorder keeps it.
        if self._smtplab_received is not None:
            self._smtplab_received(data)
        waiter = self._response_waiter
        if waiter is not None and (not self._response_pending or waiter.done()):
            if self._smtplab_unsolicited is not None:
                self._smtplab_unsolicited(bytes(data))
            super().data_received(data)
            return
        super().data_received(data)
        waiter = self._response_waiter
        if waiter is not None and waiter.done() and self._buffer.endswith(b"\n"):
            # Whole lines behind the reply just taken, in the same read: also unasked for.
            # Left in the buffer, they would be taken for the next command's reply.
            self._smtplab_extra += bytes(self._buffer)
            del self._buffer[:]


def record(
    smtp: aiosmtplib.SMTP,
    *,
    written: Written,
    replied: Replied,
    received: Received | None = None,
    unsolicited: Unsolicited | None = None,
) -> None:
    """Report everything ``smtp``'s connection writes and reads from now on.

    Call it right after ``connect()`` (the greeting is already read by then: record it yourself).
    aiosmtplib builds its protocol object inside ``connect()`` with no hook to choose its class,
    so this connection's protocol becomes the recording subclass in place: the same object, the
    same state, two methods that also report.

    Args:
        smtp: A connected ``aiosmtplib.SMTP``.
        written: Called with the bytes of every write: one or more command lines, or the whole
            message content after ``354``.
        replied: Called with every reply read, exactly once, in order.
        received: Called with the bytes of every read, as they arrive (inside TLS: decrypted).
        unsolicited: Called with the bytes of what the server sent while no command waited for
            a reply (aiosmtplib discards them), e.g. a ``421`` before it closes the connection.
    """
    protocol = smtp.protocol
    if protocol is None:
        raise aiosmtplib.SMTPServerDisconnected("not connected: nothing to record")
    protocol.__class__ = _RecordingProtocol
    protocol._smtplab_written = written  # type: ignore[attr-defined]
    protocol._smtplab_replied = replied  # type: ignore[attr-defined]
    protocol._smtplab_received = received  # type: ignore[attr-defined]
    protocol._smtplab_unsolicited = unsolicited  # type: ignore[attr-defined]
    protocol._smtplab_extra = b""  # type: ignore[attr-defined]


def write(smtp: aiosmtplib.SMTP, data: bytes) -> None:
    """Write ``data`` on the connection, expecting no reply (message content sent line by line).

    Raises:
        aiosmtplib.SMTPServerDisconnected: The connection is gone.
    """
    protocol = smtp.protocol
    if protocol is None or not smtp.is_connected:
        raise aiosmtplib.SMTPServerDisconnected("Connection lost")
    protocol.write(data)


async def send_data(smtp: aiosmtplib.SMTP, content: bytes, *, timeout: float | None) -> None:
    """Send ``DATA``, then ``content`` (line endings made CRLF, leading dots doubled), then read
    the final reply — all under aiosmtplib's command lock, as ``SMTP.data()`` does.

    ``SMTP.data()`` itself would first send EHLO if it has not seen one (a learner may have
    greeted with ``raw("EHLO …")``), and raises for every reply but 250. Here a refusal, of DATA
    or of the message, is a reply like any other: the recorder has it, nothing is raised.

    Raises:
        aiosmtplib.SMTPTimeoutError: A reply did not come in time (the connection is unusable).
        aiosmtplib.SMTPServerDisconnected: The server went away.
    """
    protocol = smtp.protocol
    if protocol is None:
        raise aiosmtplib.SMTPServerDisconnected("Connection lost")
    try:
        await protocol.execute_data_command(content, timeout=timeout)
    except aiosmtplib.SMTPDataError:
        pass  # DATA or the message refused: the reply is recorded, and returned by the client


def note_hello(smtp: aiosmtplib.SMTP, verb: str, response: aiosmtplib.SMTPResponse) -> None:
    """Tell aiosmtplib about an accepted EHLO or HELO the client sent through ``execute_command``.

    Its own ``starttls()`` and ``supports_extension()`` read what the EHLO reply offered; they
    only know of greetings sent by ``SMTP.ehlo()`` / ``helo()`` otherwise.
    """
    if verb == "EHLO":
        smtp.last_ehlo_response = response
    else:
        smtp.last_helo_response = response


def auth_mechanisms(smtp: aiosmtplib.SMTP) -> list[str]:
    """The AUTH mechanisms the server's last EHLO reply offered, upper case."""
    return [name.upper() for name in smtp.server_auth_methods]


def extensions(smtp: aiosmtplib.SMTP) -> dict[str, str]:
    """The ESMTP extensions of the last EHLO reply, keyword (lower case) -> parameters."""
    return dict(smtp.esmtp_extensions)


def hang_up(smtp: aiosmtplib.SMTP) -> None:
    """Close an aiosmtplib connection so that its socket is released on the next loop turn.

    ``SMTP.close()`` alone starts a polite TLS shutdown that waits for the server's
    close_notify, and does nothing at all once the server's own close has begun; either way a
    script's ``asyncio.run()`` can end first and leave the socket open. After our close_notify
    is written, aborting the transport closes the socket now (RFC 8446 §6.1 lets a side close
    without waiting for the peer's close_notify).
    """
    transport = smtp.transport
    smtp.close()
    if transport is not None:
        transport.abort()
