"""Sending many messages at once: a bounded pool of connections, retries with backoff, a progress bar.

aiosmtplib's advice for throughput is to open several connections and split the work: one
connection waits a round trip for every reply, several wait at the same time. :func:`send_many`
does exactly that, and reports what happened to every message::

    result = await smtplab.send_many(server, messages, connections=8)  # top-level await in Jupyter
    result  # <BatchResult 500 messages: 500 accepted … msg/s over 8 connections>
    result[0]  # what happened to the first message: status, reply, attempts, worker, times

How it works: ``connections`` workers, each with its own connection, take messages from one
queue until it is empty — never one task per message, so ten thousand messages still open at
most ``connections`` connections. A message the server defers with a ``4xx`` reply (``451``,
``452`` …) goes back to the queue after a backoff delay and is tried again, at most ``retries``
times; a ``5xx`` refusal is final and never retried (RFC 5321 §4.2.1: 4yz is a transient, 5yz a
permanent failure). A server at its connection cap answers ``421`` instead of its greeting
(RFC 5321 §3.1): the worker waits and tries again, and once ``retries`` more tries were refused
in a row it retires. A worker takes a message only once it has a connection, so the messages all go to the
workers the server did admit, and none waits on a refused one. A connection that drops
mid-send is reopened and the message tried again — it may have been delivered already if the
drop came after its data (RFC 1047 describes this duplicate), which SMTP cannot tell.

:func:`should_retry` is that rule, in one place: send_many asks it about every reply and every
error, and a lesson can ask it too.

From a script or a plain function, :func:`send_many_sync` runs the same on smtplab's background
loop (:mod:`smtplab.aio`).
"""

from __future__ import annotations

import asyncio
import random
import ssl
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from email.message import Message
from typing import TYPE_CHECKING, Any, overload

import aiosmtplib

from smtplab import aio
from smtplab.client import Client, Reply, SendResult
from smtplab.errors import TLSCertificateError, TLSMismatchError
from smtplab.server import LabServer
from smtplab.transcript import Transcript

if TYPE_CHECKING:  # pragma: no cover
    from smtplab.tls import TLSMode

__all__ = [
    "ACCEPTED",
    "GAVE_UP",
    "NOT_SENT",
    "PARTLY_ACCEPTED",
    "REFUSED",
    "Attempt",
    "Backoff",
    "BatchResult",
    "Delivery",
    "WorkerReport",
    "send_many",
    "send_many_sync",
    "should_retry",
]

#: A message to send: an :class:`email.message.EmailMessage` (the envelope comes from its
#: headers), or a ``(sender, recipients, content)`` tuple as for :meth:`smtplab.Client.send`.
MessageLike = Message | tuple[str, str | Iterable[str], bytes | str | Message]

ACCEPTED = "accepted"  #: every recipient accepted
PARTLY_ACCEPTED = "partly accepted"  #: some recipients accepted, others refused or given up on
REFUSED = "refused"  #: a 5xx reply, final: never retried
GAVE_UP = "gave up"  #: still deferred (4xx) or dropped after every retry
NOT_SENT = "not sent"  #: never tried: invalid, or no worker could connect
STATUSES = (ACCEPTED, PARTLY_ACCEPTED, REFUSED, GAVE_UP, NOT_SENT)
DEFERRED = "deferred"  # an attempt's outcome: 4xx, to be tried again

# What can go wrong on an open connection, short of a reply: it dropped, or a reply never came.
_CONNECTION_ERRORS = (aiosmtplib.SMTPException, OSError, TimeoutError)


def should_retry(outcome: Reply | BaseException) -> bool:
    """Whether trying again later could succeed: the rule :func:`send_many` follows.

    - A reply, or an error that carries one (aiosmtplib's ``SMTPConnectResponseError`` for a
      refusing greeting, say): ``4xx`` yes — "not now", a transient failure, including the
      ``421`` of a server at its connection cap — and ``2xx``, ``3xx``, ``5xx`` no: done, or
      refused for good (RFC 5321 §4.2.1).
    - TLS that cannot work (:class:`~smtplab.TLSMismatchError`,
      :class:`~smtplab.TLSCertificateError`, any :class:`ssl.SSLError`): no — a setting to
      change, not a busy server.
    - A connection that dropped, was refused or timed out (``OSError``, ``TimeoutError``,
      ``aiosmtplib.SMTPServerDisconnected``): yes.
    - Anything else (a bad address is a ``ValueError``): no.

    Args:
        outcome: A :class:`~smtplab.Reply` (or anything with an ``int`` ``code``), or an exception.
    """
    code = getattr(outcome, "code", None)
    if isinstance(code, int) and not isinstance(code, bool):
        return 400 <= code < 500
    if isinstance(outcome, (TLSMismatchError, TLSCertificateError, ssl.SSLError)):
        return False
    return isinstance(outcome, (OSError, TimeoutError, aiosmtplib.SMTPServerDisconnected))


class Backoff:
    """How long to wait before trying again: exponential, capped, with jitter.

    Before retry ``n`` (1, 2, 3 …) the wait is ``min(cap, base * factor ** (n - 1))``, shortened
    by a random fraction of at most ``jitter`` — so it never exceeds ``cap``, and clients
    deferred at the same moment do not all come back at the same moment.

    Args:
        base: Seconds before the first retry.
        factor: How much longer each further wait is.
        cap: The longest wait, in seconds.
        jitter: 0 for no randomness; 0.5 waits between half and all of each delay.
        seed: Seed of the random source, for repeatable delays (tests, lessons); ``None`` for a
            fresh one.
    """

    def __init__(
        self,
        *,
        base: float = 0.05,
        factor: float = 2.0,
        cap: float = 2.0,
        jitter: float = 0.5,
        seed: int | None = None,
    ) -> None:
        if base < 0 or cap < 0 or factor < 1:
            raise ValueError(f"need base >= 0, cap >= 0 and factor >= 1, not {base=}, {cap=}, {factor=}")
        if not 0 <= jitter <= 1:
            raise ValueError(f"jitter must be between 0 and 1, not {jitter!r}")
        self.base, self.factor, self.cap, self.jitter = base, factor, cap, jitter
        self.seed = seed
        self._random = random.Random(seed)

    def ceiling(self, retry: int) -> float:
        """The longest wait before retry number ``retry`` (1 for the first): no jitter."""
        if retry < 1:
            raise ValueError(f"retries are numbered from 1, not {retry!r}")
        return min(self.cap, self.base * self.factor ** (retry - 1))

    def schedule(self, retries: int) -> list[float]:
        """The ceilings of the first ``retries`` waits, e.g. ``[0.05, 0.1, 0.2]``."""
        return [self.ceiling(n) for n in range(1, retries + 1)]

    def delay(self, retry: int) -> float:
        """The wait before retry number ``retry``: its ceiling, less up to ``jitter`` of it."""
        return self.ceiling(retry) * (1 - self.jitter * self._random.random())

    def __repr__(self) -> str:
        return (
            f"Backoff(base={self.base!r}, factor={self.factor!r}, cap={self.cap!r}, "
            f"jitter={self.jitter!r}, seed={self.seed!r})"
        )


@dataclass(frozen=True)
class Attempt:
    """One try at sending one message.

    Attributes:
        worker: The worker (0 … connections - 1) that made it: one lane of a timeline.
        connection: Which connection carried it, numbered 1, 2 … in the order they were opened.
        start: Seconds after the batch started.
        end: Seconds after the batch started.
        outcome: ``"accepted"``, ``"partly accepted"``, ``"refused"``, ``"deferred"`` (4xx, to
            be tried again) or ``"dropped"`` (the connection broke).
        reply: The reply that ended the attempt (``None`` when the connection dropped).
        error: What went wrong when there was no reply.
        wait: Seconds the message waited before its next attempt (``None`` after the last).
    """

    worker: int
    connection: int
    start: float
    end: float
    outcome: str
    reply: Reply | None = None
    error: str | None = None
    wait: float | None = None


@dataclass
class Delivery:
    """What happened to one message of the batch.

    Attributes:
        index: Its position in the input.
        message: The message as given.
        status: ``"accepted"``, ``"partly accepted"``, ``"refused"``, ``"gave up"`` or
            ``"not sent"``.
        reply: The reply that settled it: the final reply to DATA, or the refusal.
        recipients: The final reply to each recipient, by address.
        attempts: Every try, in order.
        error: Why it was not sent or given up on, when no reply says it.
    """

    index: int
    message: Any
    status: str = NOT_SENT
    reply: Reply | None = None
    recipients: dict[str, Reply] = field(default_factory=dict)
    attempts: list[Attempt] = field(default_factory=list)
    error: str | None = None

    @property
    def accepted(self) -> bool:
        """True when every recipient accepted the message."""
        return self.status == ACCEPTED

    @property
    def tries(self) -> int:
        """How many attempts were made (0 for a message never sent)."""
        return len(self.attempts)

    @property
    def worker(self) -> int | None:
        """The worker of the last attempt."""
        return self.attempts[-1].worker if self.attempts else None

    @property
    def connection(self) -> int | None:
        """The connection of the last attempt."""
        return self.attempts[-1].connection if self.attempts else None

    @property
    def start(self) -> float | None:
        """When the first attempt started, in seconds after the batch started."""
        return self.attempts[0].start if self.attempts else None

    @property
    def end(self) -> float | None:
        """When the last attempt ended, in seconds after the batch started."""
        return self.attempts[-1].end if self.attempts else None

    def __repr__(self) -> str:
        reply = f" {self.reply.code}" if self.reply is not None else ""
        where = f" (worker {self.worker}, connection {self.connection})" if self.attempts else ""
        return f"<Delivery {self.index} {self.status}{reply} after {_plural(self.tries, 'attempt')}{where}>"


@dataclass
class WorkerReport:
    """One worker of the pool.

    Attributes:
        worker: Its number, 0 … connections - 1.
        connections: The connections it opened (their numbers).
        attempts: Messages it tried (retries included).
        refusals: Times the server refused it a connection (e.g. ``421`` at its cap).
        refused_with: The reply code of the latest refusal (``421`` at a cap), or ``None`` when
            it was never refused or nobody answered.
        retired: Why it stopped before the queue was empty, or ``None``.
    """

    worker: int
    connections: list[int] = field(default_factory=list)
    attempts: int = 0
    refusals: int = 0
    refused_with: int | None = None
    retired: str | None = None


@dataclass
class BatchResult:
    """Everything :func:`send_many` did: one :class:`Delivery` per message, in input order.

    Iterate over it, index it (``result[0]``) or take its ``len()``; it renders a summary.

    Attributes:
        deliveries: One per message, in input order.
        workers: One :class:`WorkerReport` per worker.
        started: When the batch started (UTC).
        elapsed: Seconds from start to the last message settled.
        transcripts: Each connection's transcript, with ``record=True``.
    """

    deliveries: list[Delivery]
    workers: list[WorkerReport]
    started: datetime
    elapsed: float
    transcripts: list[Transcript] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.deliveries)

    def __iter__(self) -> Iterator[Delivery]:
        return iter(self.deliveries)

    @overload
    def __getitem__(self, index: int) -> Delivery: ...

    @overload
    def __getitem__(self, index: slice) -> list[Delivery]: ...

    def __getitem__(self, index: int | slice) -> Delivery | list[Delivery]:
        return self.deliveries[index]

    @property
    def counts(self) -> dict[str, int]:
        """How many messages ended in each status (every status listed, zeros too)."""
        counted = Counter(delivery.status for delivery in self.deliveries)
        return {status: counted[status] for status in STATUSES}

    @property
    def tally(self) -> str:
        """The counts in words: ``"490 accepted, 10 refused"`` (``"nothing sent"`` for none)."""
        return ", ".join(f"{n} {status}" for status, n in self.counts.items() if n) or "nothing sent"

    @property
    def accepted(self) -> list[Delivery]:
        """The messages every recipient accepted."""
        return [d for d in self.deliveries if d.status == ACCEPTED]

    @property
    def failed(self) -> list[Delivery]:
        """Every message not accepted by all its recipients."""
        return [d for d in self.deliveries if d.status != ACCEPTED]

    @property
    def ok(self) -> bool:
        """True when every message was accepted."""
        return not self.failed

    @property
    def retries(self) -> int:
        """Attempts beyond the first, over all messages."""
        return sum(max(0, d.tries - 1) for d in self.deliveries)

    @property
    def admitted(self) -> int:
        """Workers the server gave a connection (fewer than asked for at a connection cap)."""
        return sum(bool(report.connections) for report in self.workers)

    @property
    def connections(self) -> int:
        """Connections opened, over all workers (reconnections included)."""
        return sum(len(w.connections) for w in self.workers)

    @property
    def throughput(self) -> float:
        """Accepted messages per second."""
        return len(self.accepted) / self.elapsed if self.elapsed > 0 else 0.0

    def timeline(self) -> list[dict[str, Any]]:
        """Every attempt as a row — message, worker, connection, start, end, outcome, code.

        Ready for a plot with one lane per worker (``plt.barh(row["worker"], row["end"] -
        row["start"], left=row["start"])``) or for ``pandas.DataFrame(result.timeline())``.
        """
        return [
            {
                "message": d.index,
                "worker": a.worker,
                "connection": a.connection,
                "start": a.start,
                "end": a.end,
                "outcome": a.outcome,
                "code": a.reply.code if a.reply is not None else None,
            }
            for d in self.deliveries
            for a in d.attempts
        ]

    @property
    def connection_trouble(self) -> str:
        """What the workers met when connecting, in words; ``""`` when every try connected.

        A refusing greeting is named by its code (``421`` is a lab server at its connection
        cap); a connection nobody answered (a stopped server, a wrong port) is not a refusal.
        """
        codes = sorted({w.refused_with for w in self.workers if w.refused_with is not None})
        refused = sum(w.refusals for w in self.workers if w.refused_with is not None)
        unanswered = sum(w.refusals for w in self.workers if w.refused_with is None)
        parts = []
        if refused:
            with_codes = " or ".join(str(code) for code in codes) + (
                " (at its cap)" if codes == [421] else ""
            )
            parts.append(f"the server refused a connection {_plural(refused, 'time')} with {with_codes}")
        if unanswered:
            parts.append(f"{_plural(unanswered, 'try', 'tries')} to connect found nobody answering")
        return "; ".join(parts)

    def summary(self) -> str:
        """A few lines: totals, throughput, retries, and what the workers met."""
        counts = self.tally
        lines = [
            f"{_plural(len(self), 'message')} in {self.elapsed:.2f} s over {_plural(len(self.workers), 'worker')} "
            f"({_plural(self.connections, 'connection')} opened): {counts}",
            f"{self.throughput:.1f} accepted messages/s; {_plural(self.retries, 'retry', 'retries')}",
        ]
        if self.connection_trouble:
            lines.append(self.connection_trouble)
        for report in self.workers:
            if report.retired:
                lines.append(f"worker {report.worker} retired: {report.retired}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()

    def __repr__(self) -> str:
        counts = self.tally
        return (
            f"<BatchResult {_plural(len(self), 'message')}: {counts}; {self.elapsed:.2f} s, "
            f"{self.throughput:.1f} msg/s over {_plural(len(self.workers), 'worker')}>"
        )


class _Batch:
    """One run of :func:`send_many`: the queue, the workers, the bookkeeping."""

    def __init__(
        self,
        target: LabServer | tuple[str, int],
        messages: list[Any],
        *,
        workers: int,
        retries: int,
        backoff: Backoff,
        client_options: dict[str, Any],
        progress: Any,
    ) -> None:
        self.target = target
        self.deliveries = [Delivery(n, message) for n, message in enumerate(messages)]
        self.settled = [False] * len(messages)
        self.pending: list[list[str] | None] = [None] * len(messages)  # recipients still to try; None: all
        self.reports = [WorkerReport(n) for n in range(workers)]
        self.retries = retries
        self.backoff = backoff
        self.client_options = client_options
        self.progress = progress
        self.queue: asyncio.Queue[int | None] = asyncio.Queue()
        self.unsettled = len(messages)
        self.accepted = 0
        self.all_settled = asyncio.Event()
        self.timers: set[asyncio.TimerHandle] = set()
        self.connections_opened = 0
        self.transcripts: list[Transcript] = []
        self.start = time.perf_counter()
        self.end: float | None = None
        self.stopping = False

    def now(self) -> float:
        return time.perf_counter() - self.start

    # -- the pool -------------------------------------------------------------------------------

    async def run(self) -> None:
        for index in range(len(self.deliveries)):
            self.queue.put_nowait(index)
        tasks = [asyncio.create_task(self.worker(report)) for report in self.reports]
        settled = asyncio.create_task(self.all_settled.wait())
        try:
            waiting = {settled, *tasks}
            while not settled.done() and not all(task.done() for task in tasks):
                done, waiting = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                for task in done - {settled}:
                    task.result()  # a worker's TLS configuration error ends the batch
        finally:
            # Every worker is told to stop twice: a flag and a None in the queue, besides
            # cancel(), since asyncio.wait_for on Python < 3.12 can swallow a cancellation.
            self.stopping = True
            for _ in tasks:
                self.queue.put_nowait(None)
            settled.cancel()
            for timer in self.timers:
                timer.cancel()
            if not self.all_settled.is_set():
                for task in tasks:
                    task.cancel()
            await asyncio.gather(*tasks, settled, return_exceptions=True)
        # Only when every worker retired can messages be left: never sent, or waiting to retry.
        retired = next((report.retired for report in self.reports if report.retired), "")
        reason = f"no worker could get a connection: {retired}"
        for delivery in self.deliveries:
            if not self.settled[delivery.index]:
                self.settle(delivery, _given_up(delivery) if delivery.attempts else NOT_SENT, error=reason)

    async def worker(self, report: WorkerReport) -> None:
        client: Client | None = None
        try:
            while not self.stopping:
                if client is None or not client.connected:
                    # Connect before taking a message: a worker the server keeps refusing holds
                    # none back from the workers it admitted.
                    connected = await self.connect(report)
                    if connected is None:  # every message settled while it waited
                        return
                    if isinstance(connected, str):  # the server keeps refusing: retire
                        report.retired = connected
                        return
                    client = connected
                index = await self.queue.get()
                if index is None:
                    return
                report.attempts += 1
                if not await self.attempt(client, report, self.deliveries[index]):
                    await client.close()
        finally:
            if client is not None:
                await _goodbye(client)

    async def connect(self, report: WorkerReport) -> Client | str | None:
        """A new connection for ``report``'s worker, retrying refusals.

        Returns the client; or why the worker retires (the server keeps refusing); or ``None``
        when every message settled while it waited to try again.
        """
        refusals = 0
        while True:
            client = _client(self.target, self.client_options)
            try:
                await client.connect()
            except (TLSMismatchError, TLSCertificateError):
                raise  # a setting to fix, not a busy server
            except _CONNECTION_ERRORS as error:
                # A refusing greeting carries its reply (RFC 5321 §3.1): 421 means "busy, come
                # back", 554 "go away"; other errors mean nobody answered.
                code = getattr(error, "code", None)
                if isinstance(code, int):
                    report.refused_with = code
                    why = f"the server answered {code} {getattr(error, 'message', '')}".rstrip()
                else:
                    why = f"could not connect: {_describe(error)}"
                if not should_retry(error):
                    return why
            else:
                self.connections_opened += 1
                report.connections.append(self.connections_opened)
                if self.client_options.get("record"):
                    self.transcripts.append(client.transcript)
                return client
            finally:
                if not client.connected:
                    await client.close()
            report.refusals += 1
            refusals += 1
            if refusals > self.retries:
                return f"{why} ({_plural(refusals, 'time')} in a row)"
            if await self.settled_within(self.backoff.delay(refusals)):
                return None

    async def settled_within(self, seconds: float) -> bool:
        """Wait ``seconds``, or less if every message settles first; whether they all did."""
        if not self.all_settled.is_set():
            settled = asyncio.ensure_future(self.all_settled.wait())
            try:
                await asyncio.wait({settled}, timeout=seconds)
            finally:
                settled.cancel()
        return self.all_settled.is_set()

    # -- one message ------------------------------------------------------------------------------

    async def attempt(self, client: Client, report: WorkerReport, delivery: Delivery) -> bool:
        """Try one message once; returns whether the connection is still good for the next."""
        start = self.now()
        connection = report.connections[-1]
        try:
            result = await _send(client, delivery.message, self.pending[delivery.index])
        except ValueError as error:  # a bad address, or a message without an envelope
            self.settle(delivery, NOT_SENT, error=str(error))
            return True
        except _CONNECTION_ERRORS as error:
            attempt = Attempt(report.worker, connection, start, self.now(), "dropped", error=_describe(error))
            if should_retry(error):
                self.retry(delivery, attempt, error=f"the connection dropped: {_describe(error)}")
            else:
                delivery.attempts.append(attempt)
                self.settle(
                    delivery, _given_up(delivery), error=f"trying again cannot help: {_describe(error)}"
                )
            return False
        outcome = self.account(delivery, result)
        attempt = Attempt(report.worker, connection, start, self.now(), outcome, reply=result.reply)
        if outcome == DEFERRED:
            self.retry(delivery, attempt, error=f"still deferred after every retry: {result.reply}")
        else:
            delivery.attempts.append(attempt)
            self.settle(delivery, outcome)
        if result.accepted and not result.ok and client.connected:
            try:
                await client.rset()  # DATA refused before the content leaves the transaction open
            except _CONNECTION_ERRORS:
                return False
        return client.connected

    def account(self, delivery: Delivery, result: SendResult) -> str:
        """Fold one attempt's replies into the message's recipients; returns the outcome."""
        reply = result.reply
        assert reply is not None
        delivery.reply = reply
        if not result.recipients:  # MAIL FROM refused: the reply stands for every recipient left
            if should_retry(reply):
                return DEFERRED
            return PARTLY_ACCEPTED if _any_accepted(delivery) else REFUSED
        reached_data = bool(result.accepted)
        still = []
        for address, answer in result.recipients.items():
            if answer.ok and reached_data:
                answer = reply  # an accepted recipient's fate is the reply to the data
            delivery.recipients[address] = answer
            if should_retry(answer):
                still.append(address)
        self.pending[delivery.index] = still
        if still:
            return DEFERRED
        accepted = sum(answer.code < 300 for answer in delivery.recipients.values())
        if accepted == len(delivery.recipients):
            return ACCEPTED
        return PARTLY_ACCEPTED if accepted else REFUSED

    def retry(self, delivery: Delivery, attempt: Attempt, *, error: str) -> None:
        """Put a message back in the queue after a backoff delay, or give up on it."""
        if len(delivery.attempts) >= self.retries:
            delivery.attempts.append(attempt)
            self.settle(delivery, _given_up(delivery), error=error)
            return
        wait = self.backoff.delay(len(delivery.attempts) + 1)
        delivery.attempts.append(replace(attempt, wait=wait))

        def requeue() -> None:
            self.timers.discard(timer)
            self.queue.put_nowait(delivery.index)

        timer = asyncio.get_running_loop().call_later(wait, requeue)
        self.timers.add(timer)

    def settle(self, delivery: Delivery, status: str, *, error: str | None = None) -> None:
        """Record a message's final status (once)."""
        if self.settled[delivery.index]:
            return
        self.settled[delivery.index] = True
        delivery.status, delivery.error = status, error
        self.unsettled -= 1
        self.accepted += status == ACCEPTED
        if self.progress is not None:
            self.progress.set_postfix_str(f"{self.accepted} accepted", refresh=False)
            self.progress.update(1)
        if self.unsettled == 0:
            self.end = self.now()
            self.all_settled.set()


def _any_accepted(delivery: Delivery) -> bool:
    return any(answer.code < 300 for answer in delivery.recipients.values())


def _given_up(delivery: Delivery) -> str:
    """The status of a message given up on: partly accepted if some recipients took it."""
    return PARTLY_ACCEPTED if _any_accepted(delivery) else GAVE_UP


async def _send(client: Client, message: Any, recipients: list[str] | None) -> SendResult:
    if isinstance(message, Message):
        return await client.send_message(message, recipients=recipients or None)
    sender, to, content = message
    return await client.send(sender, recipients or to, content)


async def _goodbye(client: Client) -> None:
    """QUIT when the connection is still up; the socket is closed either way."""
    try:
        if client.connected:
            await client.quit(timeout=5)
    except _CONNECTION_ERRORS:
        pass
    finally:
        await client.close()


def _client(target: LabServer | tuple[str, int], options: dict[str, Any]) -> Client:
    if isinstance(target, LabServer):
        return Client(target, **options)
    host, port = target
    return Client(host=host, port=port, **options)


def _describe(error: BaseException) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _plural(count: int, word: str, plural: str | None = None) -> str:
    return f"{count} {word if count == 1 else (plural or word + 's')}"


def _check(target: Any, messages: Iterable[MessageLike], connections: int, retries: int) -> list[MessageLike]:
    if not isinstance(target, LabServer) and not (
        isinstance(target, tuple)
        and len(target) == 2
        and isinstance(target[0], str)
        and isinstance(target[1], int)
    ):
        raise TypeError(f"target must be a LabServer or a (host, port) tuple, not {target!r}")
    if isinstance(messages, (str, bytes, Message)) or (
        isinstance(messages, tuple) and len(messages) == 3 and isinstance(messages[0], str)
    ):
        raise TypeError("messages must be a list of messages; for a single message pass [message]")
    items = list(messages)
    for n, item in enumerate(items):
        if isinstance(item, Message):
            continue
        if not (isinstance(item, tuple) and len(item) == 3 and isinstance(item[0], str)):
            raise TypeError(
                f"message {n} is {type(item).__name__}: give an EmailMessage or a (sender, recipients, "
                "content) tuple"
            )
    if isinstance(connections, bool) or not isinstance(connections, int) or connections < 1:
        raise ValueError(f"connections must be a whole number from 1 up, not {connections!r}")
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise ValueError(f"retries must be a whole number from 0 up, not {retries!r}")
    return items


async def send_many(
    target: LabServer | tuple[str, int],
    messages: Iterable[MessageLike],
    *,
    connections: int = 4,
    progress: bool = True,
    retries: int = 3,
    backoff: Backoff | None = None,
    timeout: float = 30.0,
    tls: TLSMode = None,
    tls_context: ssl.SSLContext | None = None,
    record: bool = False,
    description: str = "sending",
) -> BatchResult:
    """Send a batch of messages over ``connections`` connections at once; returns what happened to each.

    A coroutine: ``await`` it in a notebook cell; from a script use :func:`send_many_sync`.

    Args:
        target: A :class:`~smtplab.LabServer`, or any server's ``(host, port)``.
        messages: :class:`email.message.EmailMessage` objects (the envelope comes from their
            headers) and/or ``(sender, recipients, content)`` tuples.
        connections: How many connections (and workers) at most. A server with a connection cap
            admits fewer; the others retire when refused ``retries + 1`` times in a row.
        progress: Show a progress bar (``tqdm.auto``: a widget in Jupyter, text in a terminal).
        retries: How often a message deferred with ``4xx`` (or whose connection dropped) is
            tried again, and how often a refused connection is; ``5xx`` is never retried.
        backoff: The waits between tries (:class:`Backoff`); by default 0.05 s doubling up to
            2 s, with jitter.
        timeout: Seconds to wait for each reply.
        tls: ``"starttls"`` or ``"implicit"``, as for :class:`~smtplab.Client`.
        tls_context: The SSL context, as for :class:`~smtplab.Client`.
        record: Keep each connection's transcript in ``result.transcripts``.
        description: The progress bar's label.

    Returns:
        A :class:`BatchResult`: one :class:`Delivery` per message in input order, with totals,
        throughput and a ``timeline()``.

    Raises:
        TLSMismatchError, TLSCertificateError: TLS settings that cannot work; nothing is retried.
    """
    items = _check(target, messages, connections, retries)
    started = datetime.now(timezone.utc)
    options = {"timeout": timeout, "tls": tls, "tls_context": tls_context, "record": record}
    bar = None
    if progress and items:
        from tqdm.auto import tqdm  # a widget in Jupyter, text elsewhere; loaded only when shown

        bar = tqdm(total=len(items), desc=description, unit="msg")
    batch = _Batch(
        target,
        items,
        workers=min(connections, max(1, len(items))),
        retries=retries,
        backoff=backoff if backoff is not None else Backoff(),
        client_options=options,
        progress=bar,
    )
    try:
        if items:
            await batch.run()
    finally:
        if bar is not None:
            bar.close()
    elapsed = batch.end if batch.end is not None else batch.now()
    return BatchResult(batch.deliveries, batch.reports, started, elapsed, batch.transcripts)


def send_many_sync(
    target: LabServer | tuple[str, int],
    messages: Sequence[MessageLike] | Iterable[MessageLike],
    **options: Any,
) -> BatchResult:
    """:func:`send_many` without ``await``: for scripts, and for Jupyter cells alike.

    Runs on smtplab's background event loop (:mod:`smtplab.aio`) and waits for the result; the
    options are those of :func:`send_many`.
    """
    return aio.run(send_many(target, messages, **options))
