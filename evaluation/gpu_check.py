"""The LLM on a CUDA GPU: checked for answers and timed, against the same run on the CPU.

Retrieval runs once, where the index and the embedding model are (`prompts`); every later run replays
those passages, so a GPU run and a CPU run answer from identical prompts and their answers can be compared
one by one. The generation side is the real one: the served pipeline's TransformersGenerator and batch
engine, its prompt and its grounding check, with RAG_* settings as the services read them.

    python -m evaluation.gpu_check prompts [--out F]            retrieve every question of the two eval sets
    python -m evaluation.gpu_check run --prompts F [--dtypes auto,float32] [--levels 8,32] [--reference R] [--out O]
    python -m evaluation.gpu_check compare RUN.json [RUN.json ...]   one table: accuracy, speed, same answers

`run`, per dtype: every question one at a time (`make eval`'s accuracy, refusal rate and latency), then
the same questions from N concurrent clients through the batch engine (throughput, and how many answers
are identical to the one-at-a-time answers: greedy decoding must not change with batching), and with
`--reference` (an earlier run's JSON, e.g. the CPU's) how many answers match that run's.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

from bench.core.config import DEFAULT_RESULTS_DIR, write_results
from bench.core.workload import run_block
from rag.errors import RagError
from rag.settings import REPO_ROOT, Settings
from rag.types import Passage, Retriever

# The two evaluation sets of `make eval` / `make eval-report`: (name, documents, questions).
SETS = (
    ("sample", "data/sample", "data/sample.questions.jsonl"),
    ("harbourline", "data/harbourline", "data/harbourline.questions.jsonl"),
)


class ReplayRetriever(Retriever):
    """Returns the passages that `prompts` retrieved for each question, in their order (no index needed)."""

    def __init__(self, items: list[dict], model_name: str):
        self.model_name = model_name
        self.passages = {item["question"]: [Passage.from_dict(p) for p in item["passages"]] for item in items}

    def retrieve(self, query, top_k, deadline=None):
        """The recorded passages of `query`; a query that was not recorded is an error, not an empty list."""
        return self.passages[query][:top_k]


def prompts(out: Path) -> dict:
    """Index both eval sets' documents afresh, retrieve every question as configured, record the passages."""
    import tempfile

    from evaluation.evaluate import load_questions
    from evaluation.previous import build_index
    from rag.retrieval.local import load_retriever

    recorded = {"created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "sets": []}
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as workdir:
        for name, docs, questions_file in SETS:
            index = build_index(REPO_ROOT, REPO_ROOT / docs, Path(workdir) / name, dict(os.environ))
            settings = Settings.from_env({**os.environ, "RAG_INDEX_DIR": str(index)})
            retriever = load_retriever(settings)
            items = [
                {
                    "question": q.question,
                    "passages": [p.to_dict() for p in retriever.retrieve(q.question, settings.top_k)],
                }
                for q in load_questions(REPO_ROOT / questions_file)
            ]
            recorded["embedding_model"] = retriever.model_name
            recorded["sets"].append(
                {"name": name, "questions_file": questions_file, "top_k": settings.top_k, "items": items}
            )
            print(f"{name}: {len(items)} questions retrieved from a fresh index of {docs}", flush=True)
    write_results("gpu-prompts", recorded, out)
    return recorded


def _machine() -> dict:
    import torch

    info = {"python": platform.python_version(), "torch": torch.__version__, "cpus": os.cpu_count()}
    if torch.cuda.is_available():
        info.update(
            gpu=torch.cuda.get_device_name(0), cuda=torch.version.cuda, bf16_supported=torch.cuda.is_bf16_supported()
        )
    import transformers

    info["transformers"] = transformers.__version__
    return info


def _answers_together(target, questions, clients: int) -> tuple[list[str | None], float]:
    """Every question asked of `target` by `clients` closed-loop clients: the answers in order, and the wall time."""
    outcomes, wall_s = run_block(target, [{"query": question.question} for question in questions], clients)
    return [(outcome.body or {}).get("answer") for outcome in outcomes], wall_s


def run(recorded: dict, dtypes: list[str], levels: list[int], reference: dict | None) -> dict:
    """Load the LLM once per dtype and answer both sets, alone and from concurrent clients."""
    import torch

    from evaluation.evaluate import LocalTarget, evaluate, load_questions, summarize
    from rag.generation.generator import load_generator
    from rag.pipeline import RagPipeline

    report = {"machine": _machine(), "levels": levels, "runs": []}
    print(json.dumps(report["machine"]), flush=True)
    for dtype in dtypes:
        env = {
            **os.environ,
            "RAG_LLM_DTYPE": dtype,
            "RAG_MAX_BATCH_SIZE": os.environ.get("RAG_MAX_BATCH_SIZE", str(max(levels, default=8))),
            "RAG_MAX_CONCURRENT_REQUESTS": str(max([16, *levels])),
        }
        settings = Settings.from_env(env)
        loaded = time.perf_counter()
        generator = load_generator(settings)  # with its warm-up, as the services load it
        entry = {
            "dtype_setting": dtype,
            "device": generator.device,
            "dtype": str(generator.dtype).replace("torch.", ""),
            "max_batch_size": settings.max_batch_size,
            "load_s": round(time.perf_counter() - loaded, 1),
            "sets": [],
        }
        print(
            f"LLM on {entry['device']} in {entry['dtype']} (RAG_LLM_DTYPE={dtype}), loaded in {entry['load_s']} s",
            flush=True,
        )
        for recorded_set in recorded["sets"]:
            questions = load_questions(REPO_ROOT / recorded_set["questions_file"])
            pipeline = RagPipeline(
                ReplayRetriever(recorded_set["items"], recorded["embedding_model"]),
                generator,
                "gpu-check",
                settings.grounding_check,
            )
            target = LocalTarget(settings, pipeline)
            started = time.perf_counter()
            records = evaluate(questions, target, progress=False)  # one at a time, scored as `make eval` scores
            wall = time.perf_counter() - started
            answers = [r["answer"] for r in records]
            result = {
                "name": recorded_set["name"],
                "summary": summarize(records, recorded_set["top_k"]),
                "answers": answers,
                "throughput": {"1": round(len(questions) / wall, 2)},
                "identical_batched": {},
            }
            for clients in levels:
                together, wall = _answers_together(target, questions, clients)
                result["throughput"][str(clients)] = round(len(questions) / wall, 2)
                result["identical_batched"][str(clients)] = sum(a == b for a, b in zip(together, answers))
            if reference is not None:
                result["identical_to_reference"] = _identical(reference, recorded_set["name"], answers)
            entry["sets"].append(result)
            print(_line(entry, result, len(questions)), flush=True)
        report["runs"].append(entry)
        generator.engine.close()
        del generator, pipeline
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    return report


def _identical(reference: dict, set_name: str, answers: list[str]) -> dict:
    """For each of the reference run's dtypes, how many answers are the same as these."""
    found = {}
    for entry in reference.get("runs", []):
        for other in entry["sets"]:
            if other["name"] == set_name and len(other["answers"]) == len(answers):
                key = f"{reference['machine'].get('gpu') or 'cpu'} {entry['dtype']}"
                found[key] = sum(a == b for a, b in zip(other["answers"], answers))
    return found


def _line(entry: dict, result: dict, total: int) -> str:
    summary = result["summary"]
    parts = [
        f"{result['name']}: accuracy {100 * summary['accuracy']:.1f} %",
        f"refusal {100 * summary['refusal']:.1f} %" if summary["refusal"] is not None else "",
        f"latency p50 {summary['latency_ms_p50']:.0f} ms p95 {summary['latency_ms_p95']:.0f} ms",
        "throughput " + ", ".join(f"c={c}: {v} req/s" for c, v in result["throughput"].items()),
        "batched = alone " + ", ".join(f"c={c}: {n}/{total}" for c, n in result["identical_batched"].items()),
    ]
    if "identical_to_reference" in result:
        parts.append(
            "= reference " + ", ".join(f"{k}: {n}/{total}" for k, n in result["identical_to_reference"].items())
        )
    return f"  [{entry['device']} {entry['dtype']}] " + "; ".join(p for p in parts if p)


def compare(reports: list[dict]) -> str:
    """A markdown table of runs side by side; `same answers` counts answers equal to the first run's."""
    first = reports[0]["runs"][0]
    rows = [
        "| machine | dtype | set | accuracy | refusal | p50 / p95 ms (1 client) | req/s (clients) "
        "| batched = alone (clients) | same answers as the first run |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for report in reports:
        machine = report["machine"].get("gpu") or f"CPU ({report['machine']['cpus']} cores)"
        for entry in report["runs"]:
            for result in entry["sets"]:
                summary, total = result["summary"], len(result["answers"])
                reference = next(r for r in first["sets"] if r["name"] == result["name"])
                same = sum(a == b for a, b in zip(reference["answers"], result["answers"]))
                batched = ", ".join(f"{n}/{total} ({c})" for c, n in result["identical_batched"].items())
                speed = ", ".join(f"{value} ({c})" for c, value in result["throughput"].items())
                rows.append(
                    f"| {machine} | {entry['dtype']} | {result['name']} | {100 * summary['accuracy']:.1f} % | "
                    f"{100 * (summary['refusal'] or 0):.1f} % | {summary['latency_ms_p50']:,.0f} / "
                    f"{summary['latency_ms_p95']:,.0f} | {speed} | {batched} | {same}/{total} |"
                )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    """`prompts` or `run`; see the module docstring."""
    parser = argparse.ArgumentParser(prog="python -m evaluation.gpu_check", description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["prompts", "run", "compare"])
    parser.add_argument("reports", nargs="*", type=Path, help="compare: run JSON files, the first is the reference")
    parser.add_argument("--prompts", type=Path, default=DEFAULT_RESULTS_DIR / "gpu-prompts.json")
    parser.add_argument("--dtypes", default="auto,float32", help="RAG_LLM_DTYPE values to run, in order")
    parser.add_argument("--levels", default="8,32", help="concurrent clients after the one-at-a-time pass")
    parser.add_argument("--reference", type=Path, help="an earlier run's JSON to compare answers with")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    import logging

    logging.basicConfig(level=os.environ.get("RAG_LOG_LEVEL", "WARNING"), format="%(levelname)s %(name)s %(message)s")
    try:
        if args.command == "prompts":
            prompts(args.out or args.prompts)
            return 0
        if args.command == "compare":
            if not args.reports:
                parser.error("compare needs at least one run's JSON file")
            print(compare([json.loads(path.read_text()) for path in args.reports]))
            return 0
        recorded = json.loads(args.prompts.read_text())
        reference = json.loads(args.reference.read_text()) if args.reference else None
        levels = [int(level) for level in args.levels.split(",") if level.strip()]
        report = run(recorded, [d.strip() for d in args.dtypes.split(",") if d.strip()], levels, reference)
    except (RagError, OSError, ValueError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    write_results("gpu-check", report, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
