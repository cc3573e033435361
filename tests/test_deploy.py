"""The class-server container files: compose.yaml and the Dockerfile read, their command run as a local process."""

from __future__ import annotations

import json
import mailbox
import re
import shlex
import signal
import smtplib
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
PORT = "2525"


def dockerfile() -> dict[str, list[str]]:
    """Each instruction of the Dockerfile (continuation lines joined), by name; comments dropped."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    instructions: dict[str, list[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, rest = line.partition(" ")
            instructions.setdefault(name.upper(), []).append(rest.strip())
    return instructions


def exec_form(value: str) -> list[str]:
    """A JSON-array (exec form) instruction; the shell form would put /bin/sh in front of smtplab."""
    argv = json.loads(value)
    assert isinstance(argv, list) and all(isinstance(arg, str) for arg in argv), value
    return argv


def service() -> tuple[dict, dict]:
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    (name,) = compose["services"]
    return compose["services"][name], compose


def container_argv() -> list[str]:
    """What the container runs: the Dockerfile's ENTRYPOINT, then compose's command."""
    (entrypoint,) = dockerfile()["ENTRYPOINT"]
    return exec_form(entrypoint) + service()[0]["command"]


def option(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def test_compose_publishes_on_the_hosts_loopback_only_and_keeps_a_maildir_volume():
    svc, compose = service()
    assert svc["ports"] == [f"127.0.0.1:{PORT}:{PORT}"]  # never 0.0.0.0 on the host
    (volume,) = svc["volumes"]
    name, mount = volume.split(":")
    assert name in compose["volumes"]  # a named volume: it outlives the container
    argv = container_argv()
    assert argv[:2] == ["smtplab", "serve"]
    assert (
        option(argv, "--host") == "0.0.0.0" and "--allow-remote" in argv
    )  # reachable by Docker's forwarding
    assert option(argv, "--port") == PORT
    assert option(argv, "--maildir").startswith(mount.rstrip("/") + "/")
    assert int(option(argv, "--max-connections")) >= 60  # a class of thirty, two connections each
    assert "healthcheck" not in svc  # the Dockerfile's own healthcheck applies


def test_the_dockerfile_runs_the_same_command_as_an_unprivileged_user():
    instructions = dockerfile()
    (entrypoint,) = instructions["ENTRYPOINT"]
    (cmd,) = instructions["CMD"]
    assert exec_form(entrypoint) + exec_form(cmd) == container_argv()  # `docker run` = compose
    (user,) = instructions["USER"]
    assert user not in ("root", "0") and f"useradd --create-home --uid 10001 {user}" in instructions["RUN"][0]
    assert instructions["EXPOSE"] == [PORT] and instructions["STOPSIGNAL"] == ["SIGTERM"]
    mount = service()[0]["volumes"][0].split(":")[1]
    assert (
        instructions["VOLUME"] == [json.dumps([mount])]
        and f"chown -R {user}:{user} {mount}" in instructions["RUN"][0]
    )
    (healthcheck,) = instructions["HEALTHCHECK"]
    assert "--interval=" in healthcheck and "--timeout=" in healthcheck
    assert exec_form(healthcheck.split(" CMD ", 1)[1])[0] == "python"
    for path in (".venv/", ".git", "tests/"):  # keeps the build context small
        assert path in (ROOT / ".dockerignore").read_text().split()


@pytest.mark.skipif(not hasattr(signal, "SIGTERM"), reason="needs POSIX signals")
def test_the_compose_command_runs_receives_mail_passes_its_healthcheck_and_stops_on_sigterm(tmp_path):
    argv = container_argv()
    # The same command line, made safe for a test: loopback, a free port, a temporary Maildir.
    local = list(argv)
    local[local.index("--host") + 1] = "127.0.0.1"
    local[local.index("--port") + 1] = "0"
    local[local.index("--maildir") + 1] = str(tmp_path / "Maildir")
    assert local[0] == "smtplab"
    process = subprocess.Popen(
        [sys.executable, "-m", "smtplab", *local[1:]],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        first = process.stdout.readline()
        host, port = re.search(r"listening on (\S+):(\d+)", first).groups()
        assert host == "127.0.0.1"
        with smtplib.SMTP(host, int(port), timeout=5) as client:
            client.sendmail(
                "teacher@example.test", ["class@example.test"], b"Subject: welcome\r\n\r\nHello, class.\r\n"
            )
        for line in process.stdout:  # bounded: the server prints the message, or the timeout below fires
            if "'welcome'" in line:
                break
        (healthcheck,) = dockerfile()["HEALTHCHECK"]
        probe = exec_form(healthcheck.split(" CMD ", 1)[1])
        probe = [sys.executable, *(arg.replace(PORT, port) for arg in probe[1:])]
        assert subprocess.run(probe, capture_output=True, timeout=30).returncode == 0, shlex.join(probe)
        process.send_signal(signal.SIGTERM)  # what `docker stop` sends
        out, err = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, err
    assert "stopped; 1 message(s) captured" in out and "Traceback" not in err
    (kept,) = mailbox.Maildir(tmp_path / "Maildir", create=False)
    assert kept["Subject"] == "welcome" and kept["Delivered-To"] == "class@example.test"


def test_what_notebook_08_quotes_from_the_container_files_is_in_them():
    """The lesson explains compose.yaml and the Dockerfile line by line: its quotes must stay true."""
    import nbformat

    lesson = nbformat.read(ROOT / "notebooks" / "08-classroom-and-deploy.ipynb", as_version=4)
    markdown = "\n".join(cell.source for cell in lesson.cells if cell.cell_type == "markdown")
    sources = {"yaml": ROOT / "compose.yaml", "dockerfile": ROOT / "Dockerfile"}
    quoted = 0
    for kind, path in sources.items():
        lines = {line.strip() for line in path.read_text().splitlines()}
        for block in re.findall(rf"```{kind}\n(.*?)```", markdown, re.DOTALL):
            for line in filter(None, (line.strip() for line in block.splitlines())):
                assert line in lines, f"notebook 08 quotes {line!r}, which {path.name} no longer says"
                quoted += 1
    assert quoted >= 6
