"""A lab man-in-the-middle: a loopback proxy that relays SMTP, records it, and can strip STARTTLS.

STARTTLS (RFC 3207) is opportunistic: the server offers it in its EHLO reply, and a client that
upgrades only when offered — aiosmtplib's default ``start_tls=None``, or smtplib's
``if s.has_extn("starttls"): s.starttls()`` — carries on in plain text when the offer is missing.
Anyone on the path can delete that one line (RFC 3207 §6 names the attack). :func:`start_proxy`
puts such a someone between a client and a lab server, on loopback only::

    server = smtplab.start_server(tls="starttls", auth={"alice": "wonderland"}, auth_require_tls=False)
    proxy = smtplab.start_proxy(server, strip_starttls=True)
    # point a client at proxy.host, proxy.port instead of the server, then:
    print(proxy.wait_for(1)[0].transcript.text(reveal_secrets=True))

The proxy relays line by line and records each connection in a :class:`~smtplab.Transcript`:
the client's lines (``->``), the server's (``<-``), and as events (``**``) everything it did
besides relaying — a line deleted, a continuation mark rewritten, a command answered in the
server's place. Secrets are masked in every rendering unless revealed, as in every transcript.

When STARTTLS does go through, the proxy relays the ``220`` and from then on passes bytes
blindly: client and server handshake through it, and all it can record is how many bytes of
ciphertext went each way. A client that *requires* TLS (``smtplab.Client(..., tls="starttls")``)
is not fooled by the stripping: it fails closed with :class:`~smtplab.TLSMismatchError`.

The proxy runs on its own event loop in a background thread, binds only a loopback address, and
relays only to one; every proxy is stopped at interpreter exit, or by :func:`stop_all_proxies`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from smtplab._lifecycle import Registry, is_loopback, listen
from smtplab.errors import ReplacedServerWarning, ServerStartError
from smtplab.render import format_address
from smtplab.server import LabServer, holder
from smtplab.transcript import Transcript

if TYPE_CHECKING:
    import socket

__all__ = ["Edit", "LabProxy", "ProxyConnection", "running_proxies", "start_proxy", "stop_all_proxies"]

#: What a lab server started without ``tls=`` answers to STARTTLS (aiosmtpd 1.4.6's words, with the
#: enhanced code the lab adds; RFC 3207 §4 gives 454 for "TLS not available"). The stripping
#: proxy answers the same, so the client cannot tell it from a server that never offered TLS.
NO_TLS_REPLY = "454 4.7.0 TLS not available"

_MAX_LINE = 1024 * 1024  # bytes of one line; a longer one ends the connection
_MAX_REPLY_LINES = 1000  # lines of one multi-line reply
_CIPHERTEXT_EVENTS = 50  # chunks of ciphertext listed one by one per connection, then only counted
_KEEP_MESSAGE_BYTES = 10 * 1024 * 1024  # message data kept per connection (ProxyConnection.messages)
_CONNECT_TIMEOUT = 5.0
_STOP_TIMEOUT = 10.0
_CRLF = b"\r\n"


@dataclass(frozen=True)
class Edit:
    """One thing the proxy changed instead of relaying it faithfully.

    Attributes:
        kind: ``"deleted"`` (a line of the server's reply never reached the client),
            ``"rewritten"`` (a line reached the client changed) or ``"answered"`` (the proxy
            answered a client's command itself; the server never saw the command).
        original: The line as received (a reply line, or the client's command).
        relayed: What was sent on instead (the rewritten line, or the proxy's own reply);
            ``None`` for a deletion.
        why: The reason, in a sentence.
        time: ``time.time()`` when it happened.
    """

    kind: str
    original: str
    relayed: str | None
    why: str
    time: float = field(default_factory=time.time)


def strip_starttls(lines: list[str]) -> tuple[list[str], list[Edit]]:
    """Delete the STARTTLS line from the lines of an EHLO reply; return what is left and the edits.

    The continuation marks are put right again (RFC 5321 §4.2.1: every line but the last has a
    hyphen after the code, the last a space), so the reply stays well-formed — a client cannot
    tell anything was removed. Pure: no I/O.
    """
    kept: list[str] = []
    edits: list[Edit] = []
    for line in lines:
        if line[4:].strip().upper() == "STARTTLS":
            edits.append(
                Edit("deleted", line, None, "a client that upgrades only when offered stays in plain text")
            )
        else:
            kept.append(line)
    if not edits:
        return lines, []
    fixed = []
    for n, line in enumerate(kept):
        new = f"{line[:3]}{'-' if n < len(kept) - 1 else ' '}{line[4:]}"
        if new.rstrip() != line.rstrip():
            why = "so that the reply still ends with a line whose code is followed by a space"
            edits.append(Edit("rewritten", line, new, why))
        fixed.append(new)
    return fixed, edits


class ProxyConnection:
    """One client's connection through the proxy, and everything relayed on it.

    Attributes:
        number: 1 for the proxy's first connection, 2 for the next, …
        client_address: The client's ``(host, port)``.
        upstream: The server's ``(host, port)``.
        transcript: Everything relayed, both ways, with the proxy's changes as events.
        edits: What the proxy changed (:class:`Edit`), in order.
        messages: The message data relayed in plain text (as on the wire, dot-stuffed), the
            first 10 MiB per connection: the proxy reads the mail, not only the password.
        tls_relayed: Whether STARTTLS went through (or the server speaks implicit TLS): from
            then on the proxy relayed ciphertext it cannot read.
        ciphertext_from_client: Bytes of ciphertext relayed from the client to the server.
        ciphertext_from_server: Bytes of ciphertext relayed from the server to the client.
    """

    def __init__(self, number: int, client_address: Any, upstream: tuple[str, int], proxy_name: str) -> None:
        self.number = number
        self.client_address = client_address
        self.upstream = upstream
        self.transcript = Transcript(
            title=f"{proxy_name} connection {number}: client {format_address(client_address)} "
            f"\u2192 proxy \u2192 server {format_address(upstream)}",
            peer=client_address,
        )
        self.edits: list[Edit] = []
        self.messages: list[bytes] = []
        self.tls_relayed = False
        self.ciphertext_from_client = 0
        self.ciphertext_from_server = 0
        self._closed = threading.Event()

    @property
    def closed(self) -> bool:
        """Whether both sides of the connection have closed."""
        return self._closed.is_set()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        tls = ", TLS relayed blind" if self.tls_relayed else ""
        edits = f", {len(self.edits)} edit(s)" if self.edits else ""
        return (
            f"<ProxyConnection {self.number} from {format_address(self.client_address)} {state}"
            f"{tls}{edits}, {len(self.transcript)} transcript lines>"
        )


class _Relay:
    """The proxy's side of one connection, on the proxy's event loop."""

    def __init__(
        self,
        record: ProxyConnection,
        client: tuple[asyncio.StreamReader, asyncio.StreamWriter],
        *,
        strip: bool,
        implicit: bool,
    ) -> None:
        self.record = record
        self.client_reader, self.client_writer = client
        self.server_reader: asyncio.StreamReader | None = None
        self.server_writer: asyncio.StreamWriter | None = None
        self.strip = strip
        self.implicit = implicit
        self.transcript = record.transcript
        # One future per line sent to the server that awaits a reply, in order (pipelining).
        self.pending: collections.deque[tuple[str, asyncio.Future[int | None]]] = collections.deque()
        self.idle = asyncio.Event()
        self.idle.set()
        self.in_auth = False  # the last reply was 334: the client's next line answers it
        self.ciphertext_events = 0
        self.kept_bytes = 0

    # -- the connection -----------------------------------------------------------------------

    async def run(self) -> None:
        record = self.record
        where = format_address(record.upstream)
        try:
            try:
                self.server_reader, self.server_writer = await asyncio.wait_for(
                    asyncio.open_connection(*record.upstream, limit=_MAX_LINE), _CONNECT_TIMEOUT
                )
            except (OSError, asyncio.TimeoutError) as error:
                reply = f"421 4.4.0 The lab proxy could not reach the server at {where}"
                self.transcript.event(f"client connected; the proxy could not reach {where}: {error!r}")
                self._answer("(connection)", reply, "the server could not be reached")
                self.client_writer.close()
                return
            local = self.server_writer.get_extra_info("sockname")
            self.transcript.event(
                f"client {format_address(record.client_address)} connected to the proxy; the proxy "
                f"connected to the server {where} from {format_address(local)}"
            )
            if self.implicit:
                self._go_blind("the server speaks implicit TLS (RFC 8314): from the first byte")
            else:
                self.pending.append(("(greeting)", asyncio.get_running_loop().create_future()))
                self.idle.clear()
            directions = [
                asyncio.create_task(self._client_to_server()),
                asyncio.create_task(self._server_to_client()),
            ]
            try:
                await asyncio.gather(*directions)
            finally:
                for task in directions:
                    task.cancel()
                await asyncio.gather(*directions, return_exceptions=True)
        finally:
            for writer in (self.client_writer, self.server_writer):
                if writer is not None:
                    writer.transport.abort()  # both sides are done, or the proxy is stopping
            for _, future in self.pending:
                future.cancel()
            self._finish()

    def _finish(self) -> None:
        record = self.record
        if record.tls_relayed:
            self.transcript.event(
                f"connection closed; ciphertext relayed: {record.ciphertext_from_client} bytes from "
                f"the client, {record.ciphertext_from_server} bytes from the server",
                tls=True,
            )
        else:
            self.transcript.event("connection closed")
        record._closed.set()

    # -- client to server ----------------------------------------------------------------------

    async def _client_to_server(self) -> None:
        assert self.server_writer is not None
        in_data = False
        data = bytearray()  # the message being relayed, while there is room to keep a copy
        lines = size = 0
        while not self.record.tls_relayed:
            line = await self._readline(self.client_reader, "client")
            if not line:
                self.transcript.event("the client closed its side")
                _half_close(self.server_writer)
                return
            if self.server_writer.transport.is_closing():
                return  # the server has gone: nothing more to relay
            text = line.rstrip(b"\r\n").decode("utf-8", "surrogateescape")
            if in_data:
                self.server_writer.write(line)
                if text != ".":
                    lines += 1
                    size += len(line)
                    if self.kept_bytes + size <= _KEEP_MESSAGE_BYTES:
                        data += line
                    continue
                in_data = False
                self._message_relayed(bytes(data), lines, size)
                data.clear()
                lines = size = 0
                self.transcript.client(".")
                self._expect(".")
                await self._drain(self.server_writer)
                continue
            verb = "" if self.in_auth else text.split(" ", 1)[0].upper()
            if verb == "STARTTLS" and self.strip:
                await self.idle.wait()  # earlier replies go out first, in order
                self.transcript.client(text)
                self._answer(
                    text,
                    NO_TLS_REPLY,
                    "the server never saw STARTTLS; the client hears what a server without TLS says",
                )
                await self._drain(self.client_writer)
                continue
            self.transcript.client(text)
            outcome = self._expect(verb)
            self.server_writer.write(line)
            await self._drain(self.server_writer)
            if verb in ("DATA", "STARTTLS"):
                # What comes next depends on the reply: message lines after 354, TLS after 220.
                code = await outcome
                in_data = verb == "DATA" and code == 354
        await self._blind(self.client_reader, self.server_writer, from_client=True)

    def _expect(self, verb: str) -> asyncio.Future[int | None]:
        future: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()
        self.pending.append((verb, future))
        self.idle.clear()
        return future

    def _message_relayed(self, data: bytes, lines: int, size: int) -> None:
        kept = len(data) == size
        self.transcript.event(
            f"message data: {lines} lines, {size} bytes, relayed in plain text: the proxy "
            + ("keeps a copy (connection.messages)" if kept else "read it all (too much to keep a copy)")
        )
        if kept:
            self.kept_bytes += size
            self.record.messages.append(data)

    # -- server to client -----------------------------------------------------------------------

    async def _server_to_client(self) -> None:
        assert self.server_reader is not None
        while not self.record.tls_relayed:
            raw = await self._read_reply()
            if not raw:
                self.transcript.event("the server closed the connection")
                self.client_writer.close()  # the session is over; the client's side ends too
                for _, future in self.pending:
                    if not future.done():
                        future.set_result(None)
                return
            texts = [line.rstrip(b"\r\n").decode("utf-8", "surrogateescape") for line in raw]
            verb, future = self.pending.popleft() if self.pending else ("", None)
            for text in texts:
                self.transcript.server(text)
            code = _code(texts[-1])
            self.in_auth = code == 334
            if self.strip and verb == "EHLO" and code == 250 and texts != (out := self._strip(texts)):
                self.client_writer.write(
                    b"".join(text.encode("utf-8", "surrogateescape") + _CRLF for text in out)
                )
            else:
                self.client_writer.write(b"".join(raw))  # byte for byte
            await self._drain(self.client_writer)
            if future is not None and not future.done():
                future.set_result(code)
            if not self.pending:
                self.idle.set()
            if verb == "STARTTLS" and code == 220:
                self._go_blind("STARTTLS accepted: client and server now handshake through the proxy")
        await self._blind(self.server_reader, self.client_writer, from_client=False)

    def _strip(self, texts: list[str]) -> list[str]:
        out, edits = strip_starttls(texts)
        for edit in edits:
            self.record.edits.append(edit)
            if edit.kind == "deleted":
                self.transcript.event(
                    f"proxy CHANGED the reply: deleted {edit.original!r} before relaying it; {edit.why}"
                )
            else:
                self.transcript.event(
                    f"proxy CHANGED the reply: relayed {edit.original!r} as {edit.relayed!r}, {edit.why}"
                )
        return out

    def _answer(self, command: str, reply: str, why: str) -> None:
        """Answer the client in the server's place, and say so in the record."""
        self.record.edits.append(Edit("answered", command, reply, why))
        self.transcript.event(f"proxy ANSWERED in the server's place ({why}):")
        self.transcript.server(reply)
        self.client_writer.write(reply.encode() + _CRLF)

    async def _read_reply(self) -> list[bytes]:
        """The lines of one reply: ``250-…`` lines up to the ``250 …`` one; ``[]`` at EOF."""
        assert self.server_reader is not None
        lines: list[bytes] = []
        while len(lines) < _MAX_REPLY_LINES:
            line = await self._readline(self.server_reader, "server")
            if not line:
                return lines
            lines.append(line)
            if line[3:4] != b"-" or not line[:3].isdigit():
                break
        return lines

    # -- after the handshake ------------------------------------------------------------------

    def _go_blind(self, why: str) -> None:
        self.record.tls_relayed = True
        self.transcript.event(
            f"{why}. From here the proxy relays bytes blindly and sees only ciphertext: it can "
            "count the bytes, not read them",
            tls=True,
        )

    async def _blind(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, from_client: bool
    ) -> None:
        who = "client \u2192 server" if from_client else "server \u2192 client"
        while True:
            try:
                chunk = await reader.read(65536)
            except ConnectionError:
                chunk = b""
            if not chunk:
                self.transcript.event(f"{who}: end of ciphertext", tls=True)
                if from_client:
                    _half_close(writer)
                else:
                    writer.close()  # the server is done; so is the client's side
                return
            if from_client:
                self.record.ciphertext_from_client += len(chunk)
            else:
                self.record.ciphertext_from_server += len(chunk)
            self.ciphertext_events += 1
            if self.ciphertext_events <= _CIPHERTEXT_EVENTS:
                self.transcript.event(f"{who}: {len(chunk)} bytes of ciphertext", tls=True)
                if self.ciphertext_events == _CIPHERTEXT_EVENTS:
                    self.transcript.event("further ciphertext is counted, not listed", tls=True)
            writer.write(chunk)
            await self._drain(writer)

    # -- helpers -------------------------------------------------------------------------------

    async def _readline(self, reader: asyncio.StreamReader, who: str) -> bytes:
        """The next line (with its line ending), a last unterminated piece, or ``b""`` at EOF."""
        try:
            return await reader.readuntil(b"\n")
        except asyncio.IncompleteReadError as end:
            return end.partial
        except asyncio.LimitOverrunError:
            self.transcript.event(f"the {who} sent a line longer than {_MAX_LINE} bytes; the proxy hung up")
            return b""
        except ConnectionError:
            return b""

    @staticmethod
    async def _drain(writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            await writer.drain()


def _half_close(writer: asyncio.StreamWriter) -> None:
    """Pass an end of stream on (TCP half-close), so the other side can finish in its own time."""
    with contextlib.suppress(OSError, RuntimeError):
        if writer.can_write_eof():
            writer.write_eof()
            return
    writer.transport.abort()


def _code(text: str) -> int | None:
    return int(text[:3]) if text[:3].isdigit() else None


_RULE = (
    "the lab proxy works on loopback only (127.0.0.1, ::1, localhost): a man-in-the-middle is "
    "for your own lab server, never for anyone else's traffic"
)


# -- the learner's side --------------------------------------------------------------------------

_proxies: Registry[LabProxy] = Registry(
    "lab proxy", replaced=ReplacedServerWarning, example="start_proxy(server, name='proxy2')"
)


def running_proxies() -> list[LabProxy]:
    """Every lab proxy running in this process (this kernel), oldest first."""
    return _proxies.running()


def stop_all_proxies() -> int:
    """Stop every lab proxy running in this process; returns how many were stopped.

    Also runs at interpreter exit (kernel shutdown or restart).
    """
    return _proxies.stop_all()


class LabProxy:
    """A man-in-the-middle between SMTP clients and a lab server (create it with :func:`start_proxy`).

    Attributes:
        upstream: The server's ``(host, port)``.
        upstream_server: The :class:`~smtplab.LabServer` relayed to, if one was given.
        strip_starttls: Whether STARTTLS is deleted from the server's EHLO reply.
        host: The loopback address the proxy listens on.
        name: The proxy's name in :func:`running_proxies`; starting another proxy with the same
            name stops this one once the new one listens.
    """

    def __init__(
        self,
        upstream: LabServer | tuple[str, int],
        *,
        strip_starttls: bool = False,
        host: str = "127.0.0.1",
        port: int = 0,
        name: str = "proxy",
    ) -> None:
        self.upstream_server, self.upstream, self._implicit = _upstream(upstream)
        if not isinstance(strip_starttls, bool):
            raise TypeError(f"strip_starttls must be True or False, not {strip_starttls!r}")
        if strip_starttls and self._implicit:
            raise ValueError(
                "there is no STARTTLS to strip: this lab server speaks implicit TLS (RFC 8314), "
                "encrypted from the first byte — which is why it resists this attack. Strip a "
                "server started with tls='starttls'."
            )
        if not is_loopback(host):
            raise ValueError(f"the proxy cannot listen on {host!r}: {_RULE}.")
        if not isinstance(port, int) or not 0 <= port <= 65535:
            raise ValueError(f"port must be an int from 0 to 65535 (0: any free port), not {port!r}")
        self.strip_starttls = strip_starttls
        self.host = host
        self.name = name
        self._requested_port = port
        self._port: int | None = None
        self._connections: list[ProxyConnection] = []
        self._changed = threading.Condition()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.AbstractServer | None = None
        self._relays: set[asyncio.Task[None]] = set()
        self._lock = threading.RLock()

    # -- facts ------------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The port the proxy listens on (the one the OS picked when started with port 0)."""
        return self._port if self._port is not None else self._requested_port

    @property
    def address(self) -> tuple[str, int]:
        """``(host, port)``: where clients connect instead of the server."""
        return self.host, self.port

    @property
    def running(self) -> bool:
        """Whether the proxy is accepting connections."""
        return self._loop is not None

    @property
    def connections(self) -> list[ProxyConnection]:
        """Every connection through the proxy so far, oldest first."""
        with self._changed:
            return list(self._connections)

    @property
    def transcripts(self) -> list[Transcript]:
        """The record of each connection, oldest first."""
        return [connection.transcript for connection in self.connections]

    @property
    def edits(self) -> list[Edit]:
        """Everything the proxy changed, on every connection, in order."""
        return [edit for connection in self.connections for edit in connection.edits]

    def wait_for(self, count: int = 1, *, timeout: float = 5.0) -> list[ProxyConnection]:
        """Wait until ``count`` connections through the proxy have closed; return the closed ones.

        Raises:
            TimeoutError: Fewer had closed after ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout

        def closed() -> list[ProxyConnection]:
            return [c for c in self._connections if c.closed]

        with self._changed:
            while len(closed()) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(
                        f"{len(closed())} of the {count} connection(s) waited for have closed after "
                        f"{timeout:g} s ({len(self._connections)} opened through the proxy). Is a client "
                        "still connected, or did it connect to the server directly?"
                    )
                self._changed.wait(left)
            return closed()

    def __repr__(self) -> str:
        state = f"running on {format_address(self.address)}" if self.running else "stopped"
        mode = "stripping STARTTLS" if self.strip_starttls else "relaying faithfully"
        return (
            f"<LabProxy {self.name!r} {state} \u2192 {format_address(self.upstream)}, {mode}, "
            f"{len(self.connections)} connection(s)>"
        )

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> LabProxy:
        """Start listening; returns once connections are accepted. Does nothing if running.

        Raises:
            PortInUseError: An explicit port is taken (at once).
        """
        with self._lock:
            if self.running:
                return self
            succession = _proxies.succession(self)
            port = self._port or self._requested_port
            sock: socket.socket | None = None
            loop: asyncio.AbstractEventLoop | None = None
            thread: threading.Thread | None = None
            try:
                sock = succession.listen(
                    lambda: listen(self.host, port, what="the lab proxy", owner=holder),
                    holds=lambda old: port != 0 and old.port == port,
                )
                loop = asyncio.new_event_loop()
                thread = threading.Thread(
                    target=loop.run_forever, name=f"smtplab-proxy-{self.name}", daemon=True
                )
                thread.start()
                self._server = asyncio.run_coroutine_threadsafe(
                    asyncio.start_server(self._accept, sock=sock, limit=_MAX_LINE), loop
                ).result(_CONNECT_TIMEOUT)
            except BaseException as error:
                if sock is not None:
                    sock.close()
                if thread is not None and thread.is_alive():
                    _end_loop(loop, thread)  # type: ignore[arg-type]
                elif loop is not None:
                    loop.close()
                if sock is None or not isinstance(error, Exception):  # listen() said why already
                    raise succession.failed(error)  # noqa: B904 - the error itself, saying more
                failure = ServerStartError(f"the lab proxy could not start: {error!r}")
                raise succession.failed(failure) from error
            self._port = sock.getsockname()[1]
            self._loop, self._thread = loop, thread
            succession.done(stacklevel=3)
        return self

    def stop(self) -> None:
        """Stop the proxy and cut every connection through it. Safe to call twice; records stay."""
        with self._lock:
            loop, thread = self._loop, self._thread
            if loop is None or thread is None:
                return
            self._loop = self._thread = None
            _proxies.discard(self)
            try:
                asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(_STOP_TIMEOUT)
            finally:
                _end_loop(loop, thread)

    async def _shutdown(self) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._relays):
            task.cancel()
        await asyncio.gather(*self._relays, return_exceptions=True)
        await self._server.wait_closed()
        await asyncio.sleep(0)  # one turn for the aborted transports to close their sockets
        self._server = None

    def __enter__(self) -> LabProxy:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- on the proxy's loop ------------------------------------------------------------------

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._relays.add(task)
        with self._changed:
            record = ProxyConnection(
                len(self._connections) + 1, writer.get_extra_info("peername"), self.upstream, self.name
            )
            self._connections.append(record)
        try:
            await _Relay(record, (reader, writer), strip=self.strip_starttls, implicit=self._implicit).run()
        except asyncio.CancelledError:
            # stop() cut the connection. Ending normally matters: asyncio's stream callback
            # (Python 3.11) logs an error for a connection task that ends cancelled.
            pass
        except Exception as error:  # noqa: BLE001 - recorded; one connection never stops the proxy
            record.transcript.event(f"the proxy failed on this connection: {error!r}")
        finally:
            self._relays.discard(task)
            with self._changed:
                self._changed.notify_all()


def start_proxy(
    upstream: LabServer | tuple[str, int],
    *,
    strip_starttls: bool = False,
    host: str = "127.0.0.1",
    port: int = 0,
    name: str = "proxy",
) -> LabProxy:
    """Start a lab man-in-the-middle between clients and ``upstream``; ready on return.

    Clients connect to ``proxy.host, proxy.port`` instead of the server; the proxy relays SMTP
    line by line and records every connection (``proxy.connections``, ``proxy.transcripts``).

    Args:
        upstream: The lab server to relay to, or its ``(host, port)``: loopback only.
        strip_starttls: Delete STARTTLS from the server's EHLO reply (fixing the ``250-`` /
            ``250 `` marks so the reply stays well-formed), and answer a client that sends
            STARTTLS anyway as a server without TLS would (``454``). Without it the proxy relays
            faithfully, and after a successful STARTTLS sees only ciphertext.
        host: The loopback address to listen on.
        port: The port; ``0`` (the default) lets the operating system pick a free one.
        name: Starting a proxy with the name of a running one stops the old one first, so
            re-running a notebook cell never piles up proxies.

    Returns:
        The running :class:`LabProxy`; use it as a context manager to stop it automatically.

    Raises:
        ValueError: ``upstream`` or ``host`` is not a loopback address, or there is no STARTTLS
            to strip (an implicit-TLS lab server).
        PortInUseError: An explicit ``port`` is already taken.
    """
    return LabProxy(upstream, strip_starttls=strip_starttls, host=host, port=port, name=name).start()


# -- helpers -------------------------------------------------------------------------------------


def _upstream(upstream: Any) -> tuple[LabServer | None, tuple[str, int], bool]:
    """The lab server (if any), the address to relay to, and whether it speaks implicit TLS."""
    if isinstance(upstream, LabServer):
        if upstream.socket_path is not None or upstream.unix_socket:
            raise ValueError(
                "the lab proxy relays TCP, and this lab server listens on a Unix-domain socket: "
                "start the server for the lesson without unix_socket="
            )
        if not upstream.running:
            raise ValueError(f"the lab server {upstream.name!r} is stopped: call server.start() first")
        return upstream, (upstream.host, upstream.port), upstream.tls == "implicit"
    if (
        not isinstance(upstream, tuple)
        or len(upstream) != 2
        or not isinstance(upstream[0], str)
        or isinstance(upstream[1], bool)
        or not isinstance(upstream[1], int)
    ):
        raise TypeError(f"upstream must be a LabServer or a (host, port) tuple, not {upstream!r}")
    host, port = upstream
    if not is_loopback(host):
        raise ValueError(f"the proxy will not relay to {host!r}: {_RULE}.")
    return None, (host, port), False


def _end_loop(loop: asyncio.AbstractEventLoop, thread: threading.Thread) -> None:
    loop.call_soon_threadsafe(loop.stop)
    thread.join(_STOP_TIMEOUT)
    if not thread.is_alive():
        loop.close()
