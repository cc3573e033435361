"""``python -m bench``: run the measurements, print the table, optionally write JSON."""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import threading
import time
from collections.abc import Iterable
from importlib.metadata import version
from pathlib import Path
from typing import Any

import smtplab
from bench.measures import KEYS, MEASURES, Plan
from bench.stats import HIGHER, LOWER, NOT_AVAILABLE, SPEED_UP, Figure

BETTER = {LOWER: "lower", HIGHER: "higher", SPEED_UP: "speed-up"}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="smtplab side by side with stock aiosmtpd/aiosmtplib on 127.0.0.1: "
        "medians of several runs, min-max ranges and ratios (smtplab / stock).",
    )
    parser.add_argument(
        "--quick", action="store_true", help="fewer runs and messages: under a minute on 2 cores"
    )
    parser.add_argument("--repeat", type=int, metavar="N", help="runs per side (default 10; 5 with --quick)")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the figures to FILE as JSON")
    parser.add_argument(
        "--only", metavar="KEYS", help=f"comma-separated keys to measure (default all): {', '.join(KEYS)}"
    )
    args = parser.parse_args(argv)
    if args.repeat is not None and args.repeat < 1:
        parser.error("--repeat must be at least 1")
    if args.only:
        unknown = set(args.only.split(",")) - set(KEYS)
        if unknown:
            parser.error(f"unknown key(s) {', '.join(sorted(unknown))}; known: {', '.join(KEYS)}")
    return args


def run(plan: Plan, only: Iterable[str] | None = None, *, progress: Any = None) -> list[Figure]:
    """Run the selected measurements (every one by default) and return their figures."""
    wanted = set(only) if only else set(KEYS)
    figures: list[Figure] = []
    for keys, measure in MEASURES:
        if not wanted.intersection(keys):
            continue
        started = time.perf_counter()
        produced = measure(plan)
        if progress is not None:
            print(f"  {', '.join(keys)}: {time.perf_counter() - started:.1f} s", file=progress, flush=True)
        figures += [figure for figure in produced if figure.key in wanted]
    return figures


def _num(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _ratio(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 0.01:  # e.g. 0.05 ms against 5 s: "1/100,000×" says more than "0.00×"
        return f"1/{1 / value:,.0f}×"
    return f"{value:.2f}×"


def table(figures: list[Figure]) -> str:
    """The figures as a fixed-width text table, one line per key."""
    header = (
        "key",
        "smtplab",
        "stock",
        "ratio",
        "unit",
        "better",
        "runs",
        "smtplab min–max",
        "stock min–max",
    )
    rows = [header]
    for figure in figures:
        data = figure.as_dict()
        if data is None:
            rows.append((figure.key, NOT_AVAILABLE, "", "", figure.unit, BETTER[figure.better], "", "", ""))
            continue
        runs = (
            str(data["runs"])
            if data["smtplab_runs"] == data["stock_runs"]
            else f"{data['smtplab_runs']}/{data['stock_runs']}"
        )
        rows.append(
            (
                figure.key,
                _num(data["smtplab"]),
                _num(data["stock"]),
                _ratio(data["ratio"]),
                figure.unit,
                BETTER[figure.better],
                runs,
                f"{_num(data['smtplab_min'])}–{_num(data['smtplab_max'])}",
                f"{_num(data['stock_min'])}–{_num(data['stock_max'])}",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    right = {1, 2, 3, 6}
    lines = []
    for n, row in enumerate(rows):
        if row[1] == NOT_AVAILABLE:
            cells = [row[0].ljust(widths[0]), row[1]]
        else:
            cells = [
                cell.rjust(widths[i]) if i in right else cell.ljust(widths[i]) for i, cell in enumerate(row)
            ]
        lines.append("  ".join(cells).rstrip())
        if n == 0:
            lines.append("-" * len(lines[0]))
    return "\n".join(lines)


def legend() -> str:
    return (
        "Figures are medians of `runs` runs per side (smtplab/stock when they differ), min–max over\n"
        "those runs. ratio = smtplab / stock. better: 'lower' (times, memory: below 1× is better),\n"
        "'higher' (throughput: above 1× is better), 'speed-up' (throughput_parallel and\n"
        "send_many_parallel: the smtplab column is 8 connections, the stock column 1 connection, both\n"
        "smtplab; ratio = speed-up)."
    )


def environment(plan: Plan) -> str:
    return (
        f"smtplab {smtplab.__version__}, aiosmtpd {version('aiosmtpd')}, aiosmtplib {version('aiosmtplib')}, "
        f"Python {platform.python_version()}, {os.cpu_count()} CPUs, "
        f"{'--quick' if plan.quick else 'full'} run, --repeat {plan.repeat}"
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    plan = Plan.make(quick=args.quick, repeat=args.repeat)
    threads_before = set(threading.enumerate())
    print(environment(plan), flush=True)
    started = time.perf_counter()
    figures = run(plan, args.only.split(",") if args.only else None, progress=sys.stderr)
    elapsed = time.perf_counter() - started
    print()
    print(table(figures))
    print()
    print(legend())
    print(f"Total {elapsed:.1f} s.")
    if args.json is not None:
        args.json.write_text(json.dumps({f.key: f.as_dict() for f in figures}, indent=2) + "\n")
        print(f"Wrote {args.json}.")
    leftovers = [t.name for t in set(threading.enumerate()) - threads_before if t.is_alive()]
    if smtplab.running_servers() or leftovers:
        print(f"leftovers: servers {smtplab.running_servers()}, threads {leftovers}", file=sys.stderr)
        return 1
    return 0
