"""What both sides of every benchmark share: messages, stock handlers, servers, child processes.

The stock side is what a reader would write without smtplab: an aiosmtpd ``Controller`` on
``127.0.0.1`` with an explicit free port (it cannot take port 0, aiosmtpd issue #388) and a
handler of a few lines; aiosmtplib's ``SMTP`` as the client.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import socket
import subprocess
import sys
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from aiosmtpd.controller import Controller

import smtplab

T = TypeVar("T")

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
SENDER = "alice@example.test"
RECIPIENTS = ["bob@example.test"]
#: Stock aiosmtpd's own default, written out: a stock Controller on a taken port waits this long.
STOCK_READY_TIMEOUT = 5.0
#: Overrides any ready_timeout given to a Controller; never let it into a child process.
TIMEOUT_ENV = "AIOSMTPD_CONTROLLER_TIMEOUT"


def message(size: int) -> bytes:
    """A plain-text message of exactly ``size`` bytes, CRLF line endings, lines of 78 octets."""
    head = f"From: {SENDER}\r\nTo: {RECIPIENTS[0]}\r\nSubject: bench\r\n\r\n".encode()
    line = b"x" * 76 + b"\r\n"
    body = line * max(0, (size - len(head)) // len(line))
    rest = size - len(head) - len(body)
    tail = b"y" * (rest - 2) + b"\r\n" if rest >= 3 else b""
    return head + body + tail


class SinkHandler:
    """The smallest useful aiosmtpd handler: accept and forget."""

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        return "250 OK"


class KeepHandler:
    """A plain handler that keeps every envelope in a list, as a capture server minimally must."""

    def __init__(self) -> None:
        self.envelopes: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.envelopes.append(envelope)
        return "250 OK"


class DelayHandler:
    """Answers DATA after ``delay`` seconds, like a distant or busy server."""

    def __init__(self, delay: float) -> None:
        self.delay = delay

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        await asyncio.sleep(self.delay)
        return "250 OK"


def free_port() -> int:
    """A port on 127.0.0.1 that was free a moment ago (stock Controllers need an explicit one)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def stock_controller(handler: Any, *, port: int | None = None, **kwargs: Any) -> Controller:
    """A stock Controller on 127.0.0.1 and ``port`` (by default a fresh free one), not started."""
    port = free_port() if port is None else port
    return Controller(handler, hostname=HOST, port=port, ready_timeout=STOCK_READY_TIMEOUT, **kwargs)


def start_stock(controller: Controller) -> Controller:
    """Start ``controller``; on failure stop it too (a failed start leaves its thread running)."""
    try:
        controller.start()
    except BaseException:
        controller.stop(no_assert=True)
        raise
    return controller


@contextmanager
def stock_server(handler: Any, **kwargs: Any) -> Iterator[Controller]:
    """A running stock Controller, stopped on exit."""
    controller = start_stock(stock_controller(handler, **kwargs))
    try:
        yield controller
    finally:
        controller.stop()


@contextmanager
def lab_server(**options: Any) -> Iterator[smtplab.LabServer]:
    """A running lab server, stopped on exit."""
    options.setdefault("name", "bench")
    server = smtplab.start_server(**options)
    try:
        yield server
    finally:
        server.stop()


def lab_supports(option: str) -> bool:
    """Whether this smtplab's ``LabServer`` takes ``option`` (features land one at a time)."""
    return option in inspect.signature(smtplab.LabServer.__init__).parameters


def client_supports(option: str) -> bool:
    """Whether this smtplab's ``Client`` takes ``option`` or has a method of that name."""
    return option in inspect.signature(smtplab.Client.__init__).parameters or hasattr(smtplab.Client, option)


def watch_close(protocol: Any) -> asyncio.Future[None]:
    """A future done once ``protocol``'s connection is lost, i.e. its socket really closed.

    Closing a TLS transport first exchanges close_notify alerts; a loop closed before that ends
    leaves the socket open (``ResourceWarning: unclosed transport``). Await this after ``quit()``.
    """
    lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    original = protocol.connection_lost

    def connection_lost(error: Exception | None) -> None:
        try:
            original(error)
        finally:
            if not lost.done():
                lost.set_result(None)

    protocol.connection_lost = connection_lost
    return lost


def run_async(coroutine: Coroutine[Any, Any, T], *, timeout: float) -> T:
    """Run ``coroutine`` on a fresh event loop in this thread, for at most ``timeout`` seconds."""
    return asyncio.run(asyncio.wait_for(coroutine, timeout))


def child_env(**extra: str | None) -> dict[str, str]:
    """The environment of a child process: ours, without the Controller timeout override.

    ``extra`` sets variables, or removes them when given ``None``.
    """
    env = {key: value for key, value in os.environ.items() if key != TIMEOUT_ENV}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    for key, value in extra.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def run_child(args: list[str], *, timeout: float, env: dict[str, str] | None = None) -> Any:
    """Run ``python <args>`` in a fresh process from the repository root; parse its last stdout line as JSON."""
    done = subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env=child_env() if env is None else env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"child {args} failed ({done.returncode}):\n{done.stderr.strip()}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_worker(*args: str, timeout: float) -> Any:
    """Run one of :mod:`bench.workers`' measurements in a fresh process."""
    return run_child(["-m", "bench.workers", *args], timeout=timeout)
