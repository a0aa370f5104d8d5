"""Admission control on the real entrypoints: past RAG_MAX_CONCURRENT_REQUESTS a request gets a fast
429 `overloaded` with Retry-After, /ping stays fast, a client that leaves frees its slot, and the
orchestrator passes an LLM service's 429 through."""

import json
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.service.conftest import start_architecture

pytestmark = pytest.mark.slow
QUESTION = "In what year did the Glass Bridge over the River Ossa open?"
# Holds its slot for seconds, whatever the answer: six passages make a prompt of ~1,500 tokens, whose
# prefill alone takes more than a second on one thread (the slot is taken before the response starts).
LONG = {"query": QUESTION, "top_k": 6, "max_new_tokens": 1024}
FILLER = [
    {
        "rank": i,
        "source": "filler.md",
        "chunk": i,
        "score": 0.5,
        "text": "The harbour office keeps the records of every vessel, its owner and its last inspection. " * 9,
    }
    for i in range(1, 9)
]


@pytest.fixture(scope="module", params=["monolito", "microservicos"])
def limited(request, sample_index, tmp_path_factory):
    """An architecture that admits one request at a time (one model thread, one torch thread)."""
    service = start_architecture(
        request.param,
        tmp_path_factory.mktemp(request.param),
        sample_index,
        RAG_MAX_CONCURRENT_REQUESTS="1",
        RAG_TORCH_THREADS="1",
    )
    try:
        service.wait_ready()
        yield service
    finally:
        service.server.stop()


def hold(url: str, payload: dict) -> requests.Response:
    """Start a streamed request: once its status line is back, it holds an admission slot."""
    response = requests.post(url, json=payload, stream=True, timeout=120)
    assert response.status_code == 200, response.text
    return response


def until_admitted(service, payload: dict, deadline_s: float = 120.0) -> requests.Response:
    """Retry until the server admits the request (a held slot is freed once the server sees its client gone)."""
    end = time.monotonic() + deadline_s
    while True:
        response = service.invoke(payload)
        if response.status_code != 429 or time.monotonic() > end:
            return response
        time.sleep(0.2)


def refused_while_full(service) -> tuple[requests.Response, float, requests.Response]:
    """A request sent while a long streamed one holds the only slot, how long its answer took, and a /ping
    sent meanwhile; then the holder goes away."""
    held = hold(f"{service.url}/invocations-response-stream", LONG)
    try:
        started = time.monotonic()
        refused = service.invoke({"query": QUESTION, "max_new_tokens": 8})
        refused_s = time.monotonic() - started
        ping = requests.get(f"{service.url}/ping", timeout=2)
    finally:
        held.close()  # the client goes away: the server drops its row and frees the slot
    return refused, refused_s, ping


def test_a_full_server_answers_429_at_once_and_ping_stays_fast(limited):
    refused, refused_s, ping = refused_while_full(limited)
    assert refused.status_code == 429 and refused.json()["error_type"] == "overloaded"
    assert refused.headers["Retry-After"] == "1" and "RAG_MAX_CONCURRENT_REQUESTS" in refused.json()["error"]
    assert refused_s < 1.0, f"the 429 took {refused_s:.2f} s"
    assert ping.status_code == 200
    assert until_admitted(limited, {"query": QUESTION, "max_new_tokens": 8}).status_code == 200


def test_the_orchestrator_passes_the_llm_services_429_through(limited):
    if "Monolitico" in limited.server.argv[0]:
        pytest.skip("the monolith has no LLM service")
    llm = f"http://127.0.0.1:{limited.ports['llm']}"
    held = hold(f"{llm}/generate-stream", {"query": QUESTION, "passages": FILLER, "max_new_tokens": 1024})
    try:
        # The orchestrator's own count is 0 (the slot was taken behind its back): the 429 is the LLM service's.
        refused = limited.invoke({"query": QUESTION, "max_new_tokens": 8})
    finally:
        held.close()
    assert refused.status_code == 429 and refused.headers["Retry-After"] == "1"
    assert refused.json()["error_type"] == "overloaded" and "model" in refused.json()["error"]


def test_a_burst_gets_200_or_429_and_ping_answers_throughout(limited):
    pings: list[float] = []
    stop = time.monotonic() + 600

    def ping_loop():
        while time.monotonic() < stop:
            started = time.monotonic()
            status = requests.get(f"{limited.url}/ping", timeout=5).status_code
            pings.append(time.monotonic() - started if status == 200 else float("inf"))
            time.sleep(0.1)

    def client(i: int) -> list[tuple[int, float]]:
        seen = []
        for _ in range(3):
            started = time.monotonic()
            response = limited.invoke({"query": QUESTION, "max_new_tokens": 4})
            seen.append((response.status_code, time.monotonic() - started))
        return seen

    with ThreadPoolExecutor(13) as pool:
        pinger = pool.submit(ping_loop)
        outcomes = [o for result in pool.map(client, range(12)) for o in result]
        stop = time.monotonic()
        pinger.result()
    statuses = [status for status, _ in outcomes]
    assert set(statuses) <= {200, 429} and statuses.count(200) >= 1 and statuses.count(429) >= 1, statuses
    refusals = sorted(seconds for status, seconds in outcomes if status == 429)
    assert refusals[-1] < 2.0, f"slowest 429: {refusals[-1]:.2f} s"
    assert pings and max(pings) < 2.0, f"slowest /ping: {max(pings):.2f} s (SageMaker gives up at 2 s)"


def test_streaming_still_works_when_admitted(limited):
    with requests.post(
        f"{limited.url}/invocations-response-stream",
        json={"query": QUESTION, "max_new_tokens": 12},
        stream=True,
        timeout=120,
    ) as response:
        events = [json.loads(line) for line in response.iter_lines() if line]
    assert [e["event"] for e in events][0] == "sources" and events[-1]["event"] == "done"
