"""Jupyter widgets for smtplab: thin, live views over the library (needs ipywidgets 8).

Only this package imports ipywidgets; ``import smtplab`` alone never does. Each widget calls
the library and observes it — it holds no SMTP knowledge of its own::

    from smtplab.widgets import Composer, MailboxView, ServerPanel, TLSExplorer, TranscriptView

    ServerPanel(server)  # Start / Stop, host:port, a live message count
    MailboxView(server.mailbox)  # captured messages, live; headers, bodies, MIME tree
    Composer(server)  # write and send a message, watch the dialogue
    TranscriptView(client.transcript)  # a dialogue as it happens; secrets masked until revealed
    FaultPanel(server)  # make the server fail on purpose, by clicking (server.inject)
    LoopMonitor(server)  # the server's event-loop lag, live: a blocked loop shows
    CommandConsole(server)  # talk SMTP by hand, see where the session stands
    AuthVisualizer(client.transcript)  # an AUTH exchange step by step, base64 decoded
    TLSExplorer()  # client mode x server mode x trust x name, run live against lab servers
    BatchPanel(server)  # send_many at the click of a button, and the batch's timeline

Updates from the server's threads are handed to the kernel's event loop, so widgets can be
left on screen while mail arrives. An exception in a widget's callback is shown in the
widget itself (its ``output``), never lost. ``widget.close()`` stops observing.
"""

from smtplab.widgets.auth_visualizer import AuthVisualizer
from smtplab.widgets.batch_panel import BatchPanel
from smtplab.widgets.composer import Composer
from smtplab.widgets.console import CommandConsole
from smtplab.widgets.fault_panel import FaultPanel
from smtplab.widgets.loop_monitor import LoopMonitor
from smtplab.widgets.mailbox_view import MailboxView
from smtplab.widgets.server_panel import ServerPanel
from smtplab.widgets.tls_explorer import TLSExplorer
from smtplab.widgets.transcript_view import TranscriptView

__all__ = [
    "AuthVisualizer",
    "BatchPanel",
    "CommandConsole",
    "Composer",
    "FaultPanel",
    "LoopMonitor",
    "MailboxView",
    "ServerPanel",
    "TLSExplorer",
    "TranscriptView",
]
