"""`python -m bench hops [--publish]`: what the microservices' two internal hops cost over the monolith.

Both architectures are served at once from the same index and models. The same requests, with one new
token each (so that the hops are a visible part of the time), alternate between them one at a time, the
first of each pair alternating. Two figures:

- end to end: the paired median of microservices minus monolith, with its 95 % bootstrap interval. The
  target is at most 2 ms; it counts as met only when the whole interval is under 2 ms, and as missed only
  when the whole interval is over it.
- per hop, from the microservices' own logs: the orchestrator's `retrieve` (`generate`) stage time minus
  the vector (LLM) service's own logged handling time of that request, i.e. what carrying the call costs
  (client, connection, JSON, the server's framework).
"""

from __future__ import annotations

from pathlib import Path

from bench.core.config import REPO_ROOT, BenchSettings, publish_run
from bench.core.processes import Served, request_lines
from bench.core.stats import median_interval, paired_median_difference, summarize, within_limit
from bench.core.workload import MeasuredRun
from bench.serving.split import alternate, own_time

TARGET_MS = 2.0
NAMES = ("monolito", "microservicos")
PAGE = REPO_ROOT / "docs" / "performance.md"
BEGIN, END = "<!-- bench-hops:begin -->", "<!-- bench-hops:end -->"
LATEST = REPO_ROOT / "bench" / "results" / "latest" / "hops.json"
PAIRS_PER_C1_REQUEST = 5  # 120 pairs in a full run (a pair takes about 0.7 s), 10 in a quick one
STAGES = {"/retrieve": "retrieve", "/generate": "generate"}


def measure(settings: BenchSettings) -> Path:
    """Serve both, alternate the same one-token requests between them, and write hops-<stamp>.json."""
    run = MeasuredRun(settings, "hops")
    served: dict[str, Served] = {}
    try:
        for name in NAMES:
            served[name] = Served(name, run.workdir / f"{name}.log", run.env)
        for one in served.values():
            one.wait_ready()
        run.results["requests"] = alternate(
            served, settings, NAMES, settings.requests_c1 * PAIRS_PER_C1_REQUEST, max_new_tokens=1
        )
    finally:
        for one in served.values():
            one.stop()
    log = (run.workdir / "microservicos.log").read_text(errors="replace")
    own = {path: request_lines(log, path) for path in STAGES}
    run.results["summary"] = summarize_hops(run.results["requests"], own)
    return run.finish()


def summarize_hops(rows: list[dict], own: dict[str, list[tuple[float, float]]]) -> dict:
    """The paired end-to-end difference (microservices - monolith), the paired difference per stage, and
    each hop from the logs (stage time minus the service's own time, when exactly one line of that
    service falls inside the request)."""
    latency: dict[str, dict[int, float]] = {name: {} for name in NAMES}
    stages: dict[str, dict[str, dict[int, float]]] = {name: {s: {} for s in STAGES.values()} for name in NAMES}
    hops: dict[str, list[float]] = {path: [] for path in STAGES}
    both: list[float] = []
    for row in rows:
        if not row["ok"]:
            continue
        name, index = row["target"], row["index"]
        latency[name][index] = row["latency_ms"]
        timings = row.get("timings_ms") or {}
        for stage in STAGES.values():
            if stage in timings:
                stages[name][stage][index] = timings[stage]
        if name != "microservicos":
            continue
        inside = []
        for path, stage in STAGES.items():
            service = own_time(own[path], row)
            if service is not None and stage in timings:
                inside.append(timings[stage] - service)
                hops[path].append(inside[-1])
        if len(inside) == 2:
            both.append(sum(inside))
    paired = sorted(set(latency["monolito"]) & set(latency["microservicos"]))
    difference = paired_median_difference(
        [latency["monolito"][i] for i in paired], [latency["microservicos"][i] for i in paired]
    )
    per_stage = {}
    for stage in STAGES.values():
        common = sorted(set(stages["monolito"][stage]) & set(stages["microservicos"][stage]))
        per_stage[stage] = paired_median_difference(
            [stages["monolito"][stage][i] for i in common], [stages["microservicos"][stage][i] for i in common]
        )
    return {
        "difference_ms": difference,
        "stage_difference_ms": per_stage,
        "hop_ms": {path: summarize(values) for path, values in hops.items()},
        "both_hops_ms": median_interval(both),
        "latency_ms": {name: summarize(values.values()) for name, values in latency.items()},
        "target_ms": TARGET_MS,
        "verdict": within_limit(difference["low"], difference["high"], TARGET_MS),
        "pairs": len(paired),
        "failed": len([r for r in rows if not r["ok"]]),
    }


def _ms(value) -> str:
    return "n/a" if value is None else f"{value:,.2f} ms"


def table(results: dict) -> str:
    """The Markdown table of one run."""
    s = results["summary"]
    d, hop, both = s["difference_ms"], s["hop_ms"], s["both_hops_ms"]
    stage = s["stage_difference_ms"]
    return "\n".join(
        [
            "| what | median | 95 % interval |",
            "| --- | --- | --- |",
            f"| monolith, end to end ({s['latency_ms']['monolito'].get('n', 0)} requests) | "
            f"{_ms(s['latency_ms']['monolito'].get('p50'))} | |",
            f"| microservices, end to end ({s['latency_ms']['microservicos'].get('n', 0)} requests) | "
            f"{_ms(s['latency_ms']['microservicos'].get('p50'))} | |",
            f"| **microservices - monolith**, paired ({s['pairs']} pairs); target <= {TARGET_MS:.0f} ms: "
            f"**{s['verdict']}** | {_ms(d['difference'])} | {_ms(d['low'])} to {_ms(d['high'])} |",
            f"| of which the `retrieve` stage, paired | {_ms(stage['retrieve']['difference'])} | "
            f"{_ms(stage['retrieve']['low'])} to {_ms(stage['retrieve']['high'])} |",
            f"| of which the `generate` stage, paired | {_ms(stage['generate']['difference'])} | "
            f"{_ms(stage['generate']['low'])} to {_ms(stage['generate']['high'])} |",
            f"| the /retrieve hop (orchestrator's stage minus the vector service's own time) | "
            f"{_ms(hop['/retrieve'].get('p50'))} | p95 {_ms(hop['/retrieve'].get('p95'))} |",
            f"| the /generate hop (orchestrator's stage minus the LLM service's own time) | "
            f"{_ms(hop['/generate'].get('p50'))} | p95 {_ms(hop['/generate'].get('p95'))} |",
            f"| both hops of one request | {_ms(both.get('estimate'))} | {_ms(both.get('low'))} to "
            f"{_ms(both.get('high'))} |",
            "",
            f"{results['kind'].capitalize()} run of {results['started_utc'][:16]} UTC, {results['duration_s'] / 60:.1f} "
            f"min, load average {results['loadavg_start'][0]:.1f} at start and {results['loadavg_end'][0]:.1f} at end, "
            f"{(results.get('cpu_stall_ms_per_s') or 0):.0f} ms/s of CPU stall; {s['failed']} failed requests; one "
            "new token per answer.",
        ]
    )


def publish(path: Path) -> Path:
    """Copy a full run to bench/results/latest/hops.json and put its table into docs/performance.md."""
    return publish_run(path, LATEST, PAGE, (BEGIN, END), table)
