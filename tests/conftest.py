"""Shared fixtures: lab servers started per test (options from the server_options marker)."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator

import pytest

import smtplab


@pytest.fixture
def lab_server(request: pytest.FixtureRequest) -> Iterator[smtplab.LabServer]:
    """A running lab server, stopped after the test; options via @pytest.mark.server_options."""
    marker = request.node.get_closest_marker("server_options")
    options = dict(marker.kwargs) if marker else {}
    options.setdefault("name", f"test-{request.node.name}")
    server = smtplab.start_server(**options)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(autouse=True)
def _no_server_left_behind() -> Iterator[None]:
    """Every test stops what it starts."""
    yield
    leftover = smtplab.running_servers()
    smtplab.stop_all()
    assert not leftover, f"servers left running: {leftover}"


@pytest.fixture(autouse=True)
def _not_on_a_hub(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests run as outside JupyterHub (no SharedHostWarning) unless they set JUPYTERHUB_USER."""
    monkeypatch.delenv("JUPYTERHUB_USER", raising=False)


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
