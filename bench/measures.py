"""The measurements: one small function per scenario, smtplab and stock side by side.

Each function takes a :class:`Plan` and returns :class:`~bench.stats.Figure` objects. Both sides
run in the same invocation, interleaved round by round (:func:`~bench.stats.interleaved`), and
every server started here is stopped in a ``finally``.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiosmtplib

import smtplab
from bench.common import (
    HOST,
    RECIPIENTS,
    SENDER,
    DelayHandler,
    SinkHandler,
    child_env,
    client_supports,
    free_port,
    lab_server,
    lab_supports,
    message,
    run_async,
    run_child,
    run_worker,
    start_stock,
    stock_controller,
    stock_server,
    watch_close,
)
from bench.stats import HIGHER, LOWER, SPEED_UP, Figure, interleaved

MS = 1000.0
THROUGHPUT_SIZE = 1024
THROUGHPUT_WARMUP = 10
PARALLEL_CONNECTIONS = 8
PARALLEL_DELAY = 0.02  # seconds before the reply to DATA: a distant server's round trip
SMTPLAB_IMPORT = "import smtplab"
STOCK_IMPORT = "import aiosmtpd.controller, aiosmtplib"


@dataclass(frozen=True)
class Plan:
    """How many runs and messages each measurement uses.

    ``repeat`` is the number of runs per side for every key, except where a run is costly:
    the stock side of ``port_in_use`` waits 5 s per run, and ``memory`` sends thousands of
    messages per run in a fresh process.
    """

    quick: bool
    repeat: int
    port_stock_runs: int
    throughput_messages: int
    parallel_messages: int
    tls_connections: int
    memory_messages: int
    memory_runs: int

    @classmethod
    def make(cls, *, quick: bool, repeat: int | None = None) -> Plan:
        runs = repeat if repeat is not None else (5 if quick else 10)
        if runs < 1:
            raise ValueError("--repeat must be at least 1")
        return cls(
            quick=quick,
            repeat=runs,
            port_stock_runs=1 if quick else min(runs, 3),
            throughput_messages=500 if quick else 2000,
            parallel_messages=PARALLEL_CONNECTIONS * (6 if quick else 20),
            tls_connections=max(runs, 20 if quick else 50),
            memory_messages=1000 if quick else 5000,
            memory_runs=min(runs, 2 if quick else 3),
        )


def unavailable(key: str, unit: str, better: str, missing: str) -> Figure:
    return Figure(key, unit, better, note=f"needs {missing}", available=False)


# -- import ---------------------------------------------------------------------------------


def _import_seconds(statement: str, env: dict[str, str]) -> float:
    code = f"import time; t = time.perf_counter(); {statement}; print(time.perf_counter() - t)"
    return float(run_child(["-c", code], timeout=60, env=env))


def measure_import(plan: Plan) -> list[Figure]:
    """``import smtplab`` vs ``import aiosmtpd.controller, aiosmtplib``, each in a fresh process.

    Both sides read bytecode from one private, pre-warmed cache (``PYTHONPYCACHEPREFIX``): with
    ``PYTHONDONTWRITEBYTECODE`` set, an editable smtplab would be compiled from source at every
    import while the installed packages have their ``.pyc`` files — timing the compiler, not
    the import. The repository's own directories are left untouched.
    """
    with tempfile.TemporaryDirectory(prefix="smtplab-bench-pycache-") as cache:
        env = child_env(PYTHONDONTWRITEBYTECODE=None, PYTHONPYCACHEPREFIX=cache)
        sides = {
            "smtplab": lambda: _import_seconds(SMTPLAB_IMPORT, env),
            "stock": lambda: _import_seconds(STOCK_IMPORT, env),
        }
        sides["smtplab"](), sides["stock"]()  # fill the cache
        runs = interleaved(plan.repeat, sides, budget=30)
    return [
        Figure(
            "import",
            "ms",
            LOWER,
            [s * MS for s in runs["smtplab"]],
            [s * MS for s in runs["stock"]],
            note="the import statement alone, in a fresh interpreter, bytecode cached",
        )
    ]


# -- start and stop ------------------------------------------------------------------------------


def _lab_start_stop(**options: Any) -> tuple[float, float]:
    start = time.perf_counter()
    server = smtplab.start_server(name="bench-start", **options)
    try:
        started = time.perf_counter()
    finally:
        server.stop()
    return started - start, time.perf_counter() - started


def _stock_start_stop(**kwargs: Any) -> tuple[float, float]:
    port = free_port()  # looked up untimed: a stock user passes a port they already know
    start = time.perf_counter()
    controller = start_stock(stock_controller(SinkHandler(), port=port, **kwargs))
    try:
        started = time.perf_counter()
    finally:
        controller.stop()
    return started - start, time.perf_counter() - started


def measure_start_stop(plan: Plan) -> list[Figure]:
    """``start_server()`` / ``.stop()`` vs a stock ``Controller(...).start()`` / ``.stop()``."""
    _lab_start_stop(), _stock_start_stop()  # warm-up: first thread, lazy imports
    runs = interleaved(plan.repeat, {"smtplab": _lab_start_stop, "stock": _stock_start_stop}, budget=30)
    lab, stock = runs["smtplab"], runs["stock"]
    return [
        Figure(
            "start_plain",
            "ms",
            LOWER,
            [s[0] * MS for s in lab],
            [s[0] * MS for s in stock],
            note="start_server() vs Controller(handler, hostname='127.0.0.1', port=free) + .start()",
        ),
        Figure(
            "stop",
            "ms",
            LOWER,
            [s[1] * MS for s in lab],
            [s[1] * MS for s in stock],
            note="LabServer.stop() vs Controller.stop(), idle server",
        ),
    ]


def measure_start_tls(plan: Plan) -> list[Figure]:
    """``start_server(tls="implicit")`` vs a stock Controller with ``ssl_context=`` (lab CA)."""
    if not lab_supports("tls"):
        return [unavailable("start_implicit_tls", "ms", LOWER, "start_server(tls=...)")]
    from smtplab.tls import default_lab_tls

    context = default_lab_tls().server_context()  # built (and cached) before any timing
    lab = lambda: _lab_start_stop(tls="implicit")[0]  # noqa: E731
    stock = lambda: _stock_start_stop(ssl_context=context)[0]  # noqa: E731
    lab(), stock()
    runs = interleaved(plan.repeat, {"smtplab": lab, "stock": stock}, budget=30)
    return [
        Figure(
            "start_implicit_tls",
            "ms",
            LOWER,
            [s * MS for s in runs["smtplab"]],
            [s * MS for s in runs["stock"]],
            note="start_server(tls='implicit') vs Controller(..., ssl_context=lab server context) + .start()",
        )
    ]


def measure_port_in_use(plan: Plan) -> list[Figure]:
    """Time to the error on a taken port; both sides in one fresh process, env override removed."""
    runs = run_worker(
        "port_in_use", str(plan.repeat), str(plan.port_stock_runs), timeout=60 + 10 * plan.port_stock_runs
    )
    return [
        Figure(
            "port_in_use",
            "ms",
            LOWER,
            [s * MS for s in runs["smtplab"]],
            [s * MS for s in runs["stock"]],
            note="start_server(port=taken) -> PortInUseError vs Controller(port=taken, ready_timeout=5).start() -> OSError",
        )
    ]


# -- throughput ------------------------------------------------------------------------------------


async def _lab_send(client: smtplab.Client, content: bytes, count: int) -> None:
    for _ in range(count):
        result = await client.send(SENDER, RECIPIENTS, content)
        if not result.ok:
            raise RuntimeError(f"lab server refused a message: {result!r}")


async def _lab_throughput(server: smtplab.LabServer, content: bytes, count: int, *, record: bool) -> float:
    async with smtplab.Client(server, record=record) as client:
        await _lab_send(client, content, THROUGHPUT_WARMUP)
        start = time.perf_counter()
        await _lab_send(client, content, count)
        return count / (time.perf_counter() - start)


async def _stock_throughput(port: int, content: bytes, count: int) -> float:
    async with aiosmtplib.SMTP(hostname=HOST, port=port, start_tls=False, timeout=30) as smtp:
        for _ in range(THROUGHPUT_WARMUP):
            await smtp.sendmail(SENDER, RECIPIENTS, content)
        start = time.perf_counter()
        for _ in range(count):
            await smtp.sendmail(SENDER, RECIPIENTS, content)
        return count / (time.perf_counter() - start)


def _lab_run(content: bytes, count: int, *, record: bool, limit: float) -> float:
    with lab_server(name="bench-throughput") as server:
        rate = run_async(_lab_throughput(server, content, count, record=record), timeout=limit)
        if server.mailbox.received != count + THROUGHPUT_WARMUP:
            raise RuntimeError(
                f"lab server captured {server.mailbox.received} of {count + THROUGHPUT_WARMUP} messages"
            )
    return rate


def _stock_run(content: bytes, count: int, *, limit: float) -> float:
    with stock_server(SinkHandler()) as controller:
        return run_async(_stock_throughput(controller.port, content, count), timeout=limit)


def measure_throughput(plan: Plan) -> list[Figure]:
    """1 KB messages over one connection: smtplab Client -> lab server vs aiosmtplib -> sink Controller.

    Three sides per round — transcripts on, transcripts off, stock — so both smtplab keys share
    the same stock runs. Every run gets a fresh server (started and stopped untimed), so the
    lab server's mailbox holds only that run's messages.
    """
    content, count = message(THROUGHPUT_SIZE), plan.throughput_messages
    limit = 30 + count / 20  # seconds per run, even at 20 msg/s
    sides: dict[str, Callable[[], float]] = {
        "smtplab": lambda: _lab_run(content, count, record=True, limit=limit),
        "no_transcript": lambda: _lab_run(content, count, record=False, limit=limit),
        "stock": lambda: _stock_run(content, count, limit=limit),
    }
    runs = interleaved(plan.repeat, sides, budget=60)
    return [
        Figure(
            "throughput_1conn",
            "msg/s",
            HIGHER,
            runs["smtplab"],
            runs["stock"],
            note="Client (transcript on) -> start_server() vs aiosmtplib.SMTP -> Controller with a sink handler",
        ),
        Figure(
            "throughput_1conn_no_transcript",
            "msg/s",
            HIGHER,
            runs["no_transcript"],
            runs["stock"],
            note="Client(record=False) -> start_server(); the server still records its side",
        ),
    ]


async def _fan_out(server: smtplab.LabServer, connections: int, total: int) -> float:
    """Split ``total`` messages evenly over ``connections`` clients sending at the same time."""
    content = message(THROUGHPUT_SIZE)
    clients = [smtplab.Client(server) for _ in range(connections)]
    try:
        await asyncio.gather(*(client.connect() for client in clients))
        await asyncio.gather(*(_lab_send(client, content, 1) for client in clients))  # EHLO + warm-up
        start = time.perf_counter()
        await asyncio.gather(*(_lab_send(client, content, total // connections) for client in clients))
        return total / (time.perf_counter() - start)
    finally:
        for client in clients:
            await client.__aexit__(None, None, None)


def measure_parallel(plan: Plan) -> list[Figure]:
    """The same messages over 8 connections vs 1, against a server that takes 20 ms per DATA."""
    total = plan.parallel_messages
    if lab_supports("reply_delay"):
        options: dict[str, Any] = {"reply_delay": PARALLEL_DELAY}
        how = f"start_server(reply_delay={PARALLEL_DELAY})"
    else:
        options = {"handler": DelayHandler(PARALLEL_DELAY)}
        how = f"a handler whose handle_DATA awaits asyncio.sleep({PARALLEL_DELAY})"
    limit = 30 + total * PARALLEL_DELAY * 3
    with lab_server(name="bench-parallel", **options) as server:
        sides = {
            "smtplab": lambda: run_async(_fan_out(server, PARALLEL_CONNECTIONS, total), timeout=limit),
            "stock": lambda: run_async(_fan_out(server, 1, total), timeout=limit),
        }
        runs = interleaved(plan.repeat, sides, budget=60)
    return [
        Figure(
            "throughput_parallel",
            "msg/s",
            SPEED_UP,
            runs["smtplab"],
            runs["stock"],
            note=f"{total} messages of 1 KB, smtplab Client: {PARALLEL_CONNECTIONS} connections (smtplab column) "
            f"vs 1 (stock column); server: {how}",
        )
    ]


# -- send_many -------------------------------------------------------------------------------------


async def _send_many_rate(server: smtplab.LabServer, connections: int, total: int) -> float:
    """Messages per second for one ``send_many`` call, connections and QUIT included."""
    batch = [(SENDER, RECIPIENTS, message(THROUGHPUT_SIZE))] * total
    start = time.perf_counter()
    result = await smtplab.send_many(server, batch, connections=connections, progress=False)
    elapsed = time.perf_counter() - start
    if not result.ok:
        raise RuntimeError(f"send_many did not deliver every message: {result!r}")
    return total / elapsed


async def _stock_pool_rate(port: int, connections: int, total: int) -> float:
    """The same with plain aiosmtplib: ``connections`` clients, the messages split evenly, gathered."""
    content = message(THROUGHPUT_SIZE)

    async def one_client(count: int) -> None:
        async with aiosmtplib.SMTP(hostname=HOST, port=port, start_tls=False, timeout=30) as smtp:
            for _ in range(count):
                await smtp.sendmail(SENDER, RECIPIENTS, content)

    start = time.perf_counter()
    await asyncio.gather(*(one_client(total // connections) for _ in range(connections)))
    return total / (time.perf_counter() - start)


def measure_send_many(plan: Plan) -> list[Figure]:
    """send_many over 8 connections vs 1, and vs plain aiosmtplib over 8, against a 20 ms server."""
    total = plan.parallel_messages
    limit = 30 + total * PARALLEL_DELAY * 3
    with lab_server(name="bench-send-many", reply_delay=PARALLEL_DELAY) as server:
        sides = {
            "eight": lambda: run_async(_send_many_rate(server, PARALLEL_CONNECTIONS, total), timeout=limit),
            "one": lambda: run_async(_send_many_rate(server, 1, total), timeout=limit),
            "stock": lambda: run_async(
                _stock_pool_rate(server.port, PARALLEL_CONNECTIONS, total), timeout=limit
            ),
        }
        runs = interleaved(plan.repeat, sides, budget=60)
    how = f"{total} messages of 1 KB to start_server(reply_delay={PARALLEL_DELAY}), connecting and QUIT included"
    return [
        Figure(
            "send_many_parallel",
            "msg/s",
            SPEED_UP,
            runs["eight"],
            runs["one"],
            note=f"send_many(connections={PARALLEL_CONNECTIONS}) (smtplab column) vs send_many(connections=1) "
            f"(stock column); {how}",
        ),
        Figure(
            "send_many_vs_stock",
            "msg/s",
            HIGHER,
            runs["eight"],
            runs["stock"],
            note=f"send_many(connections={PARALLEL_CONNECTIONS}) vs {PARALLEL_CONNECTIONS} plain aiosmtplib "
            f"clients splitting the messages evenly under asyncio.gather; {how}",
        ),
    ]


# -- TLS set-up ---------------------------------------------------------------------------------


async def _lab_setup(server: smtplab.LabServer, mode: str) -> float:
    client = smtplab.Client(server, tls=mode)  # the server's client context, shared and prebuilt
    start = time.perf_counter()
    await client.connect()  # with tls="starttls": connect, EHLO and STARTTLS
    if mode == "starttls" and not client.tls_active:
        await client.starttls()
    await client.ehlo()
    elapsed = time.perf_counter() - start
    if not client.tls_active:
        raise RuntimeError(f"Client(tls={mode!r}) is not inside TLS after set-up")
    closed = watch_close(client.smtp.protocol)
    await client.quit()
    await asyncio.wait_for(closed, 5)
    return elapsed


async def _stock_setup(port: int, mode: str, context: Any) -> float:
    smtp = aiosmtplib.SMTP(
        hostname=HOST, port=port, use_tls=mode == "implicit", start_tls=False, tls_context=context, timeout=30
    )
    start = time.perf_counter()
    await smtp.connect()
    await smtp.ehlo()
    if mode == "starttls":
        await smtp.starttls()
        await smtp.ehlo()
    elapsed = time.perf_counter() - start
    closed = watch_close(smtp.protocol)
    await smtp.quit()
    await asyncio.wait_for(closed, 5)
    return elapsed


def measure_tls_setup(plan: Plan) -> list[Figure]:
    """Per-connection TLS set-up: smtplab Client vs aiosmtplib, both with a prebuilt context."""
    keys = {"starttls": "tls_setup_starttls", "implicit": "tls_setup_implicit"}
    if not (lab_supports("tls") and client_supports("tls") and client_supports("starttls")):
        return [
            unavailable(key, "ms", LOWER, "start_server(tls=...) and Client.starttls()")
            for key in keys.values()
        ]
    from smtplab.tls import default_lab_tls

    lab_tls = default_lab_tls()  # what start_server(tls=...) uses; contexts built once, untimed
    server_context, client_context = lab_tls.server_context(), lab_tls.client_context()
    figures = []
    for mode, key in keys.items():
        stock_kwargs = (
            {"ssl_context": server_context} if mode == "implicit" else {"tls_context": server_context}
        )
        with (
            lab_server(name="bench-tls", tls=mode) as server,
            stock_server(SinkHandler(), **stock_kwargs) as stock,
        ):
            sides = {
                "smtplab": lambda mode=mode, server=server: run_async(_lab_setup(server, mode), timeout=30),
                "stock": lambda mode=mode, stock=stock: run_async(
                    _stock_setup(stock.port, mode, client_context), timeout=30
                ),
            }
            sides["smtplab"](), sides["stock"]()
            runs = interleaved(plan.tls_connections, sides, budget=30)
        steps = "connect + EHLO + STARTTLS + EHLO" if mode == "starttls" else "connect with TLS + EHLO"
        figures.append(
            Figure(
                key,
                "ms",
                LOWER,
                [s * MS for s in runs["smtplab"]],
                [s * MS for s in runs["stock"]],
                note=f"{steps}, one sample per connection; Client(tls={mode!r}) vs aiosmtplib.SMTP, same client context",
            )
        )
    return figures


# -- memory --------------------------------------------------------------------------------------


def measure_memory(plan: Plan) -> list[Figure]:
    """RSS per captured 10 KB message; each run a fresh process holding server and client."""
    count = plan.memory_messages
    limit = 60 + count / 20

    def side(name: str) -> Callable[[], float]:
        return lambda: float(run_worker("memory", name, str(count), timeout=limit)["per_message"])

    runs = interleaved(plan.memory_runs, {"smtplab": side("smtplab"), "stock": side("stock")}, budget=120)
    return [
        Figure(
            "memory_per_message",
            "B/msg",
            LOWER,
            runs["smtplab"],
            runs["stock"],
            note=f"{count} messages of 10 KB, aiosmtplib client in the server's process; lab server vs "
            "a handler keeping envelopes in a list",
        )
    ]


#: Every measurement, in the order they run, with the keys each one produces.
MEASURES: list[tuple[tuple[str, ...], Callable[[Plan], list[Figure]]]] = [
    (("import",), measure_import),
    (("start_plain", "stop"), measure_start_stop),
    (("start_implicit_tls",), measure_start_tls),
    (("port_in_use",), measure_port_in_use),
    (("throughput_1conn", "throughput_1conn_no_transcript"), measure_throughput),
    (("throughput_parallel",), measure_parallel),
    (("send_many_parallel", "send_many_vs_stock"), measure_send_many),
    (("tls_setup_starttls", "tls_setup_implicit"), measure_tls_setup),
    (("memory_per_message",), measure_memory),
]

KEYS: tuple[str, ...] = tuple(key for keys, _ in MEASURES for key in keys)
