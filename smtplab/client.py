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
import contextlib
import email.policy
import email.utils
import functools
import ssl
import time
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from email.message import EmailMessage, Message
from typing import TYPE_CHECKING, Any

import aiosmtplib

from smtplab import _aiosmtplib, aio, protocol
from smtplab.errors import (
    ClientTimeoutError,
    ExtensionNotOfferedError,
    LabConnectionRefusedError,
    NoCommonMechanismError,
    ServerBusyError,
    SmtpLabError,
    TLSCertificateError,
    TLSMismatchError,
    explaining,
)
from smtplab.hints import Fix, Hint, option, start_lab_server
from smtplab.transcript import Transcript, TranscriptPair, masked

if TYPE_CHECKING:
    from smtplab.proxy import LabProxy
    from smtplab.server import LabServer
    from smtplab.tls import CertificateFacts, TLSMode

__all__ = ["Client", "Reply", "SendResult", "SyncClient"]

#: ``callback(sender, data, tls)`` for :meth:`Client.observe_wire`.
WireObserver = Callable[[str, bytes, bool], object]

#: The name the client gives in EHLO/HELO unless told otherwise (``.test``: RFC 2606 §2).
DEFAULT_CLIENT_NAME = "client.smtplab.test"


@dataclass(frozen=True)
class Reply:
    """A server reply: a three-digit code and its text (RFC 5321 §4.2).

    Attributes:
        code: The reply code, e.g. ``250``.
        message: The text after the code; the lines of a multi-line reply joined with ``\\n``.
        command: The command line this replies to (secrets masked), ``""`` for the greeting.
        answers: The command it answers, as :func:`smtplab.protocol.answered_verb` names it
            (``""`` the greeting, ``"AUTH"`` a step of AUTH, ``"."`` the end of data); set by the
            client, ``None`` for a reply made by hand. :attr:`meaning` reads it in that context.
        tls: Whether the reply came inside TLS.
    """

    code: int
    message: str
    command: str = ""
    answers: str | None = field(default=None, compare=False)
    tls: bool = field(default=False, compare=False)

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
        """What the code means in answer to its command, from :func:`smtplab.protocol.explain`."""
        return protocol.explain(self.lines[-1], command=self.answers, tls=self.tls)

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


def check_argument(value: str, what: str, *, after_334: bool = False) -> str:
    """Refuse a control character or invalid UTF-8 in a command argument, before it is sent.

    The rule is :func:`smtplab.protocol.argument_problem`, the one the lab server applies too:
    SMTP commands end at CRLF (RFC 5321 §2.3.8), so a CR or LF inside an address would end the
    command early and could smuggle in a second one. An AUTH secret in ``value`` is masked in
    the message, as everywhere (``after_334``: the line answers a ``334`` challenge).

    Raises:
        ValueError: Naming the character and its position.
    """
    problem = protocol.argument_problem(value)
    if problem is not None:
        shown = masked(value, after_334=after_334)
        raise ValueError(
            f"the {what} {shown!r} has a {problem}: SMTP commands end at CRLF, so it could cut "
            "the command short or inject another. Remove it."
        )
    return value


#: Headers that hold addresses: in a message whose addresses are not ASCII they must be sent as
#: UTF-8 (RFC 6532 §3.2), never as encoded words, which RFC 2047 §5 forbids inside an address.
_ADDRESS_HEADERS = ("From", "Sender", "Reply-To", "To", "Cc", "Bcc", "Resent-From", "Resent-To", "Resent-Cc")


def _international(message: Message, envelope: Iterable[str] = ()) -> bool:
    """Whether any address — in the envelope or in the message's headers — is not ASCII."""
    values = [str(value) for name in _ADDRESS_HEADERS for value in message.get_all(name, [])]
    addresses = [address for _, address in email.utils.getaddresses(values)]
    return not all(address.isascii() for address in (*envelope, *addresses))


def _content_bytes(
    content: bytes | str | Message, *, envelope: Iterable[str] = (), seven_bit: bool = False
) -> bytes:
    """The message as it goes on the wire.

    An :class:`~email.message.Message` is written with the SMTP policy (CRLF line endings; a
    non-ASCII display name or subject as RFC 2047 encoded words), or, when an address is not
    ASCII, with the SMTPUTF8 policy: headers in UTF-8 and addresses whole, as
    ``smtplib.send_message`` does (RFC 6532). ``seven_bit`` re-encodes 8-bit bodies as base64 or
    quoted-printable, for a server without 8BITMIME (RFC 6152 §3).
    """
    if isinstance(content, Message):
        policy = email.policy.SMTPUTF8 if _international(content, envelope) else email.policy.SMTP
        if seven_bit:
            policy = policy.clone(cte_type="7bit")
        return content.as_bytes(policy=policy)
    if isinstance(content, str):
        return content.encode("utf-8")
    return bytes(content)


class Client:
    """An SMTP client that records the whole dialogue (async; see :class:`SyncClient`).

    Use it with ``async with`` (or ``await client.connect()``); without ``await``, use
    :class:`SyncClient`.

    Args:
        server: A :class:`~smtplab.server.LabServer` to talk to (host and port come from it),
            or a :class:`~smtplab.proxy.LabProxy` in front of one (the client talks to the
            proxy, and trusts the lab CA of the server behind it).
        host: Any other server's host name or address.
        port: Its port.
        socket_path: Any other server's Unix-domain socket, instead of host and port (a lab
            server's own socket is found by itself).
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
        server: LabServer | LabProxy | None = None,
        *,
        host: str | None = None,
        port: int | None = None,
        socket_path: str | None = None,
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
        where = (host is not None or port is not None) + (socket_path is not None) + (server is not None)
        if where > 1:
            raise TypeError("give one of: a lab server (or proxy), host= and port=, or socket_path=")
        if server is None and socket_path is None and (host is None or port is None):
            raise TypeError(
                "Client needs a lab server, e.g. Client(server), or host= and port=, or socket_path="
            )
        from smtplab.proxy import LabProxy  # here: the proxy module imports the server's
        from smtplab.tls import check_tls_mode  # TLS is imported when first needed

        check_tls_mode(tls)
        #: The lab proxy this client talks to, if made from one (``server`` is then ``None``).
        self.proxy: LabProxy | None = server if isinstance(server, LabProxy) else None
        self.server: LabServer | None = None if self.proxy is not None else server  # type: ignore[assignment]
        # The lab server whose certificate the client will be shown: the one it talks to, or the
        # one behind its proxy.
        self._lab = self.proxy.upstream_server if self.proxy is not None else self.server
        self._socket_path = socket_path
        if server is not None:
            self.host, self.port = server.host, server.port
        else:
            self.host = "localhost" if socket_path is not None else str(host)
            self.port = 0 if socket_path is not None else int(port)  # type: ignore[arg-type]
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
        self.transcript = Transcript(title=f"client to {self.where}")
        self.state = protocol.SessionState(tls=tls == "implicit")
        self.greeting: Reply | None = None
        self._last_reply = Reply(0, "")
        self._session_address: tuple[Any, ...] | None = None
        self._smtp: aiosmtplib.SMTP | None = None
        self._last_command = ""
        self._in_auth = False
        self._expect_data = False
        self._data_sent = False
        self._closing_reply: Reply | None = None  # a 421 the server sent unasked, before closing
        self._tls_on = False  # kept as a flag: recording asks for every line
        self._by_line = False  # message content sent with data_line() rather than data()
        self._by_line_count = self._by_line_size = 0
        self._wire_observers: tuple[WireObserver, ...] = ()
        self.wire_errors: list[Exception] = []

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
    def last_reply(self) -> Reply:
        """The server's latest reply on this connection (code 0 before the first one).

        A ``334`` here means the server waits for an answer to its AUTH challenge, not a command.
        """
        return self._last_reply

    @property
    def tls_active(self) -> bool:
        """Whether the connection is encrypted right now."""
        return self._tls_on and self.connected

    async def connect(self, *, timeout: float | None = None) -> Reply:
        """Open the connection and read the server's greeting (``220``)."""
        if self.connected:
            raise aiosmtplib.SMTPException("already connected; call quit() or close() first")
        timeout = self.timeout if timeout is None else timeout
        if self._lab is not None and self._lab.tls == "implicit" and self.tls != "implicit":
            raise TLSMismatchError(
                Hint(
                    f"the lab server {self._lab.name!r} speaks TLS from the first byte (implicit "
                    "TLS, like port 465), so a plain-text client would wait for a greeting that "
                    "never comes. Connect with ",
                    option("tls", "implicit"),
                    ".",
                )
            )
        socket_path = self._socket_path or getattr(self.server, "socket_path", None)
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
        self._event(f"connecting to {self.where}{' with implicit TLS' if self.tls == 'implicit' else ''}")
        connecting_since = time.time()
        try:
            response = await smtp.connect()
        except aiosmtplib.SMTPTimeoutError as error:
            _aiosmtplib.hang_up(smtp)
            if self.tls == "implicit":
                raise await self._tls_failure(error) from None
            raise explaining(
                ClientTimeoutError(
                    Hint(
                        f"no greeting from {self.where} within {timeout:g} s. A server that "
                        "speaks TLS from the first byte stays silent to a plain-text client: try ",
                        option("tls", "implicit"),
                        ". ",
                        self._lab_status(),
                    )
                ),
                error,
            ) from None
        except aiosmtplib.SMTPConnectResponseError as error:
            # A refusing greeting (e.g. 421 when the server is full): record it, then say why.
            _aiosmtplib.hang_up(smtp)
            self.greeting = self._record_reply(aiosmtplib.SMTPResponse(error.code, error.message), "")
            self._event("connection closed by the server after its greeting")
            if error.code != 421:
                raise  # e.g. 554 "no SMTP service here": aiosmtplib's words say it
            raise explaining(
                ServerBusyError(error.code, error.message, self._busy(error, connecting_since)), error
            ) from None
        except aiosmtplib.SMTPConnectError as error:
            if _ssl_error_in(error):
                raise await self._tls_failure(error) from None
            if (
                isinstance(error.__cause__, (ConnectionRefusedError, FileNotFoundError))
                or "refused" in str(error).lower()
            ):
                raise explaining(
                    LabConnectionRefusedError(
                        Hint(f"nothing is listening on {self.where}. ", self._lab_status())
                    ),
                    error,
                ) from None
            if isinstance(error.__cause__, aiosmtplib.SMTPServerDisconnected):
                self._event("connection closed by the server before its greeting")
            raise
        self._smtp = smtp
        self._closing_reply = None
        self._tls_on = self.tls == "implicit"
        self.state = protocol.SessionState(tls=self._tls_on)
        self._in_auth = self._expect_data = self._by_line = False
        _aiosmtplib.record(
            smtp,
            written=self._record_written,
            replied=self._record_response,
            received=self._record_received,
            unsolicited=self._record_unsolicited,
        )
        self._session_address = self.local_address
        from smtplab.render import format_address

        self._event(f"connected from {format_address(self._session_address)}")
        if self.tls == "implicit" and self.record:
            self._event(f"TLS started (implicit): {self._tls_facts()}")
        self.greeting = self._record_reply(response, "")
        if self._wire_observers:  # read inside connect(), before recording began: as its lines
            self._record_received(
                ("\r\n".join(self.greeting.lines) + "\r\n").encode("utf-8", "surrogateescape")
            )
        if self.tls == "starttls" and self.greeting.code == 220:
            try:
                await self.starttls(timeout=timeout)
            except BaseException:
                # Not the connection asked for: hang up now. `async with` never reaches
                # __aexit__ when connecting fails, so nobody else would.
                await self.close()
                raise
        return self._result(self.greeting)

    @property
    def where(self) -> str:
        """Where the client connects: ``host:port``, or the path of a lab server's Unix-domain socket."""
        path = self._socket_path or getattr(self.server, "socket_path", None)
        return path or f"{self.host}:{self.port}"

    def _tls_context(self) -> ssl.SSLContext:
        """The context for TLS, built once per client and reused for every connection."""
        if self.tls_context is None:
            options = self._tls_options
            if self._lab is not None and not options["cafile"]:
                context = self._lab.client_context()  # shared by every client of the lab
            else:
                context = ssl.create_default_context(cafile=options["cafile"])
            if not options["validate_certs"] or options["client_cert"]:
                if self._lab is not None and not options["cafile"]:
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

    async def _tls_failure(self, error: BaseException) -> SmtpLabError:
        """The smtplab error that explains a failed TLS set-up (raise it ``from None``)."""
        from smtplab.diagnose import exception_chain, explain_ssl_error
        from smtplab.tls import created_lab_tls, describe_certificate, trusts_a_lab_ca

        refused = any(isinstance(e, ssl.SSLCertVerificationError) for e in exception_chain(error))
        certificate: CertificateFacts | None = None
        lab_tls = self._lab.lab_tls if self._lab is not None else None
        if refused and lab_tls is not None:
            certificate = lab_tls.server_certificate  # what every lab server presents
        elif refused:
            der = await self._presented_certificate()
            with contextlib.suppress(ValueError):  # not a certificate: no names to quote
                certificate = describe_certificate(der) if der else None
            default = created_lab_tls()
            if der and default is not None and default.issued(der):
                lab_tls = default
        where = self._socket_path or getattr(self.server, "socket_path", None) or self.port
        message = explain_ssl_error(
            error,
            host=self.host,
            port=where,
            expected_mode=self.tls,
            certificate=certificate,
            lab_tls=lab_tls,
            trusts_lab_ca=refused and trusts_a_lab_ca(self._tls_context()),
        )
        failure = TLSCertificateError(message) if refused else TLSMismatchError(message)
        return explaining(failure, error)

    async def _presented_certificate(self) -> bytes | None:
        """The certificate the server presents (DER), read over a second connection.

        A refused handshake leaves nothing of the certificate behind (the ssl module only shows a
        verified one). To name the names it lists, this connection checks nothing: it reads the
        certificate, sends no message and no secret, and hangs up. ``None`` if that fails too.
        """
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # only to read the certificate, never to talk
        socket_path = self._socket_path or getattr(self.server, "socket_path", None)
        der: bytes | None = None
        if self.tls == "implicit":
            # The certificate comes with the handshake, before any greeting: wait for none.
            try:
                if socket_path:
                    opening = asyncio.open_unix_connection(
                        socket_path, ssl=context, server_hostname=self.host
                    )
                else:
                    opening = asyncio.open_connection(
                        self.host, self.port, ssl=context, server_hostname=self.host
                    )
                _, writer = await asyncio.wait_for(opening, self.timeout)
            except (OSError, asyncio.TimeoutError):
                return None
            ssl_object = writer.get_extra_info("ssl_object")
            der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
            writer.transport.abort()
        else:
            smtp = aiosmtplib.SMTP(
                hostname=self.host,
                port=None if socket_path else self.port,
                socket_path=socket_path,
                timeout=self.timeout,
                local_hostname=self.name,
                start_tls=False,
            )
            try:
                await smtp.connect()
                await smtp.starttls(tls_context=context)
                ssl_object = smtp.get_transport_info("ssl_object")
                der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
            except (OSError, aiosmtplib.SMTPException):
                return None
            finally:
                _aiosmtplib.hang_up(smtp)
        if der:
            self._event(
                "the certificate was refused; a second connection, checking nothing and sending "
                "nothing, read the one the server presents, to name its names"
            )
        return der

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
            stripped = self.proxy is not None and self.proxy.strip_starttls
            if stripped and self._lab is not None and self._lab.tls == "starttls":
                # The server offers STARTTLS: starting it "with TLS" would change nothing.
                raise TLSMismatchError(
                    f"{self.where} does not offer STARTTLS: the lab proxy in front of the server "
                    "deleted that line from the EHLO reply (strip_starttls=True, a STARTTLS-"
                    "stripping attack, RFC 3207 §6), and the server behind it does offer STARTTLS. "
                    "Stopping here is right: never fall back to plain text. For TLS, connect to "
                    "the server itself, or through a proxy that does not strip STARTTLS."
                )
            between = "the lab proxy" if self.proxy is not None else "something between you and the server"
            if self._talks_to_a_lab_server():
                turn_on: tuple[str | Fix, ...] = (
                    "Start the lab server with TLS (",
                    start_lab_server("starttls"),
                    ")",
                )
            else:
                turn_on = ("If you run that server, turn STARTTLS on in its configuration",)
            raise TLSMismatchError(
                Hint(
                    f"{self.where} does not offer STARTTLS (its EHLO reply has no STARTTLS "
                    f"line), or {between} removed it (a STARTTLS-stripping attack, RFC 3207 §6): "
                    "never fall back to plain text. ",
                    *turn_on,
                    ", or use ",
                    option("tls", "implicit"),
                    " if it speaks TLS from the first byte.",
                )
            )
        timeout = self.timeout if timeout is None else timeout
        try:
            await self.smtp.starttls(tls_context=self._tls_context(), timeout=timeout)
        except aiosmtplib.SMTPResponseException:
            return self._result(self._last_reply)  # refused: the reply says why
        except (ssl.SSLError, OSError, aiosmtplib.SMTPException) as error:
            if _ssl_error_in(error):
                raise await self._tls_failure(error) from None
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

        early = self._closed_with("AUTH")
        if early is not None:
            return early
        if self.state.state is protocol.State.CONNECTED:
            await self.ehlo(timeout=timeout)
        offered = _aiosmtplib.auth_mechanisms(self.smtp)
        if offered:
            chosen, reason = auth.choose_mechanism(offered, mechanism, tls=self.tls_active)
        elif mechanism is not None:
            chosen, reason = mechanism.upper(), "you asked for it, though the server did not offer AUTH"
        else:
            hint: str | Fix = ""
            if self.smtp.supports_extension("starttls") and not self.tls_active:
                starttls = option("tls", "starttls")
                hint = Fix(
                    " It offers STARTTLS: AUTH usually appears only after it (RFC 4954 §4); connect "
                    f"with {starttls.python} to see it.",
                    f" It offers STARTTLS: AUTH usually appears only after it (RFC 4954 §4); add {starttls.cli}.",
                )
            raise NoCommonMechanismError(
                Hint(
                    f"{self.where} did not offer AUTH in its EHLO reply.",
                    hint,
                    Fix(" To see the server refuse, pass mechanism='PLAIN'.", ""),
                )
            )
        self._event(auth.CHOSEN_EVENT + reason)
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

    def _talks_to_a_lab_server(self) -> bool:
        """Whether the server is a lab server: this client's own, or any that greets as one."""
        from smtplab.server import LAB_IDENT

        greeting = self.greeting.message if self.greeting is not None else ""
        return self._lab is not None or f" {LAB_IDENT} " in f" {greeting} "

    def _lab_status(self) -> Fix:
        """What this kernel knows about the server that did not answer; where to look from a terminal."""
        from smtplab.server import running_servers

        terminal = (
            "Is the server running? smtplab serve prints the address it listens on "
            "(listening on HOST:PORT): pass that with --host and --port, or --unix-socket PATH."
        )
        if self.server is not None and not self.server.running:
            return Fix(
                f"The lab server {self.server.name!r} this client was made for is stopped: call server.start().",
                terminal,
            )
        servers = running_servers()
        owner = next((s for s in servers if s.port == self.port), None)
        if owner is not None and owner.tls == "implicit" and self.tls != "implicit":
            return Fix(
                f"The lab server {owner.name!r} on that port is one: it speaks implicit TLS.",
                terminal,
            )
        if owner is not None:
            return Fix("A lab server in this kernel uses that port; it may be overloaded.", terminal)
        if not servers:
            python = (
                "No lab server is running in this kernel: start one with "
                f"{start_lab_server().python}, or check the host and port."
            )
            return Fix(python, terminal)
        listing = ", ".join(f"{s.name!r} on {s.host}:{s.port}" for s in servers)
        return Fix(f"Lab servers running in this kernel: {listing}.", terminal)

    def _busy(self, error: aiosmtplib.SMTPConnectResponseError, since: float) -> Hint:
        """Why a server answered 421 instead of its greeting (since ``time.time()`` ``since``)."""
        said = f"{error.code} {error.message}".rstrip()
        injected = self._lab is not None and any(
            firing.stage == "connect" and firing.time >= since for firing in self._lab.fault_rules.history
        )
        if injected:
            return Hint(
                f"{self.where} refused the connection ({said}): a fault armed with "
                "server.inject('connect', ...) answered instead of the greeting. The server is "
                "neither full nor closing; server.faults lists what is still armed. 421 is "
                "temporary (RFC 5321 §3.1): a real client would try again later."
            )
        if "too many connections" in error.message.lower():  # the lab's own words when it is full
            limits = self._lab.limits if self._lab is not None else None
            cap = getattr(limits, "max_connections", None)
            size = f" ({cap} here)" if cap else ""
            return Hint(
                f"{self.where} refused the connection ({said}): the lab server already has as "
                f"many sessions open as Limits.max_connections allows{size}. ",
                Fix(
                    "Close clients you are done with (await client.quit()), send over fewer "
                    "connections (send_many(..., connections=4)), or start the server with "
                    "limits=Limits(max_connections=50). send_many() retries this by itself.",
                    "Wait for other clients to finish and try again; or restart smtplab serve "
                    "with fewer clients sending at once.",
                ),
            )
        return Hint(
            f"{self.where} refused the connection ({said}): it is busy or shutting down "
            "(RFC 5321 §3.1). 421 is temporary: try again later."
        )

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

    def __enter__(self) -> Client:
        raise TypeError(
            "smtplab.Client is asynchronous: use `async with smtplab.Client(...) as client:` (in a "
            "notebook cell or a coroutine, with await before each command), or "
            "`with smtplab.SyncClient(...) as client:` for the same methods without await."
        )

    def __exit__(self, *exc_info: object) -> None:  # pragma: no cover - __enter__ always raises
        """Present so that ``with`` reaches :meth:`__enter__` and its explanation."""

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
        if self._wire_observers:
            self._tell_wire("client", data, tls)
        if self._expect_data and self._by_line:  # content from data_line(), then end_data()'s "."
            if data != b".\r\n":  # a content line "." was stuffed to "..": this is the end
                self._by_line_count += 1
                self._by_line_size += len(data)
                return
            self._expect_data = self._by_line = False
            self._data_sent = True
            if self.record:
                self.transcript.message_data(self._by_line_count, self._by_line_size, tls=tls)
            self._last_command = "."
            return
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

    def _record_received(self, data: bytes) -> None:
        """Every read on the connection (from the recording protocol), as the bytes arrived."""
        if self._wire_observers:
            self._tell_wire("server", data, self._tls_on)

    def _tell_wire(self, sender: str, data: bytes, tls: bool) -> None:
        for callback in self._wire_observers:
            try:
                callback(sender, data, tls)
            except Exception as error:  # noqa: BLE001 - an observer must never break the connection
                if len(self.wire_errors) < 100:
                    self.wire_errors.append(error)

    def observe_wire(self, callback: WireObserver) -> WireObserver:
        """Call ``callback(sender, data, tls)`` with the bytes of every write and read, as they cross.

        ``sender`` is ``"client"`` or ``"server"``, ``data`` the exact bytes (CR LF and all; inside
        TLS, the SMTP bytes before encryption), ``tls`` whether the connection is encrypted. It
        runs on the client's event loop; an exception it raises is kept on :attr:`wire_errors`.
        The greeting is read inside :meth:`connect`, before recording starts: it is passed on
        as its lines, each ended by CR LF. Returns the callback (so this works as a decorator).
        """
        if not callable(callback):
            raise TypeError(f"callback must be callable, not {type(callback).__name__}")
        if callback not in self._wire_observers:
            self._wire_observers = (*self._wire_observers, callback)
        return callback

    def unobserve_wire(self, callback: WireObserver) -> None:
        """Stop calling ``callback``; safe for a callback never registered."""
        self._wire_observers = tuple(cb for cb in self._wire_observers if cb != callback)

    def _record_unsolicited(self, data: bytes) -> None:
        """What the server said while no command waited for a reply (on the client's loop)."""
        tls = self._tls_on
        lines = [raw.decode("utf-8", "surrogateescape") for raw in data.split(b"\r\n") if raw.strip()]
        if self.record:
            self.transcript.event("the server replied without a command", tls=tls)
            for line in lines:
                self.transcript.record("server", line, tls)
        parsed = [protocol.parse_reply_line(line) for line in lines]
        complete = [p for p in parsed if p is not None]
        if complete and complete[-1].last and complete[-1].code == 421:
            code = complete[-1].code
            text = "\n".join(line[4:].strip() for line in lines if protocol.reply_code(line) == code)
            self._closing_reply = Reply(code, text)
            self.state.advance("", code)

    def _record_response(self, response: aiosmtplib.SMTPResponse) -> None:
        """Every reply read on the connection (from the recording protocol), in order."""
        self._record_reply(response, self._last_command)

    def _record_reply(self, response: aiosmtplib.SMTPResponse, command: str) -> Reply:
        answers = protocol.answered_verb(command, after_334=self._in_auth)
        tls = self._tls_on
        reply = Reply(response.code, response.message, masked(command, after_334=self._in_auth), answers, tls)
        if self.record:
            if "\n" in response.message:
                for line in reply.lines:
                    self.transcript.record("server", line, tls, answers)
            else:
                self.transcript.record("server", f"{response.code} {response.message}".rstrip(), tls, answers)
        if response.code == 354:
            self._expect_data, self._by_line = True, False
            self._by_line_count = self._by_line_size = 0
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

    def _closed_with(self, command: str) -> Reply | None:
        """The 421 the server sent before closing, given as the reply to the next command.

        RFC 5321 §3.8 lets a server say ``421`` and close at any time. A client that reads its
        replies from a stream (``smtplib``, Postfix) finds it as the reply to its next command;
        here too, whether it arrived before that command or not. Nothing is sent.
        """
        reply, self._closing_reply = self._closing_reply, None
        if reply is None:
            return None
        reply = Reply(reply.code, reply.message, masked(command, after_334=self._in_auth))
        self._event(
            f"{command.split(' ')[0] or 'the command'} not sent: the server said {reply.code} and closed"
        )
        if self._smtp is not None:
            _aiosmtplib.hang_up(self._smtp)
        return self._result(reply)

    async def _command(self, *parts: str, timeout: float | None = None) -> Reply:
        line = " ".join(parts)
        for part in parts:
            check_argument(part, "command argument", after_334=self._in_auth)
        shown = masked(line, after_334=self._in_auth)  # an AUTH answer is never shown
        early = self._closed_with(shown)
        if early is not None:
            return early
        timeout = self.timeout if timeout is None else timeout
        try:
            await self.smtp.execute_command(*(p.encode("utf-8") for p in parts), timeout=timeout)
        except asyncio.CancelledError:
            self._interrupted()
            raise
        except aiosmtplib.SMTPTimeoutError as error:
            self._event("connection closed by the client after a timeout")
            raise explaining(self._timeout_error(shown.split(" ")[0], timeout), error) from None
        except aiosmtplib.SMTPServerDisconnected:
            self._event(f"connection closed by the server: no reply to {shown.split(' ')[0]}")
            raise
        reply = self._last_reply
        verb = line.split(" ", 1)[0].upper()
        if verb in ("EHLO", "HELO") and reply.code == 250:  # also when sent with raw()
            _aiosmtplib.note_hello(self.smtp, verb, aiosmtplib.SMTPResponse(reply.code, reply.message))
        return self._result(reply)

    @staticmethod
    def _timeout_error(command: str, timeout: float) -> ClientTimeoutError:
        return ClientTimeoutError(
            Hint(
                f"{command} waited {timeout:g} s for the server's reply and got none, so the "
                "connection was closed. Is the server busy (a slow handler?), or does it expect TLS "
                "from the first byte (",
                option("tls", "implicit"),
                ")?",
            )
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
        return await self._command("EHLO", name or self.name, timeout=timeout)

    async def helo(self, name: str | None = None, *, timeout: float | None = None) -> Reply:
        """``HELO``: the original greeting, without extensions."""
        return await self._command("HELO", name or self.name, timeout=timeout)

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
        early = self._closed_with("DATA")
        if early is not None:
            return early
        try:
            await _aiosmtplib.send_data(self.smtp, _content_bytes(content), timeout=timeout)
        except asyncio.CancelledError:
            self._interrupted()
            raise
        except aiosmtplib.SMTPTimeoutError as error:
            self._event("connection closed by the client after a timeout")
            _aiosmtplib.hang_up(self.smtp)
            if not self._data_sent:
                raise explaining(self._timeout_error("DATA", timeout), error) from None
            raise explaining(
                ClientTimeoutError(
                    f"the end of DATA waited {timeout:g} s for the server's final reply and got none."
                ),
                error,
            ) from None
        except aiosmtplib.SMTPServerDisconnected:
            unanswered = "the message content" if self._data_sent else "DATA"
            self._event(f"connection closed by the server: no reply to {unanswered}")
            _aiosmtplib.hang_up(self.smtp)
            raise
        return self._result(self._last_reply)

    async def data_line(self, line: str) -> bytes:
        """Send one line of message content, after ``DATA`` was answered ``354``; no reply comes.

        The line gets its CR LF, and a line starting with "." gets one more in front
        (dot-stuffing, RFC 5321 §4.5.2) so the server cannot take it for the end of the message;
        it removes the extra dot again. End the content with :meth:`end_data`. For a whole
        message at once, :meth:`data` does all of this.

        Returns:
            The bytes sent, e.g. ``b"..hidden\r\n"`` for ``".hidden"``.

        Raises:
            SmtpLabError: The server has not answered ``DATA`` with ``354`` (yet).
            ValueError: The line holds a CR or LF: send one line at a time.
        """
        self._check_in_data("data_line()")
        if "\r" in line or "\n" in line:
            raise ValueError(
                f"data_line() sends one line, and {line!r} holds a line break: call it once per line "
                "(the line ending is added for you)"
            )
        data = line.encode("utf-8", "surrogateescape") + b"\r\n"
        if data.startswith(b"."):
            data = b"." + data
        self._by_line = True
        _aiosmtplib.write(self.smtp, data)
        return data

    async def end_data(self, *, timeout: float | None = None) -> Reply:
        """Send the line holding only "." that ends message content, and return the final reply.

        ``250`` means the server took the message; after the reply the session can start
        another one (RFC 5321 §4.1.1.4).
        """
        self._check_in_data("end_data()")
        self._by_line = True
        return await self._command(".", timeout=timeout)

    def _check_in_data(self, what: str) -> None:
        if self.state.state is not protocol.State.DATA or not self._expect_data:
            raise SmtpLabError(
                f"{what} sends message content, which the server takes only after it answered DATA "
                f"with 354; the session is {self.state.state.value}: send DATA first "
                "(await client.raw('DATA')), after RCPT TO"
            )

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

        A message that is not plain ASCII asks for what it needs in ``MAIL FROM``, as RFC 6531
        and RFC 6152 say: ``SMTPUTF8`` when an address or a header is not ASCII, ``BODY=8BITMIME``
        when some byte has the high bit set. A message for a server that does not offer what it
        needs is refused before anything of it is sent, naming the missing extension (an
        :class:`~email.message.EmailMessage` is converted to 7-bit instead when only 8BITMIME is
        missing).

        Stops at the first refusal that makes going on pointless (MAIL refused, every
        recipient refused) and says so in the result; with ``raise_errors=True`` raises instead.

        Raises:
            ExtensionNotOfferedError: The message needs SMTPUTF8 or 8BITMIME and the server's
                EHLO reply did not offer it.
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
        data, options = self._prepare(sender, recipients, content)
        result = SendResult()
        reply = await self.mail(sender, options=options, timeout=timeout)
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
        result.reply = await self.data(data, timeout=timeout)
        result.replies.append(result.reply)
        return result

    def _prepare(
        self, sender: str, recipients: list[str], content: bytes | str | Message
    ) -> tuple[bytes, list[str]]:
        """The message's bytes and the MAIL FROM parameters it needs; refuse what cannot be sent."""
        offered = self.extensions
        envelope = (sender, *recipients)
        data = _content_bytes(content, envelope=envelope)
        if isinstance(content, Message) and not data.isascii() and "8bitmime" not in offered:
            seven_bit = _content_bytes(content, envelope=envelope, seven_bit=True)
            if seven_bit != data:
                data = seven_bit
                self._event(
                    "the server does not offer 8BITMIME (RFC 6152): the message body was converted "
                    "to 7-bit (base64 or quoted-printable) before sending"
                )
        needed = protocol.extensions_needed(sender, recipients, data)
        for extension, why in needed.items():
            if extension.lower() not in offered:
                raise ExtensionNotOfferedError(self._not_offered(extension, why), extension=extension)
        return data, [protocol.mail_parameter(extension) for extension in needed]

    def _not_offered(self, extension: str, why: str) -> Hint:
        heard = "its EHLO reply" if self.state.esmtp else "its reply to HELO (which lists no extensions)"
        rfc = "RFC 6531 §3.4" if extension == "SMTPUTF8" else "RFC 6152 §3"
        if extension == "SMTPUTF8":
            fix = Fix(
                "Send it to a server that offers SMTPUTF8 (a lab server does; Postfix with "
                "smtputf8_enable = yes), or use ASCII addresses. A non-ASCII subject or display "
                "name needs no extension: build the message with email.message.EmailMessage and "
                "send it with send_message(), which writes those as RFC 2047 encoded words.",
                "Send it to a server that offers SMTPUTF8 (smtplab serve does; Postfix with "
                "smtputf8_enable = yes), or use ASCII --from and --to addresses.",
            )
        else:
            fix = Fix(
                "Send it with send_message(): an email.message.EmailMessage is converted to 7-bit "
                "for such a server. Or encode the body yourself (Content-Transfer-Encoding: "
                "quoted-printable or base64).",
                "Send it to a server that offers 8BITMIME.",
            )
        return Hint(
            f"{why}, so this message needs {extension} ({rfc}), and {self.where} did not offer "
            f"it in {heard}: nothing of the message was sent. ",
            fix,
        )

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
        return await self.send(sender, recipients, message, timeout=timeout)  # serialised there

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
        if server_side is None and self.proxy is not None:
            raise LookupError(
                "no server transcript: this client talks to the lab proxy, and the server sees the "
                "proxy's connection, not this client's. The proxy's record of the session is "
                "proxy.connections[-1].transcript."
            )
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
        __tracebackhide__ = True  # IPython leaves this frame out: the learner's own line comes last
        try:
            return aio.run(method(self.client, *args, **kwargs))
        except KeyboardInterrupt:
            # "Interrupt kernel": the command is cancelled on smtplab's loop a moment later, and
            # its reply may still come. Hang up now, before the next cell can send anything on
            # this connection; the next command connects afresh.
            aio.run(self.client._hang_up_after_interrupt())
            raise
        except SmtpLabError as error:
            if error.original is None:
                raise
            # smtplab's explanation stands alone: the message below says what happened and what
            # to change. (What it explains is on error.original, with its own traceback.)
            raise error.with_traceback(None) from None

    call.__doc__ = f"{method.__doc__}\n\n(Sync face of :meth:`Client.{method.__name__}`.)"
    return call


for _name, _method in list(vars(Client).items()):
    if asyncio.iscoroutinefunction(_method) and not _name.startswith("_"):
        setattr(SyncClient, _name, _sync(_method))
del _name, _method
