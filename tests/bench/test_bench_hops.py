"""bench/serving/hops.py's arithmetic and verdict on synthetic runs (the live run is `python -m bench hops`)."""

import pytest

from bench.core.processes import ServerProcess, child_env
from bench.serving import hops
from bench.serving.hops import summarize_hops, table


def run(extra_ms: float, spread_ms: float, pairs: int = 12):
    """Rows where the microservices take `extra_ms` (+- spread) longer than the monolith, split between the
    two stages, and the services' own log lines: each hop costs 1.5 ms of it."""
    rows, own, clock = [], {"/retrieve": [], "/generate": []}, 1000.0
    for index in range(pairs):
        for target in ("monolito", "microservicos") if index % 2 == 0 else ("microservicos", "monolito"):
            extra = 0.0 if target == "monolito" else extra_ms + spread_ms * (-1) ** index
            retrieve, generate = 100.0 + index + extra / 2, 500.0 + index + extra / 2
            rows.append(
                {
                    "index": index,
                    "target": target,
                    "since": clock,
                    "until": clock + 0.7,
                    "ok": True,
                    "status": 200,
                    "latency_ms": retrieve + generate + 10,
                    "timings_ms": {"retrieve": retrieve, "generate": generate},
                }
            )
            if target == "microservicos":
                own["/retrieve"].append((clock + 0.1, retrieve - 1.5))
                own["/generate"].append((clock + 0.65, generate - 1.5))
            clock += 1.0
    return rows, own


@pytest.mark.parametrize(
    "extra, spread, verdict", [(1.0, 0.2, "met"), (9.0, 0.5, "missed"), (2.0, 4.0, "inconclusive")]
)
def test_verdict_follows_the_interval(extra, spread, verdict):
    summary = summarize_hops(*run(extra, spread))
    assert summary["verdict"] == verdict, summary["difference_ms"]
    assert summary["pairs"] == 12
    assert summary["hop_ms"]["/retrieve"]["p50"] == pytest.approx(1.5)
    assert summary["both_hops_ms"]["estimate"] == pytest.approx(3.0)
    assert summary["stage_difference_ms"]["retrieve"]["difference"] == pytest.approx(extra / 2, abs=spread)


def test_ambiguous_or_failed_requests_are_left_out():
    rows, own = run(1.0, 0.2, pairs=3)
    assert rows[1]["target"] == "microservicos" and rows[4]["target"] == "monolito"
    own["/generate"].append((rows[1]["since"] + 0.3, 1.0))  # a second generation inside one request's window
    rows[4]["ok"] = False  # the monolith's request of the third pair
    summary = summarize_hops(rows, own)
    assert summary["failed"] == 1 and summary["pairs"] == 2
    assert summary["hop_ms"]["/retrieve"]["n"] == 3 and summary["hop_ms"]["/generate"]["n"] == 2
    assert summary["both_hops_ms"]["n"] == 2
    assert summarize_hops([], {"/retrieve": [], "/generate": []})["verdict"] == "inconclusive"


def test_table_states_the_verdict_and_the_load():
    results = {
        "kind": "full",
        "started_utc": "2026-12-03T16:00:00+00:00",
        "duration_s": 240,
        "loadavg_start": [0.8],
        "loadavg_end": [1.7],
        "cpu_stall_ms_per_s": 61.0,
        "summary": summarize_hops(*run(9.0, 0.5)),
    }
    text = table(results)
    assert "**missed**" in text and "load average 0.8 at start and 1.7 at end" in text
    assert "| the /retrieve hop (orchestrator's stage minus the vector service's own time) | 1.50 ms |" in text


def test_the_floor_is_measured_on_a_real_gunicorn_and_the_server_is_stopped(tmp_path, monkeypatch):
    started = []
    monkeypatch.setattr(hops, "ServerProcess", lambda *a, **k: started.append(ServerProcess(*a, **k)) or started[-1])
    floor = hops.measure_floor(tmp_path, child_env(), back_to_back=30, paced=10, pause_s=0.01)
    for name, calls in (("back_to_back", 30), ("paced", 10)):
        one = floor[name]
        assert one["n"] == calls and 0 < one["low"] <= one["estimate"] <= one["high"], (name, one)
    assert floor["body_bytes"] > 2000 and floor["pause_s"] == 0.01  # three passages, as a /generate call carries
    (server,) = started
    assert server.proc.poll() is not None and not server.tree()  # stopped, nothing left behind
    assert "POST /echo" not in server.log()  # bare: none of the services' request lines


def test_the_table_shows_the_floor_and_what_the_hops_cost_above_it():
    summary = summarize_hops(*run(9.0, 0.5))
    summary["floor_ms"] = {
        "body_bytes": 2600,
        "pause_s": 0.05,
        "back_to_back": {"estimate": 0.9, "low": 0.85, "high": 0.95, "n": 1000, "p95": 1.2},
        "paced": {"estimate": 1.4, "low": 1.3, "high": 1.5, "n": 300, "p95": 2.0},
    }
    results = {
        "kind": "full",
        "started_utc": "2026-12-04T16:00:00+00:00",
        "duration_s": 240,
        "loadavg_start": [0.8],
        "loadavg_end": [1.0],
        "cpu_stall_ms_per_s": 10.0,
        "summary": summary,
    }
    text = table(results)
    assert "a 2,600-byte body each way (1000 calls) | 0.90 ms | 0.85 ms to 0.95 ms |" in text
    assert (
        "one call every 50 ms, as a served request calls each service (300 calls) | 1.40 ms | 1.30 ms to 1.50" in text
    )
    paced = (
        "| two hops at the paced floor; the served hops above it | 2.80 ms | 2.60 ms to 3.00 ms; above it: 0.20 ms |"
    )
    assert paced in text
    del summary["floor_ms"]
    assert "floor" not in table(results)  # a run from before the floor renders as it did
