"""What every background lab service shares: the loopback rule, a listening socket, a registry.

A lab service (the lab proxy today) listens on loopback unless told otherwise, fails at once on
a taken port instead of after a timeout, and is kept in a per-process registry by name, so that
re-running a notebook cell replaces a running service instead of piling up another, and every
one is stopped at interpreter exit (kernel shutdown or restart).
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

from smtplab.errors import PortInUseError, ServerStartError
from smtplab.render import format_address

__all__ = ["Registry", "is_loopback", "listen"]


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
                "operating system pick a free port.",
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

    def stop(self) -> None: ...


S = TypeVar("S", bound=Service)


class Registry(Generic[S]):
    """The running services of one kind in this process, by name; all stopped at exit.

    Args:
        kind: What they are, for messages (``"lab proxy"``).
        replaced: The warning category given when a service replaces its namesake.
    """

    def __init__(self, kind: str, *, replaced: type[Warning]) -> None:
        self.kind = kind
        self.replaced = replaced
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

    def replace_namesake(self, service: S, *, stacklevel: int) -> None:
        """Stop a running service of the same name, with a warning that says so."""
        with self._lock:
            old = self._services.get(service.name)
        if old is not None and old is not service:
            old.stop()
            warnings.warn(
                f"stopped the {self.kind} {old.name!r} that was running on {format_address(old.address)} "
                f"to start this one. Give each a different name (name=...) to run several at once.",
                self.replaced,
                stacklevel=stacklevel + 1,
            )

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
