"""The core with the real embedded models (no servers): retrieval quality, generation, deadlines."""

import json
import time

import pytest

from rag.api import QueryRequest
from rag.errors import ConfigError, InvalidRequest, RequestTimeout
from rag.generation.generator import TransformersGenerator
from rag.generation.prompt import build_messages
from rag.ladder import tier
from rag.models import llm_model_path, tier_dir
from rag.pipeline import RagPipeline
from rag.retrieval.local import load_retriever
from rag.settings import Settings
from rag.types import GenerationParams
from tests.support import ROOT

EMBEDDED_LLM = "embedded:smollm2-135m-instruct"
EMBEDDED_LLM_DIR = tier_dir(tier("smollm2-135m-instruct"))

pytestmark = pytest.mark.slow
QUESTIONS = json.loads((ROOT / "tests" / "data" / "sample_questions.json").read_text())


@pytest.fixture(scope="module")
def retriever(sample_index):
    return load_retriever(Settings(index_dir=sample_index, device="cpu"))


@pytest.fixture(scope="module")
def generator():
    # A local directory, as a user would configure RAG_LLM_MODEL=/path/to/model.
    return TransformersGenerator(str(EMBEDDED_LLM_DIR), llm_model_path(EMBEDDED_LLM), "cpu", threads=2)


@pytest.fixture(scope="module")
def sample_index():
    from tests.service.conftest import SAMPLE_INDEX

    if not (SAMPLE_INDEX / "manifest.json").exists():
        pytest.skip("run `make setup` first: it builds indexes/sample")
    return SAMPLE_INDEX


@pytest.mark.parametrize("question", QUESTIONS, ids=[q["source"] for q in QUESTIONS])
def test_retrieval_ranks_the_right_document_first(retriever, question):
    passages = retriever.retrieve(question["question"], top_k=3)
    assert passages[0].source == question["source"]
    assert passages[0].score >= passages[1].score >= passages[2].score


def test_top_five_passages_hold_the_facts(retriever):
    found = [
        any(all(fact in p.text for fact in q["expect"]) for p in retriever.retrieve(q["question"], 5))
        for q in QUESTIONS
    ]
    assert all(found), [q["question"] for q, ok in zip(QUESTIONS, found) if not ok]


def test_grounded_answer_from_a_local_model_directory(retriever, generator):
    pipeline = RagPipeline(retriever, generator, "monolith")
    result = pipeline.answer(QueryRequest(QUESTIONS[1]["question"], max_new_tokens=32))
    assert "1936" in result["answer"]
    assert result["model"]["llm"] == str(EMBEDDED_LLM_DIR)


def test_greedy_is_deterministic(retriever, generator):
    passages = retriever.retrieve(QUESTIONS[2]["question"], 3)
    first = generator.generate(QUESTIONS[2]["question"], passages, GenerationParams(24))
    second = generator.generate(QUESTIONS[2]["question"], passages, GenerationParams(24))
    assert first == second and first.completion_tokens <= 24


def test_prompt_carries_the_question_twice_and_the_passages_text(retriever):
    passages = retriever.retrieve(QUESTIONS[0]["question"], 2)
    messages = build_messages("q?", passages)
    assert messages[0]["role"] == "system" and "only the context" in messages[0]["content"]
    assert messages[1]["content"].startswith("Question: q?") and messages[1]["content"].endswith("Question: q?")
    assert all(p.text in messages[1]["content"] for p in passages)


def test_deadline_stops_generation(retriever, generator):
    passages = retriever.retrieve(QUESTIONS[0]["question"], 3)
    with pytest.raises(RequestTimeout):
        generator.generate(QUESTIONS[0]["question"], passages, GenerationParams(1024), time.monotonic() + 0.5)


def test_prompt_longer_than_the_context_is_refused(generator):
    with pytest.raises(InvalidRequest, match="context"):
        generator.generate("q", [], GenerationParams(generator.context_length))


def test_cuda_without_gpu_names_the_variable():
    with pytest.raises(ConfigError, match="RAG_DEVICE"):
        from rag.runtime import resolve_device

        resolve_device("cuda")


def test_a_vanishing_temperature_decodes_greedily_instead_of_failing(retriever, generator):
    # Dividing the logits by 6e-145 overflows float32 and sampling then raised on NaN probabilities (a 500).
    passages = retriever.retrieve(QUESTIONS[0]["question"], top_k=1)
    greedy = generator.generate(QUESTIONS[0]["question"], passages, GenerationParams(max_new_tokens=6))
    tiny = generator.generate(
        QUESTIONS[0]["question"], passages, GenerationParams(max_new_tokens=6, temperature=6.34e-145)
    )
    assert tiny.text == greedy.text
