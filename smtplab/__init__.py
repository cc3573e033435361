"""smtplab: learn and experiment with SMTP in Python and Jupyter.

Three lines show a real SMTP conversation::

    import smtplab

    server = smtplab.start_server()  # a lab SMTP server on 127.0.0.1, port picked by the OS
    server.mailbox.wait_for(1)  # after sending it a message

The lab server (:func:`start_server`) captures every message into ``server.mailbox`` and records
each session; :class:`Client` (async) and :class:`SyncClient` talk to it — or to any SMTP
server — and record both sides of the dialogue. Nothing happens on import — no server, no thread, no patching of asyncio.

Every exception smtplab raises derives from :class:`SmtpLabError` (and from the standard
category it belongs to, such as ``OSError`` or ``TimeoutError``), every warning from
:class:`SmtpLabWarning`; all are importable from here.
"""

from smtplab.client import Client, Reply, SendResult, SyncClient
from smtplab.errors import (
    ClientTimeoutError,
    HandlerWarning,
    LabConnectionRefusedError,
    MailboxTimeoutError,
    MailboxWarning,
    NoCommonMechanismError,
    PortInUseError,
    RemoteBindWarning,
    ReplacedServerWarning,
    ServerStartError,
    SharedHostWarning,
    SmtpLabError,
    SmtpLabWarning,
    TLSCertificateError,
    TLSMismatchError,
)
from smtplab.handlers import CaptureHandler, HandlerError
from smtplab.limits import Limits
from smtplab.mailbox import CapturedMessage, Mailbox
from smtplab.server import LabServer, running_servers, start_server, stop_all
from smtplab.transcript import Transcript, TranscriptPair

__version__ = "0.1.0"

__all__ = [
    "CaptureHandler",
    "CapturedMessage",
    "Client",
    "ClientTimeoutError",
    "HandlerError",
    "HandlerWarning",
    "LabConnectionRefusedError",
    "LabServer",
    "Limits",
    "Mailbox",
    "MailboxTimeoutError",
    "MailboxWarning",
    "NoCommonMechanismError",
    "PortInUseError",
    "RemoteBindWarning",
    "ReplacedServerWarning",
    "Reply",
    "SendResult",
    "ServerStartError",
    "SharedHostWarning",
    "SmtpLabError",
    "SmtpLabWarning",
    "SyncClient",
    "TLSCertificateError",
    "TLSMismatchError",
    "Transcript",
    "TranscriptPair",
    "running_servers",
    "start_server",
    "stop_all",
]
