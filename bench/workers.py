"""Measurements that need a fresh process of their own: ``python -m bench.workers <name> ...``.

Each prints one JSON line. The parent (:mod:`bench.measures`) starts them with
``AIOSMTPD_CONTROLLER_TIMEOUT`` removed from the environment, so a stock Controller waits its
documented ``ready_timeout`` and nothing else.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import socket
import sys
import time
from typing import Any

import aiosmtplib
from aiosmtpd.controller import Controller

import smtplab
from bench.common import (
    HOST,
    RECIPIENTS,
    SENDER,
    STOCK_READY_TIMEOUT,
    KeepHandler,
    SinkHandler,
    lab_server,
    message,
    stock_server,
)

MEMORY_MESSAGE_SIZE = 10 * 1024
MEMORY_WARMUP = 50


def rss() -> int:
    """Resident set size of this process, in bytes (Linux ``/proc``; psutil elsewhere)."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        import psutil

        return int(psutil.Process().memory_info().rss)


def memory(side: str, count: int) -> dict[str, Any]:
    """RSS growth per captured 10 KB message, server and client (aiosmtplib) in this process.

    Both sides use the same client, so the difference is what each server keeps per message:
    smtplab a ``CapturedMessage`` plus its session transcript, stock the aiosmtpd ``Envelope``.
    """
    content = message(MEMORY_MESSAGE_SIZE)
    if side == "smtplab":
        context = lab_server(name="bench-memory")
    elif side == "stock":
        handler = KeepHandler()
        context = stock_server(handler)
    else:
        raise SystemExit(f"unknown side {side!r}")
    with context as server:
        port = server.port
        kept = (lambda: server.mailbox.received) if side == "smtplab" else (lambda: len(handler.envelopes))

        async def run() -> tuple[int, int]:
            smtp = aiosmtplib.SMTP(hostname=HOST, port=port, start_tls=False, timeout=30)
            await smtp.connect()
            try:
                for _ in range(MEMORY_WARMUP):  # code paths, buffers and arenas warmed up
                    await smtp.sendmail(SENDER, RECIPIENTS, content)
                gc.collect()
                before = rss()
                for _ in range(count):
                    await smtp.sendmail(SENDER, RECIPIENTS, content)
                gc.collect()
                return before, rss()
            finally:
                await smtp.quit()

        before, after = asyncio.run(asyncio.wait_for(run(), 300))
        if kept() != MEMORY_WARMUP + count:
            raise RuntimeError(f"{side}: {kept()} messages kept, expected {MEMORY_WARMUP + count}")
    return {
        "side": side,
        "messages": count,
        "rss_before": before,
        "rss_after": after,
        "per_message": (after - before) / count,
    }


def port_in_use(smtplab_runs: int, stock_runs: int) -> dict[str, Any]:
    """Seconds until each side reports a taken port, alternating sides, one taken port."""
    results: dict[str, list[float]] = {"smtplab": [], "stock": []}
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind((HOST, 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        for n in range(max(smtplab_runs, stock_runs)):
            sides = ["smtplab", "stock"] if n % 2 == 0 else ["stock", "smtplab"]
            for side in sides:
                if side == "smtplab" and n < smtplab_runs:
                    start = time.perf_counter()
                    try:
                        server = smtplab.start_server(port=port, name="bench-taken")
                    except smtplab.PortInUseError:
                        results["smtplab"].append(time.perf_counter() - start)
                    else:
                        server.stop()
                        raise RuntimeError(f"smtplab started on taken port {port}")
                elif side == "stock" and n < stock_runs:
                    controller = Controller(
                        SinkHandler(), hostname=HOST, port=port, ready_timeout=STOCK_READY_TIMEOUT
                    )
                    start = time.perf_counter()
                    try:
                        controller.start()
                    except OSError:
                        results["stock"].append(time.perf_counter() - start)
                    else:
                        raise RuntimeError(f"stock Controller started on taken port {port}")
                    finally:
                        controller.stop(no_assert=True)
                        if not controller.loop.is_closed():  # a failed start never closes it
                            controller.loop.close()
    return results


def main(argv: list[str]) -> int:
    name, *args = argv
    if name == "memory":
        result = memory(args[0], int(args[1]))
    elif name == "port_in_use":
        result = port_in_use(int(args[0]), int(args[1]))
    else:
        raise SystemExit(f"unknown worker {name!r}")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
