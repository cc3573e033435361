"""smtplab grade: shipped notebooks pass, a wrong answer gets its hint, broken hand-ins are reported."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from smtplab.cli import main
from smtplab.exercises import Verdict, catalogue
from smtplab.exercises.grade import HandIn, grade, gradebook, table
from smtplab.exercises.registry import exercise_by_id

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
QUICKSTART = ROOT / "notebooks" / "00-quickstart.ipynb"
FIRST_MATCH = """def find(mailbox, recipient):
    return next(message for message in mailbox if recipient in message.rcpt_tos)"""


def write(path: Path, notebook) -> Path:
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(notebook, path)
    return path


def wrong_copy(folder: Path) -> Path:
    """The quickstart as a learner might hand it in: 00.2 answered with the first match, not the newest."""
    notebook = nbformat.read(QUICKSTART, as_version=4)
    (cell,) = [c for c in notebook.cells if c.source.startswith("# ✏️ Exercise 00.2")]
    cell.source = FIRST_MATCH
    folder.mkdir()
    return write(folder / QUICKSTART.name, notebook)


def test_grade_reports_each_kind_of_hand_in(tmp_path: Path) -> None:
    wrong = wrong_copy(tmp_path / "bob")
    broken = write(
        tmp_path / "carol.ipynb",
        new_notebook(
            cells=[
                new_code_cell("from smtplab.exercises import check"),
                new_code_cell(f"{FIRST_MATCH}\ncheck('00.2', find)"),
                new_code_cell("async def send_to_two(server)\n    pass"),  # a typo: the rest still runs
                new_code_cell("check('00.1', send_to_two)  # never defined"),
            ]
        ),
    )
    hanging = write(
        tmp_path / "dave.ipynb",
        new_notebook(
            cells=[
                new_code_cell(f"from smtplab.exercises import check\n{FIRST_MATCH}\ncheck('00.2', find)"),
                new_code_cell("import threading\nthreading.Event().wait()  # never set"),
                new_code_cell("check('00.1', send_to_two)"),
            ]
        ),
    )
    unreadable = tmp_path / "erin.ipynb"
    unreadable.write_text("{ not a notebook", encoding="utf-8")
    faked = new_code_cell("1 + 1")  # with a passing verdict saved in the file: nothing saved counts
    faked.outputs = [
        nbformat.v4.new_output("display_data", data=Verdict("00.1", "t", True, "ok")._repr_mimebundle_())
    ]
    saved_pass = write(
        tmp_path / "frank.ipynb", new_notebook(cells=[faked, new_code_cell("# check('00.1', f)")])
    )
    saved_pass.rename(tmp_path / "frank-00-quickstart.ipynb")
    saved_pass = tmp_path / "frank-00-quickstart.ipynb"

    hand_ins = grade([QUICKSTART, wrong, broken, hanging, unreadable, saved_pass], timeout=20, jobs=3)
    shipped, bob, carol, dave, erin, frank = hand_ins
    learners = [h.learner for h in hand_ins]
    assert learners[:2] == ["notebooks/00-quickstart", "bob/00-quickstart"] and learners[2].endswith("/carol")

    assert shipped.status == "ran" and shipped.all_passed and shipped.exercises == ["00.1", "00.2"]
    assert bob.status == "ran" and bob.result("00.1") == "passed" and bob.result("00.2") == "not yet"
    assert bob.verdicts["00.2"].mistake == "oldest"
    assert bob.verdicts["00.2"].hint == exercise_by_id("00.2").hint_for("oldest")

    assert carol.status == "error" and "SyntaxError" in carol.problem and "cell 3" in carol.problem
    assert carol.result("00.2") == "not yet" and carol.result("00.1") == "no verdict"
    assert carol.missing == {
        "00.1": "its check cell (cell 4) raised NameError: name 'send_to_two' is not defined"
    }
    assert dave.status == "timed out" and "20 s" in dave.problem
    assert dave.result("00.2") == "not yet" and dave.result("00.1") == "no verdict"
    assert erin.status == "unreadable" and erin.exercises == []
    assert frank.status == "ran" and frank.verdicts == {} and frank.exercises == ["00.1", "00.2"]
    assert set(frank.missing.values()) == {"it has no check cell for it (deleted, or not valid Python)"}
    assert not any(h.all_passed for h in hand_ins[1:])

    text = table(hand_ins)
    header, *rows = text.splitlines()[:7]
    assert header.split() == ["learner", "00.1", "00.2", "notebook"]
    assert rows[1].split()[:3] == ["bob/00-quickstart", "passed", "NOT"]
    assert f"    Hint: {exercise_by_id('00.2').hint_for('oldest')}" in text
    assert "timed out: did not finish within 20 s" in text and "unreadable" in text
    assert f"carol 00.1: no verdict — {carol.missing['00.1']}" in text
    assert text.endswith("1 of 6 notebook(s) passed every exercise.")

    book = json.loads(json.dumps(gradebook(hand_ins)))
    assert book["exercises"] == ["00.1", "00.2"]
    assert book["hand_ins"][1]["exercises"]["00.2"]["mistake"] == "oldest"
    assert book["hand_ins"][1]["exercises"]["00.2"]["evidence"] == list(bob.verdicts["00.2"].evidence)
    assert book["hand_ins"][2]["exercises"]["00.1"] == {"result": "no verdict", "why": carol.missing["00.1"]}
    assert (book["hand_ins"][0]["passed"], book["hand_ins"][0]["total"]) == (2, 2)


def test_the_table_lists_exercises_in_catalogue_order_whatever_the_order_of_hand_ins() -> None:
    later = HandIn(Path("ann/01-event-loops.ipynb"), "ann", exercises=["01.1", "01.2"])
    earlier = HandIn(Path("ben/00-quickstart.ipynb"), "ben", exercises=["00.1", "00.2"])
    assert table([later, earlier]).splitlines()[0].split() == [
        "learner",
        "00.1",
        "00.2",
        "01.1",
        "01.2",
        "notebook",
    ]
    assert gradebook([later, earlier])["exercises"] == ["00.1", "00.2", "01.1", "01.2"]


@pytest.mark.timeout(240)
def test_the_command_grades_shipped_notebooks_and_a_wrong_copy(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "smtplab", "grade"]
    done = subprocess.run([*command, *map(str, NOTEBOOKS)], capture_output=True, text=True, timeout=200)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{len(NOTEBOOKS)} of {len(NOTEBOOKS)} notebook(s) passed every exercise." in done.stdout
    assert "NOT YET" not in done.stdout and "no verdict" not in done.stdout
    ids = {item.id for item in catalogue()}
    assert set(done.stdout.splitlines()[0].split()[1:-1]) == ids  # every exercise has a column

    gradebook_file = tmp_path / "grades.json"
    wrong = wrong_copy(tmp_path / "bob")
    done = subprocess.run(
        [*command, str(QUICKSTART), str(wrong), "--json", str(gradebook_file)],
        capture_output=True,
        text=True,
        timeout=200,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert (
        "bob/00-quickstart 00.2: Not yet — find(mailbox, 'erin@example.test') returned mailbox[0]"
        in done.stdout
    )
    book = json.loads(gradebook_file.read_text(encoding="utf-8"))
    assert [h["passed"] for h in book["hand_ins"]] == [2, 1]


def test_the_command_refuses_bad_arguments(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["grade", str(tmp_path / "missing.ipynb")]) == 2
    assert "no such notebook" in capsys.readouterr().err
    assert main(["grade", str(QUICKSTART), "--jobs", "0"]) == 2
    assert main(["grade", str(QUICKSTART), "--timeout", "0"]) == 2
