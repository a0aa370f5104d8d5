"""Limits of the internal routes, which the orchestrator (or, split, SageMaker Runtime) calls."""

import time

import pytest
import requests

from rag.settings import MAX_CHUNK_CHARS

pytestmark = pytest.mark.slow


def passage(rank: int, text: str) -> dict:
    return {"rank": rank, "source": "velmora.md", "chunk": rank, "score": 0.5, "text": text}


def test_generate_refuses_an_overlong_passage_before_tokenizing(microservices):
    # 20 passages of 290,000 characters: just under the 6 MB body limit, and seconds of tokenizing.
    body = {
        "query": "When did the tramway open?",
        "max_new_tokens": 4,
        "passages": [passage(rank, "tram " * 58_000) for rank in range(1, 21)],
    }
    started = time.monotonic()
    response = requests.post(f"http://127.0.0.1:{microservices.ports['llm']}/generate", json=body, timeout=120)
    elapsed = time.monotonic() - started
    assert response.status_code == 400, response.text[:300]
    error = response.json()
    assert error["error_type"] == "invalid_request" and f"the limit is {MAX_CHUNK_CHARS}" in error["error"]
    assert elapsed < 5, f"refused only after {elapsed:.1f} s"


def test_generate_still_accepts_ordinary_passages(microservices):
    body = {"query": "What is this?", "max_new_tokens": 1, "passages": [passage(1, "x" * 100)]}
    response = requests.post(f"http://127.0.0.1:{microservices.ports['llm']}/generate", json=body, timeout=120)
    assert response.status_code == 200, response.text[:300]


@pytest.mark.parametrize(
    "passages", [[[None, None]], ["text"], [None], [{"rank": 1}], [{**passage(1, "x"), "score": "high"}]]
)
def test_generate_names_a_malformed_passage(microservices, passages):
    # Found by make fuzz: a passage that is not an object was a 500 (the service's own bug, not the client's).
    for route in ("generate", "generate-stream"):
        response = requests.post(
            f"http://127.0.0.1:{microservices.ports['llm']}/{route}",
            json={"query": "q", "max_new_tokens": 1, "passages": passages},
            timeout=60,
        )
        assert response.status_code == 400, response.text[:300]
        assert response.json()["error_type"] == "invalid_request" and "each passage" in response.json()["error"]
