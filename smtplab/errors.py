"""Every exception and warning smtplab raises on its own account.

Exceptions derive from :class:`SmtpLabError` *and* from the standard library category they
belong to, so ``except OSError`` or ``except TimeoutError`` in a learner's code keeps working.
Warnings derive from :class:`SmtpLabWarning` (a ``UserWarning``), so one filter silences them
all. Exceptions raised by aiosmtplib itself reach learners unchanged: they are part of the lesson.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterable

__all__ = [
    "AuthWithoutTLSWarning",
    "ClientTimeoutError",
    "HandlerWarning",
    "LabConnectionRefusedError",
    "MailboxTimeoutError",
    "MailboxWarning",
    "NoCommonMechanismError",
    "NotYet",
    "PortInUseError",
    "RemoteBindWarning",
    "ReplacedServerWarning",
    "ServerStartError",
    "SharedHostWarning",
    "SmtpLabError",
    "SmtpLabWarning",
    "TLSCertificateError",
    "TLSMismatchError",
    "UnknownExerciseError",
]


# -- exceptions ---------------------------------------------------------------------------------


class SmtpLabError(Exception):
    """Root of every exception smtplab raises on its own account."""


class PortInUseError(SmtpLabError, OSError):
    """The port asked for is already taken by another program (or another lab server)."""


class ServerStartError(SmtpLabError, RuntimeError):
    """The lab server could not start; the message says why and what to change."""


class TLSMismatchError(SmtpLabError, ConnectionError):
    """Client and server disagree about TLS (implicit TLS against plain text, or the reverse)."""


class TLSCertificateError(SmtpLabError, ssl.SSLCertVerificationError):
    """The server's certificate was not trusted, or was issued for another name."""

    def __str__(self) -> str:  # ssl.SSLError would show the args tuple
        return str(self.args[0]) if self.args else ""


class ClientTimeoutError(SmtpLabError, TimeoutError):
    """A command waited longer than its timeout for the server's reply."""


class LabConnectionRefusedError(SmtpLabError, ConnectionRefusedError):
    """Nothing is listening at the host and port the client tried."""


class UnknownExerciseError(SmtpLabError, LookupError):
    """No exercise has the id given to ``smtplab.exercises.check()``; the message lists close ones."""


class NotYet(SmtpLabError, AssertionError):
    """Raised by a check when the answer is not right yet, naming the mistake it found.

    Args:
        mistake: The key of the hint for this mistake, declared in the exercise's ``hints``
            (or one of ``smtplab.exercises.registry.FRAMEWORK_HINTS``), e.g. ``"two-messages"``.
        message: What the check found, specific to this answer ("the server received 2
            messages"). Never the solution.
        evidence: Lines that show what happened (e.g. what the lab server heard).
    """

    def __init__(self, mistake: str, message: str, *, evidence: Iterable[str] = ()) -> None:
        super().__init__(f"{mistake}: {message}")
        self.mistake = mistake
        self.message = message
        self.evidence = tuple(evidence)


class NoCommonMechanismError(SmtpLabError, ValueError):
    """Client and server have no AUTH mechanism in common (or the one asked for is missing)."""


class MailboxTimeoutError(SmtpLabError, TimeoutError):
    """``Mailbox.wait_for`` waited its whole timeout and fewer messages arrived than asked for."""


# -- warnings -----------------------------------------------------------------------------------


class SmtpLabWarning(UserWarning):
    """Root of every warning smtplab gives: ``warnings.simplefilter("ignore", SmtpLabWarning)``."""


class HandlerWarning(SmtpLabWarning):
    """A learner's handler has a mistake that will make the server refuse mail."""


class AuthWithoutTLSWarning(SmtpLabWarning):
    """A lab server takes AUTH but has no TLS: every AUTH in plain text will get ``538``."""


class RemoteBindWarning(SmtpLabWarning):
    """The lab server listens on an address other machines can reach."""


class ReplacedServerWarning(SmtpLabWarning):
    """A server of the same name was running and has been stopped to make way."""


class SharedHostWarning(SmtpLabWarning):
    """Other users of this machine (a JupyterHub) can connect to a lab server on 127.0.0.1."""


class MailboxWarning(SmtpLabWarning):
    """The mailbox dropped old messages to stay within its memory bounds."""
