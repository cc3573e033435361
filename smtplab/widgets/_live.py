"""What every smtplab widget shares: an error ``Output``, and updates that reach the kernel safely.

A widget's state may only be changed from the thread that runs the kernel's event loop: trait
changes become comm messages, and ipykernel sends those from that thread. smtplab's updates come
from elsewhere — mailbox observers run on the mailbox's dispatcher thread, transcript observers
on whichever thread recorded the line (the lab server's loop, or a client's) — so a widget
remembers the loop running where it was created and hands each update to it with
``loop.call_soon_threadsafe()``. With no loop (a plain script, pytest) updates happen at once,
on the calling thread, under a lock.

Updates are coalesced: a burst of a thousand transcript lines costs one redraw, and redraws come
at most every :data:`MIN_REFRESH_INTERVAL` seconds.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import html
import threading
import time
import traceback
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import ipywidgets

__all__ = ["MIN_REFRESH_INTERVAL", "LiveBox", "escape", "reports_errors", "running_loop"]

#: Seconds between two redraws of one widget inside a kernel (bursts are drawn together).
MIN_REFRESH_INTERVAL = 0.05

#: Exceptions kept on a widget's ``errors`` list (the oldest are forgotten first).
ERRORS_KEPT = 100

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")


def escape(value: object) -> str:
    """``html.escape`` for any value, quotes included: nothing a message says becomes markup."""
    return html.escape(str(value), quote=True)


def running_loop() -> asyncio.AbstractEventLoop | None:
    """The event loop running in this thread (the kernel's, in Jupyter), or ``None``."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def reports_errors(method: F) -> F:
    """Wrap a widget callback: clear the last error shown, and show any new one in the widget.

    ipywidgets would otherwise log an exception where a learner never looks, and observers
    running on other threads would swallow it. Each click or edit is a new action, so an error
    left by the previous one goes away first.
    """

    @functools.wraps(method)
    def guarded(self: LiveBox, *args: Any, **kwargs: Any) -> Any:
        self.hide_error()
        try:
            return method(self, *args, **kwargs)
        except Exception as error:  # noqa: BLE001 - shown to the learner, not lost
            self.report_error(error)
            return None

    return guarded  # type: ignore[return-value]


class LiveBox(ipywidgets.VBox):
    """A ``VBox`` that owns an error ``Output`` and redraws itself from any thread.

    Subclasses implement :meth:`_refresh` (read the model, update child widgets) and call
    :meth:`request_refresh` from observers, whatever thread they run on.

    An exception raised in a callback is shown as one line (:attr:`error_line`) with its
    traceback behind a toggle (:attr:`traceback_button`, :attr:`output`); the next action
    clears them.

    Attributes:
        error_line: The last error, in one line ("Error: ConnectionRefusedError: …").
        traceback_button: Shows or hides the traceback of that error.
        output: The traceback (hidden until asked for).
        errors: Every exception reported so far, newest last.
    """

    def __init__(self, children: list[ipywidgets.Widget], **kwargs: Any) -> None:
        self._kernel_loop = running_loop()
        self._live_lock = threading.RLock()
        self._refresh_pending = False
        self._last_refresh = 0.0
        self._closed = False
        self._tasks: set[asyncio.Task[None]] = set()
        self.errors: list[BaseException] = []
        self.error_line = ipywidgets.HTML()
        self.traceback_button = ipywidgets.ToggleButton(
            description="Show traceback",
            icon="list",
            tooltip="Where in the code the error happened",
            layout=ipywidgets.Layout(width="auto"),
        )
        self.output = ipywidgets.Output(layout=ipywidgets.Layout(max_height="16em", overflow="auto"))
        self._error_row = ipywidgets.HBox(
            [self.error_line, self.traceback_button], layout={"align_items": "center", "grid_gap": "8px"}
        )
        self.traceback_button.observe(self._on_traceback_button_value, names="value")
        super().__init__(children=[*children, self._error_row, self.output], **kwargs)
        self.add_class("smtplab-widget")
        self.hide_error()

    # -- running code on the kernel's thread ----------------------------------------------

    def _on_kernel_thread(self) -> bool:
        loop = self._kernel_loop
        return loop is None or loop.is_closed() or running_loop() is loop

    def call_in_kernel(self, function: Callable[..., Any], *args: Any) -> None:
        """Run ``function(*args)`` on the kernel's thread: now if already there, else soon."""
        loop = self._kernel_loop
        if loop is not None and running_loop() is not loop and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(self._guarded_call, function, args)
                return
            except RuntimeError:  # the loop closed in the meantime (kernel shutting down)
                pass
        self._guarded_call(function, args)

    def _guarded_call(self, function: Callable[..., Any], args: tuple[Any, ...]) -> None:
        try:
            function(*args)
        except Exception as error:  # noqa: BLE001
            self.report_error(error)

    # -- work that talks to a server ----------------------------------------------------------

    def run_task(
        self,
        coroutine: Coroutine[Any, Any, T],
        finish: Callable[[T | None, BaseException | None], None],
    ) -> concurrent.futures.Future[T]:
        """Run ``coroutine`` (a send, a login), then ``finish(result, error)`` on this thread.

        With an event loop running in this thread (a Jupyter kernel) the coroutine becomes a task
        on it and the future completes later, so the page stays responsive — in a cell, ``await
        asyncio.wrap_future(future)``. Without one (a script, pytest) it runs to completion on
        smtplab's background loop (:func:`smtplab.aio.run`) before this returns.

        Returns:
            A future of the coroutine's result; ``finish`` has run by the time it completes.
        """
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def done(result: T | None, error: BaseException | None) -> None:
            try:
                finish(result, error)
            finally:
                if isinstance(error, asyncio.CancelledError):
                    future.cancel()
                elif error is not None:
                    future.set_exception(error)
                else:
                    future.set_result(result)  # type: ignore[arg-type]

        async def run() -> None:
            try:
                result = await coroutine
            except asyncio.CancelledError as error:  # the kernel is shutting down
                done(None, error)
                raise
            except Exception as error:  # noqa: BLE001 - reported, never lost in a task
                done(None, error)
            else:
                done(result, None)

        loop = running_loop()
        if loop is not None:
            task = loop.create_task(run())
            self._tasks.add(task)  # a task nobody holds may be collected before it ends
            task.add_done_callback(self._tasks.discard)
            return future
        from smtplab import aio

        try:
            result = aio.run(coroutine)
        except Exception as error:  # noqa: BLE001 - handed to finish, like the task's
            done(None, error)
        else:
            done(result, None)
        return future

    # -- coalesced redraws ------------------------------------------------------------------

    def request_refresh(self) -> None:
        """Ask for a redraw; safe from any thread, cheap to call for every event."""
        with self._live_lock:
            if self._refresh_pending or self._closed:
                return
            self._refresh_pending = True
        loop = self._kernel_loop
        if loop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(self._schedule_refresh)
                return
            except RuntimeError:
                pass
        self._run_refresh()

    def _schedule_refresh(self) -> None:  # on the kernel's loop
        assert self._kernel_loop is not None
        delay = self._last_refresh + MIN_REFRESH_INTERVAL - time.monotonic()
        if delay > 0:
            self._kernel_loop.call_later(delay, self._run_refresh)
        else:
            self._run_refresh()

    def _run_refresh(self) -> None:
        with self._live_lock:
            self._refresh_pending = False
            if self._closed:
                return
            try:
                self._refresh()
            except Exception as error:  # noqa: BLE001
                self.report_error(error)
            self._last_refresh = time.monotonic()

    def refresh(self) -> None:
        """Redraw now from the current state of the model (call it on the kernel's thread)."""
        self._run_refresh()

    def _refresh(self) -> None:
        """Read the model and update the child widgets (subclasses)."""

    # -- errors -----------------------------------------------------------------------------

    def report_error(self, error: BaseException) -> None:
        """Show ``error`` in one line, its traceback behind the toggle; keep it in :attr:`errors`."""
        if not self._on_kernel_thread():
            self.call_in_kernel(self.report_error, error)
            return
        self.errors.append(error)
        del self.errors[:-ERRORS_KEPT]
        self.error_line.value = (
            f'<span style="font-size:13px"><b>Error</b>: {escape(type(error).__name__)}: '
            f"{escape(error)}</span>"
        )
        text = "".join(traceback.format_exception(type(error), error, error.__traceback__))
        self.output.outputs = ()
        self.output.append_stderr(text)
        self._error_row.layout.display = None
        self.traceback_button.value = False
        self._on_traceback_button_value({"new": False})

    def hide_error(self) -> None:
        """Take the last error off the screen (it stays in :attr:`errors`)."""
        self.error_line.value = ""
        self.output.outputs = ()
        self.traceback_button.value = False
        self._error_row.layout.display = "none"
        self.output.layout.display = "none"

    def clear_errors(self) -> None:
        """Forget every error reported so far, and take the last one off the screen."""
        self.errors.clear()
        self.hide_error()

    def _on_traceback_button_value(self, change: dict[str, Any]) -> None:
        shown = bool(change["new"])
        self.output.layout.display = None if shown else "none"
        self.traceback_button.description = "Hide traceback" if shown else "Show traceback"

    # -- closing ----------------------------------------------------------------------------

    def _unobserve_models(self) -> None:
        """Stop observing the library objects (subclasses)."""

    def close(self) -> None:
        """Stop observing, then close this widget and the child widgets it made."""
        if getattr(self, "_closed", True):
            super().close()
            return
        with self._live_lock:
            self._closed = True
        try:
            self._unobserve_models()
        finally:
            for child in self._owned_children():
                child.close()
            super().close()

    def _owned_children(self) -> list[ipywidgets.Widget]:
        owned: list[ipywidgets.Widget] = []
        stack = list(self.children)
        while stack:
            child = stack.pop()
            owned.append(child)
            if isinstance(child, LiveBox):
                continue  # closes its own children
            stack.extend(getattr(child, "children", ()))
        return owned
