"""``ServerPanel``: start and stop a lab server, see where it listens and how much it caught."""

from __future__ import annotations

from typing import Any

import ipywidgets

from smtplab.server import LabServer, start_server
from smtplab.widgets._live import LiveBox, escape, reports_errors

__all__ = ["ServerPanel"]

#: The name of the server a panel starts for itself (see ``start_server(name=...)``).
PANEL_SERVER_NAME = "panel"


class ServerPanel(LiveBox):
    """Start/Stop buttons for a lab server, its address, its state and a live message count.

    The panel follows its server however it is started or stopped — its buttons,
    ``server.stop()`` in a cell, ``smtplab.stop_all()`` in a notebook's clean-up — and keeps
    showing the last state (and the mailbox's count) once the server is stopped.

    Args:
        server: The :class:`~smtplab.server.LabServer` to control. With ``None`` the panel
            starts its own on the first click on Start (``start_server(name="panel")``) and
            stops it again in :meth:`close`.

    Attributes:
        server: The server controlled (``None`` until Start when the panel makes its own).
        state: ``"running"``, ``"stopped"`` or ``"not started"``.
        address: ``"host:port"`` while running.
        count: How many messages the mailbox holds, e.g. ``"2 messages"``.
    """

    def __init__(self, server: LabServer | None = None) -> None:
        if server is not None and not isinstance(server, LabServer):
            raise TypeError(f"ServerPanel controls a LabServer, not {type(server).__name__}")
        self.server = server
        self._owns_server = server is None
        self._observed: Any = None  # the mailbox observed
        self._observed_server: LabServer | None = None
        self.title = ipywidgets.HTML()
        self.start_button = ipywidgets.Button(
            description="Start",
            icon="play",
            button_style="success",
            tooltip="Start the lab server",
            layout=ipywidgets.Layout(width="auto"),
        )
        self.stop_button = ipywidgets.Button(
            description="Stop",
            icon="stop",
            button_style="danger",
            tooltip="Stop the lab server",
            layout=ipywidgets.Layout(width="auto"),
        )
        self.state = ipywidgets.Label()
        self.address = ipywidgets.Label()
        self.count = ipywidgets.Label()
        row = [self.title, self.start_button, self.stop_button, self.state, self.address, self.count]
        super().__init__([ipywidgets.HBox(row, layout={"align_items": "center", "grid_gap": "8px"})])
        self.add_class("smtplab-server-panel")
        self.start_button.on_click(self._on_start_button_click)
        self.stop_button.on_click(self._on_stop_button_click)
        if server is not None:
            self._observe(server)
        self.refresh()

    # -- actions ------------------------------------------------------------------------------

    def start(self) -> LabServer:
        """What Start does: start the server (making one first if the panel owns none)."""
        if self.server is None:
            self.server = start_server(name=PANEL_SERVER_NAME)
        else:
            self.server.start()
        self._observe(self.server)
        self.refresh()
        return self.server

    def stop(self) -> None:
        """What Stop does: stop the server (its mailbox stays)."""
        if self.server is not None:
            self.server.stop()
        self.refresh()

    @reports_errors
    def _on_start_button_click(self, button: ipywidgets.Button) -> None:
        try:
            self.start()
        finally:
            self.refresh()

    @reports_errors
    def _on_stop_button_click(self, button: ipywidgets.Button) -> None:
        try:
            self.stop()
        finally:
            self.refresh()

    # -- observing ----------------------------------------------------------------------------

    def _observe(self, server: LabServer) -> None:
        if self._observed is server.mailbox and self._observed_server is server:
            return
        self._unobserve_models()
        server.mailbox.observe(self._on_mailbox_message)
        self._observed = server.mailbox
        server.observe(self._on_server_change)
        self._observed_server = server

    def _on_mailbox_message(self, message: Any) -> None:  # the mailbox's dispatcher thread
        self.request_refresh()

    def _on_server_change(self, server: LabServer) -> None:  # whichever thread started or stopped it
        self.request_refresh()

    def _unobserve_models(self) -> None:
        if self._observed is not None:
            self._observed.unobserve(self._on_mailbox_message)
            self._observed = None
        if self._observed_server is not None:
            self._observed_server.unobserve(self._on_server_change)
            self._observed_server = None

    def close(self) -> None:
        """Stop observing; also stop the server if the panel started it itself."""
        try:
            super().close()
        finally:
            if getattr(self, "_owns_server", False) and self.server is not None:
                self.server.stop()

    # -- drawing ------------------------------------------------------------------------------

    def _refresh(self) -> None:
        server = self.server
        running = server is not None and server.running
        self.state.value = "running" if running else ("stopped" if server is not None else "not started")
        self.address.value = f"{server.host}:{server.port}" if running and server is not None else ""
        held = len(server.mailbox) if server is not None else 0
        self.count.value = f"{held} message{'s' if held != 1 else ''}"
        self.start_button.disabled = running
        self.stop_button.disabled = not running
        colour = "rgb(52, 168, 83)" if running else "rgb(160, 160, 160)"
        name = escape(server.name) if server is not None else escape(PANEL_SERVER_NAME)
        self.title.value = f'<span style="color:{colour}">\u25cf</span> <b>lab server</b> {name}'
