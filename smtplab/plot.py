"""Pictures of a batch: where the time went when :func:`smtplab.send_many` sent it.

:func:`timeline` draws one lane per connection and one bar per attempt, so the overlap of
several connections — and the gaps a refusal or a retry leaves — can be seen at a glance::

    result = await smtplab.send_many(server, messages, connections=8)
    from smtplab.plot import timeline

    timeline(result)  # a matplotlib Figure, shown by Jupyter

matplotlib is imported on first use only (``import smtplab`` never loads it). Outcomes differ by
hatching and by words (a legend, the reply code on each bar that was not accepted), not by
colour alone.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

from smtplab.parallel import ACCEPTED, DEFERRED, PARTLY_ACCEPTED, REFUSED, BatchResult

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["STYLES", "png", "timeline"]

#: How each attempt's outcome is drawn: (legend label, colour, hatch).
STYLES: dict[str, tuple[str, str, str]] = {
    ACCEPTED: ("accepted (2xx)", "#4c9a5b", ""),
    DEFERRED: ("deferred (4xx): tried again", "#e0a030", "///"),
    REFUSED: ("refused (5xx): never retried", "#c8553d", "xxx"),
    PARTLY_ACCEPTED: ("partly accepted", "#b8b040", "\\\\\\"),
    "dropped": ("connection dropped: tried again", "#8c8c8c", "..."),
}


def timeline(
    result: BatchResult,
    *,
    ax: Axes | None = None,
    title: str | None = None,
) -> Figure:
    """One lane per connection, one bar per attempt, from its first command to the final reply.

    Args:
        result: What :func:`smtplab.send_many` returned.
        ax: A matplotlib ``Axes`` to draw on; by default a new figure sized to the lanes.
        title: The title; by default the batch's totals and throughput.

    Returns:
        The figure. A new one is closed before it is returned, so Jupyter shows it once, as the
        cell's result (``fig.savefig("timeline.png")`` still works).
    """
    if not isinstance(result, BatchResult):
        raise TypeError(
            f"timeline() draws what send_many() returned (a BatchResult), not {type(result).__name__}"
        )
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    lanes = max(1, len(result.workers))
    made = ax is None
    if ax is None:
        fig, ax = plt.subplots(figsize=(9, 1.0 + 0.38 * lanes), layout="constrained")
    fig = ax.figure
    seen: set[str] = set()
    for row in result.timeline():
        outcome = row["outcome"] if row["outcome"] in STYLES else "dropped"
        _label, colour, hatch = STYLES[outcome]
        width = max(row["end"] - row["start"], 1e-4)
        ax.barh(
            row["worker"],
            width,
            left=row["start"],
            height=0.7,
            color=colour,
            hatch=hatch,
            edgecolor="white",
            linewidth=0.6,
        )
        if outcome != ACCEPTED and row["code"] is not None:
            ax.text(
                row["start"] + width / 2,
                row["worker"],
                str(row["code"]),
                ha="center",
                va="center",
                fontsize=7,
            )
        seen.add(outcome)
    end = max(result.elapsed, max((row["end"] for row in result.timeline()), default=0.0), 1e-3)
    for report in result.workers:
        if report.connections:
            continue
        said = f"no connection: refused {report.refusals}×"
        if report.refused_with is not None:
            said += f" with {report.refused_with}"
        said += ", then gave up" if report.retired else "; stopped when the batch was done"
        ax.text(end * 0.01, report.worker, said, va="center", fontsize=8, style="italic")
    ax.set_yticks(range(lanes), [f"connection {n + 1}" for n in range(lanes)])
    ax.set_ylim(lanes - 0.5, -0.5)  # connection 1 on top
    ax.set_xlim(0, end * 1.02)
    ax.set_xlabel("seconds since the batch started")
    ax.grid(axis="x", alpha=0.3)
    ax.set_title(title if title is not None else _title(result), fontsize=10)
    handles = [
        Patch(facecolor=colour, hatch=hatch, edgecolor="white", label=label)
        for outcome, (label, colour, hatch) in STYLES.items()
        if outcome in seen
    ]
    if handles:
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)
    if made:
        plt.close(fig)
    return fig


def _title(result: BatchResult) -> str:
    asked = len(result.workers)
    lanes = f"{asked} connection{'s' if asked != 1 else ''}"
    if result.admitted < asked:
        lanes += f" ({result.admitted} admitted)"
    return f"{len(result)} messages over {lanes}: {result.elapsed:.2f} s, {result.throughput:.0f} msg/s; {result.tally}"


def png(figure: Figure, *, dpi: int = 80) -> bytes:
    """The figure as PNG bytes (for an ``ipywidgets.Image``, or a file)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()
