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
        runner = threading.Thread(target=lambda: result.append(main(["serve", "--max-messages", "1"])))
        runner.start()
        assert out.listening.wait(10)
        with smtplib.SMTP(*address_from(out.getvalue()), timeout=5) as client:
            client.sendmail("alice@example.test", ["bob@example.test"], b"Subject: from cli test\r\n\r\nhi\r\n")
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
def test_serve_as_a_subprocess_stops_cleanly_on_ctrl_c(tmp_path):
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
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=10)
    finally:
        process.kill()
    assert process.returncode == 0, err
    assert "stopped; 1 message(s) captured" in out
    assert len(list((tmp_path / "md" / "new").iterdir())) == 1
