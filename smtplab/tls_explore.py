"""Trying TLS settings live: each client mode against each server mode, trust and name.

A learner meets TLS through its failures — ``WRONG_VERSION_NUMBER``, ``CERTIFICATE_VERIFY_FAILED``,
a client that waits for ever — and through one success that hides a weakness (a client that
upgrades to TLS only when offered). :class:`TLSGrid` makes each combination something to run
and look at, against private lab servers it starts itself::

    grid = TLSGrid()
    attempt = grid.run(client="starttls", server="implicit")  # a Combination's fields
    print(attempt)  # the outcome, the error and what it means, or the TLS version and cipher
    print(attempt.transcript_text())  # the dialogue, with the cleartext/TLS boundary marked
    grid.stop()

A combination (:class:`Combination`) has five parts:

- the **client mode**: plain text (``None``), STARTTLS required (``"starttls"``), STARTTLS
  if offered (``"if-offered"``: the opportunistic habit of aiosmtplib's and smtplib's scripts,
  built here from ``Client``'s own ``ehlo()`` and ``starttls()``), implicit TLS
  (``"implicit"``);
- the **server mode**, from the one TLS vocabulary (:data:`smtplab.tls.TLS_MODES`);
- the **trust**: the lab CA, the system's CAs, or nothing (``validate_certs=False``);
- the **name** the client connects to and checks the certificate against: ``localhost``,
  ``127.0.0.1``, or a wrong name. A wrong name needs no DNS: the server then presents a
  certificate from the same lab CA issued only for ``mail.example.test``
  (:meth:`~smtplab.tls.LabTLS.issue`) while the client connects to ``localhost`` — to the
  client's name check exactly what dialling a name the certificate does not list looks like;
- whether a STARTTLS-stripping man in the middle (:func:`smtplab.start_proxy`) sits on the path.

Every attempt connects with :class:`smtplab.Client` (``Client(host=…, port=…, tls=…)``, as a
learner would), says hello, logs in as ``alice`` if the server offers AUTH, sends one short
message and says goodbye, and keeps the client's transcript whatever happened.
"""

from __future__ import annotations

import asyncio
import itertools
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, get_args

from smtplab import aio
from smtplab.client import Client
from smtplab.diagnose import exception_chain
from smtplab.errors import (
    ClientTimeoutError,
    LabConnectionRefusedError,
    TLSCertificateError,
    TLSMismatchError,
)
from smtplab.protocol import State
from smtplab.tls import TLS_MODES, CertificateFacts, LabTLS, TLSMode, TLSSummary, check_tls_mode, summarize

if TYPE_CHECKING:
    from smtplab.proxy import LabProxy, ProxyConnection
    from smtplab.server import LabServer
    from smtplab.transcript import Transcript

__all__ = [
    "CLIENT_MODES",
    "NAMES",
    "TRUSTS",
    "WRONG_NAME",
    "Attempt",
    "ChainEntry",
    "ClientMode",
    "Combination",
    "TLSGrid",
]

ClientMode = Literal["starttls", "implicit", "if-offered"] | None
"""A client's way to TLS: the three :data:`~smtplab.tls.TLSMode` values and ``"if-offered"``."""
Trust = Literal["lab-ca", "system", "none"]
Name = Literal["localhost", "127.0.0.1", "wrong-name"]

CLIENT_MODES: tuple[ClientMode, ...] = (None, "starttls", "if-offered", "implicit")
TRUSTS: tuple[Trust, ...] = get_args(Trust)
NAMES: tuple[Name, ...] = get_args(Name)

#: The only name on the certificate of the servers behind the "wrong-name" choice.
WRONG_NAME = "mail.example.test"

#: How each choice reads, in the widget and in every text about an attempt.
CLIENT_LABELS: dict[ClientMode, str] = {
    None: "plain text",
    "starttls": "STARTTLS, required",
    "if-offered": "STARTTLS if offered",
    "implicit": "implicit TLS",
}
SERVER_LABELS: dict[TLSMode, str] = {
    None: "plain text only",
    "starttls": "STARTTLS (like port 587)",
    "implicit": "implicit TLS (like port 465)",
}
TRUST_LABELS: dict[Trust, str] = {
    "lab-ca": "the lab CA",
    "system": "the system's CAs",
    "none": "nothing (validate_certs=False)",
}
NAME_LABELS: dict[Name, str] = {
    "localhost": "localhost",
    "127.0.0.1": "127.0.0.1",
    "wrong-name": f"a wrong name (certificate for {WRONG_NAME})",
}

# What an attempt sends: the lab's fake credentials and a message worth stealing.
USER, PASSWORD = "alice", "wonderland"
SENDER, RECIPIENT = "alice@example.test", "bob@example.test"
MESSAGE = (
    "From: alice@example.test\r\nTo: bob@example.test\r\nSubject: the plan\r\n\r\n"
    "Meet at the old mill at noon.\r\n"
)

# A failure's few words in the grid, by exception type (what it means is the explanation's job).
_FAILURE_WORDS = {
    TLSCertificateError: "certificate refused",
    TLSMismatchError: "TLS mismatch",
    ClientTimeoutError: "no greeting (timed out)",
    LabConnectionRefusedError: "connection refused",
}
_WAIT_FOR_PROXY = 5.0  # seconds for the proxy to record a connection the client has closed


@dataclass(frozen=True)
class Combination:
    """One choice of client mode, server mode, trust, name and path.

    Attributes:
        client: ``None`` (plain text), ``"starttls"`` (STARTTLS, required), ``"if-offered"``
            (STARTTLS only when the EHLO reply offers it) or ``"implicit"``.
        server: ``None``, ``"starttls"`` or ``"implicit"`` (:data:`~smtplab.tls.TLSMode`).
        trust: ``"lab-ca"``, ``"system"`` or ``"none"`` (``validate_certs=False``).
        name: ``"localhost"``, ``"127.0.0.1"`` or ``"wrong-name"``.
        proxy: Whether a STARTTLS-stripping man in the middle sits between client and server.
    """

    client: ClientMode
    server: TLSMode
    trust: Trust = "lab-ca"
    name: Name = "localhost"
    proxy: bool = False

    def __post_init__(self) -> None:
        if self.client not in CLIENT_MODES:
            raise ValueError(
                f"client must be one of {', '.join(map(repr, CLIENT_MODES))}, not {self.client!r}"
            )
        check_tls_mode(self.server, option="server")
        if self.trust not in TRUSTS:
            raise ValueError(f"trust must be one of {', '.join(map(repr, TRUSTS))}, not {self.trust!r}")
        if self.name not in NAMES:
            raise ValueError(f"name must be one of {', '.join(map(repr, NAMES))}, not {self.name!r}")
        if not isinstance(self.proxy, bool):
            raise TypeError(f"proxy must be True or False, not {self.proxy!r}")

    @classmethod
    def every(cls) -> Iterator[Combination]:
        """The whole grid: every client mode × server mode × trust × name × path."""
        for client, server, trust, name, proxy in itertools.product(
            CLIENT_MODES, TLS_MODES, TRUSTS, NAMES, (False, True)
        ):
            yield cls(client, server, trust, name, proxy)

    @property
    def host(self) -> str:
        """The name the client connects to (and checks the certificate against)."""
        return "127.0.0.1" if self.name == "127.0.0.1" else "localhost"

    @property
    def label(self) -> str:
        """The combination in words."""
        path = "through a STARTTLS-stripping man in the middle" if self.proxy else "direct"
        return (
            f"client {CLIENT_LABELS[self.client]} \u2192 server {SERVER_LABELS[self.server]} \u00b7 "
            f"trusting {TRUST_LABELS[self.trust]} \u00b7 name {NAME_LABELS[self.name]} \u00b7 {path}"
        )


@dataclass(frozen=True)
class ChainEntry:
    """One certificate of the chain a client has to accept, and what this client made of it.

    Attributes:
        role: ``"server certificate"`` or ``"issuer (lab CA)"``.
        certificate: What the certificate says.
        note: How it fared with this client: names matched or not, trusted or not, not checked.
    """

    role: str
    certificate: CertificateFacts
    note: str


@dataclass
class Attempt:
    """What happened when one :class:`Combination` ran.

    Attributes:
        combination: What was tried.
        host: The name the client connected to.
        port: The port it connected to (the proxy's, through the man in the middle).
        server_port: The lab server's own port.
        certificate_names: The names on the certificate the server presents (``()`` for a
            plain-text server).
        transcript: The client's record of the dialogue, up to the end or the failure.
        error: The exception that ended it, if any.
        explanation: What happened, in a sentence or two: what the error means and what to
            change, or what the connection gave away.
        tls: The TLS session (version, cipher, certificate) when the connection ended encrypted.
        chain: The server certificate and its issuer, with what this client made of each.
        chain_source: Where the server certificate shown comes from.
        attacker: The man in the middle's record of this connection (through the proxy only).
        logged_in: Whether AUTH succeeded (``None``: the server offered no AUTH here).
        delivered: Whether the server accepted the message.
        code: The Python that makes the same client.
        seconds: How long the attempt took.
    """

    combination: Combination
    host: str
    port: int
    server_port: int
    certificate_names: tuple[str, ...]
    transcript: Transcript
    error: BaseException | None = None
    explanation: str = ""
    tls: TLSSummary | None = None
    chain: tuple[ChainEntry, ...] = ()
    chain_source: str = ""
    attacker: ProxyConnection | None = None
    logged_in: bool | None = None
    delivered: bool = False
    code: str = ""
    seconds: float = 0.0
    time: float = field(default_factory=time.time)

    # -- the outcome ----------------------------------------------------------------------------

    @property
    def outcome(self) -> str:
        """``"failed"``, ``"encrypted"`` (the session ended inside TLS) or ``"plain"``."""
        if self.error is not None:
            return "failed"
        return "encrypted" if self.tls is not None else "plain"

    @property
    def verified(self) -> bool:
        """Encrypted, and the certificate was checked (signed by a trusted CA, for this name)."""
        return self.outcome == "encrypted" and self.combination.trust != "none"

    @property
    def safe(self) -> bool:
        """Nothing readable crossed the wire: encrypted and verified, or stopped before anything."""
        return self.verified or (self.outcome == "failed" and not self.password_in_clear)

    @property
    def password_in_clear(self) -> bool:
        """The client sent AUTH (and with it the password) outside TLS."""
        return any(
            line.sender == "client" and not line.tls and line.text[:4].upper() == "AUTH"
            for line in self.transcript
        )

    @property
    def downgraded(self) -> bool:
        """The man in the middle removed STARTTLS, and a client that would have upgraded did not."""
        return (
            self.combination.client == "if-offered"
            and self.attacker is not None
            and bool(self.attacker.edits)
            and self.outcome == "plain"
        )

    @property
    def stopped_by_stripping(self) -> bool:
        """The man in the middle removed STARTTLS and the client refused to go on without it."""
        return (
            self.attacker is not None
            and bool(self.attacker.edits)
            and isinstance(self.error, TLSMismatchError)
        )

    @property
    def handshake_failed(self) -> bool:
        """A TLS handshake was attempted and failed (the error comes from the ssl module)."""
        return self.error is not None and any(
            isinstance(e, ssl.SSLError) for e in exception_chain(self.error)
        )

    @property
    def tls_from(self) -> int | None:
        """Index in :attr:`transcript` of the first line inside TLS, or ``None``."""
        return next((n for n, line in enumerate(self.transcript) if line.tls), None)

    @property
    def short(self) -> str:
        """A few words for the grid: the outcome first, then what matters about it."""
        if self.error is not None:
            if self.stopped_by_stripping:
                return "stopped: STARTTLS was removed"
            words = next((w for kind, w in _FAILURE_WORDS.items() if isinstance(self.error, kind)), None)
            return f"failed: {words or type(self.error).__name__}"
        if self.tls is not None:
            version = self.tls.version or "TLS"
            return f"encrypted, {version}" + ("" if self.verified else ", NOT verified")
        text = "plain text"
        if self.downgraded:
            text += ", downgraded"
        if self.password_in_clear:
            text += ", password readable"
        return text

    @property
    def headline(self) -> str:
        """One line: the outcome in capitals, then its details."""
        if self.stopped_by_stripping:
            return (
                f"STOPPED SAFELY \u2014 {type(self.error).__name__}: STARTTLS was missing, so the client "
                "went no further"
            )
        if self.error is not None:
            return f"FAILED \u2014 {type(self.error).__name__}"
        if self.tls is not None:
            checked = (
                f"certificate checked against {TRUST_LABELS[self.combination.trust]} for {self.host!r}"
                if self.verified
                else "certificate NOT checked"
            )
            return f"ENCRYPTED \u2014 {self.tls.headline}; {checked}"
        return "PLAIN TEXT \u2014 nothing on this connection was encrypted"

    @property
    def error_below(self) -> bool:
        """Whether :attr:`error_text` comes from a layer below smtplab (and so says something else)."""
        return bool(self.error_text) and self.error_text != f"{type(self.error).__name__}: {self.error}"

    @property
    def error_text(self) -> str:
        """The error in the words of the layer that raised it: OpenSSL's for a TLS failure."""
        if self.error is None:
            return ""
        chain = exception_chain(self.error)
        below = next((e for e in reversed(chain) if isinstance(e, ssl.SSLError)), None)
        if below is None and chain[0].__cause__ is not None and str(chain[0].__cause__):
            below = chain[0].__cause__  # e.g. aiosmtplib's words under smtplab's
        below = below or self.error
        return f"{type(below).__name__}: {below}"

    @property
    def attacker_read(self) -> list[str]:
        """What the man in the middle could read, in words (empty without one)."""
        record = self.attacker
        if record is None:
            return []
        read = []
        if any(line.sender == "client" and line.secret_from is not None for line in record.transcript):
            read.append("the password (an AUTH line in plain text)")
        if record.messages:
            size = sum(len(message) for message in record.messages)
            read.append(f"the whole message ({size} bytes, headers and body)")
        if record.tls_relayed and not (record.ciphertext_from_client or record.ciphertext_from_server):
            # an implicit-TLS server waited for a handshake that a plain client never began
            read.append("nothing: not a byte crossed it either way")
        elif record.tls_relayed:
            read.append(
                f"only ciphertext once TLS began ({record.ciphertext_from_client} bytes from the client, "
                f"{record.ciphertext_from_server} from the server)"
            )
        return read or ["the greeting and the EHLO reply, nothing secret"]

    @property
    def attacker_changed(self) -> list[str]:
        """What the man in the middle changed on the way, in words."""
        if self.attacker is None:
            return []
        return [
            f"{edit.kind} {edit.original!r}" + (f" (sent {edit.relayed!r} instead)" if edit.relayed else "")
            for edit in self.attacker.edits
        ]

    # -- text -------------------------------------------------------------------------------------

    def transcript_text(self, *, reveal_secrets: bool = False) -> str:
        """The client's transcript as text, with the cleartext/TLS boundary marked in words."""
        lines = [
            str(line) if not reveal_secrets else f"{line.marker} {line.text}" for line in self.transcript
        ]
        boundary = self.tls_from
        if boundary is not None:
            lines.insert(boundary, BOUNDARY_TLS_STARTS)
        elif self.handshake_failed:
            lines.append(BOUNDARY_HANDSHAKE_FAILED)
        return "\n".join(lines)

    def __str__(self) -> str:
        parts = [self.combination.label, self.headline]
        if self.error_below:
            parts.append(f"  error: {self.error_text}")
        if self.explanation:
            parts.append(f"  what it means: {self.explanation}")
        if self.attacker is not None:
            parts.append(f"  the man in the middle read: {'; '.join(self.attacker_read)}")
            if self.attacker_changed:
                parts.append(f"  the man in the middle changed: {'; '.join(self.attacker_changed)}")
        return "\n".join(parts)

    def __repr__(self) -> str:
        return f"<Attempt {self.short} \u2014 {self.combination.label}>"


BOUNDARY_TLS_STARTS = "==== TLS starts here: every line below is encrypted ===="
BOUNDARY_HANDSHAKE_FAILED = "==== the TLS handshake failed here: nothing below this point was sent ===="


class TLSGrid:
    """Private lab servers for every server mode, and a record of every combination tried.

    Servers start on first use, each with a name of its own, so a learner's own ``"lab"``
    server is never touched; :meth:`stop` stops them, and so does :func:`smtplab.stop_all`. The
    next run starts them again. The man in the middle is a proxy started for one attempt and
    stopped after it.

    Args:
        lab_tls: The lab CA and certificate (default: the process-wide ``default_lab_tls()``,
            the one every lab server and ``Client(server)`` use). The wrong-name servers present
            a second certificate from its CA, for :data:`WRONG_NAME` only.
        auth_in_clear: Let the servers take AUTH in plain text (``auth_require_tls=False``),
            as a badly configured server would, so that a stripping attack has a password to
            steal. Off by default: AUTH is then offered only inside TLS.
        timeout: Seconds each reply may take. A plain-text client waits this long for a
            greeting an implicit-TLS server never sends.
        name: The start of the servers' and proxies' names.

    Attributes:
        attempts: Every attempt so far, oldest first.
    """

    _numbers = itertools.count(1)

    def __init__(
        self,
        *,
        lab_tls: LabTLS | None = None,
        auth_in_clear: bool = False,
        timeout: float = 2.0,
        name: str = "tls-explorer",
    ) -> None:
        if timeout <= 0:
            raise ValueError(f"timeout must be a positive number of seconds, not {timeout!r}")
        self._lab_tls = lab_tls
        self._custom_lab = lab_tls is not None
        self.auth_in_clear = bool(auth_in_clear)
        self.timeout = timeout
        self.name = f"{name}-{next(self._numbers)}"
        self.attempts: list[Attempt] = []
        self._wrong_lab: LabTLS | None = None
        self._servers: dict[tuple[TLSMode, bool], LabServer] = {}
        self._proxy_numbers = itertools.count(1)
        self._contexts: dict[Trust, ssl.SSLContext] = {}
        self._lock = threading.RLock()  # servers and contexts

    @property
    def lab_tls(self) -> LabTLS:
        """The lab CA and server certificate the servers use (created on first use)."""
        if self._lab_tls is None:
            from smtplab.tls import default_lab_tls

            self._lab_tls = default_lab_tls()
        return self._lab_tls

    @property
    def wrong_name_tls(self) -> LabTLS:
        """The same lab CA, with a server certificate for :data:`WRONG_NAME` only."""
        if self._wrong_lab is None:
            self._wrong_lab = self.lab_tls.issue(hosts=WRONG_NAME)
        return self._wrong_lab

    @property
    def servers(self) -> list[LabServer]:
        """The lab servers started so far."""
        return list(self._servers.values())

    @property
    def running(self) -> bool:
        """Whether any of its servers is running."""
        return any(server.running for server in self._servers.values())

    # -- servers --------------------------------------------------------------------------------

    def server(self, mode: TLSMode, *, wrong_name: bool = False) -> LabServer:
        """The lab server for ``mode`` (started if needed); ``wrong_name``: the one for another name."""
        check_tls_mode(mode, option="mode")
        key = (mode, wrong_name and mode is not None)
        with self._lock:
            server = self._servers.get(key)
            if server is None:
                from smtplab.server import start_server

                options: dict[str, Any] = {
                    "name": f"{self.name}-{mode or 'plain'}{'-wrong-name' if key[1] else ''}"
                }
                if mode is not None:
                    options.update(tls=mode, lab_tls=self.wrong_name_tls if key[1] else self.lab_tls)
                if mode is not None or self.auth_in_clear:
                    # PLAIN and LOGIN only, as most submission servers: a client in plain text would
                    # otherwise choose CRAM-MD5, which does not send the password itself.
                    options.update(auth={USER: PASSWORD}, auth_mechanisms=("PLAIN", "LOGIN"))
                if self.auth_in_clear:
                    options["auth_require_tls"] = False
                server = start_server(**options)
                self._servers[key] = server
            elif not server.running:
                server.start()
            return server

    def proxy(self, mode: TLSMode, *, wrong_name: bool = False) -> LabProxy:
        """A new man in the middle in front of :meth:`server`, for one attempt (stop it after).

        It strips STARTTLS; in front of an implicit-TLS server, which has no STARTTLS to strip,
        it can only relay the ciphertext. One proxy per attempt keeps each record to itself,
        so attempts may run at once.
        """
        from smtplab.proxy import start_proxy

        server = self.server(mode, wrong_name=wrong_name)
        with self._lock:
            number = next(self._proxy_numbers)
        return start_proxy(server, strip_starttls=mode != "implicit", name=f"{server.name}-proxy-{number}")

    def stop(self) -> None:
        """Stop every server it started (the attempts stay). Safe to call twice."""
        with self._lock:
            for server in self._servers.values():
                server.stop()

    def __enter__(self) -> TLSGrid:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- running ----------------------------------------------------------------------------------

    def run(
        self,
        client: ClientMode | Combination,
        server: TLSMode = None,
        *,
        trust: Trust = "lab-ca",
        name: Name = "localhost",
        proxy: bool = False,
    ) -> Attempt:
        """Run one combination now and return what happened (also kept in :attr:`attempts`).

        Works in a script and inside Jupyter alike (on smtplab's own event loop); ``await``
        :meth:`attempt` instead from async code.

        Args:
            client: The client mode, or a whole :class:`Combination`.
            server: The server mode.
            trust: What the client trusts.
            name: The name the client connects to.
            proxy: Through a STARTTLS-stripping man in the middle.
        """
        combination = (
            client if isinstance(client, Combination) else Combination(client, server, trust, name, proxy)
        )
        return aio.run(self.attempt(combination), timeout=6 * self.timeout + 30)

    async def attempt(self, combination: Combination) -> Attempt:
        """Run ``combination`` (async); see :meth:`run`."""
        wrong = combination.name == "wrong-name"
        server = self.server(combination.server, wrong_name=wrong)
        proxy = self.proxy(combination.server, wrong_name=wrong) if combination.proxy else None
        try:
            return await self._attempt(combination, server, proxy)
        finally:
            if proxy is not None:
                proxy.stop()

    async def _attempt(self, combination: Combination, server: LabServer, proxy: LabProxy | None) -> Attempt:
        port = proxy.port if proxy is not None else server.port
        client = Client(
            host=combination.host,
            port=port,
            tls=None if combination.client == "if-offered" else combination.client,
            timeout=self.timeout,
            **self._trust_options(combination.trust),
        )
        presented = server.lab_tls.server_certificate if server.tls else None
        attempt = Attempt(
            combination=combination,
            host=combination.host,
            port=port,
            server_port=server.port,
            certificate_names=presented.san if presented else (),
            transcript=client.transcript,
            code=self._code(combination, port),
        )
        started = time.perf_counter()
        der: bytes | None = None
        try:
            await client.connect()
            if combination.client == "if-offered":
                await client.ehlo()
                if "starttls" in client.extensions:
                    await client.starttls()
            if client.tls_active:
                attempt.tls, der = _tls_facts(client)
            if client.state.state is State.CONNECTED:
                await client.ehlo()
            if "auth" in client.extensions:
                attempt.logged_in = (await client.login(USER, PASSWORD)).code == 235
            attempt.delivered = (await client.send(SENDER, RECIPIENT, MESSAGE)).ok
            await client.quit()
        except Exception as error:  # noqa: BLE001 - every failure is the outcome to show
            attempt.error = error
            attempt.tls = None
        finally:
            await client.close()
        attempt.seconds = time.perf_counter() - started
        if proxy is not None:
            attempt.attacker = await asyncio.to_thread(_connection, proxy)
        attempt.chain, attempt.chain_source = self._chain(attempt, der, presented)
        attempt.explanation = self._explain(attempt)
        self.attempts.append(attempt)
        return attempt

    def latest(self, combination: Combination) -> Attempt | None:
        """The newest attempt of ``combination``, or ``None`` if it was never tried."""
        return next((a for a in reversed(self.attempts) if a.combination == combination), None)

    def tried(self) -> list[Combination]:
        """Every combination tried so far, once each, in the order first tried."""
        return list(dict.fromkeys(a.combination for a in self.attempts))

    def table(
        self, *, trust: Trust = "lab-ca", name: Name = "localhost", proxy: bool = False
    ) -> dict[tuple[ClientMode, TLSMode], Attempt | None]:
        """The newest attempt for each (client mode, server mode) with this trust, name and path."""
        return {
            (client, server): self.latest(Combination(client, server, trust, name, proxy))
            for client in CLIENT_MODES
            for server in TLS_MODES
        }

    # -- helpers ----------------------------------------------------------------------------------

    def _trust_options(self, trust: Trust) -> dict[str, Any]:
        if trust == "lab-ca":
            return {"tls_context": self.lab_tls.client_context()}
        with self._lock:  # built once: a system CA load costs tens of milliseconds
            context = self._contexts.get(trust)
            if context is None:
                context = ssl.create_default_context()
                if trust == "none":  # what Client(validate_certs=False) builds
                    context.check_hostname = False
                    context.verify_mode = ssl.CERT_NONE
                self._contexts[trust] = context
        return {"tls_context": context}

    def _code(self, combination: Combination, port: int) -> str:
        lab = "lab_tls" if self._custom_lab else "smtplab.tls.default_lab_tls()"
        trust = {
            "lab-ca": f", tls_context={lab}.client_context()",
            "system": "",  # Client(host=..., port=...) checks against the system's CAs by default
            "none": ", validate_certs=False",
        }[combination.trust]
        mode = None if combination.client == "if-offered" else combination.client
        code = f"client = smtplab.Client(host={combination.host!r}, port={port}, tls={mode!r}{trust})"
        if combination.client == "if-offered":
            code += (
                "\nawait client.connect()\nawait client.ehlo()\n"
                'if "starttls" in client.extensions:  # upgrade only when offered\n'
                "    await client.starttls()"
            )
        return code

    def _chain(
        self, attempt: Attempt, der: bytes | None, presented: CertificateFacts | None
    ) -> tuple[tuple[ChainEntry, ...], str]:
        from smtplab.tls import describe_certificate

        if der is not None:
            leaf, source = describe_certificate(der), "presented by the server on this connection"
        elif presented is not None and isinstance(attempt.error, TLSCertificateError):
            leaf = presented
            source = (
                "the certificate this lab server presents: the client refused it during the handshake, "
                "so it kept no copy"
            )
        else:
            return (), ""
        combination = attempt.combination
        if combination.trust == "none":
            names_note = f"not compared with {attempt.host!r}: validate_certs=False checks no name"
            issuer_note = "never looked at: validate_certs=False accepts a certificate signed by anyone"
        else:
            listed = attempt.host in leaf.san
            names_note = f"you connected to {attempt.host!r}: {'listed' if listed else 'NOT listed'}"
            issuer_note = (
                "in the client's trust store (the lab CA's client context)"
                if combination.trust == "lab-ca"
                else "NOT in the system's trust store: this CA exists only inside this lab"
            )
        return (
            ChainEntry("server certificate", leaf, names_note),
            ChainEntry("issuer (lab CA)", self.lab_tls.ca_certificate, issuer_note),
        ), source

    def _explain(self, attempt: Attempt) -> str:
        combination, error = attempt.combination, attempt.error
        if error is not None:
            return str(error)  # smtplab's errors say what went wrong and what to change
        stolen = (
            " The man in the middle read " + "; ".join(attempt.attacker_read) + "."
            if attempt.attacker
            else ""
        )
        if attempt.outcome == "encrypted":
            if not attempt.verified:
                return (
                    "Encrypted, but to whom? With validate_certs=False the client checked neither the "
                    "signature nor the name: a man in the middle presenting a certificate of its own "
                    "would have been accepted just the same, and would have read everything."
                )
            return (
                f"The client checked that the certificate was signed by a CA it trusts and names "
                f"{attempt.host!r}, so only the real server could finish the handshake; everything after "
                f"it travelled encrypted.{stolen}"
            )
        if attempt.downgraded:
            return (
                "The server offered STARTTLS, but the man in the middle deleted that line from the EHLO "
                "reply, and this client upgrades only when offered: it carried on in plain text without "
                f"a word.{stolen} Require TLS (tls='starttls') to fail closed instead."
            )
        if combination.client == "if-offered":
            return (
                "The server offered no STARTTLS, so this client stayed in plain text without a word — it "
                f"cannot tell such a server from one whose offer was stripped on the way.{stolen}"
            )
        leak = " — the password included" if attempt.password_in_clear else ""
        return f"No TLS: everything on this connection could be read by anyone on the path{leak}.{stolen}"


def _tls_facts(client: Client) -> tuple[TLSSummary | None, bytes | None]:
    """The TLS session of a connected client, and the certificate the server presented (DER)."""
    smtp = client.smtp
    ssl_object = smtp.get_transport_info("ssl_object")
    der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    return summarize(smtp), der


def _connection(proxy: LabProxy) -> ProxyConnection | None:
    """The proxy's record of its one connection, once the connection has closed."""
    try:
        return proxy.wait_for(1, timeout=_WAIT_FOR_PROXY)[0]
    except TimeoutError:
        return None
