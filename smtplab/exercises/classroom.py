"""Exercises of ``08-classroom-and-deploy.ipynb``: a private server, and a session handed in."""

from __future__ import annotations

import json
import os
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Any

from smtplab.client import SyncClient
from smtplab.errors import ServerStartError
from smtplab.exercises.lab import learner_function, run_in_lab
from smtplab.exercises.registry import NotYet, exercise
from smtplab.server import LabServer, running_servers
from smtplab.transcript import Transcript

NOTEBOOK = "08-classroom-and-deploy.ipynb"

#: The name 08.1's check gives the learner's server (unique: it replaces no server of theirs).
PRIVATE_NAME = "exercise-08.1-private"


@exercise(
    "08.1",
    notebook=NOTEBOOK,
    title="A private lab server on a shared machine",
    hints={
        "no-server": (
            "Your function should start the server and return it (the LabServer object), so that the "
            "check can send it mail."
        ),
        "not-running": (
            "The server you returned is not listening: a LabServer made directly is only a plan until "
            "it is started. start_server() returns one that is already running."
        ),
        "tcp": (
            "That server listens on a TCP port of 127.0.0.1, and every user of a shared machine can "
            "connect to 127.0.0.1. Ask start_server for a Unix-domain socket instead (section 3)."
        ),
        "shared-directory": (
            "A socket in a directory other users can enter (such as /tmp) is theirs to connect to as "
            "well, and the lab server refuses to start there. Let smtplab make a private directory, "
            "or choose a path in one only you can enter."
        ),
        "ignores-name": (
            "Use the name your function is given: starting a server with the name of a running one "
            "stops that one first — on a shared hub, it could be another of your own servers."
        ),
        "no-mail": (
            "The check could not deliver a message through your server. Return a server that captures "
            "what it receives, as start_server() does."
        ),
    },
)
def private_server(start_private: Any) -> str:
    """``start_private(name)`` starts and returns a lab server only this user can reach."""
    start_private = learner_function(start_private, "name")

    def start(_lab: LabServer) -> Any:
        return start_private(PRIVATE_NAME)

    before = set(map(id, running_servers()))
    trial = run_in_lab(start, allow_errors=True)
    server = trial.result
    started = [s for s in running_servers() if id(s) not in before]  # the learner's, returned or not
    try:
        if isinstance(trial.error, ServerStartError) and "open to other users" in str(trial.error):
            raise NotYet("shared-directory", f"start_server said: {trial.error}")
        trial.raise_for_trouble()
        if not isinstance(server, LabServer):
            text = repr(server)
            raise NotYet("no-server", f"your function returned {text[:70]}{'…' if len(text) > 70 else ''}.")
        if not server.running:
            raise NotYet("not-running", f"it returned {server!r}.")
        if server.socket_path is None:
            raise NotYet("tcp", f"it returned {server!r}, listening on {server.host}:{server.port}.")
        folder = os.path.dirname(server.socket_path)
        mode = os.stat(folder).st_mode
        if mode & 0o077:  # the library refuses this; a server made some other way might not
            raise NotYet("shared-directory", f"{folder} has mode {stat.filemode(mode)}.")
        if server.name != PRIVATE_NAME:
            raise NotYet(
                "ignores-name",
                f"the check asked for a server named {PRIVATE_NAME!r}, and got one named {server.name!r}.",
            )
        with SyncClient(server, timeout=5) as client:
            result = client.send(
                "check@example.test", ["you@example.test"], "Subject: 08.1\r\n\r\nprivate\r\n"
            )
        if not result.ok or not server.mailbox.wait_for(1, timeout=5):
            raise NotYet("no-mail", f"the message got {result.reply}.")
        return (
            f"{server.name!r} listens on {server.socket_path}, in a directory of mode "
            f"{stat.filemode(mode)}: only you can connect, and smtplab.Client(server) still does."
        )
    finally:
        for leftover in [*started, *([server] if isinstance(server, LabServer) else [])]:
            leftover.stop()


#: The files 08.2 asks for, in the folder it is given.
PAGE, DATA = "session.html", "session.json"


def _session() -> tuple[Transcript, list[str]]:
    """A real session with TLS and AUTH, recorded by the client; and its secrets."""

    def talk(server: LabServer) -> Transcript:
        with SyncClient(server, tls="starttls") as client:
            client.login("alice", "wonderland")
            client.send("alice@example.test", ["teacher@example.test"], "Subject: hand-in\r\n\r\nDone.\r\n")
        return client.transcript

    transcript = run_in_lab(talk, options={"tls": "starttls", "auth": {"alice": "wonderland"}}).result
    secrets = [line.text[line.secret_from :] for line in transcript if line.secret_from is not None]
    return transcript, [secret for secret in secrets if secret] + ["wonderland"]


@exercise(
    "08.2",
    notebook=NOTEBOOK,
    title="Hand in a session",
    hints={
        "no-page": f"Put a web page named {PAGE} in the folder your function is given.",
        "no-data": f"Put the JSON file, named {DATA}, in the folder your function is given, beside the page.",
        "not-a-page": (
            "That file is not a whole web page: it needs the <html> page around the dialogue, which "
            "also tells a browser the text is UTF-8 (the arrows and dashes come out garbled "
            "otherwise). Let the suffix of the file name choose what the transcript writes."
        ),
        "not-json": (
            "That file is not JSON, so a program cannot read it back. Let the suffix of the file name "
            "choose what the transcript writes."
        ),
        "secret-revealed": (
            "A hand-in carries the AUTH secret in the clear: anyone who reads it can log in as you. "
            "Leave the secrets masked, as they are unless you ask otherwise."
        ),
    },
)
def hand_in_a_session(hand_in: Any) -> str:
    """``hand_in(transcript, folder)`` saves the transcript there as a page and as JSON."""
    hand_in = learner_function(hand_in, "transcript", "folder")
    transcript, secrets = _session()
    folder = Path(tempfile.mkdtemp(prefix="smtplab-hand-in-"))
    try:
        run_in_lab(lambda _server: hand_in(transcript, folder))
        page, data = folder / PAGE, folder / DATA
        found = sorted(path.name for path in folder.iterdir())
        evidence = [f"the folder holds: {', '.join(found) or 'nothing'}"]
        if not page.is_file():
            raise NotYet("no-page", f"there is no {PAGE} in the folder.", evidence=evidence)
        if not data.is_file():
            raise NotYet("no-data", f"there is no {DATA} in the folder.", evidence=evidence)
        page_text = page.read_text(encoding="utf-8", errors="replace")
        data_text = data.read_text(encoding="utf-8", errors="replace")
        head = page_text.lstrip()[:300].lower()
        if not (head.startswith(("<!doctype html", "<html")) and "charset" in head):
            evidence.append(f"{PAGE} begins: {page_text.lstrip()[:80]!r}")
            raise NotYet("not-a-page", f"{PAGE} is not a whole page.", evidence=evidence)
        try:
            parsed = json.loads(data_text)
            lines = parsed["lines"] if isinstance(parsed, dict) else parsed
            if not isinstance(lines, list):
                raise TypeError(f"it holds a {type(lines).__name__}, not the lines")
        except (ValueError, KeyError, TypeError) as error:
            evidence.append(f"{DATA} begins: {data_text[:80]!r}")
            raise NotYet("not-json", f"{DATA} could not be read back: {error}.", evidence=evidence) from None
        for name, text in ((PAGE, page_text), (DATA, data_text)):
            if any(secret in text for secret in secrets):
                raise NotYet(
                    "secret-revealed", f"{name} holds the AUTH secret in the clear.", evidence=evidence
                )
        return (
            f"{PAGE} ({page.stat().st_size} bytes) opens in any browser, {DATA} holds the {len(lines)} lines "
            "as data, and neither holds the password."
        )
    finally:
        shutil.rmtree(folder, ignore_errors=True)
