"""How late a lab server's event loop runs what it is given: its *lag*, measured live.

A lab server serves every client from one event loop, in one thread: while a handler hook blocks
(``time.sleep``, a slow library call), that loop runs nothing else, and every other client waits.
:class:`LagMeter` makes that visible. Every ``interval`` it hands the server's loop a tiny job
(:meth:`LabServer.call_in_loop <smtplab.server.LabServer.call_in_loop>`) and notes how long the
job waited to run: a fraction of a millisecond on a free loop, the whole stall on a blocked one.
While a job is still waiting, :attr:`LagMeter.now` grows, so a stall shows while it lasts, not
only afterwards. ::

    meter = LagMeter(server).start()
    ...
    meter.worst  # the longest wait since start (or reset), in seconds
    meter.stop()

The meter runs in a thread of its own and costs the loop one short callback per interval (20 a
second by default); it stops by itself when the server stops. ``smtplab.widgets.LoopMonitor``
draws it.
"""

from __future__ import annotations

import concurrent.futures
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from smtplab._observers import Observers
from smtplab.errors import ServerNotRunningError

if TYPE_CHECKING:
    from smtplab.server import LabServer

__all__ = ["BLOCKED", "SLUGGISH", "LagMeter", "LagSample", "describe_lag"]

#: A lag from this many seconds on: clients notice (a reply takes visibly longer).
SLUGGISH = 0.02
#: A lag from this many seconds on: the loop was blocked — something ran without awaiting.
BLOCKED = 0.1
#: Seconds between two measurements unless told otherwise.
DEFAULT_INTERVAL = 0.05
#: Measurements kept (at the default interval: the last 20 seconds).
DEFAULT_KEEP = 400


def describe_lag(seconds: float) -> str:
    """The lag in words, e.g. ``"blocked"``: ``"smooth"``, ``"sluggish"`` or ``"blocked"``."""
    if seconds >= BLOCKED:
        return "blocked"
    return "sluggish" if seconds >= SLUGGISH else "smooth"


@dataclass(frozen=True)
class LagSample:
    """One measurement.

    Attributes:
        time: When the job was handed to the loop (``time.monotonic()``).
        lag: Seconds it waited before the loop ran it.
    """

    time: float
    lag: float


Observer = Callable[["LagMeter"], object]


class LagMeter:
    """Measure a lab server's loop lag in a background thread (see the module's doc).

    Args:
        server: The running :class:`~smtplab.server.LabServer` to watch.
        interval: Seconds between measurements (and between live updates during a stall).
        keep: How many measurements to keep (the oldest are forgotten).

    Attributes:
        server: The server watched.
        interval: Seconds between measurements.
        state: ``"measuring"``, ``"stopped"``, or ``"server stopped"`` (it stopped by itself).
    """

    def __init__(
        self, server: LabServer, *, interval: float = DEFAULT_INTERVAL, keep: int = DEFAULT_KEEP
    ) -> None:
        if not 0.001 <= interval <= 10:
            raise ValueError(f"interval must be from 0.001 to 10 seconds, not {interval!r}")
        if keep < 2:
            raise ValueError(f"keep must be at least 2 measurements, not {keep!r}")
        self.server = server
        self.interval = interval
        self.state = "stopped"
        self._samples: deque[LagSample] = deque(maxlen=keep)
        self._lock = threading.Lock()
        self._observers: Observers[Observer] = Observers("a lag meter")
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._waiting_since: float | None = None  # a job handed to the loop, not run yet
        self._worst = 0.0

    # -- control -------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """Whether it is measuring now."""
        thread = self._thread
        return (
            self.state == "measuring" and thread is not None and thread.is_alive() and not self._stop.is_set()
        )

    def start(self) -> LagMeter:
        """Start measuring (again); returns the meter. Does nothing if it is measuring.

        Raises:
            ServerNotRunningError: The server is not running.
        """
        if self.running:
            return self
        self._join()
        if not self.server.running:
            raise ServerNotRunningError(
                f"the lab server {self.server.name!r} is not running, so it has no loop to measure: "
                "call server.start() first"
            )
        self._stop = threading.Event()
        self.state = "measuring"
        self._thread = threading.Thread(
            target=self._run, args=(self._stop,), name=f"smtplab-lag-meter-{self.server.name}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop measuring (within one interval); the measurements stay. Safe to call twice."""
        self._stop.set()
        self._join()
        if self.state == "measuring":
            self.state = "stopped"
        self._notify()

    def _join(self) -> None:
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()
        self._thread = None

    def reset(self) -> None:
        """Forget every measurement, and the worst one."""
        with self._lock:
            self._samples.clear()
            self._worst = 0.0
        self._notify()

    # -- readings ------------------------------------------------------------------------------

    @property
    def samples(self) -> list[LagSample]:
        """The measurements kept, oldest first."""
        with self._lock:
            return list(self._samples)

    @property
    def now(self) -> float:
        """The lag right now: the latest measurement, or longer while a job is still waiting."""
        with self._lock:
            latest = self._samples[-1].lag if self._samples else 0.0
            waiting = self._waiting_since
        return max(latest, time.monotonic() - waiting) if waiting is not None else latest

    @property
    def worst(self) -> float:
        """The longest lag since start or :meth:`reset`, counting a wait still going on."""
        with self._lock:
            worst, waiting = self._worst, self._waiting_since
        return max(worst, time.monotonic() - waiting) if waiting is not None else worst

    @property
    def waiting(self) -> bool:
        """Whether a job has been waiting for the loop longer than ``interval`` (a stall now)."""
        with self._lock:
            waiting = self._waiting_since
        return waiting is not None and time.monotonic() - waiting > self.interval

    def __repr__(self) -> str:
        return (
            f"<LagMeter {self.server.name!r} {self.state}: now {self.now * 1000:.1f} ms, "
            f"worst {self.worst * 1000:.1f} ms ({describe_lag(self.worst)}), {len(self.samples)} samples>"
        )

    # -- observers -----------------------------------------------------------------------------

    def observe(self, callback: Observer) -> Observer:
        """Call ``callback(meter)`` after each measurement, during a stall, and at stop."""
        return self._observers.add(callback)

    def unobserve(self, callback: Observer) -> None:
        """Stop calling ``callback``; does nothing if it was not observing."""
        self._observers.remove(callback)

    def _notify(self) -> None:
        self._observers.notify(self)

    # -- the meter's thread ----------------------------------------------------------------------

    def _run(self, stop: threading.Event) -> None:
        try:
            while not stop.is_set():
                lag = self._measure_once(stop)
                if lag is None:
                    break
                self._notify()
                stop.wait(self.interval)  # the pace of measuring
        finally:
            with self._lock:
                self._waiting_since = None
            if not stop.is_set():
                self.state = "server stopped"
                self._notify()

    def _measure_once(self, stop: threading.Event) -> float | None:
        """Hand the loop one job and wait for it to run; its lag, or None when done measuring."""
        sent = time.monotonic()
        try:
            job = self.server.call_in_loop(time.monotonic)
        except ServerNotRunningError:
            return None
        with self._lock:
            self._waiting_since = sent
        while True:
            try:
                ran = job.result(timeout=self.interval)
                break
            except concurrent.futures.TimeoutError:
                if stop.is_set() or not self.server.running:
                    job.cancel()
                    return None
                self._notify()  # a stall, live: `now` keeps growing
            except concurrent.futures.CancelledError:  # the server stopped first
                return None
        lag = max(ran - sent, 0.0)
        with self._lock:
            self._waiting_since = None
            self._samples.append(LagSample(sent, lag))
            self._worst = max(self._worst, lag)
        return lag
