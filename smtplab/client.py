"""The lab client: aiosmtplib underneath, one method per SMTP command, a live transcript.

Every method sends one command and returns the server's :class:`Reply` — a refused reply is
data to look at, not a crash (pass ``raise_errors=True`` to get aiosmtplib's exceptions
instead). Everything that crosses the wire is recorded in ``client.transcript`` as it happens,
exactly as sent and received, with AUTH secrets masked when shown.

Async first, as aiosmtplib is::

    async with smtplab.Client(server) as client:
        await client.ehlo()
        await client.mail("alice@example.test")

and a sync face, :class:`SyncClient`, that works in a plain script and inside Jupyter's running
event loop alike (see :mod:`smtplab.aio`).
"""

from __future__ import annotations

import asyncio
import email.policy
import email.utils
import functools
import ssl
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from email.message import EmailMessage, Message
from typing import TYPE_CHECKING, Any

import aiosmtplib

from smtplab import _aiosmtplib, aio, protocol
from smtplab.errors import (
    ClientTimeoutError,
    LabConnectionRefusedError,
    NoCommonMechanismError,
    SmtpLabError,
    TLSCertificateError,
    TLSMismatchError,
)
from smtplab.transcript import Transcript, TranscriptPair, masked

if TYPE_CHECKING:
    from smtplab.server import LabServer
    from smtplab.tls import TLSMode

__all__ = ["Client", "Reply", "SendResult", "SyncClient"]

#: The name the client gives in EHLO/HELO unless told otherwise (``.test``: RFC 2606 §2).
DEFAULT_CLIENT_NAME = "client.smtplab.test"


@dataclass(frozen=True)
class Reply:
    """A server reply: a three-digit code and its text (RFC 5321 §4.2).

    Attributes:
        code: The reply code, e.g. ``250``.
        message: The text after the code; the lines of a multi-line reply joined with ``\\n``.
        command: The command line this replies to (secrets masked), ``""`` for the greeting.
    """

    code: int
    message: str
    command: str = ""

    @property
    def ok(self) -> bool:
        """True for positive replies (2xx, and 3xx "go on": 334, 354)."""
        return self.code < 400

    @property
    def enhanced(self) -> str | None:
        """The enhanced status code (RFC 3463) at the start of the text, e.g. ``"5.1.1"``."""
        parsed = protocol.parse_reply_line(
            f"{self.code} {self.message.splitlines()[0] if self.message else ''}"
        )
        return parsed.enhanced if parsed else None

    @property
    def lines(self) -> list[str]:
        """The reply as it appeared on the wire: ``250-…`` lines, then ``250 …``."""
        texts = self.message.split("\n") if self.message else [""]
        return [
            f"{self.code}{'-' if n < len(texts) - 1 else ' '}{text}".rstrip() for n, text in enumerate(texts)
        ]

    @property
    def meaning(self) -> str:
        """What the code means, from :func:`smtplab.protocol.explain`."""
        return protocol.explain(self.lines[-1])

    def __str__(self) -> str:
        return "\n".join(self.lines)

    def __repr__(self) -> str:
        first = self.message.split("\n")[0]
        more = f" (+{self.message.count(chr(10))} lines)" if "\n" in self.message else ""
        return f"<Reply {self.code} {first!r}{more}>"


@dataclass
class SendResult:
    """What happened to one message sent with :meth:`Client.send`.

    Attributes:
        recipients: The reply to each ``RCPT TO``, by address.
        reply: The reply that ended the attempt: the final reply to ``DATA`` when it got that
            far, otherwise the refusal that stopped it.
        replies: Every reply of the transaction, in order.
    """

    recipients: dict[str, Reply] = field(default_factory=dict)
    reply: Reply | None = None
    replies: list[Reply] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when the server accepted the message (``250`` after the data)."""
        return (
            self.reply is not None and self.reply.code == 250 and any(r.ok for r in self.recipients.values())
        )

    @property
    def accepted(self) -> list[str]:
        """Recipients the server accepted."""
        return [address for address, reply in self.recipients.items() if reply.ok]

    @property
    def refused(self) -> dict[str, Reply]:
        """Recipients the server refused, with its reply."""
        return {address: reply for address, reply in self.recipients.items() if not reply.ok}

    def __repr__(self) -> str:
        verdict = "accepted" if self.ok else "not accepted"
        return f"<SendResult {verdict}: {self.reply!r}, {len(self.accepted)} accepted, {len(self.refused)} refused>"


def check_argument(value: str, what: str) -> str:
    """Refuse a control character or invalid UTF-8 in a command argument, before it is sent.

    The rule is :func:`smtplab.protocol.argument_problem`, the one the lab server applies too:
    SMTP commands end at CRLF (RFC 5321 §2.3.8), so a CR or LF inside an address would end the
    command early and could smuggle in a second one.

    Raises:
        ValueError: Naming the character and its position.
    """
    problem = protocol.argument_problem(value)
    if problem is not None:
        raise ValueError(
            f"the {what} {value!r} has a {problem}: SMTP commands end at CRLF, so it could cut "
            "the command short or inject another. Remove it."
        )
    return value


def _content_bytes(content: bytes | str | Message) -> bytes:
    if isinstance(content, Message):
        return content.as_bytes(policy=email.policy.SMTP)
    if isinstance(content, str):
        return content.encode("utf-8")
    return bytes(content)


class Client:
    """An SMTP client that records the whole dialogue (async; see :class:`SyncClient`).

    Args:
        server: A :class:`~smtplab.server.LabServer` to talk to (host and port come from it).
        host: Any other server's host name or address.
        port: Its port.
        timeout: Seconds to wait for each reply unless a call says otherwise.
        name: The name given in EHLO/HELO.
        raise_errors: Raise aiosmtplib's ``SMTPResponseException`` for 4xx/5xx replies instead
            of returning them.
        record: Record the transcript (on by default; off only for benchmarks).
        tls: ``None`` (plain text), ``"starttls"`` (connect, EHLO, then STARTTLS at once) or
            ``"implicit"`` (TLS from the first byte). Never chosen for you: aiosmtplib's
            silent upgrade to STARTTLS is switched off.
        tls_context: The :class:`ssl.SSLContext` to use. By default a lab server's own CA is
            trusted (``server.client_context()``); other servers are checked against the
            system's CAs, or ``cafile``.
        cafile: A PEM file of CA certificates to trust (e.g. from ``LabTLS.write_files()``).
        validate_certs: ``False`` accepts any certificate — only to see why that is unsafe.
        client_cert: A PEM certificate to present to the server (with ``client_key``).
        client_key: The private key of ``client_cert``, if not in the same file.
    """

    def __init__(
        self,
        server: LabServer | None = None,
        *,
        host: str | None = None,
        port: int | None = None,
        timeout: float = 10.0,
        name: str = DEFAULT_CLIENT_NAME,
        raise_errors: bool = False,
        record: bool = True,
        tls: TLSMode = None,
        tls_context: ssl.SSLContext | None = None,
        cafile: str | None = None,
        validate_certs: bool = True,
        client_cert: str | None = None,
        client_key: str | None = None,
    ) -> None:
        if server is not None and (host is not None or port is not None):
            raise TypeError("give either a lab server or host= and port=, not both")
        if server is None and (host is None or port is None):
            raise TypeError("Client needs a lab server, e.g. Client(server), or host= and port=")
        from smtplab.tls import check_tls_mode  # TLS is imported when first needed

        check_tls_mode(tls)
        self.server = server
        self.host = server.host if server is not None else str(host)
        self.port = server.port if server is not None else int(port)  # type: ignore[arg-type]
        self.timeout = timeout
        self.name = check_argument(name, "client name")
        self.raise_errors = raise_errors
        self.record = record
        if tls_context is not None and (cafile or client_cert or not validate_certs):
            raise TypeError("give either tls_context= or cafile=/client_cert=/validate_certs=, not both")
        self.tls = tls
        self.tls_context = tls_context
        self._tls_options = {
            "cafile": cafile,
            "validate_certs": validate_certs,
            "client_cert": client_cert,
            "client_key": client_key,
        }
        self.transcript = Transcript(title=f"client to {self._where()}")
        self.state = protocol.SessionState(tls=tls == "implicit")
        self.greeting: Reply | None = None
        self._last_reply = Reply(0, "")
        self._session_address: tuple[Any, ...] | None = None
        self._smtp: aiosmtplib.SMTP | None = None
        self._last_command = ""
        self._in_auth = False
        self._expect_data = False
        self._data_sent = False
        self._tls_on = False  # kept as a flag: recording asks for every line

    # -- connection ---------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """Whether the connection is open."""
        return self._smtp is not None and self._smtp.is_connected

    @property
    def smtp(self) -> aiosmtplib.SMTP:
        """The underlying :class:`aiosmtplib.SMTP` (connected)."""
        if self._smtp is None:
            raise aiosmtplib.SMTPServerDisconnected("not connected: call await client.connect() first")
        return self._smtp

    @property
    def local_address(self) -> tuple[Any, ...] | None:
        """The client's own ``(host, port)`` for this connection."""
        return self._smtp.get_transport_info("sockname") if self.connected else None

    @property
    def extensions(self) -> dict[str, str]:
        """The ESMTP extensions the server announced in its EHLO reply."""
        return _aiosmtplib.extensions(self._smtp) if self._smtp is not None else {}

    @property
    def tls_active(self) -> bool:
        """Whether the connection is encrypted right now."""
        return self._tls_on and self.connected

    async def connect(self, *, timeout: float | None = None) -> Reply:
        """Open the connection and read the server's greeting (``220``)."""
        if self.connected:
            raise aiosmtplib.SMTPException("already connected; call quit() or close() first")
        timeout = self.timeout if timeout is None else timeout
        if self.server is not None and self.server.tls == "implicit" and self.tls != "implicit":
            raise TLSMismatchError(
                f"the lab server {self.server.name!r} speaks TLS from the first byte (implicit TLS, "
                "like port 465), so a plain-text client would wait for a greeting that never comes. "
                "Connect with Client(server, tls='implicit')."
            )
        socket_path = getattr(self.server, "socket_path", None)
        smtp = aiosmtplib.SMTP(
            hostname=self.host,  # also the name TLS checks the certificate against
            port=None if socket_path else self.port,
            socket_path=socket_path,  # a lab server started with unix_socket=
            timeout=timeout,
            local_hostname=self.name,
            use_tls=self.tls == "implicit",
            start_tls=False,  # never upgrade silently (aiosmtplib's default start_tls=None does)
            tls_context=self._tls_context() if self.tls else None,
        )
        self._event(f"connecting to {self._where()}{' with implicit TLS' if self.tls == 'implicit' else ''}")
        try:
            response = await smtp.connect()
        except aiosmtplib.SMTPTimeoutError as error:
            _aiosmtplib.hang_up(smtp)
            if self.tls == "implicit":
                raise self._tls_failure(error) from error
            raise ClientTimeoutError(
                f"no greeting from {self.host}:{self.port} within {timeout:g} s. A server that "
                "speaks TLS from the first byte stays silent to a plain-text client: try "
                f"tls='implicit'. {self._lab_status()}"
            ) from error
        except aiosmtplib.SMTPConnectResponseError as error:
            # A refusing greeting (e.g. 421 when the server is full): record it, then let
            # aiosmtplib's own exception reach the learner, as it is part of the lesson.
            _aiosmtplib.hang_up(smtp)
            self.greeting = self._record_reply(aiosmtplib.SMTPResponse(error.code, error.message), "")
            self._event("connection closed by the server after its greeting")
            raise
        except aiosmtplib.SMTPConnectError as error:
            if _ssl_error_in(error):
                raise self._tls_failure(error) from error
            if isinstance(error.__cause__, ConnectionRefusedError) or "refused" in str(error).lower():
                raise LabConnectionRefusedError(
                    f"nothing is listening on {self.host}:{self.port}. {self._lab_status()}"
                ) from error
            raise
        self._smtp = smtp
        self._tls_on = self.tls == "implicit"
        self.state = protocol.SessionState(tls=self._tls_on)
        self._in_auth = self._expect_data = False
        _aiosmtplib.record(smtp, written=self._record_written, replied=self._record_response)
        self._session_address = self.local_address
        from smtplab.render import format_address

        self._event(f"connected from {format_address(self._session_address)}")
        if self.tls == "implicit" and self.record:
            self._event(f"TLS started (implicit): {self._tls_facts()}")
        self.greeting = self._record_reply(response, "")
        if self.tls == "starttls" and self.greeting.code == 220:
            try:
                await self.starttls(timeout=timeout)
            except BaseException:
                # Not the connection asked for: hang up now. `async with` never reaches
                # __aexit__ when connecting fails, so nobody else would.
                await self.close()
                raise
        return self._result(self.greeting)

    def _where(self) -> str:
        """``host:port``, or the path of a lab server's Unix-domain socket."""
        path = getattr(self.server, "socket_path", None)
        return path or f"{self.host}:{self.port}"

    def _tls_context(self) -> ssl.SSLContext:
        """The context for TLS, built once per client and reused for every connection."""
        if self.tls_context is None:
            options = self._tls_options
            if self.server is not None and not options["cafile"]:
                context = self.server.client_context()  # shared by every client of the lab
            else:
                context = ssl.create_default_context(cafile=options["cafile"])
            if not options["validate_certs"] or options["client_cert"]:
                if self.server is not None and not options["cafile"]:
                    context = _copy_context(context)
                if not options["validate_certs"]:
                    context.check_hostname = False
                    context.verify_mode = ssl.CERT_NONE
                if options["client_cert"]:
                    context.load_cert_chain(options["client_cert"], options["client_key"])
            self.tls_context = context
        return self.tls_context

    def _tls_facts(self) -> str:
        from smtplab.tls import summarize

        summary = summarize(self.smtp if self._smtp is not None else None)
        if summary is None:
            return "details unavailable"
        names = ", ".join(summary.san) or summary.subject or "?"
        return f"{summary.headline}; certificate for {names}, issued by {summary.issuer}"

    def _certificate_names(self) -> tuple[str, ...]:
        """The names on the certificate of the lab server at this client's port, ``()`` if unknown.

        A lab server (or a lab proxy in front of one) in this kernel is known by its port; of
        any other server nothing is assumed — least of all the default lab certificate's names.
        """
        if self.server is not None:
            return self.server.lab_tls.hosts
        from smtplab.proxy import running_proxies
        from smtplab.server import running_servers

        for server in running_servers():
            if server.port == self.port and server.tls:
                return server.lab_tls.hosts
        for proxy in running_proxies():
            upstream = proxy.upstream_server
            if proxy.port == self.port and upstream is not None and upstream.tls:
                return upstream.lab_tls.hosts
        return ()

    def _tls_failure(self, error: BaseException) -> SmtpLabError:
        from smtplab.diagnose import exception_chain, explain_ssl_error

        message = explain_ssl_error(
            error,
            host=self.host,
            port=self.port,
            expected_mode=self.tls,
            cert_names=self._certificate_names(),
        )
        if any(isinstance(e, ssl.SSLCertVerificationError) for e in exception_chain(error)):
            return TLSCertificateError(message)
        return TLSMismatchError(message)

    async def starttls(self, *, timeout: float | None = None) -> Reply:
        """``STARTTLS`` (RFC 3207): switch this connection to TLS, then the session starts over.

        Sends EHLO first if needed. After ``220`` both sides do the TLS handshake; the
        server forgets everything (RFC 3207 §4.2), so send EHLO again before going on.
        """
        if self.tls_active:
            raise SmtpLabError("this connection is already inside TLS")
        if self.state.state is protocol.State.CONNECTED:
            await self.ehlo(timeout=timeout)
        if not self.smtp.supports_extension("starttls"):
            raise TLSMismatchError(
                f"{self.host}:{self.port} does not offer STARTTLS (its EHLO reply has no STARTTLS "
                "line), or something between you and the server removed it (a STARTTLS-stripping "
                "attack): never fall back to plain text. Start the lab server with tls='starttls', "
                "or use tls='implicit' if it speaks TLS from the first byte."
            )
        timeout = self.timeout if timeout is None else timeout
        try:
            await self.smtp.starttls(tls_context=self._tls_context(), timeout=timeout)
        except aiosmtplib.SMTPResponseException:
            return self._result(self._last_reply)  # refused: the reply says why
        except (ssl.SSLError, OSError, aiosmtplib.SMTPException) as error:
            if _ssl_error_in(error):
                raise self._tls_failure(error) from error
            raise
        self._tls_on = True
        if self.record:
            self._event(
                f"TLS started (STARTTLS): {self._tls_facts()}; the session starts over, send EHLO again"
            )
        return self._result(self._last_reply)

    async def login(
        self,
        user: str,
        password: str,
        *,
        mechanism: str | None = None,
        timeout: float | None = None,
    ) -> Reply:
        """``AUTH`` (RFC 4954): log in with PLAIN, LOGIN or CRAM-MD5, one step at a time.

        Without ``mechanism`` the choice follows :func:`smtplab.auth.choose_mechanism`, and
        the transcript says which was chosen and why. Every step of the exchange is
        recorded (masked when shown unless you ask to reveal secrets).

        Returns:
            The final reply: ``235`` when accepted, ``535`` for wrong credentials, ``538``
            when the server wants TLS first.
        """
        from smtplab import auth

        if self.state.state is protocol.State.CONNECTED:
            await self.ehlo(timeout=timeout)
        offered = _aiosmtplib.auth_mechanisms(self.smtp)
        if offered:
            chosen, reason = auth.choose_mechanism(offered, mechanism, tls=self.tls_active)
        elif mechanism is not None:
            chosen, reason = mechanism.upper(), "you asked for it, though the server did not offer AUTH"
        else:
            hint = (
                " It offers STARTTLS: AUTH usually appears only after it (RFC 4954 §4)."
                if (self.smtp.supports_extension("starttls") and not self.tls_active)
                else ""
            )
            raise NoCommonMechanismError(
                f"{self.host}:{self.port} did not offer AUTH in its EHLO reply.{hint} To see the "
                "server refuse, pass mechanism='PLAIN'."
            )
        self._event(f"AUTH mechanism chosen - {reason}")
        if chosen == "PLAIN":
            return await self._command("AUTH", "PLAIN", auth.plain_response(user, password), timeout=timeout)
        if chosen == "LOGIN":
            reply = await self._command("AUTH", "LOGIN", timeout=timeout)
            for answer in (user, password):
                if reply.code != 334:
                    break
                reply = await self._command(auth.login_response(answer), timeout=timeout)
            return reply
        if chosen == "CRAM-MD5":
            reply = await self._command("AUTH", "CRAM-MD5", timeout=timeout)
            if reply.code == 334:
                reply = await self._command(
                    auth.cram_md5_response(user, password, reply.message), timeout=timeout
                )
            return reply
        return await self._command("AUTH", chosen, timeout=timeout)

    def _lab_status(self) -> str:
        from smtplab.server import running_servers

        if self.server is not None and not self.server.running:
            return f"The lab server {self.server.name!r} this client was made for is stopped: call server.start()."
        servers = running_servers()
        owner = next((s for s in servers if s.port == self.port), None)
        if owner is not None and owner.tls == "implicit" and self.tls != "implicit":
            return (
                f"The lab server {owner.name!r} on that port speaks implicit TLS: it waits for the "
                "TLS handshake before it says anything."
            )
        if owner is not None:
            return "A lab server in this kernel uses that port; it may be overloaded."
        if not servers:
            return "No lab server is running in this kernel: start one with smtplab.start_server()."
        listing = ", ".join(f"{s.name!r} on {s.host}:{s.port}" for s in servers)
        return f"Lab servers running in this kernel: {listing}."

    async def close(self) -> None:
        """Drop the connection without QUIT (as a crashed client would).

        The socket is closed when this returns (give the loop one turn to let go of it), even
        when the server has already hung up: nothing is left for the garbage collector.
        """
        if self._smtp is not None:
            if self._smtp.is_connected:
                self._event("connection closed by the client")
            _aiosmtplib.hang_up(self._smtp)
        self._smtp = None
        self._tls_on = False

    async def __aenter__(self) -> Client:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self.connected:
            try:
                await self.quit()
            except (aiosmtplib.SMTPException, ClientTimeoutError):
                pass
        await self.close()

    # -- recording ------------------------------------------------------------------------------

    def _event(self, text: str) -> None:
        if self.record:
            self.transcript.event(text, tls=self.tls_active)

    def _record_written(self, data: bytes) -> None:
        """Every write on the connection (from the recording protocol), in order."""
        tls = self._tls_on
        if self._expect_data:  # the message content after 354: one summary, then the "."
            self._expect_data = False
            self._data_sent = True
            body = data[:-3] if data.endswith(b"\r\n.\r\n") else data
            if self.record:  # the content always ends with CRLF (aiosmtplib adds one)
                self.transcript.message_data(body.count(b"\r\n"), len(body), tls=tls)
            self._last_command = "."
            return
        lines = data.split(b"\r\n")  # one command line, as a rule: [line, b""]
        if not lines[-1]:
            lines.pop()
        for raw in lines:
            line = raw.decode("utf-8", "surrogateescape")
            self._last_command = line
            if self.record:
                self.transcript.record("client", line, tls)

    def _record_response(self, response: aiosmtplib.SMTPResponse) -> None:
        """Every reply read on the connection (from the recording protocol), in order."""
        self._record_reply(response, self._last_command)

    def _record_reply(self, response: aiosmtplib.SMTPResponse, command: str) -> Reply:
        reply = Reply(response.code, response.message, masked(command, after_334=self._in_auth))
        if self.record:
            tls = self._tls_on
            if "\n" in response.message:
                for line in reply.lines:
                    self.transcript.record("server", line, tls)
            else:
                self.transcript.record("server", f"{response.code} {response.message}".rstrip(), tls)
        if response.code == 354:
            self._expect_data = True
        word = "." if command == "." else (command.split(" ", 1)[0].upper() if command else "")
        if word and not self._in_auth:
            self.state.advance(word, response.code)
        self._in_auth = response.code == 334
        self._last_reply = reply
        return reply

    # -- commands -------------------------------------------------------------------------------

    def _result(self, reply: Reply) -> Reply:
        if self.raise_errors and not reply.ok:
            raise aiosmtplib.SMTPResponseException(reply.code, reply.message)
        return reply

    async def _command(self, *parts: str, timeout: float | None = None) -> Reply:
        line = " ".join(parts)
        for part in parts:
            check_argument(part, "command argument")
        timeout = self.timeout if timeout is None else timeout
        try:
            await self.smtp.execute_command(*(p.encode("utf-8") for p in parts), timeout=timeout)
        except asyncio.CancelledError:
            self._interrupted()
            raise
        except aiosmtplib.SMTPTimeoutError as error:
            self._event("connection closed by the client after a timeout")
            raise self._timeout_error(masked(line, after_334=self._in_auth).split(" ")[0], timeout) from error
        return self._result(self._last_reply)

    @staticmethod
    def _timeout_error(command: str, timeout: float) -> ClientTimeoutError:
        return ClientTimeoutError(
            f"{command} waited {timeout:g} s for the server's reply and got none, so the connection "
            "was closed. Is the server busy (a slow handler?), or does it expect TLS from the first "
            "byte (tls='implicit')?"
        )

    def _interrupted(self) -> None:
        # A kernel interrupt cancelled the wait for a reply. The reply may still come and be
        # taken for the answer to the next command, so this connection is done with.
        if self._smtp is not None and self._smtp.is_connected:
            self._event("connection closed by the client: interrupted while waiting for a reply")
            _aiosmtplib.hang_up(self._smtp)

    async def _hang_up_after_interrupt(self) -> None:
        self._interrupted()

    async def raw(self, line: str, *, timeout: float | None = None) -> Reply:
        """Send any command line as is (no CRLF) and return the reply — e.g. ``DATA`` too early."""
        return await self._command(line, timeout=timeout)

    async def ehlo(self, name: str | None = None, *, timeout: float | None = None) -> Reply:
        """``EHLO`` (RFC 5321 §4.1.1.1): say hello and ask for the server's extensions."""
        reply = await self._command("EHLO", name or self.name, timeout=timeout)
        if reply.code == 250:
            _aiosmtplib.note_hello(self.smtp, "EHLO", aiosmtplib.SMTPResponse(reply.code, reply.message))
        return reply

    async def helo(self, name: str | None = None, *, timeout: float | None = None) -> Reply:
        """``HELO``: the original greeting, without extensions."""
        reply = await self._command("HELO", name or self.name, timeout=timeout)
        if reply.code == 250:
            _aiosmtplib.note_hello(self.smtp, "HELO", aiosmtplib.SMTPResponse(reply.code, reply.message))
        return reply

    async def mail(self, sender: str, *, options: Iterable[str] = (), timeout: float | None = None) -> Reply:
        """``MAIL FROM:<sender>`` (RFC 5321 §4.1.1.2): start a transaction; ``""`` is the null sender."""
        check_argument(sender, "sender address")
        return await self._command(f"MAIL FROM:<{sender}>", *options, timeout=timeout)

    async def rcpt(
        self, recipient: str, *, options: Iterable[str] = (), timeout: float | None = None
    ) -> Reply:
        """``RCPT TO:<recipient>`` (RFC 5321 §4.1.1.3): add one recipient."""
        check_argument(recipient, "recipient address")
        return await self._command(f"RCPT TO:<{recipient}>", *options, timeout=timeout)

    async def data(self, content: bytes | str | Message, *, timeout: float | None = None) -> Reply:
        """``DATA`` (RFC 5321 §4.1.1.4), then the content, then the final reply.

        Line endings become CRLF and lines starting with "." are doubled (RFC 5321 §4.5.2).
        If the server does not answer ``354``, that refusal is returned and nothing is sent.
        """
        timeout = self.timeout if timeout is None else timeout
        self._data_sent = False
        try:
            await _aiosmtplib.send_data(self.smtp, _content_bytes(content), timeout=timeout)
        except asyncio.CancelledError:
            self._interrupted()
            raise
        except aiosmtplib.SMTPTimeoutError as error:
            self._event("connection closed by the client after a timeout")
            _aiosmtplib.hang_up(self.smtp)
            if not self._data_sent:
                raise self._timeout_error("DATA", timeout) from error
            raise ClientTimeoutError(
                f"the end of DATA waited {timeout:g} s for the server's final reply and got none."
            ) from error
        except aiosmtplib.SMTPServerDisconnected:
            _aiosmtplib.hang_up(self.smtp)
            raise
        return self._result(self._last_reply)

    async def rset(self, *, timeout: float | None = None) -> Reply:
        """``RSET`` (RFC 5321 §4.1.1.5): abandon the current transaction."""
        return await self._command("RSET", timeout=timeout)

    async def vrfy(self, address: str, *, timeout: float | None = None) -> Reply:
        """``VRFY`` (RFC 5321 §4.1.1.6): ask whether a mailbox exists."""
        return await self._command("VRFY", check_argument(address, "address"), timeout=timeout)

    async def expn(self, mailing_list: str, *, timeout: float | None = None) -> Reply:
        """``EXPN`` (RFC 5321 §4.1.1.7): ask for the members of a mailing list."""
        return await self._command("EXPN", check_argument(mailing_list, "list name"), timeout=timeout)

    async def noop(self, *, timeout: float | None = None) -> Reply:
        """``NOOP`` (RFC 5321 §4.1.1.9): do nothing, get ``250`` — a liveness check."""
        return await self._command("NOOP", timeout=timeout)

    async def help(self, topic: str = "", *, timeout: float | None = None) -> Reply:
        """``HELP`` (RFC 5321 §4.1.1.8): ask the server for help, on a command if given."""
        parts = ("HELP", check_argument(topic, "help topic")) if topic else ("HELP",)
        return await self._command(*parts, timeout=timeout)

    async def quit(self, *, timeout: float | None = None) -> Reply:
        """``QUIT`` (RFC 5321 §4.1.1.10): say goodbye; the server closes the connection."""
        reply = await self._command("QUIT", timeout=timeout)
        await self.close()
        return reply

    # -- whole messages ----------------------------------------------------------------------

    async def send(
        self,
        sender: str,
        recipients: str | Iterable[str],
        content: bytes | str | Message,
        *,
        timeout: float | None = None,
    ) -> SendResult:
        """Send one message: connect and EHLO if needed, then MAIL, RCPT for each, DATA.

        Stops at the first refusal that makes going on pointless (MAIL refused, every
        recipient refused) and says so in the result; with ``raise_errors=True`` raises instead.
        """
        recipients = [recipients] if isinstance(recipients, str) else list(recipients)
        for address in recipients:
            check_argument(address, "recipient address")
        check_argument(sender, "sender address")
        if not self.connected:
            await self.connect(timeout=timeout)
        if self.state.state is protocol.State.CONNECTED:
            hello = await self.ehlo(timeout=timeout)
            if hello.code >= 500:
                await self.helo(timeout=timeout)
        result = SendResult()
        reply = await self.mail(sender, timeout=timeout)
        result.replies.append(reply)
        if not reply.ok:
            result.reply = reply
            return result
        for address in recipients:
            reply = await self.rcpt(address, timeout=timeout)
            result.recipients[address] = reply
            result.replies.append(reply)
        if not result.accepted:
            await self.rset(timeout=timeout)  # end the empty transaction cleanly
            result.reply = result.replies[-1]
            return result
        result.reply = await self.data(content, timeout=timeout)
        result.replies.append(result.reply)
        return result

    async def send_message(
        self,
        message: EmailMessage | Message,
        *,
        sender: str | None = None,
        recipients: str | Iterable[str] | None = None,
        timeout: float | None = None,
    ) -> SendResult:
        """Send an :class:`email.message.EmailMessage`, taking the envelope from its headers.

        The sender comes from ``Sender`` or ``From``, the recipients from ``To``, ``Cc`` and
        ``Bcc``; ``Bcc`` itself is removed before sending, as RFC 5322 §3.6.3 intends.
        """
        if sender is None:
            header = message["Sender"] or message["From"]
            if header is None:
                raise ValueError(
                    "the message has no From or Sender header; pass sender='alice@example.test' (the envelope sender)"
                )
            sender = email.utils.parseaddr(str(header))[1]
        if recipients is None:
            fields = [str(v) for key in ("To", "Cc", "Bcc") for v in message.get_all(key, [])]
            recipients = [address for _, address in email.utils.getaddresses(fields) if address]
            if not recipients:
                raise ValueError(
                    "the message has no To, Cc or Bcc header; pass recipients=['bob@example.test'] (the envelope recipients)"
                )
        if message["Bcc"] is not None:
            message = _copy_without_bcc(message)
        return await self.send(sender, recipients, message, timeout=timeout)

    # -- the lab server's view ----------------------------------------------------------------

    @property
    def server_transcript(self) -> Transcript | None:
        """The lab server's record of this client's latest session (lab servers only)."""
        if self.server is None or self._session_address is None:
            return None
        return self.server.transcript_for(self._session_address)

    def pair(self) -> TranscriptPair:
        """Both records of this session side by side: the client's and the lab server's."""
        server_side = self.server_transcript
        if server_side is None:
            raise LookupError(
                "no server transcript: pair() needs a Client made from a lab server, after connect()"
            )
        return Transcript.pair(self.transcript, server_side)

    def __repr__(self) -> str:
        state = "connected" if self.connected else "not connected"
        return f"<Client {self.host}:{self.port} {state}, state {self.state.state.name}, {len(self.transcript)} transcript lines>"


def _ssl_error_in(error: BaseException) -> bool:
    from smtplab.diagnose import exception_chain

    return any(isinstance(e, ssl.SSLError) for e in exception_chain(error))


def _copy_context(context: ssl.SSLContext) -> ssl.SSLContext:
    """A fresh client context with the same trust, so a shared lab context is never changed."""
    copy = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    for der in context.get_ca_certs(binary_form=True):
        copy.load_verify_locations(cadata=der)
    return copy


def _copy_without_bcc(message: Message) -> Message:
    import copy

    clone = copy.copy(message)
    del clone["Bcc"]
    return clone


class SyncClient:
    """The same client without ``await``: for plain scripts, and for Jupyter cells alike.

    Each call runs the :class:`Client` coroutine on smtplab's background event loop
    (:mod:`smtplab.aio`) and waits for it, so it works whether or not the calling thread already
    runs a loop — no ``nest_asyncio`` needed. It takes the same arguments as :class:`Client`;
    everything that is not a command (``transcript``, ``state``, ``pair()`` …) is the async
    client's own attribute.

    Example:
        >>> with smtplab.SyncClient(server) as client:  # doctest: +SKIP
        ...     client.send("alice@example.test", ["bob@example.test"], "Subject: hi\\r\\n\\r\\nHi")
    """

    @functools.wraps(Client.__init__)  # so that SyncClient? shows Client's options
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.client = Client(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)

    def __enter__(self) -> SyncClient:
        self.connect()
        return self

    def __exit__(self, *exc_info: object) -> None:
        aio.run(self.client.__aexit__(*exc_info))

    def __repr__(self) -> str:
        return f"<Sync{repr(self.client)[1:]}"


def _sync(method: Callable[..., Coroutine[Any, Any, Any]]) -> Callable[..., Any]:
    @functools.wraps(method)
    def call(self: SyncClient, *args: Any, **kwargs: Any) -> Any:
        try:
            return aio.run(method(self.client, *args, **kwargs))
        except KeyboardInterrupt:
            # "Interrupt kernel": the command is cancelled on smtplab's loop a moment later, and
            # its reply may still come. Hang up now, before the next cell can send anything on
            # this connection; the next command connects afresh.
            aio.run(self.client._hang_up_after_interrupt())
            raise

    call.__doc__ = f"{method.__doc__}\n\n(Sync face of :meth:`Client.{method.__name__}`.)"
    return call


for _name, _method in list(vars(Client).items()):
    if asyncio.iscoroutinefunction(_method) and not _name.startswith("_"):
        setattr(SyncClient, _name, _sync(_method))
del _name, _method
