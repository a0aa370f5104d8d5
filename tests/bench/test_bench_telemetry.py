"""bench/serving/telemetry.py (`make bench-telemetry`): its arithmetic and verdict on synthetic runs, and one
tiny live run through the real command (two monoliths, RAG_METRICS on and off), which also shows that a server
with RAG_METRICS=off writes no EMF line. It asserts no timing: the machine may be busy."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from bench.serving.telemetry import summarize, table
from tests.support import ROOT, child_env


def rows(overhead_pct: float, spread_pct: float, pairs: int = 16) -> list[dict]:
    """Pairs at one client whose "on" twin is `overhead_pct` slower, +- spread; blocks at eight clients."""
    out = []
    for index in range(pairs):
        off = 1000.0 + 10 * index
        on = off * (1 + (overhead_pct + spread_pct * (-1) ** index) / 100)
        out += [
            {"level": 1, "index": index, "variant": "off", "ok": True, "status": 200, "latency_ms": off},
            {"level": 1, "index": index, "variant": "on", "ok": True, "status": 200, "latency_ms": on},
            {"level": 8, "index": index, "variant": "off", "ok": True, "status": 200, "latency_ms": 2 * off},
            {"level": 8, "index": index, "variant": "on", "ok": True, "status": 200, "latency_ms": 2 * on},
        ]
    return out


@pytest.mark.parametrize(
    "overhead, spread, verdict", [(0.5, 0.2, "met"), (5.0, 0.2, "missed"), (1.8, 3.0, "inconclusive")]
)
def test_verdict_follows_the_interval(overhead, spread, verdict):
    summary = summarize(rows(overhead, spread))
    assert summary["1"]["verdict"] == verdict and summary["1"]["pairs"] == 16
    assert summary["1"]["low_pct"] <= summary["1"]["overhead_pct"] <= summary["1"]["high_pct"]
    assert summary["8"]["requests"] == {"on": 16, "off": 16} and summary["8"]["overhead_pct"] > 0


def test_failed_requests_leave_their_pair_out():
    data = rows(0.5, 0.2, pairs=4)
    data[0]["ok"] = False  # pair 0's "off" twin failed
    summary = summarize(data)
    assert summary["1"]["pairs"] == 3 and summary["1"]["failed"] == 1


@pytest.mark.slow
def test_a_quick_live_run(tmp_path):
    page_before = (ROOT / "docs" / "operations.md").read_text()
    completed = subprocess.run(
        [sys.executable, "-m", "bench", "telemetry", "--arch", "monolito", "--publish"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env=child_env(BENCH_QUICK="1", BENCH_RESULTS_DIR=str(tmp_path)),
    )
    assert completed.returncode == 0 and "not published" in completed.stderr, completed.stderr[-3000:]
    assert (ROOT / "docs" / "operations.md").read_text() == page_before
    (path,) = tmp_path.glob("telemetry-*.json")
    results = json.loads(path.read_text())
    entry = results["architectures"]["monolito"]
    assert entry["emf_lines"]["off"] == 0 and entry["emf_lines"]["on"] > 0  # RAG_METRICS=off writes none
    assert set(entry["summary"]) == {"1", "2"} and not any(s["failed"] for s in entry["summary"].values())
    assert "| monolito | 1 (2 pairs) |" in completed.stdout == table(results) + "\n"
    # The in-process measurement does the work the live service did: as many EMF objects per request.
    direct = results["direct"]["architectures"]["monolito"]
    answered = results["settings"]["warmup"] + sum(1 for row in entry["rows"] if row["variant"] == "on")
    assert entry["emf_lines"]["on"] == direct["emf_objects_per_request"] * answered
    assert direct["cost_us"]["estimate"] > 0 and direct["share_pct"]["estimate"] is not None
    assert "| monolito | in-process, 4 x 200 requests |" in completed.stdout
