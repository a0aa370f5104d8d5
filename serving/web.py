"""The HTTP edge shared by all four services. Model code never sees Flask; Flask never sees torch.

Every error leaves as {"error", "error_type", "request_id"} with its status; request ids, the one JSON log line
per request (status and stage timings, never the payload), metrics and traces are serving/telemetry.py's.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

from flask import Flask, Response, g, request, stream_with_context
from werkzeug.exceptions import HTTPException

from rag import errors, telemetry
from rag.api import QueryRequest
from rag.chat import ChatRequest, completion, parse_invocation
from rag.chat import chunks as chat_chunks
from rag.clients.protocol import CUSTOM_ATTRIBUTES, DEADLINE_HEADER, INSTANCE_HEADER, timeout_from_attributes
from rag.generation.batching import Admission, client_gone
from rag.settings import MAX_PAYLOAD_BYTES, Settings
from serving.telemetry import configure_logging, instrument

log = logging.getLogger("rag.http")
T = TypeVar("T")
_HTTP_ERROR_TYPES = {
    400: errors.InvalidRequest,
    404: errors.NotFound,
    405: errors.MethodNotAllowed,
    413: errors.PayloadTooLarge,
    415: errors.UnsupportedMediaType,
}


def json_response(body: dict, status: int = 200) -> Response:
    """UTF-8 JSON with non-ASCII kept as is."""
    return Response(json.dumps(body, ensure_ascii=False), status=status, mimetype="application/json")


def ping_response(
    status: str, *, elapsed_s: float | None = None, error: str | None = None, services: dict | None = None
) -> Response:
    """The one /ping body of every architecture: `status`, plus `elapsed_s` while loading and `error`
    when degraded (a sentence, never exception text); the orchestrator adds its `services` map."""
    body: dict = {"status": status}
    if status == "loading":
        body["elapsed_s"] = round(elapsed_s or 0.0, 1)
    if status == "degraded":
        body["error"] = error or "not ready; see the service log"
    if services is not None:
        body["services"] = services
    return json_response(body, 200 if status == "ready" else 503)


class Loader(Generic[T]):
    """Loads heavy components in a background thread, so /ping can say 503 `loading` meanwhile."""

    def __init__(self, what: str, load: Callable[[], T]):
        self.what = what
        self._load = load
        self.value: T | None = None
        self.error: str | None = None  # what clients may see about a failed load
        self.started = time.monotonic()
        self._thread = threading.Thread(target=self._run, name=f"load-{what}", daemon=True)

    def start(self) -> Loader[T]:
        self._thread.start()
        return self

    def _run(self) -> None:
        # The cause goes to the log only: exception text can hold file paths and other internals.
        try:
            self.value = self._load()
            log.info("%s ready after %.1f s", self.what, time.monotonic() - self.started)
        except errors.RagError as exc:
            self.error = f"the {self.what} failed to load ({exc.error_type}); the service log says why"
            log.error("%s failed to load: %s", self.what, exc.message)
        except Exception:  # noqa: BLE001 - reported through /ping, traceback in the log
            self.error = f"the {self.what} failed to load; the service log says why"
            log.exception("%s failed to load", self.what)

    @property
    def ready(self) -> bool:
        return self.value is not None

    def get(self) -> T:
        """The loaded value, or NotReady while loading (or after a failed load)."""
        if self.value is None:
            if self.error:
                raise errors.NotReady(self.error)
            raise errors.NotReady(f"the {self.what} is still loading; poll GET /ping until it answers 200")
        return self.value

    def ping(self) -> Response:
        """200 ready, or 503 loading / degraded (with the reason)."""
        if self.value is not None:
            return ping_response("ready")
        if self.error:
            return ping_response("degraded", error=self.error)
        return ping_response("loading", elapsed_s=time.monotonic() - self.started)


def request_deadline(settings: Settings) -> float:
    """This request's deadline: our own timeout, or less when the caller passed a shorter one."""
    budget = settings.request_timeout_s
    raw = request.headers.get(DEADLINE_HEADER)
    if raw:
        try:
            budget = min(budget, max(0.0, float(raw)))
        except ValueError:
            pass
    # Through SageMaker Runtime (the split topology's LLM endpoint) it arrives as a custom attribute.
    attribute = timeout_from_attributes(request.headers.get(CUSTOM_ATTRIBUTES))
    if attribute is not None:
        budget = min(budget, attribute)
    return g.started + budget


def _check_custom_attributes() -> str | None:
    value = request.headers.get(CUSTOM_ATTRIBUTES)
    if value is None:
        return None
    if len(value) > 1024 or any(not (32 <= ord(ch) <= 126 or ch == "\t") for ch in value):
        raise errors.InvalidRequest(f"{CUSTOM_ATTRIBUTES} must be at most 1024 visible ASCII characters")
    return value


def _client_probe() -> Callable[[], bool]:
    """Whether this request's client has closed its connection: a peek at the socket reads end-of-file.
    A waiting request polls it, so a client that gave up is dropped from the batch (rag/generation/batching.py)."""
    sock = request.environ.get("gunicorn.socket")
    if sock is None:  # not under gunicorn (Flask's test client): nothing to watch
        return lambda: False

    def gone() -> bool:
        try:
            return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
        except (BlockingIOError, InterruptedError):
            return False  # connected, nothing to read
        except OSError:
            return True

    return gone


def error_body(error: errors.RagError) -> dict:
    """The JSON body of an error: {"error", "error_type", "request_id"}."""
    return {**error.to_dict(), "request_id": g.get("request_id") or telemetry.request_id()}


def create_service_app(name: str, settings: Settings) -> Flask:
    """A Flask app with JSON errors, the 6 MB payload limit, and a request id, a log line, metrics and a
    span for every request (serving/telemetry.py)."""
    configure_logging(settings.log_level)
    app = Flask(name)
    app.config["MAX_CONTENT_LENGTH"] = MAX_PAYLOAD_BYTES
    app.json.ensure_ascii = False
    instrument(app, name, settings)  # first: even a request refused below has its id

    @app.before_request
    def _start():
        g.started = time.monotonic()
        g.timings = None
        client_gone.set(_client_probe())
        caller = request.headers.get(INSTANCE_HEADER)
        if settings.instance_token and caller is not None and caller != settings.instance_token:
            message = (
                f"the {name} on this port belongs to another instance; give each instance its own "
                "internal ports (RAG_VECTOR_URL, RAG_LLM_URL)"
            )
            if request.path == "/ping":
                return json_response({"status": "foreign", "error": message}, 503)
            raise errors.UpstreamUnavailable(message)

    @app.after_request
    def _finish(response: Response):
        if settings.instance_token and request.headers.get(INSTANCE_HEADER) == settings.instance_token:
            # Said back, so that the caller knows the port is held by its own service and not by
            # something else that happens to answer there (e.g. another instance's server).
            response.headers[INSTANCE_HEADER] = settings.instance_token
        attributes = request.headers.get(CUSTOM_ATTRIBUTES)
        if attributes is not None and response.status_code < 400:
            response.headers[CUSTOM_ATTRIBUTES] = attributes  # passed through verbatim
        return response

    @app.errorhandler(errors.RagError)
    def _rag_error(exc: errors.RagError):
        response = json_response(error_body(exc), exc.status)
        if isinstance(exc, errors.Overloaded):
            response.headers["Retry-After"] = str(exc.retry_after_s)
        return response

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        cls = _HTTP_ERROR_TYPES.get(exc.code or 500)
        if exc.code == 413:
            error = errors.PayloadTooLarge(
                f"the body is larger than {MAX_PAYLOAD_BYTES // (1024 * 1024)} MB, "
                "SageMaker's payload limit; send less text"
            )
        elif cls is not None:
            error = cls(f"{exc.name}: {exc.description}")
        else:
            body = {"error": exc.name, "error_type": f"http_{exc.code}", "request_id": g.get("request_id")}
            return json_response(body, exc.code or 500)
        response = json_response(error_body(error), error.status)
        if getattr(exc, "valid_methods", None):  # a 405 must say which methods the route takes (RFC 9110)
            response.headers["Allow"] = ", ".join(exc.valid_methods)
        return response

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        log.exception("unexpected error")
        return json_response(error_body(errors.InternalError("internal error; see the service log")), 500)

    return app


def json_line(event: dict) -> str:
    return json.dumps(event, ensure_ascii=False) + "\n"


def server_sent_event(event: dict) -> str:
    return f"data: {json.dumps(event, ensure_ascii=False)}\n\n"


def stream_events(
    events, what: str, frame: Callable[[dict], str] = json_line, mimetype: str = "application/jsonlines", last: str = ""
) -> Response:
    """HTTP/1.1 chunked events, one `frame` each (JSON lines by default; Server-Sent Events for the
    OpenAI-style route, which ends with `last`); a failure mid-stream becomes an error event."""

    def body():
        try:
            for event in events:
                yield frame(event)
        except errors.RagError as exc:
            yield frame(_error_event(exc))
        except Exception:  # noqa: BLE001 - logged with its traceback; the client gets no details
            log.exception("%s stream failed", what)
            yield frame(_error_event(errors.InternalError("internal error; see the service log")))
        if last:
            yield last

    return Response(stream_with_context(body()), mimetype=mimetype)


def _error_event(error: errors.RagError) -> dict:
    """The last event of a stream that failed; the request's metrics and log line take its status."""
    record = telemetry.current()
    if record is not None:
        record.status = error.status
    return {"event": "error", **error_body(error)}


def create_loading_app(name: str, settings: Settings, what: str, load: Callable[[], T]) -> tuple[Flask, Loader[T]]:
    """A service app whose models load in the background, with `GET /ping` reporting the loader's state."""
    app = create_service_app(name, settings)
    loader = Loader(what, load).start()
    app.add_url_rule("/ping", "ping", loader.ping)
    return app, loader


def add_invocations(app: Flask, settings: Settings, get_pipeline: Callable) -> None:
    """`POST /invocations`, its streaming twin and `POST /v1/chat/completions`: the request handlers both
    architectures share. A body with `messages` is a chat request (rag/chat.py), answered in that shape.

    Admission comes first, before retrieval: past RAG_MAX_CONCURRENT_REQUESTS a request costs no
    embedding and no model time, and its 429 leaves at once. With one model per worker, as here, this is
    the count per model; the model's own count (rag/generation/batching.py) still guards direct callers."""

    admission = Admission(settings.max_concurrent_requests, "server")

    def answer(query: QueryRequest) -> dict:
        with telemetry.stage("admission"):
            admission.enter()
        try:
            result = get_pipeline().answer(query, request_deadline(settings))
        finally:
            admission.leave()
        g.timings = result["timings_ms"]
        return result

    def stream(query: QueryRequest, chat: ChatRequest | None = None) -> _HoldSlot:
        with telemetry.stage("admission"):
            admission.enter()
        try:
            pipeline = get_pipeline()
            events = pipeline.stream(query, request_deadline(settings))
            if chat is not None:
                events = chat_chunks(
                    events, chat, f"chatcmpl-{g.request_id}", int(time.time()), pipeline.generator.name
                )
        except BaseException:
            admission.leave()
            raise
        return _HoldSlot(events, admission)

    def chat_completion(chat: ChatRequest) -> Response:
        result = answer(chat.query(settings.chat_condense))
        return json_response(completion(result, chat, f"chatcmpl-{g.request_id}", int(time.time())))

    @app.post("/invocations")
    def invocations():
        _check_custom_attributes()
        parsed = parse_invocation(request.get_data(cache=False), request.content_type, settings)
        if isinstance(parsed, ChatRequest):  # the chat-completions shape; `stream` is the stream route's
            return chat_completion(parsed)
        return json_response(answer(parsed))

    @app.post("/invocations-response-stream")
    def invocations_stream():
        _check_custom_attributes()
        parsed = parse_invocation(request.get_data(cache=False), request.content_type, settings)
        if isinstance(parsed, ChatRequest):
            return stream_events(stream(parsed.query(settings.chat_condense), parsed), "chat")
        return stream_events(stream(parsed), "invocation")

    @app.post("/v1/chat/completions")
    def chat_completions():
        """For OpenAI clients run locally: `stream` picks one JSON body or Server-Sent Events."""
        chat = ChatRequest.from_body(request.get_data(cache=False), request.content_type, settings)
        if not chat.stream:
            return chat_completion(chat)
        events = stream(chat.query(settings.chat_condense), chat)
        return stream_events(events, "chat", server_sent_event, "text/event-stream", "data: [DONE]\n\n")


class _HoldSlot:
    """The events of a stream, holding an admission slot until the last one, or until the stream is
    closed or dropped (the client went away, even before the body started)."""

    def __init__(self, events, admission: Admission):
        self._events, self._admission, self._held = iter(events), admission, True

    def __iter__(self):
        return self

    def __next__(self):
        try:
            return next(self._events)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self._held:
            self._held = False
            self._admission.leave()
            getattr(self._events, "close", lambda: None)()

    __del__ = close
