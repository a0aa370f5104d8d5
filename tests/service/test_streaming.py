"""`POST /invocations-response-stream`: HTTP/1.1 chunked JSON lines, the same answer as /invocations."""

import json
import sys
from pathlib import Path

import pytest
import requests

from tests.support import ServerProcess, child_env, free_port, wait_for_status

pytestmark = pytest.mark.slow
QUESTION = "In what year did the Glass Bridge over the River Ossa open?"


def stream(service, payload, **kwargs):
    return requests.post(f"{service.url}/invocations-response-stream", json=payload, stream=True, timeout=120, **kwargs)


def test_stream_matches_the_plain_answer(architecture):
    payload = {"query": QUESTION, "max_new_tokens": 24}
    with stream(architecture, payload) as response:
        assert response.status_code == 200
        assert response.headers.get("Transfer-Encoding") == "chunked"
        assert response.headers["Content-Type"].startswith("application/jsonlines")
        events = [json.loads(line) for line in response.iter_lines() if line]
    kinds = [event["event"] for event in events]
    assert kinds[0] == "sources" and kinds[-1] == "done" and kinds.count("token") >= 2
    done = events[-1]
    plain = architecture.invoke(payload).json()
    assert done["answer"] == plain["answer"] and done["sources"] == plain["sources"] == events[0]["sources"]
    assert done["usage"] == plain["usage"] and done["architecture"] == plain["architecture"]
    streamed = "".join(event["text"] for event in events if event["event"] == "token")
    assert streamed.strip() == done["answer"]


def test_stream_refuses_bad_input_before_streaming(architecture):
    response = stream(architecture, {"query": ""})
    assert response.status_code == 400 and response.json()["error_type"] == "invalid_request"


def test_stream_deadline_gives_timeout(architecture):
    # 0.2 s cannot hold a prefill of ~640 tokens plus an answer here, so generation is cut by the deadline.
    with stream(
        architecture, {"query": QUESTION, "max_new_tokens": 1024}, headers={"X-Rag-Timeout-S": "0.2"}
    ) as response:
        if response.status_code == 504:  # the deadline passed before streaming began (e.g. during retrieval)
            assert response.json()["error_type"] == "timeout"
            return
        assert response.status_code == 200
        events = [json.loads(line) for line in response.iter_lines() if line]
    assert events[-1]["event"] == "error" and events[-1]["error_type"] == "timeout"
    assert "done" not in [event["event"] for event in events]


def test_stream_with_the_llm_service_down_is_refused_before_streaming(microservices, tmp_path):
    """A real orchestrator whose LLM service is down (nothing listens on its port) but whose vector
    service answers: the stream is refused with a JSON 503, as the monolith refuses it, not a 200
    followed by `sources` and an error event."""
    port = free_port()
    env = child_env(
        RAG_VECTOR_URL=f"http://127.0.0.1:{microservices.ports['vector']}",
        RAG_LLM_URL=f"http://127.0.0.1:{free_port()}",
    )
    gunicorn = str(Path(sys.executable).parent / "gunicorn")
    orchestrator = ServerProcess(
        [
            gunicorn,
            "--config",
            "python:serving.gunicorn_conf",
            "--bind",
            f"127.0.0.1:{port}",
            "Microservicos.orchestrator:create_app()",
        ],
        env,
        tmp_path / "orchestrator.log",
    )
    try:
        wait_for_status(f"http://127.0.0.1:{port}/ping", 503, deadline_s=60, proc=orchestrator.proc)
        response = requests.post(
            f"http://127.0.0.1:{port}/invocations-response-stream", json={"query": QUESTION}, timeout=30
        )
    finally:
        orchestrator.stop()
    assert response.status_code == 503, response.text[:300]
    assert response.headers["Content-Type"] == "application/json"
    assert response.json()["error_type"] == "upstream_unavailable"
