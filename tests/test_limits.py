"""Tests for smtplab.limits: the Limits value and the connection gate (pure; no server)."""

from __future__ import annotations

import pytest

from smtplab.limits import ConnectionGate, Limits

# -- the Limits value -------------------------------------------------------------------------


def test_defaults_are_for_a_classroom():
    limits = Limits()
    assert limits.max_message_size == 10 * 1024 * 1024
    assert (limits.max_recipients, limits.max_connections, limits.max_auth_failures) == (100, 20, 3)
    assert (limits.idle_timeout, limits.max_session_time) == (120.0, 900.0)
    assert (limits.max_line_length, limits.max_command_length) == (1001, 512)
    assert not limits.strict_line_endings
    assert limits.smtp_options() == {"data_size_limit": 10 * 1024 * 1024, "timeout": 120.0}


def test_limits_are_frozen_and_replace_makes_a_copy():
    limits = Limits()
    with pytest.raises(AttributeError):
        limits.max_recipients = 5  # type: ignore[misc]
    assert limits.replace(max_recipients=5).max_recipients == 5 and limits.max_recipients == 100


def test_none_switches_a_limit_off():
    limits = Limits(max_message_size=None, max_recipients=None, idle_timeout=None, max_connections=None)
    assert limits.smtp_options()["data_size_limit"] is None
    assert limits.smtp_options()["timeout"] > 3600 * 24 * 300  # aiosmtpd needs a number


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("max_recipients", 0, "positive number"),
        ("max_connections", -1, "positive number"),
        ("max_message_size", True, "positive number"),
        ("max_recipients", 2.5, "whole number"),
        ("idle_timeout", "60", "positive number"),
        ("max_line_length", None, "positive number,"),
        ("max_command_length", 20, "at least 80"),
        ("strict_line_endings", 1, "True or False"),
    ],
)
def test_bad_values_are_named(field, value, message):
    with pytest.raises((ValueError, TypeError), match=message) as caught:
        Limits(**{field: value})
    assert field in str(caught.value)


def test_gate_counts_and_releases():
    gate = ConnectionGate(1)
    assert gate.enter() and not gate.enter()
    gate.leave()
    assert gate.enter() and gate.refused == 1
    assert repr(gate) == "<ConnectionGate 1/1 open, 1 refused>"
    unlimited = ConnectionGate(None)
    assert all(unlimited.enter() for _ in range(1000))
