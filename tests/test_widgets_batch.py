"""BatchPanel and the timeline plot: a batch sent at a click, drawn one lane per connection."""

from __future__ import annotations

import asyncio
import re

import matplotlib
import pytest

import smtplab
from smtplab.plot import STYLES, png, timeline
from smtplab.widgets import BatchPanel
from smtplab.widgets.batch_panel import batch

matplotlib.use("Agg")


class Deferring:
    """451 to the first try of message 3, 550 to message 5, 250 otherwise."""

    def __init__(self) -> None:
        self.deferred = False

    async def handle_DATA(self, server, session, envelope):
        if b"batch message 5\r\n" in envelope.content:
            return "550 5.7.1 not this one"
        if b"batch message 3\r\n" in envelope.content and not self.deferred:
            self.deferred = True
            return "451 4.3.0 try again later"
        return "250 OK"


def lanes(figure) -> dict[float, list[str]]:
    """Each lane's bars (by y) and the words written in the axes."""
    (ax,) = figure.axes
    bars: dict[float, list] = {}
    for patch in ax.patches:
        bars.setdefault(round(patch.get_y() + patch.get_height() / 2, 3), []).append(patch)
    return bars


def test_the_panel_sends_a_batch_and_draws_its_timeline_at_a_click():
    limits = smtplab.Limits(max_connections=2)
    with smtplab.start_server(handler=Deferring(), limits=limits, name="batch-panel") as server:
        panel = BatchPanel(server, connections=4, messages=8)
        panel.send_button.click()
        assert panel.sent.is_set() and len(panel.results) == 1
        result = panel.results[0]
        assert server.mailbox.wait_for(7) and len(server.mailbox) == 7
    assert result.counts["accepted"] == 7 and result.counts["refused"] == 1 and result.retries == 1
    text = panel.summary.value
    assert "7 accepted, 1 refused" in text and "8 messages over 4 connections (2 admitted)" in text
    assert "messages/s" in text and "refused a connection" in text and "with 421 (at its cap)" in text
    assert bytes(panel.image.value).startswith(b"\x89PNG") and panel.image.layout.display is None
    assert re.search(r">1</td><td[^>]*>4</td><td[^>]*>8</td>", panel.runs.value)
    # the figure: bars only in the two admitted lanes, one per attempt, words for the others
    bars = lanes(panel.figure)
    assert set(bars) <= {0.0, 1.0} and sum(len(b) for b in bars.values()) == 9
    (ax,) = panel.figure.axes
    words = [t.get_text() for t in ax.texts]
    assert "451" in words and "550" in words
    assert sum("no connection: refused" in w and "421" in w for w in words) == 2
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == [STYLES[o][0] for o in ("accepted", "deferred", "refused")]
    assert [label.get_text() for label in ax.get_yticklabels()] == [f"connection {n}" for n in range(1, 5)]
    panel.close()


def test_a_failed_batch_is_reported_in_one_line_and_the_next_click_clears_it():
    server = smtplab.start_server(name="batch-gone", tls="implicit")
    try:
        panel = BatchPanel(server, connections=2, messages=2)
        panel.send_button.click()  # a plain client against implicit TLS: a setting to fix
        assert panel.sent.is_set() and not panel.results
        assert "Not sent" in panel.summary.value and "TLSMismatchError" in panel.error_line.value
        with pytest.raises(smtplab.TLSMismatchError):
            panel.last_future.result(timeout=0)
    finally:
        server.stop()
    with smtplab.start_server(name="batch-back") as server:
        panel.server = server
        panel.send_button.click()
        assert panel.results and panel.error_line.value == "" and panel._error_row.layout.display == "none"
    panel.close()


def test_a_click_after_the_server_stopped_says_that_it_stopped():
    with smtplab.start_server(name="batch-stopped") as server:
        panel = BatchPanel(server, connections=2, messages=2)
    panel.send_button.click()
    assert panel.sent.is_set() and panel.results[-1].counts["not sent"] == 2
    text = panel.summary.value
    assert (
        "2 not sent" in text and "is stopped: call server.start()" in text and not re.search(r"\b421\b", text)
    )  # a port may hold the digits
    panel.close()


def test_in_a_running_loop_the_batch_runs_as_a_task():
    async def scenario(server: smtplab.LabServer) -> BatchPanel:
        panel = BatchPanel(server, connections=3, messages=6)
        future = panel.submit()
        assert not future.done() and panel.send_button.disabled  # scheduled, not done yet
        result = await asyncio.wrap_future(future)
        assert result.ok and not panel.send_button.disabled
        return panel

    with smtplab.start_server(name="batch-loop") as server:
        panel = asyncio.run(scenario(server))
    assert "6 accepted" in panel.summary.value
    panel.close()


def test_timeline_draws_on_given_axes_and_refuses_other_things():
    import matplotlib.pyplot as plt

    with smtplab.start_server(name="batch-axes") as server:
        result = smtplab.send_many_sync(server, batch(3), connections=1, progress=False)
    fig, ax = plt.subplots()
    try:
        assert timeline(result, ax=ax, title="mine") is fig and ax.get_title() == "mine"
        assert len(ax.patches) == 3 and plt.fignum_exists(fig.number)  # a figure of yours stays open
    finally:
        plt.close(fig)
    made = timeline(result)
    assert not plt.fignum_exists(made.number)  # closed: Jupyter shows it once, as the result
    assert png(made).startswith(b"\x89PNG")
    with pytest.raises(TypeError, match="BatchResult"):
        timeline([])
