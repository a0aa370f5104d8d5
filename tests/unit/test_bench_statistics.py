"""The bench's statistics and verdicts on synthetic results: every branch that decides a published word."""

from __future__ import annotations

import copy
import json

import pytest

from bench.core import stats
from bench.serving import analysis, claims
from tests.support import ROOT

PUBLISHED = json.loads((ROOT / "bench" / "results" / "latest" / "results.json").read_text())


def level(latencies_ms, stall_ms_per_s=None, block=1, ok=None):
    """One target's data at one level: requests of the given latencies, in blocks of `block`."""
    requests = [
        {
            "started": 0.0,
            "finished": ms / 1000.0,
            "ok": True if ok is None else ok[i],
            "question": f"q{i % 4}",
            "timings_ms": {"retrieve": 1.0, "generate": ms - 2.0, "total": ms - 1.0},
        }
        for i, ms in enumerate(latencies_ms)
    ]
    blocks = -(-len(requests) // block)
    rates = stall_ms_per_s or [30.0] * blocks
    return {"requests": requests, "block_wall_s": [1.0] * blocks, "block_cpu_stall_ms": list(rates)}


# --- stats -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "low, high, side",
    [
        (1, 2, stats.ABOVE),
        (-2, -1, stats.BELOW),
        (-1, 1, stats.INCONCLUSIVE),
        (None, 1, stats.INCONCLUSIVE),
        (0, 1, stats.INCONCLUSIVE),
    ],
)
def test_side_of_decides_only_when_the_interval_excludes_zero(low, high, side):
    assert stats.side_of(low, high) == side


@pytest.mark.parametrize(
    "low, high, verdict",
    [
        (1, 4, stats.MET),
        (6, 9, stats.MISSED),
        (1, 9, stats.INCONCLUSIVE),
        (None, None, stats.INCONCLUSIVE),
        (-3, 5, stats.MET),
    ],
)
def test_a_target_is_met_only_when_the_whole_interval_is_within_the_limit(low, high, verdict):
    assert stats.within_limit(low, high, 5.0) == verdict


def test_median_interval_and_its_text():
    assert stats.median_interval([]) == {"estimate": None, "low": None, "high": None, "n": 0}
    result = stats.median_interval([10.0, 11.0, 12.0, 13.0, 14.0])
    assert result["estimate"] == 12.0 and 10.0 <= result["low"] <= 12.0 <= result["high"] <= 14.0 and result["n"] == 5
    assert stats.interval_text(None, 1) == "no interval (no data)"
    assert stats.interval_text(-1.25, 2.5, " s", 2) == "95 % CI [-1.25, +2.50] s"


def test_empty_samples_give_no_difference():
    assert stats.median_difference([], [1.0])["significant"] is False
    assert stats.paired_median_difference([], [])["difference"] is None
    assert stats.sign_test(0, 0) is None and stats.sign_test(8, 8) == 1 / 256
    assert stats.ratio(None, 1.0) is None and stats.ratio(2.0, 0) is None and stats.ratio(3.0, 2.0) == 0.5


def test_availability_is_time_weighted_from_the_requests():
    up, down = {"ok": True}, {"ok": False}
    outcomes = [
        {**up, "finished": 1.0},
        {**down, "finished": 2.0},
        {**down, "finished": 3.0},
        {**up, "finished": 6.0},
        {**down, "finished": 99.0},
    ]  # outside the window: ignored
    result = stats.availability(outcomes, 0.0, 10.0)
    assert result == {"window_s": 10.0, "down_s": 4.0, "availability": 0.6}
    # Down at the end of the window: counted to the end.
    assert stats.availability([{**down, "finished": 8.0}], 0.0, 10.0)["down_s"] == 2.0
    assert stats.availability([], 0.0, 10.0)["availability"] == 1.0
    assert stats.availability([], 5.0, 5.0)["availability"] is None


# --- analysis: CPU stall, pairing, targets ---------------------------------------------------------


def test_blocks_over_the_stall_limit_are_marked():
    data = level([100.0] * 4, stall_ms_per_s=[30.0, 900.0], block=2)
    assert analysis.stalled(data) == [False, False, True, True]
    assert analysis.latency_of(data, clean=True) == [100.0, 100.0]
    no_psi = {**data, "block_cpu_stall_ms": []}
    assert analysis.stall_rates(no_psi) == [None, None] and not any(analysis.stalled(no_psi))


def test_paired_comparison_leaves_out_stalled_and_failed_twins():
    a = level([100.0, 100.0, 100.0, 100.0, 100.0, 100.0])
    b = level(
        [110.0, 110.0, 5000.0, 110.0, 110.0, 10.0],
        stall_ms_per_s=[30, 30, 900, 30, 30, 30],
        ok=[True, True, True, True, True, False],
    )
    result = analysis._compare({"a": {"1": a}, "b": {"1": b}}, "1", "a", "b")
    assert result["n"] == 4 and result["left_out"] == 2
    assert result["difference"] == 10.0 and result["low"] == result["high"] == 10.0


def test_unpaired_comparison_above_concurrency_one():
    a, b = level([100.0] * 8, block=4), level([150.0] * 4 + [9000.0] * 4, stall_ms_per_s=[30.0, 900.0], block=4)
    result = analysis._compare({"a": {"4": a}, "b": {"4": b}}, "4", "a", "b")
    assert result["difference"] == 50.0 and result["left_out"] == 4 and "paired" not in result


@pytest.mark.parametrize("low, high, verdict", [(0.1, 0.2, "met"), (10.0, 12.0, "missed"), (-1.0, 8.0, "inconclusive")])
def test_target_verdict_follows_the_interval(low, high, verdict):
    target = analysis._target({"difference": (low + high) / 2, "low": low, "high": high, "n": 24}, 5.0)
    assert target["verdict"] == verdict and target["ci"] == [low, high] and target["n"] == 24
    assert analysis._target({}, 5.0)["verdict"] == "inconclusive"


def test_fault_summary_has_outage_seconds_availability_and_probes_during_the_outage():
    fault = {
        "first_failure_s": 1.0,
        "outage_s": 3.0,
        "timeline": {
            "requests": [
                {"started": -2.0, "finished": -1.0, "ok": True},
                {"started": 0.0, "finished": 1.0, "ok": False},
                {"started": 1.0, "finished": 3.0, "ok": False},
                {"started": 3.0, "finished": 4.0, "ok": True},
            ],
            "probes": [
                (0.5, "vector /retrieve", 200),
                (2.0, "vector /retrieve", 200),
                (2.5, "llm /ping", 0),
                (9.0, "llm /ping", 0),
            ],
        },
    }
    summary = analysis._faults([fault])[0]
    assert "timeline" not in summary
    assert summary["availability"] == {"window_s": 6.0, "down_s": 3.0, "availability": 0.5}
    assert summary["during_outage"] == {
        "llm /ping": {"count": 1, "failed": 1},
        "vector /retrieve": {"count": 1, "failed": 0},
    }


# --- claims: the published words -------------------------------------------------------------------


@pytest.mark.parametrize(
    "low, high, word", [(1.0, 2.0, "confirmed"), (-2.0, -1.0, "refuted"), (-1.0, 2.0, "inconclusive")]
)
def test_decide_says_inconclusive_with_the_interval_when_it_spans_zero(low, high, word):
    text = claims._decide({"difference": 0.5, "low": low, "high": high}, "confirmed", "refuted")
    assert text.startswith(word) and "95 % CI" in text
    assert ("spans zero" in text) == (word == "inconclusive")


@pytest.mark.parametrize("count, failed, word", [(12, 0, "confirmed"), (2, 0, "inconclusive"), (12, 1, "refuted")])
def test_isolation_needs_enough_probes_and_no_failure(count, failed, word):
    fault = {"during_outage": {"vector /retrieve": {"count": count, "failed": failed}}}
    assert claims._isolation(fault, "vector /retrieve").startswith(word)


def summary_of(results):
    return analysis.summarize_results(results)


def rows(results) -> dict[str, str]:
    return {row["claim"]: row["verdict"] for row in claims.claim_rows(summary_of(results))}


def test_published_results_give_decided_and_inconclusive_rows():
    verdicts = rows(PUBLISHED)
    # Which claims a published run decides depends on its figures (boots faster: inconclusive on torch,
    # refuted on CTranslate2); that it has both kinds, and what a single kill may say, does not.
    kinds = {verdict.split(" ")[0].rstrip(":,") for verdict in verdicts.values()}
    assert "inconclusive" in kinds and kinds & {"confirmed", "refuted"}, kinds
    boots = verdicts["Monolith: boots faster"]
    assert boots.startswith(("inconclusive", "confirmed", "refuted")) and "3 starts each" in boots
    assert verdicts["Monolith: cascading crashes"].startswith("inconclusive (one kill per architecture")
    assert "confirmed" not in verdicts["Monolith: cascading crashes"]


def test_a_difference_inside_the_noise_is_inconclusive():
    results = copy.deepcopy(PUBLISHED)
    mono, micro = results["latency"]["monolito"]["1"], results["latency"]["microservicos"]["1"]
    # Twins alternate: microservices 50 ms slower, then 50 ms faster: the interval spans zero.
    for i, (x, y) in enumerate(zip(mono["requests"], micro["requests"])):
        y["finished"] = y["started"] + (x["finished"] - x["started"]) + (0.05 if i % 2 else -0.05)
    mono["block_cpu_stall_ms"] = micro["block_cpu_stall_ms"] = [30.0] * len(mono["block_wall_s"])
    verdict = rows(results)["Monolith: lower internal latency (no HTTP calls)"]
    assert verdict.startswith("inconclusive") and "spans zero" in verdict


def test_memory_readings_that_disagree_are_inconclusive():
    results = copy.deepcopy(PUBLISHED)
    results["memory_idle"]["microservicos"]["rss_mib"] = results["memory_idle"]["monolito"]["rss_mib"] - 10
    assert rows(results)["Microservices: higher base RAM"].startswith("inconclusive")
    results["memory_steady"]["microservicos"]["rss_mib"] = results["memory_steady"]["monolito"]["rss_mib"] - 10
    assert rows(results)["Microservices: higher base RAM"].startswith("refuted")


@pytest.mark.parametrize("llm_share, word", [(0.5, "confirmed"), (0.97, "depends"), (None, "inconclusive")])
def test_independent_scaling_needs_both_readings_to_agree(llm_share, word):
    results = copy.deepcopy(PUBLISHED)
    for reading in ("memory_idle", "memory_steady"):
        mono = results[reading]["monolito"]["rss_mib"]
        share = llm_share if llm_share is not None else (0.5 if reading == "memory_idle" else 0.97)
        results[reading]["microservicos"]["by_role_mib"]["llm_service"] = share * mono
    assert rows(results)["Microservices: independent scaling"].startswith(word)


def test_boot_verdict_when_every_start_is_faster():
    results = copy.deepcopy(PUBLISHED)
    for run in results["cold_start"]["microservicos"]:
        run["ready_s"] = 30.0 + run["ready_s"]
    assert rows(results)["Monolith: boots faster"].startswith("confirmed")


def test_hop_verdict_without_service_logs_uses_the_floors():
    results = copy.deepcopy(PUBLISHED)
    results["service_log"] = []
    verdict = rows(results)["Microservices: pay network overhead"]
    assert verdict.split(":")[0] in ("confirmed", "inconclusive") and "retrieve hop adds" in verdict


def test_a_run_where_every_block_stalled_decides_nothing_and_still_renders(tmp_path):
    from bench.serving.charts import write_charts
    from bench.serving.report import render

    results = copy.deepcopy(PUBLISHED)
    for levels in results["latency"].values():
        for data in levels.values():
            data["block_cpu_stall_ms"] = [5000.0 * wall for wall in data["block_wall_s"]]
    results["summary"] = summary_of(results)
    targets = results["summary"]["targets"]
    assert (
        targets["monolith_vs_baseline"]["verdict"] == targets["microservices_vs_monolith"]["verdict"] == "inconclusive"
    )
    assert rows(results)["Monolith: lower internal latency (no HTTP calls)"].startswith("inconclusive")
    assert "*inconclusive*" in render(results)
    write_charts(results, tmp_path)
    assert (tmp_path / "overhead.png").exists()


def test_the_one_percentile_interpolates_as_numpy_does_by_default():
    import numpy as np

    values = [1000.0, 2000.0, 3000.0, 5.0]
    for q in (50, 95, 99):
        assert stats.percentile(values, q) == pytest.approx(float(np.percentile(values, q)))
    assert stats.percentile([1000.0, 2000.0, 3000.0], 95) == pytest.approx(2900.0)
    assert stats.percentile([], 50) is None


def test_window_summary_pairs_the_rounds_of_the_first_two_windows():
    from bench.probes.engine_profile import window_summary

    rps = {8: [0.70, 0.70, 0.72, 0.69, 0.70, 0.66], 32: [0.67, 0.70, 0.70, 0.74, 0.68, 0.65]}
    blocks = [{"window": w, "throughput_rps": v} for w, values in rps.items() for v in values]
    summary = window_summary(blocks, [8, 32])
    assert summary["requests_per_s_median"] == {8: 0.70, 32: 0.69}
    paired = summary["paired"]
    assert (paired["a"], paired["b"]) == (8, 32)
    assert paired["difference"] == pytest.approx(-0.015)  # median of 32's minus 8's, round by round
    assert paired["low"] < 0 < paired["high"] and not paired["significant"]


def test_window_summary_of_one_window_has_no_pair():
    from bench.probes.engine_profile import window_summary

    summary = window_summary([{"window": 16, "throughput_rps": 0.5}], [16])
    assert summary == {"requests_per_s_median": {16: 0.5}}
