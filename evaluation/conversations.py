"""`make eval-chat`: how a chat follow-up is retrieved and answered, for each way of condensing the
conversation into one retrieval query (RAG_CHAT_CONDENSE, rag/condense.py).

    python -m evaluation.conversations [--sets sample,harbourline] [--strategies last,concat,keywords,auto]
                                       [--publish]

A conversation file (data/<set>.conversations.jsonl) holds one JSON object per line: `messages` (a chat
request's messages, the last one the user's question), `answers` and `source` as in the question files,
and `kind`: `follow-up` when the last turn needs the earlier ones ("who designed it?"), `topic-shift`
when it names a new subject. Each conversation goes through the chat schema's own validation and
condensation, then the in-process pipeline on the set's index (built from data/<set>/), exactly as a chat
request to /invocations would. Results go to bench/results/conversations-<time>.json; --publish also
writes bench/results/latest/conversations.json and the table in docs/api.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bench.core.config import DEFAULT_RESULTS_DIR, REPO_ROOT
from bench.core.processes import child_env
from evaluation.evaluate import (
    LocalTarget,
    Question,
    QuestionFileError,
    failure,
    parse_question,
    percent_text,
    score,
    sources_shown,
    summarize,
)
from evaluation.previous import build_index
from evaluation.quality import replace_between
from rag.chat import ChatRequest
from rag.errors import InvalidRequest
from rag.settings import CHAT_CONDENSE_STRATEGIES, Settings

SETS = ("sample", "harbourline")
KINDS = ("follow-up", "topic-shift")
FIELDS = {"messages", "answers", "source", "kind"}
DOC = REPO_ROOT / "docs" / "api.md"
BEGIN, END = "<!-- conversations:begin -->", "<!-- conversations:end -->"


@dataclass(frozen=True)
class Conversation:
    chat: ChatRequest
    question: Question  # the last user turn, with the accepted answers and the expected source
    kind: str


def load_conversations(path: Path, settings: Settings) -> list[Conversation]:
    """Every conversation of a JSON-lines file, validated by the chat schema; the first bad line stops it."""
    conversations = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        data = json.loads(line)
        if not isinstance(data, dict) or set(data) != FIELDS:
            raise QuestionFileError(f"{where}: expected exactly the fields {', '.join(sorted(FIELDS))}")
        if data["kind"] not in KINDS:
            raise QuestionFileError(f"{where}: 'kind' must be one of {', '.join(KINDS)}")
        try:
            chat = ChatRequest.from_dict({"messages": data["messages"]}, settings)
        except InvalidRequest as exc:
            raise QuestionFileError(f"{where}: {exc.message}")
        last = chat.messages[-1].content
        fields = {"question": last, "answers": data["answers"], "source": data["source"], "answerable": True}
        conversations.append(Conversation(chat, parse_question(fields, where, number), data["kind"]))
    if not conversations:
        raise QuestionFileError(f"{path} holds no conversations")
    return conversations


def evaluate_strategies(conversations: list[Conversation], target, strategies: tuple[str, ...]) -> dict:
    """Records per strategy; a condensed query asked before (by another strategy) is not asked again:
    decoding is greedy, so it would get the same answer."""
    answered: dict[str, object] = {}
    results = {}
    for strategy in strategies:
        records = []
        for conversation in conversations:
            query = conversation.chat.query(strategy).query
            if query not in answered:
                answered[query] = target.call({"query": query})
            outcome = answered[query]
            record = score(conversation.question, outcome.body, failure(outcome), outcome.latency_ms)
            records.append(record | {"kind": conversation.kind, "retrieval_query": query})
        results[strategy] = records
    return results


def summaries(records: list[dict]) -> dict:
    """hit@1, hit@k and accuracy over all conversations and per kind."""
    top_k = sources_shown(records)
    result = {"all": summarize(records, top_k)}
    for kind in KINDS:
        chosen = [r for r in records if r["kind"] == kind]
        if chosen:
            result[kind] = summarize(chosen, top_k)
    return result


def run(sets: tuple[str, ...], strategies: tuple[str, ...]) -> dict:
    """Every set's conversations under every strategy, in-process on the set's own index."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    workdir = DEFAULT_RESULTS_DIR / f"conversations-{stamp}"
    base = Settings.from_env()
    result = {"kind": "conversations", "started_utc": stamp, "llm": base.llm_model, "sets": {}}
    for name in sets:
        index = build_index(REPO_ROOT, REPO_ROOT / "data" / name, workdir / f"index-{name}", child_env())
        settings = dataclasses.replace(base, index_dir=index)
        conversations = load_conversations(REPO_ROOT / "data" / f"{name}.conversations.jsonl", settings)
        records = evaluate_strategies(conversations, LocalTarget(settings), strategies)
        result["sets"][name] = {
            strategy: {"summary": summaries(rows), "records": rows} for strategy, rows in records.items()
        }
    path = DEFAULT_RESULTS_DIR / f"conversations-{stamp}.json"
    path.write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n")
    return result | {"path": str(path)}


def table(result: dict) -> str:
    """The Markdown table of docs/api.md: one row per set and strategy."""
    rows = [
        "| conversations | RAG_CHAT_CONDENSE | hit@1 | hit@3 | answer accuracy | follow-ups: hit@1 / accuracy | "
        "topic shifts: hit@1 / accuracy |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, entry in result["sets"].items():
        for strategy, data in entry.items():
            s = data["summary"]
            every, follow, shift = s["all"], s.get("follow-up", {}), s.get("topic-shift", {})
            rows.append(
                f"| {name} ({every['questions']}: {follow.get('questions', 0)} follow-ups + "
                f"{shift.get('questions', 0)} topic shifts) | `{strategy}` | {percent_text(every['hit_at_1'])} | "
                f"{percent_text(every['hit_at_k'])} | {percent_text(every['accuracy'])} | {percent_text(follow.get('hit_at_1'))} / "
                f"{percent_text(follow.get('accuracy'))} | {percent_text(shift.get('hit_at_1'))} / {percent_text(shift.get('accuracy'))} |"
            )
    rows.append("")
    rows.append(
        f"Measured {result['started_utc']} in-process with {result['llm']}, top_k 3, greedy decoding "
        "(`make eval-chat`; every answer is in bench/results/latest/conversations.json)."
    )
    return "\n".join(rows)


def publish(result: dict, doc: Path = DOC) -> None:
    """bench/results/latest/conversations.json (without the hits' passages) and the docs table."""
    latest = DEFAULT_RESULTS_DIR / "latest"
    latest.mkdir(parents=True, exist_ok=True)
    slim = json.loads(json.dumps(result))
    for entry in slim["sets"].values():
        for data in entry.values():
            for record in data["records"]:
                record["sources"] = [s["source"] for s in record["sources"]]
    (latest / "conversations.json").write_text(json.dumps(slim, indent=1, ensure_ascii=False) + "\n")
    replace_between(doc, BEGIN, END, table(result))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evaluation.conversations", description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default=",".join(SETS), help="comma-separated conversation sets (default: all)")
    parser.add_argument("--strategies", default=",".join(CHAT_CONDENSE_STRATEGIES), help="comma-separated")
    parser.add_argument("--publish", action="store_true", help="update bench/results/latest and docs/api.md")
    args = parser.parse_args(argv)
    strategies = tuple(s for s in args.strategies.split(",") if s)
    unknown = [s for s in strategies if s not in CHAT_CONDENSE_STRATEGIES]
    if unknown:
        parser.error(f"unknown strategies {', '.join(unknown)}; use {', '.join(CHAT_CONDENSE_STRATEGIES)}")
    result = run(tuple(s for s in args.sets.split(",") if s), strategies)
    print(table(result))
    print(f"\nevery answer is in {result['path']}")
    if args.publish:
        publish(result)
        print(f"published to {DOC.relative_to(REPO_ROOT)} and bench/results/latest/conversations.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
