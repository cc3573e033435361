"""Shared fixtures, chained as a learner builds a lab: CA -> TLS contexts -> lab server -> client.

``lab_tls`` (one lab CA for the whole run) -> ``server_context`` / ``client_context`` ->
``lab_server`` (options from ``@pytest.mark.server_options``; a TLS server uses this run's CA)
-> ``client`` (a connected ``SyncClient``; options from ``@pytest.mark.client_options``). Every
test gets an autouse check that it stopped its servers and closed its sockets.
"""

from __future__ import annotations

import asyncio
import gc
import os
import socket
import ssl
import sys
import threading
import tracemalloc
from collections.abc import Awaitable, Iterator
from typing import Any, TypeVar

import pytest

import smtplab
from smtplab.tls import LabTLS

T = TypeVar("T")

#: Seconds any coroutine run by run() may take: a hang fails its test instead of the suite.
TIMEOUT = 10.0


def run(coroutine: Awaitable[T], *, timeout: float = TIMEOUT) -> T:
    """Run a coroutine on a fresh event loop, bounded by ``timeout`` (the one helper for tests)."""

    async def bounded() -> T:
        return await asyncio.wait_for(coroutine, timeout)

    return asyncio.run(bounded())


@pytest.fixture(scope="session")
def lab_tls() -> LabTLS:
    """A lab certificate authority and server certificate, made once for the whole run."""
    return LabTLS.create()


@pytest.fixture(scope="session")
def server_context(lab_tls: LabTLS) -> ssl.SSLContext:
    """The server side's SSL context of ``lab_tls``."""
    return lab_tls.server_context()


@pytest.fixture(scope="session")
def client_context(lab_tls: LabTLS) -> ssl.SSLContext:
    """A client SSL context that trusts ``lab_tls`` (and nothing else)."""
    return lab_tls.client_context()


@pytest.fixture
def lab_server(request: pytest.FixtureRequest, lab_tls: LabTLS) -> Iterator[smtplab.LabServer]:
    """A running lab server, stopped after the test; options via @pytest.mark.server_options."""
    marker = request.node.get_closest_marker("server_options")
    options = dict(marker.kwargs) if marker else {}
    options.setdefault("name", f"test-{request.node.name}")
    if options.get("tls"):
        options.setdefault("lab_tls", lab_tls)
    server = smtplab.start_server(**options)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def client(request: pytest.FixtureRequest, lab_server: smtplab.LabServer) -> Iterator[smtplab.SyncClient]:
    """A SyncClient connected to ``lab_server``; options via @pytest.mark.client_options."""
    marker = request.node.get_closest_marker("client_options")
    options: dict[str, Any] = dict(marker.kwargs) if marker else {}
    options.setdefault("tls", lab_server.tls)
    with smtplab.SyncClient(lab_server, **options) as connected:
        yield connected


@pytest.fixture(autouse=True)
def _no_server_left_behind(_no_leak_left_behind: None) -> Iterator[None]:
    """Every test stops what it starts."""
    yield
    leftover = smtplab.running_servers() + smtplab.running_proxies()
    smtplab.stop_all()
    smtplab.stop_all_proxies()
    assert not leftover, f"servers left running: {leftover}"


def pytest_collection_finish(session: pytest.Session) -> None:
    """Set the objects alive after collection (imported modules, mostly) aside from the collector.

    They are never garbage, and leaving them out makes the collection after each test cheap.
    """
    gc.collect()
    gc.freeze()


@pytest.fixture(autouse=True)
def _no_leak_left_behind() -> Iterator[None]:
    """A socket or transport a test leaves open fails that test, not whichever runs next.

    An unclosed asyncio transport is only reported when the garbage collector finalises it,
    which may be during a later test. Collecting here, and turning what the finaliser reports
    into this test's failure, names the test that leaked.
    """
    reported: list[str] = []
    previous = sys.unraisablehook

    def hook(unraisable: sys.UnraisableHookArgs) -> None:
        where = tracemalloc.get_object_traceback(unraisable.object)  # with PYTHONTRACEMALLOC=20
        reported.append(
            f"{unraisable.exc_value!r}" + ("\n  allocated at:\n" + "\n".join(where.format()) if where else "")
        )

    yield
    sys.unraisablehook = hook
    try:
        gc.collect()
    finally:
        sys.unraisablehook = previous
    assert not reported, "this test left something unclosed:\n" + "\n".join(reported)


@pytest.fixture(autouse=True)
def _not_on_a_hub(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests run as outside JupyterHub (no SharedHostWarning) unless they set JUPYTERHUB_USER."""
    monkeypatch.delenv("JUPYTERHUB_USER", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)


def open_fds() -> int:
    """Open file descriptors of this process."""
    return len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else 0


def thread_names() -> list[str]:
    """Names of the live threads, sorted."""
    return sorted(t.name for t in threading.enumerate())


def free_port() -> int:
    """A port that was free a moment ago (for tests that need an explicit port)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
