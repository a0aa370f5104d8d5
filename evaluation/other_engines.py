"""The CPU engines the service does not run, measured by hand against the one it does:
`python -m evaluation.other_engines prompts|convert|run|score`.

ONNX Runtime GenAI and OpenVINO GenAI (made for LLM inference on CPUs, both wheels on the package index) cannot
share the service's virtualenv: OpenVINO's converter (optimum-intel 2.2) needs transformers < 5.6, the service
pins 5.23. So they run in a virtualenv of their own (`requirements-other-engines.txt`), beside CTranslate2 (the
service's engine, the same wheel), on the service's own prompts, and the project's environment turns their tokens
into answers and scores them as `make eval` does:

1. `prompts` (the project's venv): the token ids of the prompts the service built for the questions of one or more
   `make eval` records files (EVAL_OUT), with each answer's length in tokens.
2. `convert` (the other venv): the tier's safetensors to an ONNX Runtime GenAI model (its model builder, fp32) and
   to an OpenVINO IR (optimum-cli, fp32 weights), once, offline.
3. `run` (the other venv): one process per engine variant, each with `--threads` threads (default: every core), and every prompt
   sent to every variant in a shuffled order, 0.3 s apart (so a neighbour slows them alike), greedy, the answer's
   length in new tokens, the whole prompt each time (no cached instructions on any engine). Per request: the
   time to the first token, the whole time, the tokens.
4. `score` (the project's venv): each variant's tokens cut and checked as the service does (stop strings, the
   grounding check), scored as `make eval` scores; an answer that differs from the reference's and stopped at the
   service's length (where the service would have gone on, up to its max_new_tokens) is counted as cut: its
   score is approximate. Latency as the ratio of medians to CTranslate2's,
   with a paired 95 % bootstrap interval. CTranslate2's tokens must give the service's own answers: the check that
   the scoring is faithful.

Variants: `ctranslate2-float32` (the reference), `onnxruntime-genai-fp32`, `openvino-f32`
(INFERENCE_PRECISION_HINT=f32) and `openvino-default` (OpenVINO's own choice: bfloat16 on a CPU with AMX or
AVX512-BF16). Measure alone.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

VARIANTS = ("ctranslate2-float32", "onnxruntime-genai-fp32", "openvino-f32", "openvino-default")
REFERENCE = VARIANTS[0]
PAUSE_S = 0.3  # before each request: the other processes' idle threads stop spinning first
OUT_DIR = Path("build/other-engines")
PACKAGES = ("ctranslate2", "onnxruntime-genai", "onnxruntime", "openvino", "openvino-genai", "transformers")


def _records_set(path: Path) -> tuple[str, Path, list[dict]]:
    """A make eval records file: its set's name, its questions file and its records."""
    data = json.loads(path.read_text())
    questions = Path(data["questions_file"])
    return questions.name.split(".")[0], questions, data["records"]


def dump_prompts(records_files: list[Path], tier: str | None, out: Path) -> dict:
    """The service's prompts for every answered question of the records files, as token ids."""
    from transformers import AutoTokenizer

    from evaluation.engines import served_prompt_ids
    from rag.ladder import default_tier, tiers
    from rag.models import tier_dir

    model = tiers()[tier or default_tier()]
    tokenizer = AutoTokenizer.from_pretrained(tier_dir(model))
    prompts, served = [], 0
    for path in records_files:
        name, _, records = _records_set(path)
        for record in records:
            if record["error"] is not None:
                continue
            ids = served_prompt_ids(tokenizer, model, record)
            served += len(ids) == record["prompt_tokens"]
            prompts.append(
                {"set": name, "question": record["question"], "ids": ids, "new": record["completion_tokens"] or 1}
            )
    result = {
        "tier": model.name,
        "model_dir": str(tier_dir(model)),
        "prompts": prompts,
        "same_length_as_served": served,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result))
    print(f"{len(prompts)} prompts ({served} of the served length) -> {out}")
    return result


def convert(model_dir: Path, out: Path) -> None:
    """The ONNX Runtime GenAI model and the OpenVINO IR of `model_dir`, fp32, into `out` (the other venv)."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", OPENVINO_TELEMETRY_OPTOUT="1")
    ort_dir, ov_dir = out / "onnxruntime-genai-fp32", out / "openvino-fp32"
    builder = [sys.executable, "-m", "onnxruntime_genai.models.builder", "-i", str(model_dir), "-o", str(ort_dir)]
    subprocess.run([*builder, "-p", "fp32", "-e", "cpu", "-c", str(out / "cache")], check=True, env=env)
    optimum = [str(Path(sys.executable).parent / "optimum-cli"), "export", "openvino", "--model", str(model_dir)]
    subprocess.run(
        [*optimum, "--task", "text-generation-with-past", "--weight-format", "fp32", str(ov_dir)], check=True, env=env
    )


def _engine(variant: str, model_dir: Path, models: Path, threads: int):
    """Load one variant in this process; return run(ids, new_tokens) -> (first token s, whole s, tokens)."""
    if variant == "ctranslate2-float32":
        os.environ.setdefault("CT2_USE_MKL", "0")  # as the service does for float32 (before the import)
        import ctranslate2
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        end = [tokenizer.convert_ids_to_tokens(tokenizer.eos_token_id)]
        generator = ctranslate2.Generator(
            str(model_dir / "ctranslate2"), device="cpu", compute_type="float32", inter_threads=1, intra_threads=threads
        )

        def run(ids, new):
            started, first, tokens = time.perf_counter(), None, []
            prompt = tokenizer.convert_ids_to_tokens(ids)
            for step in generator.generate_tokens(prompt, max_length=new, sampling_topk=1, end_token=end):
                first = time.perf_counter() - started if first is None else first
                tokens.append(step.token_id)
            return first, time.perf_counter() - started, tokens

        return run
    if variant == "onnxruntime-genai-fp32":
        import onnxruntime_genai as og

        folder = models / "onnxruntime-genai-fp32"
        genai_config = json.loads((folder / "genai_config.json").read_text())  # threads are a session option there
        genai_config["model"]["decoder"]["session_options"] |= {
            "intra_op_num_threads": threads,
            "inter_op_num_threads": 1,
        }
        (folder / "genai_config.json").write_text(json.dumps(genai_config, indent=4))
        model = og.Model(str(folder))

        def run(ids, new):
            params = og.GeneratorParams(model)
            params.set_search_options(max_length=len(ids) + new, do_sample=False)
            started, first, tokens = time.perf_counter(), None, []
            generator = og.Generator(model, params)
            generator.append_tokens(ids)
            while not generator.is_done():
                generator.generate_next_token()
                first = time.perf_counter() - started if first is None else first
                tokens.append(int(generator.get_next_tokens()[0]))
            return first, time.perf_counter() - started, tokens

        return run
    import numpy as np
    import openvino
    import openvino_genai

    properties = {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY"}
    if variant == "openvino-f32":
        properties["INFERENCE_PRECISION_HINT"] = "f32"
    pipeline = openvino_genai.LLMPipeline(str(models / "openvino-fp32"), "CPU", **properties)

    def run(ids, new):
        config = openvino_genai.GenerationConfig()
        config.max_new_tokens, config.do_sample = new, False
        array = np.array([ids], dtype=np.int64)
        inputs = openvino_genai.TokenizedInputs(openvino.Tensor(array), openvino.Tensor(np.ones_like(array)))
        started = time.perf_counter()
        result = pipeline.generate(inputs, config)
        whole = time.perf_counter() - started
        return result.perf_metrics.get_ttft().mean / 1000, whole, [int(t) for t in result.tokens[0]]

    return run


def _serve(variant: str, model_dir: str, models: str, threads: int, warm_ids: list[int], conn) -> None:
    run = _engine(variant, Path(model_dir), Path(models), threads)
    run(warm_ids, 4)
    conn.send("ready")
    while (job := conn.recv()) is not None:
        conn.send(run(*job))


def run_all(
    prompts_file: Path, models: Path, variants: list[str], threads: int, seed: int, out: Path, limit: int | None = None
) -> dict:
    """Every prompt to every variant (one process each), in a shuffled order per prompt."""
    import multiprocessing

    from bench.core.machine import package_versions

    data = json.loads(prompts_file.read_text())
    prompts = data["prompts"][:limit]
    context = multiprocessing.get_context("spawn")
    conns, processes = {}, []
    for variant in variants:
        here, there = context.Pipe()
        args = (variant, data["model_dir"], str(models), threads, prompts[0]["ids"], there)
        process = context.Process(target=_serve, args=args, daemon=True)
        process.start()
        processes.append(process)
        if here.recv() != "ready":
            raise RuntimeError(f"{variant} did not start")
        conns[variant] = here
    started, load = time.time(), os.getloadavg()
    rows, order = [], random.Random(seed)
    try:
        for number, prompt in enumerate(prompts, start=1):
            row = {
                "set": prompt["set"],
                "question": prompt["question"],
                "prompt_tokens": len(prompt["ids"]),
                "new": prompt["new"],
            }
            for variant in order.sample(variants, len(variants)):
                time.sleep(PAUSE_S)
                conns[variant].send((prompt["ids"], prompt["new"]))
                first, whole, tokens = conns[variant].recv()
                row[variant] = {"first_s": first, "whole_s": whole, "tokens": tokens}
            rows.append(row)
            if number % 10 == 0 or number == len(prompts):
                print(f"  {number}/{len(prompts)} prompts", flush=True)
    finally:
        for conn in conns.values():
            conn.send(None)
        for process in processes:
            process.join(timeout=30)
    result = {
        "kind": "other-engines",
        "started_utc": time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(started)),
        "tier": data["tier"],
        "variants": variants,
        "threads": threads,
        "seed": seed,
        "pause_s": PAUSE_S,
        "loadavg_start": load,
        "loadavg_end": os.getloadavg(),
        "duration_s": round(time.time() - started, 1),
        "versions": package_versions(PACKAGES),
        "rows": rows,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result))
    print(f"wrote {out}")
    return result


def score(run_file: Path, records_files: list[Path], out: Path | None = None) -> dict:
    """Each variant's answers as the service would give them, scored; latency against the reference."""
    from transformers import AutoTokenizer

    from bench.core.machine import cpu
    from bench.core.stats import paired_ratio_of_medians
    from evaluation.evaluate import is_correct, is_refusal, load_questions, seen_passages
    from rag.generation.grounding import check_answer
    from rag.generation.prompt import visible_answer
    from rag.ladder import tiers
    from rag.models import tier_dir
    from rag.settings import Settings

    run = json.loads(run_file.read_text())
    tokenizer = AutoTokenizer.from_pretrained(tier_dir(tiers()[run["tier"]]))
    grounding = Settings().grounding_check
    records, questions = {}, {}
    for path in records_files:
        name, questions_file, rs = _records_set(path)
        records |= {(name, r["question"]): r for r in rs}
        questions |= {(name, q.question): q for q in load_questions(questions_file)}
    summary = {"variants": {}}
    for variant in run["variants"]:
        sets: dict[str, dict] = {}
        for row in run["rows"]:
            name = row["set"]
            record = records[name, row["question"]]
            question = questions[name, row["question"]]
            tokens = row[variant]["tokens"]
            decoded = tokenizer.decode(tokens, skip_special_tokens=True)
            text = visible_answer(decoded, final=True).strip()
            ended = tokenizer.eos_token_id in tokens or text != decoded.strip()
            text, _ = check_answer(text, question.question, seen_passages(record), grounding)
            tally = sets.setdefault(
                name, dict.fromkeys(("answerable", "correct", "unanswerable", "refused", "same_answer", "cut"), 0)
            )
            tally["same_answer"] += text == record["answer"]
            # Stopped at the service's length with other tokens than the reference's: the service would have gone on.
            tally["cut"] += not ended and len(tokens) >= row["new"] and tokens != row[REFERENCE]["tokens"]
            if question.answerable:
                tally["answerable"] += 1
                tally["correct"] += is_correct(text, question.answers)
            else:
                tally["unanswerable"] += 1
                tally["refused"] += is_refusal(text)
        rows = run["rows"]
        reference = [r[REFERENCE]["whole_s"] for r in rows]
        summary["variants"][variant] = {
            "sets": sets,
            "identical_tokens": sum(r[variant]["tokens"] == r[REFERENCE]["tokens"] for r in rows),
            "whole_ms_p50": round(statistics.median(r[variant]["whole_s"] for r in rows) * 1000, 1),
            "first_token_ms_p50": round(statistics.median(r[variant]["first_s"] for r in rows) * 1000, 1),
            "prefill_tokens_per_s_p50": round(
                statistics.median(r["prompt_tokens"] / r[variant]["first_s"] for r in rows), 1
            ),
            "decode_ms_per_token_p50": round(
                statistics.median(
                    (r[variant]["whole_s"] - r[variant]["first_s"]) / (len(r[variant]["tokens"]) - 1) * 1000
                    for r in rows
                    if len(r[variant]["tokens"]) > 1
                ),
                2,
            ),
            "whole_vs_reference": paired_ratio_of_medians(reference, [r[variant]["whole_s"] for r in rows]),
        }
    summary["questions"] = len(run["rows"])
    summary["cpu"] = cpu()
    print(table(run, summary))
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(
            json.dumps({k: v for k, v in run.items() if k != "rows"} | {"summary": summary}, indent=1) + "\n"
        )
        print(f"wrote {out}")
    return summary


def _percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f} %" if whole else "-"


def table(run: dict, summary: dict) -> str:
    sets = sorted({name for v in summary["variants"].values() for name in v["sets"]})
    head = ["variant", *(f"{name}: accuracy / refusal" for name in sets), "same answers as the service"]
    head += ["whole request p50 (ms)", f"/ {REFERENCE} (95 % CI)", "prefill (tokens/s)", "decode (ms/token)"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for variant, figures in summary["variants"].items():
        cells = [f"`{variant}`"]
        for name in sets:
            t = figures["sets"][name]
            cells.append(f"{_percent(t['correct'], t['answerable'])} / {_percent(t['refused'], t['unanswerable'])}")
        same = sum(t["same_answer"] for t in figures["sets"].values())
        cut = sum(t["cut"] for t in figures["sets"].values())
        cells.append(f"{same}/{summary['questions']}" + (f" ({cut} cut at the service's length)" if cut else ""))
        ratio = figures["whole_vs_reference"]
        cells += [f"{figures['whole_ms_p50']:,.0f}", f"{ratio['ratio']:.2f}x ({ratio['low']:.2f}-{ratio['high']:.2f})"]
        cells += [f"{figures['prefill_tokens_per_s_p50']:,.0f}", f"{figures['decode_ms_per_token_p50']:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evaluation.other_engines", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    prompts = commands.add_parser("prompts", help="the service's prompts of make eval records files (project venv)")
    prompts.add_argument("--records", required=True, help="comma-separated make eval records files (EVAL_OUT)")
    prompts.add_argument("--tier", help="the model tier (default: the default tier)")
    prompts.add_argument("--out", type=Path, default=OUT_DIR / "prompts.json")
    converting = commands.add_parser("convert", help="the ONNX Runtime GenAI and OpenVINO models (other venv)")
    converting.add_argument("--model-dir", type=Path, required=True, help="the tier's folder (models/<tier>)")
    converting.add_argument("--out", type=Path, default=OUT_DIR)
    running = commands.add_parser("run", help="every prompt to every variant, interleaved (other venv)")
    running.add_argument("--prompts", type=Path, default=OUT_DIR / "prompts.json")
    running.add_argument("--models", type=Path, default=OUT_DIR)
    running.add_argument(
        "--variants",
        default=",".join(VARIANTS),
        help=f"comma-separated, the first is the reference (default: all: {','.join(VARIANTS)})",
    )
    running.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    running.add_argument("--seed", type=int, default=0)
    running.add_argument("--limit", type=int, help="only the first N prompts (a smoke run)")
    running.add_argument("--out", type=Path, default=OUT_DIR / "run.json")
    scoring = commands.add_parser(
        "score", help="answers scored as make eval scores, and the latency table (project venv)"
    )
    scoring.add_argument("--run", type=Path, default=OUT_DIR / "run.json")
    scoring.add_argument("--records", required=True, help="the records files the prompts came from")
    scoring.add_argument(
        "--out", type=Path, help="a summary without the per-request rows (e.g. for bench/results/latest)"
    )
    args = parser.parse_args(argv)
    if args.command == "prompts":
        dump_prompts([Path(p) for p in args.records.split(",")], args.tier, args.out)
    elif args.command == "convert":
        convert(args.model_dir, args.out)
    elif args.command == "run":
        variants = args.variants.split(",")
        unknown = sorted(set(variants) - set(VARIANTS))
        if unknown or variants[0] != REFERENCE:
            parser.error(
                f"--variants: the first must be {REFERENCE}, the rest of {', '.join(VARIANTS)} (got {args.variants})"
            )
        run_all(args.prompts, args.models, variants, args.threads, args.seed, args.out, args.limit)
    else:
        score(args.run, [Path(p) for p in args.records.split(",")], args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
