"""The quickstart in a real JupyterLab, in Chromium: run it, send from the Composer, see the mail."""

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

import pytest

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "notebooks" / "00-quickstart.ipynb"
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
SUBJECT = "Hello from Chromium"
KERNEL_IDLE = re.compile(r"^Python 3 \(ipykernel\) \| Idle$")  # the status bar, once connected

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

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

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


@pytest.fixture
def jupyterlab(tmp_path: Path) -> Iterator[Lab]:
    """JupyterLab on 127.0.0.1 serving a temporary copy of the quickstart, stopped afterwards."""
    require_chromium()  # before starting anything
    root = tmp_path / "notebooks"
    root.mkdir()
    shutil.copy(NOTEBOOK, root / NOTEBOOK.name)
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
    lab = Lab(process, port, token)
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


@pytest.mark.timeout(240)  # a cold machine: JupyterLab, a kernel and Chromium all start from disk
def test_quickstart_in_jupyterlab(jupyterlab: Lab) -> None:
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=EXPECT_TIMEOUT)
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1400})
            page.set_default_timeout(EXPECT_TIMEOUT)
            page.goto(f"{jupyterlab.url}/lab/tree/{NOTEBOOK.name}?token={jupyterlab.token}")
            # The kernel must be connected: "Run All" before that clears the cells instead.
            expect(page.get_by_text(KERNEL_IDLE)).to_be_visible()

            # Run everything above the cleanup cell (Run → Run All Above Selected Cell).
            cleanup = page.locator(".jp-CodeCell", has_text="# Cleanup: stop the widgets")
            cleanup.locator(".jp-InputPrompt").click()
            page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
            page.locator(".lm-Menu-itemLabel", has_text="Run All Above Selected Cell").click()

            expect(page.get_by_text("✅ one message, 2 recipients")).to_be_visible()
            errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
            expect(errors.filter(has_text="ValueError")).to_have_count(1)  # the demonstrated refusal only

            composer = page.locator(".smtplab-composer")
            mailbox = page.locator(".smtplab-mailbox-view")
            panel = page.locator(".smtplab-server-panel")
            expect(panel).to_contain_text("2 messages")
            composer.locator(".smtplab-composer-subject input").fill(SUBJECT)
            composer.locator(".smtplab-composer-body textarea").fill("Typed in a browser, sent over SMTP.")
            composer.get_by_role("button", name="Send").click()

            expect(composer).to_contain_text("Accepted for 1 recipient")
            expect(composer).to_contain_text("RCPT TO:<bob@example.test>")
            expect(mailbox).to_contain_text(SUBJECT)
            expect(mailbox.locator(".widget-tab")).to_contain_text("Typed in a browser")
            expect(panel).to_contain_text("3 messages")
            mailbox.scroll_into_view_if_needed()
            page.screenshot(path=str(ARTIFACTS / "quickstart-browser.png"))

            # Then the cleanup cell, as a learner would at the end.
            cleanup.locator(".jp-InputPrompt").click()
            page.keyboard.press("Shift+Enter")
            expect(cleanup).to_contain_text("servers still running: []")
        finally:
            browser.close()
