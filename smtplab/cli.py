"""Command line: ``smtplab serve`` runs a lab server in the foreground.

Testable in-process: :func:`main` takes ``argv`` and returns the exit status.
"""

from __future__ import annotations

import argparse
import sys
import threading
from collections.abc import Sequence

from smtplab.errors import SmtpLabError
from smtplab.mailbox import CapturedMessage
from smtplab.server import start_server

__all__ = ["main"]


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
        "--allow-remote", action="store_true", help="allow a non-loopback --host (reachable by others)"
    )
    serve.add_argument(
        "--max-messages", type=int, metavar="N", help="exit after capturing N messages"
    )
    serve.add_argument("-q", "--quiet", action="store_true", help="print only the address and messages")
    return parser


def _summary(message: CapturedMessage) -> str:
    when = message.received.astimezone().strftime("%H:%M:%S")
    to = ", ".join(message.rcpt_tos)
    return f"{when} {message.id} from <{message.mail_from}> to {to}: {message.subject!r} ({message.size} bytes)"


def _serve(args: argparse.Namespace) -> int:
    try:
        server = start_server(
            host=args.host,
            port=args.port,
            maildir=args.maildir,
            allow_remote=args.allow_remote,
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

    host, port = server.address
    print(f"smtplab lab server listening on {host}:{port}", flush=True)
    if not args.quiet:
        print(
            "Send it mail from Python:\n"
            f"    smtplib.SMTP({host!r}, {port}).sendmail('alice@example.test', ['bob@example.test'], 'Subject: hi\\r\\n\\r\\nhello')\n"
            f"or from a terminal:  swaks --server {host} --port {port} --to bob@example.test\n"
            "Each captured message is printed below. Press Ctrl-C to stop.",
            flush=True,
        )
    try:
        done.wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    if not args.quiet:
        print(f"stopped; {server.mailbox.received} message(s) captured", flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``smtplab`` command line; returns the process exit status."""
    args = _parser().parse_args(argv)
    if args.command == "serve":
        return _serve(args)
    return 2  # pragma: no cover - argparse rejects unknown commands first
