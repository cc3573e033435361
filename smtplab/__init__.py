"""smtplab: learn and experiment with SMTP in Python and Jupyter.

Three lines show a real SMTP conversation::

    import smtplab

    server = smtplab.start_server()  # a lab SMTP server on 127.0.0.1, port picked by the OS
    server.mailbox.wait_for(1)  # after sending it a message

The lab server (:func:`start_server`) captures every message into ``server.mailbox`` and records
each session; :class:`Client` (async) and :class:`SyncClient` talk to it — or to any SMTP
server — and record both sides of the dialogue. :func:`start_proxy` puts a recording
man-in-the-middle between them, for the STARTTLS-stripping lesson; :func:`send_many` sends a
batch over several connections at once. Nothing happens on import — no server, no thread, no patching of asyncio.

Every exception smtplab raises derives from :class:`SmtpLabError` (and from the standard
category it belongs to, such as ``OSError`` or ``TimeoutError``), every warning from
:class:`SmtpLabWarning`; all are importable from here.
"""

import logging

from smtplab.client import Client, Reply, SendResult, SyncClient
from smtplab.errors import (
    AuthWithoutTLSWarning,
    ClientTimeoutError,
    HandlerWarning,
    LabConnectionRefusedError,
    MailboxTimeoutError,
    MailboxWarning,
    NoCommonMechanismError,
    NotYet,
    PortInUseError,
    RemoteBindWarning,
    ReplacedServerWarning,
    ServerStartError,
    SharedHostWarning,
    SmtpLabError,
    SmtpLabWarning,
    TLSCertificateError,
    TLSMismatchError,
    UnknownExerciseError,
)
from smtplab.handlers import CaptureHandler, HandlerError
from smtplab.limits import Limits
from smtplab.mailbox import CapturedMessage, Mailbox
from smtplab.parallel import Backoff, BatchResult, Delivery, send_many, send_many_sync
from smtplab.proxy import LabProxy, ProxyConnection, running_proxies, start_proxy, stop_all_proxies
from smtplab.server import LabServer, running_servers, start_server, stop_all
from smtplab.transcript import Transcript, TranscriptPair

__version__ = "0.1.0"

# A library's logger prints nothing until the application sets up logging (Python's logging
# HOWTO, "Configuring Logging for a Library"): what goes wrong in a lab server is kept in
# server.errors and its transcripts instead of appearing on stderr, in a notebook's cell.
logging.getLogger("smtplab").addHandler(logging.NullHandler())

__all__ = [
    "AuthWithoutTLSWarning",
    "Backoff",
    "BatchResult",
    "CaptureHandler",
    "CapturedMessage",
    "Client",
    "ClientTimeoutError",
    "Delivery",
    "HandlerError",
    "HandlerWarning",
    "LabConnectionRefusedError",
    "LabProxy",
    "LabServer",
    "Limits",
    "Mailbox",
    "MailboxTimeoutError",
    "MailboxWarning",
    "NoCommonMechanismError",
    "NotYet",
    "PortInUseError",
    "ProxyConnection",
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
    "UnknownExerciseError",
    "running_proxies",
    "running_servers",
    "send_many",
    "send_many_sync",
    "start_proxy",
    "start_server",
    "stop_all",
    "stop_all_proxies",
]
