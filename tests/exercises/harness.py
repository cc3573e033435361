"""The tests every notebook's exercises get: its solutions pass, its typical wrong answers fail.

A notebook's test module (``tests/exercises/test_<module>.py``) holds a table of wrong answers
and asks for the tests::

    WRONG_ANSWERS = {
        "00.1": [
            Wrong("two-messages", two_sends, "one send() per recipient"),
            Wrong("one-recipient", one_recipient, "only one address in the list"),
        ],
    }
    test_solution_passes, test_wrong_answer_gets_its_hint, test_table_covers_every_hint = exercise_tests(
        "quickstart", WRONG_ANSWERS
    )

The solution is the one the notebook shows, collapsed: its code is run, then the notebook's own
check cell's arguments are passed to ``check``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import smtplab
from smtplab.exercises import Exercise, catalogue, check
from smtplab.exercises.registry import NOTEBOOK_MODULES
from smtplab.exercises.scan import check_calls, read, solutions

NOTEBOOK_DIR = Path(__file__).resolve().parents[2] / "notebooks"
SOLUTION_LINE_SHOWN = 16  # a hint never holds a solution line this long or longer


@dataclass(frozen=True)
class Wrong:
    """A typical wrong answer and the mistake its check must name.

    Attributes:
        mistake: The hint key the verdict must carry.
        answer: What the learner passes to ``check()``; a tuple for several arguments.
        why: What the learner did, in a few words (the test's id).
    """

    mistake: str
    answer: Any
    why: str

    @property
    def arguments(self) -> tuple[Any, ...]:
        return self.answer if isinstance(self.answer, tuple) else (self.answer,)


def module_exercises(module: str) -> list[Exercise]:
    """The catalogue's exercises defined in ``smtplab.exercises.<module>``."""
    assert module in NOTEBOOK_MODULES.values(), f"{module} is not listed in NOTEBOOK_MODULES"
    return [e for e in catalogue() if e.check.__module__ == f"smtplab.exercises.{module}"]


def run_solution(item: Exercise) -> Any:
    """Run the notebook's collapsed solution of ``item`` and its check cell's call; the verdict."""
    notebook = read(NOTEBOOK_DIR / item.notebook)
    code = solutions(notebook).get(item.id)
    assert code, f"{item.notebook} has no collapsed solution whose <summary> names {item.id}"
    calls = [call for call in check_calls(notebook) if call.exercise == item.id]
    assert calls, f"{item.notebook} has no check cell for {item.id}"
    namespace: dict[str, Any] = {"smtplab": smtplab}
    exec(compile(code, f"<solution to {item.id}>", "exec"), namespace)
    arguments = [eval(argument, namespace) for argument in calls[0].arguments]
    return check(item.id, *arguments)


def exercise_tests(module: str, wrong_answers: dict[str, list[Wrong]]) -> tuple[Callable[..., None], ...]:
    """The three tests of a notebook module's exercises, parametrized over its exercises."""
    exercises = module_exercises(module)
    ids = [item.id for item in exercises]
    cases = [
        (exercise_id, wrong) for exercise_id in sorted(wrong_answers) for wrong in wrong_answers[exercise_id]
    ]

    @pytest.mark.parametrize("item", exercises, ids=ids)
    def test_solution_passes(item: Exercise) -> None:
        verdict = run_solution(item)
        assert verdict.passed, f"the notebook's solution to {item.id} fails:\n{verdict}"
        code = solutions(read(NOTEBOOK_DIR / item.notebook))[item.id]
        shown = [line.strip() for line in code.splitlines() if len(line.strip()) >= SOLUTION_LINE_SHOWN]
        for key, hint in item.hints.items():
            leaked = [line for line in shown if line in hint]
            assert not leaked, f"the hint {key!r} of {item.id} gives away the solution: {leaked}"

    @pytest.mark.parametrize(
        ("exercise_id", "wrong"), cases, ids=[f"{e}-{w.mistake}-{w.why}" for e, w in cases]
    )
    def test_wrong_answer_gets_its_hint(exercise_id: str, wrong: Wrong) -> None:
        verdict = check(exercise_id, *wrong.arguments)
        item = next(e for e in exercises if e.id == exercise_id)
        assert not verdict.passed, f"{wrong.why!r} passed {exercise_id}:\n{verdict}"
        assert verdict.mistake == wrong.mistake, f"{wrong.why!r}: expected {wrong.mistake!r}\n{verdict}"
        assert verdict.hint == item.hint_for(wrong.mistake) and verdict.hint
        assert verdict.message and verdict.message not in verdict.hint

    @pytest.mark.parametrize("item", exercises, ids=ids)
    def test_table_covers_every_hint(item: Exercise) -> None:
        table = wrong_answers.get(item.id, [])
        mistakes = {wrong.mistake for wrong in table}
        assert len(mistakes) >= 2, (
            f"{item.id} needs at least two typical wrong answers, each with its own hint"
        )
        untested = set(item.hints) - mistakes
        assert not untested, (
            f"hints of {item.id} that no wrong answer in the table reaches: {sorted(untested)}"
        )
        assert set(wrong_answers) <= set(ids), (
            f"answers for exercises not in {module}: {set(wrong_answers) - set(ids)}"
        )

    return test_solution_passes, test_wrong_answer_gets_its_hint, test_table_covers_every_hint
