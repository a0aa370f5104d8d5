"""Per-request telemetry inside the core: the request id, the stage timings and, when tracing is on, spans.

The HTTP edge (serving/telemetry.py) opens one `Request` per request on the thread that handles it, and
closes it when the response is done; in between, the core marks its stages:

    with stage("embed"):                        # timed into the request's record; a span when tracing is on
        vector = embedder.embed([query])[0]

    hop = stage("hop_llm", client=True).begin()  # a stage that outlives a block (a stream)
    headers = hop.headers()                      # W3C traceparent naming it as the callee's parent
    ...
    hop.end()

    mark("queue", started, ended, parent)        # a stage timed elsewhere (on the model's thread)

Nothing here writes anything: the edge turns the record into EMF lines and log fields, and owns the
OpenTelemetry SDK (this module uses only the API). With metrics and tracing both off, a stage costs one
context-variable read; with metrics on, two clock reads and a dict update.
"""

from __future__ import annotations

import time
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

_PROPAGATOR = TraceContextTextMapPropagator()  # W3C traceparent, whatever OTEL_PROPAGATORS says
# perf_counter() seconds to epoch nanoseconds, for spans of stages timed on another thread.
_EPOCH_NS, _PERF_ORIGIN = time.time_ns(), time.perf_counter()


class _State:
    measuring = False  # stages are timed: metrics or tracing is on
    tracer: Any = None  # an OpenTelemetry tracer when tracing is on


_state = _State()


def configure(measuring: bool, tracer: Any = None) -> None:
    """Turn stage timing on (metrics) and spans on (a tracer from the edge's OpenTelemetry SDK)."""
    _state.measuring = measuring or tracer is not None
    _state.tracer = tracer


@dataclass(eq=False)
class Request:
    """What one request measured: stage milliseconds (summed per name), token usage, its outcome."""

    request_id: str
    started: float = field(default_factory=time.perf_counter)
    stages: dict[str, float] = field(default_factory=dict)
    usage: dict[str, float] = field(default_factory=dict)  # prompt_tokens, completion_tokens, batch_size
    status: int = 200
    counted: bool = True  # False for a health probe that came through /invocations
    span: Any = None  # the server span, when tracing is on
    _token: Any = None

    def add(self, name: str, seconds: float) -> None:
        self.stages[name] = self.stages.get(name, 0.0) + seconds * 1000.0


_current: ContextVar[Request | None] = ContextVar("rag_request", default=None)


def current() -> Request | None:
    """The request this thread is handling, if any."""
    return _current.get()


def request_id() -> str | None:
    """The id of the request this thread is handling, if any (every log line carries it)."""
    record = _current.get()
    return record.request_id if record is not None else None


def open_request(request_id: str, name: str, carrier: dict | None = None) -> Request:
    """Start this thread's request: its record and, when tracing is on, its server span, a child of
    the caller's W3C `traceparent` in `carrier` when there is one."""
    record = Request(request_id)
    _current.set(record)
    if _state.tracer is not None:
        parent = _PROPAGATOR.extract({key: value for key, value in (carrier or {}).items() if value})
        record.span = _state.tracer.start_span(
            name, context=parent, kind=trace.SpanKind.SERVER, attributes={"rag.request_id": request_id}
        )
        record._token = otel_context.attach(trace.set_span_in_context(record.span))
    return record


def leave_request(record: Request) -> None:
    """Forget the request on this thread, once nothing more of it runs here (unless another request has
    begun since); its record stays readable, and close_request() still ends its span."""
    if record._token is not None and trace.get_current_span() is record.span:
        otel_context.detach(record._token)
    record._token = None
    if _current.get() is record:
        _current.set(None)


def close_request(record: Request) -> None:
    """End the request: its span gets the status and ends, and this thread forgets it."""
    leave_request(record)
    if record.span is not None:
        record.span.set_attribute("http.response.status_code", record.status)
        if record.status >= 500:
            record.span.set_status(trace.Status(trace.StatusCode.ERROR))
        record.span.end()


def usage(prompt_tokens: int, completion_tokens: int, batch_size: float | None = None) -> None:
    """Token counts of the current request's generation, and the mean rows per decode step it shared."""
    record = _current.get()
    if record is None or not _state.measuring:
        return
    record.usage.update(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)
    if batch_size is not None:
        record.usage["batch_size"] = batch_size


class stage:  # lower case: it reads as a verb, `with stage("embed"):`
    """One stage of the current request: a `with` block, or begin() ... end() around something that
    outlives a block. Outside a request, or with measuring off, it does nothing."""

    __slots__ = ("name", "client", "record", "started", "span", "_token")

    def __init__(self, name: str, client: bool = False):
        self.name, self.client = name, client  # client: a call to another service (an OpenTelemetry CLIENT span)
        self.record: Request | None = None
        self.span: Any = None
        self._token: Any = None

    def begin(self) -> stage:
        """Start timing (and a span, a child of the current one) without making it current."""
        record = _current.get()
        if record is None or not _state.measuring:
            return self
        self.record, self.started = record, time.perf_counter()
        if _state.tracer is not None:
            kind = trace.SpanKind.CLIENT if self.client else trace.SpanKind.INTERNAL
            self.span = _state.tracer.start_span(self.name, kind=kind)
        return self

    def end(self, error: BaseException | None = None) -> None:
        """Stop timing; the first call counts, later ones do nothing."""
        record, self.record = self.record, None
        if record is None:
            return
        record.add(self.name, time.perf_counter() - self.started)
        if self.span is not None:
            if error is not None:
                self.span.set_status(trace.Status(trace.StatusCode.ERROR, type(error).__name__))
            self.span.end()

    def headers(self) -> dict[str, str]:
        """The W3C `traceparent` naming this stage's span as the parent (empty when tracing is off). Only it:
        a `tracestate` may hold commas, which custom attributes cannot carry."""
        carrier: dict[str, str] = {}
        if self.span is not None:
            _PROPAGATOR.inject(carrier, context=trace.set_span_in_context(self.span))
        return {"traceparent": carrier["traceparent"]} if "traceparent" in carrier else {}

    def __enter__(self) -> stage:
        self.begin()
        if self.span is not None:  # current inside the block: a hop's callee, a generation's queue, nest under it
            self._token = otel_context.attach(trace.set_span_in_context(self.span))
        return self

    def __exit__(self, kind, error, traceback) -> None:
        if self._token is not None:
            otel_context.detach(self._token)
            self._token = None
        self.end(error)


def mark(name: str, started: float | None, ended: float | None, parent: stage | None = None) -> None:
    """A stage timed elsewhere, from time.perf_counter() values (None: not reached); its span is a child
    of `parent`'s, else of the current span."""
    record = _current.get()
    if record is None or not _state.measuring or started is None or ended is None or ended < started:
        return
    record.add(name, ended - started)
    if _state.tracer is not None:
        context = trace.set_span_in_context(parent.span) if parent is not None and parent.span is not None else None
        span = _state.tracer.start_span(name, context=context, start_time=_epoch_ns(started))
        span.end(end_time=_epoch_ns(ended))


def _epoch_ns(perf: float) -> int:
    return _EPOCH_NS + int((perf - _PERF_ORIGIN) * 1e9)


def uncounted() -> None:
    """The current request is a health probe (the split topology's `{"ping": true}`): no request metrics."""
    record = _current.get()
    if record is not None:
        record.counted = False
