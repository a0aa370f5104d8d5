"""The split topology for real, as processes: the LLM endpoint's server (start.sh, RAG_SERVE=llm), the
SageMaker Runtime stand-in, and the front (start.sh, RAG_LLM_URL=sagemaker://...) reaching it with boto3.
The container version of these tests is tests/container/test_container_split.py."""
from __future__ import annotations

import json
import threading
import time

import pytest
import requests

from tests.service.split_support import SplitTopology
from tests.support import wait_for_status

pytestmark = pytest.mark.slow
QUESTION = {"query": "When did the Velmora Tramway open, and who designed its first line?", "max_new_tokens": 24}


@pytest.fixture(scope="module")
def split(sample_index, tmp_path_factory):
    topology = SplitTopology(tmp_path_factory.mktemp("split"), sample_index, RAG_MAX_NEW_TOKENS="40")
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
    assert [(s["source"], s["chunk"], s["text"]) for s in ours.json()["sources"]] == \
        [(s["source"], s["chunk"], s["text"]) for s in theirs.json()["sources"]]
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
    response = requests.post(f"{split.url}/invocations", json={**QUESTION, "max_new_tokens": 1024},
                             headers={"X-Rag-Timeout-S": "0.2"}, timeout=120)
    assert response.status_code == 504 and response.json()["error_type"] == "timeout", response.text[:300]
    assert time.monotonic() - started < 15


def test_llm_endpoint_restarted_under_load(split):
    """Target: while the LLM container is down, the front answers 503 upstream_unavailable at once (never a
    500) and /ping says degraded; it answers again within 2 s of the LLM container's /ping turning 200."""
    outcomes: list[tuple[float, float, int, str]] = []  # (sent, answered, status, error_type)
    stop = threading.Event()

    def load():
        with requests.Session() as session:
            while not stop.is_set():
                sent = time.monotonic()
                response = session.post(f"{split.url}/invocations", json={**QUESTION, "max_new_tokens": 4}, timeout=120)
                body = response.json()
                outcomes.append((sent, time.monotonic(), response.status_code, body.get("error_type", "")))

    clients = [threading.Thread(target=load) for _ in range(2)]
    for client in clients:
        client.start()
    try:
        wait = time.monotonic() + 60
        while len([o for o in outcomes if o[2] == 200]) < 2 and time.monotonic() < wait:
            time.sleep(0.05)
        killed_at = time.monotonic()
        split.kill_llm()
        wait_for_status(f"{split.url}/ping", 503, deadline_s=15)
        degraded = requests.get(f"{split.url}/ping", timeout=2).json()
        split.start_llm()
        wait_for_status(f"{split.llm_url}/ping", 200, deadline_s=300, proc=split.llm.proc)
        ready_at = time.monotonic()
        front_ready_after = wait_for_status(f"{split.url}/ping", 200, deadline_s=30) and time.monotonic() - ready_at
        wait = ready_at + 120
        while len([o for o in outcomes if o[0] >= ready_at]) < 2 and time.monotonic() < wait:
            time.sleep(0.02)
    finally:
        stop.set()
        for client in clients:
            client.join(timeout=120)
    assert degraded["status"] == "degraded" and degraded["services"]["llm"] != "ready", degraded
    during = [o for o in outcomes if killed_at <= o[0] < ready_at]
    failures = [o for o in outcomes if o[2] != 200]
    assert failures, "no request failed while the LLM container was down"
    assert {(status, kind) for _, _, status, kind in failures} == {(503, "upstream_unavailable")}, failures
    # Refused at once, not after a hang (a request in flight at the kill fails when the container dies).
    assert max(answered - sent for sent, answered, status, _ in failures if sent >= killed_at) < 2
    # Answering again needs no warm-up, probe or retry: every request sent once the LLM container's
    # /ping says 200 is answered, and the front's own /ping follows within 2 s.
    after = [o for o in outcomes if o[0] >= ready_at]
    assert after and all(status == 200 for _, _, status, _ in after), after
    assert front_ready_after <= 2.0, f"the front's /ping said 200 only {front_ready_after:.1f} s later"
    assert len(during) > len([o for o in during if o[2] == 200])
