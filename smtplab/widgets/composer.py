"""``Composer``: write a message, send it with smtplab's client, watch the dialogue."""

from __future__ import annotations

import asyncio
import concurrent.futures
import email.utils
import threading
from email.message import EmailMessage
from typing import Any

import ipywidgets

from smtplab.client import Client, SendResult
from smtplab.server import LabServer
from smtplab.widgets._live import LiveBox, escape, reports_errors
from smtplab.widgets.transcript_view import TranscriptView

__all__ = ["Composer"]


def _recipients(text: str) -> list[str]:
    """The addresses in a To field: ``"bob@example.test, Carol <carol@example.test>"``."""
    return [address for _, address in email.utils.getaddresses([text]) if address]


class Composer(LiveBox):
    """From, To, Subject and a body; Send hands them to :class:`smtplab.Client`.

    The transcript of the send is drawn live below the form, and the server's verdict beside
    the button. Inside Jupyter the send runs on the kernel's event loop (the page stays
    responsive); in a plain script it runs with :class:`smtplab.SyncClient` and Send returns
    when it is done.

    Args:
        server: The :class:`~smtplab.server.LabServer` to send to.
        sender: The initial From.
        to: The initial To (several addresses separated by commas).
        subject: The initial Subject.
        body: The initial text.

    Attributes:
        client: The :class:`~smtplab.client.Client` of the latest send (``client.pair()`` shows
            both sides of it).
        last_result: The :class:`~smtplab.client.SendResult` of the latest send, once done.
        last_error: The exception that ended the latest send, if one did.
        last_future: A :class:`concurrent.futures.Future` of the latest send's result.
        sent: A :class:`threading.Event`, set whenever a send is over (whatever the outcome).
    """

    def __init__(
        self,
        server: LabServer,
        *,
        sender: str = "alice@example.test",
        to: str = "bob@example.test",
        subject: str = "Hello from smtplab",
        body: str = "Hello, Bob!\n\nThis message travelled over SMTP, on this machine only.\n",
    ) -> None:
        if not isinstance(server, LabServer):
            raise TypeError(f"Composer sends to a LabServer, not {type(server).__name__}")
        self.server = server
        self.sender = ipywidgets.Text(value=sender, description="From", placeholder="alice@example.test")
        self.to = ipywidgets.Text(
            value=to, description="To", placeholder="bob@example.test, carol@example.test"
        )
        self.subject = ipywidgets.Text(value=subject, description="Subject", placeholder="Subject")
        self.body = ipywidgets.Textarea(value=body, description="Body", placeholder="Write something")
        self.body.layout.height = "7em"
        self.send_button = ipywidgets.Button(
            description="Send", icon="paper-plane", button_style="primary", tooltip="Send with smtplab.Client"
        )
        self.result = ipywidgets.HTML()
        self.transcript_view = TranscriptView(height="16em")
        self.client: Client | None = None
        self.last_result: SendResult | None = None
        self.last_error: BaseException | None = None
        self.last_future: concurrent.futures.Future[SendResult] | None = None
        self.sent = threading.Event()
        for field in (self.sender, self.to, self.subject, self.body):
            field.layout.width = "100%"
            field.add_class(f"smtplab-composer-{field.description.lower()}")
        super().__init__(
            [
                self.sender,
                self.to,
                self.subject,
                self.body,
                ipywidgets.HBox([self.send_button, self.result], layout={"align_items": "center"}),
                self.transcript_view,
            ]
        )
        self.add_class("smtplab-composer")
        self.send_button.on_click(self._on_send_button_click)
        self.to.observe(self._on_to_value, names="value")
        self._on_to_value({"new": self.to.value})

    # -- the message --------------------------------------------------------------------------

    def compose(self) -> tuple[str, list[str], EmailMessage]:
        """The envelope sender, the recipients and the message the form describes."""
        sender = email.utils.parseaddr(self.sender.value)[1]
        recipients = _recipients(self.to.value)
        if not sender:
            raise ValueError(f"From: {self.sender.value!r} holds no address, e.g. alice@example.test")
        if not recipients:
            raise ValueError(f"To: {self.to.value!r} holds no address, e.g. bob@example.test")
        message = EmailMessage()
        message["From"] = self.sender.value
        message["To"] = self.to.value
        message["Subject"] = self.subject.value
        message["Date"] = email.utils.formatdate(localtime=True)
        message["Message-ID"] = email.utils.make_msgid(domain="smtplab.test")  # no DNS lookup
        message.set_content(self.body.value)
        return sender, recipients, message

    # -- sending ------------------------------------------------------------------------------

    def submit(self) -> concurrent.futures.Future[SendResult]:
        """What Send does; returns a future of the :class:`~smtplab.client.SendResult`.

        With an event loop running in this thread (a Jupyter kernel) the send is scheduled on
        it and the future completes later — in a notebook cell, ``await
        asyncio.wrap_future(composer.submit())``. Without one it is done on return.
        """
        self.sent.clear()
        self.last_result = self.last_error = None
        self.hide_error()
        try:
            sender, recipients, message = self.compose()
        except Exception as error:  # noqa: BLE001 - shown in the widget and set on the future
            future: concurrent.futures.Future[SendResult] = concurrent.futures.Future()
            self.last_future = future
            self._finish(None, error)
            future.set_exception(error)
            return future
        self.send_button.disabled = True
        self.result.value = '<span style="opacity:0.8">sending…</span>'
        client = Client(self.server)
        self.client = client
        self.transcript_view.transcript = client.transcript
        self.last_future = self.run_task(self._deliver(client, sender, recipients, message), self._finish)
        return self.last_future

    @staticmethod
    async def _deliver(
        client: Client, sender: str, recipients: list[str], message: EmailMessage
    ) -> SendResult:
        async with client:
            return await client.send(sender, recipients, message)

    def _finish(self, result: SendResult | None, error: BaseException | None) -> None:
        self.send_button.disabled = not _recipients(self.to.value)
        if isinstance(error, asyncio.CancelledError):  # the kernel is shutting down
            self.sent.set()
            return
        if error is not None:
            self.last_error = error
            self.result.value = '<span style="font-size:13px"><b>Not sent</b>: the error is below.</span>'
            self.report_error(error)
        else:
            assert result is not None
            self.last_result = result
            self.result.value = _verdict(result)
        self.transcript_view.refresh()
        self.sent.set()

    # -- events -------------------------------------------------------------------------------

    @reports_errors
    def _on_send_button_click(self, button: ipywidgets.Button) -> None:
        self.submit()

    @reports_errors
    def _on_to_value(self, change: dict[str, Any]) -> None:
        self.send_button.disabled = not _recipients(change["new"])

    def _unobserve_models(self) -> None:
        pass  # the transcript view, a child, unobserves its transcript when closed


def _verdict(result: SendResult) -> str:
    reply = result.reply
    said = f"{escape(str(reply).splitlines()[-1])}" if reply is not None else "no reply"
    # Reply.meaning reads "250 2.0.0 — Requested mail action okay…": the code is shown already.
    meaning = reply.meaning.split(" — ", 1)[-1] if reply is not None else ""
    meaning = f' <span style="opacity:0.75">— {escape(meaning)}</span>' if meaning else ""
    if result.ok:
        count = len(result.accepted)
        text = f"<b>Accepted</b> for {count} recipient{'s' if count != 1 else ''}: {said}"
    else:
        text = f"<b>Not accepted</b>: {said}"
    refused = "".join(
        f"<br>refused {escape(address)}: {escape(str(reply).splitlines()[-1])}"
        for address, reply in result.refused.items()
    )
    return f'<span style="font-size:13px">{text}{meaning}{refused}</span>'
