"""The public API (docs/api.md, docs/openapi.yaml) against real Gunicorn processes of both architectures."""

import json
import threading
import time

import pytest
import requests

from tests.support import ROOT

pytestmark = pytest.mark.slow
QUESTIONS = json.loads((ROOT / "tests" / "data" / "sample_questions.json").read_text())


def test_ping_went_from_loading_to_ready(architecture):
    statuses = architecture.ping_history
    assert statuses[-1] == (200, "ready")
    assert (503, "loading") in statuses, f"never saw 503 loading while starting: {statuses}"
    response = requests.get(f"{architecture.url}/ping", timeout=2)
    assert response.status_code == 200 and response.json()["status"] == "ready"


def test_answers_from_the_right_document(architecture):
    response = architecture.invoke({"query": QUESTIONS[0]["question"]})
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert body["sources"][0]["source"] == "tramway.md"
    assert "1889" in body["answer"]
    assert body["architecture"] in ("monolith", "microservices")
    assert body["model"] == {
        "embedding": "sentence-transformers/all-MiniLM-L6-v2",
        "llm": "HuggingFaceTB/SmolLM2-135M-Instruct",
    }
    assert body["usage"]["prompt_tokens"] > 0 and 0 < body["usage"]["completion_tokens"] <= 40
    assert set(body["timings_ms"]) == {"retrieve", "generate", "total"}


def test_text_plain_and_options(architecture):
    response = architecture.invoke(data=QUESTIONS[1]["question"].encode(), content_type="text/plain")
    assert response.status_code == 200, response.text
    assert response.json()["sources"][0]["source"] == QUESTIONS[1]["source"]
    response = architecture.invoke({"query": QUESTIONS[2]["question"], "top_k": 5, "max_new_tokens": 8})
    body = response.json()
    assert len(body["sources"]) == 5 and body["usage"]["completion_tokens"] <= 8
    assert [source["rank"] for source in body["sources"]] == [1, 2, 3, 4, 5]


def test_both_architectures_agree(monolith, microservices):
    """Same request, same index, greedy decoding: the same answer and the same sources."""
    for question in QUESTIONS[:4]:
        payload = {"query": question["question"], "max_new_tokens": 32}
        mono, micro = monolith.invoke(payload).json(), microservices.invoke(payload).json()
        assert mono["sources"] == micro["sources"], question
        assert mono["answer"] == micro["answer"], question
        assert mono["usage"] == micro["usage"] and mono["model"] == micro["model"]
        assert (mono["architecture"], micro["architecture"]) == ("monolith", "microservices")
        assert mono["sources"][0]["source"] == question["source"]


BAD_INPUTS = [
    ("invalid_json", 400, dict(data=b'{"query": ', content_type="application/json")),
    ("invalid_json", 400, dict(data=b"\xff\xfe\x00", content_type="application/json")),
    ("invalid_request", 400, dict(data=b'["a list"]', content_type="application/json")),
    ("invalid_request", 400, dict(payload={})),
    ("invalid_request", 400, dict(payload={"query": "   "})),
    ("invalid_request", 400, dict(payload={"query": None})),
    ("invalid_request", 400, dict(payload={"query": "x" * 4001})),
    ("invalid_request", 400, dict(payload={"query": "q", "top_k": 0})),
    ("invalid_request", 400, dict(payload={"query": "q", "top_k": 21})),
    ("invalid_request", 400, dict(payload={"query": "q", "top_k": 2.5})),
    ("invalid_request", 400, dict(payload={"query": "q", "max_new_tokens": 0})),
    ("invalid_request", 400, dict(payload={"query": "q", "max_new_tokens": 5000})),
    ("invalid_request", 400, dict(payload={"query": "q", "temperature": 3})),
    ("invalid_request", 400, dict(payload={"query": "q", "temperature": "hot"})),
    ("invalid_request", 400, dict(payload={"query": "q", "colour": "blue"})),
    ("invalid_request", 400, dict(data=b"  \n ", content_type="text/plain")),
    ("invalid_request", 400, dict(payload={"query": "q"}, headers={"X-Amzn-SageMaker-Custom-Attributes": "é"})),
    ("unsupported_media_type", 415, dict(data=b"<q>hi</q>", content_type="application/xml")),
    ("unsupported_media_type", 415, dict(data=b"query=hi", content_type=None)),
    ("payload_too_large", 413, dict(data=b"x" * (6 * 1024 * 1024 + 1), content_type="text/plain")),
]


@pytest.mark.parametrize(
    "error_type, status, request_args", BAD_INPUTS, ids=[f"{i}-{case[0]}" for i, case in enumerate(BAD_INPUTS)]
)
def test_bad_input_gets_a_json_4xx(architecture, error_type, status, request_args):
    response = architecture.invoke(**request_args)
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error_type"] == error_type and body["error"]
    assert "Traceback" not in response.text


def test_unknown_route_and_method_are_json(architecture):
    response = requests.get(f"{architecture.url}/nope", timeout=5)
    assert response.status_code == 404 and response.json()["error_type"] == "not_found"
    response = requests.get(f"{architecture.url}/invocations", timeout=5)
    assert response.status_code == 405 and response.json()["error_type"] == "method_not_allowed"


def test_service_keeps_serving_after_bad_input(architecture):
    for _, _, request_args in BAD_INPUTS[:5]:
        architecture.invoke(**request_args)
    assert architecture.invoke({"query": QUESTIONS[3]["question"], "max_new_tokens": 4}).status_code == 200
    assert "Traceback" not in architecture.server.log()


def test_custom_attributes_pass_through(architecture):
    attributes = "trace=abc-123, tenant=velmora"
    response = architecture.invoke(
        {"query": "fares", "max_new_tokens": 2}, headers={"X-Amzn-SageMaker-Custom-Attributes": attributes}
    )
    assert response.status_code == 200
    assert response.headers["X-Amzn-SageMaker-Custom-Attributes"] == attributes


def test_deadline_gives_timeout_not_a_dropped_connection(architecture):
    response = architecture.invoke(
        {"query": QUESTIONS[0]["question"], "max_new_tokens": 1024}, headers={"X-Rag-Timeout-S": "0.2"}
    )
    assert response.status_code == 504, response.text
    assert response.json()["error_type"] == "timeout"


def test_ping_answers_during_inference(architecture):
    """Pings run until the answer is back; at least three must fall wholly inside the generation, which
    the server's own timings place just before the answer arrived."""
    results = {}

    def ask():
        results["answer"] = architecture.invoke({"query": QUESTIONS[4]["question"], "max_new_tokens": 96})
        results["answered_at"] = time.monotonic()

    worker = threading.Thread(target=ask)
    worker.start()
    pings = []  # (sent, received, status)
    try:
        while worker.is_alive():
            sent = time.monotonic()
            status = requests.get(f"{architecture.url}/ping", timeout=2).status_code
            pings.append((sent, time.monotonic(), status))
            time.sleep(0.05)
    finally:
        worker.join(timeout=120)
    answer = results["answer"]
    assert answer.status_code == 200, answer.text
    generation_started = results["answered_at"] - answer.json()["timings_ms"]["generate"] / 1000.0
    during = [ping for ping in pings if generation_started <= ping[0] and ping[1] <= results["answered_at"]]
    assert len(during) >= 3, (
        f"only {len(during)} pings overlapped a {answer.json()['timings_ms']['generate']:.0f} ms generation"
    )
    assert all(status == 200 and received - sent < 2.0 for sent, received, status in pings)
