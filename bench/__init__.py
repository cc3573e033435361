"""Performance figures for smtplab, side by side with stock aiosmtpd and aiosmtplib.

Run ``python -m bench`` (or ``--quick`` for a run under a minute, ``--json FILE`` to keep the
figures). Every key compares smtplab with what one would write without it, on 127.0.0.1, both
sides interleaved in the same run; see :mod:`bench.measures` for what each key measures.
"""

from bench.cli import main, run, table
from bench.measures import KEYS, Plan
from bench.stats import Figure

__all__ = ["KEYS", "Figure", "Plan", "main", "run", "table"]
