"""Request validation, settings, errors and the pipeline, with fakes."""

import json

import pytest

from rag import errors
from rag.api import QueryRequest
from rag.pipeline import RagPipeline
from rag.settings import Settings
from rag.types import Passage, Retriever
from tests.fakes import FakeGenerator

SETTINGS = Settings()


def parse(body, content_type="application/json"):
    if not isinstance(body, bytes):
        body = json.dumps(body).encode()
    return QueryRequest.from_body(body, content_type, SETTINGS)


def test_defaults_and_text_plain():
    request = parse({"query": "  When?  "})
    assert request == QueryRequest("When?", 3, 128, 0.0)
    assert parse("Wann öffnete die Tram?".encode(), "text/plain; charset=utf-8").query == "Wann öffnete die Tram?"


@pytest.mark.parametrize(
    "body, content_type, error_type, fragment",
    [
        (b"{not json", "application/json", "invalid_json", "not valid"),
        (b"", "application/json", "invalid_json", "not valid"),
        (b"\xff\xfe", "application/json", "invalid_json", "UTF-8"),
        (b"[1, 2]", "application/json", "invalid_request", "JSON object"),
        ({}, "application/json", "invalid_request", "'query' is required"),
        ({"query": "   "}, "application/json", "invalid_request", "empty"),
        ({"query": 42}, "application/json", "invalid_request", "must be a string"),
        ({"query": "x" * 4001}, "application/json", "invalid_request", "4000"),
        ({"query": "q", "top_k": 0}, "application/json", "invalid_request", "top_k"),
        ({"query": "q", "top_k": 21}, "application/json", "invalid_request", "top_k"),
        ({"query": "q", "top_k": "3"}, "application/json", "invalid_request", "top_k"),
        ({"query": "q", "top_k": True}, "application/json", "invalid_request", "top_k"),
        ({"query": "q", "max_new_tokens": 1025}, "application/json", "invalid_request", "max_new_tokens"),
        ({"query": "q", "temperature": 2.5}, "application/json", "invalid_request", "temperature"),
        ({"query": "q", "temperature": -0.1}, "application/json", "invalid_request", "temperature"),
        ({"query": "q", "topk": 3, "stream": True}, "application/json", "invalid_request", "stream, topk"),
        (b"   ", "text/plain", "invalid_request", "empty"),
        (b"query", "application/xml", "unsupported_media_type", "application/xml"),
        (b"query", None, "unsupported_media_type", "(none)"),
    ],
)
def test_bad_requests_raise_typed_errors(body, content_type, error_type, fragment):
    with pytest.raises(errors.RagError) as info:
        parse(body, content_type)
    assert info.value.error_type == error_type
    assert 400 <= info.value.status < 500
    assert fragment in info.value.message


def test_edge_values_are_accepted():
    request = parse({"query": "x" * 4000, "top_k": 20, "max_new_tokens": 1024, "temperature": 2})
    assert (request.top_k, request.max_new_tokens, request.temperature) == (20, 1024, 2.0)


class ListRetriever(Retriever):
    model_name = "list-retriever"

    def retrieve(self, query, top_k, deadline=None):
        return [Passage(i + 1, f"doc{i}.md", 0, 1.0 - i / 10, f"text {i}") for i in range(top_k)]


def test_pipeline_response_shape():
    generator = FakeGenerator()
    result = RagPipeline(ListRetriever(), generator, "monolith").answer(QueryRequest("q", top_k=2, max_new_tokens=7))
    assert result["answer"] == "According to [1] doc0.md"
    assert [s["rank"] for s in result["sources"]] == [1, 2]
    assert set(result["sources"][0]) == {"rank", "source", "chunk", "score", "text"}
    assert result["architecture"] == "monolith"
    assert result["model"] == {"embedding": "list-retriever", "llm": "fake-llm"}
    assert result["usage"] == {"prompt_tokens": 1, "completion_tokens": 5}
    assert set(result["timings_ms"]) == {"retrieve", "generate", "total"}
    assert generator.seen[0][2].max_new_tokens == 7


@pytest.mark.parametrize(
    "name, value, fragment",
    [
        ("RAG_DEVICE", "tpu", "RAG_DEVICE"),
        ("RAG_TOP_K", "zero", "RAG_TOP_K"),
        ("RAG_TOP_K", "50", "RAG_TOP_K"),
        ("RAG_MAX_NEW_TOKENS", "0", "RAG_MAX_NEW_TOKENS"),
        ("RAG_VECTOR_URL", "localhost:5001", "RAG_VECTOR_URL"),
        ("SAGEMAKER_BIND_TO_PORT", "http", "SAGEMAKER_BIND_TO_PORT"),
        ("MODEL_SERVER_WORKERS", "-1", "MODEL_SERVER_WORKERS"),
        ("RAG_REQUEST_TIMEOUT", "soon", "RAG_REQUEST_TIMEOUT"),
    ],
)
def test_wrong_setting_names_the_variable(name, value, fragment):
    with pytest.raises(errors.ConfigError, match=fragment):
        Settings.from_env({name: value})


def test_settings_from_env():
    settings = Settings.from_env(
        {
            "RAG_TOP_K": "5",
            "RAG_DEVICE": "CPU",
            "RAG_INDEX_DIR": "/tmp/x",
            "SAGEMAKER_BIND_TO_PORT": "9090",
            "RAG_LLM_MODEL": "my/llm",
        }
    )
    assert (settings.top_k, settings.device, str(settings.index_dir), settings.port, settings.llm_model) == (
        5,
        "cpu",
        "/tmp/x",
        9090,
        "my/llm",
    )
    assert Settings.from_env({"SM_NUM_GPUS": "0"}).device == "cpu"


def test_upstream_errors_keep_their_type():
    error = errors.from_dict({"error": "loading", "error_type": "not_ready"}, 503)
    assert isinstance(error, errors.NotReady) and error.message == "loading"
    assert isinstance(errors.from_dict({}, 502), errors.InternalError)
