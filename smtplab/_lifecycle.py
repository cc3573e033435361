"""What every background lab service shares: the loopback rule, a listening socket, a registry.

A lab service (the lab server, the lab proxy) listens on loopback unless told otherwise, fails at
once on a taken port instead of after a timeout, and is kept in a per-process registry by name, so
that re-running a notebook cell replaces a running service instead of piling up another, and
every one is stopped at interpreter exit (kernel shutdown or restart).

Replacing is careful (:class:`Succession`): the running namesake stops only once its successor
listens, so a start that fails leaves it running — unless the successor asked for the
namesake's own port, which must be freed first; then a failed start starts the namesake again,
and the error says what became of it.
"""

from __future__ import annotations

import atexit
import errno
import ipaddress
import os
import socket
import threading
import warnings
from collections.abc import Callable
from typing import Any, Generic, Protocol, TypeVar

from smtplab.errors import PortInUseError, ServerStartError, SmtpLabError
from smtplab.render import format_address

__all__ = ["Registry", "Succession", "is_loopback", "listen"]


def is_loopback(host: str) -> bool:
    """Whether every address ``host`` names is a loopback address (``127.0.0.0/8``, ``::1``)."""
    if host in ("", "0.0.0.0", "::"):
        return False
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except socket.gaierror:
        return False
    return all(ipaddress.ip_address(info[4][0].split("%")[0]).is_loopback for info in infos)


def listen(
    host: str, port: int, *, what: str, owner: Callable[[int], str | None] | None = None
) -> socket.socket:
    """Bind and listen on ``host:port`` at once, turning a taken port into a clear error.

    Args:
        host: The address to listen on.
        port: The port; 0 lets the operating system pick a free one.
        what: What is starting, for the messages (e.g. ``"the lab proxy"``).
        owner: Says who holds a taken port (e.g. "the lab server 'lab' in this kernel"), if known.
    """
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as error:
        raise ServerStartError(f"{what} cannot resolve host {host!r}: {error}") from error
    sock = socket.socket(family, kind, proto)
    try:
        if os.name == "posix":
            # Rebind at once after a restart even with old connections in TIME_WAIT; Linux still
            # refuses the port while another socket listens on it.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
        sock.setblocking(False)
    except OSError as error:
        sock.close()
        if error.errno == errno.EADDRINUSE:
            who = (owner(port) if owner is not None else None) or "another program"
            raise PortInUseError(
                errno.EADDRINUSE,
                f"port {port} on {host} is already in use (by {who}). Use port=0 to let the "
                "operating system pick a free port, or stop what holds it (smtplab.running_servers() "
                "and smtplab.running_proxies() list this kernel's).",
            ) from None
        if error.errno == errno.EACCES:
            raise ServerStartError(
                f"not allowed to listen on port {port}: ports below 1024 need administrator "
                "rights. Use port=0, or a port such as 2525 or 8025."
            ) from error
        raise ServerStartError(f"{what} cannot listen on {host}:{port}: {error}") from error
    return sock


class Service(Protocol):
    name: str

    @property
    def address(self) -> Any: ...

    @property
    def port(self) -> int: ...

    def start(self) -> Any: ...

    def stop(self) -> None: ...


S = TypeVar("S", bound=Service)


class Registry(Generic[S]):
    """The running services of one kind in this process, by name; all stopped at exit.

    Args:
        kind: What they are, for messages (``"lab proxy"``).
        replaced: The warning category given when a service replaces its namesake.
        example: How to start one with another name, for that warning (``"name='lab2'"``).
    """

    def __init__(self, kind: str, *, replaced: type[Warning], example: str = "name=...") -> None:
        self.kind = kind
        self.replaced = replaced
        self.example = example
        self._services: dict[str, S] = {}
        self._lock = threading.Lock()
        self._atexit = False

    def running(self) -> list[S]:
        """Every running service, oldest first."""
        with self._lock:
            return list(self._services.values())

    def stop_all(self) -> int:
        """Stop every running service; returns how many were stopped."""
        services = self.running()
        for service in services:
            service.stop()
        return len(services)

    def holder(self, port: int) -> str | None:
        """Which running service listens on ``port`` (for a taken port's message), or ``None``."""
        held = next((s for s in self.running() if port and s.port == port), None)
        return f"the {self.kind} {held.name!r} in this kernel" if held is not None else None

    def succession(self, service: S) -> Succession[S]:
        """Start ``service`` in place of its running namesake, if it has one (see :class:`Succession`)."""
        with self._lock:
            old = self._services.get(service.name)
        return Succession(self, service, old if old is not service else None)

    def add(self, service: S) -> None:
        """Register a service that has started (and, the first time, the stop at exit)."""
        with self._lock:
            self._services[service.name] = service
            if not self._atexit:
                atexit.register(self.stop_all)
                self._atexit = True

    def discard(self, service: S) -> None:
        """Forget a service that has stopped (not its namesake that replaced it)."""
        with self._lock:
            if self._services.get(service.name) is service:
                del self._services[service.name]


class Succession(Generic[S]):
    """One start of a service that may replace a running namesake: the namesake stops last.

    The starting service listens through :meth:`listen`, then calls :meth:`done` once it serves,
    or :meth:`failed` with the error that stopped it::

        succession = registry.succession(self)
        try:
            sock = succession.listen(bind, holds=lambda old: old.port == port)
            ...  # serve sock
        except BaseException as error:
            raise succession.failed(error)  # the same error, saying what became of the namesake
        succession.done(stacklevel=3)

    Attributes:
        old: The running namesake, or ``None``.
    """

    def __init__(self, registry: Registry[S], service: S, old: S | None) -> None:
        self.registry = registry
        self.service = service
        self.old = old
        self._freed = False  # the namesake was stopped to free its address for the successor

    def listen(self, bind: Callable[[], socket.socket], *, holds: Callable[[S], bool]) -> socket.socket:
        """Bind with ``bind()``; if the namesake holds the address asked for, stop it first.

        Args:
            bind: Binds and listens, raising :class:`~smtplab.errors.PortInUseError` on a taken
                address.
            holds: Whether the namesake listens on the address asked for (a notebook cell run
                again with the same explicit port).
        """
        if self.old is None or not holds(self.old):
            return bind()
        self.old.stop()  # the same address: it has to go first, and comes back if this start fails
        self._freed = True
        return bind()

    def failed(self, error: BaseException) -> BaseException:
        """The error to raise for a failed start: ``error``, saying what became of the namesake.

        A namesake stopped to free its address is started again here (even on Ctrl-C).
        """
        old = self.old
        if old is None:
            return error
        if not self._freed:
            note = f"The {self.registry.kind} {old.name!r} on {format_address(old.address)} is still running."
        else:
            freed = f"The {self.registry.kind} {old.name!r} was stopped to free port {old.port}, and"
            try:
                old.start()
            except Exception as again:  # noqa: BLE001 - said in the message of the first error
                note = f"{freed} could not be started again: {again}"
            else:
                note = f"{freed} is running again."
        return _with_note(error, note) if isinstance(error, Exception) else error

    def done(self, *, stacklevel: int) -> None:
        """Register the started service; stop the namesake (if still running), with a warning."""
        old = self.old
        if old is not None and not self._freed:
            old.stop()
        self.registry.add(self.service)
        if old is not None:
            warnings.warn(
                f"stopped the {self.registry.kind} {old.name!r} that was running on "
                f"{format_address(old.address)} to start this one. Give each a different name to "
                f"run several at once, e.g. {self.registry.example}.",
                self.registry.replaced,
                stacklevel=stacklevel + 1,
            )


def _with_note(error: Exception, note: str) -> Exception:
    """``error`` (of the same class when it can be) with ``note`` at the end of its message."""

    def said(text: str) -> str:
        return f"{text}{'' if text.endswith(('.', '!', '?')) else '.'} {note}"

    if isinstance(error, PortInUseError):
        noted: Exception = PortInUseError(error.errno, said(error.strerror))
    elif isinstance(error, SmtpLabError) and len(error.args) == 1 and isinstance(error.args[0], str):
        noted = type(error)(said(error.args[0]))
    else:
        noted = ServerStartError(said(str(error)))
    noted.__cause__ = error.__cause__  # the original's cause, if it had one worth showing
    noted.__suppress_context__ = True
    return noted
