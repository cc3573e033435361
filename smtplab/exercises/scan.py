"""Reading notebooks for their exercises: check cells, collapsed solutions, verdicts in outputs.

A *check cell* is a code cell that calls ``check("NN.M", …)`` (or ``smtplab.exercises.check``).
A *solution* is a collapsed ``<details>`` block in a Markdown cell whose ``<summary>`` names the
exercise's id, holding a fenced ``python`` block. A *verdict* is an output carrying
:data:`~smtplab.exercises.verdict.MIME_TYPE`. Pure functions over ``nbformat`` notebooks.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from smtplab.exercises.verdict import MIME_TYPE, Verdict

__all__ = ["CheckCall", "check_calls", "read", "solutions", "verdicts"]

_DETAILS = re.compile(r"<details>(.*?)</details>", re.DOTALL)
_SUMMARY_ID = re.compile(r"<summary>[^<]*?\b(\d\d\.[1-9]\d*)\b[^<]*</summary>")
_PYTHON_BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)


@dataclass(frozen=True)
class CheckCall:
    """One ``check(...)`` call in a notebook's code.

    Attributes:
        exercise: The exercise id it names, or None when the id is not a plain string.
        arguments: The source of each argument after the id, e.g. ``("send_to_two",)``.
        cell: The index of its cell in the notebook.
    """

    exercise: str | None
    arguments: tuple[str, ...]
    cell: int


def read(path: str | Path) -> Any:
    """Read a notebook file (nbformat 4)."""
    import nbformat  # here: it loads jsonschema, seconds on a busy machine for every smtplab command

    return nbformat.read(path, as_version=4)


def _python_source(source: str) -> str:
    """A cell's source as Python: IPython's ``%magic`` and ``!shell`` lines translated."""
    try:
        ast.parse(source)
        return source
    except SyntaxError:
        from IPython.core.inputtransformer2 import TransformerManager

        return TransformerManager().transform_cell(source)


def _is_check(function: ast.expr) -> bool:
    if isinstance(function, ast.Name):
        return function.id == "check"
    if isinstance(function, ast.Attribute) and function.attr == "check":
        owner = function.value  # exercises.check or smtplab.exercises.check, not client.state.check
        return (isinstance(owner, ast.Name) and owner.id == "exercises") or (
            isinstance(owner, ast.Attribute) and owner.attr == "exercises"
        )
    return False


def check_calls(notebook: Any, *, skip_invalid: bool = False) -> list[CheckCall]:
    """Every ``check(...)`` call in the notebook's code cells, in order.

    Args:
        notebook: The notebook.
        skip_invalid: Pass over code cells that are not valid Python (a typo in a hand-in: the
            cell raises when it runs) instead of raising.

    Raises:
        SyntaxError: A code cell is not valid Python (nor IPython), unless ``skip_invalid``.
    """
    found = []
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type != "code":
            continue
        source = _python_source(cell.source)
        try:
            tree = ast.parse(source)
        except SyntaxError:
            if skip_invalid:
                continue
            raise
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and _is_check(node.func):
                first = node.args[0] if node.args else None
                exercise = (
                    first.value if isinstance(first, ast.Constant) and isinstance(first.value, str) else None
                )
                arguments = tuple(ast.get_source_segment(source, arg) or "" for arg in node.args[1:])
                arguments += tuple(
                    f"{kw.arg}={ast.get_source_segment(source, kw.value)}" for kw in node.keywords
                )
                found.append(CheckCall(exercise, arguments, index))
    return sorted(found, key=lambda call: call.cell)


def solutions(notebook: Any) -> dict[str, str]:
    """The code of each collapsed solution, by exercise id (``<summary>`` names the id)."""
    found: dict[str, str] = {}
    for cell in notebook.cells:
        if cell.cell_type != "markdown":
            continue
        for block in _DETAILS.findall(cell.source):
            summary = _SUMMARY_ID.search(block)
            code = _PYTHON_BLOCK.search(block)
            if summary and code:
                found[summary.group(1)] = code.group(1)
    return found


def verdicts(notebook: Any) -> list[tuple[int, Verdict]]:
    """The verdicts in the notebook's outputs, as ``(cell index, Verdict)``, in order.

    Outputs that carry the verdict MIME type but not a verdict are skipped.
    """
    found = []
    for index, cell in enumerate(notebook.cells):
        for output in cell.get("outputs", []):
            data = (
                output.get("data", {})
                if output.get("output_type") in ("execute_result", "display_data")
                else {}
            )
            if MIME_TYPE in data:
                try:
                    found.append((index, Verdict.from_json(data[MIME_TYPE])))
                except ValueError:
                    continue
    return found
