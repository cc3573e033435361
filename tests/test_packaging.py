"""Packaging: environment.yml mirrors pyproject.toml; the package imports without side effects."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import yaml

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent


def _requirements(specs: list[str]) -> dict[str, str]:
    pairs = (re.match(r"^([A-Za-z0-9_.\-]+)\s*(.*)$", spec).groups() for spec in specs)
    return {name.lower().replace("_", "-"): version.replace(" ", "") for name, version in pairs}


def test_environment_yml_mirrors_pyproject_dependencies():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    conda = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda_deps = [
        d for d in conda["dependencies"] if isinstance(d, str) and not d.startswith(("python", "pip"))
    ]
    assert _requirements(conda_deps) == _requirements(project["dependencies"])
    assert "conda-forge" in conda["channels"]
    assert f">={project['requires-python'].lstrip('>=')}" in next(
        d for d in conda["dependencies"] if str(d).startswith("python")
    )


def test_security_floors():
    deps = _requirements(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"])
    assert deps["aiosmtpd"] == ">=1.4.6"  # CVE-2024-27305, CVE-2024-34083
    assert deps["aiosmtplib"] == ">=5.1.1"


def test_import_starts_nothing():
    code = (
        "import sys, threading; import smtplab; "
        "assert threading.active_count() == 1, threading.enumerate(); "
        "assert 'nest_asyncio' not in sys.modules and 'ipywidgets' not in sys.modules; "
        "print('ok')"
    )
    assert (
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
        == "ok\n"
    )


def test_make_lab_opens_jupyterlab_without_news_or_update_pop_ups():
    dry_run = subprocess.run(
        ["make", "--no-print-directory", "-n", "lab"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    command = next(line for line in dry_run.splitlines() if "jupyter lab" in line)
    flags = [word for word in command.split() if word.startswith("--LabApp.")]
    from jupyterlab.handlers.announcements import NeverCheckForUpdate
    from jupyterlab.labapp import LabApp

    app = LabApp()
    app.parse_command_line(flags)
    assert app.news_url is None, "the news feed would ask learners to opt in with a pop-up"
    assert app.check_for_updates_class is NeverCheckForUpdate
