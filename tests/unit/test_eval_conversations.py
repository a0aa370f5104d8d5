"""make eval-chat's measurement (evaluation/conversations.py) with a fake target: every strategy scored on
the same conversations, a query asked once, the per-kind summaries and the published table."""

from __future__ import annotations

import json

from bench.core.workload import Outcome
from evaluation.conversations import evaluate_strategies, load_conversations, summaries, table
from rag.settings import Settings


class FakeTarget:
    """Answers "Marrow" from tramway.md when the query names the tramway, else refuses from velmora.md."""

    def __init__(self):
        self.queries = []

    def call(self, payload):
        self.queries.append(payload["query"])
        hit = "Tramway" in payload["query"]
        body = {
            "answer": "Ilse Marrow designed it." if hit else "The documents do not say.",
            "sources": [{"rank": 1, "source": "tramway.md" if hit else "velmora.md", "chunk": 0, "score": 0.5}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5},
        }
        return Outcome(0.0, 0.1, True, 200, body=body)


def test_every_strategy_is_scored_and_a_query_is_asked_once(tmp_path):
    lines = [
        {
            "messages": [
                {"role": "user", "content": "When did the Velmora Tramway open?"},
                {"role": "assistant", "content": "In 1889."},
                {"role": "user", "content": "Who designed it?"},
            ],
            "answers": ["Marrow"],
            "source": "tramway.md",
            "kind": "follow-up",
        },
        {
            "messages": [
                {"role": "user", "content": "Who designed the Glass Bridge?"},
                {"role": "assistant", "content": "Benedikt Sørhaug."},
                {"role": "user", "content": "Who designed the Velmora Tramway?"},
            ],
            "answers": ["Marrow"],
            "source": "tramway.md",
            "kind": "topic-shift",
        },
    ]
    path = tmp_path / "set.conversations.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    target = FakeTarget()
    results = evaluate_strategies(load_conversations(path, Settings()), target, ("last", "concat", "auto"))
    # last: "Who designed it?" misses; concat and auto find the tramway for the follow-up.
    assert [r["correct"] for r in results["last"]] == [False, True]
    assert [r["correct"] for r in results["auto"]] == [True, True]
    assert results["auto"][0]["retrieval_query"] == "Who designed it? (Velmora Tramway open)"
    assert len(target.queries) == len(set(target.queries))  # auto's topic shift reused last's answer
    summary = summaries(results["last"])
    assert summary["all"]["hit_at_1"] == 0.5 and summary["follow-up"]["accuracy"] == 0.0
    assert summary["topic-shift"]["accuracy"] == 1.0
    published = {
        "started_utc": "now",
        "llm": "fake",
        "sets": {"set": {s: {"summary": summaries(r)} for s, r in results.items()}},
    }
    rows = table(published).splitlines()
    assert rows[2].startswith("| set (2: 1 follow-ups + 1 topic shifts) | `last` | 50.0 % | 50.0 % | 50.0 % |")
