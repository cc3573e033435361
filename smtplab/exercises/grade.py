"""Grading hand-ins: run each notebook headless on a fresh kernel and read its verdicts.

Each hand-in runs from top to bottom on a kernel of its own (nbclient), in a fresh temporary
directory, within a time limit; errors do not stop it, so every check cell gets its chance. The
verdicts come from the outputs' machine-readable form (:data:`~smtplab.exercises.verdict.MIME_TYPE`),
never from their text. A notebook that cannot be read, raises outside cells tagged
``raises-exception``, or runs out of time is reported as such, with whatever verdicts it produced.

The grader runs the learners' code: run it where that code can do no harm (a container or an
account of its own, no secrets).
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from smtplab.exercises.registry import catalogue
from smtplab.exercises.verdict import Verdict

# smtplab.exercises.scan (nbformat, and jsonschema behind it: seconds to import where
# rfc3987-syntax is installed, as with JupyterLab) is imported by the functions that read
# notebooks, so that `smtplab serve` and `smtplab send` do not wait for it.

__all__ = ["DEFAULT_JOBS", "DEFAULT_TIMEOUT", "HandIn", "grade", "gradebook", "table"]

#: Seconds a whole notebook may run.
DEFAULT_TIMEOUT = 120.0
#: Notebooks graded at once.
DEFAULT_JOBS = max(1, min(4, os.cpu_count() or 1))

RAN, ERROR, TIMED_OUT, UNREADABLE = "ran", "error", "timed out", "unreadable"


@dataclass
class HandIn:
    """One graded notebook.

    Attributes:
        path: The notebook file.
        learner: A short name for the table (the file's name, or its folder's when names repeat).
        status: ``"ran"``, ``"error"`` (a cell raised), ``"timed out"`` or ``"unreadable"``.
        problem: What went wrong, for any status but ``"ran"``.
        exercises: The ids of the exercises the notebook should answer.
        verdicts: The last verdict for each exercise found in its outputs.
        missing: For each exercise without a verdict, why (its check cell raised, say).
        seconds: How long it ran.
    """

    path: Path
    learner: str
    status: str = RAN
    problem: str = ""
    exercises: list[str] = field(default_factory=list)
    verdicts: dict[str, Verdict] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    def result(self, exercise_id: str) -> str:
        """``"passed"``, ``"not yet"``, ``"no verdict"`` (its check did not run) or ``"-"``."""
        if exercise_id not in self.exercises:
            return "-"
        verdict = self.verdicts.get(exercise_id)
        if verdict is None:
            return "no verdict"
        return "passed" if verdict.passed else "not yet"

    @property
    def score(self) -> int:
        """How many of its exercises passed."""
        return sum(self.result(e) == "passed" for e in self.exercises)

    @property
    def all_passed(self) -> bool:
        """It ran cleanly and every one of its exercises passed."""
        return self.status == RAN and bool(self.exercises) and self.score == len(self.exercises)


def _learners(paths: Sequence[Path]) -> list[str]:
    """Short distinct names: file names, or folder/file when file names repeat."""
    for name in (lambda p: p.stem, lambda p: f"{p.parent.name}/{p.stem}", lambda p: str(p)):
        names = [name(path) for path in paths]
        if len(set(names)) == len(names):
            return names
    return [f"{n}:{path}" for n, path in enumerate(paths, 1)]


def _expected(notebook: Any, path: Path) -> list[str]:
    """The exercises a notebook answers: all of each notebook number its check cells name."""
    from smtplab.exercises.scan import check_calls

    entries = catalogue()
    named = {call.exercise for call in check_calls(notebook, skip_invalid=True) if call.exercise}
    numbers = {exercise_id[:2] for exercise_id in named}
    numbers |= {entry.id[:2] for entry in entries if path.name.endswith(entry.notebook)}
    expected = [entry.id for entry in entries if entry.id[:2] in numbers]
    return expected + sorted(named - set(expected))


def _error(cell: Any) -> str:
    """The cell's error as ``Name: message``, or "" when it raised none."""
    for output in cell.get("outputs", []):
        if output.get("output_type") == "error":
            return f"{output.ename}: {output.evalue}"
    return ""


def _why_no_verdict(notebook: Any, exercise_id: str) -> str:
    """Why a run notebook shows no verdict for an exercise, from its check cell's outputs."""
    from smtplab.exercises.scan import check_calls

    cells = [call.cell for call in check_calls(notebook, skip_invalid=True) if call.exercise == exercise_id]
    if not cells:
        return "it has no check cell for it (deleted, or not valid Python)"
    index = cells[-1]
    cell = notebook.cells[index]
    error = _error(cell)
    if error:
        return f"its check cell (cell {index + 1}) raised {error}"[:300]
    if cell.get("execution_count") is None:
        return f"its check cell (cell {index + 1}) did not run"
    return f"its check cell (cell {index + 1}) showed no verdict"


def _first_error(notebook: Any) -> str:
    for index, cell in enumerate(notebook.cells):
        if "raises-exception" in cell.get("metadata", {}).get("tags", []):
            continue
        error = _error(cell)
        if error:
            first_line = cell.source.strip().splitlines()[0] if cell.source.strip() else ""
            return f"cell {index + 1} ({first_line[:40]!r}) raised {error}"[:300]
    return ""


def _kernel_config(workdir: str) -> Any:
    """Kernels talk over Unix-domain sockets in the private work directory where there are some,
    rather than over loopback TCP ports that other users of the machine could reach."""
    from traitlets.config import Config

    if os.name != "posix":
        return Config()
    return Config({"KernelManager": {"transport": "ipc", "ip": os.path.join(workdir, "kernel")}})


async def _grade_one(hand_in: HandIn, timeout: float, jobs: asyncio.Semaphore) -> None:
    from nbclient import NotebookClient
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    from smtplab.exercises.scan import read, verdicts

    try:
        notebook = read(hand_in.path)
        hand_in.exercises = _expected(notebook, hand_in.path)
    except Exception as error:  # noqa: BLE001 - any unreadable file is reported, not raised
        hand_in.status, hand_in.problem = UNREADABLE, f"{type(error).__name__}: {error}"[:300]
        return
    for cell in notebook.cells:  # only what runs now counts, never outputs saved in the file
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    async with jobs:
        started = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="smtplab-grade-") as workdir:
            client = NotebookClient(
                notebook,
                kernel_name="python3",
                config=_kernel_config(workdir),
                timeout=int(timeout) + 1,
                allow_errors=True,
                shutdown_kernel="immediate",
                resources={"metadata": {"path": workdir}},
            )
            running = asyncio.ensure_future(client.async_execute())
            try:
                await asyncio.wait_for(asyncio.shield(running), timeout)
            except asyncio.TimeoutError:
                running.cancel()  # nbclient shuts the kernel down on its way out
                await asyncio.gather(running, return_exceptions=True)
                hand_in.status, hand_in.problem = TIMED_OUT, f"did not finish within {timeout:g} s"
            except CellTimeoutError:
                hand_in.status, hand_in.problem = TIMED_OUT, f"did not finish within {timeout:g} s"
            except DeadKernelError as error:
                hand_in.status, hand_in.problem = ERROR, f"the kernel died: {error}"[:300]
            except Exception as error:  # noqa: BLE001 - a broken hand-in is reported, not raised
                hand_in.status, hand_in.problem = ERROR, f"{type(error).__name__}: {error}"[:300]
        hand_in.seconds = time.monotonic() - started
    if hand_in.status == RAN:
        problem = _first_error(notebook)
        if problem:
            hand_in.status, hand_in.problem = ERROR, problem
    for _, verdict in verdicts(notebook):
        hand_in.verdicts[verdict.exercise] = verdict
    for exercise_id in hand_in.exercises:
        if exercise_id not in hand_in.verdicts:
            hand_in.missing[exercise_id] = _why_no_verdict(notebook, exercise_id)


async def _grade_all(hand_ins: list[HandIn], timeout: float, jobs: int) -> None:
    limit = asyncio.Semaphore(jobs)
    await asyncio.gather(*(_grade_one(hand_in, timeout, limit) for hand_in in hand_ins))


def grade(
    paths: Sequence[str | os.PathLike[str]], *, timeout: float = DEFAULT_TIMEOUT, jobs: int = DEFAULT_JOBS
) -> list[HandIn]:
    """Run each notebook on a fresh kernel and collect its verdicts.

    Args:
        paths: The hand-ins (``.ipynb`` files).
        timeout: Seconds each notebook may run in all.
        jobs: How many notebooks run at once.

    Returns:
        One :class:`HandIn` per path, in the same order.
    """
    if timeout <= 0 or jobs < 1:
        raise ValueError(f"timeout must be positive and jobs at least 1, not {timeout!r} and {jobs!r}")
    files = [Path(path) for path in paths]
    hand_ins = [HandIn(path, learner) for path, learner in zip(files, _learners(files), strict=True)]
    asyncio.run(_grade_all(hand_ins, timeout, jobs))
    return hand_ins


def _columns(hand_ins: Sequence[HandIn]) -> list[str]:
    """Every exercise of the hand-ins, in the catalogue's order (then any it does not know)."""
    seen: dict[str, None] = {}
    for hand_in in hand_ins:
        seen.update(dict.fromkeys(hand_in.exercises))
    order = {entry.id: n for n, entry in enumerate(catalogue())}
    return sorted(seen, key=lambda exercise_id: order.get(exercise_id, len(order)))


def table(hand_ins: Sequence[HandIn]) -> str:
    """The grades as text: a learner × exercise table, then the hint for each miss."""
    columns = _columns(hand_ins)
    header = ["learner", *columns, "notebook"]
    rows = []
    for hand_in in hand_ins:
        how = (
            f"{hand_in.status} ({hand_in.seconds:.1f} s)" if hand_in.status != UNREADABLE else hand_in.status
        )
        rows.append(
            [
                hand_in.learner,
                *(
                    hand_in.result(c).upper() if hand_in.result(c) == "not yet" else hand_in.result(c)
                    for c in columns
                ),
                how,
            ]
        )
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    ]
    notes = []
    for hand_in in hand_ins:
        if hand_in.problem:
            notes.append(f"{hand_in.learner}: {hand_in.status}: {hand_in.problem}")
        for exercise_id in hand_in.exercises:
            verdict = hand_in.verdicts.get(exercise_id)
            if verdict is not None and not verdict.passed:
                notes.append(f"{hand_in.learner} {exercise_id}: Not yet — {verdict.message}")
                notes.append(f"    Hint: {verdict.hint}")
            elif verdict is None and hand_in.status in (RAN, ERROR):
                why = hand_in.missing.get(exercise_id, "its check cell did not run")
                notes.append(f"{hand_in.learner} {exercise_id}: no verdict — {why}")
    counts = Counter(hand_in.all_passed for hand_in in hand_ins)
    summary = f"{counts[True]} of {len(hand_ins)} notebook(s) passed every exercise."
    return "\n".join(
        [*lines, *(["", "What did not pass:", *(f"  {n}" for n in notes)] if notes else []), "", summary]
    )


def _entry(hand_in: HandIn, exercise_id: str) -> dict[str, Any]:
    """One exercise of one hand-in in the gradebook: its result, and the verdict's words or why
    there is none."""
    entry: dict[str, Any] = {"result": hand_in.result(exercise_id)}
    verdict = hand_in.verdicts.get(exercise_id)
    if verdict is not None:
        data = verdict.to_json()
        entry.update((key, data[key]) for key in ("message", "hint", "mistake", "evidence"))
    elif exercise_id in hand_in.missing:
        entry["why"] = hand_in.missing[exercise_id]
    return entry


def gradebook(hand_ins: Sequence[HandIn]) -> dict[str, Any]:
    """The grades as JSON-ready data, for a spreadsheet or a learning platform."""
    return {
        "exercises": _columns(hand_ins),
        "hand_ins": [
            {
                "learner": hand_in.learner,
                "notebook": str(hand_in.path),
                "status": hand_in.status,
                "problem": hand_in.problem,
                "seconds": round(hand_in.seconds, 2),
                "passed": hand_in.score,
                "total": len(hand_in.exercises),
                "exercises": {exercise_id: _entry(hand_in, exercise_id) for exercise_id in hand_in.exercises},
            }
            for hand_in in hand_ins
        ],
    }
