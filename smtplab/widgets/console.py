"""``CommandConsole``: talk SMTP by hand, one command at a time, and see where the session stands."""

from __future__ import annotations

import asyncio
import base64
import binascii
import concurrent.futures
import functools
import threading
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import ipywidgets

from smtplab import aio, protocol, render
from smtplab.client import Client, Reply, SyncClient
from smtplab.protocol import State
from smtplab.server import LabServer
from smtplab.transcript import MASK
from smtplab.widgets._live import LiveBox, escape, reports_errors
from smtplab.widgets.transcript_view import TranscriptView

__all__ = ["CommandConsole", "Step"]

#: Chunks of raw bytes the wire view keeps (the newest).
WIRE_KEPT = 400
#: Earlier steps listed under the latest one (the newest).
EARLIER_SHOWN = 50

_END = "."  # the line that ends message content (RFC 5321 §4.1.1.4)
Action = Callable[[], Coroutine[Any, Any, "Step"]]  # made when its turn comes
_VERDICTS = {  # the first digit of a reply, in words (RFC 5321 §4.2.1)
    2: "Done",
    3: "Go on",
    4: "Not now",
    5: "Refused",
}
_VERDICT_COLOURS = {
    2: "rgba(52, 168, 83, 0.15)",
    3: "rgba(66, 133, 244, 0.15)",
    4: "rgba(234, 134, 0, 0.18)",
    5: "rgba(217, 48, 37, 0.15)",
}
# One button per command, in the order a session uses them (the end of a message after DATA);
# each is shown only when it is valid.
_AFTER_DATA = protocol.COMMAND_ORDER.index("DATA") + 1
_BUTTONS = (*protocol.COMMAND_ORDER[:_AFTER_DATA], _END, *protocol.COMMAND_ORDER[_AFTER_DATA:])
# Commands that are extensions (STARTTLS, AUTH, HELP): offered only if the EHLO reply lists them.
_OFFERED_ONLY = frozenset(protocol.COMMANDS) & frozenset(protocol.EXTENSIONS)


@dataclass(frozen=True)
class Step:
    """One thing typed or clicked in the console, and what came of it.

    Attributes:
        kind: ``"connect"``, ``"command"``, ``"answer"`` (to a 334 challenge), ``"data"`` (a
            line of message content) or ``"end"`` (the ``.`` that ends it).
        sent: What was sent, as typed (an answer to a challenge is masked).
        reply: The server's reply (``None`` for a line of message content, or when none came).
        prediction: What the state machine (or the EHLO reply) said before it was sent, if it
            expected a refusal; ``None`` if the command made sense.
        before: Where the session stood before.
        after: Where it stood after the reply.
        wire: For a line of message content, the bytes that went on the wire (dot-stuffed).
        error: The exception that ended it, if one did.
        note: Why nothing was sent (not connected, an empty line), if so.
    """

    kind: str
    sent: str
    reply: Reply | None
    prediction: str | None
    before: State
    after: State
    wire: bytes = b""
    error: BaseException | None = None
    note: str | None = None


class CommandConsole(LiveBox):
    """Talk SMTP by hand: type commands (or click the ones valid now), read each reply explained.

    Built on :class:`smtplab.Client`: every command goes through :meth:`Client.raw` (``STARTTLS``
    through :meth:`Client.starttls`, ``QUIT`` through :meth:`Client.quit`), message content line by
    line through :meth:`Client.data_line` and :meth:`Client.end_data`. Before each command the
    client's :class:`~smtplab.protocol.SessionState` says whether it makes sense now; when it does
    not, the console shows that explanation beside the refusal (a ``503``, say). After each reply
    the state machine is redrawn with the current state highlighted, in words and colour.

    After ``DATA`` is answered ``354``, each line typed is a line of the message: a line starting
    with "." is sent with one more (dot-stuffing, shown as it happens), and a line holding only
    "." ends the message. "Show raw bytes" shows exactly what crossed the wire, both ways, with
    every CR LF visible.

    Inside Jupyter the commands run on the kernel's event loop (the page stays responsive);
    without one (a script, pytest) each returns when its reply is in. Given a
    :class:`~smtplab.client.SyncClient`, they run on its loop.

    Args:
        server_or_client: A :class:`~smtplab.server.LabServer` (the console makes its own
            :class:`~smtplab.client.Client`), or a ``Client`` / ``SyncClient`` to drive.
        sender: The address the MAIL button sends.
        recipient: The address the RCPT (and VRFY) button sends.
        connect: Connect at once, so the greeting is the first thing shown.
        show_wire: Start with the raw bytes shown.

    Attributes:
        client: The :class:`~smtplab.client.Client` it drives.
        command: The command line: type a command (or, after 354, a line of the message).
        send_button: Sends what the command line holds (so does Enter).
        buttons: A button per command, by verb (``"."`` ends a message); only those valid
            now are shown, and a click sends the command.
        connect_button: Connects (again, after QUIT or a 421).
        wire_toggle: Shows or hides :attr:`wire_view`.
        diagram: The state machine, where the session stands highlighted.
        reply_view: The latest step: what was sent, the reply and its meaning, and for a
            refusal the state machine's explanation.
        data_view: The lines of the message being typed, as typed and as sent.
        wire_view: The raw bytes, both ways.
        transcript_view: The whole dialogue (:class:`TranscriptView` of ``client.transcript``).
        steps: Every :class:`Step`, oldest first.
        last_future: A :class:`concurrent.futures.Future` of the latest action's :class:`Step`.
        idle: A :class:`threading.Event`, set when no action is under way.
    """

    def __init__(
        self,
        server_or_client: LabServer | Client | SyncClient,
        *,
        sender: str = "alice@example.test",
        recipient: str = "bob@example.test",
        connect: bool = True,
        show_wire: bool = False,
    ) -> None:
        self._sync = isinstance(server_or_client, SyncClient)
        if isinstance(server_or_client, SyncClient):
            client = server_or_client.client
        elif isinstance(server_or_client, Client):
            client = server_or_client
        elif isinstance(server_or_client, LabServer):
            client = Client(server_or_client)
        else:
            raise TypeError(
                f"CommandConsole talks to a LabServer, a Client or a SyncClient, not {type(server_or_client).__name__}"
            )
        self.client = client
        self.sender, self.recipient = sender, recipient
        self.command = ipywidgets.Text(
            placeholder="type a command, e.g. EHLO me, then Enter", layout=ipywidgets.Layout(width="100%")
        )
        self.command.add_class("smtplab-console-command")
        # What the kernel holds as the command line, said back: Send sends exactly this.
        self.next_line = ipywidgets.HTML()
        self.next_line.add_class("smtplab-console-next")
        self.send_button = ipywidgets.Button(description="Send", icon="paper-plane", button_style="primary")
        self.send_button.add_class("smtplab-console-send")
        self.connect_button = ipywidgets.Button(
            description="Connect", icon="plug", layout=ipywidgets.Layout(width="auto", flex="0 0 auto")
        )
        self.wire_toggle = ipywidgets.ToggleButton(
            value=show_wire,
            description="Show raw bytes",
            icon="eye",
            tooltip="The exact bytes both ways",
            layout=ipywidgets.Layout(width="auto", flex="0 0 auto"),
        )
        self.wire_toggle.add_class("smtplab-console-wire-toggle")
        self.buttons: dict[str, ipywidgets.Button] = {}
        for verb in _BUTTONS:
            label = "end message (.)" if verb == _END else verb
            button = ipywidgets.Button(description=label, layout=ipywidgets.Layout(width="auto"))
            button.tooltip = _purpose(verb)
            button.on_click(self._on_verb_button_click)
            button.add_class("smtplab-console-verb")
            self.buttons[verb] = button
        self._button_verbs = {id(button): verb for verb, button in self.buttons.items()}
        self.status = ipywidgets.HTML(layout=ipywidgets.Layout(flex="1 1 auto"))
        self.diagram = ipywidgets.HTML()
        self.diagram.add_class("smtplab-console-diagram")
        self.reply_view = ipywidgets.HTML()
        self.reply_view.add_class("smtplab-console-reply")
        self.data_view = ipywidgets.HTML()
        self.data_view.add_class("smtplab-console-data")
        self.wire_view = ipywidgets.HTML()
        self.wire_view.add_class("smtplab-console-wire")
        self.transcript_view = TranscriptView(client.transcript, height="14em")
        self.steps: list[Step] = []
        self.last_future: concurrent.futures.Future[Step] | None = None
        self.idle = threading.Event()
        self.idle.set()
        self._pending = 0
        self._lock: asyncio.Lock | None = None
        self._wire: deque[tuple[str, bytes, bool]] = deque(maxlen=WIRE_KEPT)
        self._message: list[tuple[str, bytes]] = []  # the message being typed: (typed, sent)
        self._tasks: set[asyncio.Task[Any]] = set()
        super().__init__(
            [
                ipywidgets.HBox(
                    [self.status, self.connect_button, self.wire_toggle],
                    layout={"align_items": "center", "justify_content": "space-between"},
                ),
                self.diagram,
                ipywidgets.HBox([self.command, self.send_button], layout={"align_items": "center"}),
                self.next_line,
                ipywidgets.HBox(list(self.buttons.values()), layout={"flex_flow": "row wrap"}),
                self.reply_view,
                self.data_view,
                self.wire_view,
                self.transcript_view,
            ]
        )
        self.add_class("smtplab-console")
        self.send_button.on_click(self._on_send_button_click)
        self.connect_button.on_click(self._on_connect_button_click)
        self.wire_toggle.observe(self._on_wire_toggle_value, names="value")
        self.command.on_msg(self._on_command_msg)  # Enter in the field ("submit")
        self.command.observe(self._on_command_value, names="value")
        client.observe_wire(self._on_client_wire)
        if client.server is not None:
            client.server.observe(self._on_server_change)  # says so when the lab server stops
        if client.connected and client.greeting is not None:  # a client connected already
            self.steps.append(
                Step("connect", "(connect)", client.greeting, None, State.CONNECTED, client.state.state)
            )
        self.refresh()
        if connect and not client.connected:
            self.connect()

    # -- what the learner does ------------------------------------------------------------

    def submit(self, line: str | None = None) -> concurrent.futures.Future[Step]:
        """Send ``line`` (by default what the command line holds, which is then cleared).

        A command, or after ``354`` a line of the message ("." alone ends it). In a kernel the
        result comes later: ``await asyncio.wrap_future(console.submit("NOOP"))``.
        """
        if line is None:
            line, self.command.value = self.command.value, ""
        return self._perform(lambda: self._send_line(line))

    def connect(self) -> concurrent.futures.Future[Step]:
        """Connect (again): the server's greeting is the first reply."""
        return self._perform(self._connect)

    # -- running actions in order ------------------------------------------------------------

    def _perform(self, action: Action) -> concurrent.futures.Future[Step]:
        """Run ``action`` after those before it: on the kernel's loop, or here and now without one."""
        future: concurrent.futures.Future[Step] = concurrent.futures.Future()
        self.last_future = future
        self.idle.clear()
        self._pending += 1
        self.hide_error()
        loop = self._kernel_loop
        if self._sync or loop is None or loop.is_closed():
            # No kernel loop here (or a SyncClient's own loop): run it there, wait, then draw.
            try:
                step = aio.run(self._in_order(action))
            except BaseException as error:  # noqa: BLE001 - reported in the widget and on the future
                self._done(future, None, error)
            else:
                self._done(future, step, None)
            return future
        task = loop.create_task(self._in_kernel(action, future))
        self._tasks.add(task)
        task.add_done_callback(functools.partial(self._task_done, future))
        return future

    async def _in_order(self, action: Action) -> Step:
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:  # one command at a time, in the order typed (FIFO)
            return await action()  # made only now: one cancelled while waiting never existed

    async def _in_kernel(self, action: Action, future: concurrent.futures.Future[Step]) -> None:
        try:
            step = await self._in_order(action)
        except Exception as error:  # noqa: BLE001 - never lost in a task
            self._done(future, None, error)
        else:
            self._done(future, step, None)

    def _task_done(self, future: concurrent.futures.Future[Step], task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if task.cancelled() and not future.done():  # the kernel is shutting down
            future.cancel()
            self._pending -= 1
            if self._pending == 0:
                self.idle.set()

    def _done(
        self, future: concurrent.futures.Future[Step], step: Step | None, error: BaseException | None
    ) -> None:
        if step is not None:
            self.steps.append(step)
            if step.error is not None:
                self.report_error(step.error)
        elif error is not None:
            self.report_error(error)
        self.refresh()
        self._pending -= 1
        if self._pending == 0:
            self.idle.set()
        if step is not None:
            future.set_result(step)
        else:
            future.set_exception(error or RuntimeError("no step"))

    # -- the actions (on the client's loop) -----------------------------------------------------

    async def _connect(self) -> Step:
        before = self.client.state.state
        if self.client.connected:
            await self.client.close()
        try:
            reply = await self.client.connect()
        except Exception as error:  # noqa: BLE001 - shown in the widget
            return Step("connect", "(connect)", None, None, before, self.client.state.state, error=error)
        self._message.clear()
        return Step("connect", "(connect)", reply, None, State.CONNECTED, self.client.state.state)

    async def _send_line(self, line: str) -> Step:
        client = self.client
        before = client.state.state
        if not client.connected:
            note = "Not connected: press Connect (the server greets first, then you talk)."
            return Step("command", line, None, None, before, before, note=note)
        try:
            if before is State.DATA:
                return await self._send_content(line)
            if client.last_reply.code == 334:  # the reply before was a challenge
                reply = await client.raw(line)
                return Step("answer", MASK, reply, None, before, client.state.state)
            if not line.strip():
                note = "Type a command first, e.g. EHLO me (or click one of the buttons below)."
                return Step("command", line, None, None, before, before, note=note)
            prediction = self.predict(line)
            verb = line.split()[0].upper()
            if verb == "STARTTLS" and prediction is None:
                reply = await client.starttls()
            elif verb == "QUIT":
                reply = await client.quit()
            else:
                reply = await client.raw(line)
            if reply.code == 354:
                self._message.clear()
            return Step("command", line, reply, prediction, before, client.state.state)
        except Exception as error:  # noqa: BLE001 - shown in the widget, the console goes on
            return Step("command", line, None, None, before, client.state.state, error=error)

    async def _send_content(self, line: str) -> Step:
        if line == _END:
            reply = await self.client.end_data()
            self._message.append((line, b".\r\n"))
            return Step("end", line, reply, None, State.DATA, self.client.state.state, wire=b".\r\n")
        sent = await self.client.data_line(line)
        self._message.append((line, sent))
        return Step("data", line, None, None, State.DATA, State.DATA, wire=sent)

    def predict(self, line: str) -> str | None:
        """What the session state (and the EHLO reply) say about sending ``line`` now, or ``None``.

        The state machine's explanation (:meth:`SessionState.check`) when the command makes no
        sense now; otherwise, after EHLO, a command or MAIL FROM parameter of an extension the
        server did not offer (what a server without it answers, from
        :data:`smtplab.protocol.EXTENSIONS`).
        """
        state = self.client.state
        problem = state.check(line)
        if problem is not None or not state.esmtp:
            return problem
        words = line.split()
        verb = words[0].upper()
        offered = {name.upper() for name in self.client.extensions}
        wanted = [verb] if verb in _OFFERED_ONLY else []
        if verb == "MAIL":
            wanted += [
                protocol.MAIL_PARAMETERS[w.split("=")[0].upper()]
                for w in words[2:]
                if w.split("=")[0].upper() in protocol.MAIL_PARAMETERS
            ]
        for name in wanted:
            if name not in offered:
                extension = protocol.EXTENSIONS[name]
                return (
                    f"The server's EHLO reply did not offer {name} ({extension.rfc}). A server without "
                    f"it: {extension.without}"
                )
        return None

    # -- what it shows --------------------------------------------------------------------

    def valid_now(self) -> list[str]:
        """The commands the buttons offer now: valid in this state and, for extensions, offered."""
        client = self.client
        if not client.connected or (client.server is not None and not client.server.running):
            return []
        if client.last_reply.code == 334:  # an AUTH challenge waits for its answer
            return []
        allowed = client.state.allowed()
        if client.state.esmtp:
            offered = {name.upper() for name in client.extensions}
            allowed = [verb for verb in allowed if verb not in _OFFERED_ONLY or verb in offered]
        return allowed

    def _refresh(self) -> None:
        client = self.client
        state = client.state.state
        valid = self.valid_now()
        for verb, button in self.buttons.items():
            button.layout.display = None if verb in valid else "none"
        self.diagram.value = render.state_html(
            state if client.connected or state is State.CLOSED else None, valid
        )
        self.connect_button.description = "Connect again" if client.transcript.lines else "Connect"
        stopped = client.server is not None and not client.server.running
        self.connect_button.disabled = client.connected and state is not State.CLOSED and not stopped
        in_data = state is State.DATA and client.connected
        self.command.placeholder = (
            "a line of the message (a line holding only . ends it), then Enter"
            if in_data
            else "the server asks: type your answer (base64), then Enter"
            if client.last_reply.code == 334
            else "type a command, e.g. EHLO me, then Enter"
        )
        self.status.value = self._status_html()
        self.reply_view.value = self._steps_html()
        self.data_view.value = self._message_html()
        self.data_view.layout.display = None if self._message or in_data else "none"
        self.wire_view.layout.display = None if self.wire_toggle.value else "none"
        if self.wire_toggle.value:
            self.wire_view.value = self._wire_html()

    def _status_html(self) -> str:
        client = self.client
        server = client.server
        if server is not None and not server.running:
            text = f"not connected: the lab server '{escape(server.name)}' has stopped"
        elif not client.connected:
            text = "not connected"
        else:
            how = "inside TLS" if client.tls_active else "plain text"
            text = f"connected to {escape(client.where)} ({how})"
            if client.state.esmtp:
                offered = (
                    ", ".join(f"{k.upper()} {v}".strip() for k, v in client.extensions.items()) or "nothing"
                )
                text += f" · the EHLO reply offered: {escape(offered)}"
        return f'<span style="font-size:12px">{text}</span>'

    def _steps_html(self) -> str:
        """The latest step in full, then the earlier ones, newest first, a line each."""
        if not self.steps:
            return ""
        earlier = [self._step_line(step) for step in reversed(self.steps[-EARLIER_SHOWN - 1 : -1])]
        if not earlier:
            return self._step_html(self.steps[-1])
        items = "".join(f'<li style="margin:0">{line}</li>' for line in earlier)
        return (
            f"{self._step_html(self.steps[-1])}"
            '<details style="font-size:12px"><summary>Earlier, newest first</summary>'
            f'<ul style="margin:2px 0;padding-left:1.5em">{items}</ul></details>'
        )

    @staticmethod
    def _step_line(step: Step) -> str:
        """One step in a line: what was sent, the reply's last line in words, why it was refused."""
        sent = "connected" if step.kind == "connect" else f"<code>{escape(step.sent)}</code>"
        if step.reply is not None:
            first = step.reply.code // 100
            said = f" \u2192 {escape(step.reply.lines[-1])} ({escape(_VERDICTS.get(first, '?'))})"
        elif step.kind == "data":
            said = " \u2192 a line of the message, no reply"
        else:
            said = f" \u2192 {escape(step.note or (type(step.error).__name__ if step.error else 'no reply'))}"
        why = ""
        if step.prediction is not None and step.reply is not None and step.reply.code >= 400:
            why = f' <span style="opacity:0.8">Why: {escape(step.prediction)}</span>'
        return f"{sent}{said}{why}"

    def _step_html(self, step: Step) -> str:
        said = "You typed" if step.note is not None else "You sent"
        parts = [f"<b>{said}</b> <code>{escape(step.sent)}</code>"]
        if step.kind == "connect":
            parts = ["<b>You connected</b>"]
        if step.kind == "data":
            parts.append(
                "No reply: the server takes each line as part of the message, until a line holding only "
                "<code>.</code>"
            )
        reply = step.reply
        if reply is not None:
            first = reply.code // 100
            verdict = f"{_VERDICTS.get(first, '?')} ({first}yz)"
            lines = "\n".join(escape(line) for line in reply.lines)
            parts.append(
                f'<b>The server answered</b> <span style="background-color:{_VERDICT_COLOURS.get(first, "none")};'
                f'padding:0 4px;border-radius:3px"><b>{escape(verdict)}</b></span>'
                '<div style="font-family:var(--jp-code-font-family, monospace);margin:2px 0 2px 1em;'
                f'line-height:1.35;white-space:pre-wrap">{lines}</div>'
            )
            parts.append(f"<b>Meaning</b>: {escape(reply.meaning)}")
            if reply.code == 334:
                parts.append(f"<b>The server asks</b> (base64 decoded): {escape(_decoded(reply.message))}")
        if step.prediction is not None:
            label = (
                "Why" if reply is not None and reply.code >= 400 else "Before sending, the state machine said"
            )
            parts.append(f"<b>{label}</b>: {escape(step.prediction)}")
        if step.before is not step.after:
            parts.append(
                f"<b>State</b>: {step.before.value} \u2192 {step.after.value}: {escape(step.after.meaning)}"
            )
        elif reply is not None or step.kind == "data":
            parts.append(f"<b>State</b>: still {step.after.value}")
        if step.after is State.DATA and step.kind == "command":
            parts.append(
                "Now type the message, one line at a time: headers (<code>Subject: …</code>), an empty "
                "line, the body; then a line holding only <code>.</code>"
            )
        if step.note is not None:
            parts.append(f"<b>Nothing sent</b>: {escape(step.note)}")
        if step.error is not None:
            parts.append(f"<b>No reply</b>: {escape(type(step.error).__name__)}: {escape(step.error)}")
        body = "".join(f'<div style="margin:1px 0">{part}</div>' for part in parts)
        return f'<div style="font-size:13px;padding:4px 0">{body}</div>'

    def _message_html(self) -> str:
        if not self._message:
            return '<div style="font-size:12px;opacity:0.8">The message: no line yet.</div>'
        rows = []
        for typed, sent in self._message:
            if typed == _END:
                note = "a line holding only . : the end of the message"
            elif typed.startswith("."):
                note = "dot-stuffed: a line starting with . gets one more on the wire; the server removes it"
            else:
                note = ""
            shown = escape(typed) if typed else '<span style="opacity:0.6">(empty line)</span>'
            rows.append(
                f'<tr><td style="{render.TD};white-space:pre">{shown}</td>'
                f'<td style="{render.TD};white-space:pre">{render.wire_text(sent)}</td>'
                f'<td style="{render.TD};font-family:var(--jp-ui-font-family, sans-serif);opacity:0.8">'
                f"{escape(note)}</td></tr>"
            )
        head = (
            f'<tr><th style="{render.TD}">you typed</th><th style="{render.TD}">on the wire</th>'
            f'<th style="{render.TD}"></th></tr>'
        )
        return (
            '<div style="font-size:12px"><b>The message</b>'
            f'<table style="{render.TABLE}">{head}{"".join(rows)}</table></div>'
        )

    def _wire_html(self) -> str:
        chunks = list(self._wire)
        rows = [row for sender, data, tls in chunks for row in render.wire_rows(sender, data, tls=tls)]
        body = "".join(rows) or f'<tr><td style="{render.TD};opacity:0.7">(no bytes yet)</td></tr>'
        return (
            f'<div style="font-size:12px"><b>Raw bytes</b> · {escape(render.WIRE_LEGEND)}'
            '<div style="max-height:16em;overflow:auto;display:flex;flex-direction:column-reverse">'
            f'<div><table style="{render.TABLE}">{body}</table></div></div></div>'
        )

    # -- events ---------------------------------------------------------------------------

    def _on_command_value(self, change: dict[str, Any]) -> None:
        # Not @reports_errors: typing is no new action, so the last one's error stays in view.
        line = change["new"]
        self.next_line.value = (
            f'<span style="font-size:12px;opacity:0.75">Send or Enter sends: <code>{escape(line)}</code></span>'
            if line.strip()
            else ""
        )

    @reports_errors
    def _on_send_button_click(self, button: ipywidgets.Button) -> None:
        self.submit()

    @reports_errors
    def _on_command_msg(self, widget: Any, content: dict[str, Any], buffers: Any) -> None:
        if content.get("event") == "submit":
            self.submit()

    @reports_errors
    def _on_verb_button_click(self, button: ipywidgets.Button) -> None:
        self.submit(self._template(self._button_verbs[id(button)]))

    @reports_errors
    def _on_connect_button_click(self, button: ipywidgets.Button) -> None:
        self.connect()

    @reports_errors
    def _on_wire_toggle_value(self, change: dict[str, Any]) -> None:
        self.wire_toggle.description = "Hide raw bytes" if change["new"] else "Show raw bytes"
        self.refresh()

    def _on_client_wire(self, sender: str, data: bytes, tls: bool) -> None:  # the client's thread
        self._wire.append((sender, data, tls))
        if self.wire_toggle.value:
            self.request_refresh()

    def _on_server_change(self, server: LabServer) -> None:  # the thread that started or stopped it
        self.request_refresh()

    def _template(self, verb: str) -> str:
        """What a button sends."""
        return {
            "EHLO": f"EHLO {self.client.name}",
            "HELO": f"HELO {self.client.name}",
            "MAIL": f"MAIL FROM:<{self.sender}>",
            "RCPT": f"RCPT TO:<{self.recipient}>",
            "VRFY": f"VRFY {self.recipient}",
            "EXPN": "EXPN team",
            "AUTH": "AUTH LOGIN",
        }.get(verb, verb)

    # -- closing --------------------------------------------------------------------------

    def _unobserve_models(self) -> None:
        self.client.unobserve_wire(self._on_client_wire)
        if self.client.server is not None:
            self.client.server.unobserve(self._on_server_change)
        if not self.client.connected:
            return
        # Drop the connection (as a crashed client would), on the loop that owns it.
        loop = self._kernel_loop
        if self._sync or loop is None or loop.is_closed():
            aio.run(self.client.close())
        else:
            task = loop.create_task(self.client.close())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)


def _purpose(verb: str) -> str:
    if verb == _END:
        return "End the message: a line holding only '.' (RFC 5321 §4.1.1.4)"
    command = protocol.COMMANDS[verb]
    return f"{command.syntax}: {command.purpose} ({command.rfc} {command.section})"


def _decoded(challenge: str) -> str:
    try:
        return (
            render.display(base64.b64decode(challenge, validate=True).decode("utf-8", "replace")) or "(empty)"
        )
    except (binascii.Error, ValueError):
        return "(not base64)"
