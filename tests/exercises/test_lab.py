"""run_in_lab: learner code against a private server, in a thread, stopped in time, nothing left."""

from __future__ import annotations

import asyncio
import smtplib
import socket
import threading

import aiosmtplib
import pytest

import smtplab
from smtplab.exercises import NotYet, learner_function, run_in_lab
from smtplab.exercises import lab as lab_module

MESSAGE = "Subject: hi\r\n\r\nhello\r\n"


def send_with_smtplib(address):
    with smtplib.SMTP(*address) as client:
        return client.sendmail("a@example.test", ["b@example.test"], MESSAGE)


def test_plain_code_gets_the_server_and_its_result_is_kept():
    own = smtplab.start_server()  # the learner's own "lab" server must survive the check
    try:
        trial = run_in_lab(lambda server: send_with_smtplib(server.address))
        assert own.running and smtplab.running_servers() == [own]
    finally:
        own.stop()
    assert trial.finished and trial.result == {}
    assert not trial.server.running and trial.server.name.startswith("exercise-check-")
    assert [m.rcpt_tos for m in trial.messages] == [("b@example.test",)]
    assert len(trial.transcripts) == 1 and not trial.tapped and trial.connections == []
    assert own.mailbox.received == 0


def test_async_code_is_awaited_on_a_loop_of_its_own():
    async def send(server):
        async with smtplab.Client(server) as client:
            result = await client.send("a@example.test", "b@example.test", MESSAGE)
        return result.ok, threading.current_thread().name

    trial = run_in_lab(send)
    ok, thread = trial.result
    assert ok and thread.startswith("smtplab-exercise-") and len(trial.mailbox) == 1


def test_address_goes_through_the_wire_tap():
    trial = run_in_lab(send_with_smtplib, give="address")
    assert trial.tapped and len(trial.connections) == 1
    assert b"rcpt TO:<b@example.test>\r\n" in trial.connections[0].sent_by("client")
    assert trial.connections[0].sent_by("server").startswith(b"220 ")
    assert len(trial.messages) == 1


def test_options_and_before_shape_the_private_server():
    seen = []
    trial = run_in_lab(
        lambda server: (server.tls, len(server.mailbox)),
        options={"tls": "starttls"},
        before=lambda server: seen.append(server.name),
    )
    assert trial.result == ("starttls", 0) and seen == [trial.server.name]


def test_async_code_that_waits_for_ever_is_cancelled():
    async def waits(server):
        await asyncio.Event().wait()

    with pytest.raises(NotYet) as caught:
        run_in_lab(waits, timeout=0.3)
    assert caught.value.mistake == "timed-out" and "0.3 s" in caught.value.message
    trial = run_in_lab(waits, timeout=0.3, allow_errors=True)
    assert trial.timed_out and not trial.still_running and not trial.finished


def test_code_blocked_on_the_network_is_woken_by_stopping_the_server():
    def reads_for_ever(address):
        with socket.create_connection(address) as sock:
            while sock.recv(1000):  # the greeting, then nothing until the server goes away
                pass
        return "woken"

    trial = run_in_lab(reads_for_ever, give="address", timeout=0.3, allow_errors=True)
    assert trial.timed_out and not trial.still_running and trial.result == "woken"


def test_a_busy_loop_is_reported_as_still_running(monkeypatch):
    monkeypatch.setattr(lab_module, "GRACE", 0.1)
    release = threading.Event()

    def spins(server):
        while not release.is_set():  # bounded by the test: released below
            pass

    try:
        with pytest.raises(NotYet) as caught:
            run_in_lab(spins, timeout=0.2)
    finally:
        release.set()
        for thread in threading.enumerate():
            if thread.name.startswith("smtplab-exercise-"):
                thread.join(10)
    assert caught.value.mistake == "still-running" and "still alive" in caught.value.message


def test_an_exception_keeps_the_learner_s_lines_only():
    async def fails(server):
        async with smtplab.Client(server) as client:
            await client.ehlo()
        raise ValueError("no recipients given")

    with pytest.raises(NotYet) as caught:
        run_in_lab(fails)
    finding = caught.value
    assert (
        finding.mistake == "raised" and finding.message == "your code raised ValueError: no recipients given"
    )
    assert "in fails" in "\n".join(finding.evidence) and "ValueError: no recipients given" in finding.evidence
    assert not any("/asyncio/" in line or "exercises/lab.py" in line for line in finding.evidence)
    assert any(line.startswith("-> EHLO") for line in finding.evidence)  # what the server heard


def test_a_forgotten_await_is_noticed():
    async def forgets(server):
        async with smtplab.Client(server) as client:
            client.ehlo()

    trial = run_in_lab(forgets)
    assert trial.never_awaited() == ["Client.ehlo"]


def test_sloppy_code_leaves_nothing_open():
    """Sockets and connections the code never closes are collected by the runner, quietly."""

    def never_closes(address):
        client = smtplib.SMTP(*address)
        client.ehlo()
        return "left open"

    async def never_quits(server):
        client = aiosmtplib.SMTP(hostname=server.host, port=server.port, start_tls=False)
        await client.connect()
        return "left open"

    assert run_in_lab(never_closes, give="address").result == "left open"
    assert run_in_lab(never_quits).result == "left open"
    # the autouse fixture fails this test if a socket or transport was left for the collector


def test_it_works_inside_a_running_event_loop_as_in_jupyter():
    async def send(server):
        async with smtplab.Client(server) as client:
            return (await client.send("a@example.test", "b@example.test", MESSAGE)).ok

    async def cell():
        return run_in_lab(send).result

    assert asyncio.run(cell()) is True


def test_learner_function_names_the_mistake():
    async def coroutine_function(server):
        return server

    with pytest.raises(NotYet) as caught:
        learner_function(coroutine_function(None), "server")  # closed: no "never awaited" warning
    assert caught.value.mistake == "called-not-passed"
    with pytest.raises(NotYet) as caught:
        learner_function(None, "server")
    assert caught.value.mistake == "not-a-function" and "NoneType None" in caught.value.message
    with pytest.raises(NotYet) as caught:
        learner_function(lambda: None, "mailbox", "recipient")
    assert caught.value.mistake == "wrong-parameters" and "(mailbox, recipient)" in caught.value.message
    assert learner_function(print, "x") is print  # builtins: the call decides


def test_options_are_checked():
    with pytest.raises(ValueError, match="give must be"):
        run_in_lab(print, give="socket")
    with pytest.raises(ValueError, match="greeting_delay needs give='address'"):
        run_in_lab(print, greeting_delay=0.1)


def test_code_that_never_reached_the_server_is_named():
    async def forgets_await(server):
        smtplab.Client(server).connect()  # a coroutine, never awaited

    with pytest.raises(NotYet) as caught:
        run_in_lab(forgets_await).raise_if_never_connected()
    assert caught.value.mistake == "not-awaited" and "Client.connect()" in caught.value.message
    with pytest.raises(NotYet) as caught:
        run_in_lab(lambda server: None).raise_if_never_connected()
    assert caught.value.mistake == "never-connected"
    run_in_lab(
        lambda server: send_with_smtplib(server.address)
    ).raise_if_never_connected()  # connected: quiet
