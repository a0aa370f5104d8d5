"""Both architectures give the same answer and the same sources for every question of both dev sets.

The question files are the ones `make eval` uses (data/*.questions.jsonl). Context focus runs in the
monolith's process and in the microservices' vector service, the prompt in the LLM service: any drift
between the two paths shows up here as a different answer or excerpt. To keep CI short this asks every
second question of each set for its sources, excerpts and prompt size, and every twelfth for the whole
answer; `make eval-report` and `make eval-models` compare every whole answer of every question.
"""

import subprocess
import sys

import pytest

from evaluation.evaluate import load_questions
from tests.service.conftest import start_architecture
from tests.support import ROOT, child_env

pytestmark = pytest.mark.slow
SOURCES_EVERY = 2  # CI's budget: about 30 questions per set, each a prefill on each architecture
EVERY = 12  # and 5 whole answers per set on each architecture (each costs ~2.5 s there)


def _differences(monolith, microservices, questions, max_new_tokens: int | None) -> list:
    differences = []
    for question in questions:
        payload = {"query": question.question}
        if max_new_tokens is not None:
            payload["max_new_tokens"] = max_new_tokens
        mono, micro = monolith.invoke(payload), microservices.invoke(payload)
        assert mono.status_code == micro.status_code == 200, (question.question, mono.text, micro.text)
        mono, micro = mono.json(), micro.json()
        if (mono["answer"], mono["sources"], mono["usage"]) != (micro["answer"], micro["sources"], micro["usage"]):
            differences.append((question.line, question.question, mono["sources"], micro["sources"]))
    return differences


def _compare(monolith, microservices, questions_file):
    questions = load_questions(questions_file)
    # Sources, scores, excerpts and prompt size (one new token: cheap), then whole answers.
    assert not _differences(monolith, microservices, questions[::SOURCES_EVERY], 1)
    assert not _differences(monolith, microservices, questions[::EVERY], None)


def test_sample_set_identical_on_both(monolith, microservices):
    _compare(monolith, microservices, ROOT / "data" / "sample.questions.jsonl")


def test_held_out_set_identical_on_both(tmp_path):
    index = tmp_path / "harbourline-index"
    subprocess.run(
        [sys.executable, "-m", "rag.ingest", "--docs", str(ROOT / "data" / "harbourline"), "--index", str(index)],
        check=True,
        env=child_env(),
        capture_output=True,
    )
    services = [start_architecture(arch, tmp_path, index) for arch in ("monolito", "microservicos")]
    try:
        for service in services:
            service.wait_ready()
        _compare(*services, ROOT / "data" / "harbourline.questions.jsonl")
    finally:
        for service in services:
            service.server.stop()
