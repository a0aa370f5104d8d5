"""What the telemetry tests share: a CloudWatch EMF checker, JSON log readers, and a real OTLP/HTTP receiver.

No OTLP collector can be installed from the package registries here (the OpenTelemetry Collector and Jaeger
are Go binaries), so the receiver is a small HTTP server that speaks OTLP/HTTP with protobuf, decoding
each export with opentelemetry-proto's own messages: the services' exporter cannot tell it from a collector.
"""

from __future__ import annotations

import gzip
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from bench.core.processes import log_records

NAMESPACE = "RagService"
REQUEST_DIMENSIONS = ["Endpoint", "Variant", "Architecture"]
STAGE_DIMENSIONS = [*REQUEST_DIMENSIONS, "Stage"]
UNITS = {"Count", "Milliseconds"}
LOG_KEYS = {"timestamp", "level", "logger", "pid", "request_id", "message"}


def check_emf(document: dict) -> None:
    """Assert that `document` is a valid CloudWatch embedded-metric-format object: every dimension a string
    member, every metric a number member, units CloudWatch knows (the specification's rules)."""
    directives = document["_aws"]["CloudWatchMetrics"]
    assert isinstance(document["_aws"]["Timestamp"], int) and directives
    for directive in directives:
        assert directive["Namespace"] and directive["Dimensions"] and directive["Metrics"]
        for dimension_set in directive["Dimensions"]:
            assert 1 <= len(dimension_set) <= 30
            assert all(isinstance(document[name], str) and document[name] for name in dimension_set), dimension_set
        for metric in directive["Metrics"]:
            value = document[metric["Name"]]
            assert metric["Unit"] in UNITS and isinstance(value, int | float) and not isinstance(value, bool), metric


def emf_documents(records: list[dict], request_id: str | None = None) -> list[dict]:
    """The EMF objects among log records (of one request, when given)."""
    return [r for r in records if "_aws" in r and (request_id is None or r.get("request_id") == request_id)]


def metrics_of(documents: list[dict]) -> tuple[dict, dict]:
    """(request-level metrics by name, stage latencies by stage) from EMF objects, each checked."""
    request, stages = {}, {}
    for document in documents:
        check_emf(document)
        directive = document["_aws"]["CloudWatchMetrics"][0]
        assert directive["Namespace"] == NAMESPACE
        if directive["Dimensions"] == [STAGE_DIMENSIONS]:
            assert [m["Name"] for m in directive["Metrics"]] == ["StageLatency"]
            stages[document["Stage"]] = document["StageLatency"]
        else:
            assert directive["Dimensions"] == [REQUEST_DIMENSIONS], directive
            request.update({m["Name"]: document[m["Name"]] for m in directive["Metrics"]})
    return request, stages


def json_lines(text: str) -> list[dict]:
    """Every JSON log record of a server's output, each checked for the keys every line carries."""
    records = list(log_records(text))
    for record in records:
        assert LOG_KEYS <= set(record), record
    return records


class OtlpReceiver:
    """An OTLP/HTTP trace receiver on a free loopback port: POST /v1/traces with a protobuf
    ExportTraceServiceRequest. It keeps every span as a dict (trace_id, span_id, parent, name, kind, service)."""

    def __init__(self):
        self.spans: list[dict] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                if self.path != "/v1/traces" or self.headers.get("Content-Type") != "application/x-protobuf":
                    self.send_response(404)
                    self.end_headers()
                    return
                receiver.add(ExportTraceServiceRequest.FromString(body))
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, name="otlp-receiver", daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def add(self, export: ExportTraceServiceRequest) -> None:
        spans = []
        for resource_spans in export.resource_spans:
            resource = {kv.key: kv.value.string_value for kv in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    spans.append(
                        {
                            "trace_id": span.trace_id.hex(),
                            "span_id": span.span_id.hex(),
                            "parent": span.parent_span_id.hex() or None,
                            "name": span.name,
                            "kind": span.kind,
                            "service": resource.get("service.name"),
                            "attributes": {kv.key: _value(kv.value) for kv in span.attributes},
                        }
                    )
        with self.lock:
            self.spans += spans

    def trace(self, trace_id: str) -> list[dict]:
        with self.lock:
            return [span for span in self.spans if span["trace_id"] == trace_id]

    def trace_of(self, request_id: str) -> str | None:
        """The trace whose server span carries this request id (the service that took the request)."""
        with self.lock:
            for span in self.spans:
                if span["attributes"].get("rag.request_id") == request_id:
                    return span["trace_id"]
        return None

    def wait_for(self, trace_id: str, names: set[str], deadline_s: float = 20.0) -> list[dict]:
        """The trace's spans once every name in `names` has arrived and every span's parent has too, but for
        one root (exporters send in batches, each process its own: a service's server span ends after its
        response, so it can arrive after its children and after the names, which other services share).
        Spans that never connect are returned at the deadline, for check_connected to show."""
        end = time.monotonic() + deadline_s
        while True:
            spans = self.trace(trace_id)
            named = names <= {span["name"] for span in spans}
            ids = {span["span_id"] for span in spans}
            if named and sum(span["parent"] not in ids for span in spans) <= 1:
                return spans
            if time.monotonic() >= end:
                if named:
                    return spans
                raise TimeoutError(f"trace {trace_id} lacks {names - {s['name'] for s in spans}}")
            time.sleep(0.05)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _value(value):
    kind = value.WhichOneof("value")  # string_value, int_value, ...: the scalar kinds the services set
    return getattr(value, kind) if kind else None


def check_connected(spans: list[dict], parent: str | None = None) -> dict:
    """Assert that `spans` form one tree: one root (whose parent is `parent`, the caller's span, or none)
    and every other span's parent among them. Returns the root."""
    ids = {span["span_id"] for span in spans}
    assert len(ids) == len(spans), "span ids repeat"
    roots = [span for span in spans if span["parent"] not in ids]
    assert len(roots) == 1, [(s["name"], s["service"], s["parent"]) for s in roots]
    assert roots[0]["parent"] == parent, roots[0]
    return roots[0]


def children(spans: list[dict], of: dict) -> set[str]:
    """The names of the spans whose parent is `of`."""
    return {span["name"] for span in spans if span["parent"] == of["span_id"]}
