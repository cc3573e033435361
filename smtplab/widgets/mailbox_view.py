"""``MailboxView``: the lab server's captured messages, live, and everything inside one of them."""

from __future__ import annotations

from email.message import EmailMessage, Message
from typing import Any

import ipywidgets

from smtplab import mime
from smtplab.mailbox import CapturedMessage, Mailbox
from smtplab.render import format_address
from smtplab.widgets._live import LiveBox, escape, reports_errors

__all__ = ["MailboxView"]

#: Messages listed at most (the newest); the mailbox itself may hold more.
DEFAULT_MAX_ROWS = 500

_TEXT_LIMIT = 100_000  # characters of a body shown
_TD = "text-align:left;vertical-align:top;padding:1px 8px;border:none;line-height:1.35;color:inherit"
_TH = f"{_TD};font-weight:bold;opacity:0.8;border-bottom:1px solid rgba(128,128,128,0.5)"
_TABLE = "border-collapse:collapse;border:none;margin:0;width:auto;font-size:12px"
_MONO = "font-family:var(--jp-code-font-family, monospace)"
# An HTML body is shown in an iframe with an empty sandbox (no scripts, no forms, no plugins,
# a unique origin) and this policy, so it cannot fetch anything either — no tracking pixels.
_NO_FETCH = (
    '<meta http-equiv="Content-Security-Policy" '
    "content=\"default-src 'none'; img-src data:; style-src 'unsafe-inline'\">"
)


# -- the parts of one message, as HTML --------------------------------------------------------


def _time(message: CapturedMessage) -> str:
    return message.received.astimezone().strftime("%H:%M:%S")


def _table(header: list[str], rows: list[list[str]], *, empty: str) -> str:
    if not rows:
        return f'<div style="opacity:0.7;font-size:12px">{escape(empty)}</div>'
    head = "".join(f'<th style="{_TH}">{escape(cell)}</th>' for cell in header)
    body = "".join(
        "<tr>" + "".join(f'<td style="{_TD}">{cell}</td>' for cell in row) + "</tr>" for row in rows
    )
    return f'<table style="{_TABLE}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _pre(text: str) -> str:
    note = ""
    if len(text) > _TEXT_LIMIT:
        note = f"\n… ({len(text):,} characters; the first {_TEXT_LIMIT:,} are shown)"
        text = text[:_TEXT_LIMIT]
    return (
        f'<pre style="{_MONO};font-size:12px;white-space:pre-wrap;word-break:break-word;'
        f'margin:0;line-height:1.35">{escape(text)}{escape(note)}</pre>'
    )


def envelope_html(message: CapturedMessage) -> str:
    """The SMTP envelope and the facts of delivery (not part of the message itself)."""
    tls = message.tls
    rows = [
        ("id", message.id),
        ("received", message.received.astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")),
        ("MAIL FROM", f"<{message.mail_from}>"),
        ("RCPT TO", ", ".join(f"<{rcpt}>" for rcpt in message.rcpt_tos)),
        ("size", f"{message.size:,} bytes"),
        ("client", f"{message.helo or '?'} from {format_address(message.peer)}"),
        ("TLS", "no (plain text)" if tls is None else str(getattr(tls, "headline", tls))),
        ("AUTH", message.auth_user or "no"),
    ]
    if message.flags:
        rows.append(("noticed", ", ".join(message.flags)))
    return _table(["envelope", ""], [[escape(name), escape(value)] for name, value in rows], empty="")


def headers_html(message: EmailMessage | Message) -> str:
    """Every header in order, names and values escaped (a header may hold any text)."""
    rows = []
    for name, raw in message.raw_items():
        try:
            value = str(message.policy.header_fetch_parse(name, raw))
        except Exception:  # noqa: BLE001 - a malformed header is shown as it came
            value = str(raw)
        rows.append([f'<span style="{_MONO}">{escape(name)}</span>', escape(value)])
    return _table(["header", "value"], rows, empty="(no headers)")


def _content(part: Message) -> str:
    text, guessed = mime.decode_text(part)
    note = "(no charset declared: read as UTF-8)\n" if guessed else ""
    return note + text


def text_html(message: Message) -> str:
    """The ``text/plain`` body, escaped, in a ``<pre>``."""
    part = mime.body(message, "plain")
    if part is None:
        return '<div style="opacity:0.7;font-size:12px">(no text/plain body)</div>'
    return _pre(_content(part).replace("\r\n", "\n"))


def html_preview(message: Message) -> str:
    """The ``text/html`` body inside a sandboxed ``<iframe>``: no scripts, no fetches."""
    part = mime.body(message, "html")
    if part is None:
        return '<div style="opacity:0.7;font-size:12px">(no text/html body)</div>'
    document = _NO_FETCH + mime.decode_text(part)[0]
    return (
        '<div style="font-size:12px;opacity:0.8;margin-bottom:4px">The HTML body, shown in a '
        "sandbox: scripts do not run and nothing is fetched from the network.</div>"
        f'<iframe sandbox="" referrerpolicy="no-referrer" srcdoc="{escape(document)}" '
        'style="width:100%;height:20em;border:1px solid rgba(128,128,128,0.5);'
        'background:white"></iframe>'
    )


def mime_tree_html(message: Message) -> str:
    """The MIME tree (:func:`smtplab.mime.mime_tree`) in a ``<pre>``."""
    return _pre(mime.mime_tree(message))


def attachments_html(message: Message) -> str:
    """The attachments as a table: name, type, disposition, size."""
    rows = [
        [
            escape(item.filename or "(no name)"),
            escape(item.content_type),
            escape(item.disposition or ""),
            f"{item.size:,} bytes",
        ]
        for item in mime.attachments(message)
    ]
    return _table(["name", "type", "disposition", "size"], rows, empty="(no attachments)")


# -- the widget ----------------------------------------------------------------------------


class MailboxView(LiveBox):
    """A live list of the messages in a :class:`~smtplab.mailbox.Mailbox`, and a message viewer.

    New messages appear in the list as the server captures them; the newest is shown unless you
    picked another. The details show the picked message's envelope, headers, text body, HTML
    body (in a sandboxed frame), MIME tree and attachments. Everything a message says is shown,
    never run: a header may hold ``<script>``.

    Args:
        mailbox: The mailbox to show, e.g. ``server.mailbox``.
        max_rows: List at most this many messages (the newest).

    Attributes:
        selector: The list of messages (time, from, to, subject, size); its value is the id of
            the message shown.
        details: Tabs with the parts of the selected message (:attr:`envelope`, :attr:`headers`,
            :attr:`text`, :attr:`html`, :attr:`mime`, :attr:`attachments`).
    """

    def __init__(self, mailbox: Mailbox, *, max_rows: int = DEFAULT_MAX_ROWS) -> None:
        if not isinstance(mailbox, Mailbox):
            hint = " (pass server.mailbox)" if hasattr(mailbox, "mailbox") else ""
            raise TypeError(f"MailboxView shows a Mailbox, not {type(mailbox).__name__}{hint}")
        if max_rows < 1:
            raise ValueError(f"max_rows must be at least 1, not {max_rows!r}")
        self.mailbox = mailbox
        self.max_rows = max_rows
        self.summary = ipywidgets.HTML()
        self.refresh_button = ipywidgets.Button(
            description="Refresh",
            icon="refresh",
            tooltip="Read the mailbox again (after mailbox.clear())",
            layout=ipywidgets.Layout(width="auto"),
        )
        self.selector = ipywidgets.Select(options=[], rows=6, layout=ipywidgets.Layout(width="100%"))
        self.selector.add_class("smtplab-mailbox-list")
        self.envelope = ipywidgets.HTML()
        self.headers = ipywidgets.HTML()
        self.text = ipywidgets.HTML()
        self.html = ipywidgets.HTML(layout=ipywidgets.Layout(width="100%"))
        self.mime = ipywidgets.HTML()
        self.attachments = ipywidgets.HTML()
        self.details = ipywidgets.Tab(
            children=[self.envelope, self.headers, self.text, self.html, self.mime, self.attachments],
            titles=("Envelope", "Headers", "Text", "HTML", "MIME tree", "Attachments"),
        )
        self._shown: list[CapturedMessage] = []
        self._follow_latest = True
        self._selecting = False
        super().__init__([ipywidgets.HBox([self.summary, self.refresh_button]), self.selector, self.details])
        self.add_class("smtplab-mailbox-view")
        self.selector.observe(self._on_selector_value, names="value")
        self.refresh_button.on_click(self._on_refresh_button_click)
        mailbox.observe(self._on_mailbox_message)
        self.refresh()

    @property
    def selected(self) -> CapturedMessage | None:
        """The message shown in the details, or ``None``."""
        return next((m for m in self._shown if m.id == self.selector.value), None)

    @property
    def listed(self) -> list[str]:
        """The lines of the list, as shown (newest last)."""
        return [label for label, _ in self.selector.options]

    def select(self, message: CapturedMessage | str) -> None:
        """Show ``message`` (or the message with that id) in the details."""
        self.selector.value = message if isinstance(message, str) else message.id

    # -- events -----------------------------------------------------------------------------

    def _on_mailbox_message(self, message: CapturedMessage) -> None:  # dispatcher thread
        self.request_refresh()

    @reports_errors
    def _on_refresh_button_click(self, button: ipywidgets.Button) -> None:
        self.refresh()

    @reports_errors
    def _on_selector_value(self, change: dict[str, Any]) -> None:
        with self._live_lock:
            if self._selecting:
                return
            latest = self._shown[-1].id if self._shown else None
            self._follow_latest = change["new"] is None or change["new"] == latest
            self._show_selected()

    # -- drawing ----------------------------------------------------------------------------

    def _refresh(self) -> None:
        messages = self.mailbox[-self.max_rows :]
        changed = [m.id for m in messages] != [m.id for m in self._shown]
        self._shown = messages
        total = self.mailbox.received
        count = len(self.mailbox)
        parts = [f"<b>{count} message{'s' if count != 1 else ''}</b>"]
        parts.append(f"{self.mailbox.nbytes:,} bytes")
        if total != count:
            parts.append(f"{total} received in all")
        if len(messages) < count:
            parts.append(f"listing the newest {len(messages)}")
        if not messages:
            parts.append("no messages yet: send one to this server")
        self.summary.value = f'<span style="font-size:12px">{" · ".join(parts)}</span>'
        if changed:
            self._update_selector()

    def _label(self, message: CapturedMessage) -> str:
        rcpts = ", ".join(message.rcpt_tos)
        subject = message.subject or "(no subject)"
        return f"{_time(message)}  {message.mail_from or '<>'} → {rcpts}  ·  {subject}  ·  {message.size:,} B"

    def _update_selector(self) -> None:
        previous = self.selector.value
        ids = [m.id for m in self._shown]
        if self._follow_latest or previous not in ids:
            wanted = ids[-1] if ids else None
        else:
            wanted = previous
        self._selecting = True
        try:
            # Setting options makes the Select pick its first one: put the wanted one back.
            self.selector.options = [(self._label(m), m.id) for m in self._shown]
            self.selector.value = wanted
        finally:
            self._selecting = False
        if wanted != previous or not ids:
            self._show_selected()

    def _show_selected(self) -> None:
        message = self.selected
        if message is None:
            for part in (self.envelope, self.headers, self.text, self.html, self.mime, self.attachments):
                part.value = '<div style="opacity:0.7;font-size:12px">(no message selected)</div>'
            return
        parsed = message.message
        self.envelope.value = envelope_html(message)
        self.headers.value = headers_html(parsed)
        self.text.value = text_html(parsed)
        self.html.value = html_preview(parsed)
        self.mime.value = mime_tree_html(parsed)
        self.attachments.value = attachments_html(parsed)

    def _unobserve_models(self) -> None:
        self.mailbox.unobserve(self._on_mailbox_message)
