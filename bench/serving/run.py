"""The phases of `make bench`, in order, with every started process stopped on the way out.

1. cold starts: model load in a fresh process (the baseline), then each architecture from nothing to
   /ping 200, `cold_starts` times; the last instance of each stays up for the next phases;
2. the in-process baseline is loaded here, and every target is warmed up (excluded from figures);
3. latency: at each concurrency, blocks of the same requests alternate between the targets;
4. memory: peak RSS sampled during phase 3, steady RSS and PSS when idle afterwards;
5. faults: the LLM worker, then the vector worker of the microservices, then the monolith's worker.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from datetime import UTC, datetime
from pathlib import Path

from tqdm import tqdm

from bench.core.config import REPO_ROOT, BenchSettings
from bench.core.machine import cpuinfo, package_versions
from bench.core.processes import MemorySampler, Served, child_env
from bench.core.workload import HttpTarget, InProcessTarget, cpu_stall_ms, load_questions, payloads, run_block
from bench.serving.analysis import summarize_results
from bench.serving.faults import run_fault
from bench.serving.inprocess import load_pipeline
from bench.serving.sweep import SweepSettings, run_sweep

ARCHITECTURES = ("monolito", "microservicos")
PACKAGES = (
    "torch",
    "transformers",
    "sentence-transformers",
    "faiss-cpu",
    "flask",
    "gunicorn",
    "requests",
    "numpy",
    "psutil",
    "matplotlib",
)


def machine_info() -> dict:
    """What ran the bench: CPU, memory, OS, Python, package versions and the git commit."""
    import psutil

    lines = cpuinfo()
    cpu = "" if lines is None else next((value for key, value in lines if key == "model name"), platform.processor())
    versions = package_versions(PACKAGES)

    def git(*args):
        result = subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True)
        return result.stdout.strip() if result.returncode == 0 else None

    return {
        "cpu_model": cpu,
        "cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)),
        "memory_gib": psutil.virtual_memory().total / 2**30,
        "os": platform.platform(),
        "python": platform.python_version(),
        "versions": versions,
        "git_commit": git("rev-parse", "HEAD"),
        "git_dirty": bool(git("status", "--porcelain", "--", "rag", "serving", "Monolitico", "Microservicos", "bench")),
    }


def _baseline_load(env: dict, request: dict) -> dict:
    """`python -m bench.serving.inprocess` in a fresh process: model-load time, first answer and memory."""
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "bench.serving.inprocess", request["query"], str(request["max_new_tokens"])],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if result.returncode != 0:
        raise RuntimeError(f"bench.serving.inprocess failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return {**json.loads(result.stdout.strip().splitlines()[-1]), "process_s": time.monotonic() - started}


def cold_starts(settings, workdir: Path, env: dict, live: dict) -> dict:
    """Each round: baseline model load, then each architecture to /ping 200. The last ones stay in `live`."""
    runs = {"baseline": [], **{arch: [] for arch in ARCHITECTURES}}
    first_request = payloads(load_questions(), 1, 0, settings.max_new_tokens, settings.top_k)[0]
    with tqdm(total=settings.cold_starts * 3, desc="cold starts", unit="start", file=sys.stderr) as bar:
        for round_ in range(settings.cold_starts):
            runs["baseline"].append(_baseline_load(child_env(**env), first_request))
            bar.update(1)
            for arch in ARCHITECTURES:
                served = Served(arch, workdir / f"{arch}-{round_}.log", env)
                live[arch] = served
                ready_s = served.wait_ready()
                # The first answer after /ping 200 shows whether "ready" means "fast" yet.
                first = HttpTarget(served.url, settings.request_timeout_s, name=arch).call(first_request)
                runs[arch].append(
                    {
                        "ready_s": ready_s,
                        "self_reported_load_s": served.ready_lines(),
                        "first_request_ms": first.latency_ms,
                        "first_request_ok": first.ok,
                    }
                )
                if round_ < settings.cold_starts - 1:
                    served.stop()
                    del live[arch]
                bar.update(1)
    return runs


def _warm_up(targets: dict, pools: dict, settings, questions) -> None:
    batch = payloads(questions, settings.warmup, 0, settings.max_new_tokens, settings.top_k)
    for name, target in targets.items():
        outcomes, _ = run_block(target, batch, 1, pool=pools[name])
        if not all(outcome.ok for outcome in outcomes):
            raise RuntimeError(f"warm-up of {target.name} failed: {[o.error_type for o in outcomes]}")


def latency_phase(targets: dict, samplers: dict, pools: dict, settings, questions) -> dict:
    """Blocks of the same requests, alternating between the targets (rotated each round); each served
    architecture's memory is sampled while its own blocks run."""
    names = list(targets)
    data = {name: {} for name in names}
    total = len(names) * sum(settings.requests_at(level) for level in settings.concurrency)
    with tqdm(total=total, desc="latency", unit="req", file=sys.stderr) as bar:
        for level in settings.concurrency:
            block = settings.block_size(level)
            for name in names:
                data[name][str(level)] = {
                    "requests": [],
                    "block_wall_s": [],
                    "block_cpu_stall_ms": [],
                    "block_clock": [],
                }
            for round_ in range(settings.requests_at(level) // block):
                batch = payloads(questions, block, round_ * block, settings.max_new_tokens, settings.top_k)
                for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
                    bar.set_postfix_str(f"c={level} {name}")
                    stall, clock = cpu_stall_ms(), time.time()
                    with samplers.get(name) or nullcontext():
                        outcomes, wall = run_block(targets[name], batch, level, bar, pools[name])
                    entry = data[name][str(level)]
                    entry["requests"].extend(
                        {**outcome.to_dict(outcome.started), "question": payload["query"]}
                        for outcome, payload in zip(outcomes, batch)
                    )
                    entry["block_wall_s"].append(wall)
                    entry["block_clock"].append([clock, time.time()])
                    if stall is not None:
                        entry["block_cpu_stall_ms"].append(cpu_stall_ms() - stall)
    return data


def steady_memory(live: dict, samples: int = 3) -> dict:
    """Idle RSS and PSS of each tree: the median of a few samples."""
    result = {}
    for arch, served in live.items():
        readings = []
        for _ in range(samples):
            readings.append(served.memory(detailed=True))
            time.sleep(0.3)
        readings.sort(key=lambda reading: reading["rss_mib"])
        result[arch] = readings[len(readings) // 2]
    return result


def fault_phase(live: dict, settings, questions) -> list:
    plan = [("microservicos", "llm_service"), ("microservicos", "vector_service"), ("monolito", "monolith")]
    results = []
    with tqdm(total=len(plan), desc="faults", unit="kill", file=sys.stderr) as bar:
        for arch, role in plan:
            live[arch].wait_ready(deadline_s=180)  # the previous experiment's restart must be complete
            results.append(run_fault(live[arch], role, settings, questions, bar))
            bar.update(1)
    return results


def run(settings: BenchSettings) -> Path:
    """Run every phase and write results/<timestamp>.json; returns its path."""
    from rag.settings import Settings

    started_at = datetime.now(UTC)
    stamp = started_at.strftime("%Y%m%dT%H%M%SZ")
    workdir = settings.results_dir / stamp
    workdir.mkdir(parents=True, exist_ok=True)
    env = {"RAG_MAX_NEW_TOKENS": settings.max_new_tokens, "RAG_TOP_K": settings.top_k}
    if settings.index_dir:
        env["RAG_INDEX_DIR"] = settings.index_dir
    results = {
        "kind": "quick" if settings.quick else "full",
        "started_utc": started_at.isoformat(),
        "machine": machine_info(),
        "settings": settings.to_dict(),
        "loadavg_start": os.getloadavg(),
        "server_env": {key: str(value) for key, value in env.items()},
    }
    questions = load_questions()
    clock = time.monotonic()
    live: dict[str, Served] = {}
    # One long-lived client pool per target: warm-up and measurement run on the same threads.
    pools = {
        name: ThreadPoolExecutor(max(settings.concurrency), thread_name_prefix=f"client-{name}")
        for name in ("baseline", *ARCHITECTURES)
    }
    try:
        results["cold_start"] = cold_starts(settings, workdir, env, live)
        rag_settings = Settings.from_env({**os.environ, **{key: str(value) for key, value in env.items()}})
        load_started = time.monotonic()
        targets = {"baseline": InProcessTarget(load_pipeline(rag_settings), rag_settings)}
        results["baseline_load_in_bench_s"] = time.monotonic() - load_started
        targets.update(
            {arch: HttpTarget(live[arch].url, settings.request_timeout_s, name=arch) for arch in ARCHITECTURES}
        )
        _warm_up(targets, pools, settings, questions)
        results["memory_idle"] = steady_memory(live)
        samplers = {arch: MemorySampler(served, settings.memory_interval_s) for arch, served in live.items()}
        latency_started = time.time()
        results["latency"] = latency_phase(targets, samplers, pools, settings, questions)
        results["service_log"] = live["microservicos"].service_times(latency_started, time.time())
        results["memory_peak_mib"] = {arch: sampler.peak_mib for arch, sampler in samplers.items()}
        results["memory_steady"] = steady_memory(live)
        sweep = SweepSettings.from_env(os.environ, settings.quick)
        if sweep.enabled:
            results["sweep"] = run_sweep(
                targets, live, sweep, questions, settings.max_new_tokens, settings.top_k, samplers.get
            )
        results["faults"] = fault_phase(live, settings, questions) if settings.faults else []
    finally:
        for pool in pools.values():
            pool.shutdown(cancel_futures=True)
        for served in live.values():
            served.stop()
    results["duration_s"] = time.monotonic() - clock
    results["loadavg_end"] = os.getloadavg()
    results["summary"] = summarize_results(results)
    path = settings.results_dir / f"{stamp}.json"
    path.write_text(json.dumps(results, indent=1))
    return path
