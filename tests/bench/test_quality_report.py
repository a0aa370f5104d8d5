"""make eval-report's table, README summary, parity count and publishing, on synthetic results."""

from evaluation.quality import BEGIN, END, README_BEGIN, README_END, identical, publish, summary_line, table


def summary(accuracy, refusal, hit=1.0):
    return {
        "answerable": 60,
        "unanswerable": 13,
        "accuracy": accuracy,
        "refusal": refusal,
        "hit_at_1": hit,
        "mrr": 0.98,
        "prompt_tokens_p50": 240.0,
        "latency_ms_p50": 1500.0,
        "latency_ms_p95": 2600.0,
    }


def record(line, answer, correct=True):
    return {
        "line": line,
        "answer": answer,
        "sources": [{"source": "a.md"}],
        "prompt_tokens": 9,
        "completion_tokens": 3,
        "correct": correct,
    }


RESULT = {
    "started_utc": "20261129T120000Z",
    "loadavg_start": [1.2, 1.0, 0.9],
    "previous_ref": "0123456789abcdef",
    "sets": {
        "sample": {
            "previous": {"summary": summary(0.433, 0.0), "records": [record(1, "x", False)]},
            "monolito": {"summary": summary(0.55, 0.3077), "records": [record(1, "It opened in 1889.")]},
            "microservicos": {"summary": summary(0.55, 0.3077), "records": [record(1, "It opened in 1889.")]},
            "parity": {"questions": 1, "identical": 1, "differing_lines": []},
        }
    },
}


def test_parity_counts_differences_by_line():
    same = [record(1, "a"), record(2, "b")]
    other = [record(1, "a"), record(2, "c")]
    assert identical(same, same) == {"questions": 2, "identical": 2, "differing_lines": []}
    assert identical(same, other) == {"questions": 2, "identical": 1, "differing_lines": [2]}


def test_table_and_summary_show_before_and_after():
    text = table(RESULT)
    assert "| sample (60 + 13) | before (0123456789, monolith) | 43.3 % | 0.0 % |" in text
    assert "| sample (60 + 13) | now, microservices | 55.0 % | 30.8 % |" in text and "| 1/1 |" in text
    assert "load average 1.2" in text
    line = summary_line(RESULT)
    assert line == (
        "**sample**: answer accuracy 55.0 % (before: 43.3 %), refusal of unanswerable questions 30.8 % "
        "(before: 0.0 %), hit@1 100.0 %."
    )


def test_publish_replaces_the_marked_blocks_only(tmp_path, monkeypatch):
    import evaluation.quality as quality

    monkeypatch.setattr(quality, "DEFAULT_RESULTS_DIR", tmp_path / "results")
    doc, readme = tmp_path / "evaluation.md", tmp_path / "README.md"
    doc.write_text(f"# Eval\n\n{BEGIN}\nold table\n{END}\n\nafter\n")
    readme.write_text(f"intro\n{README_BEGIN}\nold\n{README_END}\nrest\n")
    publish(RESULT, doc=doc, readme=readme)
    publish(RESULT, doc=doc, readme=readme)  # idempotent: one table, not two
    text = doc.read_text()
    assert text.count(BEGIN) == 1 and "old table" not in text and text.endswith("\n\nafter\n")
    assert "43.3 %" in readme.read_text() and readme.read_text().endswith("rest\n")
    latest = (tmp_path / "results" / "latest" / "quality.json").read_text()
    assert '"misses"' in latest and '"records"' not in latest
