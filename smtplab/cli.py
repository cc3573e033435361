"""Command line: ``smtplab serve`` runs a lab server in the foreground; ``smtplab send`` sends
one message to any SMTP server and prints the whole dialogue; ``smtplab grade`` runs hand-in
notebooks and tabulates their exercises' verdicts.

Every hint it prints is in its own terms (``--tls starttls``, ``--port``, ``--cafile``): errors
carry their fixes as data (:mod:`smtplab.hints`) and are shown for the command line.

Testable in-process: :func:`main` takes ``argv`` and returns the exit status.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import sys
import threading
from collections.abc import Sequence
from email.message import EmailMessage
from typing import Any

import aiosmtplib

from smtplab import hints
from smtplab._lifecycle import is_loopback
from smtplab.client import Reply, SyncClient
from smtplab.errors import PortInUseError, SmtpLabError
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
        help="accept AUTH for this user (repeatable); offered inside TLS only",
    )
    serve.add_argument(
        "--auth-required", action="store_true", help="with --auth: refuse mail (530) until the client logs in"
    )
    serve.add_argument(
        "--cafile",
        "--ca-file",
        dest="cafile",
        metavar="PATH",
        help="with --tls: write the lab CA certificate here, for clients to trust (smtplab send --cafile)",
    )
    serve.add_argument("-q", "--quiet", action="store_true", help="print only the address and messages")

    send = commands.add_parser(
        "send",
        help="send one message to an SMTP server and print the dialogue",
        description="Send one message and print both sides of the SMTP dialogue (secrets masked). "
        "Stops at the first refusal that ends the send; the exit status is 0 only when every "
        "recipient was accepted.",
    )
    send.add_argument("--host", default="127.0.0.1", help="server address (default 127.0.0.1)")
    where = send.add_mutually_exclusive_group(required=True)
    where.add_argument("--port", type=int, help="server port")
    where.add_argument(
        "--unix-socket", metavar="PATH", help="the server's Unix-domain socket (smtplab serve --unix-socket)"
    )
    send.add_argument("--from", dest="sender", default="alice@example.test", help="envelope sender")
    send.add_argument("--to", action="append", metavar="ADDRESS", help="recipient (repeatable)")
    send.add_argument("--subject", default="Hello from smtplab", help="Subject header")
    send.add_argument("--body", default="This message came from smtplab send.", help="message text")
    send.add_argument("--tls", choices=_TLS_CHOICES, help="use TLS (never chosen silently)")
    send.add_argument(
        "--cafile",
        "--ca-file",
        dest="cafile",
        metavar="PATH",
        help="trust the CA certificates in this PEM file (the lab CA: smtplab serve --cafile PATH)",
    )
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


def _fail(message: object) -> None:
    """Print an error in the words of the command line (see :mod:`smtplab.hints`)."""
    print(f"smtplab: {hints.render(message, 'cli')}", file=sys.stderr, flush=True)


def _check_serve(args: argparse.Namespace) -> str | None:
    """What is wrong with serve's options, in its own terms, before anything starts."""
    if args.cafile and not args.tls:
        return "--cafile needs --tls starttls or --tls implicit"
    if args.auth_required and not args.auth:
        return "--auth-required needs --auth USER:PASSWORD: otherwise no one could ever send"
    if not 0 <= args.port <= 65535:
        return f"--port takes 1 to 65535, not {args.port}: or leave it out, and the OS picks a free one"
    for flag, value in (("--max-connections", args.max_connections), ("--max-messages", args.max_messages)):
        if value is not None and value < 1:
            return f"{flag} takes a whole number from 1 up, not {value} (leave it out for the default)"
    if not args.unix_socket and not args.allow_remote and not is_loopback(args.host):
        return (
            f"--host {args.host} is not a loopback address, so other machines could reach the lab "
            "server: leave out --host (127.0.0.1), or add --allow-remote if you mean to expose it "
            "(e.g. in a classroom container)"
        )
    return None


def _serve(args: argparse.Namespace) -> int:
    problem = _check_serve(args)
    if problem is not None:
        _fail(problem)
        return 2
    try:
        users = _users(args.auth)
        where = (
            {"unix_socket": args.unix_socket} if args.unix_socket else {"host": args.host, "port": args.port}
        )
        server = start_server(
            **where,
            maildir=args.maildir,
            allow_remote=args.allow_remote,
            tls=args.tls,
            auth=users,
            limits=Limits(max_connections=args.max_connections) if args.max_connections is not None else None,
            name="cli",
            **({"auth_required": True} if args.auth_required else {}),
        )
    except PortInUseError as error:
        if args.unix_socket:
            _fail(error)  # "another server is listening on PATH"
            return 1
        _fail(
            f"port {args.port} on {args.host} is already in use (by another program): leave out "
            "--port (the OS picks a free one), or stop the other server"
        )
        return 1
    except (SmtpLabError, OSError, ValueError) as error:
        _fail(error)
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
    cafile = None
    if args.tls:  # written before the address is announced, so scripts can use it at once
        cafile = str(server.lab_tls.write_files().ca_cert)
        if args.cafile:
            shutil.copyfile(cafile, args.cafile)
            cafile = args.cafile
    mode = f" ({args.tls} TLS)" if args.tls else ""
    where = f"unix:{server.socket_path}" if server.socket_path else f"{host}:{port}"
    print(f"smtplab lab server listening on {where}{mode}", flush=True)
    if cafile:
        starttls = " -starttls smtp" if args.tls == "starttls" else ""
        connect = f"-unix {server.socket_path}" if server.socket_path else f"-connect {host}:{port}"
        print(
            f"lab CA written to {cafile}; try: openssl s_client {connect}{starttls} -CAfile {cafile}",
            flush=True,
        )
    if not args.quiet:
        print(_how_to_send(args, server.socket_path, host, port, cafile, users), flush=True)
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


def _how_to_send(
    args: argparse.Namespace,
    socket_path: str | None,
    host: str | None,
    port: int | None,
    cafile: str | None,
    users: dict[str, str] | None,
) -> str:
    """How to send this server mail, with exactly the options its --tls and --auth call for."""
    place = ["--unix-socket", socket_path] if socket_path else ["--port", str(port)]
    if host not in (None, "127.0.0.1"):
        place = ["--host", str(host), *place]
    ours = ["smtplab", "send", *place]
    swaks = [
        "swaks",
        *(["--socket", socket_path] if socket_path else ["--server", str(host), "--port", str(port)]),
    ]
    notes = []
    if args.tls and cafile:
        ours += ["--tls", args.tls, "--cafile", cafile]
        swaks += [
            "--tls-on-connect" if args.tls == "implicit" else "--tls",
            "--tls-verify",
            "--tls-ca-path",
            cafile,
        ]
    if users:
        user, password = next(iter(users.items()))
        if args.tls:
            ours += ["--user", user, "--password", password]
            swaks += ["--auth-user", user, "--auth-password", password]
        else:
            notes.append(
                "AUTH is offered only inside TLS (RFC 4954 §4 advises it): restart with --tls "
                "starttls to log in."
            )
    ours += ["--to", "bob@example.test"]
    swaks += ["--to", "bob@example.test"]
    if args.auth_required and not args.tls:
        notes.append("--auth-required refuses all mail until a login, which needs --tls here.")
    lines = [
        "Send it mail from a terminal:",
        f"    {shlex.join(ours)}",
        f"    {shlex.join(swaks)}",
        *notes,
        "Each captured message is printed below. Press Ctrl-C to stop.",
    ]
    return "\n".join(lines)


#: Why the command line stops at a refusal, by the step that was refused.
_STOPPED = {
    "hello": "the server refused the greeting (EHLO and HELO)",
    "login": "the server refused the login",
    "mail": "the server refused the sender (MAIL FROM)",
    "rcpt": "the server refused every recipient",
    "data": "the server refused the message",
}


def _refusal(step: str, reply: Reply, args: argparse.Namespace) -> str:
    """One line on why the send stopped, and what to change on this command line."""
    said = f"{reply.code} {reply.message.splitlines()[-1] if reply.message else ''}".rstrip()
    fix = ""
    if reply.code == 535:
        fix = ": check --user and --password"
    elif reply.code == 538 or (reply.code == 530 and not args.tls and step != "login"):
        fix = ": log in inside TLS (add --tls starttls, and --cafile for the server's CA)"
    elif reply.code == 530:
        fix = ": log in first (add --user and --password)"
    elif step == "login" and reply.code in (502, 503, 504):
        fix = ": this server does not take AUTH here; leave out --user"
    sent = "" if step == "data" else "; nothing was sent"
    return f"{_STOPPED[step]} ({said}){fix}{sent}"


def _message(args: argparse.Namespace, recipients: list[str]) -> EmailMessage:
    message = EmailMessage()
    message["From"] = args.sender
    message["To"] = ", ".join(recipients)
    message["Subject"] = args.subject
    message.set_content(args.body)
    return message


def _send(args: argparse.Namespace) -> int:
    if bool(args.user) != bool(args.password):
        _fail("--user and --password go together")
        return 2
    recipients = args.to or ["bob@example.test"]
    where = {"socket_path": args.unix_socket} if args.unix_socket else {"host": args.host, "port": args.port}
    try:
        client = SyncClient(**where, tls=args.tls, cafile=args.cafile, timeout=args.timeout)
    except (TypeError, ValueError) as error:
        _fail(error)
        return 2
    problem = None
    try:
        client.connect()
        hello = client.ehlo()
        if hello.code >= 500:
            hello = client.helo()
        if not hello.ok:
            problem = _refusal("hello", hello, args)
        elif args.user:
            login = client.login(args.user, args.password)
            if login.code != 235:
                problem = _refusal("login", login, args)
        if problem is None:
            result = client.send(args.sender, recipients, _message(args, recipients))
            if not result.ok:
                step = "mail" if not result.recipients else "rcpt" if not result.accepted else "data"
                problem = _refusal(step, result.reply or Reply(0, ""), args)
            elif result.refused:
                refused = ", ".join(f"{address} ({reply.code})" for address, reply in result.refused.items())
                problem = f"sent, but the server refused {refused}"
        if client.connected:
            client.quit()
    except (SmtpLabError, OSError, ValueError, aiosmtplib.SMTPException) as error:
        problem = hints.render(error, "cli")
    finally:
        client.close()
        print(client.transcript.text(reveal_secrets=args.reveal_secrets), flush=True)
    if problem is not None:
        _fail(problem)
        return 1
    return 0


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
