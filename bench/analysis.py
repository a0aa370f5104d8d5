"""From raw measurements to the figures the report quotes: latency, overhead, cold start, memory,
the serving-overhead targets, fault outcomes and the cost estimate. Pure functions of the results dict,
so `make bench-report` can recompute everything from a results file."""
from __future__ import annotations

from bench.cost import estimate_costs
from bench.stats import median_difference, paired_median_difference, percentile, ratio, sign_test, summarize

ARCHS = ("monolito", "microservicos")
TARGETS = ("baseline", *ARCHS)
# The serving-overhead targets of the issue (a benchmark, not a test assertion).
MONOLITH_MAX_OVERHEAD = 0.05  # monolith p50 within 5 % of the in-process baseline at concurrency 1
MICRO_MAX_EXTRA_MS = 5.0  # microservices p50 within 5 ms of the monolith's
COLD_START_MAX_EXTRA_S = 2.0  # cold start to /ping 200 within 2 s of model-load time


def _ok(level_data: dict) -> list[dict]:
    return [r for r in level_data["requests"] if r["ok"]]


def latency_of(level_data: dict) -> list[float]:
    """End-to-end milliseconds of the answered requests."""
    return [(r["finished"] - r["started"]) * 1000.0 for r in _ok(level_data)]


def stage_of(level_data: dict, stage: str) -> list[float]:
    """A stage from the server's timings_ms; `remainder` is end-to-end minus the server's total."""
    if stage == "remainder":
        return [(r["finished"] - r["started"]) * 1000.0 - r["timings_ms"]["total"] for r in _ok(level_data)]
    return [r["timings_ms"][stage] for r in _ok(level_data)]


def floors(level_data: dict, stage: str | None = None) -> dict[str, float]:
    """Per question, the fastest answered repeat (end to end, or one stage): what a target costs when
    nothing else competes for the CPUs. Bursts of load from neighbours only ever add time."""
    best: dict[str, float] = {}
    for r in _ok(level_data):
        if "question" not in r:
            continue
        value = (r["finished"] - r["started"]) * 1000.0 if stage is None else r["timings_ms"][stage]
        best[r["question"]] = min(best.get(r["question"], value), value)
    return best


def floor_difference(latency: dict, level: str, a: str, b: str, stage: str | None = None) -> dict:
    """b's floor minus a's, per question: the median, and a sign test of "b is slower" / "b is faster"."""
    fa, fb = floors(latency[a][level], stage), floors(latency[b][level], stage)
    diffs = [fb[q] - fa[q] for q in sorted(set(fa) & set(fb))]
    if not diffs:
        return {"difference": None, "questions": 0}
    slower, faster = sum(d > 0 for d in diffs), sum(d < 0 for d in diffs)
    return {"difference": percentile(diffs, 50), "relative": percentile([fb[q] / fa[q] - 1 for q in fa if q in fb], 50),
            "questions": len(diffs), "slower": slower, "faster": faster,
            "p_slower": sign_test(slower, len(diffs)), "p_faster": sign_test(faster, len(diffs))}


def _latency_summary(latency: dict) -> dict:
    out = {}
    for target, levels in latency.items():
        out[target] = {}
        for level, data in levels.items():
            answered = len(_ok(data))
            out[target][level] = {
                "e2e_ms": summarize(latency_of(data)),
                "cpu_stall_ms_per_s": sum(data.get("block_cpu_stall_ms", [])) / sum(data["block_wall_s"])
                if data.get("block_cpu_stall_ms") else None,
                "throughput_rps": answered / sum(data["block_wall_s"]) if data["block_wall_s"] else None,
                "errors": len(data["requests"]) - answered,
                "stages_ms": {stage: summarize(stage_of(data, stage))
                              for stage in ("retrieve", "generate", "total", "remainder")},
            }
    return out


def _compare(latency: dict, level: str, a: str, b: str) -> dict:
    """b against a. At concurrency 1 the requests are twins (same question, run back to back), so the
    paired difference removes most of the machine's drift; above 1, queueing breaks the pairing."""
    first, second = latency[a][level]["requests"], latency[b][level]["requests"]
    if level == "1" and len(first) == len(second) and all(x["ok"] and y["ok"] for x, y in zip(first, second)):
        return paired_median_difference(latency_of(latency[a][level]), latency_of(latency[b][level]))
    return median_difference(latency_of(latency[a][level]), latency_of(latency[b][level]))


def _overhead(latency: dict) -> dict:
    """Each architecture against the baseline, and microservices against the monolith, per level."""
    out = {}
    for level in latency.get("baseline", {}):
        base = latency_of(latency["baseline"][level])
        row = {}
        for arch in ARCHS:
            values = latency_of(latency[arch][level])
            row[arch] = {"p50_vs_baseline": _compare(latency, level, "baseline", arch),
                         "floor_vs_baseline": floor_difference(latency, level, "baseline", arch),
                         "p50_ratio": ratio(percentile(values, 50), percentile(base, 50)),
                         "p95_ratio": ratio(percentile(values, 95), percentile(base, 95))}
        row["microservicos_vs_monolito"] = _compare(latency, level, "monolito", "microservicos")
        row["floor_microservicos_vs_monolito"] = floor_difference(latency, level, "monolito", "microservicos")
        row["floor_hops_ms"] = {stage: floor_difference(latency, level, "monolito", "microservicos", stage)
                                for stage in ("retrieve", "generate")}
        row["internal_http_ms"] = {
            stage: (percentile(stage_of(latency["microservicos"][level], stage), 50) or 0.0)
            - (percentile(stage_of(latency["monolito"][level], stage), 50) or 0.0) for stage in ("retrieve", "generate")}
        out[level] = row
    return out


def _hops_from_logs(results: dict) -> dict:
    """At concurrency 1, per microservices request: the orchestrator's stage time minus the internal
    service's own logged handling time, i.e. what each HTTP hop (client, connection, JSON, Flask) costs."""
    level = results["latency"].get("microservicos", {}).get("1")
    log = results.get("service_log") or []
    if not level or not log or not level.get("block_clock"):
        return {}
    hops = {"/retrieve": [], "/generate": []}
    service = {"/retrieve": [], "/generate": []}
    for request, (start, end) in zip(level["requests"], level["block_clock"]):
        inside = [(path, ms) for stamp, path, ms in log if start <= stamp <= end + 0.05]
        for path, stage in (("/retrieve", "retrieve"), ("/generate", "generate")):
            own = [ms for p, ms in inside if p == path]
            if request["ok"] and len(own) == 1:
                hops[path].append(request["timings_ms"][stage] - own[0])
                service[path].append(own[0])
    return {"hop_ms": {path: summarize(values) for path, values in hops.items()},
            "service_own_ms": {path: summarize(values) for path, values in service.items()}}


def _cold_start(cold: dict) -> dict:
    load = [run["model_load_s"] for run in cold["baseline"]]
    out = {"model_load_s": summarize(load),
           "baseline_first_request_ms": summarize([run["first_request_ms"] for run in cold["baseline"]])}
    for arch in ARCHS:
        ready = [run["ready_s"] for run in cold[arch]]
        reported = [max(run["self_reported_load_s"].values(), default=0.0) for run in cold[arch]]
        out[arch] = {"ready_s": summarize(ready), "self_reported_load_s": summarize(reported),
                     # What serving adds around the model load: scripts, gunicorn, imports, /ping polling.
                     "startup_overhead_s": summarize([r - load_s for r, load_s in zip(ready, reported)]),
                     "first_request_ms": summarize([run["first_request_ms"] for run in cold[arch]]),
                     "excess_over_model_load_s": percentile(ready, 50) - percentile(load, 50)}
    return out


def _memory(results: dict) -> dict:
    base = results["cold_start"]["baseline"]
    out = {"baseline": {"rss_mib": percentile([r["rss_mib"] for r in base], 50),
                        "pss_mib": percentile([r["pss_mib"] for r in base], 50)}}
    for arch in ARCHS:
        steady = results["memory_steady"][arch]
        out[arch] = {"steady_rss_mib": steady["rss_mib"], "steady_pss_mib": steady["pss_mib"],
                     "by_role_mib": steady["by_role_mib"], "idle_rss_mib": results["memory_idle"][arch]["rss_mib"],
                     "peak_rss_mib": results["memory_peak_mib"][arch]}
    return out


def _targets(latency: dict, overhead: dict, cold: dict) -> dict:
    """The issue's serving-overhead targets, from the (paired, at concurrency 1) median differences."""
    level = "1" if "1" in latency["baseline"] else min(latency["baseline"], key=int)
    base = percentile(latency_of(latency["baseline"][level]), 50)
    mono = overhead[level]["monolito"]["p50_vs_baseline"]
    micro = overhead[level]["microservicos_vs_monolito"]
    mono_pct = 100.0 * mono["difference"] / base
    mono_floor = overhead[level]["monolito"]["floor_vs_baseline"]
    micro_floor = overhead[level]["floor_microservicos_vs_monolito"]
    out = {"concurrency": int(level), "baseline_p50_ms": base,
           # The same targets on the per-question floors, which a neighbour's burst of load cannot inflate.
           "on_floors": {"monolith_vs_baseline_pct": 100 * (mono_floor.get("relative") or 0.0),
                         "monolith_met": 100 * (mono_floor.get("relative") or 0.0) <= 100 * MONOLITH_MAX_OVERHEAD,
                         "microservices_vs_monolith_ms": micro_floor.get("difference"),
                         "microservices_met": (micro_floor.get("difference") or 0.0) <= MICRO_MAX_EXTRA_MS},
           "monolith_vs_baseline": {"value_pct": mono_pct, "value_ms": mono["difference"],
                                    "ci_ms": [mono["low"], mono["high"]], "limit_pct": 100 * MONOLITH_MAX_OVERHEAD,
                                    "met": mono_pct <= 100 * MONOLITH_MAX_OVERHEAD},
           "microservices_vs_monolith": {"value_ms": micro["difference"], "ci_ms": [micro["low"], micro["high"]],
                                         "limit_ms": MICRO_MAX_EXTRA_MS, "met": micro["difference"] <= MICRO_MAX_EXTRA_MS}}
    for arch in ARCHS:
        extra = cold[arch]["excess_over_model_load_s"]
        out[f"cold_start_{arch}"] = {"value_s": extra, "limit_s": COLD_START_MAX_EXTRA_S,
                                     "met": extra <= COLD_START_MAX_EXTRA_S}
    return out


def _faults(faults: list) -> list:
    return [{key: value for key, value in fault.items() if key != "timeline"} for fault in faults]


def summarize_results(results: dict) -> dict:
    """Every figure the report, the charts and the README table use."""
    latency = _latency_summary(results["latency"])
    overhead = _overhead(results["latency"])
    cold = _cold_start(results["cold_start"])
    summary = {"latency": latency, "overhead": overhead, "cold_start": cold,
               "memory": _memory(results), "targets": _targets(results["latency"], overhead, cold),
               "faults": _faults(results.get("faults", [])), "hops_from_logs": _hops_from_logs(results)}
    summary["cost"] = estimate_costs(summary, results["machine"])
    return summary
