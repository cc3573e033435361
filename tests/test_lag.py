"""The loop lag meter: measured on the server's own loop, live during a stall, stopped cleanly."""

from __future__ import annotations

import threading

import pytest

import smtplab
from smtplab.lag import BLOCKED, SLUGGISH, LagMeter, describe_lag


def when(meter: LagMeter, condition) -> threading.Event:
    """An event set once ``condition(meter)`` holds after a notification."""
    happened = threading.Event()
    meter.observe(lambda m: condition(m) and happened.set())
    return happened


def test_a_free_loop_is_measured_again_and_again(lab_server):
    meter = LagMeter(lab_server, interval=0.01)
    enough = when(meter, lambda m: len(m.samples) >= 3)
    assert meter.start() is meter and meter.running and meter.state == "measuring"
    try:
        assert enough.wait(10)
    finally:
        meter.stop()
    samples = meter.samples
    assert len(samples) >= 3 and all(s.lag >= 0 for s in samples)
    assert [s.time for s in samples] == sorted(s.time for s in samples)
    assert meter.worst == max(s.lag for s in samples) and meter.now == samples[-1].lag
    assert not meter.running and meter.state == "stopped"
    assert "stopped" in repr(meter) and "samples" in repr(meter)


def test_a_blocked_loop_shows_while_it_lasts_and_afterwards(lab_server):
    meter = LagMeter(lab_server, interval=0.02)
    stalled = when(meter, lambda m: m.waiting)
    gate = threading.Event()
    meter.start()
    try:
        blocked = lab_server.call_in_loop(gate.wait, 30)  # the loop runs nothing else meanwhile
        assert stalled.wait(10), "the meter never saw its job wait"
        assert meter.now > meter.interval and meter.worst > meter.interval  # live, during the stall
        measured = when(meter, lambda m: not m.waiting and m.samples and m.samples[-1].lag > m.interval)
        gate.set()
        assert blocked.result(10) is True
        assert measured.wait(10), "the stall never showed up as a measurement"
    finally:
        gate.set()
        meter.stop()
    assert max(s.lag for s in meter.samples) > meter.interval
    meter.reset()
    assert meter.samples == [] and meter.worst == 0.0 and meter.now == 0.0


def test_stop_returns_even_while_the_loop_is_blocked(lab_server):
    meter = LagMeter(lab_server, interval=0.01)
    stalled = when(meter, lambda m: m.waiting)
    gate = threading.Event()
    meter.start()
    try:
        lab_server.call_in_loop(gate.wait, 30)
        assert stalled.wait(10)
        meter.stop()  # does not wait for the loop
        assert not meter.running and meter.state == "stopped" and not meter.waiting
    finally:
        gate.set()
    meter.stop()  # twice is fine


def test_the_meter_stops_by_itself_when_the_server_stops():
    server = smtplab.start_server(name="lag-meter")
    meter = LagMeter(server, interval=0.01)
    ended = when(meter, lambda m: m.state == "server stopped")
    try:
        meter.start()
    finally:
        server.stop()
    assert ended.wait(10)
    meter.stop()
    assert meter.state == "server stopped" and not meter.running
    with pytest.raises(smtplab.ServerNotRunningError, match=r"server.start\(\) first"):
        meter.start()
    server.start()
    try:
        again = when(meter, lambda m: m.state == "measuring" and len(m.samples) > 0)
        meter.reset()
        meter.start()
        assert again.wait(10), "a meter starts again once its server is back"
    finally:
        meter.stop()
        server.stop()


def test_an_observer_that_fails_never_stops_the_measuring(lab_server, caplog):
    meter = LagMeter(lab_server, interval=0.01)
    meter.observe(lambda m: 1 / 0)
    enough = when(meter, lambda m: len(m.samples) >= 2)
    meter.start()
    try:
        assert enough.wait(10)
    finally:
        meter.stop()
    assert "an observer of a lag meter failed" in caplog.text


def test_lag_in_words():
    assert describe_lag(0.0) == "smooth"
    assert describe_lag(SLUGGISH) == "sluggish"
    assert describe_lag(BLOCKED) == "blocked"
    assert describe_lag(2.0) == "blocked"


@pytest.mark.parametrize(("options", "words"), [({"interval": 0}, "interval"), ({"keep": 1}, "keep")])
def test_options_it_cannot_take_are_refused(options, words):
    with pytest.raises(ValueError, match=words):
        LagMeter(smtplab.LabServer(name="never-started"), **options)
