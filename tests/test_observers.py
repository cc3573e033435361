"""Observers: callbacks added and removed from any thread, called in order, a failing one logged or kept."""

from __future__ import annotations

import threading

from smtplab._observers import Observers


def test_callbacks_are_called_in_order_until_removed():
    seen: list[tuple[str, int]] = []
    observers: Observers = Observers("a test")
    first = observers.add(lambda n: seen.append(("first", n)))
    observers.add(lambda n: seen.append(("second", n)))
    observers.notify(1)
    observers.remove(first)
    observers.remove(first)  # twice is fine
    observers.notify(2)
    assert seen == [("first", 1), ("second", 1), ("second", 2)]


def test_a_failing_callback_is_logged_and_the_others_still_run(caplog):
    seen: list[int] = []
    observers: Observers = Observers("a test")
    observers.add(lambda n: 1 / 0)
    observers.add(seen.append)
    observers.notify(7)
    assert seen == [7]
    assert "an observer of a test failed" in caplog.text and "ZeroDivisionError" in caplog.text


def test_a_failing_callback_may_be_kept_for_the_learner_instead_of_logged(caplog):
    kept: list[Exception] = []
    seen: list[int] = []
    observers: Observers = Observers("a test", errors=kept)
    observers.add(lambda n: 1 / 0)
    observers.add(seen.append)
    observers.notify(7)
    assert seen == [7] and [type(error) for error in kept] == [ZeroDivisionError]
    assert "an observer" not in caplog.text


def test_a_callback_may_remove_itself_while_being_called_from_another_thread():
    observers: Observers = Observers("a test")
    calls: list[int] = []

    def once(n: int) -> None:
        calls.append(n)
        observers.remove(once)

    observers.add(once)
    thread = threading.Thread(target=observers.notify, args=(1,))
    thread.start()
    thread.join(10)
    observers.notify(2)
    assert calls == [1]
