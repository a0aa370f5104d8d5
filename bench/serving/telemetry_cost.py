"""What metrics add to one request, measured in-process (`python -m bench telemetry --direct`).

The end-to-end comparison (bench/serving/telemetry.py) times whole requests of 2-3 s, and two identical
requests on this shared machine differ by a few per cent: wider than anything metrics could cost, so its
interval cannot settle a 2 % target. This measures the work itself. Per request, each process of an
architecture opens its request record, times its stages (rag/telemetry.py: with metrics on, two clock reads
and a dict update per stage; off, one context-variable read), records token usage, and when the response is
done writes its EMF objects as JSON lines through the services' own formatter (serving/telemetry.py's
`write_metrics`) into a file, as the services write to stdout. The same requests are run with metrics off;
blocks of requests alternate on and off, and the cost is the median of the per-block differences, with its
95 % bootstrap interval, in microseconds per request and as a share of the end-to-end run's c=1 median.

The request id and the request's own log line are the same with metrics on and off, so they are left out.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from bench.core.stats import median_interval
from rag import telemetry
from serving.telemetry import JsonFormatter, MetricsTarget, write_metrics

# Each process's share of one request, as the services write it (docs/operations.md lists the stages):
# (stages it times, whether it counts the request, whether it records token usage). The counts match the
# EMF objects of the end-to-end run: 9 per request on the monolith, 12 on the microservices.
PROCESSES = {
    "monolito": [
        (("admission", "embed", "search", "context", "queue", "prefill", "decode", "generation"), True, True),
    ],
    "microservicos": [
        (("admission", "hop_vector", "hop_llm"), True, False),  # the orchestrator
        (("embed", "search", "context"), False, False),  # the vector service
        (("queue", "prefill", "decode", "generation"), False, True),  # the LLM service
    ],
}
BLOCK = 200  # requests per block
BLOCKS = 40  # blocks per variant, alternating on and off


def _requests(processes: list, count: int, metrics: bool, target: MetricsTarget, quiet: MetricsTarget) -> float:
    """Seconds for `count` requests of every process, metrics on or off."""
    telemetry.configure(metrics)
    started = time.perf_counter()
    for index in range(count):
        for stages, counts, uses in processes:
            record = telemetry.open_request(f"bench-{index}", "POST /invocations")
            for name in stages:
                with telemetry.stage(name):
                    pass
            if uses:
                telemetry.usage(250, 24, 1.0)
            if metrics:
                write_metrics(record, target if counts else quiet, (time.perf_counter() - record.started) * 1000.0)
            telemetry.close_request(record)
    return time.perf_counter() - started


def measure(log_path: Path, c1_median_ms: dict[str, float | None], blocks: int = BLOCKS) -> dict:
    """The cost per request of each architecture named in `c1_median_ms`, and its share of that median."""
    dimensions = {"Endpoint": "bench", "Variant": "AllTraffic", "Architecture": "bench"}
    target = MetricsTarget("RagService", dimensions, True)
    quiet = MetricsTarget("RagService", dimensions, False)
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    handler = logging.FileHandler(log_path, mode="w")
    handler.setFormatter(JsonFormatter())
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    result = {"loadavg_start": os.getloadavg(), "block": BLOCK, "blocks": blocks, "architectures": {}}
    try:
        for arch in c1_median_ms:
            processes = PROCESSES[arch]
            _requests(processes, BLOCK, True, target, quiet)  # warm up both paths
            _requests(processes, BLOCK, False, target, quiet)
            costs = []
            for block in range(blocks):
                seconds = {}
                for metrics in (True, False) if block % 2 == 0 else (False, True):
                    seconds[metrics] = _requests(processes, BLOCK, metrics, target, quiet)
                costs.append((seconds[True] - seconds[False]) / BLOCK * 1e6)
            cost = median_interval(costs)
            base = c1_median_ms.get(arch)
            share = {
                key: (None if base is None or cost[key] is None else 100.0 * cost[key] / (base * 1000.0))
                for key in ("estimate", "low", "high")
            }
            documents = sum(len(stages) + (counts or uses) for stages, counts, uses in processes)
            result["architectures"][arch] = {
                "cost_us": cost,
                "c1_median_ms": base,
                "share_pct": share,
                "emf_objects_per_request": documents,
            }
    finally:
        telemetry.configure(False)
        handler.close()
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
    result["loadavg_end"] = os.getloadavg()
    return result


def rows(direct: dict, target_pct: float, verdict) -> list[str]:
    """Table rows for the published page, one per architecture."""
    lines = []
    for arch, entry in direct["architectures"].items():
        cost, share = entry["cost_us"], entry["share_pct"]
        lines.append(
            f"| {arch} | in-process, {direct['blocks']} x {direct['block']} requests | "
            f"{cost['estimate']:,.0f} us per request ({cost['low']:,.0f} to {cost['high']:,.0f}) | "
            f"{entry['emf_objects_per_request']} EMF objects | "
            + (
                "n/a"
                if share["estimate"] is None
                else f"{share['estimate']:+.3f} % ({share['low']:+.3f} % to {share['high']:+.3f} %)"
            )
            + f" | {verdict(share['low'], share['high'], target_pct)} |"
        )
    return lines
