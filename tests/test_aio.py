"""Running coroutines from sync code, with and without a running event loop."""

from __future__ import annotations

import asyncio
import threading

import pytest

from smtplab import aio


async def where() -> str:
    return threading.current_thread().name


def test_run_outside_a_loop():
    assert aio.run(where()) == "smtplab-loop"


def test_run_inside_a_running_loop():
    async def cell():
        return aio.run(where())

    assert asyncio.run(cell()) == "smtplab-loop"


def test_errors_come_back_to_the_caller():
    async def boom():
        raise KeyError("x")

    with pytest.raises(KeyError):
        aio.run(boom())


def test_running_on_its_own_loop_is_refused():
    async def nested():
        inner = where()
        try:
            aio.run(inner)
        except RuntimeError as error:
            return str(error)

    assert "use await" in aio.run(nested())


def test_explain_loop_describes_both_situations():
    assert "asyncio.run(coroutine) works here" in aio.explain_loop()

    async def cell():
        return aio.explain_loop()

    assert "top-level `await" in asyncio.run(cell())
