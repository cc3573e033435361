"""Deterministic fault injection: the rules a lab server consults before each reply.

A real mail server sometimes says "not now" (``451``), "no such user" (``550``), takes its time,
or drops the connection. Capture servers imitate that with random chaos; a lesson needs the same
faults on purpose, when the learner asks for them, and explained. ::

    fault = server.inject("RCPT", reply="550 5.1.1 No such user here")  # the next RCPT TO only
    server.inject("end of data", reply=451, times=3)  # the next three messages: try again later
    server.inject("MAIL", disconnect=True)  # hang up instead of answering MAIL FROM
    server.inject("connect", delay=2.0)  # a slow greeting
    server.faults  # what is armed now
    fault.cancel()

A fault waits at one of :data:`STAGES` — the points of a session where the lab server asks before
it replies: ``connect`` (the greeting), ``EHLO``, ``MAIL``, ``RCPT``, ``DATA``, ``end of data``
(the verdict on the message, after its content; nothing is stored) and ``AUTH``. Each time its
stage comes, an armed fault fires — replaces the reply, hangs up, or holds the reply back — until
it has fired ``times`` times. With ``probability=`` it fires only that often, drawn from a random
generator of its own, seeded: the same seed gives the same run (the seed is kept on the fault,
``fault.seed``, to replay one). The server's transcript marks every injected reply.

This module is pure — no I/O, no threads of its own: :class:`FaultRules` holds the armed faults
of one server (safe to use from any thread), and the server's sessions consult it, on the
server's event loop, through :meth:`FaultRules.before_reply`.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# The stages are where the adapter's sessions ask (one home: smtplab._aiosmtpd). Importing this
# module imports aiosmtpd, so the lab server imports it when first needed, as it does the adapter.
from smtplab._aiosmtpd import STAGES, Intervention
from smtplab._observers import Observers
from smtplab.protocol import REPLY_CODES, parse_reply_line

__all__ = ["STAGES", "SUGGESTED_REPLIES", "Fault", "FaultRules", "Firing", "check_stage"]

#: Replies worth injecting at each stage, as a real server might give them (RFC 5321 §4.2.2,
#: enhanced codes from RFC 3463): the FaultPanel offers these.
SUGGESTED_REPLIES: dict[str, tuple[str, ...]] = {
    "connect": (
        "421 4.3.2 Service not available, closing transmission channel",
        "554 5.3.2 No SMTP service here",
    ),
    "EHLO": (
        "502 5.5.1 EHLO not implemented, try HELO",
        "421 4.3.2 Service not available, closing transmission channel",
    ),
    "MAIL": (
        "451 4.3.0 Temporary failure, try again later",
        "550 5.7.1 Sender rejected",
        "452 4.3.1 Insufficient system storage",
    ),
    "RCPT": (
        "550 5.1.1 No such user here",
        "450 4.2.1 Mailbox busy, try again later",
        "452 4.5.3 Too many recipients",
    ),
    "DATA": (
        "451 4.3.0 Temporary failure, try again later",
        "554 5.5.1 No valid recipients",
    ),
    "end of data": (
        "451 4.3.0 Temporary failure, try again later",
        "552 5.3.4 Message too big for system",
        "554 5.7.1 Message rejected as spam",
    ),
    "AUTH": (
        "454 4.7.0 Temporary authentication failure",
        "535 5.7.8 Authentication credentials invalid",
    ),
}

_BY_KEY = {stage.lower().replace("-", " ").replace("_", " "): stage for stage in STAGES}
_HISTORY_KEPT = 200


def check_stage(stage: object) -> str:
    """The stage's canonical name (``"rcpt"`` → ``"RCPT"``, ``"end-of-data"`` → ``"end of data"``).

    Raises:
        ValueError: ``stage`` is not one of :data:`STAGES`; the message lists them.
    """
    if isinstance(stage, str):
        found = _BY_KEY.get(" ".join(stage.lower().replace("-", " ").replace("_", " ").split()))
        if found is not None:
            return found
    import difflib  # only a mistyped stage needs it

    close = difflib.get_close_matches(str(stage), STAGES, n=1, cutoff=0.5) if isinstance(stage, str) else []
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise ValueError(
        f"{stage!r} is not a stage where a fault can wait.{hint} The stages are: "
        f"{', '.join(repr(s) for s in STAGES)} ('connect' is the greeting, 'end of data' the reply "
        "after the message content)."
    )


def _check_reply(reply: object, stage: str) -> str | None:
    """The reply line a fault gives, checked: a 4xx or 5xx reply on one line of printable ASCII."""
    if reply is None:
        return None
    example = SUGGESTED_REPLIES[stage][0]
    if isinstance(reply, int) and not isinstance(reply, bool):
        if not 400 <= reply <= 599 or reply // 10 % 10 > 5:
            raise ValueError(
                f"reply={reply}: a fault answers with a refusal, a code from 400 to 559 (4xx: try again "
                f"later, 5xx: permanent), e.g. reply={example[:3]} or reply={example!r}"
            )
        known = REPLY_CODES.get(reply)
        meaning = known.meaning if known is not None else "refused"
        return f"{reply} {reply // 100}.0.0 {meaning} (a fault injected by the lab)"
    if not isinstance(reply, str):
        raise TypeError(
            f"reply must be a reply line such as {example!r}, or just its code ({example[:3]}), "
            f"not {type(reply).__name__}"
        )
    bad = next((char for char in reply if not " " <= char <= "~"), None)
    if bad is not None:
        raise ValueError(
            f"reply={reply!r} contains {bad!r}: a fault's reply is one line of printable ASCII "
            "(a multi-line reply is not supported), e.g. " + repr(example)
        )
    parsed = parse_reply_line(reply)
    if parsed is None or not parsed.last or parsed.code < 400:
        raise ValueError(
            f"reply={reply!r} is not a refusal: give a reply line that starts with a code from 400 "
            f"to 559 and a space (4xx: try again later, 5xx: permanent), e.g. {example!r}"
        )
    return reply


@dataclass(frozen=True)
class Firing:
    """One time a fault took effect.

    Attributes:
        fault: The fault's number (``fault.number``).
        stage: Where it fired.
        action: What it did, e.g. ``"replied 550 5.1.1 No such user here"``.
        peer: The client's address, when known.
        time: When (``time.time()``).
    """

    fault: int
    stage: str
    action: str
    peer: Any = None
    time: float = 0.0


class Fault:
    """One armed fault, as returned by ``server.inject()``: cancel it, or watch it fire.

    Attributes:
        number: Its number on this server (1, 2, …), as the transcripts name it.
        stage: The stage it waits at (one of :data:`STAGES`).
        reply: The reply line it gives instead of the usual one, or ``None``.
        disconnect: Whether it hangs up instead of replying.
        delay: Seconds it holds the reply back first.
        times: How many times it fires before it is used up (``None``: until cancelled).
        probability: How likely it is to fire each time its stage comes (1.0: every time).
        seed: The seed of its random generator (``None`` when ``probability`` is 1).
        fired: How many times it has fired.
        seen: How many times its stage came while it was armed.
        cancelled: Whether :meth:`cancel` was called.
    """

    def __init__(
        self,
        rules: FaultRules,
        number: int,
        stage: str,
        *,
        reply: str | None,
        disconnect: bool,
        delay: float,
        times: int | None,
        probability: float,
        seed: int | None,
    ) -> None:
        self._rules = rules
        self.number = number
        self.stage = stage
        self.reply = reply
        self.disconnect = disconnect
        self.delay = delay
        self.times = times
        self.probability = probability
        self.seed = seed
        self.fired = 0
        self.seen = 0
        self.cancelled = False
        self._random = random.Random(seed) if probability < 1.0 else None

    @property
    def remaining(self) -> int | None:
        """How many more times it will fire (``None``: until cancelled; ``0``: no more)."""
        if self.cancelled:
            return 0
        return None if self.times is None else max(self.times - self.fired, 0)

    @property
    def armed(self) -> bool:
        """Whether it may still fire: not cancelled, not used up."""
        return self.remaining != 0

    @property
    def action(self) -> str:
        """What it does when it fires, in words: ``"reply 550 5.1.1 …"``, ``"hang up"``, …"""
        parts = [f"wait {self.delay:g} s"] if self.delay else []
        if self.disconnect:
            parts.append("hang up without a reply")
        elif self.reply is not None:
            parts.append(f"reply {self.reply}")
        else:
            parts.append("then reply as usual")
        return ", ".join(parts)

    def describe(self) -> str:
        """One line: where, what, how often, and how it has gone so far."""
        if self.times is None:
            often = "every time"
        else:
            often = {1: "once", 2: "twice"}.get(self.times, f"{self.times} times")
        if self.probability < 1.0:
            often += f", each with probability {self.probability:g} (seed {self.seed})"
        state = "cancelled" if self.cancelled else ("used up" if not self.armed else "armed")
        return f"fault #{self.number} at {self.stage}: {self.action}; {often}; fired {self.fired}× — {state}"

    def cancel(self) -> bool:
        """Disarm it; returns whether it was still armed. Safe to call twice, from any thread."""
        return self._rules.cancel(self)

    def __enter__(self) -> Fault:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.cancel()

    def __repr__(self) -> str:
        return f"<Fault {self.describe()}>"


Observer = Callable[[Fault, str], object]


class FaultRules:
    """The faults armed on one lab server, and the decision at each stage (thread-safe).

    ``server.inject()`` arms faults here; the server's sessions ask :meth:`before_reply` at each
    stage, on the server's event loop. Observers (the FaultPanel) hear ``(fault, event)`` for
    ``"armed"``, ``"fired"`` and ``"cancelled"``, on whichever thread it happened.

    Attributes:
        history: The latest firings (:class:`Firing`), oldest first (the last 200 are kept).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self._numbers = 0
        self._observers: Observers[Observer] = Observers("a lab server's faults")
        self.history: deque[Firing] = deque(maxlen=_HISTORY_KEPT)

    def add(
        self,
        stage: str,
        *,
        reply: str | int | None = None,
        disconnect: bool = False,
        delay: float = 0.0,
        times: int | None = 1,
        probability: float = 1.0,
        seed: int | None = None,
    ) -> Fault:
        """Arm a fault (the arguments of ``LabServer.inject``, checked); returns it.

        Raises:
            ValueError: A stage, reply, delay, count or probability it cannot take; the message
                says which values it can.
            TypeError: A value of the wrong type.
        """
        stage = check_stage(stage)
        line = _check_reply(reply, stage)
        if not isinstance(disconnect, bool):
            raise TypeError(f"disconnect must be True or False, not {disconnect!r}")
        if disconnect and line is not None:
            raise ValueError(
                "give reply= or disconnect=True, not both: a fault either answers instead of the "
                "server, or hangs up without a word (to say goodbye first, give a 421 reply)"
            )
        if isinstance(delay, bool) or not isinstance(delay, (int, float)) or not 0 <= delay < math.inf:
            raise ValueError(f"delay must be a number of seconds, zero or more, not {delay!r}")
        if line is None and not disconnect and not delay:
            raise ValueError(
                f"a fault at {stage} must do something: give reply= (e.g. "
                f"{SUGGESTED_REPLIES[stage][0]!r}), disconnect=True, or delay= seconds"
            )
        if times is not None and (isinstance(times, bool) or not isinstance(times, int) or times < 1):
            raise ValueError(
                f"times must be 1 or more, or None for every time until cancelled, not {times!r}"
            )
        if (
            isinstance(probability, bool)
            or not isinstance(probability, (int, float))
            or not 0 < probability <= 1
        ):
            raise ValueError(
                f"probability must be more than 0 and at most 1 (1: every time), not {probability!r}"
            )
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise TypeError(f"seed must be an int (or None to draw one), not {seed!r}")
        if probability < 1.0 and seed is None:
            seed = random.SystemRandom().randrange(2**32)  # kept on the fault, to replay the run
        with self._lock:
            self._numbers += 1
            fault = Fault(
                self,
                self._numbers,
                stage,
                reply=line,
                disconnect=disconnect,
                delay=float(delay),
                times=times,
                probability=float(probability),
                seed=seed if probability < 1.0 else None,
            )
            self._faults.append(fault)
        self._observers.notify(fault, "armed")
        return fault

    @property
    def armed(self) -> list[Fault]:
        """The faults that may still fire, oldest first."""
        with self._lock:
            return [fault for fault in self._faults if fault.armed]

    def cancel(self, fault: Fault) -> bool:
        """Disarm ``fault``; returns whether it was still armed."""
        with self._lock:
            was_armed = fault.armed
            fault.cancelled = True
            if fault in self._faults:
                self._faults.remove(fault)
        if was_armed:
            self._observers.notify(fault, "cancelled")
        return was_armed

    def cancel_all(self) -> int:
        """Disarm every fault; returns how many were armed."""
        return sum(self.cancel(fault) for fault in self.armed)

    def consult(self, stage: str, peer: Any = None) -> Fault | None:
        """The fault that fires at ``stage`` now, if any, counted as fired (the pure decision).

        Faults are asked oldest first; each one asked draws its own random number when it has
        a probability, so a seeded fault behaves the same for the same sequence of stages.
        """
        chosen = None
        with self._lock:
            for fault in self._faults:
                if fault.stage != stage or not fault.armed:
                    continue
                fault.seen += 1
                if fault._random is not None and fault._random.random() >= fault.probability:
                    continue
                fault.fired += 1
                chosen = fault
                if not fault.armed:
                    self._faults.remove(fault)
                break
            if chosen is not None:
                self.history.append(Firing(chosen.number, stage, chosen.action, peer, time.time()))
        if chosen is not None:
            self._observers.notify(chosen, "fired")
        return chosen

    def before_reply(self, stage: str, session: Any) -> Intervention | None:
        """The lab session's question at ``stage`` (``Callbacks.before_reply``): what to do now."""
        if not self._faults:  # nothing armed: the common case costs one look
            return None
        fault = self.consult(stage, getattr(getattr(session, "session", None), "peer", None))
        if fault is None:
            return None
        return Intervention(
            reply=fault.reply,
            disconnect=fault.disconnect,
            delay=fault.delay,
            note=f"injected fault #{fault.number} (server.inject): {fault.action}",
        )

    # -- observers ---------------------------------------------------------------------------

    def observe(self, callback: Observer) -> Observer:
        """Call ``callback(fault, event)`` on every change; returns it (to unobserve later)."""
        return self._observers.add(callback)

    def unobserve(self, callback: Observer) -> None:
        """Stop calling ``callback``; does nothing if it was not observing."""
        self._observers.remove(callback)
