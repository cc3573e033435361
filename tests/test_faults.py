"""Fault injection: every stage, reply or hang-up, with the standard library's smtplib as the client."""

from __future__ import annotations

import smtplib
import socket
import threading
from typing import Any

import pytest

import smtplab
from smtplab import protocol
from smtplab._aiosmtpd import STAGES as ADAPTER_STAGES
from smtplab.faults import STAGES, SUGGESTED_REPLIES, Fault, FaultRules, check_stage

ALICE = ("alice", "wonderland")
CONTENT = "Subject: faults\r\n\r\nHello.\r\n"


def deliver(server: smtplab.LabServer, recipients: tuple[str, ...] = ("bob@example.test",)) -> dict:
    """One message through smtplib, logging in first (PLAIN, the only mechanism asked for)."""
    with smtplib.SMTP(*server.address, timeout=5) as client:
        client.ehlo()
        client.user, client.password = ALICE
        code, text = client.auth("PLAIN", client.auth_plain)
        assert code == 235, (code, text)
        return client.sendmail("alice@example.test", list(recipients), CONTENT)


@pytest.fixture
def auth_server() -> Any:
    server = smtplab.start_server(name="faults", auth=dict([ALICE]), auth_require_tls=False)
    try:
        yield server
    finally:
        server.stop()


def server_text(server: smtplab.LabServer) -> str:
    return server.transcripts[-1].text(annotate=False)


# What smtplib does when each stage refuses: the exception (and its code), or None if it goes on.
REFUSALS = [
    ("connect", "554 5.3.2 No SMTP service here", smtplib.SMTPConnectError),
    ("EHLO", "502 5.5.1 EHLO not implemented, try HELO", None),  # falls back to HELO
    ("MAIL", "451 4.3.0 Temporary failure, try again later", smtplib.SMTPSenderRefused),
    ("RCPT", "550 5.1.1 No such user here", smtplib.SMTPRecipientsRefused),
    ("DATA", "554 5.5.1 No valid recipients", smtplib.SMTPDataError),
    ("end of data", "451 4.3.0 Temporary failure, try again later", smtplib.SMTPDataError),
    ("AUTH", "454 4.7.0 Temporary authentication failure", smtplib.SMTPAuthenticationError),
]


def test_the_stages_are_the_adapters_and_each_has_suggested_replies():
    assert STAGES == ADAPTER_STAGES == tuple(stage for stage, _, _ in REFUSALS)
    assert set(SUGGESTED_REPLIES) == set(STAGES)
    for stage, replies in SUGGESTED_REPLIES.items():
        for reply in replies:
            parsed = protocol.parse_reply_line(reply)
            assert parsed is not None and parsed.code >= 400 and parsed.enhanced, (stage, reply)
            FaultRules().add(stage, reply=reply)  # every suggestion is accepted


@pytest.mark.parametrize(("stage", "reply", "error"), REFUSALS, ids=[s for s, _, _ in REFUSALS])
def test_an_injected_reply_replaces_the_servers_at_each_stage(auth_server, stage, reply, error):
    fault = auth_server.inject(stage, reply=reply)
    assert auth_server.faults == [fault]
    code = int(reply[:3])
    if stage == "EHLO":
        # smtplib falls back to HELO after a refused EHLO (RFC 5321 §4.1.4), which is no stage:
        # the session goes on without extensions, so its AUTH now fails for want of the extension.
        with smtplib.SMTP(*auth_server.address, timeout=5) as client:
            assert client.ehlo()[0] == code
            assert client.helo()[0] == 250
            assert client.sendmail("alice@example.test", ["bob@example.test"], CONTENT) == {}
        assert len(auth_server.mailbox) == 1
    else:
        with pytest.raises(error) as raised:
            deliver(auth_server)
        got = raised.value
        codes = [got.smtp_code] if hasattr(got, "smtp_code") else [c for c, _ in got.recipients.values()]
        assert codes == [code]
        assert len(auth_server.mailbox) == 0, "nothing is stored when a stage refuses"
    assert fault.fired == 1 and fault.seen == 1 and not fault.armed
    assert auth_server.faults == []
    text = server_text(auth_server)
    assert f"** the lab intervenes at {stage}: injected fault #1 (server.inject): reply {reply}" in text
    assert f"** reply given by the lab, not by the session: {reply}\n<- {reply}" in text


@pytest.mark.parametrize("stage", STAGES)
def test_an_injected_hang_up_closes_the_connection_at_each_stage(auth_server, stage):
    fault = auth_server.inject(stage, disconnect=True)
    with pytest.raises(smtplib.SMTPServerDisconnected):
        deliver(auth_server)
    assert fault.fired == 1 and len(auth_server.mailbox) == 0
    text = server_text(auth_server)
    assert (
        f"** the lab intervenes at {stage}: injected fault #1 (server.inject): hang up without a reply"
        in text
    )
    assert f"** the lab closes the connection at {stage}\n** connection closed" in text
    assert deliver(auth_server) == {}, "the next session is served as usual"
    assert len(auth_server.mailbox) == 1


def test_a_delay_holds_one_session_back_while_others_are_served(auth_server):
    # The fault waits far longer than the test; stopping the server ends the wait.
    held = threading.Event()
    auth_server.fault_rules.observe(lambda fault, event: event == "fired" and held.set())
    auth_server.inject("MAIL", delay=60.0)
    outcome: list[BaseException | dict] = []

    def slow() -> None:
        try:
            outcome.append(deliver(auth_server))
        except (smtplib.SMTPException, OSError) as error:
            outcome.append(error)

    thread = threading.Thread(target=slow)
    thread.start()
    assert held.wait(10), "the fault never fired"
    assert deliver(auth_server) == {}  # another session, served while the first one waits
    assert not outcome, "the held session has not been answered"
    assert len(auth_server.mailbox) == 1
    auth_server.stop()
    thread.join(10)
    assert isinstance(outcome[0], smtplib.SMTPServerDisconnected)
    assert "wait 60 s, then reply as usual" in auth_server.transcripts[0].text(annotate=False)


def test_a_short_delay_then_the_usual_reply(lab_server):
    lab_server.inject("RCPT", delay=0.01)
    with smtplib.SMTP(*lab_server.address, timeout=5) as client:
        assert client.sendmail("alice@example.test", ["bob@example.test"], CONTENT) == {}
    assert len(lab_server.mailbox) == 1
    assert "injected fault #1 (server.inject): wait 0.01 s, then reply as usual" in server_text(lab_server)


def test_a_fault_fires_as_many_times_as_asked_then_is_used_up(lab_server):
    fault = lab_server.inject("RCPT", reply=550, times=2)
    recipients = [f"user{n}@example.test" for n in range(4)]
    with smtplib.SMTP(*lab_server.address, timeout=5) as client:
        refused = client.sendmail("alice@example.test", recipients, CONTENT)
    assert sorted(refused) == recipients[:2]
    assert refused[recipients[0]] == (
        550,
        b"5.0.0 Requested action not taken: mailbox unavailable (a fault injected by the lab)",
    )
    assert lab_server.mailbox.latest.rcpt_tos == tuple(recipients[2:])
    assert (fault.fired, fault.remaining, fault.armed) == (2, 0, False)
    assert lab_server.faults == []


def test_every_time_until_cancelled_and_cancel_is_safe_twice(lab_server):
    fault = lab_server.inject("MAIL", reply="451 4.3.0 Try again later", times=None)
    for _ in range(3):
        with smtplib.SMTP(*lab_server.address, timeout=5) as client, pytest.raises(smtplib.SMTPSenderRefused):
            client.sendmail("alice@example.test", ["bob@example.test"], CONTENT)
    assert fault.fired == 3 and fault.remaining is None and lab_server.faults == [fault]
    assert fault.cancel() is True
    assert fault.cancel() is False
    assert lab_server.faults == [] and fault.cancelled and fault.remaining == 0
    with smtplib.SMTP(*lab_server.address, timeout=5) as client:
        assert client.sendmail("alice@example.test", ["bob@example.test"], CONTENT) == {}
    assert "cancelled" in repr(fault)


def test_a_with_block_cancels_its_fault(lab_server):
    with lab_server.inject("RCPT", reply=550) as fault:
        assert lab_server.faults == [fault]
    assert lab_server.faults == [] and fault.fired == 0


def test_a_fault_armed_during_a_session_applies_to_it(lab_server):
    with smtplib.SMTP(*lab_server.address, timeout=5) as client:
        client.ehlo()
        lab_server.inject("RCPT", reply="550 5.1.1 No such user here")
        assert client.mail("alice@example.test")[0] == 250
        assert client.rcpt("bob@example.test") == (550, b"5.1.1 No such user here")
        assert client.rcpt("bob@example.test")[0] == 250


def test_faults_are_asked_oldest_first_and_survive_a_restart(lab_server):
    first = lab_server.inject("RCPT", reply="550 5.1.1 first")
    second = lab_server.inject("RCPT", reply="550 5.1.1 second")
    assert lab_server.faults == [first, second]
    assert (first.number, second.number) == (1, 2)
    lab_server.restart()
    with smtplib.SMTP(*lab_server.address, timeout=5) as client:
        client.ehlo()
        client.mail("alice@example.test")
        assert client.rcpt("a@example.test")[1] == b"5.1.1 first"
        assert client.rcpt("b@example.test")[1] == b"5.1.1 second"
        assert client.rcpt("c@example.test")[0] == 250


def rcpt_pattern(server: smtplab.LabServer, count: int) -> list[int]:
    with smtplib.SMTP(*server.address, timeout=5) as client:
        client.ehlo()
        client.mail("alice@example.test")
        return [client.rcpt(f"user{n}@example.test")[0] for n in range(count)]


def test_a_seeded_probability_gives_the_same_run_every_time(lab_server):
    fault = lab_server.inject("RCPT", reply=451, times=None, probability=0.3, seed=7)
    first = rcpt_pattern(lab_server, 40)
    fault.cancel()
    again = lab_server.inject("RCPT", reply=451, times=None, probability=0.3, seed=7)
    assert rcpt_pattern(lab_server, 40) == first
    assert 0 < first.count(451) < 40 and set(first) == {250, 451}
    assert (fault.seen, fault.fired) == (40, first.count(451)) == (again.seen, again.fired)
    drawn = lab_server.inject("RCPT", reply=451, probability=0.5)
    assert isinstance(drawn.seed, int), "a drawn seed is kept, to replay the run"
    assert "probability 0.5 (seed" in drawn.describe()


def test_observers_and_history_see_arming_firing_and_cancelling(lab_server):
    events: list[tuple[int, str]] = []
    rules = lab_server.fault_rules
    rules.observe(lambda fault, event: events.append((fault.number, event)))
    fault = lab_server.inject("RCPT", reply=550)
    other = lab_server.inject("DATA", delay=0.5)  # never reached: no DATA is sent
    rcpt_pattern(lab_server, 1)
    other.cancel()
    assert events == [(1, "armed"), (2, "armed"), (1, "fired"), (2, "cancelled")]
    (firing,) = rules.history
    assert (firing.fault, firing.stage, firing.action) == (fault.number, "RCPT", f"reply {fault.reply}")
    assert firing.peer[0] == "127.0.0.1"


def test_an_observer_that_fails_never_breaks_the_session(lab_server, caplog):
    lab_server.fault_rules.observe(lambda fault, event: 1 / 0)
    lab_server.inject("RCPT", reply=550)
    assert rcpt_pattern(lab_server, 2) == [550, 250]
    assert "an observer of a lab server's faults failed" in caplog.text


def test_a_reply_code_alone_becomes_a_whole_refusal_for_every_code():
    rules = FaultRules()
    for code in protocol.REPLY_CODES:
        if code >= 400:
            line = rules.add("RCPT", reply=code).reply
            assert line is not None and line.isascii() and line.startswith(f"{code} {code // 100}.0.0 ")
            assert protocol.parse_reply_line(line).last


def test_stage_names_are_forgiving_about_case_and_dashes():
    assert check_stage("rcpt") == "RCPT"
    assert check_stage("end-of-data") == "end of data"
    assert check_stage("End_Of_Data") == "end of data"
    assert check_stage("Connect") == "connect"


@pytest.mark.parametrize(
    ("arguments", "error", "words"),
    [
        (
            {"stage": "HELO", "reply": 550},
            ValueError,
            "Did you mean 'EHLO'? The stages are: 'connect', 'EHLO'",
        ),
        ({"stage": "QUIT", "reply": 550}, ValueError, "'end of data', 'AUTH'"),
        ({"stage": 3, "reply": 550}, ValueError, "is not a stage"),
        ({"stage": "RCPT", "reply": 250}, ValueError, "a code from 400 to 559"),
        ({"stage": "RCPT", "reply": 600}, ValueError, "reply=550"),
        ({"stage": "RCPT", "reply": "250 OK"}, ValueError, "is not a refusal"),
        ({"stage": "RCPT", "reply": "no such user"}, ValueError, "'550 5.1.1 No such user here'"),
        ({"stage": "RCPT", "reply": "550-5.1.1 more to come"}, ValueError, "is not a refusal"),
        ({"stage": "RCPT", "reply": "550 a\r\n250 OK"}, ValueError, "one line of printable ASCII"),
        ({"stage": "RCPT", "reply": "550 Jörg unknown"}, ValueError, "contains 'ö'"),
        ({"stage": "RCPT", "reply": 5.5}, TypeError, "or just its code (550)"),
        ({"stage": "RCPT", "reply": 550, "disconnect": True}, ValueError, "not both"),
        ({"stage": "RCPT"}, ValueError, "must do something"),
        ({"stage": "RCPT", "delay": -1}, ValueError, "zero or more"),
        ({"stage": "RCPT", "reply": 550, "times": 0}, ValueError, "None for every time"),
        ({"stage": "RCPT", "reply": 550, "probability": 0}, ValueError, "more than 0 and at most 1"),
        ({"stage": "RCPT", "reply": 550, "probability": 1.5}, ValueError, "at most 1"),
        ({"stage": "RCPT", "reply": 550, "seed": "x"}, TypeError, "seed must be an int"),
        ({"stage": "RCPT", "disconnect": "yes"}, TypeError, "True or False"),
    ],
)
def test_a_fault_it_cannot_arm_is_refused_saying_what_it_can_take(arguments, error, words):
    server = smtplab.LabServer(name="never-started")
    with pytest.raises(error) as raised:
        server.inject(**arguments)
    assert words in str(raised.value)
    assert server.faults == []


def test_every_fix_a_stage_error_suggests_works():
    server = smtplab.LabServer(name="never-started")
    for stage in STAGES:
        fault = server.inject(stage, reply=SUGGESTED_REPLIES[stage][0])
        assert isinstance(fault, Fault) and fault.stage == stage
    assert [fault.stage for fault in server.faults] == list(STAGES)


def test_a_server_with_nothing_armed_answers_as_usual(lab_server):
    with socket.create_connection(lab_server.address, timeout=5) as sock:
        assert sock.recv(200).startswith(b"220 ")
    assert lab_server.faults == []
    assert "intervenes" not in server_text(lab_server)
