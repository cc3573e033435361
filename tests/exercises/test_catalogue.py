"""The catalogue and the notebooks agree: every check cell names an exercise, every exercise is used."""

from __future__ import annotations

from pathlib import Path

import pytest

from smtplab.exercises import catalogue
from smtplab.exercises.registry import NOTEBOOK_MODULES
from smtplab.exercises.scan import check_calls, read, solutions

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
EXERCISES = {item.id: item for item in catalogue()}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[path.name for path in NOTEBOOKS])
def test_every_check_cell_names_an_exercise_of_this_notebook(path: Path) -> None:
    calls = check_calls(read(path))
    assert calls, f"{path.name} has no check cell: every notebook has exercises checked by check()"
    for call in calls:
        assert call.exercise is not None, (
            f'{path.name}, cell {call.cell}: write the id as a string, e.g. check("00.1", ...)'
        )
        assert call.exercise in EXERCISES, (
            f"{path.name}, cell {call.cell}: {call.exercise} is not in the catalogue"
        )
        assert EXERCISES[call.exercise].notebook == path.name, (
            f"{path.name} checks {call.exercise}, an exercise of {EXERCISES[call.exercise].notebook}"
        )


def test_every_exercise_is_used_by_its_notebook_and_has_a_solution():
    used = {(call.exercise, path.name) for path in NOTEBOOKS for call in check_calls(read(path))}
    for item in EXERCISES.values():
        assert (item.id, item.notebook) in used, (
            f"no check cell of {item.notebook} calls check({item.id!r}, ...)"
        )
        assert item.id in solutions(read(ROOT / "notebooks" / item.notebook)), (
            f"{item.notebook} needs a collapsed solution: <details><summary>Solution to {item.id} …</summary>"
        )


@pytest.mark.parametrize("module", sorted(NOTEBOOK_MODULES.values()))
def test_every_exercise_module_has_its_table_of_wrong_answers(module: str) -> None:
    tests = ROOT / "tests" / "exercises" / f"test_{module}.py"
    assert tests.exists(), f"add {tests.relative_to(ROOT)} with WRONG_ANSWERS and exercise_tests(...)"
    source = tests.read_text(encoding="utf-8")
    assert "WRONG_ANSWERS" in source and "exercise_tests(" in source and f'"{module}"' in source
