"""The concurrency sweep's arithmetic, table, chart and client behaviour (bench/serving/sweep.py), on made-up outcomes."""

import time

import pytest

from bench.core.workload import Outcome
from bench.serving.sweep import (
    DOC_BEGIN,
    DOC_END,
    SweepSettings,
    _summary,
    closed_loop,
    sweep_table,
    update_sweep_doc,
    write_sweep,
)
from rag.errors import ConfigError


def outcomes(statuses_and_ms):
    return [Outcome(0.0, ms / 1000, status == 200, status) for status, ms in statuses_and_ms]


def test_summary_counts_throughput_latency_refusals_and_pings():
    row = _summary(
        outcomes([(200, 1000), (200, 2000), (200, 3000), (429, 5), (429, 15), (504, 55000)]),
        10.0,
        [20.0, 40.0, None],
        1234.0,
    )
    assert (row["requests"], row["ok"], row["refused"], row["errors"]) == (6, 3, 2, 1)
    assert row["error_kinds"] == ["504"] and row["throughput_rps"] == pytest.approx(0.3)
    assert row["latency_ms"] == pytest.approx({"p50": 2000, "p95": 2900, "p99": 2980})  # interpolated
    assert row["rate_429"] == pytest.approx(2 / 6) and row["refused_p99_ms"] == pytest.approx(14.9)
    assert row["ping"] == {"count": 3, "failed": 1, "p99_ms": pytest.approx(39.8), "max_ms": 40.0}
    assert row["peak_rss_mib"] == 1234.0


def sweep_of(rows):
    return {
        "settings": {"levels": [1, 8], "seconds": 5, "enabled": True},
        "levels": {"1": {"monolito": rows[0]}, "8": {"monolito": rows[1]}},
        "rss_before_mib": {"monolito": 1000.0},
        "rss_after_mib": {"monolito": 1050.0},
    }


def test_table_gives_throughput_against_one_client_and_memory_change():
    one = _summary(outcomes([(200, 2000)] * 4), 8.0, [10.0], None)
    eight = _summary(outcomes([(200, 4000)] * 20 + [(429, 3)] * 5), 8.0, [30.0], None)
    table = sweep_table(sweep_of([one, eight]))
    assert "| 1 | monolith | 0.50 | 1.00x | 2.00 / 2.00 / 2.00 | 0% | - | 10.0 | 0 |" in table
    assert "| 8 | monolith | 2.50 | 5.00x | 4.00 / 4.00 / 4.00 | 20% | 3.0 | 30.0 | 0 |" in table
    assert "| monolith | 1,000 MiB | 1,050 MiB | +5.0% |" in table


def test_chart_markdown_and_doc_markers(tmp_path):
    import json

    one = _summary(outcomes([(200, 2000)] * 4), 8.0, [10.0], 900.0)
    results = {
        "sweep": sweep_of([one, one]),
        "started_utc": "2026-11-29T17:00:00",
        "loadavg_start": [1.5, 1, 1],
        "machine": {"cpu_model": "Test CPU", "usable_cpus": 2},
        "settings": {"max_new_tokens": 48},
    }
    path = tmp_path / "20261129T170000Z.json"
    path.write_text(json.dumps(results))
    chart = write_sweep(path)
    assert chart.read_bytes().startswith(b"\x89PNG") and (chart.parent / "sweep.md").exists()
    doc = tmp_path / "performance.md"
    doc.write_text(f"# Perf\n\n{DOC_BEGIN}\nold\n{DOC_END}\n\nafter\n")
    update_sweep_doc(path, doc)
    text = doc.read_text()
    assert "old" not in text and "Test CPU" in text and "load average 1.5" in text and text.endswith("after\n")
    update_sweep_doc(path, doc)
    assert doc.read_text() == text


def test_settings_from_the_environment():
    assert SweepSettings.from_env({}, quick=False).levels == (1, 2, 4, 8, 16, 32)
    assert SweepSettings.from_env({}, quick=True) == SweepSettings(True, (1, 4), 3)
    assert not SweepSettings.from_env({"BENCH_SWEEP": "0"}, quick=False).enabled
    assert SweepSettings.from_env({"BENCH_SWEEP_LEVELS": "2,64", "BENCH_SWEEP_SECONDS": "9"}, False).levels == (2, 64)
    with pytest.raises(ConfigError, match="BENCH_SWEEP_LEVELS"):
        SweepSettings.from_env({"BENCH_SWEEP_LEVELS": "1,x"}, quick=False)


def test_a_refused_client_waits_retry_after_before_its_next_request():
    class AlwaysFull:
        name = "full"

        def call(self, payload):
            now = time.monotonic()
            return Outcome(now, now, False, 429, "overloaded")

    seen, wall = closed_loop(AlwaysFull(), 2, 1.5, ["q?"], 8, 3)
    assert len(seen) <= 4  # each client: one request, a 1 s wait, one more, then the window is over
    assert wall >= 1.0
