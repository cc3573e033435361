"""Running a learner's code against a fresh private lab server, safely: :func:`run_in_lab`.

The learner's function (plain or ``async def``) runs in a worker thread of its own, against a
lab server nobody else uses (port 0, a unique name, so the learner's own ``"lab"`` server is never
replaced). If it is still running after the time limit, the check cancels it (``async`` code)
and stops the server — closing its sockets unblocks code waiting on the network — and reports
what happened instead of freezing the kernel. A loop that never waits on anything cannot be
stopped from outside a thread; the :class:`Trial` says so (``still_running``).

Works the same from a notebook (inside the kernel's running event loop) and from plain pytest:
the calling thread only waits.
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import itertools
import os
import threading
import time
import traceback
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from smtplab.exercises import wire
from smtplab.exercises.registry import NotYet
from smtplab.exercises.tap import TappedConnection, WireTap
from smtplab.mailbox import CapturedMessage, Mailbox
from smtplab.server import LabServer, start_server
from smtplab.transcript import Transcript

__all__ = ["DEFAULT_TIMEOUT", "Trial", "learner_function", "run_in_lab"]

#: Seconds the learner's code may run before the check stops it.
DEFAULT_TIMEOUT = 5.0
#: Seconds the learner's code gets to notice that the server has gone, after the time limit.
GRACE = 2.0
#: Lines of a learner's traceback kept as evidence.
TRACEBACK_LINES = 8

_trials = itertools.count(1)
# Frames of this module and of asyncio are the runner's, not the learner's.
_OWN_FRAMES = (__file__, os.path.dirname(asyncio.__file__) + os.sep)


@dataclass
class Trial:
    """What happened when the learner's code ran against a private lab server.

    Attributes:
        server: The private lab server (stopped by now); its mailbox and transcripts remain.
        result: What the learner's code returned (awaited, for ``async def`` code).
        error: The exception it raised, if any (its traceback is in ``error_lines``).
        error_lines: The last lines of that traceback, learner's frames only.
        timed_out: It was still running at the time limit.
        still_running: It could not be stopped at all (a loop that never waits): its thread
            is still alive.
        connections: What crossed the wire, per connection, when run with ``give="address"``.
        tapped: Whether the code talked through the wire tap (``give="address"``).
        greeting_delay: How long the tap held the greeting back.
        seconds: How long the code ran.
        warnings: Warnings raised while it ran (e.g. "coroutine … was never awaited").
        timeout: The time limit it had.
    """

    server: LabServer
    result: Any = None
    error: BaseException | None = None
    error_lines: tuple[str, ...] = ()
    timed_out: bool = False
    still_running: bool = False
    connections: list[TappedConnection] = field(default_factory=list)
    tapped: bool = False
    greeting_delay: float = 0.0
    seconds: float = 0.0
    warnings: list[warnings.WarningMessage] = field(default_factory=list)
    timeout: float = DEFAULT_TIMEOUT

    @property
    def mailbox(self) -> Mailbox:
        """Every message the private server captured."""
        return self.server.mailbox

    @property
    def messages(self) -> list[CapturedMessage]:
        """The captured messages, oldest first."""
        return list(self.server.mailbox)

    @property
    def transcripts(self) -> list[Transcript]:
        """The server's record of each session, oldest first."""
        return self.server.transcripts

    @property
    def finished(self) -> bool:
        """The code returned normally, in time."""
        return not self.timed_out and not self.still_running and self.error is None

    def never_awaited(self) -> list[str]:
        """Names of coroutines the code created but never awaited (a forgotten ``await``)."""
        names = []
        for caught in self.warnings:
            text = str(caught.message)
            if issubclass(caught.category, RuntimeWarning) and text.endswith("was never awaited"):
                names.append(text.split("'")[1] if text.count("'") >= 2 else text)
        return names

    def raise_if_never_connected(self) -> None:
        """Raise :class:`NotYet` if the code never reached the server at all.

        Mistake keys (the exercise declares their hints): ``"not-awaited"`` when a coroutine was
        made and never awaited (a forgotten ``await``), ``"never-connected"`` otherwise.
        """
        if self.transcripts:
            return
        forgotten = self.never_awaited()
        if forgotten:
            raise NotYet("not-awaited", f"{', '.join(forgotten)}() was called but never awaited.")
        raise NotYet("never-connected", "the lab server had no connection at all.")

    def raise_for_trouble(self) -> None:
        """Raise :class:`NotYet` if the code timed out, is still running or raised.

        Mistake keys: ``"still-running"``, ``"timed-out"``, ``"raised"`` (hints in
        :data:`~smtplab.exercises.registry.FRAMEWORK_HINTS`, or the exercise's own).
        """
        heard = tuple(wire.heard(self))
        if self.still_running:
            raise NotYet(
                "still-running",
                f"your code was still running after {self.timeout:g} s and could not be stopped: "
                "its thread is still alive, using a processor.",
                evidence=heard,
            )
        if self.timed_out:
            raise NotYet(
                "timed-out",
                f"your code was still running after {self.timeout:g} s, so the check stopped it "
                "and its lab server.",
                evidence=heard,
            )
        if self.error is not None:
            raise NotYet(
                "raised",
                f"your code raised {type(self.error).__name__}: {self.error}",
                evidence=self.error_lines + (("", *heard) if heard else ()),
            )

    def __repr__(self) -> str:
        if self.still_running:
            outcome = "still running"
        elif self.timed_out:
            outcome = f"timed out after {self.timeout:g} s"
        elif self.error is not None:
            outcome = f"raised {type(self.error).__name__}"
        else:
            outcome = f"returned {self.result!r}"[:80]
        return f"<Trial {outcome}, {len(self.transcripts)} session(s), {len(self.server.mailbox)} message(s)>"


def learner_function(answer: Any, *parameters: str) -> Callable[..., Any]:
    """Make sure ``answer`` is a function taking ``parameters``; return it.

    Raises:
        NotYet: ``"called-not-passed"`` (a coroutine or other result was passed instead of the
            function), ``"not-a-function"``, ``"wrong-parameters"``.
    """
    wanted = f"({', '.join(parameters)})"
    if inspect.iscoroutine(answer):
        answer.close()  # it will never run: close it so Python does not warn about it
        raise NotYet(
            "called-not-passed",
            "you passed a coroutine (what calling an async function gives back) instead of the function itself.",
        )
    if not callable(answer):
        raise NotYet(
            "not-a-function", f"you passed {_describe(answer)} where a function {wanted} was expected."
        )
    try:
        signature = inspect.signature(answer)
    except (TypeError, ValueError):
        return answer  # a builtin or C function: let the call decide
    try:
        signature.bind(*parameters)
    except TypeError:
        raise NotYet(
            "wrong-parameters",
            f"your function takes {signature}, but the check calls it with {wanted}.",
        ) from None
    return answer


def _describe(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text[:60]}{'…' if len(text) > 60 else ''}"


class _Worker(threading.Thread):
    """Runs the learner's code once; an awaitable result is awaited on a loop of its own."""

    def __init__(self, code: Callable[..., Any], argument: Any, name: str) -> None:
        super().__init__(name=name, daemon=True)
        self.code = code
        self.argument = argument
        self.result: Any = None
        self.error: BaseException | None = None
        self.done = threading.Event()
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[Any] | None = None
        self._cancelled = False

    def run(self) -> None:
        try:
            value = self.code(self.argument)
            if inspect.isawaitable(value):
                value = self._await(value)
            self.result = value
        except BaseException as error:  # noqa: BLE001 - the learner's exception is the finding
            self.error = error
        finally:
            self.done.set()

    def _await(self, awaitable: Any) -> Any:
        loop = asyncio.new_event_loop()
        try:
            with self._lock:
                self._loop = loop
                self._task = loop.create_task(_as_coroutine(awaitable))
                if self._cancelled:
                    self._task.cancel()
            return loop.run_until_complete(self._task)
        finally:
            try:
                leftovers = asyncio.all_tasks(loop)
                for task in leftovers:
                    task.cancel()
                if leftovers:
                    loop.run_until_complete(asyncio.gather(*leftovers, return_exceptions=True))
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                with self._lock:
                    loop.close()

    def cancel(self) -> None:
        """Cancel ``async`` code (at its next ``await``); plain code cannot be cancelled."""
        with self._lock:
            self._cancelled = True
            if self._loop is not None and self._task is not None and not self._loop.is_closed():
                self._loop.call_soon_threadsafe(self._task.cancel)


async def _as_coroutine(awaitable: Any) -> Any:
    return await awaitable


def run_in_lab(
    code: Callable[..., Any],
    *,
    give: Literal["server", "address"] = "server",
    options: Mapping[str, Any] | None = None,
    before: Callable[[LabServer], object] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    greeting_delay: float = 0.0,
    allow_errors: bool = False,
) -> Trial:
    """Run the learner's ``code`` against a fresh private lab server and return what happened.

    Args:
        code: A function of one argument (plain or ``async def``): the learner's answer, or a
            small function of yours that calls it, e.g. ``lambda server: find(server.mailbox,
            "bob@example.test")``.
        give: ``"server"`` passes the :class:`~smtplab.LabServer` (for ``smtplab.Client(server)``);
            ``"address"`` passes ``(host, port)`` of a wire tap in front of it, for any client
            (``smtplib``, sockets), and records every byte (``trial.connections``).
        options: Keyword arguments for :func:`smtplab.start_server`, e.g. ``{"tls": "starttls"}``.
        before: Called with the server before the code runs (to fill its mailbox, say).
        timeout: Seconds the code may run.
        greeting_delay: With ``give="address"``, seconds to hold the greeting back so that a
            client that does not read it is caught talking first (a few tenths suffice).
        allow_errors: Return the trial even if the code raised, timed out or is still running;
            by default that raises :class:`NotYet` with the matching mistake.

    Returns:
        The :class:`Trial`: result or exception, the stopped server's transcripts and mailbox,
        and the wire (with ``give="address"``).

    Raises:
        NotYet: ``code`` is not a function of one argument, or (unless ``allow_errors``) it
            raised, timed out or could not be stopped.
    """
    if give not in ("server", "address"):
        raise ValueError(f"give must be 'server' or 'address', not {give!r}")
    if greeting_delay and give != "address":
        raise ValueError("greeting_delay needs give='address': the wire tap holds the greeting back")
    learner_function(code, give)
    number = next(_trials)
    with warnings.catch_warnings(record=True) as caught:
        # The learner's code may leave sockets or coroutines behind; they are collected here,
        # and what Python says about them is kept on the trial instead of being raised.
        warnings.simplefilter("always")
        server = start_server(name=f"exercise-check-{number}", **dict(options or {}))
        tap = None
        worker = _Worker(code, None, name=f"smtplab-exercise-{number}")
        started = time.monotonic()
        try:
            if before is not None:
                before(server)
            if give == "address":
                tap = WireTap(server.address, greeting_delay=greeting_delay).start()  # type: ignore[arg-type]
                worker.argument = tap.address
            else:
                worker.argument = server
            worker.start()
            in_time = worker.done.wait(timeout)
            if not in_time:
                worker.cancel()
        finally:
            if tap is not None:
                tap.stop()
            server.stop()
        if not in_time:
            worker.done.wait(GRACE)  # closed sockets wake code that waits on the network
        trial = Trial(
            server=server,
            result=worker.result,
            error=worker.error,
            error_lines=_learner_traceback(worker.error),
            timed_out=not in_time,
            still_running=not worker.done.is_set(),
            connections=list(tap.connections) if tap is not None else [],
            tapped=tap is not None,
            greeting_delay=greeting_delay,
            seconds=time.monotonic() - started,
            timeout=timeout,
        )
        worker.result = worker.error = None
        gc.collect()  # sockets, transports and coroutines the code left behind
    trial.warnings = list(caught)
    if not allow_errors:
        trial.raise_for_trouble()
    return trial


def _learner_traceback(error: BaseException | None) -> tuple[str, ...]:
    """The last lines of the traceback, without the runner's own frames; frees the frames."""
    if error is None or isinstance(error, asyncio.CancelledError):
        return ()
    summary = traceback.extract_tb(error.__traceback__)
    learner = [frame for frame in summary if not frame.filename.startswith(_OWN_FRAMES)]
    lines = "".join(
        traceback.format_list(learner) + traceback.format_exception_only(type(error), error)
    ).splitlines()
    traceback.clear_frames(error.__traceback__)  # what the frames held (sockets…) can go now
    return tuple(lines[-TRACEBACK_LINES:])
