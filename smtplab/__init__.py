"""smtplab: learn and experiment with SMTP in Python and Jupyter.

Three lines show a real SMTP conversation::

    import smtplab
    server = smtplab.start_server()            # a lab SMTP server on 127.0.0.1, port picked by the OS
    server.mailbox.wait_for(1)                 # after sending it a message

The lab server (:func:`start_server`) captures every message into ``server.mailbox`` and records
each session; nothing happens on import — no server, no thread, no patching of asyncio.
"""

from smtplab.errors import (
    ClientTimeoutError,
    LabConnectionRefusedError,
    PortInUseError,
    ServerStartError,
    SmtpLabError,
    TLSMismatchError,
)
from smtplab.handlers import CaptureHandler, HandlerError
from smtplab.mailbox import CapturedMessage, Mailbox
from smtplab.server import LabServer, running_servers, start_server, stop_all
from smtplab.transcript import Transcript

__version__ = "0.1.0"

__all__ = [
    "CaptureHandler",
    "CapturedMessage",
    "ClientTimeoutError",
    "HandlerError",
    "LabConnectionRefusedError",
    "LabServer",
    "Mailbox",
    "PortInUseError",
    "ServerStartError",
    "SmtpLabError",
    "TLSMismatchError",
    "Transcript",
    "running_servers",
    "start_server",
    "stop_all",
]
