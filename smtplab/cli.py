"""Command line: ``smtplab serve`` runs a lab server in the foreground; ``smtplab send`` sends
one message to any SMTP server and prints the whole dialogue; ``smtplab grade`` runs hand-in
notebooks and tabulates their exercises' verdicts.

Testable in-process: :func:`main` takes ``argv`` and returns the exit status.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import threading
from collections.abc import Sequence
from typing import Any

import aiosmtplib

from smtplab.client import SyncClient
from smtplab.errors import SmtpLabError
from smtplab.limits import Limits
from smtplab.mailbox import CapturedMessage
from smtplab.server import start_server
from smtplab.tls import TLS_MODES

__all__ = ["main"]

#: ``--tls`` takes the TLS modes other than plain text (which is leaving --tls out).
_TLS_CHOICES = tuple(mode for mode in TLS_MODES if mode is not None)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="smtplab", description="Learn and experiment with SMTP.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = commands.add_parser(
        "serve",
        help="run a lab SMTP server in the foreground (Ctrl-C stops it)",
        description="Run a lab SMTP server that captures every message; Ctrl-C stops it.",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=0, help="TCP port (default 0: the OS picks a free one)")
    serve.add_argument("--maildir", metavar="PATH", help="also write every message to this Maildir")
    serve.add_argument(
        "--unix-socket",
        nargs="?",
        const=True,
        metavar="PATH",
        help="listen on a private Unix-domain socket instead of a port (on shared hosts); "
        "without PATH one is made in a 0700 directory",
    )
    serve.add_argument(
        "--allow-remote", action="store_true", help="allow a non-loopback --host (reachable by others)"
    )
    serve.add_argument("--max-messages", type=int, metavar="N", help="exit after capturing N messages")
    serve.add_argument(
        "--max-connections",
        type=int,
        metavar="N",
        help=f"sessions open at once; more are told 421 (default {Limits().max_connections}; a class needs more)",
    )
    serve.add_argument("--tls", choices=_TLS_CHOICES, help="offer STARTTLS, or speak TLS from the first byte")
    serve.add_argument(
        "--auth",
        action="append",
        metavar="USER:PASSWORD",
        default=[],
        help="accept AUTH for this user (repeatable)",
    )
    serve.add_argument(
        "--ca-file", metavar="PATH", help="with --tls: write the lab CA certificate here for other tools"
    )
    serve.add_argument("-q", "--quiet", action="store_true", help="print only the address and messages")

    send = commands.add_parser(
        "send",
        help="send one message to an SMTP server and print the dialogue",
        description="Send one message and print both sides of the SMTP dialogue (secrets masked).",
    )
    send.add_argument("--host", default="127.0.0.1", help="server address (default 127.0.0.1)")
    send.add_argument("--port", type=int, required=True, help="server port")
    send.add_argument("--from", dest="sender", default="alice@example.test", help="envelope sender")
    send.add_argument("--to", action="append", metavar="ADDRESS", help="recipient (repeatable)")
    send.add_argument("--subject", default="Hello from smtplab", help="Subject header")
    send.add_argument("--body", default="This message came from smtplab send.", help="message text")
    send.add_argument("--tls", choices=_TLS_CHOICES, help="use TLS (never chosen silently)")
    send.add_argument("--cafile", metavar="PATH", help="trust the CA certificates in this PEM file")
    send.add_argument("--user", help="log in with AUTH as this user")
    send.add_argument("--password", help="password for --user")
    send.add_argument("--reveal-secrets", action="store_true", help="show AUTH data in the transcript")
    send.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for each reply")
    _add_grade_parser(commands)
    return parser


def _summary(message: CapturedMessage) -> str:
    when = message.received.astimezone().strftime("%H:%M:%S")
    to = ", ".join(message.rcpt_tos)
    return (
        f"{when} {message.id} from <{message.mail_from}> to {to}: {message.subject!r} ({message.size} bytes)"
    )


def _users(pairs: list[str]) -> dict[str, str] | None:
    users = {}
    for pair in pairs:
        user, colon, password = pair.partition(":")
        if not colon or not user:
            raise ValueError(f"--auth takes USER:PASSWORD, not {pair!r}")
        users[user] = password
    return users or None


def _serve(args: argparse.Namespace) -> int:
    if args.ca_file and not args.tls:
        print("smtplab: --ca-file needs --tls starttls or --tls implicit", file=sys.stderr)
        return 2
    try:
        where = (
            {"unix_socket": args.unix_socket} if args.unix_socket else {"host": args.host, "port": args.port}
        )
        server = start_server(
            **where,
            maildir=args.maildir,
            allow_remote=args.allow_remote,
            tls=args.tls,
            auth=_users(args.auth),
            limits=Limits(max_connections=args.max_connections) if args.max_connections is not None else None,
            name="cli",
        )
    except (SmtpLabError, OSError, ValueError) as error:
        print(f"smtplab: {error}", file=sys.stderr)
        return 1
    done = threading.Event()

    @server.mailbox.observe
    def _print(message: CapturedMessage) -> None:
        print(_summary(message), flush=True)
        if args.max_messages is not None and server.mailbox.received >= args.max_messages:
            done.set()

    # `docker stop` (and kill, and systemd) send SIGTERM: treat it exactly as Ctrl-C, from before
    # the address is announced, so whoever reads it can stop the server at once.
    import signal

    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    host, port = (None, None) if server.socket_path else server.address
    if args.ca_file:  # written before the address is announced, so scripts can use it at once
        shutil.copyfile(server.lab_tls.write_files().ca_cert, args.ca_file)
    mode = f" ({args.tls} TLS)" if args.tls else ""
    where = f"unix:{server.socket_path}" if server.socket_path else f"{host}:{port}"
    print(f"smtplab lab server listening on {where}{mode}", flush=True)
    if args.ca_file:
        starttls = " -starttls smtp" if args.tls == "starttls" else ""
        connect = f"-unix {server.socket_path}" if server.socket_path else f"-connect {host}:{port}"
        print(
            f"lab CA written to {args.ca_file}; try: openssl s_client {connect}{starttls} -CAfile {args.ca_file}",
            flush=True,
        )
    if not args.quiet:
        if server.socket_path:
            how = (
                "Only your user can reach this socket. Send it mail from Python:\n"
                f"    aiosmtplib.SMTP(socket_path={server.socket_path!r})\n"
                f"or from a terminal:  swaks --socket {server.socket_path} --to bob@example.test\n"
            )
        else:
            how = (
                "Send it mail from Python:\n"
                f"    smtplib.SMTP({host!r}, {port}).sendmail('alice@example.test', ['bob@example.test'], 'Subject: hi\\r\\n\\r\\nhello')\n"
                f"or from a terminal:  swaks --server {host} --port {port} --to bob@example.test\n"
            )
        print(how + "Each captured message is printed below. Press Ctrl-C to stop.", flush=True)
    try:
        done.wait()
    except KeyboardInterrupt:
        pass
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        server.stop()
    if not args.quiet:
        print(f"stopped; {server.mailbox.received} message(s) captured", flush=True)
    return 0


def _send(args: argparse.Namespace) -> int:
    if bool(args.user) != bool(args.password):
        print("smtplab: --user and --password go together", file=sys.stderr)
        return 2
    content = f"Subject: {args.subject}\r\nFrom: {args.sender}\r\nTo: {', '.join(args.to or ['bob@example.test'])}\r\n\r\n{args.body}\r\n"
    client = SyncClient(
        host=args.host, port=args.port, tls=args.tls, cafile=args.cafile, timeout=args.timeout
    )
    status = 1
    try:
        client.connect()
        client.ehlo()
        if args.user:
            client.login(args.user, args.password)
        result = client.send(args.sender, args.to or ["bob@example.test"], content)
        client.quit()
        status = 0 if result.ok else 1
    except (SmtpLabError, OSError, ValueError, aiosmtplib.SMTPException) as error:
        print(f"smtplab: {error}", file=sys.stderr)
    finally:
        print(client.transcript.text(reveal_secrets=args.reveal_secrets), flush=True)
    return status


def _add_grade_parser(commands: Any) -> None:
    from smtplab.exercises.grade import DEFAULT_JOBS, DEFAULT_TIMEOUT

    grade = commands.add_parser(
        "grade",
        help="run hand-in notebooks and tabulate their exercises' verdicts",
        description="Run each notebook headless on a fresh kernel and print which exercises passed, "
        "with the hint for each that did not. It runs the learners' code: use a machine or "
        "account where that is safe. Exit status 0 only if every exercise of every notebook passed.",
    )
    grade.add_argument("notebooks", nargs="+", metavar="NOTEBOOK.ipynb", help="the hand-ins to grade")
    grade.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help=f"time limit for each whole notebook (default {DEFAULT_TIMEOUT:g})",
    )
    grade.add_argument(
        "--jobs",
        type=int,
        default=DEFAULT_JOBS,
        metavar="N",
        help=f"notebooks run at once (default {DEFAULT_JOBS})",
    )
    grade.add_argument("--json", metavar="FILE", help="also write the gradebook as JSON to FILE")


def _skip_iri_checks() -> None:
    """Spare the grader two seconds: nbformat validates with jsonschema, which loads the optional
    rfc3987-syntax (installed with JupyterLab; it compiles a grammar on import) for IRI format
    checks that nbformat never asks for. In this process of ours, jsonschema is told it is absent."""
    if "jsonschema" not in sys.modules:
        sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[assignment]


def _grade(args: argparse.Namespace) -> int:
    import json

    _skip_iri_checks()

    from smtplab.exercises.grade import grade, gradebook, table

    missing = [name for name in args.notebooks if not os.path.isfile(name)]
    if missing:
        print(f"smtplab: no such notebook: {', '.join(missing)}", file=sys.stderr)
        return 2
    if args.timeout <= 0 or args.jobs < 1:
        print("smtplab: --timeout must be positive and --jobs at least 1", file=sys.stderr)
        return 2
    hand_ins = grade(args.notebooks, timeout=args.timeout, jobs=args.jobs)
    print(table(hand_ins), flush=True)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as file:
            json.dump(gradebook(hand_ins), file, indent=2, ensure_ascii=False)
            file.write("\n")
    return 0 if all(hand_in.all_passed for hand_in in hand_ins) else 1


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``smtplab`` command line; returns the process exit status."""
    args = _parser().parse_args(argv)
    if args.command == "serve":
        return _serve(args)
    if args.command == "send":
        return _send(args)
    if args.command == "grade":
        return _grade(args)
    return 2  # pragma: no cover - argparse rejects unknown commands first
