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

And the floor those hops stand on: the same client calling a bare Flask app under the services' own
Gunicorn settings (bench/serving/bare_app.py), with a body the size of a `/generate` call, alone, after
both architectures have stopped. Twice: back to back, and paced, one call every PAUSE_S, as a served request
calls each service (the server idle in between, so its threads and the CPU wake up for each call, which
costs about as much again on this VM). Two hops cannot cost less than two paced calls.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from bench.core.config import REPO_ROOT, BenchSettings, publish_run
from bench.core.processes import Served, ServerProcess, child_env, free_port, request_lines, wait_for_status
from bench.core.stats import median_interval, paired_median_difference, summarize, within_limit
from bench.core.workload import MeasuredRun
from bench.serving.split import alternate, own_time
from rag.clients.http import ServiceClient

TARGET_MS = 2.0
NAMES = ("monolito", "microservicos")
PAGE = REPO_ROOT / "docs" / "performance.md"
BEGIN, END = "<!-- bench-hops:begin -->", "<!-- bench-hops:end -->"
LATEST = REPO_ROOT / "bench" / "results" / "latest" / "hops.json"
PAIRS_PER_C1_REQUEST = 5  # 120 pairs in a full run (a pair takes about 0.7 s), 10 in a quick one
STAGES = {"/retrieve": "retrieve", "/generate": "generate"}
# Calls per floor (after FLOOR_WARMUP, not counted): back to back, and paced one every PAUSE_S.
FLOOR_CALLS = {"full": {"back_to_back": 1000, "paced": 300}, "quick": {"back_to_back": 40, "paced": 20}}
FLOOR_WARMUP = 50
PAUSE_S = 0.05  # beyond ~50 ms the paced figure no longer grows (measured with 0.05 and 0.3 s)
SAMPLE_DOCS = REPO_ROOT / "data" / "sample"


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
    calls = FLOOR_CALLS[run.results["kind"]]
    print(f"hops: the floor, {calls} calls to a bare Gunicorn + Flask app", file=sys.stderr, flush=True)
    run.results["summary"]["floor_ms"] = measure_floor(run.workdir, child_env(**run.env), **calls)
    return run.finish()


def floor_payload() -> dict:
    """A body shaped and sized like the orchestrator's /generate call: a question and three passages of
    the sample documents (800 characters each, the order of the index's chunks)."""
    texts = [path.read_text()[:800] for path in sorted(SAMPLE_DOCS.iterdir())[:3]]
    passages = [{"text": text, "source": f"doc-{i}.md", "score": 0.5, "chunk": i} for i, text in enumerate(texts)]
    return {"query": "When does the first ferry leave the north pier?", "passages": passages, "max_new_tokens": 1}


def measure_floor(workdir: Path, env: dict, back_to_back: int, paced: int, pause_s: float = PAUSE_S) -> dict:
    """Serve bench/serving/bare_app.py under serving/gunicorn_conf.py and time POSTs of floor_payload()
    through ServiceClient, one at a time: `back_to_back` calls, then `paced` calls `pause_s` apart. For each,
    the median per call, its 95 % interval and p95."""
    port = free_port()
    argv = [sys.executable, "-m", "gunicorn", "--config", "python:serving.gunicorn_conf", "--bind"]
    server = ServerProcess(
        [*argv, f"127.0.0.1:{port}", "bench.serving.bare_app:create_app()"], env, workdir / "floor.log"
    )
    try:
        wait_for_status(f"http://127.0.0.1:{port}/ping", deadline_s=60.0, proc=server.proc)
        client, payload = ServiceClient("floor", f"http://127.0.0.1:{port}"), floor_payload()
        result: dict = {"body_bytes": len(json.dumps(payload)), "pause_s": pause_s}
        for name, calls, pause in (("back_to_back", back_to_back, 0.0), ("paced", paced, pause_s)):
            times = []
            for call in range(FLOOR_WARMUP + calls):
                if pause and call >= FLOOR_WARMUP:
                    time.sleep(pause)
                started = time.perf_counter()
                if client.post("/echo", payload, None) != payload:
                    raise RuntimeError("the bare app did not echo the body")
                if call >= FLOOR_WARMUP:
                    times.append((time.perf_counter() - started) * 1000.0)
            result[name] = {**median_interval(times), "p95": summarize(times).get("p95")}
    finally:
        server.stop()
    return result


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


def _floor_rows(summary: dict) -> list[str]:
    """The floor's rows: one bare call back to back and paced, two paced calls, and what the served hops
    cost above them (none for a run made before the floor was measured)."""
    floor, both = summary.get("floor_ms"), summary["both_hops_ms"]
    if not floor or "paced" not in floor:
        return []
    hot, paced = floor["back_to_back"], floor["paced"]
    above = None if both.get("estimate") is None else both["estimate"] - 2 * paced["estimate"]
    bare = "the same client calling a bare Flask app under the same Gunicorn settings (no telemetry, no model)"
    return [
        f"| floor, back to back: {bare}, a {floor['body_bytes']:,}-byte body each way ({hot['n']} calls) | "
        f"{_ms(hot['estimate'])} | {_ms(hot['low'])} to {_ms(hot['high'])} |",
        f"| floor, paced: the same, one call every {floor['pause_s'] * 1000:.0f} ms, as a served request calls "
        f"each service ({paced['n']} calls) | {_ms(paced['estimate'])} | {_ms(paced['low'])} to {_ms(paced['high'])} |",
        f"| two hops at the paced floor; the served hops above it | {_ms(2 * paced['estimate'])} | "
        f"{_ms(2 * paced['low'])} to {_ms(2 * paced['high'])}; above it: {_ms(above)} |",
    ]


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
            *_floor_rows(s),
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
