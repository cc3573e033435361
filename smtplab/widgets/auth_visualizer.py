"""``AuthVisualizer``: one AUTH exchange, step by step — what crossed the wire and what it says."""

from __future__ import annotations

import concurrent.futures
import threading
from typing import Any

import ipywidgets

from smtplab import render
from smtplab.auth import MECHANISMS, AuthExchange, AuthStep, auth_exchanges
from smtplab.client import Client, Reply
from smtplab.server import LabServer
from smtplab.transcript import Line, Transcript
from smtplab.widgets._live import LiveBox, escape, reports_errors

__all__ = ["AuthVisualizer"]

_WHO = {"client": "client sends", "server": "server sends", "computed": "computed, not sent"}
_BACKGROUND = {
    "client": "rgba(66, 133, 244, 0.13)",
    "server": "rgba(52, 168, 83, 0.13)",
    "computed": "rgba(251, 188, 4, 0.16)",
}
# Column titles and widths: the base64 columns get room, the explanation the rest.
_COLUMNS = (
    ("#", "2em"),
    ("who", "11em"),
    ("on the wire", "26%"),
    ("decoded", "24%"),
    ("what it means", "auto"),
)
_MONO = "font-family:var(--jp-code-font-family, monospace)"
_NOTE = '<div style="font-size:12px;opacity:0.75">{}</div>'


class AuthVisualizer(LiveBox):
    """An AUTH exchange told step by step: each line on the wire, what its base64 says, why.

    Fed from a real exchange: a transcript that recorded one (``client.transcript``, a lab
    server's ``server.transcripts[-1]``, a proxy connection's transcript), or — given a lab
    server — the exchange its **Log in** button has just had with it. PLAIN is decoded into
    ``\\0user\\0password``, LOGIN's ``334`` prompts and answers one by one, CRAM-MD5's challenge,
    the HMAC-MD5 worked out from it and the password, and the response. The password stays
    ``********`` until "reveal secrets" is ticked.

    Args:
        transcript: The transcript to read the exchange from; ``None`` for an empty view.
        server: A lab server for the **Log in** button to log in to (its TLS mode is used).
        user: The user name **Log in** sends.
        password: The password **Log in** sends (a password field, masked on screen); for
            CRAM-MD5 the HMAC-MD5 step is computed with it.
        reveal_secrets: Start with secrets shown — for a lesson about them, on purpose.
        step: How many steps to show at first (``None``: all); **Next** shows one more.

    Attributes:
        exchanges: Every AUTH exchange in the transcript (:class:`~smtplab.auth.AuthExchange`).
        choice: Which exchange is shown, when the transcript holds several.
        reveal: The "reveal secrets" box.
        password: The password field.
        back_button, next_button, all_button: Step through the exchange.
        table: The steps shown.
        mechanism: With a server: the mechanism **Log in** asks for.
        login_button: With a server: log in, and show that exchange.
        client: The :class:`~smtplab.client.Client` of the latest **Log in**.
        last_reply: The final reply of the latest **Log in**, once it is over.
        last_future: A :class:`concurrent.futures.Future` of that reply.
        logged_in: A :class:`threading.Event`, set whenever a **Log in** is over.

    Example:
        >>> AuthVisualizer(client.transcript, reveal_secrets=True)  # doctest: +SKIP
        >>> AuthVisualizer(server=server, password="wonderland")  # doctest: +SKIP
    """

    def __init__(
        self,
        transcript: Transcript | None = None,
        *,
        server: LabServer | None = None,
        user: str = "alice",
        password: str = "",
        reveal_secrets: bool = False,
        step: int | None = None,
    ) -> None:
        if server is not None and not isinstance(server, LabServer):
            raise TypeError(f"AuthVisualizer logs in to a LabServer, not {type(server).__name__}")
        if step is not None and step < 1:
            raise ValueError(f"step must be 1 or more (or None for every step), not {step!r}")
        self.server = server
        self.user = user
        self.first_step = step
        self.exchanges: list[AuthExchange] = []
        self.client: Client | None = None
        self.last_reply: Reply | None = None
        self.last_future: concurrent.futures.Future[Reply] | None = None
        self.logged_in = threading.Event()
        self._transcript: Transcript | None = None
        self._shown: int | None = step
        self._taken = -1  # transcript lines read into self.exchanges
        self.headline = ipywidgets.HTML()
        self.choice = ipywidgets.Dropdown(options=[], description="exchange", layout={"width": "auto"})
        self.reveal = ipywidgets.Checkbox(
            value=reveal_secrets, description="reveal secrets", indent=False, layout={"width": "auto"}
        )
        self.reveal.add_class("smtplab-auth-reveal")
        self.password = ipywidgets.Password(value=password, description="password", layout={"width": "16em"})
        self.password.add_class("smtplab-auth-password")
        self.back_button = ipywidgets.Button(
            description="Back", icon="step-backward", layout={"width": "auto"}
        )
        self.next_button = ipywidgets.Button(
            description="Next", icon="step-forward", layout={"width": "auto"}
        )
        self.all_button = ipywidgets.Button(description="All steps", icon="list", layout={"width": "auto"})
        self.position = ipywidgets.HTML()
        self.table = ipywidgets.HTML(layout={"width": "100%"})
        self.mechanism = ipywidgets.Dropdown(options=list(MECHANISMS), description="mechanism")
        self.mechanism.add_class("smtplab-auth-mechanism")
        self.login_button = ipywidgets.Button(
            description="Log in", icon="sign-in", button_style="primary", tooltip="AUTH with smtplab.Client"
        )
        login_row = ipywidgets.HBox(
            [self.mechanism, self.login_button], layout={"align_items": "center", "grid_gap": "8px"}
        )
        login_row.add_class("smtplab-auth-login")
        if server is None:
            login_row.layout.display = "none"
        controls = ipywidgets.HBox(
            [self.choice, self.password, self.reveal],
            layout={"align_items": "center", "grid_gap": "8px", "flex_flow": "row wrap"},
        )
        stepper = ipywidgets.HBox(
            [self.back_button, self.next_button, self.all_button, self.position],
            layout={"align_items": "center", "grid_gap": "8px"},
        )
        super().__init__([login_row, self.headline, controls, stepper, self.table])
        self.add_class("smtplab-auth-visualizer")
        if server is not None:
            self.add_class("smtplab-auth-live")
        self.choice.observe(self._on_choice_value, names="value")
        self.reveal.observe(self._on_reveal_value, names="value")
        self.password.observe(self._on_password_value, names="value")
        self.back_button.on_click(self._on_back_button_click)
        self.next_button.on_click(self._on_next_button_click)
        self.all_button.on_click(self._on_all_button_click)
        self.login_button.on_click(self._on_login_button_click)
        self.transcript = transcript

    # -- the model ------------------------------------------------------------------------------

    @property
    def transcript(self) -> Transcript | None:
        """The transcript read; assign another to switch (the old one is no longer observed)."""
        return self._transcript

    @transcript.setter
    def transcript(self, transcript: Transcript | None) -> None:
        if transcript is not None and not isinstance(transcript, Transcript):
            hint = " (pass client.transcript)" if hasattr(transcript, "transcript") else ""
            raise TypeError(f"AuthVisualizer reads a Transcript, not {type(transcript).__name__}{hint}")
        with self._live_lock:
            if self._transcript is not None:
                self._transcript.unobserve(self._on_transcript_line)
            self._transcript = transcript
            self._taken = -1
            if transcript is not None:
                transcript.observe(self._on_transcript_line)
        self.refresh()

    @property
    def exchange(self) -> AuthExchange | None:
        """The exchange shown (the newest, unless another was chosen)."""
        index = self.choice.value
        return self.exchanges[index] if index is not None and index < len(self.exchanges) else None

    @property
    def steps(self) -> list[AuthStep]:
        """Every step of the exchange shown, as the view tells them now (masked unless revealed)."""
        exchange = self.exchange
        if exchange is None:
            return []
        return exchange.steps(reveal_secrets=self.reveal.value, password=self.password.value or None)

    @property
    def shown(self) -> int:
        """How many steps are on screen."""
        total = len(self.steps)
        return total if self._shown is None else min(self._shown, total)

    # -- logging in -----------------------------------------------------------------------------

    def login(self) -> concurrent.futures.Future[Reply]:
        """What **Log in** does: EHLO and AUTH with the chosen mechanism, then show the exchange.

        The client uses the server's TLS mode (STARTTLS first for a ``tls="starttls"`` server). In a
        kernel the future completes later; without a running loop it is done on return.

        Raises:
            RuntimeError: The visualiser was made without a server.
        """
        if self.server is None:
            raise RuntimeError("Log in needs a lab server: AuthVisualizer(server=server, password=...)")
        self.logged_in.clear()
        self.last_reply = None
        self.login_button.disabled = True
        client = Client(self.server, tls=self.server.tls)
        self.client = client
        self._shown = self.first_step
        self.transcript = client.transcript
        mechanism = self.mechanism.value
        work = self._log_in(client, self.user, self.password.value, mechanism)
        self.last_future = self.run_task(work, self._logged_in)
        return self.last_future

    @staticmethod
    async def _log_in(client: Client, user: str, password: str, mechanism: str) -> Reply:
        async with client:
            await client.ehlo()
            return await client.login(user, password, mechanism=mechanism)

    def _logged_in(self, reply: Reply | None, error: BaseException | None) -> None:
        self.login_button.disabled = False
        self.last_reply = reply
        if isinstance(error, Exception):  # not a cancellation: the kernel is going away then
            self.report_error(error)
        self.refresh()
        self.logged_in.set()

    # -- events -----------------------------------------------------------------------------

    def _on_transcript_line(self, line: Line) -> None:  # any thread: only asks for a redraw
        self.request_refresh()

    @reports_errors
    def _on_login_button_click(self, button: ipywidgets.Button) -> None:
        self.login()

    @reports_errors
    def _on_choice_value(self, change: dict[str, Any]) -> None:
        self._shown = self.first_step
        self._draw()

    @reports_errors
    def _on_reveal_value(self, change: dict[str, Any]) -> None:
        self._draw()

    @reports_errors
    def _on_password_value(self, change: dict[str, Any]) -> None:
        self._draw()

    @reports_errors
    def _on_back_button_click(self, button: ipywidgets.Button) -> None:
        self._shown = max(1, self.shown - 1)
        self._draw()

    @reports_errors
    def _on_next_button_click(self, button: ipywidgets.Button) -> None:
        self._shown = self.shown + 1
        if self._shown >= len(self.steps):
            self._shown = None
        self._draw()

    @reports_errors
    def _on_all_button_click(self, button: ipywidgets.Button) -> None:
        self._shown = None
        self._draw()

    # -- drawing ----------------------------------------------------------------------------

    def _refresh(self) -> None:
        transcript = self._transcript
        count = len(transcript) if transcript is not None else 0
        if count != self._taken:
            self._taken = count
            self.exchanges = auth_exchanges(transcript) if transcript is not None else []
            options = [(f"{n}: {e.headline}", n - 1) for n, e in enumerate(self.exchanges, 1)]
            if [label for label, _ in options] != [label for label, _ in self.choice.options]:
                # A new exchange is shown at once; one that only grew keeps its place.
                grew = len(options) == len(self.choice.options) and self.choice.value is not None
                value = self.choice.value if grew else (len(options) - 1 if options else None)
                self.choice.unobserve(self._on_choice_value, names="value")
                try:
                    self.choice.options = options
                    self.choice.value = value
                finally:
                    self.choice.observe(self._on_choice_value, names="value")
            self.choice.layout.display = None if len(options) > 1 else "none"
        self._draw()

    def _draw(self) -> None:
        exchange = self.exchange
        steps = self.steps
        shown = self.shown
        self.back_button.disabled = shown <= 1
        self.next_button.disabled = shown >= len(steps)
        self.all_button.disabled = shown >= len(steps)
        if exchange is None:
            self.headline.value = _NOTE.format(escape(self._nothing_yet()))
            self.position.value = ""
            self.table.value = ""
            return
        self.headline.value = _headline(exchange, steps, self.reveal.value)
        self.position.value = f'<span style="font-size:12px">step {shown} of {len(steps)}</span>'
        rows = "".join(_row(step, n) for n, step in enumerate(steps[:shown], 1))
        waiting = ""
        if shown < len(steps):
            waiting = _NOTE.format(
                f"Next: {escape(_WHO[steps[shown].sender])}. What will it be? Predict, then press Next."
            )
        self.table.value = (
            f'<table class="smtplab-auth-steps" style="{render.TABLE};width:100%"><thead><tr>'
            + "".join(
                f'<th style="{render.TD};opacity:0.8;width:{width}">{title}</th>' for title, width in _COLUMNS
            )
            + f"</tr></thead><tbody>{rows}</tbody></table>{waiting}"
        )

    def _nothing_yet(self) -> str:
        if self._transcript is None:
            if self.server is not None:
                return "Choose a mechanism and press Log in: the exchange with the server appears here."
            return "No transcript yet: give the visualiser one that holds an AUTH exchange."
        if self.server is not None and not self.logged_in.is_set() and self.client is not None:
            return "Logging in…"
        return (
            "No AUTH exchange in this transcript. (A record that saw only TLS — a proxy after "
            "STARTTLS — cannot hold one.)"
        )

    def _unobserve_models(self) -> None:
        if self._transcript is not None:
            self._transcript.unobserve(self._on_transcript_line)


def _headline(exchange: AuthExchange, steps: list[AuthStep], revealed: bool) -> str:
    parts = [f"<b>{escape(exchange.headline)}</b>"]  # the headline says "inside TLS" in words
    if exchange.reason:
        parts.append(f"chosen: {escape(exchange.reason)}")
    hidden = sum(step.hidden for step in steps)
    if hidden and not revealed:
        parts.append(f"{render.plural(hidden, 'secret')} hidden: tick \u201creveal secrets\u201d to show")
    joined = " \u00b7 ".join(parts)
    return f'<div style="font-size:13px">{joined}</div>'


def _row(step: AuthStep, number: int) -> str:
    td = f"{render.TD};border-bottom:1px solid rgba(128,128,128,0.25)"
    lock = f" in {render.TLS_MARK}" if step.tls and step.sender != "computed" else ""
    wire = escape(step.wire) if step.wire else '<span style="opacity:0.6">(not sent)</span>'
    decoded = escape(step.decoded) if step.decoded else ""
    return (
        f'<tr class="smtplab-auth-step smtplab-{step.sender}" style="background-color:{_BACKGROUND[step.sender]}">'
        f'<td style="{td};opacity:0.7">{number}</td>'
        f'<td style="{td}">{escape(step.marker)} {escape(_WHO[step.sender])}{lock}</td>'
        f'<td style="{td};{_MONO};word-break:break-all">{wire}</td>'
        f'<td style="{td};{_MONO};word-break:break-all">{decoded}</td>'
        f'<td style="{td};font-family:var(--jp-ui-font-family, sans-serif);white-space:normal">'
        f"{escape(step.meaning)}</td></tr>"
    )
