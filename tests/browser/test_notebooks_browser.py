"""Every notebook in a real JupyterLab, in Chromium: run it, use its widgets, no unexpected error.

One JupyterLab and one Chromium serve the whole run. Each notebook is opened from a temporary
copy, run above its cleanup cell (so its widgets are still live), driven by the steps in its
metadata (tests/browser/steps.py), photographed into test-artifacts/, cleaned up — after which
its widgets must still show what happened — saved, and the saved file is checked: every code
cell ran, errors only where tagged raises-exception, every check passed.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat
import pytest

from smtplab.exercises.scan import check_calls, verdicts
from tests.browser.steps import KERNEL_IDLE, after_cleanup_steps, browser_steps, take

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
STARTUP_TIMEOUT = 60.0  # seconds for JupyterLab to answer
EXPECT_TIMEOUT = 60_000  # ms; Playwright's own default of 5 s is too short for a cold kernel

# JupyterLab settings for the test: every cell in the DOM (so cells can be found by their
# text), and no news or update checks (nothing may try the internet).
LAB_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false",
        "checkForUpdates": False,
    },
}
PAGE_CONFIG = {
    "disabledExtensions": {
        "@jupyterlab/extensionmanager-extension": True,
        "@jupyterlab/apputils-extension:announcements": True,
    }
}


def require_chromium() -> None:
    if CHROMIUM.exists():
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{CHROMIUM} is missing; CI must run the browser test (.ci/run installs chromium)")
    pytest.skip(f"needs {CHROMIUM}: `apt-get install chromium` enables this test")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Lab:
    """A running JupyterLab and what it takes to talk to it."""

    process: subprocess.Popen[str]
    port: int
    token: str
    log: list[str] = field(default_factory=list)

    root: Path = Path()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def api(self, method: str, path: str) -> Any:
        """Call JupyterLab's REST API; the decoded JSON answer (None when empty)."""
        request = urllib.request.Request(
            f"{self.url}/api/{path}", method=method, headers={"Authorization": f"token {self.token}"}
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            body = response.read()
        return json.loads(body) if body else None

    def log_text(self) -> str:
        return "".join(self.log[-200:])


def _write_json(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data), encoding="utf-8")


def _wait_until_ready(lab: Lab, announced: threading.Event) -> None:
    """Wait for JupyterLab to log its URL, then for /api/status to answer (bounded)."""
    deadline = time.monotonic() + STARTUP_TIMEOUT
    if not announced.wait(STARTUP_TIMEOUT):
        raise AssertionError(f"JupyterLab did not start within {STARTUP_TIMEOUT:g} s:\n{lab.log_text()}")
    request = urllib.request.Request(f"{lab.url}/api/status", headers={"Authorization": f"token {lab.token}"})
    while True:  # a readiness probe: each attempt blocks on the network, not on a sleep
        if lab.process.poll() is not None:
            raise AssertionError(f"JupyterLab exited with {lab.process.returncode}:\n{lab.log_text()}")
        try:
            with urllib.request.urlopen(request, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            if time.monotonic() > deadline:
                raise AssertionError(f"JupyterLab never answered /api/status:\n{lab.log_text()}") from None


@pytest.fixture(scope="module")
def jupyterlab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """One JupyterLab on 127.0.0.1 for the whole run, serving temporary copies of the notebooks."""
    require_chromium()  # before starting anything
    tmp_path = tmp_path_factory.mktemp("jupyterlab")
    root = tmp_path / "notebooks"
    root.mkdir()
    for notebook in NOTEBOOKS:
        shutil.copy(notebook, root / notebook.name)
    env = dict(os.environ)
    env.update(
        PATH=os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),
        JUPYTER_CONFIG_DIR=str(tmp_path / "config"),
        JUPYTER_DATA_DIR=str(tmp_path / "data"),
        JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"),
        JUPYTERLAB_SETTINGS_DIR=str(tmp_path / "settings"),
        JUPYTERLAB_WORKSPACES_DIR=str(tmp_path / "workspaces"),
    )
    for name, settings in LAB_SETTINGS.items():
        _write_json(tmp_path / "settings" / name, settings)
    _write_json(tmp_path / "config" / "labconfig" / "page_config.json", PAGE_CONFIG)
    port, token = free_port(), secrets.token_hex(16)
    command = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        "--ip=127.0.0.1",
        f"--port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root}",
        "--LabApp.news_url=None",
        "--LabApp.check_for_updates_class=jupyterlab.handlers.announcements.NeverCheckForUpdate",
        "--LabApp.extension_manager=readonly",
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--allow-root")
    process = subprocess.Popen(
        command,
        cwd=root,
        env=env,
        text=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    lab = Lab(process, port, token, root=root)
    announced = threading.Event()

    def read_log() -> None:  # drains the pipe for the whole run, so the server never blocks on it
        assert process.stdout is not None
        for line in process.stdout:
            lab.log.append(line)
            if f"http://127.0.0.1:{port}/" in line:
                announced.set()

    reader = threading.Thread(target=read_log, name="jupyterlab-log", daemon=True)
    reader.start()
    try:
        _wait_until_ready(lab, announced)
        yield lab
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)
        reader.join(timeout=15)
        if process.stdout is not None:
            process.stdout.close()


@pytest.fixture(scope="module")
def lab_page(jupyterlab: Lab) -> Iterator[Any]:
    """One Chromium page with JupyterLab loaded, for the whole run: each notebook opens in it."""
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=EXPECT_TIMEOUT)
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1400})
            page.set_default_timeout(EXPECT_TIMEOUT)
            _load_lab(page, jupyterlab)
            yield page
        finally:
            browser.close()


def _load_lab(page: Any, lab: Lab) -> None:
    """(Re)load JupyterLab with nothing open, and wait for its file browser."""
    from playwright.sync_api import expect

    page.goto(f"{lab.url}/lab?reset&token={lab.token}")
    expect(page.locator(".jp-DirListing-item", has_text=NOTEBOOKS[0].name)).to_be_visible()


def _start_session(lab: Lab, name: str) -> None:
    """Start the notebook's kernel ahead of time; JupyterLab joins this session when it opens it."""
    body = json.dumps(
        {"path": name, "name": name, "type": "notebook", "kernel": {"name": "python3"}}
    ).encode()
    request = urllib.request.Request(
        f"{lab.url}/api/sessions",
        data=body,
        method="POST",
        headers={"Authorization": f"token {lab.token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30):
        pass


def _shut_down_kernels(lab: Lab, name: str) -> None:
    """End the notebook's session (and kernel), so the next notebook has the machine to itself."""
    for session in lab.api("GET", "sessions"):
        if session.get("path", "").endswith(name):
            lab.api("DELETE", f"sessions/{session['id']}")


def _check_saved(path: Path) -> None:
    """The notebook as JupyterLab saved it: every code cell ran, errors only where expected."""
    notebook = nbformat.read(path, as_version=4)
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type != "code":
            continue
        errors = [f"{out.ename}: {out.evalue}" for out in cell.outputs if out.output_type == "error"]
        expected = "raises-exception" in cell.metadata.get("tags", [])
        assert cell.execution_count is not None, (
            f"cell {index} never ran (an earlier error stops Run All):\n{cell.source}"
        )
        assert bool(errors) == expected, (
            f"cell {index} {'should raise but did not' if expected else f'raised {errors}'}:\n{cell.source}"
        )
    found = verdicts(notebook)
    assert [i for i, _ in found] == [call.cell for call in check_calls(notebook)], (
        "one verdict per check cell"
    )
    assert all(verdict.passed for _, verdict in found), "\n".join(str(v) for _, v in found if not v.passed)


def _run_notebook(page: Any, lab: Lab, notebook: Path, source: Any) -> None:
    """Open the notebook, run it above its cleanup cell, take its steps, clean up, save, close."""
    from playwright.sync_api import expect

    steps = browser_steps(source.metadata)  # fails, saying what to add, for a notebook without steps
    (cleanup_index,) = [i for i, c in enumerate(source.cells) if "cleanup" in c.metadata.get("tags", [])]
    first_code = next(i for i, c in enumerate(source.cells) if c.cell_type == "code")

    page.locator(".jp-DirListing-item", has_text=notebook.name).dblclick()
    expect(page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab.jp-mod-current")).to_contain_text(notebook.name)
    # The kernel must be connected: "Run All" before that clears the cells instead.
    expect(page.get_by_text(KERNEL_IDLE)).to_be_visible()
    panel = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)")
    cells = panel.locator(".jp-Notebook .jp-Cell")
    expect(cells).to_have_count(len(source.cells))
    running = panel.locator(".jp-InputPrompt", has_text="[*]")

    # Run everything above the cleanup cell (Run → Run All Above Selected Cell), so that the
    # widgets are still live for the steps.
    cleanup = cells.nth(cleanup_index)
    cleanup.locator(".jp-InputPrompt").click()
    page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
    page.locator(".lm-Menu-itemLabel", has_text="Run All Above Selected Cell").click()
    expect(cells.nth(first_code).locator(".jp-InputPrompt")).to_have_text(re.compile(r"\[\d+\]"))
    expect(running).to_have_count(0)

    for step in steps:
        take(page, step)
    page.screenshot(path=str(ARTIFACTS / f"{notebook.stem}.png"))
    verdict = panel.locator(".smtplab-verdict").first  # how a check's box looks in JupyterLab
    expect(verdict).to_contain_text("Passed")
    verdict.scroll_into_view_if_needed()
    page.screenshot(path=str(ARTIFACTS / f"{notebook.stem}-verdict.png"))

    # Then the cleanup cell, as a learner would at the end: the widgets still show what happened.
    cleanup.locator(".jp-InputPrompt").click()
    page.keyboard.press("Shift+Enter")
    expect(cleanup.locator(".jp-InputPrompt")).to_have_text(re.compile(r"\[\d+\]"))
    expect(running).to_have_count(0)
    for step in after_cleanup_steps(source.metadata):
        take(page, step)
    page.locator(after_cleanup_steps(source.metadata)[-1]["expect"]).first.scroll_into_view_if_needed()
    page.screenshot(path=str(ARTIFACTS / f"{notebook.stem}-after-cleanup.png"))
    cleanup.locator(".jp-InputPrompt").click()
    page.keyboard.press("Control+s")
    current = page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab.jp-mod-current")
    expect(current).not_to_have_class(re.compile(r"\bjp-mod-dirty\b"))
    current.locator(".lm-TabBar-tabCloseIcon").click()
    expect(page.locator(".jp-NotebookPanel")).to_have_count(0)


@pytest.mark.timeout(240)  # a cold machine: JupyterLab, a kernel and Chromium all start from disk
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[path.name for path in NOTEBOOKS])
def test_notebook_in_jupyterlab(notebook: Path, jupyterlab: Lab, lab_page: Any) -> None:
    source = nbformat.read(notebook, as_version=4)
    saved = jupyterlab.root / notebook.name
    before = saved.stat().st_mtime_ns
    following = NOTEBOOKS.index(notebook) + 1
    _start_session(jupyterlab, notebook.name)
    if following < len(NOTEBOOKS):  # its kernel starts while this notebook runs
        _start_session(jupyterlab, NOTEBOOKS[following].name)
    try:
        _run_notebook(lab_page, jupyterlab, notebook, source)
    except BaseException:
        _load_lab(lab_page, jupyterlab)  # a clean page for the next notebook
        raise
    finally:
        _shut_down_kernels(jupyterlab, notebook.name)
    assert saved.stat().st_mtime_ns != before, "JupyterLab did not save the notebook"
    _check_saved(saved)
