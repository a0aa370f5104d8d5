"""The split topology for real, as processes: the LLM endpoint's server (start.sh, RAG_SERVE=llm), the
SageMaker Runtime stand-in, and the front (start.sh, RAG_LLM_URL=sagemaker://...) reaching it with boto3.
The container version of these tests is tests/container/test_container_split.py."""

from __future__ import annotations

import json
import secrets
import time

import pytest
import requests

from tests.service.conftest import tracing_env
from tests.service.split_support import SplitTopology, restart_under_load
from tests.support import wait_for_status
from tests.telemetry_support import check_connected, children, emf_documents, json_lines, metrics_of

pytestmark = pytest.mark.slow
QUESTION = {"query": "When did the Velmora Tramway open, and who designed its first line?", "max_new_tokens": 24}


@pytest.fixture(scope="module")
def split(sample_index, tmp_path_factory, otlp):
    # One torch thread per process: the split adds two model processes to the session's, on shared cores.
    topology = SplitTopology(
        tmp_path_factory.mktemp("split"),
        sample_index,
        RAG_MAX_NEW_TOKENS="40",
        RAG_TORCH_THREADS="1",
        **tracing_env(otlp),
    )
    try:
        wait_for_status(f"{topology.url}/ping", 200, deadline_s=300, proc=topology.front.proc)
        yield topology
    finally:
        topology.stop()


def test_answers_are_the_monoliths(split, monolith):
    ours = requests.post(f"{split.url}/invocations", json=QUESTION, timeout=120)
    theirs = monolith.invoke(QUESTION)
    assert ours.status_code == theirs.status_code == 200, ours.text[:300]
    assert ours.json()["answer"] == theirs.json()["answer"]
    assert [(s["source"], s["chunk"], s["text"]) for s in ours.json()["sources"]] == [
        (s["source"], s["chunk"], s["text"]) for s in theirs.json()["sources"]
    ]
    assert ours.json()["architecture"] == "microservices"
    assert split.runtime.invocations >= 1  # it went through SageMaker Runtime, not loopback


def test_stream_matches_the_plain_answer(split):
    with requests.post(f"{split.url}/invocations-response-stream", json=QUESTION, stream=True, timeout=120) as response:
        assert response.status_code == 200 and response.headers.get("Transfer-Encoding") == "chunked"
        events = [json.loads(line) for line in response.iter_lines() if line]
    assert [events[0]["event"], events[-1]["event"]] == ["sources", "done"]
    assert len([event for event in events if event["event"] == "token"]) >= 2
    plain = requests.post(f"{split.url}/invocations", json=QUESTION, timeout=120).json()
    assert events[-1]["answer"] == plain["answer"] and events[0]["sources"] == plain["sources"]


def test_deadline_reaches_the_llm_endpoint(split):
    # 0.2 s cannot hold the prefill of ~640 tokens plus an answer: a 504 timeout, never a hang or a 500.
    started = time.monotonic()
    response = requests.post(
        f"{split.url}/invocations",
        json={**QUESTION, "max_new_tokens": 1024},
        headers={"X-Rag-Timeout-S": "0.2"},
        timeout=120,
    )
    assert response.status_code == 504 and response.json()["error_type"] == "timeout", response.text[:300]
    assert time.monotonic() - started < 15


def test_llm_endpoint_restarted_under_load(split):
    """Target: while the LLM container is down, the front answers 503 upstream_unavailable at once (never a
    500) and /ping says degraded; it answers again within 2 s of the LLM container's /ping turning 200."""
    recovery = restart_under_load(
        split.url,
        split.llm_url,
        split.kill_llm,
        split.start_llm,
        {**QUESTION, "max_new_tokens": 4},
        proc=lambda: split.llm.proc,
    )
    recovery.check()


def test_one_trace_and_one_request_id_across_both_endpoints(split, otlp):
    """The front passes the request id and the W3C traceparent to the LLM endpoint as custom attributes (the
    one header SageMaker Runtime forwards): one connected trace, the same id in both endpoints' lines."""
    trace_id, caller, request_id = secrets.token_hex(16), secrets.token_hex(8), f"split-{secrets.token_hex(4)}"
    response = requests.post(
        f"{split.url}/invocations",
        json=QUESTION,
        headers={"traceparent": f"00-{trace_id}-{caller}-01", "X-Request-Id": request_id},
        timeout=120,
    )
    assert response.status_code == 200 and response.headers["X-Request-Id"] == request_id
    names = {"admission", "hop_vector", "POST /retrieve", "embed", "search", "context", "hop_llm", "generation"}
    spans = otlp.wait_for(trace_id, names | {"POST /invocations", "queue", "prefill", "decode"})
    root = check_connected(spans, parent=caller)
    assert (root["name"], root["service"]) == ("POST /invocations", "rag-orchestrator")
    hop = next(span for span in spans if span["name"] == "hop_llm")
    (endpoint,) = [span for span in spans if span["parent"] == hop["span_id"]]
    assert (endpoint["name"], endpoint["service"]) == ("POST /invocations", "rag-llm_service")
    assert children(spans, endpoint) == {"generation"}
    # The same id in the LLM endpoint's lines, whose metrics count it as its own request (Architecture=llm).
    end = time.monotonic() + 15
    while not (lines := emf_documents(json_lines(split.llm.log()), request_id)):
        assert time.monotonic() < end, "the LLM endpoint wrote no metrics for the request"
        time.sleep(0.05)
    request, stages = metrics_of(lines)
    assert request["Requests"] == 1 and {d["Architecture"] for d in lines} == {"llm"}
    assert {"generation", "queue", "prefill", "decode"} <= set(stages)
    front = emf_documents(json_lines(split.front.log()), request_id)
    assert {d["Architecture"] for d in front} == {"microservices"} and "hop_llm" in metrics_of(front)[1]
