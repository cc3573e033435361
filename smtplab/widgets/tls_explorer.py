"""``TLSExplorer``: choose a client mode, a server mode, a trust and a name, run it, read what happened."""

from __future__ import annotations

from typing import Any

import ipywidgets

from smtplab import render
from smtplab.tls import TLS_MODES, TLSMode
from smtplab.tls_explore import (
    BOUNDARY_HANDSHAKE_FAILED,
    BOUNDARY_TLS_STARTS,
    CLIENT_LABELS,
    CLIENT_MODES,
    NAME_LABELS,
    NAMES,
    SERVER_LABELS,
    TRUST_LABELS,
    TRUSTS,
    Attempt,
    ClientMode,
    Combination,
    TLSGrid,
)
from smtplab.widgets._live import LiveBox, escape, reports_errors
from smtplab.widgets.transcript_view import TranscriptView

__all__ = ["TLSExplorer"]

# Dropdowns cannot hold None as a value (it means "nothing selected"): "plain" stands for it.
_PLAIN = "plain"
# Border colours beside the words: green safe, amber readable or unchecked, red failed.
_COLOURS = {"safe": "rgb(52, 168, 83)", "exposed": "rgb(230, 160, 0)", "failed": "rgb(217, 48, 37)"}
_KEEP = object()  # choose(): leave this control as it is
_CELL = f"{render.TD};border:1px solid rgba(128,128,128,0.35);padding:3px 8px"


def _key(mode: ClientMode | TLSMode) -> str:
    return _PLAIN if mode is None else str(mode)


def _mode(key: str) -> Any:
    return None if key == _PLAIN else key


def _dropdown(description: str, labels: dict[str, str], value: str) -> ipywidgets.Dropdown:
    """A dropdown showing each label, holding its key."""
    return ipywidgets.Dropdown(
        options=[(label, key) for key, label in labels.items()],
        value=value,
        description=description,
        layout=ipywidgets.Layout(width="auto"),
        style={"description_width": "initial"},
    )


def _tone(attempt: Attempt) -> str:
    """``"safe"`` (checked TLS, or a client that stopped rather than go on in clear), ``"failed"``
    or ``"exposed"`` (readable, or encrypted to an unchecked peer)."""
    if attempt.verified or attempt.stopped_by_stripping:
        return "safe"
    return "failed" if attempt.outcome == "failed" else "exposed"


class TLSExplorer(LiveBox):
    """Try TLS settings live: client mode × server mode × trust × name, with or without a man in the middle.

    Pick the choices and press **Run**: the explorer connects with :class:`smtplab.Client` to a
    private lab server of the chosen mode (see :class:`~smtplab.tls_explore.TLSGrid`), logs in
    and sends a message if it can, and shows the outcome — the error and what it means, or the
    TLS version and cipher — the transcript with the cleartext/TLS boundary marked, the
    certificate chain, what a man in the middle read, and a grid of the combinations tried.

    Args:
        grid: The :class:`~smtplab.tls_explore.TLSGrid` to run on (default: a new one, whose
            servers the explorer stops in :meth:`close`).
        auth_in_clear: For a new grid: let its servers take AUTH in plain text, so that a
            stripping attack has a password to steal (see ``TLSGrid``).
        timeout: For a new grid: seconds each reply may take.

    Attributes:
        grid: The model: servers, and every attempt so far.
        attempt: The attempt shown (the newest run), or ``None``.
    """

    def __init__(
        self, grid: TLSGrid | None = None, *, auth_in_clear: bool = False, timeout: float = 2.0
    ) -> None:
        if grid is not None and not isinstance(grid, TLSGrid):
            raise TypeError(f"TLSExplorer runs on a TLSGrid, not {type(grid).__name__}")
        self._owns_grid = grid is None
        self.grid = grid if grid is not None else TLSGrid(auth_in_clear=auth_in_clear, timeout=timeout)
        self.attempt: Attempt | None = None
        self.client_mode = _dropdown("client", {_key(m): CLIENT_LABELS[m] for m in CLIENT_MODES}, "starttls")
        self.server_mode = _dropdown("server", {_key(m): SERVER_LABELS[m] for m in TLS_MODES}, "starttls")
        self.trust = _dropdown("client trusts", {t: TRUST_LABELS[t] for t in TRUSTS}, "lab-ca")
        self.name = _dropdown("connect to", {n: NAME_LABELS[n] for n in NAMES}, "localhost")
        self.proxy = ipywidgets.Checkbox(
            value=False,
            description="through a STARTTLS-stripping man in the middle",
            indent=False,
            layout=ipywidgets.Layout(width="auto"),
        )
        self.run_button = ipywidgets.Button(
            description="Run", icon="play", button_style="primary", tooltip="Connect with these settings now"
        )
        self.next_run = ipywidgets.HTML()
        self.outcome = ipywidgets.HTML()
        self.table = ipywidgets.HTML()
        self.transcript = ipywidgets.HTML()
        self.chain = ipywidgets.HTML()
        self.attacker = ipywidgets.HTML()
        self.attacker_view = TranscriptView(height="14em")
        self.tabs = ipywidgets.Tab(
            children=[self.transcript, self.chain, ipywidgets.VBox([self.attacker, self.attacker_view])]
        )
        self.tabs.titles = ("Transcript", "Certificates", "Man in the middle")
        for widget, part in (
            (self.client_mode, "client"),
            (self.server_mode, "server"),
            (self.trust, "trust"),
            (self.name, "name"),
            (self.proxy, "proxy"),
            (self.run_button, "run"),
            (self.next_run, "next"),
            (self.outcome, "outcome"),
            (self.table, "grid"),
            (self.transcript, "transcript"),
            (self.chain, "chain"),
            (self.attacker, "attacker"),
        ):
            widget.add_class(f"smtplab-tls-{part}")
        row = {"align_items": "center", "grid_gap": "12px", "flex_flow": "row wrap"}
        super().__init__(
            [
                ipywidgets.HTML("<b>TLS explorer</b> \u2014 pick, predict, then press Run"),
                ipywidgets.HBox([self.client_mode, self.server_mode], layout=row),
                ipywidgets.HBox([self.trust, self.name], layout=row),
                ipywidgets.HBox([self.proxy, self.run_button], layout=row),
                self.next_run,
                self.outcome,
                self.table,
                self.tabs,
            ]
        )
        self.add_class("smtplab-tls-explorer")
        self.run_button.on_click(self._on_run_button_click)
        for control in (self.client_mode, self.server_mode, self.trust, self.name, self.proxy):
            control.observe(self._on_choice_value, names="value")
        self.refresh()

    # -- choices ----------------------------------------------------------------------------------

    @property
    def combination(self) -> Combination:
        """The combination the controls show."""
        return Combination(
            _mode(self.client_mode.value),
            _mode(self.server_mode.value),
            self.trust.value,
            self.name.value,
            self.proxy.value,
        )

    def choose(
        self,
        client: ClientMode | object = _KEEP,
        server: TLSMode | object = _KEEP,
        *,
        trust: str | None = None,
        name: str | None = None,
        proxy: bool | None = None,
    ) -> Combination:
        """Set the controls (what is left out stays); returns the combination they now show."""
        wanted = Combination(
            self.combination.client if client is _KEEP else client,  # type: ignore[arg-type]
            self.combination.server if server is _KEEP else server,  # type: ignore[arg-type]
            trust or self.trust.value,
            name or self.name.value,
            self.proxy.value if proxy is None else proxy,
        )
        self.client_mode.value = _key(wanted.client)
        self.server_mode.value = _key(wanted.server)
        self.trust.value, self.name.value, self.proxy.value = wanted.trust, wanted.name, wanted.proxy
        return wanted

    # -- running ----------------------------------------------------------------------------------

    def run(self, **choices: Any) -> Attempt:
        """What Run does: set the controls from ``choices`` (as :meth:`choose`), connect, show the attempt.

        The attempt runs on smtplab's own event loop and this call waits for it — a few
        milliseconds, or the grid's ``timeout`` for a client that waits for a greeting — so it
        works the same in a notebook cell, a script and a test.

        Returns:
            The :class:`~smtplab.tls_explore.Attempt`, also shown and kept in ``grid.attempts``.
        """
        if choices:
            self.choose(**choices)
        combination = self.combination
        self.run_button.disabled = True
        self.outcome.value = (
            f'<div style="font-size:13px;opacity:0.8">running: {escape(combination.label)}\u2026</div>'
        )
        try:
            self.attempt = self.grid.run(combination)
        finally:
            self.run_button.disabled = False
            self.refresh()
        return self.attempt

    def stop(self) -> None:
        """Stop the explorer's lab servers; what it shows stays (Run starts them again)."""
        self.grid.stop()

    # -- events -----------------------------------------------------------------------------------

    @reports_errors
    def _on_run_button_click(self, button: ipywidgets.Button) -> None:
        self.run()

    @reports_errors
    def _on_choice_value(self, change: dict[str, Any]) -> None:
        self._show_choice()
        self.table.value = self._grid_html()  # the grid follows the trust, name and path chosen

    def _show_choice(self) -> None:
        self.next_run.value = (
            f'<div style="font-size:12px;opacity:0.8">Run will try: {escape(self.combination.label)}</div>'
        )

    def close(self) -> None:
        """Stop observing; also stop the lab servers if the explorer made its grid itself."""
        try:
            super().close()
        finally:
            if getattr(self, "_owns_grid", False):
                self.grid.stop()

    # -- drawing ----------------------------------------------------------------------------------

    def _refresh(self) -> None:
        attempt = self.attempt
        self._show_choice()
        self.table.value = self._grid_html()
        if attempt is None:
            self.outcome.value = (
                '<div style="font-size:13px;opacity:0.8">Nothing run yet. Choose a client and a server, '
                "predict what will happen, then press Run.</div>"
            )
            self.transcript.value = self.chain.value = ""
            self.attacker.value = "no man in the middle yet"
            self.attacker_view.transcript = None
            return
        self.outcome.value = _outcome_html(attempt)
        self.transcript.value = _transcript_html(attempt)
        self.chain.value = _chain_html(attempt)
        if attempt.attacker is None:
            self.attacker.value = (
                '<div style="font-size:13px;opacity:0.8">No man in the middle on this path: tick '
                '"through a STARTTLS-stripping man in the middle" and run again.</div>'
            )
            self.attacker_view.transcript = None
        else:
            self.attacker.value = _attacker_html(attempt)
            self.attacker_view.transcript = attempt.attacker.transcript

    def _grid_html(self) -> str:
        trust, name, proxy = self.trust.value, self.name.value, self.proxy.value
        table = self.grid.table(trust=trust, name=name, proxy=proxy)
        shown = self.attempt.combination if self.attempt is not None else None
        header = "".join(f'<th style="{_CELL}">server: {escape(SERVER_LABELS[s])}</th>' for s in TLS_MODES)
        rows = []
        for client in CLIENT_MODES:
            cells = []
            for server in TLS_MODES:
                attempt = table[(client, server)]
                if attempt is None:
                    cells.append(f'<td style="{_CELL};opacity:0.55">not tried</td>')
                    continue
                latest = attempt.combination == shown
                mark = " \u25c0 last run" if latest else ""
                weight = ";font-weight:bold" if latest else ""
                cells.append(
                    f'<td class="smtplab-tls-cell smtplab-tls-{_tone(attempt)}" style="{_CELL}{weight};'
                    f'border-left:4px solid {_COLOURS[_tone(attempt)]}">{escape(attempt.short)}{mark}</td>'
                )
            rows.append(
                f'<tr><th style="{_CELL}">client: {escape(CLIENT_LABELS[client])}</th>{"".join(cells)}</tr>'
            )
        path = "through the man in the middle" if proxy else "direct"
        tried = len(self.grid.tried())
        caption = (
            f"Tried so far, trusting {TRUST_LABELS[trust]}, connecting to {NAME_LABELS[name]}, {path} "
            f"({tried} of {sum(1 for _ in Combination.every())} combinations tried in all):"
        )
        return (
            f'<div style="font-size:12px;margin:6px 0 2px 0;opacity:0.85">{escape(caption)}</div>'
            f'<div style="max-width:100%;overflow-x:auto"><table style="{render.TABLE};'
            f'font-family:var(--jp-ui-font-family, sans-serif)"><thead><tr><th style="{_CELL}"></th>{header}'
            f"</tr></thead><tbody>{''.join(rows)}</tbody></table></div>"
        )


def _outcome_html(attempt: Attempt) -> str:
    tone = _tone(attempt)
    parts = [
        f'<div style="font-size:12px;opacity:0.8">{escape(attempt.combination.label)}</div>',
        f'<div style="font-size:14px;font-weight:bold;border-left:5px solid {_COLOURS[tone]};'
        f'padding:2px 8px;margin:4px 0">{escape(attempt.headline)}</div>',
    ]
    if attempt.error_below:  # OpenSSL's (or aiosmtplib's) words, under smtplab's explanation
        parts.append(
            f'<div style="font-size:13px">the error: <code>{escape(attempt.error_text)}</code></div>'
        )
    if attempt.explanation:
        parts.append(
            f'<div style="font-size:13px;margin-top:4px">what it means: {escape(attempt.explanation)}</div>'
        )
    parts.append(
        '<details style="font-size:12px;margin-top:4px"><summary>the same client in Python</summary>'
        f"<pre>{escape(attempt.code)}</pre></details>"
    )
    return "".join(parts)


def _boundary_row(text: str) -> str:
    return (
        f'<tr class="smtplab-tls-boundary"><td colspan="4" style="{render.TD};font-weight:bold;'
        f'text-align:center;border-top:2px dashed rgba(128,128,128,0.7);padding:4px">{escape(text)}</td></tr>'
    )


def _transcript_html(attempt: Attempt) -> str:
    lines = attempt.transcript.lines
    start = lines[0].time if lines else 0.0
    rows = [render.html_row(line, start=start) for line in lines]
    boundary = attempt.tls_from
    if boundary is not None:
        rows.insert(boundary, _boundary_row(BOUNDARY_TLS_STARTS.strip("= ")))
    elif attempt.handshake_failed:
        rows.append(_boundary_row(BOUNDARY_HANDSHAKE_FAILED.strip("= ")))
    caption = f"the client's record \u00b7 {render.LEGEND}"
    return render.html_frame(escape(caption), rows, columns=4)


def _chain_html(attempt: Attempt) -> str:
    if not attempt.chain:
        return (
            '<div style="font-size:13px;opacity:0.8">No certificate: this connection never got as far as '
            "a TLS handshake with a certificate.</div>"
        )
    blocks = [f'<div style="font-size:12px;opacity:0.8">{escape(attempt.chain_source)}</div>']
    for depth, entry in enumerate(attempt.chain):
        facts = entry.certificate
        rows = [
            ("subject", facts.subject or "(none)"),
            ("names (subjectAltName)", ", ".join(facts.san) or "(none: a CA certificate names no server)"),
            ("issuer", f"{facts.issuer}{' (itself: a root CA)' if facts.self_signed else ''}"),
            ("valid", f"{facts.not_before:%Y-%m-%d %H:%M} to {facts.not_after:%Y-%m-%d %H:%M} UTC"),
            ("key", facts.key),
            ("SHA-256 fingerprint", facts.sha256),
            ("for this client", entry.note),
        ]
        body = "".join(
            f'<tr><th style="{render.TD};opacity:0.75;white-space:nowrap">{escape(label)}</th>'
            f'<td style="{render.TD};word-break:break-all">{escape(value)}</td></tr>'
            for label, value in rows
        )
        arrow = "\u2193 signed by" if depth else ""  # the certificate above was signed by this one
        blocks.append(
            f'<div style="margin:6px 0 0 {depth * 2}em"><div style="font-size:12px;opacity:0.8">{arrow}</div>'
            f'<b>{escape(entry.role)}</b><table style="{render.TABLE}">{body}</table></div>'
        )
    return f'<div class="smtplab-tls-chain-list">{"".join(blocks)}</div>'


def _attacker_html(attempt: Attempt) -> str:
    read = "".join(f"<li>{escape(item)}</li>" for item in attempt.attacker_read)
    changed = "".join(f"<li>{escape(item)}</li>" for item in attempt.attacker_changed)
    changed_block = (
        f"<div>It changed:</div><ul>{changed}</ul>" if changed else "<div>It changed nothing.</div>"
    )
    return (
        '<div style="font-size:13px"><div>The man in the middle read:</div>'
        f'<ul>{read}</ul>{changed_block}<div style="opacity:0.8">Its own record of the connection '
        '(tick "reveal secrets" to read what it read):</div></div>'
    )
