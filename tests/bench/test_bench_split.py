"""bench/serving/split.py's hop arithmetic and verdict on synthetic runs (the live run is `python -m bench split`)."""

import pytest

from bench.serving.split import summarize_hops, table


def run(extra_ms: float, spread_ms: float, pairs: int = 12):
    """Rows and LLM-service logs where the split's hop is `extra_ms` above the loopback one, +- spread."""
    rows, logs, clock = [], {"microservicos": [], "split": []}, 1000.0
    for index in range(pairs):
        for target, hop in (("microservicos", 3.0), ("split", 3.0 + extra_ms + spread_ms * (-1) ** index)):
            own = 500.0 + index
            rows.append(
                {
                    "index": index,
                    "target": target,
                    "since": clock,
                    "until": clock + 0.6,
                    "ok": True,
                    "status": 200,
                    "latency_ms": own + hop + 20,
                    "timings_ms": {"generate": own + hop},
                }
            )
            logs[target].append((clock + 0.55, own))
            clock += 1.0
    return rows, logs


@pytest.mark.parametrize(
    "extra, spread, verdict", [(4.0, 0.5, "met"), (25.0, 0.5, "not met"), (9.0, 6.0, "inconclusive")]
)
def test_verdict_follows_the_interval(extra, spread, verdict):
    summary = summarize_hops(*run(extra, spread))
    assert summary["verdict"] == verdict, summary["extra_hop_ms"]
    assert summary["pairs"] == 12 and summary["hop_ms"]["microservicos"]["p50"] == pytest.approx(3.0)


def test_ambiguous_or_failed_requests_are_left_out():
    rows, logs = run(4.0, 0.5, pairs=3)
    logs["split"].append((rows[1]["since"] + 0.1, 1.0))  # a second generation inside request 0's window
    rows[2]["ok"] = False
    summary = summarize_hops(rows, logs)
    assert summary["pairs"] == 1 and summary["failed"] == 1
    assert summarize_hops(rows, {"microservicos": [], "split": []})["verdict"] == "no data"


def test_table_states_the_verdict_and_the_load():
    rows, logs = run(4.0, 0.5)
    results = {
        "kind": "full",
        "started_utc": "2026-11-29T16:00:00+00:00",
        "duration_s": 300,
        "loadavg_start": [1.0],
        "loadavg_end": [1.5],
        "cpu_stall_ms_per_s": 120.0,
        "summary": summarize_hops(rows, logs),
    }
    text = table(results)
    assert "target <= 10 ms: **met**" in text and "load average 1.0 at start" in text
