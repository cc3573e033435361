"""Samples in, figures out: the one place that computes medians, ranges and ratios.

Every measurement collects raw samples for both sides — smtplab and stock aiosmtpd/aiosmtplib —
into a :class:`Figure`; the table and the JSON file are both rendered from :meth:`Figure.as_dict`,
so they cannot disagree.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["HIGHER", "LOWER", "NOT_AVAILABLE", "SPEED_UP", "Figure", "interleaved"]

#: Which way is better, shown in the table for every key. The ratio is always smtplab / stock.
LOWER = "lower"
HIGHER = "higher"
SPEED_UP = "speed-up"  # a higher-is-better ratio of smtplab's scenario over stock's

NOT_AVAILABLE = "n/a (not available)"


@dataclass
class Figure:
    """The samples of one benchmark key, for both sides.

    Attributes:
        key: The key in the table and the JSON file, e.g. ``"start_plain"``.
        unit: The unit of every sample, e.g. ``"ms"``.
        better: :data:`LOWER`, :data:`HIGHER` or :data:`SPEED_UP`.
        smtplab: smtplab's samples, one per run.
        stock: Stock aiosmtpd/aiosmtplib samples, one per run.
        note: What exactly was compared, in one line (kept in the JSON file).
        available: False when the library lacks the feature; the figure is then ``null``.
    """

    key: str
    unit: str
    better: str
    smtplab: list[float] = field(default_factory=list)
    stock: list[float] = field(default_factory=list)
    note: str = ""
    available: bool = True

    def as_dict(self) -> dict[str, Any] | None:
        """The figure as written to JSON, or ``None`` when not available or not measured."""
        if not self.available or not self.smtplab or not self.stock:
            return None
        mine, theirs = statistics.median(self.smtplab), statistics.median(self.stock)
        return {
            "smtplab": mine,
            "stock": theirs,
            "ratio": mine / theirs if theirs else None,
            "unit": self.unit,
            "better": self.better,
            "smtplab_min": min(self.smtplab),
            "smtplab_max": max(self.smtplab),
            "stock_min": min(self.stock),
            "stock_max": max(self.stock),
            "runs": min(len(self.smtplab), len(self.stock)),
            "smtplab_runs": len(self.smtplab),
            "stock_runs": len(self.stock),
            "note": self.note,
        }


def interleaved(
    rounds: int,
    sides: Mapping[str, Callable[[], Any]],
    *,
    budget: float,
    minimum: int = 1,
) -> dict[str, list[Any]]:
    """Run every side once per round, rotating which goes first, and collect the results.

    Rotating the order spreads warm-up and machine drift evenly over the sides. The loop is
    bounded twice: by ``rounds`` and by ``budget`` seconds (checked between rounds, after at
    least ``minimum`` rounds), so a very slow machine gives fewer runs instead of hanging.
    """
    names = list(sides)
    results: dict[str, list[Any]] = {name: [] for name in names}
    deadline = time.perf_counter() + budget
    for n in range(rounds):
        if n >= minimum and time.perf_counter() > deadline:
            break
        shift = n % len(names)
        for name in names[shift:] + names[:shift]:
            results[name].append(sides[name]())
    return results
