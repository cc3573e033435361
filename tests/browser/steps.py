"""What the browser test does with each notebook's widgets, read from the notebook's metadata.

Every notebook says, in its metadata under ``smtplab.browser``, how a learner would use its
widgets once the notebook has run: a list of steps, each a dict with one action::

    {"fill": ".smtplab-composer-subject input", "text": "Hello"}   type into a field
    {"select": ".smtplab-fault-kind select", "option": "421"}      pick an option of a <select>
    {"click": ".smtplab-composer button", "text": "Send"}          click (the element holding text)
    {"expect": ".smtplab-mailbox-view", "text": "Hello"}           wait until it shows this text

An ``expect`` step may add ``"transient": "<why>"`` for a state that is meant to pass, such as a
command line the kernel says back before it is sent: wait for it before a click that reads the
field, since a click can reach the kernel before the typed value does.

Selectors are CSS. At least one click, and something to expect after it, is required: the test
clicks a widget in every notebook and checks what it shows. A notebook without steps fails.

The clean-up cell stops the servers but leaves the widgets showing what happened, for a learner
scrolling back: after it, every ``expect`` step but the transient ones is checked again, then the optional
``smtplab.after_cleanup`` list — ``expect`` steps only, e.g. the server panel showing "stopped".
"""

from __future__ import annotations

import re
from typing import Any

#: The status bar once the kernel is connected and has nothing in hand.
KERNEL_IDLE = re.compile(r"^Python 3 \(ipykernel\) \| Idle$")

ACTIONS = {"fill": {"text"}, "select": {"option"}, "click": {"text"}, "expect": {"text", "transient"}}
REQUIRED = {"fill": {"text"}, "select": {"option"}, "click": set(), "expect": {"text"}}


def browser_steps(metadata: Any) -> list[dict[str, str]]:
    """The notebook's steps, checked; raises AssertionError saying what to fix."""
    steps = metadata.get("smtplab", {}).get("browser")
    assert steps, (
        'add "smtplab": {"browser": [...]} to the notebook\'s metadata: the steps the browser test '
        "takes with its widgets (see tests/browser/steps.py)"
    )
    assert isinstance(steps, list), "smtplab.browser is a list of steps"
    for number, step in enumerate(steps, 1):
        actions = [key for key in step if key in ACTIONS]
        assert len(actions) == 1, f"step {number} needs exactly one of {sorted(ACTIONS)}: {step}"
        action = actions[0]
        extra = set(step) - {action} - ACTIONS[action]
        missing = REQUIRED[action] - set(step)
        assert not extra and not missing, (
            f"step {number} ({action}): unknown {extra or ''} missing {missing or ''}"
        )
        assert all(isinstance(value, str) and value for value in step.values()), (
            f"step {number}: strings only"
        )
    kinds = [next(key for key in step if key in ACTIONS) for step in steps]
    assert "click" in kinds, "click at least one widget"
    assert "expect" in kinds[kinds.index("click") :], "expect what a click shows, after it"
    return steps


def after_cleanup_steps(metadata: Any) -> list[dict[str, str]]:
    """What the widgets must show once the clean-up cell ran: the ``expect`` steps again, and more."""
    extra = metadata.get("smtplab", {}).get("after_cleanup", [])
    assert isinstance(extra, list), "smtplab.after_cleanup is a list of steps"
    for number, step in enumerate(extra, 1):
        assert set(step) == {"expect", "text"} and all(isinstance(v, str) and v for v in step.values()), (
            f"after_cleanup step {number}: only {{'expect': selector, 'text': text}} steps: {step}"
        )
    lasting = [step for step in browser_steps(metadata) if "expect" in step and "transient" not in step]
    return lasting + extra


def take(page: Any, step: dict[str, str]) -> None:
    """Do one step with Playwright (``expect`` waits, with the page's default timeout)."""
    from playwright.sync_api import expect

    if "expect" not in step:
        # The kernel first finishes what it has in hand. A widget message that reaches it while it
        # handles another is dispatched without a busy/idle status (ipykernel 7), and ipywidgets
        # then holds back every later change of that widget until an idle that never comes: the
        # text typed next would never reach the kernel.
        expect(page.get_by_text(KERNEL_IDLE)).to_be_visible()
    if "fill" in step:
        page.locator(step["fill"]).fill(step["text"])
    elif "select" in step:
        page.locator(step["select"]).select_option(label=step["option"])
    elif "click" in step:
        target = page.locator(step["click"])
        if "text" in step:
            target = target.filter(has_text=step["text"])
        target.click()
    else:
        expect(page.locator(step["expect"])).to_contain_text(step["text"])
