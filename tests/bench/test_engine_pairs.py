"""`make bench-engines-paired`: the interleaving, the paired ratio and its verdict, the table, chart and publishing.

The served run itself (two monoliths at once) is what the command does by hand; here the harness's pieces are
checked on fake targets and synthetic rows, as tests/bench/test_engines_report.py checks make bench-engines'.
"""

from __future__ import annotations

import json
from collections import Counter

import pytest

from bench.core.workload import Outcome
from evaluation import engine_pairs
from evaluation.evaluate import load_questions

REFERENCE, OTHER = "torch-float32", "ctranslate2-float32"


class FakeTarget:
    """Answers every question with its first accepted answer after `ms`, and remembers who was called when."""

    def __init__(self, name: str, calls: list, ms: float):
        self.name, self.calls, self.ms = name, calls, ms
        self.by_text = {
            q.question: q for q in load_questions(engine_pairs.REPO_ROOT / "data" / "sample.questions.jsonl")
        }

    def call(self, payload: dict) -> Outcome:
        self.calls.append((self.name, payload["query"]))
        question = self.by_text[payload["query"]]
        answer = " and ".join(question.answers[0]) if question.answerable else "I don't know."
        body = {"answer": answer, "sources": [], "usage": {"prompt_tokens": 100, "completion_tokens": 5}}
        return Outcome(0.0, self.ms / 1000, True, 200, body=body)


def _questions(count: int):
    return load_questions(engine_pairs.REPO_ROOT / "data" / "sample.questions.jsonl")[:count]


def test_every_question_goes_to_both_each_round_in_a_shuffled_order_and_either_goes_first():
    calls: list = []
    targets = {REFERENCE: FakeTarget(REFERENCE, calls, 3000), OTHER: FakeTarget(OTHER, calls, 1500)}
    questions = _questions(30)
    rows = engine_pairs.ask_in_pairs(targets, questions, rounds=2, seed=1, pause_s=0)
    assert len(rows) == len(calls) == 2 * 30 * 2
    # Each pair of consecutive calls is one question asked of both variants.
    pairs = [calls[i : i + 2] for i in range(0, len(calls), 2)]
    assert all({name for name, _ in pair} == {REFERENCE, OTHER} and pair[0][1] == pair[1][1] for pair in pairs)
    # Each round asks every question once, in an order that is not the file's.
    for round_number in range(2):
        asked = [r["index"] for r in rows if r["round"] == round_number and r["variant"] == REFERENCE]
        assert sorted(asked) == list(range(30)) and asked != list(range(30))
    firsts = Counter(r["variant"] for r in rows if r["first"])
    assert firsts[REFERENCE] > 5 and firsts[OTHER] > 5 and sum(firsts.values()) == 60
    # The same seed gives the same order.
    again: list = []
    engine_pairs.ask_in_pairs(
        {REFERENCE: FakeTarget(REFERENCE, again, 1), OTHER: FakeTarget(OTHER, again, 1)}, questions, 2, 1, 0
    )
    assert again == calls


def _rows(reference_ms: list[float], other_ms: list[float], rounds: int = 2) -> list[dict]:
    calls: list = []
    rows = []
    questions = _questions(len(reference_ms))
    for round_number in range(rounds):
        for position, (a, b) in enumerate(zip(reference_ms, other_ms)):
            for name, ms, first in ((REFERENCE, a, True), (OTHER, b, False)):
                record = engine_pairs.score(
                    questions[position],
                    FakeTarget(name, calls, ms).call({"query": questions[position].question}).body,
                    None,
                    ms + round_number,
                )
                rows.append(record | {"round": round_number, "index": position, "variant": name, "first": first})
    return rows


def test_the_ratio_is_of_the_questions_medians_with_a_paired_interval_and_a_verdict():
    reference = [2000.0 + 40 * i for i in range(40)]
    met = engine_pairs.summarize_pairs(_rows(reference, [0.45 * ms for ms in reference]), REFERENCE, OTHER, 2)
    assert met["ratio"]["ratio"] == pytest.approx(0.45, abs=0.01)
    assert met["ratio"]["low"] <= met["ratio"]["ratio"] <= met["ratio"]["high"] < 0.6
    assert met["ratio"]["verdict"] == "met" and met["ratio"]["questions"] == 40
    assert met["answers"] == {"questions": 40, "identical": 40}
    assert met["variants"][REFERENCE]["accuracy"] == 1.0
    missed = engine_pairs.summarize_pairs(_rows(reference, [0.8 * ms for ms in reference]), REFERENCE, OTHER, 2)
    assert missed["ratio"]["verdict"] == "missed"
    # An interval that straddles the target decides nothing.
    spread = [400.0 + 10 * i for i in range(41)]
    near = engine_pairs.summarize_pairs(_rows([1000.0] * 41, spread), REFERENCE, OTHER, 2)
    assert near["ratio"]["low"] < 0.6 < near["ratio"]["high"]
    assert near["ratio"]["verdict"] == "inconclusive"
    # The target is against torch float32: two other variants get their ratio and no verdict.
    renamed = {REFERENCE: OTHER, OTHER: "openvino-float32"}
    rows = [row | {"variant": renamed[row["variant"]]} for row in _rows(reference, [0.45 * ms for ms in reference])]
    between = engine_pairs.summarize_pairs(rows, OTHER, "openvino-float32", 2)
    assert between["ratio"]["ratio"] == pytest.approx(0.45, abs=0.01) and between["ratio"]["verdict"] is None


def test_each_round_has_its_own_paired_ratio():
    # A cache that answered the other variant's second asks twice as fast shows as a round unlike the first.
    reference = [2000.0 + 40 * i for i in range(20)]
    rows = _rows(reference, [0.5 * ms for ms in reference])
    for row in rows:
        if row["round"] == 1 and row["variant"] == OTHER:
            row["latency_ms"] *= 0.5
    first, second = engine_pairs.summarize_pairs(rows, REFERENCE, OTHER, 2)["by_round"]
    assert first["ratio"] == pytest.approx(0.5, abs=0.01) and second["ratio"] == pytest.approx(0.25, abs=0.01)
    assert first["n"] == second["n"] == 20 and second["high"] < first["low"]


def test_a_question_that_failed_in_any_round_leaves_the_ratio():
    rows = _rows([1000.0] * 5, [500.0] * 5)
    rows[-1] |= {"error": "timeout: no answer"}  # the last question's second answer in round two
    summary = engine_pairs.summarize_pairs(rows, REFERENCE, OTHER, 2)
    assert summary["ratio"]["questions"] == 4 and len(summary["per_question_ms"][OTHER]) == 4


def test_what_the_other_variant_just_before_costs_is_measured_per_question():
    def row(variant, index, ms):
        return {"variant": variant, "index": index, "latency_ms": ms, "error": None}

    rows = []
    for index in range(20):
        # Question `index`: the reference after itself (1000 ms), then after the other one (1100 ms).
        rows += [row(REFERENCE, index, 1000.0 + index), row(OTHER, index, 500.0), row(REFERENCE, index, 1100.0 + index)]
    slowed = engine_pairs.after_the_other(rows, REFERENCE)
    assert slowed["estimate"] == pytest.approx(100.0) and slowed["n"] == 19  # the first row has none before it
    assert slowed["low"] > 0
    # The other variant always followed the reference: no question had both, nothing is claimed.
    assert engine_pairs.after_the_other(rows, OTHER)["estimate"] is None


def _result(tmp_path) -> dict:
    reference = [2000.0 + 40 * i for i in range(12)]
    rows = _rows(reference, [0.5 * ms for ms in reference])
    return {
        "kind": "engines-paired",
        "started_utc": "20261205T000000Z",
        "loadavg_start": [0.4, 0.5, 0.6],
        "loadavg_end": [1.1, 0.9, 0.7],
        "cpu": {"model": "AMD EPYC", "vendor": "AuthenticAMD", "cores": 2, "flags": ["avx2"]},
        "tier": "smollm2-135m-instruct",
        "set": "sample",
        "rounds": 2,
        "fresh_servers_each_round": True,
        "reference": REFERENCE,
        "other": OTHER,
        "bandwidth": {"gb_per_s": 26.4},
        "bandwidth_end": {"gb_per_s": 24.1},
        "duration_s": 600.0,
        "summary": engine_pairs.summarize_pairs(rows, REFERENCE, OTHER, 2),
        "rows": rows,
    }


def test_the_table_chart_and_published_files(tmp_path):
    result = _result(tmp_path)
    text = engine_pairs.table(result)
    assert "ctranslate2-float32 / torch-float32: 0.50x" in text and "**met**" in text
    assert "12/12" in text and "26.4 GB/s" in text and "0.40 at the start, 1.10 at the end" in text
    assert "2 rounds on fresh servers each round (round 1: 0.50x" in text and "; round 2: 0.50x" in text
    # A run from before the rounds had fresh servers says so.
    assert "on the same servers throughout" in engine_pairs.table(result | {"fresh_servers_each_round": False})
    unjudged = json.loads(json.dumps(result))
    unjudged["summary"]["ratio"]["verdict"] = None
    assert "no verdict (the c=1 target, at most 0.6x, is against torch-float32)" in engine_pairs.table(unjudged)
    doc = tmp_path / "performance.md"
    doc.write_text(f"before\n{engine_pairs.BEGIN}\nold\n{engine_pairs.END}\nafter\n")
    chart, latest = tmp_path / "paired.png", tmp_path / "latest" / "engines-paired.json"
    engine_pairs.publish(result, doc, chart, latest)
    published = doc.read_text()
    assert "old" not in published and "0.50x" in published and "images/paired.png" in published
    assert published.startswith("before\n") and published.endswith("after\n")
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    kept = json.loads(latest.read_text())
    assert "rows" not in kept and kept["summary"]["ratio"]["verdict"] == "met"
    # The kept file re-renders the same table (its question keys are strings after JSON).
    assert engine_pairs.table(kept) == text
    engine_pairs.chart(kept, tmp_path / "again.png")


def test_the_command_line(tmp_path, capsys):
    with pytest.raises(SystemExit):
        engine_pairs.main(["--help"])
    assert "--rounds" in capsys.readouterr().out
    assert engine_pairs.main(["--engines", f"{REFERENCE},{REFERENCE}"]) == 2
    assert engine_pairs.main(["--engines", REFERENCE]) == 2
    assert engine_pairs.main(["--rounds", "0"]) == 2
    assert engine_pairs.main(["--tier", "no-such-tier"]) == 2
    assert engine_pairs.main(["--set", "no-such-set"]) == 2
    assert engine_pairs.main(["--engines", f"{REFERENCE},tensorrt-float32"]) == 2
    assert "unknown engine variant" in capsys.readouterr().err
    smoke = _result(tmp_path) | {"kind": "smoke"}
    path = tmp_path / "smoke.json"
    path.write_text(json.dumps(smoke))
    assert engine_pairs.main(["--report", str(path)]) == 0
    assert engine_pairs.main(["--report", str(path), "--publish"]) == 2
