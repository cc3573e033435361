"""``BatchPanel``: send a batch over N connections at the click of a button, and see where the time went."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from typing import Any

import ipywidgets

from smtplab.parallel import BatchResult, send_many, send_many_sync
from smtplab.server import LabServer
from smtplab.widgets._live import LiveBox, escape, reports_errors, running_loop

__all__ = ["BatchPanel", "batch"]


def batch(count: int, *, sender: str = "alice@example.test", to: str = "bob@example.test") -> list[Any]:
    """``count`` small messages, numbered in their Subject, as ``(sender, [to], content)`` tuples."""
    return [
        (sender, [to], f"Subject: batch message {n}\r\n\r\nMessage {n} of {count}.\r\n")
        for n in range(1, count + 1)
    ]


class BatchPanel(LiveBox):
    """How many connections, how many messages, a Send button; then the timeline of the batch.

    Each press sends a batch with :func:`smtplab.send_many` and draws its timeline (one lane per
    connection, one bar per attempt); the runs so far are listed with their throughput, so
    pressing Send with 1, 2, 4, 8 … connections builds the throughput curve by hand. Inside
    Jupyter the batch runs on the kernel's event loop (the page stays responsive); in a plain
    script Send returns when it is done.

    Args:
        server: The :class:`~smtplab.server.LabServer` to send to.
        connections: The initial number of connections.
        messages: The initial number of messages.
        most: The largest number of connections the field accepts.

    Attributes:
        results: Every batch sent so far, oldest first (:class:`~smtplab.parallel.BatchResult`).
        figure: The latest timeline (a matplotlib figure), or ``None``.
        last_future: A :class:`concurrent.futures.Future` of the latest batch.
        sent: A :class:`threading.Event`, set whenever a batch is over (whatever the outcome).
    """

    def __init__(
        self, server: LabServer, *, connections: int = 4, messages: int = 32, most: int = 16
    ) -> None:
        if not isinstance(server, LabServer):
            raise TypeError(f"BatchPanel sends to a LabServer, not {type(server).__name__}")
        self.server = server
        self.connections = ipywidgets.BoundedIntText(
            value=connections, min=1, max=most, description="Connections", style={"description_width": "7em"}
        )
        self.messages = ipywidgets.BoundedIntText(
            value=messages, min=1, max=1000, description="Messages", style={"description_width": "7em"}
        )
        self.connections.add_class("smtplab-batch-connections")
        self.messages.add_class("smtplab-batch-messages")
        for field in (self.connections, self.messages):
            field.layout.width = "14em"
        self.send_button = ipywidgets.Button(
            description="Send batch",
            icon="paper-plane",
            button_style="primary",
            tooltip="smtplab.send_many(...)",
        )
        self.summary = ipywidgets.HTML()
        self.runs = ipywidgets.HTML()
        self.image = ipywidgets.Image(format="png", layout=ipywidgets.Layout(max_width="100%"))
        self.results: list[BatchResult] = []
        self.figure: Any = None
        self.last_future: concurrent.futures.Future[BatchResult] | None = None
        self.sent = threading.Event()
        self._task: asyncio.Task[None] | None = None
        super().__init__(
            [
                ipywidgets.HBox(
                    [self.connections, self.messages, self.send_button], layout={"align_items": "center"}
                ),
                self.summary,
                self.image,
                self.runs,
            ]
        )
        self.add_class("smtplab-batch-panel")
        self.send_button.on_click(self._on_send_button_click)
        self.image.layout.display = "none"

    def submit(self) -> concurrent.futures.Future[BatchResult]:
        """What Send does; returns a future of the :class:`~smtplab.parallel.BatchResult`.

        With an event loop running in this thread (a Jupyter kernel) the batch is scheduled on
        it and the future completes later — in a notebook cell, ``await
        asyncio.wrap_future(panel.submit())``. Without one it is done on return.
        """
        future: concurrent.futures.Future[BatchResult] = concurrent.futures.Future()
        self.last_future = future
        self.sent.clear()
        self.hide_error()
        connections, count = int(self.connections.value), int(self.messages.value)
        messages = batch(count)
        self.send_button.disabled = True
        self.summary.value = (
            f'<span style="opacity:0.8">sending {count} messages over {connections} connections…</span>'
        )
        options = {"connections": connections, "progress": False}
        loop = running_loop()
        if loop is not None:
            self._task = loop.create_task(self._send_async(messages, options, future))
        else:
            try:
                result = send_many_sync(self.server, messages, **options)
            except Exception as error:  # noqa: BLE001 - shown in the widget and set on the future
                self._finish(future, None, error)
            else:
                self._finish(future, result, None)
        return future

    async def _send_async(
        self, messages: list[Any], options: dict[str, Any], future: concurrent.futures.Future[BatchResult]
    ) -> None:
        try:
            result = await send_many(self.server, messages, **options)
        except asyncio.CancelledError:  # the kernel is shutting down
            future.cancel()
            self.sent.set()
            raise
        except Exception as error:  # noqa: BLE001 - reported, never lost in a task
            self._finish(future, None, error)
        else:
            self._finish(future, result, None)

    def _finish(
        self,
        future: concurrent.futures.Future[BatchResult],
        result: BatchResult | None,
        error: BaseException | None,
    ) -> None:
        self.send_button.disabled = False
        try:
            if error is not None:
                self.summary.value = (
                    '<span style="font-size:13px"><b>Not sent</b>: the error is below.</span>'
                )
                self.report_error(error)
            else:
                assert result is not None
                self.results.append(result)
                self._show(result)
        finally:
            self.sent.set()
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)  # type: ignore[arg-type]

    def _show(self, result: BatchResult) -> None:
        """The timeline and the runs table first, the summary last: once it says so, all is drawn."""
        from smtplab.plot import png, timeline

        self.figure = timeline(result)
        self.image.value = png(self.figure)
        self.image.layout.display = None
        cell = '<td style="padding:1px 10px;text-align:right">'
        rows = "".join(
            f"<tr>{cell}{run + 1}</td>{cell}{len(r.workers)}</td>{cell}{len(r)}</td>"
            f"{cell}{r.elapsed:.2f} s</td>{cell}{r.throughput:.0f}</td></tr>"
            for run, r in enumerate(self.results)
        )
        head = "".join(
            f'<th style="padding:1px 10px;text-align:right">{title}</th>'
            for title in ("run", "connections", "messages", "time", "messages/s")
        )
        self.runs.value = (
            '<table style="font-size:12px;border-collapse:collapse">'
            f"<thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"
        )
        trouble = result.connection_trouble
        if not result.admitted:  # nothing got through: say why (a stopped server says so)
            trouble = next((report.retired for report in result.workers if report.retired), trouble)
        extra = f"; {trouble}" if trouble else ""
        self.summary.value = (
            f'<span style="font-size:13px"><b>{escape(result.tally)}</b> — {len(result)} messages over '
            f"{len(result.workers)} connections ({result.admitted} admitted) in {result.elapsed:.2f} s: "
            f"<b>{result.throughput:.0f} messages/s</b>, {result.retries} retries{escape(extra)}</span>"
        )

    @reports_errors
    def _on_send_button_click(self, button: ipywidgets.Button) -> None:
        self.submit()
