"""Jupyter widgets for smtplab: thin, live views over the library (needs ipywidgets 8).

Only this package imports ipywidgets; ``import smtplab`` alone never does. Each widget calls
the library and observes it — it holds no SMTP knowledge of its own::

    from smtplab.widgets import Composer, MailboxView, ServerPanel, TranscriptView

    ServerPanel(server)  # Start / Stop, host:port, a live message count
    MailboxView(server.mailbox)  # captured messages, live; headers, bodies, MIME tree
    Composer(server)  # write and send a message, watch the dialogue
    TranscriptView(client.transcript)  # a dialogue as it happens; secrets masked until revealed
    BatchPanel(server)  # send_many at the click of a button, and the batch's timeline

Updates from the server's threads are handed to the kernel's event loop, so widgets can be
left on screen while mail arrives. An exception in a widget's callback is shown in the
widget itself (its ``output``), never lost. ``widget.close()`` stops observing.
"""

from smtplab.widgets.batch_panel import BatchPanel
from smtplab.widgets.composer import Composer
from smtplab.widgets.mailbox_view import MailboxView
from smtplab.widgets.server_panel import ServerPanel
from smtplab.widgets.transcript_view import TranscriptView

__all__ = [
    "BatchPanel",
    "Composer",
    "MailboxView",
    "ServerPanel",
    "TranscriptView",
]
