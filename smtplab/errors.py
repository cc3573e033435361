"""Exceptions raised by smtplab.

Every exception derives from :class:`SmtpLabError` *and* from the standard library category it
belongs to, so ``except OSError`` or ``except TimeoutError`` in a learner's code keeps working.
Exceptions raised by aiosmtplib itself reach learners unchanged: they are part of the lesson.
"""

from __future__ import annotations

import ssl

__all__ = [
    "ClientTimeoutError",
    "LabConnectionRefusedError",
    "PortInUseError",
    "ServerStartError",
    "SmtpLabError",
    "TLSCertificateError",
    "TLSMismatchError",
    "UnknownExerciseError",
]


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
