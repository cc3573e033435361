"""Smoke test of bench/: the cheapest measurement runs and its JSON has the promised shape."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `pytest` run directly does not put the repository root on sys.path
    sys.path.insert(0, str(ROOT))

import bench  # noqa: E402
from bench.stats import LOWER, Figure  # noqa: E402

FIELDS = {"smtplab", "stock", "ratio", "unit", "smtplab_min", "smtplab_max", "stock_min", "stock_max", "runs"}


def test_start_and_stop_figures_have_the_promised_shape(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "bench.json"
    assert bench.main(["--only", "start_plain,stop", "--repeat", "2", "--json", str(output)]) == 0
    data = json.loads(output.read_text())
    assert set(data) == {"start_plain", "stop"}
    for figure in data.values():
        assert set(figure) >= FIELDS
        assert figure["unit"] == "ms"
        assert figure["runs"] == 2
        assert 0 < figure["smtplab_min"] <= figure["smtplab"] <= figure["smtplab_max"]
        assert 0 < figure["stock_min"] <= figure["stock"] <= figure["stock_max"]
        assert figure["ratio"] == pytest.approx(figure["smtplab"] / figure["stock"])
    printed = capsys.readouterr().out
    assert "start_plain" in printed and "stock min–max" in printed


def test_a_figure_not_available_is_null_in_json_and_named_in_the_table() -> None:
    figure = Figure("tls_setup_implicit", "ms", LOWER, available=False)
    assert figure.as_dict() is None
    assert "tls_setup_implicit  n/a (not available)" in bench.table([figure])


def test_every_key_is_known_to_the_command_line() -> None:
    assert set(bench.KEYS) == {
        "start_plain",
        "start_implicit_tls",
        "stop",
        "port_in_use",
        "throughput_1conn",
        "throughput_1conn_no_transcript",
        "throughput_parallel",
        "send_many_parallel",
        "send_many_vs_stock",
        "tls_setup_starttls",
        "tls_setup_implicit",
        "memory_per_message",
        "import",
    }
    with pytest.raises(SystemExit):
        bench.main(["--only", "no_such_key"])
