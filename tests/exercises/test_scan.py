"""Reading notebooks: check calls (not other .check methods), collapsed solutions, verdict outputs."""

from __future__ import annotations

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from smtplab.exercises import MIME_TYPE, Verdict
from smtplab.exercises.scan import CheckCall, check_calls, solutions, verdicts


def notebook(*cells):
    return new_notebook(cells=list(cells))


def test_check_calls_are_found_with_their_arguments():
    book = notebook(
        new_markdown_cell('check("00.9", nothing)  # prose is not code'),
        new_code_cell('from smtplab.exercises import check\ncheck("00.1", send_to_two)'),
        new_code_cell('import smtplab.exercises\nsmtplab.exercises.check("00.2", find, strict=True)'),
        new_code_cell("%load_ext autoreload\nexercises.check(exercise_id, find)\n!echo hi"),
        new_code_cell('client.state.check("DATA")\nawait client.quit()'),
    )
    assert check_calls(book) == [
        CheckCall("00.1", ("send_to_two",), 1),
        CheckCall("00.2", ("find", "strict=True"), 2),
        CheckCall(None, ("find",), 3),
    ]


def test_a_cell_that_is_not_python_raises_unless_skipped():
    book = notebook(
        new_code_cell("def find(mailbox, recipient)\n    pass"),
        new_code_cell('check("00.2", find)'),
    )
    with pytest.raises(SyntaxError):
        check_calls(book)
    assert check_calls(book, skip_invalid=True) == [CheckCall("00.2", ("find",), 1)]


def test_solutions_come_from_collapsed_blocks_naming_the_id():
    book = notebook(
        new_markdown_cell(
            "## Solutions\n\n<details>\n<summary>Solution to 03.2 — say EHLO</summary>\n\n"
            "```python\ndef greet(address):\n    pass\n```\n\nWhy.\n</details>\n\n"
            "<details>\n<summary>Explore</summary>\n\n```python\nnot_an_exercise()\n```\n</details>"
        ),
        new_markdown_cell("```python\nloose = 1\n```"),
    )
    assert solutions(book) == {"03.2": "def greet(address):\n    pass\n"}


def test_verdicts_are_read_from_outputs_only_when_well_formed():
    passed = Verdict("00.1", "t", True, "fine")
    bundle = passed._repr_mimebundle_()
    cell = new_code_cell('check("00.1", f)')
    cell.outputs = [
        new_output("stream", name="stdout", text="[Passed] 00.1 t (text alone counts for nothing)"),
        new_output("display_data", data={MIME_TYPE: {"exercise": "00.2"}}),  # not a verdict
        new_output("execute_result", data=bundle, execution_count=1),
    ]
    book = notebook(new_code_cell("x = 1"), cell)
    nbformat.validate(book)
    assert verdicts(book) == [(1, passed)]
