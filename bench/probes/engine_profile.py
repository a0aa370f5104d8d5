"""Where the time goes when 1 and 8 requests share the model: `python -m bench.probes.engine_profile`.

In-process, with the default settings and the bench's questions and request shape (48 new tokens, top_k
3), it runs closed-loop blocks at each client count and, interleaved, two variants:

- `full`: what the monolith does per request: retrieval and focused context (the embedder) on the
  request thread, then generation on the model's thread;
- `generate`: the same prompts, retrieved beforehand, so the request threads only tokenize and wait.

For every block it records, from the model's thread, each prefill (ms, prompt tokens), each decode step
(ms by rows in the batch, and whether it needed the padding mask) and the time the model waited for work;
from the request threads, retrieval and generation time; and from the kernel, each thread's CPU time and
its time runnable but waiting for a core (/proc/self/task/*/schedstat), for the model's thread, its
OpenMP helpers and the request threads. Prints a table and writes bench/results/engine-profile-<time>.json.

    --levels 1,8   client counts      --requests 16   requests per block      --repeats 2   blocks per variant

`--steps` instead times decode steps alone, on this thread, at 1, 2, 4 and 8 rows: rows of different
prompt lengths (padded, masked attention) against rows of one length (no mask), and the share of a step
that transformers' DynamicCache spends concatenating (torch.cat) under torch's profiler.

`--windows 8,32` instead compares CTranslate2's batch windows (the widest spread of prompt lengths one static
batch takes, MAX_SPREAD in rag/generation/ctranslate2_decoder.py): `generate` blocks at the last `--levels`
client count (8 by default), one block per window per round, the order reversed every other round (`--rounds`), and the
paired median difference of throughput between the first two windows, with its 95 % bootstrap interval.
"""

from __future__ import annotations

import argparse
import os
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from bench.core.config import write_results
from bench.core.stats import paired_median_difference
from bench.core.workload import InProcessTarget, Outcome, cpu_stall_ms, load_questions, payloads, run_block
from bench.serving.inprocess import load_pipeline

MAX_NEW_TOKENS, TOP_K = 48, 3


def schedstat() -> dict[int, tuple[int, int]]:
    """(ns on a CPU, ns runnable but waiting for one) of every thread of this process."""
    stats = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            run, wait, _ = open(f"/proc/self/task/{tid}/schedstat").read().split()
        except (OSError, ValueError):
            continue
        stats[int(tid)] = (int(run), int(wait))
    return stats


class EngineProbe:
    """Records the model thread's prefills, decode steps and waits for work through the engine's public
    `on_step` hook (called only on the model's thread, so plain lists suffice)."""

    def __init__(self, engine):
        self.engine, self.backend = engine, engine.backend
        self.model_tid: int | None = None
        self.reset()
        engine.on_step = self.record

    def record(self, step) -> None:
        self.model_tid = threading.get_native_id()
        if step.kind == "prefill":
            self.prefills.append((step.seconds * 1000, step.tokens))
        elif step.kind == "decode":
            # Read after the step: the padding and width it decoded with (the new column is every row's).
            padded, columns = getattr(self.backend, "padded", False), getattr(self.backend, "columns", 0)
            self.steps.append((step.seconds * 1000, step.rows, padded, columns))
        else:
            self.idle_s += step.seconds

    def reset(self) -> None:
        self.prefills: list[tuple[float, int]] = []
        self.steps: list[tuple[float, int, bool, int]] = []
        self.idle_s = 0.0


class GenerateOnly:
    """The generation half of a request, with passages retrieved beforehand."""

    name = "generate"

    def __init__(self, pipeline, retrieved: dict):
        self.pipeline, self.retrieved = pipeline, retrieved

    def call(self, payload: dict) -> Outcome:
        from rag.retrieval.context import prompt_passages
        from rag.types import GenerationParams

        started = time.monotonic()
        answer = self.pipeline.generator.generate(
            payload["query"],
            prompt_passages(self.retrieved[payload["query"]]),
            GenerationParams(payload["max_new_tokens"]),
        )
        finished = time.monotonic()
        return Outcome(
            started,
            finished,
            True,
            200,
            timings_ms={"retrieve": 0.0, "generate": (finished - started) * 1000},
            completion_tokens=answer.completion_tokens,
        )


class Recording:
    """Wraps a target to note which OS threads act as request threads."""

    def __init__(self, target, tids: set):
        self.target, self.tids, self.name = target, tids, target.name

    def call(self, payload: dict) -> Outcome:
        self.tids.add(threading.get_native_id())
        return self.target.call(payload)


def _sched_delta(before: dict, after: dict, tids) -> dict:
    run = sum(after[t][0] - before.get(t, (0, 0))[0] for t in tids if t in after)
    wait = sum(after[t][1] - before.get(t, (0, 0))[1] for t in tids if t in after)
    return {"cpu_s": run / 1e9, "runqueue_wait_s": wait / 1e9}


def _mean(values) -> float | None:
    values = list(values)
    return statistics.fmean(values) if values else None


def run_block_profiled(target, probe: EngineProbe, requests: list[dict], clients: int, pool) -> dict:
    """One closed-loop block, with the engine's and the kernel's view of it."""
    client_tids: set[int] = set()
    model_tid = probe.model_tid
    probe.reset()
    stall, load, before = cpu_stall_ms(), os.getloadavg()[0], schedstat()
    outcomes, wall_s = run_block(Recording(target, client_tids), requests, clients, pool=pool)
    after, stall_after = schedstat(), cpu_stall_ms()
    others = set(after) - client_tids - {model_tid, threading.get_native_id()}
    steps = probe.steps
    by_rows = {}
    for rows in sorted({s[1] for s in steps}):
        times = [s[0] for s in steps if s[1] == rows]
        by_rows[rows] = {"steps": len(times), "mean_ms": _mean(times), "median_ms": statistics.median(times)}
    return {
        "clients": clients,
        "variant": target.name,
        "requests": len(outcomes),
        "wall_s": wall_s,
        "throughput_rps": len(outcomes) / wall_s,
        "load_1min": load,
        "cpu_stall_s": (stall_after - stall) / 1000 if stall is not None else None,
        "latency_ms_mean": _mean(o.latency_ms for o in outcomes),
        "retrieve_ms_mean": _mean(o.timings_ms["retrieve"] for o in outcomes),
        "generate_ms_mean": _mean(o.timings_ms["generate"] for o in outcomes),
        "tokens": sum(o.completion_tokens for o in outcomes),
        "prefill": {
            "count": len(probe.prefills),
            "total_s": sum(p[0] for p in probe.prefills) / 1000,
            "mean_ms": _mean(p[0] for p in probe.prefills),
            "mean_tokens": _mean(p[1] for p in probe.prefills),
        },
        "decode": {
            "steps": len(steps),
            "total_s": sum(s[0] for s in steps) / 1000,
            "mean_rows": _mean(s[1] for s in steps),
            "masked_share": _mean(float(s[2]) for s in steps),
            "mean_columns": _mean(s[3] for s in steps),
            "by_rows": by_rows,
        },
        "engine_idle_s": probe.idle_s,
        "sched": {
            "model_thread": _sched_delta(before, after, {model_tid}),
            "other_threads": _sched_delta(before, after, others),
            "request_threads": _sched_delta(before, after, client_tids),
        },
    }


def _row(block: dict) -> str:
    d, s = block["decode"], block["sched"]
    step = lambda rows: (d["by_rows"].get(rows) or {}).get("median_ms")  # noqa: E731
    fmt = lambda v: "-" if v is None else f"{v:.0f}"  # noqa: E731
    return (
        f"{block['clients']:>2} {block['variant']:<9} {block['throughput_rps']:5.2f} {block['latency_ms_mean']:7.0f} "
        f"{block['retrieve_ms_mean']:5.0f} {block['prefill']['mean_ms']:5.0f} {block['prefill']['total_s']:5.1f} "
        f"{d['total_s']:5.1f} {d['mean_rows']:4.1f} {fmt(step(1)):>4} {fmt(step(2)):>4} {fmt(step(4)):>4} "
        f"{fmt(step(8)):>4} {block['engine_idle_s']:5.1f} {block['wall_s']:5.1f} "
        f"{s['model_thread']['runqueue_wait_s']:5.2f} {s['other_threads']['cpu_s']:5.1f} "
        f"{s['other_threads']['runqueue_wait_s']:5.2f} {s['request_threads']['cpu_s']:5.1f} {block['load_1min']:4.1f}"
    )


HEADER = (
    "c  variant     rps  lat_ms  retr  pref pref_s dec_s rows  st1  st2  st4  st8 idle_s wall_s "
    "mWait omp_s ompWt req_s load"
)


def step_profile(repeats: int) -> dict:
    """Decode steps by rows, padded against equal prompt lengths, interleaved; median and best of each."""
    import random

    import torch
    from torch.profiler import ProfilerActivity, profile
    from transformers import AutoTokenizer

    from rag.generation.batching import Job
    from rag.generation.decoder import TransformersDecoder
    from rag.models import llm_model_path
    from rag.settings import Settings

    settings = Settings.from_env()
    path = llm_model_path(settings.llm_model)
    decoder = TransformersDecoder(
        path, settings.device, settings.torch_threads, tokenizer=AutoTokenizer.from_pretrained(path)
    )
    greedy = {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}

    def fill(rows: int, padded: bool) -> None:
        decoder.remove(list(range(decoder.rows)))
        draw = random.Random(rows)
        for row in range(rows):  # about the bench's prompt length (234 tokens)
            length = 220 + 7 * row if padded else 240
            decoder.prefill(Job([draw.randrange(100, 40000) for _ in range(length)], 1000, decoding=greedy))

    times: dict = {}
    for repeat in range(repeats):
        for rows in (1, 2, 4, 8):
            for padded in (True, False) if repeat % 2 == 0 else (False, True):
                fill(rows, padded)
                for step in range(12):
                    started = time.perf_counter()
                    decoder.decode()
                    if step >= 2:  # the first steps after a prefill pay one-off setup
                        times.setdefault(f"{rows} {'padded' if padded else 'equal'}", []).append(
                            (time.perf_counter() - started) * 1000
                        )
    fill(8, True)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(6):
            decoder.decode()
    ops = {event.key: event.self_cpu_time_total for event in prof.key_averages()}
    total = sum(ops.values())
    result = {
        "steps_ms": {key: {"median": statistics.median(v), "best": min(v)} for key, v in times.items()},
        "profile_8_rows_share": {
            op: ops.get(op, 0) / total
            for op in ("aten::mm", "aten::cat", "aten::_scaled_dot_product_flash_attention_for_cpu", "aten::copy_")
        },
        "load_1min": os.getloadavg()[0],
        "torch_threads": torch.get_num_threads(),
    }
    for key, value in result["steps_ms"].items():
        print(f"{key:<10} median {value['median']:6.1f} ms   best {value['best']:6.1f} ms")
    print("8 rows, share of a step:", {k: f"{v:.0%}" for k, v in result["profile_8_rows_share"].items()})
    return result


def window_rounds(target, probe: EngineProbe, questions, windows: list[int], rounds: int, clients: int, count: int):
    """Blocks of `count` requests at each CTranslate2 batch window, `rounds` times, alternating the order."""
    import rag.generation.ctranslate2_decoder as ctranslate2_decoder

    kept, blocks = ctranslate2_decoder.MAX_SPREAD, []
    try:
        with ThreadPoolExecutor(clients) as pool:
            run_block(target, payloads(questions, clients, 0, MAX_NEW_TOKENS, TOP_K), clients, pool=pool)  # warm
            for round_ in range(rounds):
                for window in windows if round_ % 2 == 0 else windows[::-1]:
                    ctranslate2_decoder.MAX_SPREAD = window
                    requests = payloads(questions, count, round_ * count, MAX_NEW_TOKENS, TOP_K)
                    blocks.append({**run_block_profiled(target, probe, requests, clients, pool), "window": window})
                    block = blocks[-1]
                    print(
                        f"round {round_} window {window:3d}: {block['throughput_rps']:.3f} requests/s, prefill "
                        f"{block['prefill']['total_s']:.1f} s in {block['prefill']['count']} batches, decode "
                        f"{block['decode']['total_s']:.1f} s, {block['decode']['mean_rows']:.2f} rows per step",
                        flush=True,
                    )
    finally:
        ctranslate2_decoder.MAX_SPREAD = kept
    return blocks, window_summary(blocks, windows)


def window_summary(blocks: list[dict], windows: list[int]) -> dict:
    """Throughput per window (median of its rounds) and, paired by round, the second window's minus the first's."""
    rps = {w: [b["throughput_rps"] for b in blocks if b["window"] == w] for w in windows}
    summary = {"requests_per_s_median": {w: statistics.median(v) for w, v in rps.items() if v}}
    if len(windows) >= 2:
        first, second = windows[:2]
        summary["paired"] = {"a": first, "b": second, **paired_median_difference(rps[first], rps[second])}
    return summary


def main(argv: list[str] | None = None) -> int:
    """Profile the engine at each client count; print a table and write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levels", default="1,8")
    parser.add_argument("--requests", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--variants", default="full,generate")
    parser.add_argument("--steps", action="store_true", help="time decode steps alone instead")
    parser.add_argument("--windows", help="compare CTranslate2 batch windows instead, e.g. 8,32")
    parser.add_argument("--rounds", type=int, default=6, help="rounds of --windows")
    args = parser.parse_args(argv)
    if args.steps:
        write_results("engine-steps", step_profile(args.repeats))
        return 0
    from rag.settings import Settings

    settings = Settings.from_env()
    if args.windows and settings.llm_engine != "ctranslate2":
        parser.error("--windows compares CTranslate2's batch windows: run with RAG_LLM_ENGINE=ctranslate2")
    pipeline = load_pipeline(settings)
    probe = EngineProbe(pipeline.generator.engine)
    questions = load_questions()
    retrieved: dict = {}

    def retrieve_all():  # on a thread of its own, as a request thread would (one torch thread)
        for question in questions:
            retrieved[question] = pipeline.retriever.retrieve(question, TOP_K)

    worker = threading.Thread(target=retrieve_all)
    worker.start()
    worker.join()
    targets = {"full": InProcessTarget(pipeline, settings), "generate": GenerateOnly(pipeline, retrieved)}
    if args.windows:
        windows = [int(window) for window in args.windows.split(",")]
        clients = int(args.levels.split(",")[-1])
        blocks, summary = window_rounds(
            targets["generate"], probe, questions, windows, args.rounds, clients, args.requests
        )
        print(summary, flush=True)
        write_results("engine-windows", {"load_1min_end": os.getloadavg()[0], "blocks": blocks, "summary": summary})
        return 0
    variants = [targets[name] for name in args.variants.split(",")]
    blocks = []
    print(HEADER, flush=True)
    offset = 0
    for clients in (int(level) for level in args.levels.split(",")):
        with ThreadPoolExecutor(clients) as pool:
            run_block(variants[0], payloads(questions, clients, 0, MAX_NEW_TOKENS, TOP_K), clients, pool=pool)  # warm
            for _ in range(args.repeats):
                for target in variants:  # interleaved, so drift in the machine's load hits both alike
                    requests = payloads(questions, args.requests, offset, MAX_NEW_TOKENS, TOP_K)
                    blocks.append(run_block_profiled(target, probe, requests, clients, pool))
                    print(_row(blocks[-1]), flush=True)
                offset += args.requests
    write_results(
        "engine-profile",
        {
            "settings": {
                "torch_threads": settings.torch_threads,
                "max_batch_size": settings.max_batch_size,
                "max_new_tokens": MAX_NEW_TOKENS,
                "top_k": TOP_K,
                "env": {k: v for k, v in os.environ.items() if k.startswith(("RAG_", "GOMP", "OMP", "MALLOC", "MKL"))},
            },
            "blocks": blocks,
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
