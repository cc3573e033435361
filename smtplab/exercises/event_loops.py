"""Exercises of ``01-event-loops.ipynb``: a handler that does not stall the loop; sends at once.

Both checks prove overlap by the order of events, never by how long something took: 01.1 holds
the slow work until a second client has been served (which only a free loop can do), 01.2 holds
each message until all three are in the server at once.
"""

from __future__ import annotations

import asyncio
import queue
import smtplib
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from smtplab.exercises import wire
from smtplab.exercises.lab import Trial, learner_function, run_in_lab
from smtplab.exercises.registry import NotYet, exercise
from smtplab.server import LabServer

NOTEBOOK = "01-event-loops.ipynb"

#: Seconds a blocking archive() holds the server's loop: long enough to be seen by a client.
STALL = 0.5
#: Seconds to wait for something that a correct answer does at once (only a wrong one waits).
BOUND = 3.0
#: The message the checks send.
CONTENT = "Subject: Exercise 01\r\n\r\nArchive me, please.\r\n"


def _loop_running_here() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


class _SlowArchive:
    """The blocking ``archive(content)`` the learner's handler is given.

    Its first call is slow: run on the server's event loop it holds that loop for :data:`STALL`
    seconds (the thing the exercise is about); run anywhere else it waits until the check has
    seen a second client served, then returns.
    """

    def __init__(self) -> None:
        self.events: queue.Queue[tuple[str, Any]] = queue.Queue()
        self.release = threading.Event()
        self.calls: list[tuple[str, bool]] = []
        #: ``time.time()`` when the first call returned (the clock of the transcripts' lines).
        self.finished_at: float | None = None
        self._lock = threading.Lock()

    def __call__(self, *args: Any, **kwargs: Any) -> None:
        on_loop = _loop_running_here()
        with self._lock:
            self.calls.append((threading.current_thread().name, on_loop))
            first = len(self.calls) == 1
        self.events.put(("archiving", (threading.current_thread().name, on_loop)))
        if first:
            self.release.wait(STALL if on_loop else BOUND * 2)
            self.finished_at = time.time()


@dataclass
class _Race:
    """What happened, in order, when a second client came while the first one's message was archived.

    Attributes:
        order: The events as they came: ``archiving``, ``first-replied``, ``second-served`` …
        archived_in: The thread archive() first ran in, and whether it runs an event loop.
        first_reply: The code and text of the reply to the first client's message.
        replied_while_held: The first client had its reply while archive() was still held back.
        second_waited: Seconds the second client took to be served, if it was.
        second_not_served: The second client was not served while archive() ran in another thread.
    """

    order: list[str] = field(default_factory=list)
    archived_in: str = ""
    on_loop: bool = False
    first_reply: tuple[int, str] | None = None
    first_error: str = ""
    replied_while_held: bool = False
    second_waited: float | None = None
    second_not_served: bool = False


def _send_first(server: LabServer, events: queue.Queue[tuple[str, Any]]) -> None:
    try:
        with smtplib.SMTP(*server.address, timeout=BOUND * 3) as client:
            client.ehlo("first.example.test")
            client.mail("alice@example.test")
            client.rcpt("bob@example.test")
            code, text = client.data(CONTENT)
            events.put(("first-replied", (code, text.decode("utf-8", "replace"))))
    except (smtplib.SMTPException, OSError) as error:
        events.put(("first-failed", f"{type(error).__name__}: {error}"))


def _serve_second(server: LabServer, events: queue.Queue[tuple[str, Any]]) -> None:
    started = time.monotonic()
    try:
        with smtplib.SMTP(*server.address, timeout=BOUND * 3) as client:
            client.noop()
        events.put(("second-served", time.monotonic() - started))
    except (smtplib.SMTPException, OSError) as error:
        events.put(("second-failed", f"{type(error).__name__}: {error}"))


def _race(server: LabServer, archive: _SlowArchive) -> _Race:
    """Send one message; once archive() runs, a second client says NOOP; then let archive() go.

    Every wait is for an event; the bounds only end waits that a correct answer never has.
    """
    events, race = archive.events, _Race()
    threads: list[threading.Thread] = []

    def start(target: Any, name: str) -> None:
        thread = threading.Thread(target=target, args=(server, events), name=name, daemon=True)
        threads.append(thread)
        thread.start()

    def take(timeout: float) -> str | None:
        try:
            kind, detail = events.get(timeout=timeout)
        except queue.Empty:
            return None
        race.order.append(kind)
        if kind == "archiving" and not race.archived_in:
            race.archived_in, race.on_loop = detail
        elif kind == "first-replied":
            race.first_reply = detail
            race.replied_while_held = not archive.release.is_set()
        elif kind == "second-served":
            race.second_waited = detail
        elif kind in ("first-failed", "second-failed"):
            race.first_error = race.first_error or detail
        return kind

    start(_send_first, "exercise-first-client")
    try:
        kind = take(BOUND * 2)  # archive() starts, or the client has its reply first
        if kind in ("first-replied", "first-failed"):
            take(BOUND)  # is archive() started afterwards, in the background?
        if race.archived_in:
            start(_serve_second, "exercise-second-client")
            # On a free loop the second client is served while archive() is held; on a blocked
            # one only after the stall.
            while race.second_waited is None and "second-failed" not in race.order:
                if take(BOUND * 2 if race.on_loop else BOUND) is None:
                    race.second_not_served = True
                    break
    finally:
        archive.release.set()
        for thread in threads:  # each client ends on its own once archive() is let go
            thread.join(BOUND * 3)
    while take(0) is not None:
        pass  # the rest of the story: what the clients reported after the release
    return race


def _replied_before_archived(trial: Trial, archive: _SlowArchive) -> bool:
    """Whether the server wrote its reply to the first message before archive() had returned.

    Read from the server's own record, so it does not depend on how soon the first client's
    thread got to report its reply (under load, after the second client's whole session).
    """
    for exchange in wire.exchanges(trial):
        if exchange.session == 1 and exchange.command.text == "." and exchange.reply:
            finished = archive.finished_at
            return finished is None or exchange.reply[0].time < finished
    return False


@exercise(
    "01.1",
    notebook=NOTEBOOK,
    title="Unblock a slow handler",
    hints={
        "no-data-hook": (
            "The check asks your class for a handler and finds no handle_DATA on it. Keep the hook's "
            "name and parameters as they are in the cell: aiosmtpd calls handle_DATA(self, server, "
            "session, envelope)."
        ),
        "blocks-loop": (
            "archive() still runs on the server's event loop, inside the hook: while it works the "
            "loop can do nothing else, so a second client does not even get its greeting. Hand the "
            "blocking call to another thread, and await that — as the third handler of section 5 does."
        ),
        "awaited-plain": (
            "`await` takes something awaitable (a coroutine, a task); archive() is a plain function, "
            "so it ran right there on the loop, returned None, and awaiting None failed. Give the "
            "function itself to something that runs it in a thread and is awaitable."
        ),
        "not-awaited": (
            "The thread-running call made a coroutine that was never awaited, so archive() never ran "
            "at all. Put `await` in front of it."
        ),
        "replied-early": (
            "Your hook answered 250 before archive() had finished: had archiving failed, the client "
            "would never know. Wait for the work to finish — without blocking the loop — and reply after."
        ),
        "waits-blocking": (
            "archive() runs in another thread now, but the hook then waits for it in a way that holds "
            "the loop (a thread's join(), a future's result()): the second client still was not "
            "served. Wait with `await` instead, which lets the loop serve others meanwhile."
        ),
        "not-archived": (
            "The message was accepted, but archive() was never called: the hook must still archive "
            "every message, only without blocking the loop."
        ),
        "hook-failed": (
            "Your handle_DATA raised an exception, so the client got a 451 reply. The error is below; "
            "the notebook's server.errors keeps the whole traceback when you try it there."
        ),
        "not-accepted": (
            "The message was refused. Once archive() has finished, the hook should return a 250 reply "
            "such as '250 OK: archived'."
        ),
    },
)
def unblock_the_handler(handler_class: Any) -> str:
    """``handler_class(archive)`` makes a handler whose ``handle_DATA`` archives without blocking."""
    make = learner_function(handler_class, "archive")
    archive = _SlowArchive()
    try:
        handler = make(archive)
    except Exception as error:  # noqa: BLE001 - the learner's exception is the finding
        raise NotYet("raised", f"making the handler raised {type(error).__name__}: {error}") from None
    if not callable(getattr(handler, "handle_DATA", None)):
        raise NotYet("no-data-hook", f"{type(handler).__name__} has no handle_DATA method.")
    trial = run_in_lab(lambda server: _race(server, archive), options={"handler": handler}, timeout=BOUND * 5)
    race: _Race = trial.result
    errors = trial.server.errors
    evidence = [
        *(f"server.errors: {f.hook} raised {type(f.error).__name__}: {f.error}" for f in errors),
        *wire.heard(trial),
    ]
    where = f"archive() ran in the thread {race.archived_in!r}"
    if any("can't be used in 'await' expression" in str(failure.error) for failure in errors):
        raise NotYet("awaited-plain", "the hook awaited what archive() returned: None.", evidence=evidence)
    if race.on_loop:
        waited = (
            f" A second client waited {race.second_waited:.2f} s to be served." if race.second_waited else ""
        )
        raise NotYet(
            "blocks-loop",
            f"{where}, which runs the server's event loop: for {STALL:g} s the server served nobody else.{waited}",
            evidence=evidence,
        )
    if errors:
        raise NotYet(
            "hook-failed", f"handle_DATA raised {type(errors[0].error).__name__}.", evidence=evidence
        )
    if not race.archived_in:
        if trial.never_awaited():
            raise NotYet(
                "not-awaited",
                f"{', '.join(trial.never_awaited())}() was called but never awaited.",
                evidence=evidence,
            )
        raise NotYet("not-archived", "archive() was never called.", evidence=evidence)
    order = race.order
    if (
        race.replied_while_held
        or _replied_before_archived(trial, archive)
        or ("first-replied" in order and order.index("first-replied") < order.index("archiving"))
    ):
        raise NotYet(
            "replied-early",
            f"the first client had its reply before archive() had finished ({where}).",
            evidence=evidence,
        )
    if race.second_not_served:
        raise NotYet(
            "waits-blocking",
            f"{where}, yet a second client was not served within {BOUND:g} s: the loop was held while "
            "the hook waited for it.",
            evidence=evidence,
        )
    if race.first_reply is None or race.first_reply[0] != 250:
        said = (
            f"{race.first_reply[0]} {race.first_reply[1]}" if race.first_reply else race.first_error or "none"
        )
        raise NotYet("not-accepted", f"the reply to the message was: {said}.", evidence=evidence)
    return (
        f"{where}, not on the server's loop, and while it worked a second client was served (its "
        f"NOOP took {race.second_waited * 1000:.0f} ms); the message was accepted once archiving was done."
    )


# -- 01.2: three messages at once ----------------------------------------------------------------

WANTED = 3


class _Gathering:
    """The check's server handler: each message waits until all three are in the server at once."""

    def __init__(self) -> None:
        self.in_data = 0
        self.most_at_once = 0
        self.all_there: asyncio.Event | None = None
        self.gave_up = False

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.all_there is None:
            self.all_there = asyncio.Event()
        self.in_data += 1
        self.most_at_once = max(self.most_at_once, self.in_data)
        if self.in_data >= WANTED:
            self.all_there.set()
        try:
            if not self.gave_up:
                try:
                    await asyncio.wait_for(self.all_there.wait(), BOUND)
                except asyncio.TimeoutError:
                    self.gave_up = True  # one at a time: the others need not wait too
        finally:
            self.in_data -= 1
        return "250 2.0.0 OK"


@exercise(
    "01.2",
    notebook=NOTEBOOK,
    title="Three messages at once",
    hints={
        "one-at-a-time": (
            "The messages went one after the other: each send waited for the previous one to finish. "
            "Make the three sends first, without awaiting each, then await them together — "
            "asyncio.gather, as in section 6."
        ),
        "one-connection": (
            "All the messages went over one connection. A connection carries one conversation, one "
            "command at a time; give each message a Client (a connection) of its own."
        ),
        "not-awaited": (
            "Nothing was sent: the sends were made but never awaited, or were cancelled when your "
            "function returned without waiting for them. asyncio.gather(...) is itself something to await."
        ),
        "wrong-count": "The exercise asks for exactly three messages, each to its own recipient or not.",
        "refused": (
            "The server refused a command (its reply is below). Each message needs a sender, at least "
            "one recipient address like name@example.test, and content."
        ),
    },
)
def three_at_once(send_three: Any) -> str:
    """``send_three(server)`` sends three messages at the same time, over three connections."""
    gathering = _Gathering()
    trial = run_in_lab(send_three, options={"handler": gathering}, timeout=BOUND * 3)
    evidence = wire.heard(trial)
    messages = trial.messages
    mail_sessions = {e.session for e in wire.exchanges(trial) if e.verb == "MAIL"}
    if not mail_sessions:
        forgotten = trial.never_awaited()
        said = f"{', '.join(forgotten)}() was called but never awaited" if forgotten else "nothing was sent"
        raise NotYet("not-awaited", f"the server heard no MAIL FROM: {said}.", evidence=evidence)
    refusals = wire.refusals(trial)
    if len(mail_sessions) == 1 and (len(messages) > 1 or refusals):
        raise NotYet(
            "one-connection",
            f"the server saw {len(trial.transcripts)} connection(s), and every MAIL FROM came over one.",
            evidence=evidence,
        )
    for refused in refusals:
        raise NotYet("refused", f"the server answered {refused}.", evidence=evidence)
    if len(messages) != WANTED:
        raise NotYet("wrong-count", f"the server received {len(messages)} message(s).", evidence=evidence)
    if gathering.most_at_once < WANTED:
        raise NotYet(
            "one-at-a-time",
            f"the server never had more than {gathering.most_at_once} message(s) arriving at once.",
            evidence=evidence,
        )
    return (
        f"all {WANTED} messages were in the server at the same time, over {len(trial.transcripts)} "
        "connections: while one waited for its reply, the event loop went on with the others."
    )
