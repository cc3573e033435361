"""``LoopMonitor``: a lab server's event-loop lag, drawn live — see a stall, not only time it."""

from __future__ import annotations

import ipywidgets

from smtplab.lag import BLOCKED, LagMeter, describe_lag
from smtplab.server import LabServer
from smtplab.widgets._live import LiveBox, escape, reports_errors

__all__ = ["LoopMonitor"]

#: Seconds between measurements unless told otherwise (ten a second: enough to see a stall).
DEFAULT_INTERVAL = 0.1
#: The bar is full at this lag (seconds).
BAR_FULL = 1.0
_WIDTH, _HEIGHT = 360, 64  # the sparkline, in pixels

# A colour for each verdict — always next to the verdict in words.
_COLOURS = {"smooth": "rgb(52, 168, 83)", "sluggish": "rgb(230, 150, 0)", "blocked": "rgb(217, 48, 37)"}


def _ms(seconds: float) -> str:
    """``0.3 ms``, ``42 ms``, ``1.52 s``."""
    if seconds >= 1:
        return f"{seconds:.2f} s"
    return f"{seconds * 1000:.1f} ms" if seconds < 0.01 else f"{seconds * 1000:.0f} ms"


class LoopMonitor(LiveBox):
    """How late the server's event loop runs what it is given, live (a :class:`~smtplab.lag.LagMeter`).

    A bar shows the lag now; a sparkline the last measurements; a line in words the longest lag
    since measuring began (or since the last Reset), and what it means: a loop that *was not blocked* served every client
    at once, a loop that *was blocked* served nobody for that long — a handler hook ran without
    awaiting. Pause stops measuring; Reset forgets the measurements. The monitor stops measuring
    by itself when the server stops (Resume after ``server.start()``).

    Args:
        server: The running :class:`~smtplab.server.LabServer` to watch.
        interval: Seconds between measurements.

    Attributes:
        meter: The :class:`~smtplab.lag.LagMeter` doing the measuring.
        resets: How many times Reset was pressed (the line in words says since when it counts).
    """

    def __init__(self, server: LabServer, *, interval: float = DEFAULT_INTERVAL) -> None:
        if not isinstance(server, LabServer):
            raise TypeError(f"LoopMonitor watches a LabServer, not {type(server).__name__}")
        self.server = server
        self.meter = LagMeter(server, interval=interval, keep=max(int(20 / interval), 2))
        self.resets = 0
        self.caption = ipywidgets.HTML()
        self.bar = ipywidgets.HTML(layout=ipywidgets.Layout(width="100%"))
        self.sparkline = ipywidgets.HTML()
        self.verdict = ipywidgets.HTML()
        self.pause_button = ipywidgets.Button(
            description="Pause", icon="pause", tooltip="Stop measuring (the measurements stay)"
        )
        self.reset_button = ipywidgets.Button(
            description="Reset", icon="eraser", tooltip="Forget the measurements and the longest lag"
        )
        for button in (self.pause_button, self.reset_button):
            button.layout.width = "auto"
        buttons = ipywidgets.HBox(
            [self.pause_button, self.reset_button, self.caption],
            layout={"align_items": "center", "grid_gap": "8px"},
        )
        super().__init__([buttons, self.bar, self.sparkline, self.verdict])
        self.add_class("smtplab-loop-monitor")
        self.pause_button.on_click(self._on_pause_button_click)
        self.reset_button.on_click(self._on_reset_button_click)
        self.meter.observe(self._on_meter_change)
        if server.running:
            self.meter.start()
        self.refresh()

    # -- actions ------------------------------------------------------------------------------

    def pause(self) -> None:
        """What Pause does: stop measuring."""
        self.meter.stop()
        self.refresh()

    def resume(self) -> None:
        """What Resume does: measure again (the server must be running)."""
        self.meter.start()
        self.refresh()

    def reset(self) -> None:
        """What Reset does: forget the measurements."""
        self.meter.reset()
        self.resets += 1
        self.refresh()

    def stop(self) -> None:
        """Stop measuring for good (as Pause); the widget keeps showing what it measured."""
        self.pause()

    @reports_errors
    def _on_pause_button_click(self, button: ipywidgets.Button) -> None:
        if self.meter.running:
            self.pause()
        else:
            self.resume()

    @reports_errors
    def _on_reset_button_click(self, button: ipywidgets.Button) -> None:
        self.reset()

    def _on_meter_change(self, meter: LagMeter) -> None:  # the meter's thread
        self.request_refresh()

    def _unobserve_models(self) -> None:
        self.meter.unobserve(self._on_meter_change)
        self.meter.stop()

    # -- drawing ------------------------------------------------------------------------------

    def _refresh(self) -> None:
        meter = self.meter
        now, worst, samples = meter.now, meter.worst, meter.samples
        measuring = meter.running
        self.pause_button.description = "Pause" if measuring else "Resume"
        self.pause_button.icon = "pause" if measuring else "play"
        state = {
            "measuring": f"measuring every {_ms(meter.interval)}",
            "stopped": "paused",
            "server stopped": "the server stopped, so did measuring (Resume once it runs again)",
        }[meter.state if not measuring else "measuring"]
        self.caption.value = (
            f'<span style="font-size:13px"><b>event loop of the lab server</b> '
            f"{escape(self.server.name)} · {escape(state)}</span>"
        )
        words = describe_lag(now)
        stalled = " — waiting now: nothing else runs" if meter.waiting else ""
        share = min(now / BAR_FULL, 1.0) * 100
        self.bar.value = (
            '<div style="display:flex;align-items:center;gap:8px;font-size:13px">'
            f'<span style="min-width:11em">lag now: <b>{_ms(now)}</b> ({words}){escape(stalled)}</span>'
            '<div style="flex:1;height:10px;border:1px solid rgba(128,128,128,0.6);border-radius:3px">'
            f'<div style="width:{share:.1f}%;height:100%;background:{_COLOURS[words]}"></div></div>'
            f'<span style="opacity:0.7">{_ms(BAR_FULL)}</span></div>'
        )
        lags = [s.lag for s in samples]
        if meter.waiting:  # the stall going on now, drawn as it grows
            lags.append(now)
        self.sparkline.value = _sparkline(lags)
        since = "since the last reset" if self.resets else "since measuring began"
        longest = f"longest lag {since}: <b>{_ms(worst)}</b> — "
        if not samples and not meter.waiting:
            verdict = "no measurement since the last reset yet" if self.resets else "no measurement yet"
        elif worst >= BLOCKED:
            verdict = longest + f"the loop was blocked for {_ms(worst)}: no client was served meanwhile"
        elif describe_lag(worst) == "sluggish":
            verdict = longest + f"the loop was not blocked, but sluggish: a client waited up to {_ms(worst)}"
        else:
            verdict = longest + "the loop was not blocked: it ran smoothly, every client was served at once"
        self.verdict.value = f'<span style="font-size:13px">{verdict}</span>'


def _sparkline(lags: list[float]) -> str:
    """The lags as an SVG line, scaled to the highest (at least the 'blocked' line), with words."""
    if len(lags) < 2:
        return f'<div style="height:{_HEIGHT}px;font-size:12px;opacity:0.7">(the line appears after two measurements)</div>'
    top = max(max(lags), BLOCKED * 1.5)
    step = _WIDTH / (len(lags) - 1)
    points = " ".join(
        f"{n * step:.1f},{_HEIGHT - lag / top * (_HEIGHT - 4):.1f}" for n, lag in enumerate(lags)
    )
    limit = _HEIGHT - BLOCKED / top * (_HEIGHT - 4)
    summary = f"lag of the last {len(lags)} measurements, highest {_ms(max(lags))}"
    return (
        f'<svg width="{_WIDTH + 120}" height="{_HEIGHT}" role="img" aria-label="{escape(summary)}">'
        f"<title>{escape(summary)}</title>"
        f'<line x1="0" y1="{limit:.1f}" x2="{_WIDTH}" y2="{limit:.1f}" stroke="grey" stroke-dasharray="4 3"/>'
        f'<text x="{_WIDTH + 4}" y="{limit + 4:.1f}" font-size="11" fill="grey">{_ms(BLOCKED)}: blocked</text>'
        f'<polyline points="{points}" fill="none" stroke="rgb(66, 133, 244)" stroke-width="1.5"/>'
        + (
            f'<text x="{_WIDTH + 4}" y="{_HEIGHT - 2}" font-size="11" fill="grey">0 ms</text>'
            if limit < _HEIGHT - 16
            else ""
        )
        + "</svg>"
    )
