"""A wire tap: a loopback relay in front of a lab server that keeps every byte, both ways.

The lab server's transcript records what it *understood* — a command without its line ending,
a line of message data. Some exercises are about the bytes themselves: a bare LF instead of
CRLF, a missing dot-stuffing, the final ``CRLF.CRLF``. The tap sits between the learner's code
and a private lab server and keeps exactly what crossed the wire.

It can also hold back the server's greeting for a moment, as Postfix's postscreen does
(``postscreen_greet_wait``): a client that talks before the greeting reached it cannot have
read it, and is flagged as an early talker. Every byte is still delivered.

A multi-line reply reaches the client whole: the tap passes on the server's bytes up to the end
of the last complete reply it has, so a learner's client that reads each reply with one
``recv()`` is judged on what it does, not on how the lab server's writes happened to be split.
The order in which the tap saw each side's bytes is kept (``TappedConnection.chunks``): it shows
whether a client waited for each reply before its next command.

Taps run on smtplab's background event loop (:mod:`smtplab.aio`) and listen on 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from dataclasses import dataclass, field
from typing import Any

from smtplab import aio

__all__ = ["TappedConnection", "WireTap"]

_STOP_TIMEOUT = 10.0  # seconds for the background loop to close a tap
_HOLD_AT_MOST = 64 * 1024  # bytes of an unfinished reply held back, at most
# What is held back: the lines of a multi-line reply so far ("250-…"), and the beginning of a
# reply line not ended yet (RFC 5321 §4.2.1). Anything else — TLS after STARTTLS — goes on.
_UNFINISHED_REPLY = re.compile(rb"(?:[2-5][0-9][0-9]-[^\n]*\n)*(?:[2-5](?:[0-9](?:[0-9](?:[ -][^\n]*)?)?)?)?")
_REPLY_LINE = re.compile(rb"[^\n]*\n")


@dataclass
class TappedConnection:
    """One client connection through the tap: what each side sent, in order.

    Attributes:
        chunks: ``(sender, bytes)`` pairs in the order the tap received them; sender is
            ``"client"`` or ``"server"``.
        greeting_delay: Seconds the tap held the server's greeting back.
        spoke_before_greeting: The client sent bytes before the greeting had been passed on to
            it, so it cannot have read the greeting first (meaningful with a greeting delay).
        started: ``time.monotonic()`` when the client connected.
    """

    greeting_delay: float = 0.0
    chunks: list[tuple[str, bytes]] = field(default_factory=list)
    spoke_before_greeting: bool = False
    started: float = field(default_factory=time.monotonic)

    def sent_by(self, sender: str) -> bytes:
        """Every byte ``"client"`` or ``"server"`` sent on this connection, joined."""
        return b"".join(data for who, data in self.chunks if who == sender)

    def __repr__(self) -> str:
        early = ", spoke before the greeting" if self.spoke_before_greeting else ""
        return (
            f"<TappedConnection client sent {len(self.sent_by('client'))} bytes, "
            f"server {len(self.sent_by('server'))} bytes{early}>"
        )


class _Relay(asyncio.Protocol):
    """The client's side of one tapped connection; it also relays what the server says."""

    def __init__(self, tap: WireTap) -> None:
        self.tap = tap
        self.loop = asyncio.get_running_loop()
        self.record = TappedConnection(greeting_delay=tap.greeting_delay)
        self.transport: asyncio.Transport | None = None
        self.upstream: asyncio.Transport | None = None
        self.pending = bytearray()  # client bytes that came before the server connection
        self.held = bytearray()  # the greeting, until its delay is over
        self.unfinished = bytearray()  # the start of a reply the server has not finished yet
        self.greeted = False
        self.release: asyncio.TimerHandle | None = None
        self.greeting_due = self.loop.time() + tap.greeting_delay

    # -- client side --------------------------------------------------------------------

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        if not self.tap._adopt(transport):
            return
        self.tap.connections.append(self.record)
        self.tap._spawn(self._connect_upstream())

    async def _connect_upstream(self) -> None:
        assert self.transport is not None
        try:
            transport, _ = await self.loop.create_connection(lambda: _Upstream(self), *self.tap.upstream)
        except OSError:
            self.transport.close()
            return
        if not self.tap._adopt(transport) or self.transport.is_closing():
            transport.close()
            return
        self.upstream = transport
        if self.pending:
            transport.write(bytes(self.pending))
            self.pending.clear()

    def data_received(self, data: bytes) -> None:
        if not self.greeted:
            self.record.spoke_before_greeting = True
        self.record.chunks.append(("client", data))
        if self.upstream is not None:
            self.upstream.write(data)
        else:
            self.pending += data

    def connection_lost(self, exc: Exception | None) -> None:
        self.tap._accepted.discard(self.transport)
        if self.release is not None:
            self.release.cancel()
        if self.upstream is not None:
            self.upstream.close()

    # -- server side ----------------------------------------------------------------------

    def from_server(self, data: bytes) -> None:
        if self.greeted:
            self._pass_on_whole(data)
            return
        self.held += data
        if self.release is None:
            wait = self.greeting_due - self.loop.time()
            if wait > 0:
                self.release = self.loop.call_later(wait, self._release_greeting)
            else:
                self._release_greeting()

    def _release_greeting(self) -> None:
        self.greeted = True  # before writing: the client can only answer what it has received
        data, self.held = bytes(self.held), bytearray()
        if data:
            self._pass_on(data)

    def _pass_on_whole(self, data: bytes) -> None:
        """Pass on every complete reply; keep back the start of one the server is still writing."""
        self.unfinished += data
        buffered = bytes(self.unfinished)
        cut = _end_of_replies(buffered)
        if cut < len(buffered) and len(buffered) - cut <= _HOLD_AT_MOST:
            self.unfinished = bytearray(buffered[cut:])
            buffered = buffered[:cut]
        else:
            self.unfinished.clear()
        if buffered:
            self._pass_on(buffered)

    def _pass_on(self, data: bytes) -> None:
        self.record.chunks.append(("server", data))
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def server_closed(self, transport: Any) -> None:
        self.tap._accepted.discard(transport)
        if not self.greeted:
            if self.release is not None:
                self.release.cancel()
            self._release_greeting()
        if self.unfinished:  # all there is: pass it on as it is
            data, self.unfinished = bytes(self.unfinished), bytearray()
            self._pass_on(data)
        if self.transport is not None:
            self.transport.close()  # after what is buffered has been written


def _end_of_replies(data: bytes) -> int:
    """Where the last complete reply in ``data`` ends, unless what follows is no reply's start."""
    end = 0
    for line in _REPLY_LINE.finditer(data):
        if line.group()[3:4] != b"-" or not line.group()[:3].isdigit():
            end = line.end()  # "250 …", or not a reply line at all
    return end if _UNFINISHED_REPLY.fullmatch(data, end) else len(data)


class _Upstream(asyncio.Protocol):
    """The tap's connection to the lab server."""

    def __init__(self, relay: _Relay) -> None:
        self.relay = relay
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.relay.from_server(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.relay.server_closed(self.transport)


class WireTap:
    """A relay on 127.0.0.1 in front of ``upstream`` that records every connection through it.

    Args:
        upstream: The lab server's ``(host, port)``.
        greeting_delay: Seconds to hold the server's greeting back, to catch clients that talk
            before reading it (``TappedConnection.spoke_before_greeting``). ``0`` passes it on
            at once.

    Example:
        >>> tap = WireTap(server.address, greeting_delay=0.3).start()  # doctest: +SKIP
        >>> smtplib.SMTP(*tap.address).quit()  # doctest: +SKIP
        >>> tap.stop()
        >>> tap.connections[0].sent_by("client")  # doctest: +SKIP
        b'ehlo ...\\r\\nQUIT\\r\\n'
    """

    def __init__(self, upstream: tuple[str, int], *, greeting_delay: float = 0.0) -> None:
        if greeting_delay < 0:
            raise ValueError(f"greeting_delay must be zero or more seconds, not {greeting_delay!r}")
        self.upstream = (upstream[0], int(upstream[1]))
        self.greeting_delay = greeting_delay
        self.connections: list[TappedConnection] = []
        self._server: asyncio.Server | None = None
        self._address: tuple[str, int] | None = None
        self._accepted: set[Any] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = False

    @property
    def address(self) -> tuple[str, int]:
        """Where the tap listens: ``(host, port)``, for the learner's code to connect to."""
        if self._address is None:
            raise RuntimeError("the tap is not listening: call start() first")
        return self._address

    def start(self) -> WireTap:
        """Listen on 127.0.0.1, on a port the system picks; returns once listening."""
        aio.run(self._start(), timeout=_STOP_TIMEOUT)
        return self

    async def _start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Relay(self), "127.0.0.1", 0)
        self._address = self._server.sockets[0].getsockname()[:2]

    def stop(self) -> None:
        """Close the listener and every connection through the tap. Safe to call twice."""
        if self._server is not None and not self._stopping:
            aio.run(self._stop(), timeout=_STOP_TIMEOUT)

    async def _stop(self) -> None:
        assert self._server is not None
        self._stopping = True  # from now on a late connection is aborted as soon as it is made
        self._server.close()
        for _ in range(3):  # a connection accepted a moment ago may still be setting up
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            for transport in list(self._accepted):
                transport.abort()
            await asyncio.sleep(0)  # let connection_lost callbacks run
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._server.wait_closed(), _STOP_TIMEOUT)

    # -- bookkeeping, on the loop ---------------------------------------------------------

    def _adopt(self, transport: Any) -> bool:
        """Track a new transport; abort it instead if the tap is stopping."""
        if self._stopping:
            transport.abort()
            return False
        self._accepted.add(transport)
        return True

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def __enter__(self) -> WireTap:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = f"on {self._address[0]}:{self._address[1]}" if self._address else "not listening"
        return f"<WireTap {where} → {self.upstream[0]}:{self.upstream[1]}, {len(self.connections)} connection(s)>"
