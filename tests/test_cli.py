"""The command line: `smtplab serve` in-process and as a real subprocess."""

from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
import signal
import smtplib
import subprocess
import sys
import threading

import pytest

from smtplab.cli import main


class Announcements(io.StringIO):
    """A stdout that signals when the server announces its address."""

    def __init__(self) -> None:
        super().__init__()
        self.listening = threading.Event()

    def write(self, text: str) -> int:
        written = super().write(text)
        if "listening on" in self.getvalue():
            self.listening.set()
        return written


def address_from(text: str) -> tuple[str, int]:
    host, port = re.search(r"listening on (\S+):(\d+)", text).groups()
    return host, int(port)


def test_serve_in_process_prints_each_message_then_exits():
    out = Announcements()
    result: list[int] = []
    with contextlib.redirect_stdout(out):
        runner = threading.Thread(
            target=lambda: result.append(main(["serve", "--max-messages", "1"])), daemon=True
        )
        runner.start()
        assert out.listening.wait(10)
        with smtplib.SMTP(*address_from(out.getvalue()), timeout=5) as client:
            client.sendmail(
                "alice@example.test", ["bob@example.test"], b"Subject: from cli test\r\n\r\nhi\r\n"
            )
        runner.join(10)
    assert result == [0]
    text = out.getvalue()
    assert "from <alice@example.test> to bob@example.test: 'from cli test'" in text
    assert "Ctrl-C" in text and "stopped; 1 message(s) captured" in text


def test_serve_reports_a_taken_port(capsys):
    with contextlib.ExitStack() as stack:
        import socket

        squatter = stack.enter_context(socket.socket())
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        assert main(["serve", "--port", str(squatter.getsockname()[1])]) == 1
    err = capsys.readouterr().err
    assert "already in use" in err and "leave out --port" in err and "port=0" not in err
    assert main(["serve", "--host", "192.0.2.1"]) == 2  # TEST-NET-1: never this machine
    err = capsys.readouterr().err
    assert "--allow-remote" in err and "allow_remote=" not in err and "host=" not in err


@pytest.mark.parametrize(
    ("option", "value"), [("--port", "70000"), ("--max-connections", "0"), ("--max-messages", "-1")]
)
def test_serve_refuses_an_out_of_range_number_in_its_own_terms(capsys, option, value):
    assert main(["serve", option, value]) == 2
    err = capsys.readouterr().err
    assert f"{option} takes" in err and f"not {value}" in err
    assert "Limits." not in err and "port must be" not in err and "=" not in err


@pytest.mark.skipif(os.name != "posix", reason="SIGINT delivery to a child is POSIX-specific")
@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm-as-docker-stop"])
def test_serve_as_a_subprocess_stops_cleanly_on_ctrl_c(tmp_path, stop):
    process = subprocess.Popen(
        [sys.executable, "-m", "smtplab", "serve", "--maildir", str(tmp_path / "md")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        first = process.stdout.readline()
        address = address_from(first)
        with smtplib.SMTP(*address, timeout=5) as client:
            client.sendmail("alice@example.test", ["bob@example.test"], b"Subject: sub\r\n\r\nhi\r\n")
        for line in process.stdout:
            if "'sub'" in line:
                break
        process.send_signal(stop)
        out, err = process.communicate(timeout=10)
    finally:
        process.kill()
    assert process.returncode == 0, err
    assert "stopped; 1 message(s) captured" in out and "Traceback" not in err
    assert len(list((tmp_path / "md" / "new").iterdir())) == 1


def test_send_prints_the_dialogue_and_masks_secrets(capsys):
    import smtplab

    with smtplab.start_server(tls="starttls", auth={"alice": "wonderland"}, name="cli-send") as server:
        ca = server.lab_tls.write_files().ca_cert
        status = main(
            [
                "send",
                "--host",
                "localhost",
                "--port",
                str(server.port),
                "--tls",
                "starttls",
                "--cafile",
                str(ca),
                "--user",
                "alice",
                "--password",
                "wonderland",
                "--to",
                "bob@example.test",
                "--subject",
                "via cli",
            ]
        )
        assert status == 0
        assert server.mailbox.wait_for(1)[0].subject == "via cli"
    out = capsys.readouterr().out
    assert "~> AUTH PLAIN ********" in out and "wonderland" not in out and "AGFsaWNl" not in out
    assert "<~ 250 2.0.0 OK: queued as" in out


def test_send_reports_a_refused_connection(capsys):
    from tests.conftest import free_port

    assert main(["send", "--port", str(free_port())]) == 1
    assert "nothing is listening" in capsys.readouterr().err


def test_serve_with_tls_writes_the_ca_for_other_tools(tmp_path):
    out = Announcements()
    ca_file = tmp_path / "lab-ca.pem"
    with contextlib.redirect_stdout(out):
        runner = threading.Thread(
            target=main,
            args=(["serve", "--tls", "implicit", "--ca-file", str(ca_file), "--max-messages", "1", "-q"],),
            daemon=True,
        )
        runner.start()
        assert out.listening.wait(10)
        import ssl

        context = ssl.create_default_context(cafile=str(ca_file))
        with smtplib.SMTP_SSL(*address_from(out.getvalue()), context=context, timeout=5) as client:
            client.sendmail("a@example.test", ["b@example.test"], b"Subject: tls cli\r\n\r\nhi\r\n")
        runner.join(10)
    assert "openssl s_client" in out.getvalue() and "'tls cli'" in out.getvalue()


@pytest.mark.skipif(not hasattr(__import__("socket"), "AF_UNIX"), reason="needs Unix-domain sockets")
def test_serve_on_a_private_unix_socket(tmp_path):
    import asyncio
    import stat

    import aiosmtplib

    out = Announcements()
    path = tmp_path / "private" / "lab.sock"
    with contextlib.redirect_stdout(out):
        runner = threading.Thread(
            target=main, args=(["serve", "--unix-socket", str(path), "--max-messages", "1"],), daemon=True
        )
        runner.start()
        assert out.listening.wait(10)
        assert f"listening on unix:{path}" in out.getvalue() and "swaks --socket" in out.getvalue()
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700

        async def deliver():
            async with aiosmtplib.SMTP(socket_path=str(path), timeout=5) as client:
                await client.sendmail(
                    "a@example.test", ["b@example.test"], "Subject: via socket\r\n\r\nhi\r\n"
                )

        asyncio.run(deliver())
        runner.join(10)
    assert "'via socket'" in out.getvalue() and not runner.is_alive()


# -- send stops at a refusal; every hint in the command line's own terms, and every one works ------


@contextlib.contextmanager
def serving(*options: str, cwd=None):
    """``smtplab serve`` in a subprocess; yields (port or socket path, the lines it printed first)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "smtplab", "serve", *options],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=cwd,
    )
    try:
        lines = []
        for _ in range(20):  # the address, the CA, how to send, "Press Ctrl-C"
            line = process.stdout.readline()
            lines.append(line.rstrip("\n"))
            if not line or "Ctrl-C" in line:
                break
        found = re.search(r"listening on (?:unix:(\S+)|\S+:(\d+))", lines[0])
        assert found, f"serve did not start: {lines} {process.stderr.read()}"
        yield found.group(1) or int(found.group(2)), lines
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.communicate(timeout=10)
        finally:
            process.kill()


def send(capsys, *argv: str) -> tuple[int, str, str]:
    status = main(["send", *argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


#: What a terminal user must never be told to do: Python spellings of options and Python names.
PYTHON_TERMS = re.compile(r"(?<![-\w])[a-z_]+=|default_lab_tls|start_server|kernel|LabTLS|server\.")


def test_send_stops_at_a_refused_login_and_exits_non_zero(capsys):
    with serving(
        "--tls", "starttls", "--auth", "alice:wonderland", "--cafile", "ca.pem", cwd=os.getcwd()
    ) as (
        port,
        lines,
    ):
        cafile = re.search(r"lab CA written to (\S+);", lines[1]).group(1)
        status, out, err = send(
            capsys, "--port", str(port), "--tls", "starttls", "--cafile", cafile, "--user", "alice",
            "--password", "wrong",
        )  # fmt: skip
    os.remove("ca.pem")
    assert status == 1
    assert "535 5.7.8" in out and "MAIL FROM" not in out and "~> QUIT" in out
    assert "the server refused the login (535 5.7.8" in err and "check --user and --password" in err


def test_send_reaches_serve_on_a_unix_socket(capsys, tmp_path):
    path = str(tmp_path / "lab.sock")
    with serving("--unix-socket", path, "--tls", "starttls") as (where, lines):
        assert where == path
        hint = next(line for line in lines if line.strip().startswith("smtplab send"))
        status, out, err = send(capsys, *shlex.split(hint)[2:])
    assert status == 0, err
    assert f"connecting to {path}" in out and "<~ 250 2.0.0 OK: queued as" in out


@pytest.mark.parametrize(
    ("serve_options", "send_options"),
    [
        ((), ("--tls", "implicit")),  # implicit TLS at a plain port
        (("--tls", "starttls", "--cafile", "ca.pem"), ("--tls", "implicit")),
        (("--tls", "starttls", "--cafile", "ca.pem"), ("--tls", "starttls")),  # the lab CA untrusted
        (("--tls", "implicit", "--cafile", "ca.pem"), ()),  # plain client, implicit port: silence
        ((), ("--tls", "starttls")),  # no STARTTLS offered
        (
            ("--tls", "starttls", "--auth", "alice:wonderland", "--cafile", "ca.pem"),
            ("--user", "alice", "--password", "wonderland"),
        ),
    ],
    ids=["implicit-at-plain", "implicit-at-starttls", "untrusted", "silent", "no-starttls", "auth-in-clear"],
)
def test_every_cli_hint_is_in_cli_terms_and_works(capsys, tmp_path, monkeypatch, serve_options, send_options):
    """Follow the hints as a learner at a terminal would: each says what to add; one path succeeds."""
    monkeypatch.chdir(tmp_path)  # where serve wrote ca.pem, the file the hints name

    def follow(argv: list[str], depth: int) -> bool:
        status, _, err = send(capsys, *argv)
        if status == 0:
            return True
        assert err.startswith("smtplab: ") and not PYTHON_TERMS.search(err), err
        fixes = re.findall(r"--tls \w+|no --tls option|--cafile \S+", err)
        assert fixes or depth < 3, err
        for fix in fixes if depth < 3 else ():
            fixed = list(argv)
            if fix.startswith(("--tls", "no --tls")) and "--tls" in fixed:
                del fixed[fixed.index("--tls") : fixed.index("--tls") + 2]
            fixed += [] if fix == "no --tls option" else fix.split()
            if fixed != argv and follow(fixed, depth + 1):
                return True
        return False

    with serving(*serve_options, cwd=tmp_path) as (port, _):
        base = ["--port", str(port), "--timeout", "1", *send_options]
        assert send(capsys, *base)[0] == 1  # it fails first, as the case says
        assert follow(base, 0)


def test_send_to_a_closed_port_speaks_of_serve_not_of_a_kernel(capsys):
    from tests.conftest import free_port

    status, _, err = send(capsys, "--port", str(free_port()))
    assert status == 1 and "nothing is listening" in err
    assert "kernel" not in err and "smtplab serve" in err and "--port" in err


def test_the_ca_option_has_one_spelling_on_both_commands_and_keeps_its_alias(capsys):
    from smtplab.cli import _parser

    for command in (["serve"], ["send", "--port", "25"]):
        for spelling in ("--cafile", "--ca-file"):
            assert _parser().parse_args([*command, spelling, "ca.pem"]).cafile == "ca.pem"
    capsys.readouterr()
    for command in ("serve", "send"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        assert "--cafile PATH, --ca-file PATH" in capsys.readouterr().out


def test_serve_auth_required_refuses_mail_until_a_login(capsys):
    with serving("--tls", "starttls", "--auth", "alice:wonderland", "--auth-required", cwd=os.getcwd()) as (
        port,
        lines,
    ):
        cafile = re.search(r"lab CA written to (\S+);", lines[1]).group(1)
        tls = ["--port", str(port), "--tls", "starttls", "--cafile", cafile]
        refused = send(capsys, *tls)
        accepted = send(capsys, *tls, "--user", "alice", "--password", "wonderland")
    assert (
        refused[0] == 1 and "530" in refused[1] and "log in first (add --user and --password)" in refused[2]
    )
    assert accepted[0] == 0, accepted[2]
    assert main(["serve", "--auth-required"]) == 2
    assert "--auth-required needs --auth" in capsys.readouterr().err


@pytest.mark.parametrize(
    "options",
    [
        (),
        ("--tls", "starttls", "--auth", "alice:wonderland"),
        ("--tls", "implicit", "--cafile", "lab-ca.pem"),
        ("--auth", "alice:wonderland"),  # AUTH only inside TLS: the hint says so and sends without
    ],
    ids=["plain", "starttls-auth", "implicit", "auth-without-tls"],
)
def test_serve_prints_commands_that_match_its_tls_and_auth(tmp_path, options):
    import shutil

    assert shutil.which("swaks"), "swaks is a peer of these tests"
    with serving(*options, cwd=tmp_path) as (_port, lines):
        commands = [line.strip() for line in lines if line.strip().startswith(("smtplab send", "swaks"))]
        assert len(commands) == 2, lines
        for command in commands:
            argv = shlex.split(command)
            if argv[0] == "smtplab":
                argv = [sys.executable, "-m", "smtplab", *argv[1:]]
            done = subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=tmp_path)
            assert done.returncode == 0, (command, done.stdout[-2000:], done.stderr[-2000:])
            assert "250 2.0.0 OK: queued as" in done.stdout, command
        text = "\n".join(lines)
        for command in commands:
            assert ("--tls" in command) == ("--tls" in options), command
            assert ("alice" in command) == ("--tls" in options and "--auth" in options), command
    if options == ("--auth", "alice:wonderland"):
        assert "AUTH is offered only inside TLS" in text and "--tls starttls" in text


def test_serve_and_send_start_without_loading_the_grader_s_notebook_libraries():
    """nbformat pulls in jsonschema, seconds to import with JupyterLab's packages: only grade needs it."""
    code = (
        "import sys; from smtplab.cli import _parser; "
        "_parser().parse_args(['serve', '--port', '0']); _parser().parse_args(['send', '--port', '25']); "
        "loaded = sorted(m for m in ('nbformat', 'nbclient', 'jsonschema') if m in sys.modules); "
        "print(loaded)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_serve_takes_a_connection_cap_for_a_class(capsys):
    out = Announcements()
    with contextlib.redirect_stdout(out):
        runner = threading.Thread(
            target=main, args=(["serve", "--max-connections", "1", "--max-messages", "1"],), daemon=True
        )
        runner.start()
        assert out.listening.wait(10)
        host, port = address_from(out.getvalue())
        with smtplib.SMTP(host, port, timeout=5) as first:
            with pytest.raises(smtplib.SMTPConnectError) as refused:
                smtplib.SMTP(host, port, timeout=5)
            assert (
                refused.value.smtp_code == 421
                and b"Too many connections: 1 are open" in refused.value.smtp_error
            )
            first.sendmail("a@example.test", ["b@example.test"], "Subject: one\r\n\r\nhi\r\n")
        runner.join(10)
    assert not runner.is_alive()
    assert main(["serve", "--max-connections", "0"]) == 2  # told in its own terms, before starting
    assert "--max-connections takes a whole number from 1 up" in capsys.readouterr().err


def test_grade_does_not_load_a_grammar_nbformat_never_uses():
    """rfc3987-syntax compiles an IRI grammar on import (two seconds); nbformat checks no IRI."""
    code = (
        "import sys; from smtplab import cli; cli._skip_iri_checks(); "
        "import nbformat, jsonschema; nbformat.validate(nbformat.v4.new_notebook()); "
        "print(sys.modules.get('rfc3987_syntax', 'absent'))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() in ("None", "absent")
