"""The catalogue and check(): ids, hints by mistake, and clear errors for authors and learners."""

from __future__ import annotations

import subprocess
import sys

import pytest

from smtplab.errors import SmtpLabError, UnknownExerciseError
from smtplab.exercises import NotYet, Verdict, catalogue, check, exercise
from smtplab.exercises.registry import FRAMEWORK_HINTS, NOTEBOOK_MODULES

HINTS = {"too-small": "Think bigger.", "timed-out": "This exercise's own word on time-outs."}


@exercise("99.1", notebook="99-testing.ipynb", title="Pick a big number", hints=HINTS)
def big_number(number, *, strict=False):
    if number == "slow":
        raise NotYet("timed-out", "it took too long")
    if number == "mine":
        raise NotYet("raised", "your code raised ValueError", evidence=["line 1"])
    if number == "undeclared":
        raise NotYet("no-such-hint", "an author's slip")
    if number == "nothing":
        return None
    if number < 100:
        raise NotYet("too-small", f"{number} is less than 100")
    return f"{number} is big"


def test_a_passing_answer_gets_the_check_message():
    verdict = big_number.judge(1000)
    assert verdict == Verdict("99.1", "Pick a big number", True, "1000 is big")


def test_a_mistake_gets_its_declared_hint():
    verdict = big_number.judge(7)
    assert (verdict.passed, verdict.mistake, verdict.message, verdict.hint) == (
        False,
        "too-small",
        "7 is less than 100",
        "Think bigger.",
    )


def test_framework_hints_apply_unless_the_exercise_declares_its_own():
    assert big_number.judge("mine").hint == FRAMEWORK_HINTS["raised"]
    assert big_number.judge("mine").evidence == ("line 1",)
    assert big_number.judge("slow").hint == "This exercise's own word on time-outs."


def test_an_undeclared_mistake_is_the_author_s_error():
    with pytest.raises(KeyError, match=r"no-such-hint.*declare it in hints="):
        big_number.judge("undeclared")


def test_a_check_must_return_its_message():
    with pytest.raises(TypeError, match="returned None"):
        big_number.judge("nothing")


def test_wrong_arguments_show_the_right_call():
    assert big_number.usage == 'check("99.1", number, strict=strict)'
    with pytest.raises(TypeError, match=r'Call it as check\("99.1", number'):
        big_number.judge()
    with pytest.raises(TypeError, match="Call it as"):
        big_number.judge(1, 2)


def test_exercises_outside_registered_modules_are_not_in_the_catalogue():
    assert "99.1" not in [item.id for item in catalogue()]
    with pytest.raises(UnknownExerciseError) as caught:
        check("99.1", 1000)
    assert isinstance(caught.value, SmtpLabError) and isinstance(caught.value, LookupError)


def test_an_unknown_id_suggests_close_ones():
    with pytest.raises(
        UnknownExerciseError, match=r"no exercise '00\.3'\. Did you mean '00\.1' or '00\.2' or '\d\d\.3'"
    ):  # the same notebook's first, then the closest
        check("00.3", None)
    with pytest.raises(UnknownExerciseError, match="catalogue"):
        check("quickstart", None)


def test_the_catalogue_is_ordered_and_consistent():
    items = catalogue()
    assert [item.id for item in items] == sorted(
        (item.id for item in items), key=lambda i: tuple(map(int, i.split(".")))
    )
    assert len({item.id for item in items}) == len(items)
    for item in items:
        module = NOTEBOOK_MODULES[item.id[:2]]
        assert item.check.__module__ == f"smtplab.exercises.{module}"
        assert item.notebook.startswith(f"{item.id[:2]}-")
        assert item.hints and all(text.strip() for text in item.hints.values())


@pytest.mark.parametrize(
    ("exercise_id", "notebook", "title", "hints", "problem"),
    [
        ("9.1", "09-fine.ipynb", "Title", {"k": "v"}, "NN.M"),
        ("09.0", "09-fine.ipynb", "Title", {"k": "v"}, "NN.M"),
        ("09.1", "10-other.ipynb", "Title", {"k": "v"}, "must name its notebook"),
        ("09.1", "09 spaces.ipynb", "Title", {"k": "v"}, "must name its notebook"),
        ("09.1", "09-fine.ipynb", " ", {"k": "v"}, "needs a title"),
        ("09.1", "09-fine.ipynb", "Title", {"Not Kebab": "x"}, "kebab-case"),
        ("09.1", "09-fine.ipynb", "Title", {"empty": " "}, "kebab-case"),
    ],
)
def test_malformed_declarations_are_refused(exercise_id, notebook, title, hints, problem):
    with pytest.raises(ValueError, match=problem):
        exercise(exercise_id, notebook=notebook, title=title, hints=hints)


def test_an_id_cannot_be_taken_twice_by_different_modules():
    declare = exercise("99.2", notebook="99-testing.ipynb", title="t", hints={"k": "v"})

    def here(answer):
        return "ok"

    def elsewhere(answer):
        return "ok"

    declare(here)
    declare(here)  # the same module again (a re-import) is fine
    elsewhere.__module__ = "smtplab.exercises.other"
    with pytest.raises(ValueError, match="defined twice"):
        declare(elsewhere)


def test_importing_the_exercises_starts_nothing():
    code = (
        "import sys, threading; from smtplab.exercises import check; "
        "assert threading.active_count() == 1, threading.enumerate(); "
        "assert 'smtplab.exercises.quickstart' not in sys.modules and 'nbformat' not in sys.modules; "
        "print('ok')"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout == "ok\n"
