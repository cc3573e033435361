"""Packaging: environment.yml mirrors pyproject.toml; the package imports without side effects."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import yaml
from packaging.specifiers import SpecifierSet

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
#: conda-forge names that differ from PyPI's: matplotlib-base is matplotlib without the Qt GUI.
CONDA_TO_PYPI = {"matplotlib-base": "matplotlib"}


def _requirements(specs: list[str]) -> dict[str, str]:
    pairs = (re.match(r"^([A-Za-z0-9_.\-]+)\s*(.*)$", spec).groups() for spec in specs)
    return {name.lower().replace("_", "-"): version.replace(" ", "") for name, version in pairs}


def project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def test_environment_yml_mirrors_pyproject_dependencies_and_the_lab_extra():
    conda = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda_deps = [
        d for d in conda["dependencies"] if isinstance(d, str) and not d.startswith(("python", "pip"))
    ]
    lab = project()["optional-dependencies"]["lab"]
    named = {CONDA_TO_PYPI.get(name, name): spec for name, spec in _requirements(conda_deps).items()}
    assert named == _requirements(project()["dependencies"] + lab)
    assert "conda-forge" in conda["channels"]
    assert f">={project()['requires-python'].lstrip('>=')}" in next(
        d for d in conda["dependencies"] if str(d).startswith("python")
    )


def test_jupyterlab_comes_only_with_the_lab_extra_which_make_lab_installs():
    core = _requirements(project()["dependencies"])
    extras = project()["optional-dependencies"]
    assert "jupyterlab" not in core, "pip install smtplab must not bring a second JupyterLab"
    assert {"ipywidgets", "nest-asyncio"} <= set(core)  # widgets and the event-loop lesson
    assert "jupyterlab" in _requirements(extras["lab"])
    assert _requirements(extras["lab"]).items() <= _requirements(extras["test"]).items()
    makefile = (ROOT / "Makefile").read_text()
    assert "lab: $(VENV)/.installed-lab" in makefile and "-e '.[$*]'" in makefile


def test_security_floors_and_upper_bounds():
    deps = {name: SpecifierSet(spec) for name, spec in _requirements(project()["dependencies"]).items()}
    # aiosmtpd 1.4.6 fixed CVE-2024-27305 (SMTP smuggling) and CVE-2024-34083 (STARTTLS
    # injection); aiosmtplib 5.1.1 refuses CR/LF in command arguments.
    for name, floor, below in (("aiosmtpd", "1.4.6", "1.4.5"), ("aiosmtplib", "5.1.1", "5.1.0")):
        assert floor in deps[name] and below not in deps[name], f"{name} must require {floor} or newer"
        # An upper bound: the adapters rely on internals a new minor release may change.
        assert any(spec.operator == "<" for spec in deps[name]), f"{name} needs an upper bound"


def test_the_installed_upstream_versions_are_within_the_bounds():
    from importlib.metadata import version

    for name in ("aiosmtpd", "aiosmtplib"):
        spec = SpecifierSet(_requirements(project()["dependencies"])[name])
        assert version(name) in spec, f"installed {name} {version(name)} is outside {spec}"


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
