"""A raw SMTP connection for tests: bytes out, reply lines in, every read bounded by a timeout."""

from __future__ import annotations

import socket
import ssl
from typing import Any


class Wire:
    """One client socket speaking SMTP by hand, as a learner with telnet would.

    Every read waits at most ``timeout`` seconds (``socket.timeout`` otherwise), so a test
    never hangs on a server that stays silent.
    """

    def __init__(self, address: Any, *, timeout: float = 5.0) -> None:
        if isinstance(address, str):  # a Unix-domain socket's path
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(timeout)
            self.sock.connect(address)
        else:
            self.sock = socket.create_connection(address, timeout=timeout)
        self._file = self.sock.makefile("rb")

    def line(self) -> str:
        """The next line the server sent, without CRLF; ``""`` once the server has closed."""
        return self._file.readline().decode("utf-8", "replace").rstrip("\r\n")

    def reply(self) -> list[str]:
        """The lines of the next reply (``250-…`` lines up to the ``250 …`` one)."""
        lines = [self.line()]
        while len(lines[-1]) > 3 and lines[-1][3] == "-":
            lines.append(self.line())
        return lines

    def code(self) -> int:
        """The code of the next reply (0 if the server closed instead)."""
        last = self.reply()[-1]
        return int(last[:3]) if last[:3].isdigit() else 0

    def send(self, data: bytes | str) -> None:
        self.sock.sendall(data.encode() if isinstance(data, str) else data)

    def command(self, line: bytes | str) -> list[str]:
        """Send one command line (CRLF added) and return its reply."""
        self.send((line.encode() if isinstance(line, str) else line) + b"\r\n")
        return self.reply()

    def rest(self) -> bytes:
        """Everything the server still sends until it closes the connection.

        Raises ``socket.timeout`` if the server keeps the connection open.
        """
        try:
            return self._file.read()
        except ConnectionResetError:
            return b""

    def starttls(self, context: ssl.SSLContext, server_hostname: str = "localhost") -> None:
        """Go on inside TLS, after the server's ``220`` to ``STARTTLS``."""
        self._file.close()
        self.sock = context.wrap_socket(self.sock, server_hostname=server_hostname)
        self._file = self.sock.makefile("rb")

    def close(self) -> None:
        self._file.close()
        self.sock.close()

    def __enter__(self) -> Wire:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
