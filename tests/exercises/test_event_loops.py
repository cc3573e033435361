"""The event-loop notebook's exercises: the solutions pass, typical wrong answers get their hint."""

from __future__ import annotations

import asyncio
import threading

import smtplab
from smtplab.exercises import check, event_loops
from tests.exercises.harness import Wrong, exercise_tests

CONTENT = "Subject: Exercise\r\n\r\nHello.\r\n"


# -- 01.1: unblock a slow handler ------------------------------------------------------------------


class Archiver:
    def __init__(self, archive):
        self.archive = archive


class StillBlocking(Archiver):
    async def handle_DATA(self, server, session, envelope):
        self.archive(envelope.content)
        return "250 OK: archived"


class AwaitsThePlainCall(Archiver):
    async def handle_DATA(self, server, session, envelope):
        await self.archive(envelope.content)
        return "250 OK: archived"


class ThreadNotAwaited(Archiver):
    async def handle_DATA(self, server, session, envelope):
        asyncio.to_thread(self.archive, envelope.content)
        return "250 OK: archived"


class FireAndForget(Archiver):
    async def handle_DATA(self, server, session, envelope):
        threading.Thread(target=self.archive, args=(envelope.content,)).start()
        return "250 OK: archived"


class JoinsTheThread(Archiver):
    async def handle_DATA(self, server, session, envelope):
        worker = threading.Thread(target=self.archive, args=(envelope.content,))
        worker.start()
        worker.join()
        return "250 OK: archived"


class ForgetsToArchive(Archiver):
    async def handle_DATA(self, server, session, envelope):
        return "250 OK: archived"


class RaisesAfterwards(Archiver):
    async def handle_DATA(self, server, session, envelope):
        await asyncio.to_thread(self.archive, envelope.content)
        return envelope.no_such_attribute


class RefusesTheMessage(Archiver):
    async def handle_DATA(self, server, session, envelope):
        await asyncio.to_thread(self.archive, envelope.content)
        return "554 5.6.0 Not archived"


class MisspelledHook(Archiver):
    async def handle_data(self, server, session, envelope):
        await asyncio.to_thread(self.archive, envelope.content)
        return "250 OK: archived"


# -- 01.2: three messages at once -----------------------------------------------------------------


async def send_one(server, number):
    async with smtplab.Client(server) as client:
        return await client.send("you@example.test", [f"friend{number}@example.test"], CONTENT)


async def one_after_another(server):
    for number in range(3):
        await send_one(server, number)


async def two_then_one(server):
    await asyncio.gather(send_one(server, 0), send_one(server, 1))
    await send_one(server, 2)


async def gathered_on_one_client(server):
    async with smtplab.Client(server) as client:
        await asyncio.gather(
            *(client.send("you@example.test", [f"friend{n}@example.test"], CONTENT) for n in range(3))
        )


async def gather_not_awaited(server):
    asyncio.gather(*(send_one(server, number) for number in range(3)))


async def four_at_once(server):
    await asyncio.gather(*(send_one(server, number) for number in range(4)))


async def address_without_domain(server):
    async def one(number):
        async with smtplab.Client(server) as client:
            return await client.send("you@example.test", [f"friend{number}@"], CONTENT)

    await asyncio.gather(*(one(number) for number in range(3)))


WRONG_ANSWERS = {
    "01.1": [
        Wrong("blocks-loop", StillBlocking, "archive() called in the hook"),
        Wrong("awaited-plain", AwaitsThePlainCall, "await on a plain function"),
        Wrong("not-awaited", ThreadNotAwaited, "to_thread without await"),
        Wrong("replied-early", FireAndForget, "a thread started and forgotten"),
        Wrong("waits-blocking", JoinsTheThread, "a thread joined inside the hook"),
        Wrong("not-archived", ForgetsToArchive, "archive() never called"),
        Wrong("hook-failed", RaisesAfterwards, "the hook raises"),
        Wrong("not-accepted", RefusesTheMessage, "a 554 after archiving"),
        Wrong("no-data-hook", MisspelledHook, "handle_data in lower case"),
        Wrong("wrong-parameters", ForgetsToArchive.handle_DATA, "the hook passed instead of the class"),
    ],
    "01.2": [
        Wrong("one-at-a-time", one_after_another, "awaited one by one"),
        Wrong("one-at-a-time", two_then_one, "two together, then one"),
        Wrong("one-connection", gathered_on_one_client, "three sends on one client"),
        Wrong("not-awaited", gather_not_awaited, "gather without await"),
        Wrong("wrong-count", four_at_once, "four messages"),
        Wrong("refused", address_without_domain, "addresses without a domain"),
    ],
}

test_solution_passes, test_wrong_answer_gets_its_hint, test_table_covers_every_hint = exercise_tests(
    "event_loops", WRONG_ANSWERS
)


def test_a_reply_reported_late_still_counts_as_before_archiving(monkeypatch):
    """Under load the first client's thread may report its reply only after the second client's
    whole session, and so after archive() was let go: the check judges by the server's record."""
    second_done = threading.Event()
    send_first, serve_second = event_loops._send_first, event_loops._serve_second

    class LateReporter:
        def __init__(self, events):
            self.events = events

        def put(self, item):
            if item[0] == "first-replied":
                second_done.wait(10)
            self.events.put(item)

    def first_reports_late(server, events):
        send_first(server, LateReporter(events))

    def second_then_signal(server, events):
        serve_second(server, events)
        second_done.set()

    monkeypatch.setattr(event_loops, "_send_first", first_reports_late)
    monkeypatch.setattr(event_loops, "_serve_second", second_then_signal)

    verdict = check("01.1", FireAndForget)

    assert second_done.is_set()
    assert not verdict.passed
    assert verdict.mistake == "replied-early", verdict
