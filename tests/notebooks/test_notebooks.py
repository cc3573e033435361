"""Every notebook runs top to bottom on a fresh kernel, its checks pass, and it is committed clean."""

from __future__ import annotations

import ast
import json
import os
import re
import sys
from pathlib import Path

import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from nbclient import NotebookClient

from smtplab.exercises.scan import check_calls, verdicts
from tests.browser.steps import after_cleanup_steps, browser_steps

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK_DIR = ROOT / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
NOTEBOOK_TIMEOUT = 90  # seconds for a whole notebook (pytest-timeout); the quickstart takes a few
CELL_TIMEOUT = 30  # seconds for one cell
# Run last, on the same kernel: which Python executed the notebook.
WHICH_PYTHON = "import sys\nprint(sys.executable)\nprint(sys.prefix)"
# Run after the cleanup cell: it stopped every server, and left every widget open and showing
# what happened (a learner scrolls back to them); a ServerPanel's server is stopped.
WIDGETS_AFTER_CLEANUP = """\
import gc, json, smtplab
from smtplab.widgets import ServerPanel
from smtplab.widgets._live import LiveBox
shown = [w for w in gc.get_objects() if issubclass(type(w), LiveBox)]  # type(): a dead weak proxy raises on isinstance
print(json.dumps({
    "closed": [type(w).__name__ for w in shown if w.comm is None],
    "panels running": [w.server.name for w in shown if isinstance(w, ServerPanel) and w.server and w.server.running],
    "servers running": [s.name for s in smtplab.running_servers()],
}))"""


def kernel_env() -> dict[str, str]:
    """The environment for the kernel: ours, with this venv's bin first on PATH."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def code_cells(notebook: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    return [cell for cell in notebook.cells if cell.cell_type == "code"]


def stream_text(cell: nbformat.NotebookNode) -> str:
    return "".join(out.get("text", "") for out in cell.get("outputs", []) if out.output_type == "stream")


SLEEPS = {("time", "sleep"), ("asyncio", "sleep")}


def sleeps_outside_hooks(source: str) -> list[int]:
    """Lines that use ``time.sleep`` or ``asyncio.sleep`` outside a handler hook (``handle_*``).

    A notebook waits on events, never on a sleep; a hook that sleeps is the thing a lesson about
    blocking and awaiting shows, so there it is allowed.
    """
    lines = "\n".join(line for line in source.splitlines() if not line.lstrip().startswith(("%", "!")))
    found: list[int] = []

    def visit(node: ast.AST, in_hook: bool) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            in_hook = in_hook or node.name.startswith("handle_")
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and (node.value.id, node.attr) in SLEEPS
            and not in_hook
        ):
            found.append(node.lineno)
        for child in ast.iter_child_nodes(node):
            visit(child, in_hook)

    visit(ast.parse(lines), False)
    return found


def test_sleeps_are_allowed_only_inside_handler_hooks():
    assert sleeps_outside_hooks("time.sleep(1)") == [1]
    assert sleeps_outside_hooks("x = 1\nawait asyncio.sleep(1)") == [2]
    assert sleeps_outside_hooks("def wait():\n    time.sleep(1)") == [2]
    hook = "class Slow:\n    async def handle_DATA(self, *args):\n        {}\n        return '250 OK'"
    assert sleeps_outside_hooks(hook.format("time.sleep(0.5)")) == []
    assert sleeps_outside_hooks(hook.format("await asyncio.to_thread(time.sleep, 0.5)")) == []
    assert sleeps_outside_hooks("script = 'time.sleep(1)'") == [], "text about a sleep is no sleep"


def test_there_are_notebooks():
    assert NOTEBOOKS, f"no notebooks in {NOTEBOOK_DIR}"


def test_the_python3_kernel_is_this_python():
    """jupyter_client runs a "python3" kernel whose argv[0] is "python" with sys.executable."""
    spec = KernelSpecManager().get_kernel_spec("python3")
    assert spec.argv[0] in {"python", "python3", sys.executable}, spec.argv


@pytest.mark.timeout(NOTEBOOK_TIMEOUT)
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[path.name for path in NOTEBOOKS])
def test_notebook_runs_top_to_bottom(path: Path, tmp_path: Path) -> None:
    notebook = nbformat.read(path, as_version=4)
    notebook.cells.append(nbformat.v4.new_code_cell(WIDGETS_AFTER_CLEANUP))
    notebook.cells.append(nbformat.v4.new_code_cell(WHICH_PYTHON))
    client = NotebookClient(
        notebook,
        kernel_name="python3",
        timeout=CELL_TIMEOUT,
        resources={"metadata": {"path": str(tmp_path)}},  # the kernel's working directory
    )
    client.execute(env=kernel_env())  # raises on an error outside cells tagged raises-exception

    cells = code_cells(notebook)
    which = stream_text(cells[-1]).splitlines()
    assert which == [sys.executable, sys.prefix], "the notebook ran on another Python than this venv's"
    after_cleanup = json.loads(stream_text(cells[-2]))
    assert after_cleanup == {"closed": [], "panels running": [], "servers running": []}, (
        "the cleanup cell stops every server and leaves the widgets open, showing what happened"
    )
    for cell in cells[:-2]:
        errors = [out for out in cell.outputs if out.output_type == "error"]
        if "raises-exception" in cell.metadata.get("tags", []):
            assert errors, f"cell {cell.id} is tagged raises-exception but no longer raises:\n{cell.source}"
        else:
            assert not errors, cell.source
        assert "❌" not in stream_text(cell), f"a check failed in cell {cell.id}:\n{stream_text(cell)}"
    found = verdicts(notebook)
    failed = [str(verdict) for _, verdict in found if not verdict.passed]
    assert not failed, "the notebook's own answers must pass their checks:\n" + "\n".join(failed)
    assert [index for index, _ in found] == [call.cell for call in check_calls(notebook)], (
        "every check cell shows exactly one verdict (end the cell with check(...))"
    )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[path.name for path in NOTEBOOKS])
def test_notebook_is_committed_clean(path: Path) -> None:
    """No outputs (they would carry ports, paths and AUTH strings), no counts, no widget state."""
    assert re.fullmatch(r"\d\d-[a-z0-9]+(-[a-z0-9]+)*\.ipynb", path.name), "name it NN-kebab-topic.ipynb"
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    assert notebook.metadata.kernelspec.name == "python3"
    assert "widgets" not in notebook.metadata, "saved widget state: clear it before committing"
    for cell in code_cells(notebook):
        assert cell.outputs == [] and cell.execution_count is None, f"cell {cell.id} carries outputs"
        assert not sleeps_outside_hooks(cell.source), f"wait on events instead of sleeping:\n{cell.source}"
    assert sum("cleanup" in cell.metadata.get("tags", []) for cell in notebook.cells) == 1, (
        "one code cell tagged 'cleanup' stops what the notebook started"
    )
    after_cleanup_steps(notebook.metadata)  # how the browser test uses its widgets, and after cleanup


def test_notebook_index_lists_every_notebook_in_order():
    index = (NOTEBOOK_DIR / "README.md").read_text(encoding="utf-8")
    positions = [index.find(path.name) for path in NOTEBOOKS]
    assert -1 not in positions, "notebooks/README.md must list every notebook"
    assert positions == sorted(positions)
