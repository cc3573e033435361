"""send_many: a bounded pool of connections, 4xx retried with backoff, 5xx never, nothing lost or doubled."""

from __future__ import annotations

import asyncio
import email
import re
from collections import Counter
from email.message import EmailMessage
from typing import Any, ClassVar

import pytest

import smtplab
from smtplab.exercises.parallel_sending import RETRY_CASES
from smtplab.parallel import (
    ACCEPTED,
    GAVE_UP,
    NOT_SENT,
    PARTLY_ACCEPTED,
    REFUSED,
    Backoff,
    send_many,
    should_retry,
)
from tests.conftest import free_port, run

FAST = {"base": 0.001, "cap": 0.01}  # short waits: the tests check the rule, not the clock


def message(n: int, to: str = "bob@example.test") -> EmailMessage:
    mail = EmailMessage()
    mail["From"] = "alice@example.test"
    mail["To"] = to
    mail["Subject"] = f"message {n}"
    mail["X-Lab-Id"] = str(n)
    mail.set_content(f"This is message {n}.\n")
    return mail


def lab_id(envelope_or_message: Any) -> str:
    raw = getattr(envelope_or_message, "original_content", None) or envelope_or_message.raw
    return email.message_from_bytes(raw)["X-Lab-Id"]


class Faults:
    """451 to the first attempt of every 7th message, 550 to every message for nobody@, 250 otherwise."""

    def __init__(self) -> None:
        self.deferred: set[str] = set()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.startswith("nobody@"):
            return "550 5.1.1 <nobody@example.test>: no such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        ident = lab_id(envelope)
        if int(ident) % 7 == 0 and ident not in self.deferred:
            self.deferred.add(ident)
            return "451 4.3.0 Temporary local problem: try again"
        return "250 2.0.0 OK"


class Progress:
    """Stands in for tqdm.auto.tqdm; notes every update and how many tasks the loop runs then."""

    made: ClassVar[list[Progress]] = []

    def __init__(self, *, total: int, desc: str, unit: str) -> None:
        self.total, self.desc, self.updates, self.closed = total, desc, 0, False
        self.most_tasks = 0
        Progress.made.append(self)

    def update(self, n: int) -> None:
        self.updates += n
        self.most_tasks = max(self.most_tasks, len(asyncio.all_tasks()))

    def set_postfix_str(self, text: str, *, refresh: bool) -> None:
        self.postfix = text

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def progress(monkeypatch: pytest.MonkeyPatch) -> type[Progress]:
    import tqdm.auto

    Progress.made = []
    monkeypatch.setattr(tqdm.auto, "tqdm", Progress)
    return Progress


def test_500_messages_8_connections_a_cap_of_4_nothing_lost_nothing_doubled(progress):
    messages = [message(n, "nobody@example.test" if n % 50 == 3 else "bob@example.test") for n in range(500)]
    refused = {n for n in range(500) if n % 50 == 3}
    deferred = {n for n in range(500) if n % 7 == 0} - refused
    limits = smtplab.Limits(max_connections=4)
    with smtplab.start_server(handler=Faults(), limits=limits, name="batch") as server:
        result = asyncio.run(send_many(server, messages, connections=8, backoff=Backoff(seed=17)))
        captured = server.mailbox.wait_for(500 - len(refused))
    # every accepted message captured exactly once, by its unique id
    counts = Counter(lab_id(m) for m in captured)
    assert set(counts.values()) == {1}
    assert set(counts) == {str(d.index) for d in result.accepted}
    assert result.counts == {ACCEPTED: 490, PARTLY_ACCEPTED: 0, REFUSED: 10, GAVE_UP: 0, NOT_SENT: 0}
    # one entry per message, in input order
    assert [d.index for d in result] == list(range(500)) and all(
        d.message is m for d, m in zip(result, messages, strict=True)
    )
    for delivery in result:
        assert delivery.start <= delivery.end and 0 <= delivery.worker < 8 and delivery.connection >= 1
        if delivery.index in refused:  # 550: final, never retried
            assert delivery.status == REFUSED and delivery.tries == 1 and delivery.reply.code == 550
        elif delivery.index in deferred:  # 451 once, then accepted
            first, second = delivery.attempts
            assert first.outcome == "deferred" and first.reply.code == 451 and first.wait > 0
            assert second.outcome == ACCEPTED and second.start >= first.end + first.wait
        else:
            assert delivery.tries == 1 and delivery.accepted and delivery.reply.code == 250
    assert result.retries == len(deferred)
    # the cap: 4 workers got connections; the others met 421 and retired after the first try and
    # 3 retries, or stopped trying when the batch was done
    working = [w for w in result.workers if w.connections]
    refused = [w for w in result.workers if not w.connections]
    assert len(working) == 4 == result.admitted and len(refused) == 4
    assert all(w.attempts == 0 and 1 <= w.refusals <= 4 for w in refused)
    assert all("421" in w.retired for w in refused if w.retired)
    assert all(w.retired for w in refused if w.refusals == 4)
    assert sum(w.attempts for w in result.workers) == 500 + len(deferred)
    assert len(result.timeline()) == 500 + len(deferred)
    # a bounded pool, never one task per message; the bar counted every message
    (bar,) = progress.made
    assert bar.total == 500 and bar.updates == 500 and bar.closed
    # 8 workers, the batch and its waiter; aiosmtplib may run one helper task per worker (connect)
    assert bar.most_tasks <= 2 * 8 + 2
    assert "421" in result.summary() and "490 accepted, 10 refused" in repr(result)
    assert re.fullmatch(
        r"the server refused a connection \d+ times? with 421 \(at its cap\)", result.connection_trouble
    )


def test_a_4xx_is_retried_with_backoff_then_given_up():
    class AlwaysBusy:
        async def handle_DATA(self, server, session, envelope):
            return "452 4.3.1 Insufficient system storage"

    backoff = Backoff(base=0.001, factor=2, cap=0.004, jitter=0)
    with smtplab.start_server(handler=AlwaysBusy(), name="busy") as server:
        result = smtplab.send_many_sync(server, [message(1)], retries=3, backoff=backoff, progress=False)
    (delivery,) = result
    assert delivery.status == GAVE_UP and delivery.tries == 4 and delivery.reply.code == 452
    assert [a.wait for a in delivery.attempts] == [0.001, 0.002, 0.004, None]
    assert "still deferred after every retry" in delivery.error
    assert server.mailbox.received == 0


def test_a_5xx_is_never_retried():
    class Refuser:
        async def handle_DATA(self, server, session, envelope):
            return "554 5.7.1 Message refused"

    with smtplab.start_server(handler=Refuser(), name="refuser") as server:
        result = smtplab.send_many_sync(server, [message(n) for n in range(5)], retries=5, progress=False)
    assert [(d.status, d.tries, d.reply.code) for d in result] == [(REFUSED, 1, 554)] * 5
    assert result.retries == 0 and not result.ok


def test_a_connection_dropped_mid_send_is_reopened():
    class Dropper:
        def __init__(self) -> None:
            self.dropped: set[str] = set()

        async def handle_DATA(self, server, session, envelope):
            ident = lab_id(envelope)
            if ident in ("2", "5") and ident not in self.dropped:
                self.dropped.add(ident)
                server.transport.close()  # hang up before the reply: the message was not taken
                return "451 4.3.0 gone"
            return "250 OK"

    with smtplab.start_server(handler=Dropper(), name="dropper") as server:
        result = smtplab.send_many_sync(
            server, [message(n) for n in range(10)], connections=2, backoff=Backoff(**FAST), progress=False
        )
        captured = server.mailbox.wait_for(10)
    assert result.ok and sorted(int(lab_id(m)) for m in captured) == list(range(10))
    for n in (2, 5):
        first, second = result[n].attempts
        assert first.outcome == "dropped" and first.reply is None and "Disconnected" in first.error
        assert second.outcome == ACCEPTED and second.connection != first.connection
    assert result.connections == 4  # two at the start, one reopened after each drop


def test_only_the_deferred_recipients_are_tried_again():
    class SlowCarol:
        def __init__(self) -> None:
            self.once = False

        async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
            if address == "carol@example.test" and not self.once:
                self.once = True
                return "452 4.2.2 Mailbox full, try later"
            if address == "nobody@example.test":
                return "550 5.1.1 No such user"
            envelope.rcpt_tos.append(address)
            return "250 OK"

    both = ("alice@example.test", ["bob@example.test", "carol@example.test"], "Subject: both\r\n\r\nhi\r\n")
    partly = (
        "alice@example.test",
        ["bob@example.test", "nobody@example.test"],
        "Subject: partly\r\n\r\nhi\r\n",
    )
    with smtplab.start_server(handler=SlowCarol(), name="carol") as server:
        result = smtplab.send_many_sync(
            server, [both, partly], connections=1, backoff=Backoff(**FAST), progress=False
        )
        captured = server.mailbox.wait_for(3)
    first, second = result
    assert first.status == ACCEPTED and first.tries == 2
    assert {a: r.code for a, r in first.recipients.items()} == {
        "bob@example.test": 250,
        "carol@example.test": 250,
    }
    assert second.status == PARTLY_ACCEPTED and second.recipients["nobody@example.test"].code == 550
    # one copy per recipient: carol's copy came on the retry, bob's was not sent twice
    assert sorted((m.subject, m.rcpt_tos) for m in captured) == [
        ("both", ("bob@example.test",)),
        ("both", ("carol@example.test",)),
        ("partly", ("bob@example.test",)),
    ]


def test_when_no_worker_can_connect_nothing_is_sent_and_the_result_says_why():
    backoff = Backoff(**FAST)
    result = smtplab.send_many_sync(
        ("127.0.0.1", free_port()), [message(n) for n in range(3)], connections=2, retries=2, backoff=backoff,
        progress=False,
    )  # fmt: skip
    assert [d.status for d in result] == [NOT_SENT] * 3
    assert all(d.tries == 0 and "no worker could get a connection" in d.error for d in result)
    assert all(w.refusals == 3 and "nothing is listening" in w.retired for w in result.workers)
    # nobody answered: not a refusal, and no talk of a cap
    assert result.connection_trouble == "6 tries to connect found nobody answering"
    summary = result.summary()  # a port number may hold the digits 421
    assert not re.search(r"\b421\b", summary) and "refused" not in summary


def test_tls_settings_that_cannot_work_raise_at_once():
    with smtplab.start_server(tls="starttls", name="tls-batch") as server:
        result = smtplab.send_many_sync(
            server, [message(n) for n in range(4)], tls="starttls", record=True, progress=False
        )
        assert result.ok and all(m.tls is not None for m in server.mailbox.wait_for(4))
        assert len(result.transcripts) == result.connections and any(
            line.tls for line in result.transcripts[0]
        )
        with pytest.raises(smtplab.TLSCertificateError):  # the system CAs do not know the lab CA
            smtplab.send_many_sync(("127.0.0.1", server.port), [message(9)], tls="starttls", progress=False)
        assert server.mailbox.received == 4


def test_messages_may_be_tuples_or_email_messages_and_bad_ones_are_named():
    good = [("alice@example.test", "bob@example.test", "Subject: tuple\r\n\r\nhi\r\n"), message(1)]
    bad_address = ("alice@example.test", ["bob@example.test\r\nRCPT TO:<eve@example.test>"], "hi")
    with smtplab.start_server(name="mixed") as server:
        result = smtplab.send_many_sync(server, [*good, bad_address], progress=False)
        assert sorted(m.subject for m in server.mailbox.wait_for(2)) == ["message 1", "tuple"]
    assert [d.status for d in result] == [ACCEPTED, ACCEPTED, NOT_SENT]
    assert "line feed" in result[2].error or "carriage return" in result[2].error
    with pytest.raises(TypeError, match="message 1 is str"):
        smtplab.send_many_sync(server, [message(0), "Subject: hi"], progress=False)
    with pytest.raises(TypeError, match=r"pass \[message\]"):
        smtplab.send_many_sync(server, message(0), progress=False)
    with pytest.raises(TypeError, match="target must be"):
        smtplab.send_many_sync("127.0.0.1:25", [message(0)], progress=False)
    with pytest.raises(ValueError, match="connections"):
        smtplab.send_many_sync(server, [message(0)], connections=0, progress=False)
    with pytest.raises(ValueError, match="retries"):
        smtplab.send_many_sync(server, [message(0)], retries=-1, progress=False)


def test_an_empty_batch_sends_nothing(progress):
    with smtplab.start_server(name="empty") as server:
        result = smtplab.send_many_sync(server, [])
    assert len(result) == 0 and result.ok and result.connections == 0 and progress.made == []


def test_the_real_progress_bar_reaches_the_end(capsys):
    with smtplab.start_server(name="bar") as server:
        smtplab.send_many_sync(server, [message(n) for n in range(3)], description="lesson 07")
    err = capsys.readouterr().err
    assert "lesson 07" in err and "3/3" in err and "3 accepted" in err


def test_cancelling_closes_every_connection():
    async def scenario(server: smtplab.LabServer) -> None:
        batch = asyncio.create_task(
            send_many(server, [message(n) for n in range(200)], connections=3, progress=False)
        )
        await asyncio.to_thread(server.mailbox.wait_for, 3, timeout=10)
        batch.cancel()
        with pytest.raises(asyncio.CancelledError):
            await batch

    with smtplab.start_server(reply_delay=0.01, name="cancel") as server:
        asyncio.run(scenario(server))
        assert server.mailbox.received < 200
    # the autouse fixtures fail this test if a socket or transport was left open


def test_the_summary_and_the_timeline_tell_the_story():
    with smtplab.start_server(name="story") as server:
        result = smtplab.send_many_sync(server, [message(n) for n in range(6)], connections=3, progress=False)
    rows = result.timeline()
    assert {row["worker"] for row in rows} <= {0, 1, 2} and all(row["code"] == 250 for row in rows)
    assert [row["message"] for row in rows] == list(range(6))
    assert result.throughput > 0 and result.elapsed > 0
    assert "6 messages in" in result.summary() and "6 accepted" in result.summary()
    assert result.tally == "6 accepted" and result.admitted == 3
    assert repr(result[0]).startswith("<Delivery 0 accepted 250 after 1 attempt (worker ")


def test_backoff_is_exponential_capped_jittered_and_repeatable():
    backoff = Backoff(base=0.1, factor=2, cap=0.5, jitter=0.5, seed=3)
    assert backoff.schedule(5) == [0.1, 0.2, 0.4, 0.5, 0.5]
    delays = [backoff.delay(n) for n in range(1, 6)]
    assert all(c * 0.5 <= d <= c for d, c in zip(delays, backoff.schedule(5), strict=True))
    again = Backoff(base=0.1, factor=2, cap=0.5, jitter=0.5, seed=3)
    assert delays == [again.delay(n) for n in range(1, 6)]  # the same seed, the same waits
    assert Backoff(jitter=0).delay(2) == Backoff().ceiling(2) == 0.1
    for bad in ({"base": -1}, {"factor": 0.5}, {"jitter": 2}):
        with pytest.raises(ValueError):
            Backoff(**bad)
    with pytest.raises(ValueError, match="numbered from 1"):
        Backoff().ceiling(0)
    assert "seed=3" in repr(backoff)


def test_send_many_retries_the_cap_that_the_client_reports_as_a_smtplab_error():
    limits = smtplab.Limits(max_connections=1)
    with smtplab.start_server(limits=limits, name="capped") as server:
        with smtplab.SyncClient(server), pytest.raises(smtplab.ServerBusyError):
            smtplab.SyncClient(server).connect()  # what every extra worker meets at first
        messages = [message(n, "bob@example.test") for n in range(6)]
        result = asyncio.run(
            send_many(server, messages, connections=3, backoff=Backoff(seed=3), progress=False)
        )
        server.mailbox.wait_for(6)
    assert result.counts[ACCEPTED] == 6
    # the workers opened together; the server admitted one and refused the others with 421 at first
    assert sum(w.refusals for w in result.workers) >= 1


def test_a_worker_the_cap_refuses_holds_no_message_back():
    """The refused workers wait for a connection before taking a message, and stop waiting at the end."""
    patient = Backoff(base=60, cap=60)  # without both rules the batch would wait a minute: run() times out
    with smtplab.start_server(limits={"max_connections": 1}, name="one-slot") as server:
        result = run(
            send_many(server, [message(n) for n in range(6)], connections=3, backoff=patient, progress=False)
        )
    assert result.ok
    (working,) = [w for w in result.workers if w.connections]
    rows = sorted(result.timeline(), key=lambda row: row["start"])
    assert [row["message"] for row in rows] == list(range(6))  # in input order: none was held back
    assert {row["worker"] for row in rows} == {working.worker}
    for report in result.workers:
        if report is not working:
            assert report.attempts == 0 and report.refusals == 1 and report.retired is None


@pytest.mark.parametrize(
    ("outcome", "expected", "mistake"), RETRY_CASES, ids=[repr(case[0])[:50] for case in RETRY_CASES]
)
def test_the_retry_rule_answers_every_case_of_the_lessons_table(outcome, expected, mistake):
    assert should_retry(outcome) is expected
