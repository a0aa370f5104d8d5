"""`python -m evaluation.regrade`: score saved answers again under each grounding mode, without the LLM.

The grounding check (rag/generation/grounding.py) runs after generation, on the answer, the question and
the excerpts the model saw, all of which `make eval` saves. So one evaluation run with the check off
(`RAG_GROUNDING_CHECK=off`) tells what every mode would have answered: this is how the modes were
compared, on exactly the same generated answers (docs/evaluation.md#grounding-check).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from evaluation.evaluate import is_correct, is_refusal, seen_passages, summarize
from rag.generation.grounding import check_answer
from rag.settings import GROUNDING_MODES


def regrade(records: list[dict], mode: str) -> list[dict]:
    """The records as they would have been scored with the grounding check in `mode`."""
    graded = []
    for record in records:
        if record["error"] is not None:
            graded.append(record)
            continue
        answer, _ = check_answer(record["answer"], record["question"], seen_passages(record), mode)
        accepted = tuple(tuple(alternative) for alternative in record["expected"])
        refused = is_refusal(answer)
        correct = is_correct(answer, accepted) if record["answerable"] else refused
        graded.append(record | {"answer": answer, "refused": refused, "correct": correct})
    return graded


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evaluation.regrade", description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="+", type=Path, help="`make eval` results files (run with the check off)")
    parser.add_argument("--modes", default=",".join(GROUNDING_MODES), help="comma-separated grounding modes")
    args = parser.parse_args(argv)
    modes = [mode for mode in args.modes.split(",") if mode]
    unknown = sorted(set(modes) - set(GROUNDING_MODES))
    if unknown:
        parser.error(f"unknown grounding modes {unknown}; use {', '.join(GROUNDING_MODES)}")
    print("| results | grounding | accuracy | refusal (unanswerable) | false refusals | answer in context |")
    print("| --- | --- | --- | --- | --- | --- |")
    for path in args.results:
        result = json.loads(path.read_text())
        records = result["records"]
        top_k = result.get("summary", {}).get("top_k", 3)
        for mode in modes:
            s = summarize(regrade(records, mode), top_k)
            cells = [s["accuracy"], s["refusal"], s["false_refusal"], s["answer_in_context"]]
            text = " | ".join("n/a" if v is None else f"{100 * v:.1f} %" for v in cells)
            print(f"| {path.stem} | {mode} | {text} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
