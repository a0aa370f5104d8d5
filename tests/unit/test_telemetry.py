"""Telemetry without a server: stage timing and spans in the core (rag/telemetry.py), the request id, JSON
log lines and EMF metrics at the edge (serving/telemetry.py) through Flask's test client, and the settings."""

from __future__ import annotations

import json
import logging
import sys

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from rag import telemetry
from rag.clients.protocol import attribute, custom_attributes, valid_request_id
from rag.errors import ConfigError
from rag.pipeline import RagPipeline
from rag.settings import Settings
from rag.types import Passage, Retriever
from serving.telemetry import JsonFormatter, MetricsTarget, configure_logging, metric_documents, role
from serving.web import add_invocations, create_service_app
from tests.fakes import FakeGenerator
from tests.telemetry_support import check_connected, check_emf, metrics_of

TRACE_ID, CALLER_SPAN = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{CALLER_SPAN}-01"


@pytest.fixture(autouse=True)
def logging_configured():
    """The services' logging, set up before the test runs: set up inside it, it would drop caplog's handler."""
    configure_logging()


@pytest.fixture
def spans():
    """Tracing on in this process, into memory; off again afterwards."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    telemetry.configure(True, provider.get_tracer("test"))
    try:
        yield exporter
    finally:
        telemetry.configure(False)


def as_dicts(exporter) -> list[dict]:
    return [
        {
            "trace_id": f"{span.context.trace_id:032x}",
            "span_id": f"{span.context.span_id:016x}",
            "parent": f"{span.parent.span_id:016x}" if span.parent else None,
            "name": span.name,
        }
        for span in exporter.get_finished_spans()
    ]


def test_stages_are_timed_only_inside_a_request_and_when_measuring():
    telemetry.configure(True)
    try:
        with telemetry.stage("embed"):  # no request on this thread: nothing to time
            pass
        record = telemetry.open_request("r-1", "POST /invocations")
        with telemetry.stage("embed"):
            pass
        with telemetry.stage("embed"):  # the same stage twice adds up
            pass
        telemetry.mark("queue", 10.0, 10.25)
        telemetry.mark("prefill", 10.25, None)  # not reached
        telemetry.usage(120, 8, 2.5)
        assert telemetry.request_id() == "r-1"
        telemetry.close_request(record)
        assert telemetry.request_id() is None
        assert set(record.stages) == {"embed", "queue"} and record.stages["queue"] == pytest.approx(250.0)
        assert record.usage == {"prompt_tokens": 120, "completion_tokens": 8, "batch_size": 2.5}
    finally:
        telemetry.configure(False)
    record = telemetry.open_request("r-2", "POST /invocations")
    with telemetry.stage("embed"):
        pass
    telemetry.close_request(record)
    assert record.stages == {}  # RAG_METRICS=off and no tracing: nothing measured


def test_spans_form_one_trace_under_the_callers_traceparent(spans):
    record = telemetry.open_request("r-3", "POST /invocations", {"traceparent": TRACEPARENT})
    with telemetry.stage("generation") as generation:
        telemetry.mark("queue", 1.0, 1.5, generation)
    hop = telemetry.stage("hop_llm", client=True).begin()
    carried = hop.headers()["traceparent"]
    hop.end()
    telemetry.close_request(record)
    found = as_dicts(spans)
    assert {span["trace_id"] for span in found} == {TRACE_ID}
    root = check_connected(found, parent=CALLER_SPAN)
    assert root["name"] == "POST /invocations"
    by_name = {span["name"]: span for span in found}
    assert by_name["queue"]["parent"] == by_name["generation"]["span_id"]
    assert by_name["hop_llm"]["parent"] == root["span_id"]
    assert carried == f"00-{TRACE_ID}-{by_name['hop_llm']['span_id']}-01"  # the callee's parent is the hop


def test_request_and_stage_metrics_are_valid_emf():
    record = telemetry.Request("r-4", status=429)
    record.stages.update(admission=0.02, hop_llm=812.5)
    record.usage.update(prompt_tokens=300, completion_tokens=40, batch_size=3.0)
    target = MetricsTarget("RagService", {"Endpoint": "e", "Variant": "AllTraffic", "Architecture": "monolith"}, True)
    documents = metric_documents(record, target, 900.0, 1_700_000_000_000)
    request, stages = metrics_of(documents)
    assert request == {
        "Requests": 1,
        "Status4xx": 1,
        "Status429": 1,
        "Status5xx": 0,
        "RequestLatency": 900.0,
        "PromptTokens": 300,
        "CompletionTokens": 40,
        "BatchSize": 3.0,
    }
    assert stages == {"admission": 0.02, "hop_llm": 812.5}
    internal = MetricsTarget("RagService", target.dimensions, False)  # an internal service: its stages only
    assert metrics_of(metric_documents(record, internal, 900.0, 0))[0] == {
        "PromptTokens": 300,
        "CompletionTokens": 40,
        "BatchSize": 3.0,
    }
    # A health probe through /invocations counts nothing.
    assert metric_documents(telemetry.Request("r-5", counted=False), target, 1.0, 0) == []


@pytest.mark.parametrize(
    "service, serve, expected",
    [
        ("monolith", "all", ("monolith", True)),
        ("orchestrator", "all", ("microservices", True)),
        ("vector_service", "all", ("microservices", False)),
        ("llm_service", "all", ("microservices", False)),
        ("llm_service", "llm", ("llm", True)),
    ],
)
def test_architecture_dimension_and_who_counts_requests(service, serve, expected):
    assert role(service, Settings(serve=serve)) == expected


def test_json_log_lines():
    formatter = JsonFormatter()
    record = logging.LogRecord("rag.http", logging.INFO, __file__, 1, "POST %s %d", ("/generate", 200), None)
    record.fields = {"status": 200, "ms": 12.5}
    line = formatter.format(record)
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["message"] == "POST /generate 200" and entry["request_id"] is None and entry["ms"] == 12.5
    assert entry["timestamp"].endswith("Z") and entry["level"] == "INFO" and entry["logger"] == "rag.http"
    try:
        raise ValueError("boom\nsecond line")
    except ValueError:
        failed = logging.LogRecord("rag.http", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    entry = json.loads(formatter.format(failed))
    assert "ValueError: boom" in entry["exception"] and "\n" not in formatter.format(failed)


def test_request_ids_and_custom_attributes():
    assert valid_request_id("a1b2-C3:x/y") and valid_request_id("batch 7 item 3") and valid_request_id("x" * 64)
    for bad in ("", "x" * 65, " lead", "a,b", "a;b", "tab\there", "é"):
        assert not valid_request_id(bad), bad
    attributes = custom_attributes(
        {"X-Rag-Timeout-S": "4.500", "X-Request-Id": "r-9", "traceparent": TRACEPARENT, "x": ""}
    )
    assert attributes == f"X-Rag-Timeout-S=4.500,X-Request-Id=r-9,traceparent={TRACEPARENT}"
    assert (
        attribute(attributes, "traceparent") == TRACEPARENT
        and attribute("a=1; x-request-id = r-9", "X-Request-Id") == "r-9"
    )
    assert attribute("no entries here", "X-Request-Id") is None


class OneRetriever(Retriever):
    model_name = "one"

    def retrieve(self, query, top_k, deadline=None):
        with telemetry.stage("embed"):
            return [Passage(1, "a.md", 0, 0.9, "alpha")]


def client(**settings):
    config = Settings(**settings)
    app = create_service_app("monolith", config)
    add_invocations(app, config, lambda: RagPipeline(OneRetriever(), FakeGenerator(), "monolith"))
    return app.test_client()


def metrics_records(caplog) -> list[dict]:
    return [record.fields for record in caplog.records if record.name == "rag.metrics"]


def test_request_id_header_error_body_and_metrics_through_the_edge(caplog):
    caplog.set_level(logging.INFO)
    test = client()
    response = test.post("/invocations", json={"query": "q"}, headers={"X-Request-Id": "caller-1"})
    response.close()  # the test client closes nothing by itself: the request's lines are written on close
    assert response.status_code == 200 and response.headers["X-Request-Id"] == "caller-1"
    documents = metrics_records(caplog)
    assert documents and all(d["Architecture"] == "monolith" for d in documents)
    request, stages = metrics_of(documents)
    assert request["Requests"] == 1 and request["Status4xx"] == 0 and set(stages) == {"admission", "embed"}
    lines = [r for r in caplog.records if r.name == "rag.http" and getattr(r, "fields", {}).get("path")]
    assert lines[-1].fields["status"] == 200 and "timings" in lines[-1].fields

    caplog.clear()
    # SageMaker's inference id wins; an id that could not travel on is replaced by a new one.
    both = {"X-Amzn-SageMaker-Inference-Id": "sm-7", "X-Request-Id": "caller-2"}
    assert test.post("/invocations", json={"query": "q"}, headers=both).headers["X-Request-Id"] == "sm-7"
    refused = test.post("/invocations", json={"query": ""}, headers={"X-Request-Id": "bad,id"})
    refused.close()
    body = refused.get_json()
    assert refused.status_code == 400 and body["request_id"] == refused.headers["X-Request-Id"] != "bad,id"
    assert len(body["request_id"]) == 32
    assert metrics_of(metrics_records(caplog))[0]["Status4xx"] == 1


def test_metrics_off_writes_none(caplog):
    caplog.set_level(logging.INFO)
    response = client(metrics=False).post("/invocations", json={"query": "q"})
    response.close()
    assert response.status_code == 200 and response.headers["X-Request-Id"]
    assert metrics_records(caplog) == []


def test_emf_checker_refuses_a_string_metric():
    document = metric_documents(
        telemetry.Request("r"),
        MetricsTarget("RagService", {"Endpoint": "e", "Variant": "v", "Architecture": "a"}, True),
        1.0,
        0,
    )[0]
    check_emf(document)
    with pytest.raises(AssertionError):
        check_emf({**document, "Requests": "1"})


@pytest.mark.parametrize(
    "env, tracing",
    [
        ({}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}, True),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_SDK_DISABLED": "true"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_TRACES_EXPORTER": "none"}, False),
    ],
)
def test_tracing_is_opt_in_through_the_standard_variables(env, tracing):
    assert Settings.from_env(env).tracing is tracing


@pytest.mark.parametrize(
    "env, fragment",
    [
        ({"RAG_METRICS": "maybe"}, "RAG_METRICS"),
        ({"RAG_METRICS_NAMESPACE": "AWS/SageMaker"}, "RAG_METRICS_NAMESPACE"),
        ({"RAG_ENDPOINT_NAME": "é"}, "RAG_ENDPOINT_NAME"),
        ({"OTEL_TRACES_EXPORTER": "zipkin"}, "OTEL_TRACES_EXPORTER"),
        ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, "OTEL_EXPORTER_OTLP_PROTOCOL"),
    ],
)
def test_wrong_telemetry_settings_name_the_variable(env, fragment):
    with pytest.raises(ConfigError, match=fragment):
        Settings.from_env(env)
