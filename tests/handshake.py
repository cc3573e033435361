"""TLS handshakes on loopback for tests: a tiny echo server, and a connection expected to fail."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

Callback = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def echo_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        data = await reader.read(100)
        writer.write(data)
        await writer.drain()
    except (OSError, ssl.SSLError):
        pass
    finally:
        writer.close()


@contextlib.asynccontextmanager
async def serving(server_ctx: ssl.SSLContext | None, on_server: Callback) -> AsyncIterator[int]:
    """A loopback server for one test, on a port the OS picks; yields the port."""
    server = await asyncio.start_server(on_server, "127.0.0.1", 0, ssl=server_ctx)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


async def tls_roundtrip(
    server_ctx: ssl.SSLContext | None,
    client_ctx: ssl.SSLContext,
    server_hostname: str = "localhost",
    on_server: Callback = echo_once,
) -> tuple[bytes, Any]:
    """Serve on 127.0.0.1, connect with TLS, send a line; return (echo, client ssl_object)."""
    async with serving(server_ctx, on_server) as port:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=client_ctx, server_hostname=server_hostname
        )
        try:
            writer.write(b"hello\n")
            await writer.drain()
            echo = await reader.read(100)
            return echo, writer.get_extra_info("ssl_object")
        finally:
            writer.close()
            try:
                await writer.wait_closed()
            except (OSError, ssl.SSLError):
                pass


async def connect_error(
    server_ctx: ssl.SSLContext | None,
    client_ctx: ssl.SSLContext,
    server_hostname: str = "localhost",
    on_server: Callback = echo_once,
) -> tuple[BaseException, int]:
    """Like tls_roundtrip but expect the TLS connection to fail; return (error, port)."""
    async with serving(server_ctx, on_server) as port:
        with pytest.raises((ssl.SSLError, OSError)) as info:
            await asyncio.open_connection("127.0.0.1", port, ssl=client_ctx, server_hostname=server_hostname)
        return info.value, port


async def greet_inside_tls(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """An implicit-TLS SMTP server's side (the handshake is done by then): greet, then hang up."""
    try:
        writer.write(b"220 mail.other.test ESMTP\r\n")
        await writer.drain()
        await reader.readline()
    except (OSError, ssl.SSLError):
        pass
    finally:
        writer.close()


def starttls_peer(context: ssl.SSLContext) -> Callback:
    """A minimal SMTP server that offers STARTTLS with ``context``: not a lab server."""

    async def speak(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            writer.write(b"220 mail.other.test ESMTP\r\n")
            for _ in range(10):
                await writer.drain()
                line = (await reader.readline()).upper()
                if line.startswith(b"EHLO"):
                    writer.write(b"250-mail.other.test\r\n250 STARTTLS\r\n")
                elif line.startswith(b"STARTTLS"):
                    writer.write(b"220 2.0.0 Ready to start TLS\r\n")
                    await writer.drain()
                    await writer.start_tls(context)
                else:
                    writer.write(b"221 2.0.0 Bye\r\n")
                    await writer.drain()
                    break
        except (OSError, ssl.SSLError):
            pass
        finally:
            writer.transport.abort()

    return speak
