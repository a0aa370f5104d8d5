"""Operating the real servers: one request id in the header, in the error body and in every log line of every
service; EMF metrics with the documented names and dimensions; one connected trace per request, exported over
OTLP/HTTP to a real receiver (the session's servers trace: tests/service/conftest.py). The split topology's
trace is tested in test_split.py, RAG_METRICS=off in tests/bench/test_bench_telemetry.py."""

from __future__ import annotations

import secrets
import time

import pytest
import requests

from tests.telemetry_support import LOG_KEYS, check_connected, children, emf_documents, json_lines, metrics_of

pytestmark = pytest.mark.slow
QUESTION = {"query": "When did the Velmora Tramway open?", "max_new_tokens": 8}
RETRIEVAL = {"embed", "search", "context"}
GENERATION = {"queue", "prefill", "decode"}
SERVICE_PATHS = {"monolith": {"/invocations"}, "microservices": {"/invocations", "/retrieve", "/generate"}}


def architecture_of(service) -> str:
    """The Architecture dimension of a started service (tests/service/conftest.py's Service)."""
    return "microservices" if any(part.endswith("start.sh") for part in service.server.argv) else "monolith"


def request_records(service, request_id: str, paths: set[str], deadline_s: float = 15.0) -> list[dict]:
    """The JSON log records of one request, once each service has written its line for it (on close)."""
    end = time.monotonic() + deadline_s
    while True:
        records = [r for r in json_lines(service.server.log()) if r["request_id"] == request_id]
        if paths <= {r.get("path") for r in records if r["logger"] == "rag.http" and "status" in r}:
            return records
        assert time.monotonic() < end, f"no request line for {paths} of {request_id}: {records}"
        time.sleep(0.05)


def test_one_request_id_in_the_header_and_every_services_lines(architecture):
    kind = architecture_of(architecture)
    request_id = f"telemetry-{secrets.token_hex(4)}"
    response = architecture.invoke(QUESTION, headers={"X-Request-Id": request_id})
    assert response.status_code == 200 and response.headers["X-Request-Id"] == request_id
    records = request_records(architecture, request_id, SERVICE_PATHS[kind])
    # Every service logged it: one process (the monolith's worker), or the orchestrator, vector and LLM workers.
    assert len({r["pid"] for r in records}) == (1 if kind == "monolith" else 3)
    # Every line the services wrote is a JSON object (Gunicorn's and start.sh's too), with the keys every line has.
    lines = [line for line in architecture.server.log().splitlines() if line.strip()]
    assert len(json_lines(architecture.server.log())) == len(lines), [x for x in lines if not x.startswith("{")][:3]
    assert len([line for line in lines if request_id in line]) == len(records)
    assert all(LOG_KEYS <= set(r) for r in records)


def test_metrics_carry_the_contracts_names_and_dimensions(architecture):
    kind = architecture_of(architecture)
    request_id = f"telemetry-{secrets.token_hex(4)}"
    assert architecture.invoke(QUESTION, headers={"X-Request-Id": request_id}).status_code == 200
    documents = emf_documents(request_records(architecture, request_id, SERVICE_PATHS[kind]), request_id)
    assert {(d["Endpoint"], d["Variant"], d["Architecture"]) for d in documents} == {("local", "AllTraffic", kind)}
    request, stages = metrics_of(documents)
    assert {name: request[name] for name in ("Requests", "Status4xx", "Status429", "Status5xx")} == {
        "Requests": 1,
        "Status4xx": 0,
        "Status429": 0,
        "Status5xx": 0,
    }
    assert request["RequestLatency"] > 0 and request["PromptTokens"] > 100 and 1 <= request["CompletionTokens"] <= 8
    assert request.get("BatchSize", 1.0) >= 1.0
    hops = {"hop_vector", "hop_llm"} if kind == "microservices" else set()
    assert set(stages) == {"admission", *RETRIEVAL, "generation", *GENERATION, *hops}
    assert stages["queue"] + stages["prefill"] + stages["decode"] <= stages["generation"] + 1.0
    if hops:  # a hop holds the service's own work
        assert stages["hop_llm"] >= stages["generation"] and stages["hop_vector"] >= stages["embed"]
    # Each request counted once: the internal services write their stages and tokens, not requests.
    assert len([d for d in documents if "Requests" in d]) == 1


def test_error_bodies_carry_the_request_id(architecture):
    response = architecture.invoke({"query": "   "}, headers={"X-Request-Id": "telemetry-refused"})
    body = response.json()
    assert response.status_code == 400 and body["error_type"] == "invalid_request"
    assert body["request_id"] == response.headers["X-Request-Id"] == "telemetry-refused"
    records = request_records(architecture, "telemetry-refused", {"/invocations"})
    request, _ = metrics_of(emf_documents(records, "telemetry-refused"))
    assert (request["Requests"], request["Status4xx"], request["Status5xx"]) == (1, 1, 0)
    unknown = requests.get(f"{architecture.url}/nowhere", timeout=10)
    assert unknown.status_code == 404 and unknown.json()["request_id"] == unknown.headers["X-Request-Id"]


def test_sagemakers_inference_id_is_the_request_id(architecture):
    headers = {"X-Amzn-SageMaker-Inference-Id": "sm-inference-1", "X-Request-Id": "telemetry-caller"}
    response = architecture.invoke({**QUESTION, "max_new_tokens": 2}, headers=headers)
    assert response.status_code == 200 and response.headers["X-Request-Id"] == "sm-inference-1"


def expected_spans(kind: str, route: str = "/invocations") -> set[str]:
    if kind == "monolith":
        return {f"POST {route}", "admission", *RETRIEVAL, "generation", *GENERATION}
    internal = "/generate-stream" if route.endswith("stream") else "/generate"
    return {f"POST {route}", "admission", "hop_vector", "POST /retrieve", *RETRIEVAL}.union(
        {"hop_llm", f"POST {internal}", "generation", *GENERATION}
    )


def check_tree(spans: list[dict], kind: str, caller: str | None, route: str = "/invocations") -> None:
    """One trace, rooted at the public server's span (under the caller's), each stage under its service."""
    root = check_connected(spans, parent=caller)
    assert (
        root["name"] == f"POST {route}"
        and root["service"] == f"rag-{'monolith' if kind == 'monolith' else 'orchestrator'}"
    )
    by_name = {span["name"]: span for span in spans}
    assert GENERATION <= children(spans, by_name["generation"])
    if kind == "monolith":
        assert {"admission", *RETRIEVAL, "generation"} <= children(spans, root)
        return
    internal = "POST /generate-stream" if route.endswith("stream") else "POST /generate"
    assert {"admission", "hop_vector", "hop_llm"} <= children(spans, root)
    assert children(spans, by_name["hop_vector"]) == {"POST /retrieve"}
    assert children(spans, by_name["hop_llm"]) == {internal}
    assert RETRIEVAL <= children(spans, by_name["POST /retrieve"])
    assert children(spans, by_name[internal]) == {"generation"}
    assert {by_name[name]["service"] for name in ("POST /retrieve", internal)} == {
        "rag-vector_service",
        "rag-llm_service",
    }


def test_one_connected_trace_per_request(architecture, otlp):
    kind = architecture_of(architecture)
    trace_id, caller = secrets.token_hex(16), secrets.token_hex(8)
    response = architecture.invoke(QUESTION, headers={"traceparent": f"00-{trace_id}-{caller}-01"})
    assert response.status_code == 200
    check_tree(otlp.wait_for(trace_id, expected_spans(kind)), kind, caller)  # the caller's trace id is kept
    # Without a traceparent, the request starts a trace of its own.
    request_id = f"telemetry-{secrets.token_hex(4)}"
    assert architecture.invoke(QUESTION, headers={"X-Request-Id": request_id}).status_code == 200
    end = time.monotonic() + 15
    while (own := otlp.trace_of(request_id)) is None:
        assert time.monotonic() < end, "no span carries the request id"
        time.sleep(0.05)
    assert own != trace_id
    check_tree(otlp.wait_for(own, expected_spans(kind)), kind, None)


def test_a_streamed_request_is_one_trace_too(microservices, otlp):
    trace_id, caller = secrets.token_hex(16), secrets.token_hex(8)
    with requests.post(
        f"{microservices.url}/invocations-response-stream",
        json=QUESTION,
        headers={"traceparent": f"00-{trace_id}-{caller}-01"},
        stream=True,
        timeout=120,
    ) as response:
        assert response.status_code == 200 and b'"done"' in response.content
    route = "/invocations-response-stream"
    check_tree(otlp.wait_for(trace_id, expected_spans("microservices", route)), "microservices", caller, route)
