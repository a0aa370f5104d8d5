"""`python -m bench split [--publish]`: what the split topology's extra hop costs, measured on one machine
against the one-container microservices.

Both serve from the same code: the one-container microservices (start.sh), and the split topology: an
LLM endpoint process (start.sh, RAG_SERVE=llm), the SageMaker Runtime stand-in
(sagemaker_lifecycle/local_runtime.py) and a front (start.sh, RAG_LLM_URL=sagemaker://...) whose boto3
goes through the stand-in. The same requests alternate between the two, one at a time. For each request
the LLM hop is the front's `generate` stage time minus the LLM service's own logged handling time: what
carrying the call costs (loopback HTTP with requests; or boto3, the stand-in and HTTP to the container).
The target is at most 10 ms more at the median; it counts as met only when the paired 95 % interval is
under 10 ms. The real SageMaker Runtime adds a network hop inside the region that no local run can show.
"""

from __future__ import annotations

import time
from pathlib import Path

from bench.core.config import REPO_ROOT, BenchSettings, publish_run
from bench.core.processes import Served, request_lines
from bench.core.stats import paired_median_difference, summarize
from bench.core.workload import HttpTarget, MeasuredRun, load_questions, payloads
from sagemaker_lifecycle.local_runtime import LocalRuntime

ENDPOINT = "rag-split-llm"
TARGET_MS = 10.0
PAGE = REPO_ROOT / "docs" / "bench.md"
BEGIN, END = "<!-- bench-split:begin -->", "<!-- bench-split:end -->"
LATEST = REPO_ROOT / "bench" / "results" / "latest" / "split.json"


def own_times(log_path: Path, path: str) -> list[tuple[float, float]]:
    """(epoch seconds, ms) of each generation the LLM service logged on `path` (its one line per request):
    /generate behind the one-container orchestrator, /invocations as the LLM endpoint."""
    return request_lines(log_path.read_text(errors="replace"), path)


def measure(settings: BenchSettings) -> Path:
    """Start both, alternate the same requests between them, and write split-<stamp>.json; return its path."""
    run = MeasuredRun(settings, "split")
    workdir, env, results = run.workdir, run.env, run.results
    served: dict[str, Served] = {}
    runtime = None
    try:
        served["microservicos"] = Served("microservicos", workdir / "microservicos.log", env)
        served["llm_endpoint"] = Served("microservicos", workdir / "llm-endpoint.log", {**env, "RAG_SERVE": "llm"})
        runtime = LocalRuntime({ENDPOINT: served["llm_endpoint"].url}).start()
        served["split"] = Served(
            "microservicos",
            workdir / "split-front.log",
            {
                **env,
                "RAG_LLM_URL": f"sagemaker://{ENDPOINT}",
                "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME": runtime.url,
                "AWS_ACCESS_KEY_ID": "local",
                "AWS_SECRET_ACCESS_KEY": "local",
                "AWS_DEFAULT_REGION": "us-east-1",
            },
        )
        for one in served.values():
            one.wait_ready()
        results["requests"] = alternate(served, settings)
    finally:
        for one in served.values():
            one.stop()
        if runtime is not None:
            runtime.stop()
    logs = {
        "microservicos": own_times(workdir / "microservicos.log", "/generate"),
        "split": own_times(workdir / "llm-endpoint.log", "/invocations"),
    }
    results["summary"] = summarize_hops(results["requests"], logs)
    return run.finish()


def alternate(
    served: dict,
    settings: BenchSettings,
    names: tuple[str, str] = ("microservicos", "split"),
    count: int | None = None,
    max_new_tokens: int | None = None,
) -> list[dict]:
    """Warm-up, then each of `count` requests (default requests_c1) to both targets back to back, the
    first one alternating."""
    targets = {name: HttpTarget(served[name].url, settings.request_timeout_s, name=name) for name in names}
    questions = load_questions()
    tokens = settings.max_new_tokens if max_new_tokens is None else max_new_tokens
    for payload in payloads(questions, settings.warmup, 0, tokens, settings.top_k):
        for target in targets.values():
            target.call(payload)
    rows = []
    count = settings.requests_c1 if count is None else count
    for index, payload in enumerate(payloads(questions, count, 0, tokens, settings.top_k)):
        for name in names if index % 2 == 0 else names[::-1]:
            since = time.time()
            outcome = targets[name].call(payload)
            rows.append(
                {
                    "index": index,
                    "target": name,
                    "since": since,
                    "until": time.time(),
                    "ok": outcome.ok,
                    "status": outcome.status,
                    "latency_ms": outcome.latency_ms,
                    "timings_ms": outcome.timings_ms,
                }
            )
    return rows


def own_time(lines: list[tuple[float, float]], row: dict) -> float | None:
    """The service's own time (ms) from the one line in `lines` logged while `row`'s request was open (2 ms
    of slack: the log's time stamps have millisecond precision); None unless exactly one line falls there."""
    inside = [ms for stamp, ms in lines if row["since"] - 0.002 <= stamp <= row["until"] + 0.002]
    return inside[0] if len(inside) == 1 else None


def summarize_hops(rows: list[dict], logs: dict[str, list[tuple[float, float]]]) -> dict:
    """Per request, front generate time minus the LLM service's own time (its log line falls inside the
    request); summaries per target, and the paired difference split - microservices."""
    hops: dict[str, dict[int, float]] = {"microservicos": {}, "split": {}}
    for row in rows:
        if not row["ok"]:
            continue
        own = own_time(logs[row["target"]], row)
        if own is not None:  # unambiguous: one generation logged while this request was open
            hops[row["target"]][row["index"]] = row["timings_ms"]["generate"] - own
    paired = sorted(set(hops["microservicos"]) & set(hops["split"]))
    difference = paired_median_difference(
        [hops["microservicos"][i] for i in paired], [hops["split"][i] for i in paired]
    )
    high, low = difference["high"], difference["low"]
    verdict = (
        "no data" if high is None else "met" if high <= TARGET_MS else "not met" if low > TARGET_MS else "inconclusive"
    )
    latency = {name: summarize([r["latency_ms"] for r in rows if r["target"] == name and r["ok"]]) for name in hops}
    return {
        "hop_ms": {name: summarize(values.values()) for name, values in hops.items()},
        "extra_hop_ms": difference,
        "target_ms": TARGET_MS,
        "verdict": verdict,
        "latency_ms": latency,
        "pairs": len(paired),
        "failed": len([r for r in rows if not r["ok"]]),
    }


def table(results: dict) -> str:
    """The Markdown table of one run."""
    s, hop = results["summary"], results["summary"]["hop_ms"]
    d = s["extra_hop_ms"]

    def ms(value):
        return "n/a" if value is None else f"{value:,.1f} ms"

    return "\n".join(
        [
            "| path of the LLM call | LLM hop p50 | p95 | requests, end to end p50 |",
            "| --- | --- | --- | --- |",
            f"| one-container microservices: loopback HTTP | {ms(hop['microservicos'].get('p50'))} | "
            f"{ms(hop['microservicos'].get('p95'))} | {s['latency_ms']['microservicos'].get('n', 0)}, "
            f"{ms(s['latency_ms']['microservicos'].get('p50'))} |",
            f"| split: boto3, SageMaker Runtime stand-in, HTTP to the LLM container | {ms(hop['split'].get('p50'))} | "
            f"{ms(hop['split'].get('p95'))} | {s['latency_ms']['split'].get('n', 0)}, {ms(s['latency_ms']['split'].get('p50'))} |",
            f"| **extra cost of the split**, paired median (95 % interval), {s['pairs']} pairs | {ms(d['difference'])} "
            f"({ms(d['low'])} to {ms(d['high'])}) | target <= {TARGET_MS:.0f} ms: **{s['verdict']}** | |",
            "",
            f"{results['kind'].capitalize()} run of {results['started_utc'][:16]} UTC, {results['duration_s'] / 60:.1f} min, "
            f"load average {results['loadavg_start'][0]:.1f} at start and {results['loadavg_end'][0]:.1f} at end, "
            f"{(results.get('cpu_stall_ms_per_s') or 0):.0f} ms/s of CPU stall; {s['failed']} failed requests; "
            f"{results.get('settings', {}).get('max_new_tokens', '?')} new tokens per answer (the hop does not depend on it).",
        ]
    )


def publish(path: Path) -> Path:
    """Copy a full run to bench/results/latest/split.json and put its table into docs/bench.md."""
    return publish_run(path, LATEST, PAGE, (BEGIN, END), table)
