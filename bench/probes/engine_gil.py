"""Does an engine's step hold Python's GIL? `python -m bench.probes.engine_gil`.

Found on 2026-12-05: at 8 clients the monolith on OpenVINO spent a median 5.2 s of a 6.1 s request in
retrieval, and 0.8 s generating. OpenVINO GenAI binds `ContinuousBatchingPipeline.step` without releasing the
GIL, so while a step runs (about 40 ms for 8 rows of the 135M model) no other Python thread of the process runs:
the request threads' query embedding, which returns to Python between its torch calls, waited a step at a time.
CTranslate2 releases the GIL while it computes, and torch inside each operation.
Since then the service runs OpenVINO's pipeline in a child process (rag/generation/openvino_process.py).

This probe measures it: an engine generates on one thread while the main thread asks to run every millisecond
(a 1 ms sleep, then the clock); it counts how often it ran in `--seconds` and its longest gap. Alone, about 900
ticks a second and gaps of 1-3 ms; beside an engine that holds the GIL, one tick per step. OpenVINO's 8 rows are
first prefilled (not timed), then stepped; CTranslate2 generates the same 8 prompts in one batch, repeatedly.

    --tier NAME     default: the default tier       --seconds 2       --engines openvino,ctranslate2
    --out FILE      default: bench/results/engine-gil-<time>.json

Writes bench/results/engine-gil-<time>.json and prints a table. Measure alone.
"""

from __future__ import annotations

import argparse
import os
import threading
import time
from pathlib import Path

from bench.core.config import write_results
from bench.core.machine import cpu, describe

ROWS, PROMPT_TOKENS = 8, 260


def ticks(seconds: float) -> dict:
    """How often this thread got to run in `seconds` when it asked every millisecond, and its longest gap."""
    gaps, last, end = [], time.perf_counter(), time.perf_counter() + seconds
    while (now := time.perf_counter()) < end:
        gaps.append(now - last)
        last = now
        time.sleep(0.001)
    return {"ticks_per_s": round(len(gaps) / seconds, 1), "longest_gap_ms": round(max(gaps) * 1000, 1)}


def _prompts(tokenizer) -> list[list[int]]:
    base = tokenizer("The harbourline ferry leaves the north pier every morning at seven. " * 30)["input_ids"]
    return [base[row : row + PROMPT_TOKENS] for row in range(ROWS)]


def openvino_worker(folder, tokenizer, threads: int):
    """A thread's work: OpenVINO's continuous batching pipeline stepping 8 decoding rows, as the service does."""
    import numpy as np
    import openvino as ov
    import openvino_genai as genai

    scheduler = genai.SchedulerConfig()
    scheduler.cache_size, scheduler.num_kv_blocks, scheduler.max_num_seqs = 0, 1024, ROWS
    properties = {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": threads}
    pipeline = genai.ContinuousBatchingPipeline(str(folder / "openvino"), scheduler, "CPU", properties)
    config = genai.GenerationConfig()
    config.max_new_tokens, config.ignore_eos = 100_000, True
    handles = [
        pipeline.add_request(row, ov.Tensor(np.asarray([ids], dtype=np.int64)), config)
        for row, ids in enumerate(_prompts(tokenizer))
    ]
    while not all(handle.can_read() for handle in handles):  # every row prefilled: from here on, decode steps
        pipeline.step()
    steps: list[float] = []

    def work(stop: threading.Event) -> None:
        while not stop.is_set():
            started = time.perf_counter()
            pipeline.step()
            steps.append(time.perf_counter() - started)
        for handle in handles:
            handle.cancel()
        pipeline.step()

    return work, steps


def ctranslate2_worker(folder, tokenizer, threads: int):
    """A thread's work: CTranslate2 generating the same 8 prompts in one batch, again and again."""
    import ctranslate2

    generator = ctranslate2.Generator(str(folder / "ctranslate2"), device="cpu", intra_threads=threads)
    batch = [tokenizer.convert_ids_to_tokens(ids) for ids in _prompts(tokenizer)]

    def work(stop: threading.Event) -> None:
        while not stop.is_set():
            generator.generate_batch(batch, max_length=32, min_length=32, include_prompt_in_result=False)

    return work, []  # its steps are inside one call: not timed one by one


WORKERS = {"openvino": openvino_worker, "ctranslate2": ctranslate2_worker}


def measure(engine: str, folder, tokenizer, seconds: float, threads: int) -> dict:
    work, steps = WORKERS[engine](folder, tokenizer, threads)
    alone = ticks(seconds)
    stop = threading.Event()
    thread = threading.Thread(target=work, args=(stop,), name=f"{engine}-steps")
    thread.start()
    try:
        time.sleep(0.3)  # the engine is under way
        beside = ticks(seconds)
    finally:
        stop.set()
        thread.join()
    step_ms = round(sorted(steps)[len(steps) // 2] * 1000, 1) if steps else None
    return {"alone": alone, "beside": beside, "step_ms_p50": step_ms}


def table(result: dict) -> str:
    lines = [
        "| engine | ticks/s alone | ticks/s beside the engine | longest gap beside (ms) | a decode step of 8 rows (ms) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for engine, run in result["engines"].items():
        lines.append(
            f"| {engine} | {run['alone']['ticks_per_s']} | {run['beside']['ticks_per_s']} | "
            f"{run['beside']['longest_gap_ms']} | {run['step_ms_p50'] or '-'} |"
        )
    lines.append(
        f"\n{result['tier']}, {ROWS} rows; {describe(result['cpu'])}; load average {result['loadavg_start'][0]:.2f}."
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.probes.engine_gil", description=__doc__.splitlines()[0])
    parser.add_argument("--tier", default="default")
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--engines", default="openvino,ctranslate2")
    parser.add_argument("--out", type=Path, help="the results file (default: bench/results/engine-gil-<time>.json)")
    args = parser.parse_args(argv)
    from transformers import AutoTokenizer

    from rag.ladder import default_tier, tiers
    from rag.models import tier_dir

    tier = default_tier() if args.tier == "default" else args.tier
    folder = tier_dir(tiers()[tier])
    engines = [e for e in args.engines.split(",") if e]
    unknown = sorted(set(engines) - set(WORKERS))
    if unknown:
        parser.error(f"--engines: {', '.join(unknown)} (there are {', '.join(WORKERS)})")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    threads = len(os.sched_getaffinity(0))
    result = {"kind": "engine-gil", "tier": tier, "cpu": cpu(), "loadavg_start": os.getloadavg(), "engines": {}}
    for engine in engines:
        print(f"{engine} ...", flush=True)
        result["engines"][engine] = measure(engine, folder, tokenizer, args.seconds, threads)
    result["loadavg_end"] = os.getloadavg()
    write_results("engine-gil", result, args.out)
    print(table(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
