"""Callbacks to call when something changes, from whichever thread changed it.

A small list under a lock: a callback is added and removed from any thread, and one that raises
is logged (or kept, for the learner to read), never raised into whatever made the change (a
server's session, a meter's thread).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

__all__ = ["Observers"]

log = logging.getLogger("smtplab")

C = TypeVar("C", bound=Callable[..., Any])


class Observers(Generic[C]):
    """The callbacks observing one object.

    Args:
        what: What the callbacks observe, for the log line when one fails (``"a fault"``).
        errors: Where to keep what a callback raises instead of logging it (e.g. a server's
            ``observer_errors``).
    """

    def __init__(self, what: str, *, errors: list[Exception] | None = None) -> None:
        self._what = what
        self._errors = errors
        self._lock = threading.Lock()
        self._callbacks: list[C] = []

    def add(self, callback: C) -> C:
        """Call ``callback`` on every change from now on; returns it (to remove it later)."""
        with self._lock:
            self._callbacks.append(callback)
        return callback

    def remove(self, callback: C) -> None:
        """Stop calling ``callback``; does nothing if it was not observing."""
        with self._lock:
            if callback in self._callbacks:
                self._callbacks.remove(callback)

    def notify(self, *args: Any) -> None:
        """Call every callback with ``args``, in the order they were added."""
        with self._lock:
            callbacks = tuple(self._callbacks)
        for callback in callbacks:
            try:
                callback(*args)
            except Exception as error:  # an observer never breaks what it observes
                if self._errors is None:
                    log.exception("an observer of %s failed", self._what)
                else:
                    self._errors.append(error)
