"""evaluation/other_engines.py's scoring (the project's side of the by-hand probe of ONNX Runtime GenAI and
OpenVINO GenAI): another engine's tokens become answers as the service makes them, and are scored as `make eval`
scores them; the reference's tokens must give the service's own answers. The engines themselves need a virtualenv
of their own (requirements-other-engines.txt), so they are measured by hand, not here."""

import json
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from evaluation import other_engines
from rag.ladder import default_tier, tiers
from rag.models import tier_dir

ROOT = Path(__file__).resolve().parents[2]
ANSWERABLE = "When did the Velmora Tramway open, and who designed its first line?"
EXCERPT = "The tramway opened on 14 May 1889. Its first line was designed by Ilse Marrow."


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(tier_dir(tiers()[default_tier()]))


def record(question, answer, excerpt):
    sources = [{"rank": 1, "source": "tramway.md", "chunk": 0, "score": 0.7, "excerpt": excerpt}]
    return {"question": question, "answer": answer, "error": None, "sources": sources, "prompt_tokens": 200}


def row(tokenizer, question, **answers):
    """One prompt's row: each variant's tokens are its answer's, then the end-of-turn token."""
    ids = {
        name: tokenizer.encode(text, add_special_tokens=False) + [tokenizer.eos_token_id]
        for name, text in answers.items()
    }
    variants = {
        name: {"first_s": 0.1, "whole_s": 0.1 + 0.02 * len(tokens), "tokens": tokens} for name, tokens in ids.items()
    }
    return {"set": "sample", "question": question, "prompt_tokens": 200, "new": 40} | variants


def test_other_engines_answers_are_scored_as_the_service_gives_them(tmp_path, tokenizer):
    served = "The tramway opened in 1889, and Ilse Marrow designed its first line."
    records = tmp_path / "sample.json"
    questions = str(ROOT / "data" / "sample.questions.jsonl")
    records.write_text(json.dumps({"questions_file": questions, "records": [record(ANSWERABLE, served, EXCERPT)]}))
    run = {
        "tier": default_tier(),
        "variants": ["ctranslate2-float32", "openvino-default"],
        # The other engine invents a year the excerpt does not hold: the grounding check refuses it.
        "rows": [
            row(tokenizer, ANSWERABLE, **{"ctranslate2-float32": served, "openvino-default": "It opened in 1901."})
        ],
    }
    (tmp_path / "run.json").write_text(json.dumps(run))
    summary = other_engines.score(tmp_path / "run.json", [records], tmp_path / "summary.json")
    reference, other = summary["variants"]["ctranslate2-float32"], summary["variants"]["openvino-default"]
    assert reference["sets"]["sample"] == {
        "answerable": 1,
        "correct": 1,
        "unanswerable": 0,
        "refused": 0,
        "same_answer": 1,
        "cut": 0,
    }
    assert other["sets"]["sample"]["correct"] == 0 and other["sets"]["sample"]["same_answer"] == 0
    assert other["identical_tokens"] == 0 and reference["identical_tokens"] == 1
    assert other["whole_vs_reference"]["ratio"] < 1  # the shorter answer took less time
    assert "rows" not in json.loads((tmp_path / "summary.json").read_text())


def test_an_answer_stopped_by_the_token_limit_is_counted_as_cut(tmp_path, tokenizer):
    served = "The tramway opened in 1889."
    records = tmp_path / "sample.json"
    questions = str(ROOT / "data" / "sample.questions.jsonl")
    records.write_text(json.dumps({"questions_file": questions, "records": [record(ANSWERABLE, served, EXCERPT)]}))
    cut = row(tokenizer, ANSWERABLE, **{"ctranslate2-float32": served, "openvino-f32": "The tramway opened in"})
    cut["openvino-f32"]["tokens"] = cut["openvino-f32"]["tokens"][:-1]  # no end-of-turn token: the limit stopped it
    cut["new"] = len(cut["openvino-f32"]["tokens"])
    (tmp_path / "run.json").write_text(
        json.dumps({"tier": default_tier(), "variants": ["ctranslate2-float32", "openvino-f32"], "rows": [cut]})
    )
    summary = other_engines.score(tmp_path / "run.json", [records])
    assert summary["variants"]["openvino-f32"]["sets"]["sample"]["cut"] == 1
    assert summary["variants"]["ctranslate2-float32"]["sets"]["sample"]["cut"] == 0


def test_run_refuses_a_reference_other_than_ctranslate2():
    with pytest.raises(SystemExit):
        other_engines.main(["run", "--variants", "openvino-f32,ctranslate2-float32"])


def test_package_versions_name_what_is_installed_and_none_for_what_is_not():
    from importlib.metadata import version

    from bench.core.machine import package_versions

    assert package_versions(["pytest", "no-such-package-here"]) == {
        "pytest": version("pytest"),
        "no-such-package-here": None,
    }
