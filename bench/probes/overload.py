"""A burst against a real served architecture: `python -m bench.probes.overload`.

Starts the architecture as `make serve` does (bench/core/processes.py), warms it up, reads the RSS (VmRSS) of
the worker that holds the model once it has been idle, drives `--clients` closed-loop clients for
`--seconds` (a client waits Retry-After after a 429, as in the sweep) while /ping is polled, then reads
the RSS again right after the burst and after `--idle` seconds (and the whole process tree's, by role).
Prints one JSON line: the 429s' latency (and when the slowest were sent), the 200s', /ping's, and the RSS. Extra `--env NAME=VALUE` pairs go to the served processes, to compare
settings in one run.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from pathlib import Path

from bench.core.processes import Served
from bench.core.stats import percentile
from bench.core.workload import HttpTarget, load_questions, payloads, poll_ping
from bench.serving.sweep import closed_loop

ROLE = {"monolito": "monolith", "microservicos": "orchestrator"}


def worker_rss_mib(served: Served, role: str) -> float:
    """VmRSS of the architecture's gunicorn worker of `role`."""
    return served.worker(role).memory_info().rss / 2**20


def probe(arch: str, clients: int, seconds: float, idle_s: float, env: dict, max_new_tokens: int = 48) -> dict:
    """One served run: warm-up, RSS, the burst, RSS right after and after `idle_s`."""
    questions = load_questions()
    log = Path(tempfile.mkdtemp(prefix="overload-probe-")) / f"{arch}.log"
    served = Served(arch, log, env)
    try:
        served.wait_ready()
        target = HttpTarget(served.url, 120, name=arch)
        for request in payloads(questions, 4, 0, max_new_tokens, 3):  # the bench's warm-up shape
            target.call(request)
        time.sleep(
            idle_s
        )  # past the engine's idle hook (rag/generation/batching.py IDLE_S), as a quiet server would be
        role = "llm_service" if arch == "microservicos" else ROLE[arch]
        before, tree_before = worker_rss_mib(served, role), served.memory()
        pings, stop = [], threading.Event()
        pinger = threading.Thread(target=poll_ping, args=(served.url, stop, pings), daemon=True)
        pinger.start()
        try:
            outcomes, wall = closed_loop(target, clients, seconds, questions, max_new_tokens, 3)
        finally:
            stop.set()
            pinger.join(timeout=10)
        right_after = worker_rss_mib(served, role)
        time.sleep(idle_s)
        after, tree_after = worker_rss_mib(served, role), served.memory()
        refused = [o.latency_ms for o in outcomes if o.status == 429]
        ok = [o.latency_ms for o in outcomes if o.status == 200]
        answered = [ms for ms in pings if ms is not None]
        first = min((o.started for o in outcomes), default=0.0)
        slowest = sorted((o for o in outcomes if o.status == 429), key=lambda o: -o.latency_ms)[:6]
        return {
            "arch": arch,
            "env": env,
            "clients": clients,
            "seconds": seconds,
            "wall_s": round(wall, 1),
            "ok": len(ok),
            "refused": len(refused),
            "other": sorted({str(o.status or o.error_type) for o in outcomes if o.status not in (200, 429)}),
            "refused_ms": {f"p{q}": percentile(refused, q) for q in (50, 90, 99)},
            "slowest_refused": [[round(o.started - first, 2), round(o.latency_ms)] for o in slowest],
            "ok_ms": {f"p{q}": percentile(ok, q) for q in (50, 99)},
            "ping_ms": {
                "p50": percentile(answered, 50),
                "p99": percentile(answered, 99),
                "failed": len(pings) - len(answered),
            },
            "rss_mib": {
                "before": round(before, 1),
                "right_after": round(right_after, 1),
                "after_idle": round(after, 1),
                "change_after_idle": round(after / before - 1, 4),
            },
            "tree_rss_mib": {
                "before": round(tree_before["rss_mib"], 1),
                "after_idle": round(tree_after["rss_mib"], 1),
                "by_role_before": {k: round(v, 1) for k, v in tree_before["by_role_mib"].items()},
                "by_role_after_idle": {k: round(v, 1) for k, v in tree_after["by_role_mib"].items()},
            },
        }
    finally:
        served.stop()


def main(argv: list[str] | None = None) -> int:
    """Run one probe and print its JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="monolito", choices=sorted(ROLE))
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=45)
    parser.add_argument("--idle", type=float, default=5)
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE for the served processes")
    args = parser.parse_args(argv)
    env = dict(pair.split("=", 1) for pair in args.env)
    print(json.dumps(probe(args.arch, args.clients, args.seconds, args.idle, env)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
