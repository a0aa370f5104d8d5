"""`make eval-report`: answer quality on both dev sets, both architectures, before and after, in one run.

For each question set (data/<set>/ and data/<set>.questions.jsonl) it serves the set's index with the
monolith and the microservices exactly as `make serve` does, runs `make eval`'s evaluation against each
over HTTP, and checks that both gave the same answer and sources to every question. With
BENCH_PREVIOUS_REF (a commit), the monolith of that commit answers the same questions too: the "before"
column. Results go to bench/results/quality-<time>.json; --publish also copies them to
bench/results/latest/quality.json and regenerates the table in docs/evaluation.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from datetime import UTC, datetime
from pathlib import Path

from bench.core.config import DEFAULT_RESULTS_DIR, REPO_ROOT
from bench.core.processes import MemorySampler, Served, child_env
from bench.core.stats import percentile
from bench.core.workload import ClientLoop
from evaluation.evaluate import HttpTarget, evaluate, load_questions, percent_text, sources_shown, summarize
from evaluation.previous import build_index, previous_checkout

SETS = ("sample", "harbourline", "kelvane")
ARCHS = {"monolito": "monolith", "microservicos": "microservices"}
DOC = REPO_ROOT / "docs" / "evaluation.md"
BEGIN, END = "<!-- quality:begin -->", "<!-- quality:end -->"
README = REPO_ROOT / "README.md"
README_BEGIN, README_END = "<!-- quality-summary:begin -->", "<!-- quality-summary:end -->"


def serve_and_evaluate(
    arch: str,
    index: Path,
    questions_file: Path,
    log_path: Path,
    *,
    root: Path = REPO_ROOT,
    env: dict | None = None,
    ready_deadline_s: float = 600,
    then: Callable[[str, list[dict]], object] | None = None,
) -> dict:
    """Serve `index` with `arch` as `make serve` does, evaluate it over HTTP, then `then(url, records)`
    while it still runs (make eval-models' burst); the ready time and the tree's peak RSS come along."""
    served = Served(arch, log_path, {"RAG_INDEX_DIR": index, **(env or {})}, root=root)
    try:
        ready_s = served.wait_ready(deadline_s=ready_deadline_s)
        with MemorySampler(served, 0.5) as sampler:
            started = time.monotonic()
            records = evaluate(load_questions(questions_file), HttpTarget(served.url), progress=True)
            elapsed = time.monotonic() - started
            after = then(served.url, records) if then is not None else None
    finally:
        served.stop()
    summary = summarize(records, sources_shown(records))
    return {
        "summary": summary,
        "records": records,
        "eval_s": round(elapsed, 1),
        "ready_s": round(ready_s, 1),
        "peak_rss_mib": round(sampler.peak_mib, 1),
        "then": after,
    }


# What a fresh server answers first, not counted (its first requests pay one-time costs): none of a set's
# questions, so that no prompt cache holds one of theirs.
WARMUP_QUERIES = ("What do these documents describe?", "Who is responsible for what, according to them?")


def warm_up(*targets) -> None:
    """Ask each target WARMUP_QUERIES, in turn, not counted."""
    for query in WARMUP_QUERIES:
        for target in targets:
            target.call({"query": query})


def fresh_questions(questions: list[str], requests: int, what: str) -> list[str]:
    """The first `requests` distinct questions, each once. A load level that asks a question again, or asks one
    its server answered before, measures a prompt cache rather than the engine: OpenVINO keeps the KV blocks of
    whole prompts while its pool has room, and answered repeats 0.77-0.81x as long as first asks."""
    unique = list(dict.fromkeys(questions))
    if requests > len(unique):
        raise ValueError(
            f"{what}: {requests} requests but {len(unique)} distinct questions; a load level asks each at most once"
        )
    return unique[:requests]


def closed_loop(url: str, questions: list[str], clients: int, requests: int) -> dict:
    """Answers per second of `clients` closed-loop clients over `requests` distinct questions, and the 429s."""
    asked = fresh_questions(questions, requests, f"{clients} clients")
    outcomes, wall = ClientLoop(HttpTarget(url), [{"query": q} for q in asked], clients).run()
    ok = [o for o in outcomes if o.ok]
    latencies = [o.latency_ms for o in ok]
    return {
        "clients": clients,
        "requests": len(outcomes),
        "ok": len(ok),
        "overloaded_429": sum(o.status == 429 for o in outcomes),
        "wall_s": round(wall, 2),
        "answers_per_s": round(len(ok) / wall, 3) if wall else None,
        **{f"latency_ms_p{q}": percentile(latencies, q) for q in (50, 95, 99)},
    }


def on_fresh_server(
    arch: str,
    index: Path,
    log_path: Path,
    action: Callable[[str], dict],
    *,
    root: Path = REPO_ROOT,
    env: dict | None = None,
    ready_deadline_s: float = 600,
) -> dict:
    """`action(url)` (a dict) on a server started for it alone, warmed up on WARMUP_QUERIES and stopped after,
    with the peak RSS of the server's tree meanwhile: a load level after the evaluation on the evaluation's server would find every
    question's prompt in a whole-prompt cache."""
    served = Served(arch, log_path, {"RAG_INDEX_DIR": index, **(env or {})}, root=root)
    try:
        served.wait_ready(deadline_s=ready_deadline_s)
        warm_up(HttpTarget(served.url))
        with MemorySampler(served, 0.5) as sampler:
            outcome = action(served.url)
    finally:
        served.stop()
    return outcome | {"peak_rss_mib": round(sampler.peak_mib, 1)}


def identical(first: list[dict], second: list[dict]) -> dict:
    """How many questions got the same answer, sources, tokens from both architectures."""

    def key(record):
        return record["answer"], record["sources"], record["prompt_tokens"], record["completion_tokens"]

    differing = [a["line"] for a, b in zip(first, second) if key(a) != key(b)]
    return {"questions": len(first), "identical": len(first) - len(differing), "differing_lines": differing}


def run(previous_ref: str | None, sets: tuple[str, ...] = SETS) -> dict:
    """Measure every set on both architectures (and the previous commit's monolith)."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    workdir = DEFAULT_RESULTS_DIR / f"quality-{stamp}"
    workdir.mkdir(parents=True, exist_ok=True)
    result = {
        "kind": "quality",
        "started_utc": stamp,
        "loadavg_start": os.getloadavg(),
        "previous_ref": previous_ref,
        "sets": {},
    }
    env = child_env()
    with previous_checkout(previous_ref) if previous_ref else nullcontext() as previous_root:
        for name in sets:
            docs, questions = REPO_ROOT / "data" / name, REPO_ROOT / "data" / f"{name}.questions.jsonl"
            index = build_index(REPO_ROOT, docs, workdir / f"index-{name}", env)
            entry = {arch: serve_and_evaluate(arch, index, questions, workdir / f"{name}-{arch}.log") for arch in ARCHS}
            entry["parity"] = identical(entry["monolito"]["records"], entry["microservicos"]["records"])
            if previous_root is not None:
                old_index = build_index(previous_root, docs, workdir / f"index-{name}-previous", env)
                entry["previous"] = serve_and_evaluate(
                    "monolito", old_index, questions, workdir / f"{name}-previous.log", root=previous_root
                )
            result["sets"][name] = entry
    result["loadavg_end"] = os.getloadavg()
    path = DEFAULT_RESULTS_DIR / f"quality-{stamp}.json"
    path.write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n")
    return result | {"path": str(path)}


def _ms(value) -> str:
    return "n/a" if value is None else f"{value:,.0f}"


def table(result: dict) -> str:
    """The Markdown table of docs/evaluation.md: one row per set and configuration."""
    rows = [
        "| question set | configuration | answer accuracy | refusal (unanswerable) | hit@1 | MRR | "
        "prompt tokens p50 | latency p50 / p95 (ms) | same answers on both |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, entry in result["sets"].items():
        columns = (
            [("previous", f"before ({(result['previous_ref'] or '')[:10]}, monolith)")] if "previous" in entry else []
        )
        columns += [("monolito", "now, monolith"), ("microservicos", "now, microservices")]
        for key, label in columns:
            s = entry[key]["summary"]
            parity = entry["parity"]
            same = f"{parity['identical']}/{parity['questions']}" if key != "previous" else ""
            rows.append(
                f"| {name} ({s['answerable']} + {s['unanswerable']}) | {label} | {percent_text(s['accuracy'])} | "
                f"{percent_text(s['refusal'])} | {percent_text(s['hit_at_1'])} | {s['mrr']:.3f} | {_ms(s['prompt_tokens_p50'])} | "
                f"{_ms(s['latency_ms_p50'])} / {_ms(s['latency_ms_p95'])} | {same} |"
            )
    load = result.get("loadavg_start", [None])[0]
    rows.append("")
    rows.append(
        f"Measured {result['started_utc']} on 2 CPU cores (load average {load:.1f} at the start; latency "
        "is single-client and moves with the load, the quality figures do not: decoding is greedy)."
    )
    return "\n".join(rows)


def summary_line(result: dict) -> str:
    """The README's one-paragraph summary of the newest published run."""
    parts = []
    for name, entry in result["sets"].items():
        now, before = entry["monolito"]["summary"], entry.get("previous", {}).get("summary")
        text = f"**{name}**: answer accuracy {percent_text(now['accuracy'])}"
        if before:
            text += f" (before: {percent_text(before['accuracy'])})"
        text += f", refusal of unanswerable questions {percent_text(now['refusal'])}"
        if before:
            text += f" (before: {percent_text(before['refusal'])})"
        text += f", hit@1 {percent_text(now['hit_at_1'])}"
        parts.append(text)
    return "; ".join(parts) + "."


def replace_between(path: Path, begin: str, end: str, body: str) -> None:
    text = path.read_text()
    if begin not in text or end not in text:
        raise ValueError(f"{path} has no {begin} ... {end} markers; add them where the table belongs")
    head, rest = text.split(begin, 1)
    path.write_text(f"{head}{begin}\n{body}\n{end}{rest.split(end, 1)[1]}")


def publish(result: dict, doc: Path = DOC, readme: Path = README) -> None:
    """bench/results/latest/quality.json, the docs table and the README summary."""
    latest = DEFAULT_RESULTS_DIR / "latest"
    latest.mkdir(parents=True, exist_ok=True)
    slim = {
        **result,
        "sets": {
            name: {
                key: (
                    {k: v for k, v in value.items() if k != "records"}
                    | {"misses": [r for r in value["records"] if not r["correct"]]}
                    if isinstance(value, dict) and "records" in value
                    else value
                )
                for key, value in entry.items()
            }
            for name, entry in result["sets"].items()
        },
    }
    (latest / "quality.json").write_text(json.dumps(slim, indent=1, ensure_ascii=False) + "\n")
    replace_between(doc, BEGIN, END, table(result))
    replace_between(readme, README_BEGIN, README_END, summary_line(result))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evaluation.quality", description=__doc__.splitlines()[0])
    parser.add_argument("--publish", action="store_true", help="update bench/results/latest and docs/evaluation.md")
    parser.add_argument("--report", help="only re-render the table from this results file")
    parser.add_argument("--sets", default=",".join(SETS), help="comma-separated question sets (default: all)")
    args = parser.parse_args(argv)
    if args.report:
        result = json.loads(Path(args.report).read_text())
    else:
        ref = os.environ.get("BENCH_PREVIOUS_REF", "").strip() or None
        result = run(ref, tuple(s for s in args.sets.split(",") if s))
    print(table(result))
    parity = {name: entry["parity"] for name, entry in result["sets"].items()}
    print(f"\nparity: {json.dumps(parity)}")
    if args.publish:
        publish(result)
        print(f"published to {DOC.relative_to(REPO_ROOT)} and bench/results/latest/quality.json")
    return 0 if all(p["identical"] == p["questions"] for p in parity.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
