"""`BENCH_QUICK=1` bench end to end: real servers, real models, a temporary results folder.

It checks that the results file, the report and the charts are produced and well-formed, and that a
quick run is never published. It asserts no timing: the machine may be busy.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.support import ROOT, child_env

pytestmark = pytest.mark.slow

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
CHARTS = ("latency", "overhead", "memory", "cold_start", "faults")


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """One quick bench run into a temporary BENCH_RESULTS_DIR; the README is left untouched."""
    results_dir = tmp_path_factory.mktemp("bench-results")
    readme_before = (ROOT / "docs" / "bench.md").read_text()
    completed = subprocess.run(
        [sys.executable, "-m", "bench", "run", "--publish"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        env=child_env(BENCH_QUICK="1", BENCH_RESULTS_DIR=str(results_dir)),
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    assert (ROOT / "docs" / "bench.md").read_text() == readme_before, "a quick run must not publish"
    files = sorted(results_dir.glob("*.json"))
    assert len(files) == 1, files
    return files[0]


def test_results_file_is_complete(quick_run):
    results = json.loads(quick_run.read_text())
    assert results["kind"] == "quick"
    for key in (
        "machine",
        "settings",
        "server_env",
        "loadavg_start",
        "loadavg_end",
        "cold_start",
        "latency",
        "memory_idle",
        "memory_steady",
        "memory_peak_mib",
        "faults",
        "summary",
        "duration_s",
    ):
        assert key in results, key
    assert results["machine"]["versions"]["torch"]
    for target in ("baseline", "monolito", "microservicos"):
        for level in map(str, results["settings"]["concurrency"]):
            requests = results["latency"][target][level]["requests"]
            assert requests and all(r["ok"] and r["timings_ms"]["total"] > 0 for r in requests), (target, level)
    summary = results["summary"]
    assert set(summary["targets"]) >= {
        "monolith_vs_baseline",
        "microservices_vs_monolith",
        "cold_start_monolito",
        "cold_start_microservicos",
    }
    assert {f["killed"] for f in summary["faults"]} == {"llm_service", "vector_service", "monolith"}
    for fault in summary["faults"]:
        assert fault["workers_restarted"] == [fault["killed"]]
        assert fault["first_answer_s"] is not None, fault
    assert summary["memory"]["microservicos"]["by_role_mib"]["llm_service"] > 0
    assert summary["cost"]["label"].startswith("ESTIMATE") and summary["cost"]["rows"]


def test_report_and_charts_are_written(quick_run):
    folder = quick_run.parent / quick_run.stem
    report = (folder / "report.md").read_text()
    for heading in (
        "## Serving-overhead targets",
        "## The README's claims",
        "## Latency and throughput",
        "## Cold start",
        "## Memory",
        "## Fault isolation",
        "## Cost per 1000 requests (estimate)",
    ):
        assert heading in report, heading
    for chart in CHARTS:
        data = (folder / f"{chart}.png").read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 5000, chart
        assert f"({chart}.png)" in report


def test_report_regenerates_but_a_quick_run_is_never_published(quick_run, tmp_path):
    from bench.serving.report import publish

    completed = subprocess.run(
        [sys.executable, "-m", "bench", "report", str(quick_run), "--no-publish"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=child_env(),
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    refused = subprocess.run(
        [sys.executable, "-m", "bench", "report", str(quick_run)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=child_env(),
    )
    assert refused.returncode == 2 and "is a quick run" in refused.stderr, refused.stderr[-2000:]
    with pytest.raises(ValueError, match="only a full run"):
        publish(quick_run, latest=tmp_path / "latest", readme=tmp_path / "README.md")
    assert not (tmp_path / "latest").exists()


def test_the_sweep_is_measured_and_charted(quick_run):
    results = json.loads(quick_run.read_text())
    sweep = results["sweep"]
    assert sorted(sweep["levels"], key=int) == ["1", "4"]
    for level, targets in sweep["levels"].items():
        assert set(targets) == {"baseline", "monolito", "microservicos"}, level
        for name, row in targets.items():
            assert row["ok"] >= 1 and row["errors"] == 0 and row["throughput_rps"] > 0, (level, name, row)
            assert ("ping" in row) == (name != "baseline")
    assert set(sweep["rss_before_mib"]) == set(sweep["rss_after_mib"]) == {"monolito", "microservicos"}
    folder = quick_run.parent / quick_run.stem
    assert (folder / "sweep.png").read_bytes().startswith(PNG_MAGIC)
    assert "| 4 | monolith |" in (folder / "sweep.md").read_text()
