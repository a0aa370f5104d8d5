"""What every service tells its operator: a request id, JSON log lines, CloudWatch metrics, traces.

    request id   SageMaker's X-Amzn-SageMaker-Inference-Id (InvokeEndpoint's InferenceId), else X-Amzn-RequestId,
                 else the caller's X-Request-Id (or that custom attribute, through SageMaker Runtime), else a
                 new one; sent back as X-Request-Id, passed on to the internal services (rag/clients)
    logs         one JSON object per line on stdout: timestamp, level, logger, pid, request_id, message, fields
    metrics      CloudWatch embedded metric format (EMF) on stdout, through the same log handler: per request,
                 one object of request metrics and one per stage (RAG_METRICS=off: none)
    traces       OpenTelemetry over OTLP/HTTP when OTEL_* variables ask for it: a server span per request, its
                 stages (rag/telemetry.py) below it, the caller's W3C traceparent as its parent

docs/operations.md lists every metric, its unit and dimensions.
"""

from __future__ import annotations

import json
import logging
import sys
import time
import uuid
from dataclasses import dataclass

from flask import Flask, Response, g, request

from rag import telemetry
from rag.clients.protocol import (
    CUSTOM_ATTRIBUTES,
    INFERENCE_ID_HEADER,
    REQUEST_ID_HEADER,
    TRACEPARENT,
    attribute,
    valid_request_id,
)
from rag.settings import Settings

log = logging.getLogger("rag.http")
metrics_log = logging.getLogger("rag.metrics")
AMAZON_REQUEST_ID_HEADER = "X-Amzn-RequestId"


def _utc(created: float, msecs: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created)) + f".{int(msecs):03d}Z"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: timestamp (UTC), level, logger, pid, request_id (null outside a request),
    message, then the record's `fields` (`extra={"fields": {...}}`) and any traceback."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "timestamp": _utc(record.created, record.msecs),
            "level": record.levelname,
            "logger": record.name,
            "pid": record.process,
            "request_id": telemetry.request_id(),
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if fields:
            entry.update(fields)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str)


def configure_logging(level: str = "INFO") -> None:
    """JSON lines on stdout for the whole process; metrics lines whatever the level (once per process)."""
    root = logging.getLogger()
    if getattr(root, "_rag_configured", False):
        return
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter())
    root.handlers[:] = [handler]
    root.setLevel(level)
    metrics_log.setLevel(logging.INFO)  # RAG_LOG_LEVEL=WARNING quietens the logs, not the metrics
    logging.captureWarnings(True)  # Python's warnings too, as JSON lines (logger py.warnings)
    root._rag_configured = True


def incoming_request_id() -> str:
    """This request's id (see the module docstring); an id that is not 1 to 64 printable characters is
    replaced by a new one."""
    headers = request.headers
    for value in (
        headers.get(INFERENCE_ID_HEADER),
        headers.get(AMAZON_REQUEST_ID_HEADER),
        headers.get(REQUEST_ID_HEADER),
        attribute(headers.get(CUSTOM_ATTRIBUTES), REQUEST_ID_HEADER),
    ):
        if valid_request_id(value):
            return value
    return uuid.uuid4().hex


# --- metrics ---

COUNT, MILLISECONDS = "Count", "Milliseconds"
REQUEST_DIMENSIONS = ["Endpoint", "Variant", "Architecture"]
STAGE_DIMENSIONS = [*REQUEST_DIMENSIONS, "Stage"]
USAGE_METRICS = {"PromptTokens": "prompt_tokens", "CompletionTokens": "completion_tokens", "BatchSize": "batch_size"}


@dataclass(frozen=True)
class MetricsTarget:
    """Where one service's metrics go: namespace and dimension values, and whether it counts requests
    (the public server does; the internal services report only their own stages and tokens)."""

    namespace: str
    dimensions: dict[str, str]
    counts_requests: bool


def role(service: str, settings: Settings) -> tuple[str, bool]:
    """(Architecture dimension, counts requests) of a service: the monolith and the orchestrator answer the
    public API; the split topology's LLM endpoint (RAG_SERVE=llm) is an architecture of its own."""
    if service == "llm_service" and settings.serve == "llm":
        return "llm", True
    if service in ("orchestrator", "vector_service", "llm_service"):
        return "microservices", service == "orchestrator"
    return service, True  # the monolith (and a test's app)


def metric_documents(record: telemetry.Request, target: MetricsTarget, latency_ms: float, now_ms: int) -> list[dict]:
    """The EMF objects of one request: its request metrics (public server) and token usage, then one
    StageLatency object per stage (a dimension has one value per object)."""
    values: dict[str, tuple[float, str]] = {}
    if target.counts_requests and record.counted:
        status = record.status
        values.update(
            Requests=(1, COUNT),
            Status4xx=(int(400 <= status < 500), COUNT),
            Status429=(int(status == 429), COUNT),
            Status5xx=(int(status >= 500), COUNT),
            RequestLatency=(round(latency_ms, 3), MILLISECONDS),
        )
    for metric, key in USAGE_METRICS.items():
        if key in record.usage:
            values[metric] = (record.usage[key], COUNT)
    documents = [_document(target, now_ms, REQUEST_DIMENSIONS, {}, values)] if values else []
    for name, ms in record.stages.items():
        documents.append(
            _document(target, now_ms, STAGE_DIMENSIONS, {"Stage": name}, {"StageLatency": (round(ms, 3), MILLISECONDS)})
        )
    return documents


def write_metrics(record: telemetry.Request, target: MetricsTarget, latency_ms: float) -> None:
    """Write one finished request's EMF objects as JSON lines, through the process's log handler."""
    now_ms = int(time.time() * 1000)
    for document in metric_documents(record, target, latency_ms, now_ms):
        metrics_log.info("metrics", extra={"fields": {**document, "request_id": record.request_id}})


def _document(target: MetricsTarget, now_ms: int, names: list[str], extra: dict, values: dict) -> dict:
    directive = {
        "Namespace": target.namespace,
        "Dimensions": [names],
        "Metrics": [{"Name": name, "Unit": unit} for name, (_, unit) in values.items()],
    }
    return {
        "_aws": {"Timestamp": now_ms, "CloudWatchMetrics": [directive]},
        **target.dimensions,
        **extra,
        **{name: value for name, (value, _) in values.items()},
    }


# --- traces ---

_provider = None


def tracer(settings: Settings, service: str):
    """This process's tracer, exporting over OTLP/HTTP, or None when tracing is off. Called when the app is
    created, in the Gunicorn worker: the exporter's thread must start after the fork."""
    global _provider
    if not settings.tracing:
        return None
    if _provider is None:
        # The SDK and the exporter (protobuf) are imported only when tracing is on.
        from opentelemetry import trace
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        name = settings.service_name or f"rag-{service}"
        _provider = TracerProvider(resource=Resource.create({"service.name": name, "rag.service": service}))
        _provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))  # endpoint etc. from OTEL_*
        trace.set_tracer_provider(_provider)
    return _provider.get_tracer("rag")


# --- the Flask hooks ---


def instrument(app: Flask, service: str, settings: Settings) -> None:
    """Give every request of `app` but /ping an id, a log line when it is done, metrics and a server span.
    Call it before any other before_request hook, so that even a refused request has its id."""
    architecture, counts = role(service, settings)
    target = MetricsTarget(
        settings.metrics_namespace,
        {"Endpoint": settings.endpoint_name, "Variant": settings.variant_name, "Architecture": architecture},
        counts,
    )
    telemetry.configure(settings.metrics, tracer(settings, service))
    metrics = settings.metrics

    @app.before_request
    def _open():
        g.request_id = incoming_request_id()
        if request.path == "/ping":
            return
        parent = request.headers.get(TRACEPARENT) or attribute(request.headers.get(CUSTOM_ATTRIBUTES), TRACEPARENT)
        g.record = telemetry.open_request(g.request_id, f"{request.method} {request.path}", {TRACEPARENT: parent})
        log.debug("%s %s started", request.method, request.path)

    @app.after_request
    def _finish(response: Response):
        response.headers[REQUEST_ID_HEADER] = g.get("request_id", "")
        record = g.pop("record", None)
        if record is not None:
            record.status = response.status_code  # a stream that fails later changes it (serving/web.py)
            if not response.is_streamed:  # all measured: nothing of it runs on this thread any more
                telemetry.leave_request(record)
            method, path, timings = request.method, request.path, g.get("timings")
            # When the body has been sent: a stream's time is all of it.
            response.call_on_close(lambda: _close(record, method, path, timings))
        return response

    def _close(record: telemetry.Request, method: str, path: str, timings) -> None:
        latency_ms = (time.perf_counter() - record.started) * 1000.0
        fields = {"request_id": record.request_id, "method": method, "path": path, "status": record.status}
        fields["ms"] = round(latency_ms, 1)
        if timings is not None:
            fields["timings"] = timings
        if metrics:
            write_metrics(record, target, latency_ms)
        log.info("%s %s %d", method, path, record.status, extra={"fields": fields})  # last: the request is done
        telemetry.close_request(record)
