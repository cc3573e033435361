"""Running coroutines from ordinary (sync) code, inside Jupyter or out.

Jupyter's kernel already runs an asyncio event loop in the main thread, so ``asyncio.run()``
there fails with *cannot be called from a running event loop*, and ``loop.run_until_complete()``
with *This event loop is already running*. ``nest_asyncio.apply()`` makes both work by patching
asyncio for the whole process — which smtplab never does behind your back.

smtplab's sync face uses a different, patch-free approach: one background thread runs its own
event loop (started on first use), and sync calls hand their coroutine to it and wait for the
result. The calling thread may or may not have a running loop; it does not matter.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["BackgroundLoop", "explain_loop", "run"]

T = TypeVar("T")


class BackgroundLoop:
    """An event loop running forever in a daemon thread, started on first use."""

    def __init__(self, name: str = "smtplab-loop") -> None:
        self.name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The loop (starting its thread if needed)."""
        with self._lock:
            if self._loop is None or self._loop.is_closed():
                loop = asyncio.new_event_loop()
                started = threading.Event()
                thread = threading.Thread(target=self._run, args=(loop, started), name=self.name, daemon=True)
                thread.start()
                started.wait()
                self._loop = loop
            return self._loop

    @staticmethod
    def _run(loop: asyncio.AbstractEventLoop, started: threading.Event) -> None:
        asyncio.set_event_loop(loop)
        loop.call_soon(started.set)
        loop.run_forever()

    def run(self, coroutine: Coroutine[Any, Any, T], *, timeout: float | None = None) -> T:
        """Run ``coroutine`` on the background loop and return its result (or raise its error).

        Raises:
            RuntimeError: Called from the background loop's own thread (it would wait forever).
        """
        loop = self.loop
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            coroutine.close()
            raise RuntimeError("a sync smtplab call cannot run inside smtplab's own loop; use await")
        future = asyncio.run_coroutine_threadsafe(coroutine, loop)
        try:
            return future.result(timeout)
        except BaseException:
            future.cancel()
            raise


_default = BackgroundLoop()


def run(coroutine: Coroutine[Any, Any, T], *, timeout: float | None = None) -> T:
    """Run a coroutine to completion from sync code — in a plain script or inside Jupyter.

    The coroutine runs on smtplab's background loop, so objects it creates (an aiosmtplib
    connection, say) belong to that loop and must be used through :func:`run` again.
    """
    return _default.run(coroutine, timeout=timeout)


def explain_loop() -> str:
    """Describe the event loop situation of the calling thread, and what works there."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return (
            f"No event loop is running in thread {threading.current_thread().name!r}: "
            "asyncio.run(coroutine) works here, and so do smtplab's sync calls."
        )
    return (
        f"An event loop ({type(loop).__name__}) is already running in thread "
        f"{threading.current_thread().name!r} — as in every Jupyter kernel. Here asyncio.run() "
        "raises 'cannot be called from a running event loop'; use top-level `await coroutine` "
        "instead, or smtplab's sync calls, which run on a loop of their own in another thread."
    )
