"""``FaultPanel``: make a lab server fail on purpose, by clicking (``server.inject`` underneath)."""

from __future__ import annotations

import time
from typing import Any

import ipywidgets

from smtplab.faults import STAGES, SUGGESTED_REPLIES, Fault
from smtplab.server import LabServer
from smtplab.widgets._live import LiveBox, escape, reports_errors

__all__ = ["FaultPanel"]

#: How often a fault fires, as offered (0: every time, until cancelled).
TIMES = (("once", 1), ("twice", 2), ("3 times", 3), ("every time", 0))
#: Firings listed under the panel, newest first.
HISTORY_SHOWN = 5

_HANG_UP = ("disconnect", "")
_LATE = ("delay", "")


def _actions(stage: str) -> list[tuple[str, tuple[str, str]]]:
    """What the server can do at ``stage``, as the dropdown offers it: (label, (kind, reply))."""
    replies = [(f"reply {line}", ("reply", line)) for line in SUGGESTED_REPLIES[stage]]
    return [*replies, ("hang up without a reply", _HANG_UP), ("answer as usual, after the delay", _LATE)]


class FaultPanel(LiveBox):
    """Arm faults on a lab server by clicking; see what is armed and what fired.

    Pick a stage (``RCPT`` …), what the server does there instead of its usual reply (a refusal,
    hanging up, or only answering late — or type your own reply), how often, and press **Arm**:
    that is ``server.inject(...)``. The armed faults are listed, each with its own **Cancel**;
    the latest firings below. Send something (a ``Composer``, a ``Client``) and watch the client's
    reaction in its transcript.

    Args:
        server: The :class:`~smtplab.server.LabServer` to make fail.

    Attributes:
        stage: The stage dropdown.
        action: What the server does there (the suggested replies, hang up, or answer late).
        custom: Your own reply line, used instead of ``action`` when not empty.
        delay: Seconds to hold the reply back first.
        times: How often the fault fires.
        arm_button: Arms the fault.
        cancel_all_button: Cancels every armed fault.
        armed_list: One row per armed fault, with its Cancel button.
        last: The fault armed here last, and how it has gone (it stays when used up).
        history: The latest firings, in words.
        last_fault: The fault armed last, if any.
    """

    def __init__(self, server: LabServer) -> None:
        if not isinstance(server, LabServer):
            raise TypeError(f"FaultPanel arms faults on a LabServer, not {type(server).__name__}")
        self.server = server
        self.rules = server.fault_rules
        self.last_fault: Fault | None = None
        self.title = ipywidgets.HTML(
            f'<span style="font-size:13px"><b>faults</b> of the lab server {escape(server.name)}</span>'
        )
        self.stage = ipywidgets.Dropdown(options=STAGES, value="RCPT", description="at")
        self.action = ipywidgets.Dropdown(options=_actions("RCPT"), description="the server")
        self.custom = ipywidgets.Text(
            description="or reply",
            placeholder="your own reply, e.g. 451 4.3.0 Try again later",
        )
        self.delay = ipywidgets.BoundedFloatText(
            value=0.0, min=0.0, max=60.0, step=0.5, description="delay (s)"
        )
        self.times = ipywidgets.Dropdown(options=TIMES, value=1, description="how often")
        self.arm_button = ipywidgets.Button(
            description="Arm", icon="bolt", button_style="warning", tooltip="server.inject(...) with these"
        )
        self.cancel_all_button = ipywidgets.Button(
            description="Cancel all", icon="times", tooltip="Cancel every armed fault"
        )
        self.armed_list = ipywidgets.VBox()
        self.last = ipywidgets.HTML()
        self.history = ipywidgets.HTML()
        self._nothing_armed = ipywidgets.HTML(
            '<span style="font-size:13px;opacity:0.7">no fault armed</span>'
        )
        self._rows: dict[int, tuple[ipywidgets.HBox, ipywidgets.HTML]] = {}
        for name in ("stage", "action", "custom", "delay", "times", "arm_button", "cancel_all_button"):
            widget = getattr(self, name)
            widget.add_class(f"smtplab-fault-{name.replace('_button', '').replace('_', '-')}")
            widget.layout.width = "auto" if name.endswith("button") else "28em"
        self.action.layout.width = "36em"
        self.armed_list.add_class("smtplab-fault-list")
        self.last.add_class("smtplab-fault-last")
        self.history.add_class("smtplab-fault-history")
        super().__init__(
            [
                self.title,
                ipywidgets.HBox([self.stage, self.times]),
                self.action,
                ipywidgets.HBox([self.custom, self.delay]),
                ipywidgets.HBox([self.arm_button, self.cancel_all_button], layout={"grid_gap": "8px"}),
                self.armed_list,
                self.last,
                self.history,
            ]
        )
        self.add_class("smtplab-fault-panel")
        self.stage.observe(self._on_stage_value, names="value")
        self.arm_button.on_click(self._on_arm_button_click)
        self.cancel_all_button.on_click(self._on_cancel_all_button_click)
        self.rules.observe(self._on_rules_change)
        self.refresh()

    # -- actions ------------------------------------------------------------------------------

    def arm(self) -> Fault:
        """What Arm does: ``server.inject()`` with the panel's choices; returns the fault."""
        kind, reply = self.action.value
        custom = self.custom.value.strip()
        fault = self.server.inject(
            self.stage.value,
            reply=custom or (reply if kind == "reply" else None),
            disconnect=kind == "disconnect" and not custom,
            delay=self.delay.value,
            times=self.times.value or None,
        )
        self.last_fault = fault
        self.refresh()
        return fault

    def cancel_all(self) -> int:
        """What Cancel all does; returns how many faults were armed."""
        count = self.rules.cancel_all()
        self.refresh()
        return count

    @reports_errors
    def _on_arm_button_click(self, button: ipywidgets.Button) -> None:
        self.arm()

    @reports_errors
    def _on_cancel_all_button_click(self, button: ipywidgets.Button) -> None:
        self.cancel_all()

    @reports_errors
    def _on_stage_value(self, change: dict[str, Any]) -> None:
        self.action.options = _actions(change["new"])

    def _on_rules_change(self, fault: Fault, event: str) -> None:  # any thread
        self.request_refresh()

    def _cancel_one(self, fault: Fault) -> Any:
        @reports_errors
        def on_click(panel: FaultPanel, button: ipywidgets.Button) -> None:
            fault.cancel()
            panel.refresh()

        return lambda button: on_click(self, button)

    def _unobserve_models(self) -> None:
        self.rules.unobserve(self._on_rules_change)

    # -- drawing ------------------------------------------------------------------------------

    def _refresh(self) -> None:
        armed = self.rules.armed
        numbers = {fault.number for fault in armed}
        for number in [n for n in self._rows if n not in numbers]:
            row, _ = self._rows.pop(number)
            for child in (*row.children, row):
                child.close()
        for fault in armed:
            if fault.number not in self._rows:
                label = ipywidgets.HTML()
                button = ipywidgets.Button(description="Cancel", icon="times", layout={"width": "auto"})
                button.add_class("smtplab-fault-cancel")
                button.on_click(self._cancel_one(fault))
                self._rows[fault.number] = (
                    ipywidgets.HBox([button, label], layout={"align_items": "center"}),
                    label,
                )
            self._rows[fault.number][
                1
            ].value = f'<span style="font-size:13px">{escape(fault.describe())}</span>'
        self.armed_list.children = [self._rows[fault.number][0] for fault in armed] or [self._nothing_armed]
        self.cancel_all_button.disabled = not armed
        if self.last_fault is not None:
            self.last.value = (
                f'<span style="font-size:13px">armed here last: {escape(self.last_fault.describe())}</span>'
            )
        firings = list(self.rules.history)[-HISTORY_SHOWN:][::-1]
        if firings:
            from smtplab.render import format_address

            lines = [
                f"{time.strftime('%H:%M:%S', time.localtime(f.time))} fault #{f.fault} fired at "
                f"{escape(f.stage)} for {escape(format_address(f.peer))}: {escape(f.action)}"
                for f in firings
            ]
            self.history.value = (
                '<div style="font-size:13px"><b>fired lately</b> (newest first):<br>'
                + "<br>".join(lines)
                + "</div>"
            )
        else:
            self.history.value = '<span style="font-size:13px;opacity:0.7">nothing fired yet</span>'
