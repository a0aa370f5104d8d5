"""Which matrix library CTranslate2 should use on this CPU: `python -m bench.probes.gemm_backend`.

CTranslate2's CPU wheel carries two GEMM backends, Intel MKL and oneDNN, and picks one by the CPU's vendor:
MKL (with packed weights) on a GenuineIntel CPU, oneDNN on any other, unless `CT2_USE_MKL` says otherwise.
It reads the variable once per process, so this probe starts one fresh process per backend and compute type,
`auto` (the vendor's rule: CTranslate2 with the variable unset; the service itself sets CT2_USE_MKL=0 for
float32, rag/generation/ctranslate2_decoder.py, because of what this probe measured), `mkl` (CT2_USE_MKL=1)
and `dnnl` (CT2_USE_MKL=0), in rounds that interleave them. Each process loads the tier's CTranslate2 copy as
the service does (inter_threads 1, every core), then times a greedy generation of `--new-tokens`, three times,
on a prompt of about 220 tokens, from CTranslate2's per-token callback: prefill is the time to the first token,
decode ms/token the time from the first token to the last over the tokens between (medians of the three). (Until
2026-12-05 it subtracted a separate prefill's time from the whole generation's, which a loaded machine could
turn negative; the published tables were taken alone that way.)
It prints a table (median over rounds, with the range) and the backend CTranslate2 itself reports it chose
(its CT2_VERBOSE lines), and writes bench/results/gemm-backend-<time>.json.

    --tier NAME            default: the default tier          --compute float32,int8
    --rounds 3             processes per backend and type     --new-tokens 48

Measure alone: a neighbour's load moves every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from bench.core.config import write_results
from bench.core.machine import cpu, describe
from bench.core.processes import child_env

BACKENDS = {"auto": None, "mkl": "1", "dnnl": "0"}
PROMPT = "The harbourline ferry leaves the north pier every morning at seven and returns at noon. " * 12
REPEATS = 3  # timed runs per measurement in one process, after one warm-up


def _child(engine_dir: str, tokenizer_dir: str, compute: str, new_tokens: int) -> None:
    """In the fresh process: load, time prefill and decode, print one JSON line."""
    import time

    import ctranslate2
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(Path(tokenizer_dir) / "tokenizer.json"))
    tokens = tokenizer.encode(PROMPT).tokens
    generator = ctranslate2.Generator(
        engine_dir, device="cpu", compute_type=compute, inter_threads=1, intra_threads=os.cpu_count() or 1
    )

    def timed(length: int) -> tuple[float, float]:
        """(time to the first token, mean time of each token after it), read from CTranslate2's callback."""
        stamps: list[float] = []
        started = time.perf_counter()
        generator.generate_batch(
            [tokens],
            max_length=length,
            min_length=length,
            sampling_topk=1,
            include_prompt_in_result=False,
            callback=lambda _step: stamps.append(time.perf_counter()),
        )
        return stamps[0] - started, (stamps[-1] - stamps[0]) / (len(stamps) - 1)

    timed(4)  # warm-up: first-call allocations, the weights paged in
    runs = [timed(new_tokens) for _ in range(REPEATS)]
    print(
        json.dumps(
            {
                "prompt_tokens": len(tokens),
                "prefill_ms": statistics.median(first for first, _ in runs) * 1000.0,
                "decode_ms_per_token": statistics.median(step for _, step in runs) * 1000.0,
            }
        )
    )


def chosen_backend(verbose_log: str, compute: str) -> str | None:
    """The GEMM backend CTranslate2 reports choosing for `compute` (its CT2_VERBOSE=1 start-up lines: SGEMM
    for float32, GEMM_S8 for the int8 types), with whether it packs the weights, e.g. 'DNNL' or 'MKL packed'."""
    label = "GEMM_S8 backend:" if compute.startswith("int8") else "SGEMM backend:"
    for line in verbose_log.splitlines():
        if label in line:
            name, _, rest = line.split(label, 1)[1].strip().partition("(")
            return f"{name.strip()} packed" if "packed: true" in rest else name.strip()
    return None


def run_one(engine_dir: Path, tokenizer_dir: Path, compute: str, backend: str, new_tokens: int) -> dict:
    """One fresh process with `backend`'s CT2_USE_MKL; its figures and the backend it reported."""
    env = child_env(CT2_VERBOSE="1")
    env.pop("CT2_USE_MKL", None)
    if BACKENDS[backend] is not None:
        env["CT2_USE_MKL"] = BACKENDS[backend]
    argv = [sys.executable, "-m", "bench.probes.gemm_backend", "--child", str(engine_dir), str(tokenizer_dir), compute]
    completed = subprocess.run(
        [*argv, str(new_tokens)], env=env, capture_output=True, text=True, timeout=900, check=False
    )
    if completed.returncode != 0:
        raise RuntimeError(f"{backend} {compute}: exit {completed.returncode}: {completed.stderr[-2000:]}")
    figures = json.loads(completed.stdout.strip().splitlines()[-1])
    return {**figures, "reported_backend": chosen_backend(completed.stderr, compute)}


def summarize(runs: list[dict]) -> dict:
    """Median and range of each figure over the rounds of one backend and compute type."""
    out = {"rounds": len(runs), "reported_backend": runs[0]["reported_backend"] if runs else None}
    for key in ("prefill_ms", "decode_ms_per_token"):
        values = [run[key] for run in runs]
        out[key] = {"median": statistics.median(values), "min": min(values), "max": max(values)}
    return out


def table(results: dict) -> str:
    rows = [
        "| compute type | backend (CT2_USE_MKL) | reported | prefill (ms) | decode (ms/token) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for compute, by_backend in results["figures"].items():
        for backend, s in by_backend.items():
            setting = BACKENDS[backend] if BACKENDS[backend] is not None else "unset"
            p, d = s["prefill_ms"], s["decode_ms_per_token"]
            rows.append(
                f"| {compute} | {backend} ({setting}) | {s['reported_backend'] or '?'} | "
                f"{p['median']:,.0f} ({p['min']:,.0f}-{p['max']:,.0f}) | "
                f"{d['median']:.1f} ({d['min']:.1f}-{d['max']:.1f}) |"
            )
    rows += [
        "",
        f"{describe(results['cpu'])}; tier {results['tier']}, {results['prompt_tokens']} "
        f"prompt tokens, {results['new_tokens']} new tokens, {results['rounds']} rounds; load average "
        f"{results['loadavg_start'][0]:.1f} at start and {results['loadavg_end'][0]:.1f} at end.",
    ]
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        _child(argv[1], argv[2], argv[3], int(argv[4]))
        return 0
    from rag.ladder import EMBEDDED_PREFIX, default_tier, tier  # the probe's own: the child needs none of them
    from rag.models import engine_model_path, llm_model_path

    parser = argparse.ArgumentParser(prog="python -m bench.probes.gemm_backend", description=__doc__.splitlines()[0])
    parser.add_argument("--tier", default=None, help="an installed tier (default: the default tier)")
    parser.add_argument("--compute", default="float32,int8", help="CTranslate2 compute types, comma-separated")
    parser.add_argument("--rounds", type=int, default=3, help="fresh processes per backend and compute type")
    parser.add_argument("--new-tokens", type=int, default=48, help="greedy tokens of the decode measurement")
    parser.add_argument("--out", type=Path, default=None, help="results file (default: bench/results/...)")
    args = parser.parse_args(argv)
    if args.new_tokens < 2 or args.rounds < 1:
        parser.error("--new-tokens must be at least 2 and --rounds at least 1")
    name = tier(args.tier).name if args.tier else default_tier()
    model_dir = llm_model_path(EMBEDDED_PREFIX + name)
    engine_dir = engine_model_path(EMBEDDED_PREFIX + name, model_dir)
    computes = [part.strip() for part in args.compute.split(",") if part.strip()]
    results: dict = {"tier": name, "cpu": cpu(), "loadavg_start": os.getloadavg(), "rounds": args.rounds}
    results.update(new_tokens=args.new_tokens, figures={})
    runs: dict[tuple[str, str], list[dict]] = {}
    total, done = args.rounds * len(computes) * len(BACKENDS), 0
    for round_ in range(args.rounds):
        for compute in computes:
            for backend in BACKENDS:
                run = run_one(engine_dir, Path(model_dir), compute, backend, args.new_tokens)
                runs.setdefault((compute, backend), []).append(run)
                done += 1
                print(
                    f"[{done}/{total}] round {round_ + 1} {compute} {backend}: prefill {run['prefill_ms']:.0f} ms, "
                    f"decode {run['decode_ms_per_token']:.1f} ms/token ({run['reported_backend']})",
                    file=sys.stderr,
                    flush=True,
                )
    for (compute, backend), some in runs.items():
        results["figures"].setdefault(compute, {})[backend] = summarize(some)
        results["prompt_tokens"] = some[0]["prompt_tokens"]
    results["loadavg_end"] = os.getloadavg()
    print(table(results))
    write_results("gemm-backend", results, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
