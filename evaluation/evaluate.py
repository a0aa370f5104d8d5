"""`make eval`: how often the service retrieves the right document and answers correctly.

    python -m evaluation.evaluate [--questions data/sample.questions.jsonl] [--url http://127.0.0.1:8080]
                           [--min-accuracy 0.8] [--min-refusal 0.7] [--min-hit1 0.95] [--out build/eval/x.json]

A question file holds one JSON object per line: `question`, `answers` (accepted strings; an answer is
correct when it contains any of them, case-insensitive, numbers compared without thousands separators;
an element that is itself a list of strings needs all of them), optional `source` (the document that
holds the answer) and `answerable` (default true; an unanswerable question is right when the answer
refuses). It runs the in-process pipeline on RAG_INDEX_DIR, or a running server of either architecture.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from bench.core.stats import percentile
from bench.core.workload import HttpTarget, InProcessTarget, Outcome
from rag.errors import RagError
from rag.loading import load_local_pipeline
from rag.settings import REPO_ROOT, Settings

log = logging.getLogger(__name__)

DEFAULT_QUESTIONS = REPO_ROOT / "data" / "sample.questions.jsonl"
DEFAULT_OUT_DIR = REPO_ROOT / "build" / "eval"
FIELDS = {"question", "answers", "source", "answerable"}

# What a refusal looks like. The prompt asks for "The documents do not say."; the other phrasings are
# what small models write instead, so they count too.
REFUSAL = re.compile(
    r"\b(do(es)? not (say|mention|contain|include|specify|state|provide|tell)|don't (say|know|mention|contain)|"
    r"not (mentioned|stated|specified|provided|given|included|found|available)|no (information|mention|answer)|"
    r"(cannot|can't|could not|couldn't|unable to) (find|answer|determine|tell)|"
    r"there is no (information|mention)|is unknown|not known)\b",
    re.IGNORECASE,
)


class QuestionFileError(RagError):
    error_type = "invalid_questions"


@dataclass(frozen=True)
class Question:
    question: str
    answers: tuple[tuple[str, ...], ...]  # alternatives; each alternative needs all of its strings
    source: str | None
    answerable: bool
    line: int


def _strings(value) -> tuple[str, ...] | None:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items or not all(isinstance(s, str) and s.strip() for s in items):
        return None
    return tuple(s.strip() for s in items)


def parse_question(data, where: str, line: int) -> Question:
    """One validated question; errors name the file and line and say how to fix it."""
    if not isinstance(data, dict):
        raise QuestionFileError(f'{where}: expected a JSON object like {{"question": ..., "answers": [...]}}')
    unknown = sorted(set(data) - FIELDS)
    if unknown:
        raise QuestionFileError(f"{where}: unknown field(s) {', '.join(unknown)}; allowed: {', '.join(sorted(FIELDS))}")
    question = data.get("question")
    if not isinstance(question, str) or not question.strip():
        raise QuestionFileError(f"{where}: 'question' must be a non-empty string")
    answerable = data.get("answerable", True)
    if not isinstance(answerable, bool):
        raise QuestionFileError(f"{where}: 'answerable' must be true or false")
    raw = data.get("answers", [])
    if not isinstance(raw, list):
        raise QuestionFileError(f"{where}: 'answers' must be a list of accepted strings")
    answers = tuple(_strings(item) for item in raw)
    if any(item is None for item in answers):
        raise QuestionFileError(f"{where}: each of 'answers' must be a non-empty string or a list of them")
    if answerable and not answers:
        raise QuestionFileError(f"{where}: an answerable question needs at least one accepted answer in 'answers'")
    source = data.get("source")
    if source is not None and (not isinstance(source, str) or not source.strip()):
        raise QuestionFileError(f"{where}: 'source' must be the document's path relative to the indexed folder")
    return Question(question.strip(), answers, source.strip() if source else None, answerable, line)


def load_questions(path: Path) -> list[Question]:
    """Every question of a JSON-lines file; the first bad line stops it with `file:line: reason`."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise QuestionFileError(f"cannot read QUESTIONS={path}: {getattr(exc, 'strerror', None) or exc}")
    questions = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            data = json.loads(line)
        except ValueError as exc:
            raise QuestionFileError(f"{where}: not valid JSON ({exc})")
        questions.append(parse_question(data, where, number))
    if not questions:
        raise QuestionFileError(f"QUESTIONS={path} holds no questions; write one JSON object per line")
    return questions


_THOUSANDS = re.compile(r"(?<=\d)[,\u202f\u00a0'](?=\d{3}(?!\d))")
_DASHES = str.maketrans(
    {
        "\u2010": "-",
        "\u2011": "-",
        "\u2012": "-",
        "\u2013": "-",
        "\u2014": "-",
        "\u2019": "'",
        "\u2018": "'",
        "\u201c": '"',
        "\u201d": '"',
    }
)


_NUMBER_WORDS = {
    word: str(value)
    for value, word in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
        "seventeen eighteen nineteen twenty".split()
    )
}
_NUMBER_WORD = re.compile(r"\b(" + "|".join(_NUMBER_WORDS) + r")\b")
_PERCENT = re.compile(r"\s*(%|per cent\b)")


def normalise(text: str) -> str:
    """Lower case, unicode-compatible forms, one space, numbers without thousands separators, number words
    up to twenty as digits ("eleven weeks" = "11 weeks") and "%" as "percent"."""
    text = unicodedata.normalize("NFKC", text).translate(_DASHES).lower()
    while True:  # "1,234,567": each pass removes the separators it can see
        joined = _THOUSANDS.sub("", text)
        if joined == text:
            break
        text = joined
    text = _PERCENT.sub(" percent", _NUMBER_WORD.sub(lambda m: _NUMBER_WORDS[m.group(1)], text))
    return re.sub(r"\s+", " ", text).strip()


def is_correct(answer: str, accepted: tuple[tuple[str, ...], ...]) -> bool:
    """True when the answer contains every string of at least one accepted alternative."""
    said = normalise(answer)
    return any(all(normalise(part) in said for part in alternative) for alternative in accepted)


def is_refusal(answer: str) -> bool:
    """True when the answer says the documents do not hold the answer (or the answer is empty)."""
    return not answer.strip() or REFUSAL.search(unicodedata.normalize("NFKC", answer).translate(_DASHES)) is not None


def source_rank(sources: list[dict], expected: str | None) -> int | None:
    """1-based rank of the first retrieved passage from the expected document, None when absent."""
    if not expected:
        return None
    wanted = expected.strip("/")
    for position, source in enumerate(sources, start=1):
        got = str(source.get("source", "")).strip("/")
        if got == wanted or got.rsplit("/", 1)[-1] == wanted:
            return position
    return None


def score(question: Question, response: dict | None, error: str | None, latency_ms: float) -> dict:
    """One evaluated question: what was asked, what came back, and whether it was right."""
    response = response or {}
    answer = str(response.get("answer", ""))
    sources = response.get("sources") or []
    usage = response.get("usage") or {}
    record = {
        "line": question.line,
        "question": question.question,
        "answerable": question.answerable,
        "expected": [list(a) for a in question.answers],
        "source": question.source,
        "answer": answer,
        "error": error,
        "rank": source_rank(sources, question.source),
        "sources": [
            # The passage's whole text only where the model saw it whole (no excerpt: RAG_CONTEXT_FOCUS=off).
            {key: s.get(key) for key in ("rank", "source", "chunk", "score", "excerpt") if key in s}
            | ({} if "excerpt" in s else {"text": s.get("text", "")})
            for s in sources
        ],
        "prompt_tokens": usage.get("prompt_tokens"),
        "completion_tokens": usage.get("completion_tokens"),
        "latency_ms": round(latency_ms, 1),
    }
    record["refused"] = error is None and is_refusal(answer)
    record["correct"] = error is None and (
        is_correct(answer, question.answers) if question.answerable else record["refused"]
    )
    # Whether the text the model saw held an accepted answer: separates retrieval and context errors
    # from the model's own.
    record["answer_in_context"] = question.answerable and is_correct(seen_context(record), question.answers)
    return record


def seen_passages(record: dict) -> list[str]:
    """The passages the model was given, as the grounding check sees them: the excerpts, in rank order
    (a passage whose excerpt is empty was left out of the prompt)."""
    return [s["excerpt"] if "excerpt" in s else s.get("text", "") for s in record["sources"] if s.get("excerpt") != ""]


def seen_context(record: dict) -> str:
    return "\n".join(seen_passages(record))


def _rate(hits: int, total: int) -> float | None:
    return round(hits / total, 4) if total else None


def sources_shown(records: list[dict]) -> int:
    """The top_k that scored records show: the most sources any of their answers carried (0 for none)."""
    return max((len(r["sources"]) for r in records), default=0)


def summarize(records: list[dict], top_k: int) -> dict:
    """hit@1, hit@k, MRR, answer accuracy, refusal rate, tokens and latency over scored questions."""
    answerable = [r for r in records if r["answerable"]]
    unanswerable = [r for r in records if not r["answerable"]]
    with_source = [r for r in answerable if r["source"]]
    served = [r for r in records if r["error"] is None]
    prompt = [r["prompt_tokens"] for r in served if r["prompt_tokens"] is not None]
    completion = [r["completion_tokens"] for r in served if r["completion_tokens"] is not None]
    latency = [r["latency_ms"] for r in served]
    return {
        "questions": len(records),
        "answerable": len(answerable),
        "unanswerable": len(unanswerable),
        "errors": len(records) - len(served),
        "top_k": top_k,
        "accuracy": _rate(sum(r["correct"] for r in answerable), len(answerable)),
        "false_refusal": _rate(sum(r["refused"] for r in answerable), len(answerable)),
        "answer_in_context": _rate(sum(bool(r.get("answer_in_context")) for r in answerable), len(answerable)),
        "refusal": _rate(sum(r["refused"] for r in unanswerable), len(unanswerable)),
        "hit_at_1": _rate(sum(r["rank"] == 1 for r in with_source), len(with_source)),
        "hit_at_k": _rate(sum(r["rank"] is not None for r in with_source), len(with_source)),
        "mrr": round(sum(1 / r["rank"] for r in with_source if r["rank"]) / len(with_source), 4)
        if with_source
        else None,
        "prompt_tokens_p50": percentile(prompt, 50),
        "prompt_tokens_mean": round(float(np.mean(prompt)), 1) if prompt else None,
        "completion_tokens_p50": percentile(completion, 50),
        "completion_tokens_mean": round(float(np.mean(completion)), 1) if completion else None,
        "latency_ms_p50": percentile(latency, 50),
        "latency_ms_p95": percentile(latency, 95),
    }


def is_miss(record: dict) -> bool:
    """Wrong, not refused when it should be, an error, or the expected source not ranked first."""
    return not record["correct"] or (record["source"] is not None and record["rank"] != 1)


def percent_text(value: float | None) -> str:
    """A share (0..1) as the reports print it: one decimal and a per cent sign, or n/a."""
    return "n/a" if value is None else f"{100 * value:.1f} %"


def format_table(summary: dict) -> str:
    """The printed table: one metric per row."""
    pct = percent_text

    def num(value, unit=""):
        return "n/a" if value is None else f"{value:,.0f}{unit}"

    rows = [
        (
            "questions (answerable / unanswerable)",
            f"{summary['questions']} ({summary['answerable']} / {summary['unanswerable']})",
        ),
        ("answer accuracy (answerable)", pct(summary["accuracy"])),
        ("refusal rate (unanswerable)", pct(summary["refusal"])),
        ("false refusals (answerable)", pct(summary["false_refusal"])),
        ("answer in context (answerable)", pct(summary.get("answer_in_context"))),
        ("hit@1 (expected source first)", pct(summary["hit_at_1"])),
        (f"hit@{summary['top_k']} (expected source retrieved)", pct(summary["hit_at_k"])),
        ("MRR of the expected source", "n/a" if summary["mrr"] is None else f"{summary['mrr']:.3f}"),
        ("prompt tokens p50 / mean", f"{num(summary['prompt_tokens_p50'])} / {num(summary['prompt_tokens_mean'])}"),
        (
            "completion tokens p50 / mean",
            f"{num(summary['completion_tokens_p50'])} / {num(summary['completion_tokens_mean'])}",
        ),
        ("latency p50 / p95", f"{num(summary['latency_ms_p50'], ' ms')} / {num(summary['latency_ms_p95'], ' ms')}"),
        ("errors", str(summary["errors"])),
    ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name.ljust(width)}  {value}" for name, value in rows)


class LocalTarget(InProcessTarget):
    """The in-process pipeline on RAG_INDEX_DIR, built exactly as the monolith builds it, or `pipeline`
    when one is given (evaluation/gpu_check.py's, which replays recorded passages and has no index to check)."""

    def __init__(self, settings, pipeline=None):
        self.index_sources = None
        if pipeline is None:
            pipeline = load_local_pipeline(settings, "in-process")
            self.index_sources = {chunk.source for chunk in pipeline.retriever.index.chunks}
        super().__init__(pipeline, settings, name=f"in-process ({settings.index_dir})")


def failure(outcome: Outcome) -> str | None:
    """The error of a failed request as the records show it; None for an answer."""
    if outcome.ok:
        return None
    return f"{outcome.error_type}: {outcome.error}" if outcome.status else outcome.error


def check_sources_indexed(questions: list[Question], index_sources: set[str] | None, index_dir) -> None:
    """Refuse a question set whose expected documents are not in the index: a wrong RAG_INDEX_DIR."""
    if index_sources is None:
        return
    expected = {q.source for q in questions if q.source}
    missing = sorted(s for s in expected if s not in index_sources)
    if expected and len(missing) == len(expected):
        raise QuestionFileError(
            f"none of the questions' sources ({', '.join(missing[:3])} ...) is in the index "
            f"{index_dir}; set RAG_INDEX_DIR to the index of their documents "
            "(make index DOCS=<folder> INDEX=<dir>)"
        )
    if missing:
        log.warning("%d expected source(s) are not in the index: %s", len(missing), ", ".join(missing[:5]))


def evaluate(
    questions: list[Question],
    target,
    top_k: int | None = None,
    max_new_tokens: int | None = None,
    progress: bool = True,
) -> list[dict]:
    """Ask every question in turn (one at a time: latencies are single-client latencies)."""
    iterator = questions
    if progress:
        from tqdm import tqdm

        iterator = tqdm(questions, desc="evaluating", unit="question")
    records = []
    for question in iterator:
        payload = {"query": question.question}
        if top_k is not None:
            payload["top_k"] = top_k
        if max_new_tokens is not None:
            payload["max_new_tokens"] = max_new_tokens
        outcome = target.call(payload)
        records.append(score(question, outcome.body, failure(outcome), outcome.latency_ms))
    return records


def thresholds_failed(summary: dict, minimums: dict[str, float | None]) -> list[str]:
    """The thresholds that were set and not reached, as readable lines."""
    failed = []
    for metric, minimum in minimums.items():
        if minimum is None:
            continue
        value = summary.get(metric)
        if value is None or value < minimum:
            failed.append(f"{metric} {value if value is not None else 'n/a'} is below the minimum {minimum}")
    return failed


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not between 0 and 1")
    return value


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m evaluation.evaluate", description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=Path, default=DEFAULT_QUESTIONS, help="question file (JSON lines)")
    parser.add_argument("--url", help="a running server (either architecture); default: the in-process pipeline")
    parser.add_argument("--top-k", type=int, help="top_k of every request (default: the service's RAG_TOP_K)")
    parser.add_argument("--max-new-tokens", type=int, help="max_new_tokens of every request (default: the service's)")
    parser.add_argument("--min-accuracy", type=_fraction, help="exit 1 when answer accuracy is below this")
    parser.add_argument("--min-refusal", type=_fraction, help="exit 1 when the refusal rate is below this")
    parser.add_argument("--min-hit1", type=_fraction, help="exit 1 when hit@1 is below this")
    parser.add_argument("--out", type=Path, help="where to write the JSON results (default build/eval/...)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """CLI of `make eval`: 0 when every set threshold is met, 1 when one is not, 2 for bad input."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    try:
        questions = load_questions(args.questions)
        if args.url:
            target = HttpTarget(args.url)
        else:
            settings = Settings.from_env()
            target = LocalTarget(settings)
            check_sources_indexed(questions, target.index_sources, settings.index_dir)
        records = evaluate(questions, target, args.top_k, args.max_new_tokens, progress=not args.no_progress)
    except RagError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    effective_k = args.top_k or sources_shown(records)
    summary = summarize(records, effective_k)
    now = datetime.now(UTC)
    out = args.out or DEFAULT_OUT_DIR / f"{args.questions.stem.replace('.questions', '')}-{now:%Y%m%dT%H%M%SZ}.json"
    result = {
        "questions_file": str(args.questions),
        "target": target.name,
        "created_at": now.isoformat(timespec="seconds"),
        "summary": summary,
        "misses": [r for r in records if is_miss(r)],
        "records": records,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n")
    print(
        f"\n{target.name}, {args.questions}\n{format_table(summary)}\n\n{len(result['misses'])} misses; "
        f"every answer and its sources are in {out}"
    )
    failed = thresholds_failed(
        summary, {"accuracy": args.min_accuracy, "refusal": args.min_refusal, "hit_at_1": args.min_hit1}
    )
    for line in failed:
        print(f"FAILED: {line}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
