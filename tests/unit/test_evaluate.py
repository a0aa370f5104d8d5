"""`make eval`'s scoring, metrics, question files and exit codes, with fakes and no model."""

import json

import pytest

from evaluation.evaluate import (
    QuestionFileError,
    format_table,
    is_correct,
    is_miss,
    is_refusal,
    load_questions,
    main,
    normalise,
    parse_question,
    score,
    source_rank,
    summarize,
    thresholds_failed,
)
from tests.support import json_server


def question(answers=("1889",), source="tramway.md", answerable=True, text="When did it open?"):
    data = {"question": text, "answers": list(answers), "answerable": answerable}
    if source:
        data["source"] = source
    return parse_question(data, "q.jsonl:1", 1)


def response(answer, sources=("tramway.md", "metro.md"), prompt=120, completion=9):
    return {
        "answer": answer,
        "sources": [{"rank": i + 1, "source": s, "chunk": 0, "score": 0.5} for i, s in enumerate(sources)],
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion},
    }


@pytest.mark.parametrize(
    "answer, accepted, expected",
    [
        ("It carries 2,318 riders.", (("2318",),), True),
        ("It carries 2318 riders.", (("2,318",),), True),
        ("About 1,234,567 people", (("1234567",),), True),
        ("It opened in 1889.", (("1889",),), True),
        ("ILSE MARROW designed it", (("Marrow",),), True),
        ("It opened in 1898.", (("1889",),), False),
        ("Designed by Marrow in 1889", (("1889", "Marrow"),), True),  # all-of alternative
        ("Designed by Marrow", (("1889", "Marrow"),), False),
        ("It is 4.2 km long", (("4.2 kilometres",), ("4.2 km",)), True),  # any alternative
        ("Costs 2.40 crowns", (("2,40",),), False),  # a decimal comma is not a thousands separator
        ("the Harbour\u2013Line", (("harbour-line",),), True),  # dashes normalised
        ("It took eleven weeks", (("11 weeks",),), True),  # number words up to twenty
        ("Seven lines run today", (("7 lines",),), True),
        ("Cycling is 9% of trips", (("9 percent",),), True),
        ("Cycling is 9 per cent of trips", (("9%",),), True),
        ("someone came", (("1 came",),), False),  # whole words only, not parts of words
    ],
)
def test_accuracy_is_case_and_number_normalised(answer, accepted, expected):
    assert is_correct(answer, accepted) is expected


def test_normalise_keeps_decimals_and_short_groups():
    assert normalise("  3,5  and 12,000\tkm ") == "3,5 and 12000 km"
    assert normalise("1,23") == "1,23"


@pytest.mark.parametrize(
    "answer, refused",
    [
        ("The documents do not say.", True),
        ("The passages do not mention the architect.", True),
        ("This information is not provided in the documents.", True),
        ("I cannot find that in the passages.", True),
        ("", True),
        ("The tramway opened in 1889.", False),
        ("It does not run at night; it opened in 1889.", False),
    ],
)
def test_refusal_detection(answer, refused):
    assert is_refusal(answer) is refused


def test_source_rank_matches_paths_and_basenames():
    sources = [{"source": "docs/a.md"}, {"source": "tramway.md"}]
    assert source_rank(sources, "tramway.md") == 2
    assert source_rank(sources, "a.md") == 1
    assert source_rank(sources, "missing.md") is None
    assert source_rank(sources, None) is None


def test_score_and_summary_metrics():
    records = [
        score(question(), response("It opened in 1889."), None, 1000.0),  # right, source first
        score(question(), response("It opened in 1901.", sources=("metro.md", "tramway.md")), None, 3000.0),
        score(question(answers=(), source=None, answerable=False), response("The documents do not say."), None, 2000.0),
        score(question(answers=(), source=None, answerable=False), response("It was 42."), None, 2000.0),
        score(question(), None, "timeout: too slow", 55000.0),
    ]
    summary = summarize(records, top_k=2)
    assert summary["questions"] == 5 and summary["answerable"] == 3 and summary["unanswerable"] == 2
    assert summary["accuracy"] == pytest.approx(1 / 3, abs=1e-4)
    assert summary["refusal"] == 0.5
    assert summary["hit_at_1"] == pytest.approx(1 / 3, abs=1e-4)  # the errored request retrieved nothing
    assert summary["hit_at_k"] == pytest.approx(2 / 3, abs=1e-4)
    assert summary["mrr"] == pytest.approx((1 + 0.5 + 0) / 3, abs=1e-4)
    assert summary["errors"] == 1
    assert summary["prompt_tokens_p50"] == 120 and summary["latency_ms_p50"] == 2000.0  # errors excluded
    assert [is_miss(r) for r in records] == [False, True, False, True, True]
    table = format_table(summary)
    assert "33.3 %" in table and "hit@2" in table and "50.0 %" in table


def test_thresholds():
    summary = {"accuracy": 0.75, "refusal": None, "hit_at_1": 1.0}
    assert thresholds_failed(summary, {"accuracy": 0.8, "hit_at_1": 0.95, "refusal": None}) == [
        "accuracy 0.75 is below the minimum 0.8"
    ]
    assert thresholds_failed(summary, {"refusal": 0.5}) == ["refusal n/a is below the minimum 0.5"]


@pytest.mark.parametrize(
    "line, message",
    [
        ("{not json", "q.jsonl:2: not valid JSON"),
        ('["a list"]', "q.jsonl:2: expected a JSON object"),
        ('{"question": "Q?", "answers": ["x"], "sourc": "a.md"}', "q.jsonl:2: unknown field(s) sourc"),
        ('{"question": "", "answers": ["x"]}', "q.jsonl:2: 'question' must be a non-empty string"),
        ('{"question": "Q?", "answers": "x"}', "q.jsonl:2: 'answers' must be a list"),
        ('{"question": "Q?", "answers": [3]}', "q.jsonl:2: each of 'answers'"),
        ('{"question": "Q?", "answers": [[]]}', "q.jsonl:2: each of 'answers'"),
        ('{"question": "Q?", "answers": []}', "q.jsonl:2: an answerable question needs"),
        ('{"question": "Q?", "answers": ["x"], "answerable": "no"}', "q.jsonl:2: 'answerable' must be true or false"),
        ('{"question": "Q?", "answers": ["x"], "source": 7}', "q.jsonl:2: 'source' must be"),
    ],
)
def test_bad_question_file_names_the_line(tmp_path, line, message):
    path = tmp_path / "q.jsonl"
    path.write_text('{"question": "fine?", "answers": ["yes"]}\n' + line + "\n")
    with pytest.raises(QuestionFileError) as caught:
        load_questions(path)
    assert message in caught.value.message and str(tmp_path) in caught.value.message


def test_question_file_defaults_and_blank_lines(tmp_path):
    path = tmp_path / "q.jsonl"
    path.write_text(
        '\n{"question": " Q? ", "answers": ["a", ["b", "c"]]}\n\n'
        '{"question": "R?", "answers": [], "answerable": false}\n'
    )
    first, second = load_questions(path)
    assert first.question == "Q?" and first.answers == (("a",), ("b", "c")) and first.answerable and first.line == 2
    assert second.answerable is False and second.source is None and second.line == 4
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(QuestionFileError, match="holds no questions"):
        load_questions(empty)


def test_cli_bad_file_is_one_line_and_exit_2(tmp_path, capsys):
    path = tmp_path / "q.jsonl"
    path.write_text('{"question": "Q?"}\n')
    assert main(["--questions", str(path), "--url", "http://127.0.0.1:9", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("error: ") and "q.jsonl:1" in err


def test_cli_against_a_server_writes_misses_and_applies_thresholds(tmp_path, capsys):
    """A real HTTP server on loopback (http.server) answering like /invocations."""
    answers = {
        "When did it open?": "It opened in 1889.",
        "Who built it?": "Nobody knows.",
        "What colour is the moon?": "The documents do not say.",
    }

    with json_server(lambda body: response(answers[body["query"]])) as url:
        path = tmp_path / "q.jsonl"
        path.write_text(
            "\n".join(
                json.dumps(q)
                for q in [
                    {"question": "When did it open?", "answers": ["1889"], "source": "tramway.md"},
                    {"question": "Who built it?", "answers": ["Marrow"], "source": "tramway.md"},
                    {"question": "What colour is the moon?", "answers": [], "answerable": False},
                ]
            )
            + "\n"
        )
        out = tmp_path / "result.json"
        assert (
            main(
                [
                    "--questions",
                    str(path),
                    "--url",
                    url,
                    "--out",
                    str(out),
                    "--no-progress",
                    "--min-accuracy",
                    "0.5",
                    "--min-refusal",
                    "1",
                ]
            )
            == 0
        )
        result = json.loads(out.read_text())
        assert result["summary"]["accuracy"] == 0.5 and result["summary"]["refusal"] == 1.0
        assert [m["question"] for m in result["misses"]] == ["Who built it?"]
        assert (
            result["misses"][0]["answer"] == "Nobody knows."
            and result["misses"][0]["sources"][0]["source"] == "tramway.md"
        )
        assert "answer accuracy (answerable)" in capsys.readouterr().out
        assert (
            main(["--questions", str(path), "--url", url, "--out", str(out), "--no-progress", "--min-accuracy", "0.8"])
            == 1
        )
        assert "FAILED: accuracy 0.5 is below the minimum 0.8" in capsys.readouterr().err
