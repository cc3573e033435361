"""LoopMonitor driven from Python: it measures by itself, shows a stall in words, pauses and resets."""

from __future__ import annotations

import threading

import pytest

import smtplab
from smtplab.lag import BLOCKED
from smtplab.widgets import LoopMonitor
from tests.test_widgets import wait_until


@pytest.fixture
def monitor(lab_server):
    widget = LoopMonitor(lab_server, interval=0.02)
    try:
        yield widget
    finally:
        widget.close()


def test_it_measures_by_itself_and_draws_what_it_measured(monitor, lab_server):
    assert monitor.meter.running and monitor.pause_button.description == "Pause"
    assert f"lab server</b> {lab_server.name}" in monitor.caption.value
    # Whether the loop was blocked depends on the machine too (a busy one stalls every thread):
    # only the shape of what is shown is checked here; the stall itself is made below.
    wait_until(monitor.verdict, "value", lambda text: "longest lag since measuring began:" in text)
    wait_until(monitor.sparkline, "value", lambda text: "<polyline" in text)
    assert "lag now:" in monitor.bar.value and "measuring every 20 ms" in monitor.caption.value


def test_a_blocked_loop_shows_while_it_lasts_and_in_words_afterwards(monitor, lab_server):
    gate, measured = threading.Event(), threading.Event()
    monitor.meter.observe(lambda m: any(s.lag >= BLOCKED for s in m.samples) and measured.set())
    try:
        lab_server.call_in_loop(gate.wait, 30)
        # Held until the lag itself reads "blocked" (live), then let go.
        wait_until(monitor.bar, "value", lambda text: "(blocked) — waiting now: nothing else runs" in text)
    finally:
        gate.set()
    text = wait_until(monitor.verdict, "value", lambda text: "the loop was blocked for" in text)
    assert "no client was served meanwhile" in text
    assert measured.wait(10), "the stall was measured once it ended"
    monitor.pause_button.click()
    monitor.reset_button.click()
    assert monitor.resets == 1
    assert "no measurement since the last reset yet" in monitor.verdict.value


def test_pause_and_resume(monitor):
    monitor.pause_button.click()
    assert not monitor.meter.running
    assert monitor.pause_button.description == "Resume" and "paused" in monitor.caption.value
    monitor.pause_button.click()
    assert monitor.meter.running and monitor.pause_button.description == "Pause"


def test_it_stops_with_the_server_and_says_how_to_resume():
    server = smtplab.start_server(name="monitored")
    monitor = LoopMonitor(server, interval=0.01)
    try:
        server.stop()
        wait_until(monitor.caption, "value", lambda text: "the server stopped, so did measuring" in text)
        monitor.pause_button.click()  # Resume, with the server still stopped
        assert "call server.start() first" in monitor.error_line.value
        server.start()
        monitor.pause_button.click()
        assert monitor.meter.running and monitor.error_line.value == ""
    finally:
        monitor.close()
        server.stop()
    assert not monitor.meter.running, "closing stops the measuring"


def test_a_monitor_of_a_stopped_server_waits_to_be_resumed():
    server = smtplab.LabServer(name="not-started")
    monitor = LoopMonitor(server)
    assert not monitor.meter.running and monitor.pause_button.description == "Resume"
    assert "no measurement yet" in monitor.verdict.value
    monitor.stop()
    monitor.close()


def test_it_needs_a_lab_server():
    with pytest.raises(TypeError, match="LoopMonitor watches a LabServer"):
        LoopMonitor(None)  # type: ignore[arg-type]
