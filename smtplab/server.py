"""The lab server: an aiosmtpd ``Controller`` in a background thread, safe for a classroom.

``start_server()`` returns a running :class:`LabServer` — ready to answer, on ``127.0.0.1``, on a
port the operating system picked — that captures every message into ``server.mailbox`` and
records each SMTP session in ``server.transcripts``.

Stock aiosmtpd needs some care for this (aiosmtpd 1.4.6): its ``Controller`` binds ``::1`` on
port 8025 unless told otherwise, cannot take ``port=0`` (aiosmtpd issue #388), waits out its
whole ``ready_timeout`` when the port is taken, and opens a self-test connection at every start
(with implicit TLS that costs a system CA load and a handshake). smtplab binds the listening
socket itself first — so a taken port fails at once and port 0 just works — then hands that
socket to the lab's Controller (:mod:`smtplab._aiosmtpd`, the one module that knows aiosmtpd's
insides), whose sessions report back through plain callbacks.
"""

from __future__ import annotations

import concurrent.futures
import errno
import inspect
import logging
import os
import socket
import stat
import threading
import warnings
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from smtplab import hints
from smtplab._lifecycle import Registry, is_loopback, listen
from smtplab._observers import Observers
from smtplab.errors import (
    AuthWithoutTLSWarning,
    HandlerWarning,
    PortInUseError,
    RemoteBindWarning,
    ReplacedServerWarning,
    ServerNotRunningError,
    ServerStartError,
    SharedHostWarning,
    SmtpLabError,
)
from smtplab.handlers import (
    CaptureHandler,
    Directory,
    HandlerError,
    LabHandler,
    check_handler,
    describe_failure,
)
from smtplab.limits import SMTP_KNOBS, Limits
from smtplab.mailbox import Mailbox
from smtplab.transcript import Transcript

if TYPE_CHECKING:
    import ssl

    from smtplab._aiosmtpd import LabController
    from smtplab.auth import LabAuthenticator
    from smtplab.faults import Fault, FaultRules
    from smtplab.tls import LabTLS, TLSMode

T = TypeVar("T")

__all__ = [
    "LabServer",
    "running_servers",
    "start_server",
    "stop_all",
]

log = logging.getLogger("smtplab")

#: The name the server gives in its banner and EHLO reply. ``.test`` is reserved for testing
#: (RFC 2606 §2), and a fixed name spares a ``getfqdn()`` DNS lookup per connection.
DEFAULT_HOSTNAME = "smtplab.test"

#: The AUTH mechanisms a lab server with ``auth=`` offers unless told otherwise: aiosmtpd's PLAIN
#: and LOGIN, and CRAM-MD5 (RFC 2195) from :mod:`smtplab.auth`.
AUTH_MECHANISMS = ("PLAIN", "LOGIN", "CRAM-MD5")

#: Server sessions whose transcripts are kept (oldest forgotten first).
TRANSCRIPTS_KEPT = 1000


# -- the learner's side ------------------------------------------------------------------------

_servers: Registry[LabServer] = Registry(
    "lab server", replaced=ReplacedServerWarning, example="start_server(name='lab2')"
)


def running_servers() -> list[LabServer]:
    """Every lab server running in this process (this kernel), oldest first."""
    return _servers.running()


def stop_all() -> int:
    """Stop every lab server and lab proxy running in this process; returns how many were stopped.

    A notebook's clean-up needs only this call (``smtplab.stop_all_proxies()`` stops the proxies
    alone). Also runs at interpreter exit (kernel shutdown or restart).
    """
    from smtplab.proxy import stop_all_proxies  # the proxy module imports this one

    return stop_all_proxies() + _servers.stop_all()  # proxies first: they relay to servers


def holder(port: int) -> str | None:
    """Which lab server or lab proxy of this kernel listens on ``port`` (for a taken port's message)."""
    from smtplab.proxy import _proxies

    return _servers.holder(port) or _proxies.holder(port)


class LabServer:
    """A lab SMTP server running in a background thread (create it with :func:`start_server`).

    ``LabServer(...)`` takes the options of :func:`start_server` and checks them without
    starting; :meth:`start` opens the socket.

    Attributes:
        mailbox: Every captured message (:class:`~smtplab.mailbox.Mailbox`); kept across
            restarts.
        limits: The :class:`~smtplab.limits.Limits` the server enforces.
        errors: Mistakes in the learner's handler hooks, and any unexpected error in a session
            (hook ``"the SMTP session"``), as :class:`~smtplab.handlers.HandlerError`, newest last.
        name: The server's name in :func:`running_servers`; starting another server with the
            same name stops this one once the new one listens (a start that fails leaves it running).
        observer_errors: Exceptions raised by observers (:meth:`observe`), newest last.
        extensions: Each EHLO extension the server can offer, switched on (``True``) or off
            (see ``start_server(extensions=...)``).
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        handler: object | None = None,
        name: str = "lab",
        hostname: str = DEFAULT_HOSTNAME,
        maildir: str | os.PathLike[str] | None = None,
        mailbox: Mailbox | None = None,
        tls: TLSMode = None,
        require_tls: bool = False,
        auth: Mapping[str, str] | LabAuthenticator | None = None,
        auth_mechanisms: tuple[str, ...] = AUTH_MECHANISMS,
        auth_required: bool = False,
        auth_require_tls: bool = True,
        lab_tls: LabTLS | None = None,
        limits: Limits | Mapping[str, Any] | None = None,
        unix_socket: str | os.PathLike[str] | bool = False,
        mailboxes: Iterable[str] = (),
        lists: Mapping[str, Iterable[str]] | None = None,
        reply_delay: float = 0.0,
        extensions: Mapping[str, bool] | None = None,
        allow_remote: bool = False,
        ready_timeout: float = 5.0,
        **smtp_options: Any,
    ) -> None:
        options = dict(smtp_options)
        _check_options(options)
        # aiosmtpd's own keywords, given to it only when they differ from its defaults.
        if auth_required:
            options["auth_required"] = True
        if not auth_require_tls:
            options["auth_require_tls"] = False
        _check_tls_options(tls, require_tls, options)
        self.limits = _limits(limits, options)
        if not isinstance(port, int) or not 0 <= port <= 65535:
            raise ValueError(f"port must be an int from 0 to 65535 (0: any free port), not {port!r}")
        if not is_loopback(host):
            if not allow_remote:
                raise ValueError(
                    f"the host {host!r} is not a loopback address, so other machines could reach the "
                    "lab server. Use the default host='127.0.0.1', or pass allow_remote=True if "
                    "you really mean to expose it (e.g. in a classroom container)."
                )
            warnings.warn(
                f"the lab server listens on {host!r}, reachable beyond this machine; it accepts "
                "mail from anyone who can connect.",
                RemoteBindWarning,
                stacklevel=3,
            )
        if unix_socket:
            if not hasattr(socket, "AF_UNIX"):
                raise ValueError("unix_socket needs Unix-domain sockets, which this system lacks")
            if port != 0 or allow_remote:
                raise ValueError("unix_socket= replaces host and port: give one or the other")
        elif os.environ.get("JUPYTERHUB_USER") and not _in_a_pod():
            _hint_shared_host(os.environ["JUPYTERHUB_USER"])
        for problem in check_handler(handler) if handler is not None else ():
            warnings.warn(problem, HandlerWarning, stacklevel=3)
        self.name = name
        self.host = host
        self._requested_port = port
        self._port: int | None = None
        self.unix_socket = unix_socket
        self._socket_path: str | None = None
        self._socket_dir: str | None = None  # a directory smtplab made for the socket
        self.hostname = hostname
        self.ready_timeout = ready_timeout
        if mailbox is None:
            mailbox = Mailbox(max_messages=self.limits.max_messages, max_bytes=self.limits.max_mailbox_bytes)
        self.mailbox = mailbox
        self.capture = CaptureHandler(self.mailbox, maildir=maildir)
        self.handler = handler
        self.directory = Directory(mailboxes, lists)
        if reply_delay < 0:
            raise ValueError(f"reply_delay must be zero or more seconds, not {reply_delay!r}")
        self.reply_delay = reply_delay
        self.extensions = _checked_extensions(extensions, tls=tls, auth=auth, options=options)
        self.tls = tls
        self.require_tls = require_tls
        self._lab_tls = lab_tls
        self.auth = _checked_auth(auth)
        self.auth_mechanisms = _checked_mechanisms(auth_mechanisms, self.auth, options)
        if self.auth is not None and tls is None and auth_require_tls:
            warnings.warn(
                "this lab server takes AUTH but has no TLS, and AUTH in plain text gets 538 5.7.11 "
                "Encryption required (the EHLO reply does not even offer AUTH): passwords are not "
                "sent unencrypted. Start it with tls='starttls' (or tls='implicit'), or, for a "
                "lesson about passwords on the wire, pass auth_require_tls=False.",
                AuthWithoutTLSWarning,
                stacklevel=3,
            )
        self.errors: list[HandlerError] = []
        self._options = options
        self._transcripts: deque[Transcript] = deque(maxlen=TRANSCRIPTS_KEPT)
        self._controller: LabController | None = None
        self._lock = threading.RLock()
        self.observer_errors: list[Exception] = []
        self._observers: Observers[Callable[[LabServer], object]] = Observers(
            "a lab server", errors=self.observer_errors
        )
        self._fault_rules: FaultRules | None = None
        self._pending: set[concurrent.futures.Future[Any]] = set()

    # -- facts ----------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The port the server listens on (the one the OS picked when started with port 0)."""
        return self._port if self._port is not None else self._requested_port

    @property
    def address(self) -> tuple[str, int] | str:
        """``(host, port)``, ready for ``smtplib.SMTP(*server.address)``; a Unix socket's path."""
        if self.unix_socket:
            return self.socket_path or ""
        return self.host, self.port

    @property
    def socket_path(self) -> str | None:
        """The Unix-domain socket the server listens on (``unix_socket=``), or ``None``.

        Only this user can connect to it: it lives in a directory of mode 0700.
        ``smtplab.Client(server)`` finds it by itself.
        """
        return self._socket_path

    @property
    def running(self) -> bool:
        """Whether the server is accepting connections."""
        return self._controller is not None

    @property
    def transcripts(self) -> list[Transcript]:
        """The server's record of each SMTP session, oldest first (the last 1000 are kept)."""
        return list(self._transcripts)

    @property
    def maildir(self) -> Any:
        """The stdlib :class:`mailbox.Maildir` messages are also written to, or ``None``."""
        return self.capture.maildir

    @property
    def lab_tls(self) -> LabTLS:
        """The lab's certificate authority and certificates (created on first use)."""
        if self._lab_tls is None:
            from smtplab.tls import default_lab_tls

            self._lab_tls = default_lab_tls()
        return self._lab_tls

    def client_context(self) -> ssl.SSLContext:
        """An SSL context that trusts this server's certificate (the lab CA), for any client."""
        return self.lab_tls.client_context()

    def transcript_for(self, local_address: tuple[Any, ...]) -> Transcript | None:
        """The server's transcript of the session whose client used ``local_address``."""
        for transcript in reversed(self._transcripts):
            if transcript.peer is not None and tuple(transcript.peer[:2]) == tuple(local_address[:2]):
                return transcript
        return None

    def __repr__(self) -> str:
        from smtplab.render import format_address

        state = f"running on {format_address(self.address)}" if self.running else "stopped"
        extras = "".join(
            f", {extra}" for extra in (self.tls and f"tls={self.tls}", self.auth and "auth") if extra
        )
        return f"<LabServer {self.name!r} {state}{extras}, {len(self.mailbox)} message(s)>"

    # -- observers -------------------------------------------------------------------------

    def observe(self, callback: Callable[[LabServer], object]) -> Callable[[LabServer], object]:
        """Call ``callback(server)`` after each start and each stop; returns it (a decorator too).

        For views of the server (``ServerPanel``): read ``server.running`` in the callback. It
        runs on the thread that started or stopped the server, after the change; an exception
        in it is kept in :attr:`observer_errors`, never raised into ``start()`` or ``stop()``.
        """
        return self._observers.add(callback)

    def unobserve(self, callback: Callable[[LabServer], object]) -> None:
        """Stop calling ``callback``."""
        self._observers.remove(callback)

    def _tell_observers(self) -> None:
        self._observers.notify(self)

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> LabServer:
        """Start listening; returns once the server answers. Does nothing if already running.

        Raises:
            PortInUseError: An explicit port is taken (at once, not after a timeout).
            ServerStartError: The server could not start for another reason.
        """
        with self._lock:
            if self.running:
                return self
            succession = _servers.succession(self)
            sock: socket.socket | None = None
            controller: LabController | None = None
            try:
                options = self._smtp_options()  # builds TLS contexts before any socket exists
                sock = succession.listen(self._listen, holds=self._holds)
                controller = self._controller_for(sock, options)
                controller.start()
            except BaseException as error:
                if controller is not None:
                    controller.stop(no_assert=True)  # closes the socket too
                elif sock is not None:
                    sock.close()
                if isinstance(error, SmtpLabError) or not isinstance(error, Exception):
                    raise succession.failed(error)  # noqa: B904 - the error itself, saying more
                failure = ServerStartError(f"the lab server could not start: {error}")
                raise succession.failed(failure) from error
            if not self.unix_socket:
                self._port = sock.getsockname()[1]
            self._controller = controller
            succession.done(stacklevel=3)
            log.info("lab server %r listening on %s", self.name, self.address)
        self._tell_observers()
        return self

    def _listen(self) -> socket.socket:
        if self.unix_socket:
            return _bind_unix(self._unix_path())
        return listen(self.host, self._port or self._requested_port, what="the lab server", owner=holder)

    def _holds(self, other: LabServer) -> bool:
        """Whether ``other`` listens where this server is about to (the same port or socket)."""
        if self.unix_socket:
            return other.socket_path is not None and other.socket_path == self._unix_path()
        port = self._port or self._requested_port
        return port != 0 and not other.unix_socket and other.port == port

    def _controller_for(self, sock: socket.socket, options: dict[str, Any]) -> LabController:
        handler = LabHandler(
            self.capture,
            self.handler,
            report=self._report,
            directory=self.directory,
            reply_delay=self.reply_delay,
        )
        if self.auth is not None and "CRAM-MD5" in self.auth_mechanisms:
            from smtplab.auth import auth_cram_md5

            # aiosmtpd has PLAIN and LOGIN built in; CRAM-MD5 (RFC 2195) comes from us, named
            # by its @auth_mechanism decorator.
            handler.auth_cram_md5 = auth_cram_md5  # type: ignore[attr-defined]
        bound = sock.getsockname()
        where = bound if isinstance(bound, str) else bound[1]
        from smtplab._aiosmtpd import AIOSMTPD_VERSION, Callbacks, LabController

        return LabController(
            handler,
            sock,
            limits=self.limits,
            callbacks=Callbacks(
                opened=self._session_opened,
                handler_error=self._report,
                before_reply=self.fault_rules.before_reply,
            ),
            name=f"smtplab-server-{where}",
            server_hostname=self.hostname,
            ident=f"{LAB_IDENT} (aiosmtpd {AIOSMTPD_VERSION})",
            ready_timeout=self.ready_timeout,
            **options,
        )

    def _smtp_options(self) -> dict[str, Any]:
        options = dict(self._options)
        if self.tls == "implicit":
            options["ssl_context"] = self.lab_tls.server_context()
        elif self.tls == "starttls":
            options["tls_context"] = self.lab_tls.server_context()
            options["require_starttls"] = self.require_tls
        if self.auth is not None:
            options["authenticator"] = self.auth
            left_out = [name for name in AUTH_MECHANISMS if name not in self.auth_mechanisms]
            if left_out:
                options["auth_exclude_mechanism"] = left_out
        if not self.extensions["SMTPUTF8"]:
            options["enable_SMTPUTF8"] = False
        options["switched_off"] = frozenset(name for name, on in self.extensions.items() if not on)
        return options

    def stop(self) -> None:
        """Stop the server and close every session. Safe to call twice; the mailbox stays."""
        with self._lock:
            controller, self._controller = self._controller, None
            if controller is None:
                return
            _servers.discard(self)
            controller.stop()
            for future in list(self._pending):  # what call_in_loop() scheduled never runs now
                future.cancel()
            self.mailbox.close()
            if self._socket_path is not None:
                _remove_socket(self._socket_path, self._socket_dir)
        self._tell_observers()

    def _unix_path(self) -> str:
        """Where the Unix-domain socket goes: kept across restarts."""
        if self._socket_path is None:
            if self.unix_socket is True:
                import tempfile

                self._socket_dir = tempfile.mkdtemp(prefix="smtplab-")  # mode 0700, unique
                self._socket_path = os.path.join(self._socket_dir, "smtp.sock")
            else:
                self._socket_path = os.path.abspath(os.path.expanduser(os.fspath(self.unix_socket)))  # type: ignore[arg-type]
        return self._socket_path

    def restart(self) -> LabServer:
        """Stop and start again on the same port, keeping the mailbox and transcripts."""
        with self._lock:
            self.stop()
            return self.start()

    def __enter__(self) -> LabServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- faults and the server's loop -------------------------------------------------------

    @property
    def fault_rules(self) -> FaultRules:
        """The :class:`~smtplab.faults.FaultRules` this server consults before each reply."""
        if self._fault_rules is None:
            from smtplab.faults import FaultRules  # imports aiosmtpd, as starting does

            self._fault_rules = FaultRules()
        return self._fault_rules

    def inject(
        self,
        stage: str,
        *,
        reply: str | int | None = None,
        disconnect: bool = False,
        delay: float = 0.0,
        times: int | None = 1,
        probability: float = 1.0,
        seed: int | None = None,
    ) -> Fault:
        """Make the server fail on purpose at ``stage``, the next time(s) it comes.

        Example: ``server.inject("RCPT", reply="550 5.1.1 No such user here")`` refuses the next
        ``RCPT TO``. Faults stay armed across restarts; the server's transcript marks each reply
        a fault gave (see :mod:`smtplab.faults`).

        Args:
            stage: Where: ``"connect"`` (instead of the greeting), ``"EHLO"``, ``"MAIL"``,
                ``"RCPT"``, ``"DATA"``, ``"end of data"`` (the verdict after the content: nothing
                is stored) or ``"AUTH"``.
            reply: The reply to give instead of the usual one: a 4xx or 5xx line such as
                ``"451 4.3.0 Try again later"``, or only its code (``451``).
            disconnect: Hang up instead of replying.
            delay: Seconds to hold the reply back first (other sessions go on meanwhile).
            times: How many times it fires; ``None``: every time, until cancelled.
            probability: Fire only this often (0 to 1), drawn from a generator seeded by ``seed``.
            seed: The seed, for the same run every time (one is drawn and kept on the fault if omitted).

        Returns:
            The :class:`~smtplab.faults.Fault`: ``.cancel()`` it, read ``.fired``; a ``with`` block
            cancels it at its end.

        Raises:
            ValueError: An unknown stage, a reply that is not a refusal, or another value the
                fault cannot take; the message lists the valid ones.
        """
        return self.fault_rules.add(
            stage,
            reply=reply,
            disconnect=disconnect,
            delay=delay,
            times=times,
            probability=probability,
            seed=seed,
        )

    @property
    def faults(self) -> list[Fault]:
        """The faults armed now (not cancelled, not used up), oldest first."""
        return self.fault_rules.armed if self._fault_rules is not None else []

    def call_in_loop(self, function: Callable[..., T], *args: Any) -> concurrent.futures.Future[T]:
        """Run ``function(*args)`` on the server's event loop, in its thread, soon; from any thread.

        The server's sessions and handler hooks run there, one at a time: while ``function``
        runs, no client is served. Keep it short (this is how ``LoopMonitor`` measures how late
        the loop runs what it is given).

        Returns:
            A :class:`concurrent.futures.Future` of its result; cancelled if the server stops first.

        Raises:
            ServerNotRunningError: The server is not running.
        """
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def run() -> None:
            self._pending.discard(future)
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(function(*args))
                except BaseException as error:  # noqa: BLE001 - handed to whoever waits
                    future.set_exception(error)

        controller = self._controller
        try:
            if controller is None:
                raise RuntimeError("not running")
            self._pending.add(future)
            controller.loop.call_soon_threadsafe(run)
        except RuntimeError:  # stopped, or its loop closed a moment ago
            self._pending.discard(future)
            raise ServerNotRunningError(
                f"the lab server {self.name!r} is not running, so nothing runs on its loop: "
                "call server.start() first"
            ) from None
        return future

    # -- called from the server's thread --------------------------------------------------

    def _session_opened(self, peer: Any, local: Any) -> Transcript:
        from smtplab.render import format_address

        transcript = Transcript(title=f"server side of {format_address(peer)}", peer=peer, local=local)
        self._transcripts.append(transcript)
        return transcript

    def _report(self, hook: str, error: BaseException) -> str:
        failure = describe_failure(hook, error)
        self.errors.append(failure)
        # One line: the traceback is in server.errors, not printed into the notebook or terminal.
        log.error("lab server %r: %s failed: %s: %s", self.name, hook, type(error).__name__, error)
        return failure.reply


def start_server(
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    handler: object | None = None,
    name: str = "lab",
    hostname: str = DEFAULT_HOSTNAME,
    maildir: str | os.PathLike[str] | None = None,
    mailbox: Mailbox | None = None,
    tls: TLSMode = None,
    require_tls: bool = False,
    auth: Mapping[str, str] | LabAuthenticator | None = None,
    auth_mechanisms: tuple[str, ...] = AUTH_MECHANISMS,
    auth_required: bool = False,
    auth_require_tls: bool = True,
    lab_tls: LabTLS | None = None,
    limits: Limits | Mapping[str, Any] | None = None,
    unix_socket: str | os.PathLike[str] | bool = False,
    mailboxes: Iterable[str] = (),
    lists: Mapping[str, Iterable[str]] | None = None,
    reply_delay: float = 0.0,
    extensions: Mapping[str, bool] | None = None,
    allow_remote: bool = False,
    ready_timeout: float = 5.0,
    **smtp_options: Any,
) -> LabServer:
    """Start a lab SMTP server in the background and return it, ready to answer.

    Every option is checked before anything is opened; a mistyped one is named with the option
    it probably meant.

    Args:
        host: The address to listen on: loopback (``127.0.0.1``, ``::1``, ``localhost``) unless
            ``allow_remote=True``.
        port: The TCP port; ``0`` lets the operating system pick a free one (``server.port`` says which).
        handler: Your own aiosmtpd handler (``async def handle_RCPT(...)`` …); what its ``handle_DATA``
            accepts is still captured.
        name: The server's name; a running server of that name is stopped once this one listens.
        hostname: The name the server gives in its greeting and EHLO reply.
        maildir: A directory to also write every message to, in Maildir format (it survives restarts).
        mailbox: The :class:`~smtplab.mailbox.Mailbox` to capture into (a new one, bounded by ``limits``, if
            omitted).
        tls: ``None`` (plain text), ``"starttls"`` (STARTTLS offered, RFC 3207) or ``"implicit"`` (TLS from
            the first byte, like port 465).
        require_tls: With ``tls="starttls"``, refuse mail (``530``) until the client has sent STARTTLS.
        auth: Users and passwords for AUTH PLAIN, LOGIN and CRAM-MD5, e.g. ``{"alice": "wonderland"}``
            (refused in plain text with ``538``).
        auth_mechanisms: The AUTH mechanisms offered, e.g. ``("PLAIN", "LOGIN")`` to leave CRAM-MD5 out.
        auth_required: Refuse mail (``530 5.7.0``) until the client has logged in with AUTH.
        auth_require_tls: Refuse AUTH in plain text (``538``); ``False`` lets a lesson show a password
            on the wire.
        lab_tls: The certificate authority and certificate to use (default: the process-wide
            ``default_lab_tls()``).
        limits: A :class:`~smtplab.limits.Limits`, or a dict of its fields: sizes, recipients, connections,
            AUTH failures, timeouts.
        unix_socket: ``True`` or a path: listen on a Unix-domain socket only you can reach, instead of a port
            (shared hosts).
        mailboxes: Addresses that exist, for VRFY to confirm, e.g. ``["alice@example.test"]``.
        lists: Mailing lists for EXPN to expand, e.g. ``{"team": ["alice@example.test",
            "bob@example.test"]}``.
        reply_delay: Seconds to wait before the final reply to DATA, like a distant or busy server.
        extensions: Switch EHLO extensions on or off, e.g. ``{"SIZE": False, "HELP": False}``; one switched
            off is not offered, and using it gets the refusal of a server without it (555, 502).
        allow_remote: Allow a ``host`` other machines can reach (a classroom container); warns.
        ready_timeout: Seconds to wait for the server's thread to start before giving up.
        **smtp_options: aiosmtpd's other ``SMTP`` keywords, e.g. ``ident``; its ``data_size_limit`` and
            ``timeout`` are the ``Limits`` fields ``max_message_size`` and ``idle_timeout``.

    Returns:
        The running :class:`LabServer`; use it as a context manager to stop it automatically.

    Raises:
        PortInUseError: An explicit ``port`` is already taken (at once, not after a timeout).
        ServerStartError: The server could not start for another reason; the message says why.
        TypeError: An option is unknown (the message suggests the closest known one).
        ValueError: An option has a value it cannot take (the message says which it can).
    """
    return LabServer(
        host=host,
        port=port,
        handler=handler,
        name=name,
        hostname=hostname,
        maildir=maildir,
        mailbox=mailbox,
        tls=tls,
        require_tls=require_tls,
        auth=auth,
        auth_mechanisms=auth_mechanisms,
        auth_required=auth_required,
        auth_require_tls=auth_require_tls,
        lab_tls=lab_tls,
        limits=limits,
        unix_socket=unix_socket,
        mailboxes=mailboxes,
        lists=lists,
        reply_delay=reply_delay,
        extensions=extensions,
        allow_remote=allow_remote,
        ready_timeout=ready_timeout,
        **smtp_options,
    ).start()


# -- helpers ---------------------------------------------------------------------------------

_LAB_OPTIONS = frozenset(inspect.signature(LabServer.__init__).parameters) - {"self", "smtp_options"}


def _check_options(options: dict[str, Any]) -> None:
    for key in options:
        from smtplab._aiosmtpd import smtp_options  # aiosmtpd is imported when first needed

        if key not in smtp_options():
            known = sorted(smtp_options() | _LAB_OPTIONS)
            import difflib  # only a mistyped option needs it

            close = difflib.get_close_matches(key, known, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise TypeError(f"start_server() got an unknown option {key!r}.{hint} Known: {', '.join(known)}")


def _check_tls_options(tls: Any, require_tls: bool, options: Mapping[str, Any]) -> None:
    from smtplab.tls import check_tls_mode

    check_tls_mode(tls)
    if require_tls and tls != "starttls":
        raise ValueError(
            "require_tls=True refuses mail until the client has sent STARTTLS, so it goes with "
            "tls='starttls' (implicit TLS encrypts every byte already: there, leave require_tls out)"
        )
    for key in ("tls_context", "ssl_context", "require_starttls", "authenticator"):
        if key in options and (tls is not None or key == "authenticator"):
            friendly = "auth=" if key == "authenticator" else "tls="
            raise ValueError(f"give either {friendly} or aiosmtpd's {key}=, not both")


#: The EHLO extensions a lab server can switch on or off (``extensions=``), in EHLO order; see
#: :data:`smtplab.protocol.EXTENSIONS` for what each one does.
LAB_EXTENSIONS = ("SIZE", "8BITMIME", "SMTPUTF8", "ENHANCEDSTATUSCODES", "STARTTLS", "AUTH", "HELP")


def _checked_extensions(
    extensions: Mapping[str, bool] | None, *, tls: Any, auth: Any, options: Mapping[str, Any]
) -> dict[str, bool]:
    """Every switchable extension, on or off: the defaults, changed by ``extensions=``, checked."""
    defaults = {
        "SIZE": True,
        "8BITMIME": not options.get("decode_data", False),
        "SMTPUTF8": options.get("enable_SMTPUTF8", True),
        "ENHANCEDSTATUSCODES": True,
        "STARTTLS": tls == "starttls",
        "AUTH": auth is not None or "auth_callback" in options,  # a server with no users offers no AUTH
        "HELP": True,
    }
    if extensions is None:
        return defaults
    example = 'e.g. extensions={"SIZE": False, "HELP": False}'
    if not isinstance(extensions, Mapping):
        raise TypeError(
            f"extensions must map extension names to True or False, {example}; not {extensions!r}"
        )
    chosen = dict(defaults)
    for name, on in extensions.items():
        key = str(name).upper()
        if key not in defaults:
            import difflib  # only a mistyped name needs it

            close = difflib.get_close_matches(key, LAB_EXTENSIONS, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            never = " (the lab server never offers it)" if key in _protocol_extensions() else ""
            raise ValueError(
                f"start_server() cannot switch the extension {name!r}{never}.{hint} It can switch: "
                f"{', '.join(LAB_EXTENSIONS)}"
            )
        if not isinstance(on, bool):
            raise TypeError(f"extensions[{name!r}] must be True or False, not {on!r}")
        chosen[key] = on
    _check_extension_conflicts(chosen, defaults, tls=tls, auth=auth, options=options)
    return chosen


def _protocol_extensions() -> frozenset[str]:
    from smtplab.protocol import EXTENSIONS

    return frozenset(EXTENSIONS)


def _check_extension_conflicts(
    chosen: dict[str, bool], defaults: dict[str, bool], *, tls: Any, auth: Any, options: Mapping[str, Any]
) -> None:
    """Refuse a switch that contradicts another option, naming both and what to write instead."""
    if chosen["STARTTLS"] and tls != "starttls":
        if tls == "implicit":
            raise ValueError(
                "with tls='implicit' the connection is encrypted from the first byte, so there is no "
                'STARTTLS to offer: leave "STARTTLS" out of extensions, or use tls="starttls"'
            )
        raise ValueError(
            'extensions={"STARTTLS": True} needs the server\'s certificate: start the server with '
            "tls='starttls' (STARTTLS is then on by itself)"
        )
    if not chosen["STARTTLS"] and tls == "starttls":
        raise ValueError(
            "tls='starttls' is there to offer STARTTLS: to switch STARTTLS off, leave tls out "
            '(tls=None) instead of extensions={"STARTTLS": False}'
        )
    if chosen["AUTH"] and not defaults["AUTH"]:
        raise ValueError(
            'extensions={"AUTH": True} needs users to log in: give them with auth=, e.g. '
            'auth={"alice": "wonderland"} (AUTH is then on by itself)'
        )
    if not chosen["AUTH"] and auth is not None:
        raise ValueError(
            'auth= gives the server users for AUTH, and extensions={"AUTH": False} switches AUTH off: '
            "give one or the other"
        )
    for name, option, value in (("8BITMIME", "decode_data", True), ("SMTPUTF8", "enable_SMTPUTF8", False)):
        if chosen[name] and not defaults[name]:
            raise ValueError(
                f'extensions={{"{name}": True}} contradicts {option}={value}: give one or the other'
            )
    if not chosen["SMTPUTF8"] and options.get("enable_SMTPUTF8") is True:
        raise ValueError(
            'extensions={"SMTPUTF8": False} contradicts enable_SMTPUTF8=True: give one or the other'
        )


def _limits(limits: Limits | Mapping[str, Any] | None, options: dict[str, Any]) -> Limits:
    """The server's Limits; aiosmtpd's own data_size_limit= and timeout= fold into them."""
    knobs = {key: options.pop(key) for key in SMTP_KNOBS if key in options}
    if limits is not None and knobs:
        names = ", ".join(f"{key}= (Limits.{SMTP_KNOBS[key]})" for key in knobs)
        raise TypeError(f"give either limits= or aiosmtpd's {names}, not both")
    if limits is None:
        # aiosmtpd reads data_size_limit=0 or None as "no limit".
        return Limits(**{SMTP_KNOBS[key]: value or None for key, value in knobs.items()})
    if isinstance(limits, Limits):
        return limits
    if isinstance(limits, Mapping):
        return Limits(**limits)
    raise TypeError(f"limits must be a smtplab.Limits or a dict of its fields, not {limits!r}")


def _checked_mechanisms(
    mechanisms: Any, auth: LabAuthenticator | None, options: Mapping[str, Any]
) -> tuple[str, ...]:
    """``auth_mechanisms=`` upper-cased and checked: known names, with ``auth=``, alone."""
    if isinstance(mechanisms, str) or not isinstance(mechanisms, (tuple, list)):
        raise ValueError(
            f"auth_mechanisms takes a tuple of mechanism names, e.g. auth_mechanisms=('PLAIN',), "
            f"not {mechanisms!r}"
        )
    chosen = tuple(dict.fromkeys(str(name).upper() for name in mechanisms))
    if chosen == AUTH_MECHANISMS:
        return chosen
    if auth is None:
        raise ValueError(
            "auth_mechanisms= chooses among the mechanisms of auth=: give auth= too, e.g. "
            "auth={'alice': 'wonderland'}"
        )
    if not chosen:
        raise ValueError(f"auth_mechanisms needs at least one of {', '.join(AUTH_MECHANISMS)}")
    for name in chosen:
        if name not in AUTH_MECHANISMS:
            import difflib

            close = difflib.get_close_matches(name, AUTH_MECHANISMS, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ValueError(
                f"no AUTH mechanism {name!r} here; a lab server offers {', '.join(AUTH_MECHANISMS)}.{hint}"
            )
    if "auth_exclude_mechanism" in options:
        raise ValueError("give either auth_mechanisms= or aiosmtpd's auth_exclude_mechanism=, not both")
    return chosen


def _checked_auth(auth: Any) -> LabAuthenticator | None:
    if auth is None:
        return None
    from smtplab.auth import LabAuthenticator

    if isinstance(auth, LabAuthenticator):
        return auth
    if not isinstance(auth, Mapping) or not auth:
        raise ValueError('auth must map user names to passwords, e.g. auth={"alice": "wonderland"}')
    return LabAuthenticator(auth)


#: How a lab server names itself in its greeting (``220 smtplab.test ESMTP smtplab (aiosmtpd …)``):
#: how a client tells a lab server, even one in another process, from any other.
LAB_IDENT = "ESMTP smtplab"

#: A private place for a Unix-domain socket, as the error about a shared directory suggests it.
PRIVATE_SOCKET = "~/.smtplab/lab.sock"


def _bind_unix(path: str) -> socket.socket:
    """Listen on a Unix-domain socket in a directory only this user may enter (mode 0700)."""
    directory = os.path.dirname(path)
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        info = os.stat(directory)
    except OSError as error:
        raise ServerStartError(f"cannot make the directory {directory} for the socket: {error}") from error
    if info.st_uid != os.getuid() or info.st_mode & 0o077:
        # File permissions are what keeps other users out (a socket in /tmp would not be).
        raise ServerStartError(
            hints.Hint(
                f"the directory {directory} is open to other users (mode {stat.filemode(info.st_mode)}), "
                "so they could reach the socket. Use a private directory, e.g. ",
                hints.option("unix_socket", PRIVATE_SOCKET),
                " (created with mode 0700), or ",
                hints.Fix("unix_socket=True", "--unix-socket without a PATH"),
                ".",
            )
        )
    if os.path.exists(path):
        if not stat.S_ISSOCK(os.stat(path).st_mode):
            raise ServerStartError(f"{path} exists and is not a socket; choose another path")
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            if probe.connect_ex(path) == 0:
                raise PortInUseError(errno.EADDRINUSE, f"another server is listening on {path}")
        os.unlink(path)  # left behind by a kernel that died
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        os.chmod(path, 0o600)
        sock.listen(128)
        sock.setblocking(False)
    except OSError as error:
        sock.close()
        raise ServerStartError(f"cannot listen on {path}: {error}") from error
    return sock


def _remove_socket(path: str, made_directory: str | None) -> None:
    try:
        os.unlink(path)
        if made_directory is not None:
            os.rmdir(made_directory)  # made again, private, at a restart
    except OSError:
        pass


_shared_host_hinted = False


def _in_a_pod() -> bool:
    """Whether this kernel runs in a Kubernetes pod, whose 127.0.0.1 is its own.

    Kubernetes puts ``KUBERNETES_SERVICE_HOST`` in every pod's environment; a JupyterHub on
    Kubernetes (Zero to JupyterHub, KubeSpawner) gives each user a pod of their own, so nobody
    else can reach a lab server on its loopback.
    """
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST"))


def _hint_shared_host(user: str) -> None:
    """Once per process: on a JupyterHub, 127.0.0.1 is shared by every user of the machine."""
    global _shared_host_hinted
    if _shared_host_hinted:
        return
    _shared_host_hinted = True
    warnings.warn(
        f"this kernel runs on a JupyterHub (user {user!r}); other users of the machine can connect "
        "to 127.0.0.1 too, so they could send mail to this lab server or use up its connections. "
        "To keep it private, start it with unix_socket=True: smtplab.Client(server) still connects.",
        SharedHostWarning,
        stacklevel=4,
    )
