"""The command line: `smtplab serve` in-process and as a real subprocess."""

from __future__ import annotations

import contextlib
import io
import os
import re
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
    assert "already in use" in capsys.readouterr().err


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
    assert main(["serve", "--max-connections", "0"]) == 1
    assert "Limits.max_connections must be a positive number" in capsys.readouterr().err


def test_grade_does_not_load_a_grammar_nbformat_never_uses():
    """rfc3987-syntax compiles an IRI grammar on import (two seconds); nbformat checks no IRI."""
    code = (
        "import sys; from smtplab import cli; cli._skip_iri_checks(); "
        "import nbformat, jsonschema; nbformat.validate(nbformat.v4.new_notebook()); "
        "print(sys.modules.get('rfc3987_syntax', 'absent'))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() in ("None", "absent")
