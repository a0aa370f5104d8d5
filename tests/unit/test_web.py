"""The HTTP edge (serving/web.py) with fakes: JSON errors, streaming, loader states. No model, no server."""

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from rag import errors
from rag.errors import RequestTimeout
from rag.pipeline import RagPipeline
from rag.settings import Settings
from rag.types import Passage, Retriever
from serving.web import add_invocations, create_loading_app, create_service_app
from tests.fakes import FakeGenerator


class OneRetriever(Retriever):
    model_name = "one"

    def retrieve(self, query, top_k, deadline=None):
        return [Passage(1, "a.md", 0, 0.9, "alpha")]


class StallingGenerator(FakeGenerator):
    """Streams one piece, then runs out of time."""

    def stream(self, query, passages, params, deadline=None):
        yield "The answer"
        raise RequestTimeout("generation did not finish before the request deadline")


def app_with(generator):
    settings = Settings()
    app = create_service_app("test", settings)
    add_invocations(app, settings, lambda: RagPipeline(OneRetriever(), generator, "monolith"))
    return app.test_client()


def lines(response):
    return [json.loads(line) for line in response.get_data(as_text=True).splitlines() if line]


def test_stream_events_in_order():
    events = lines(app_with(FakeGenerator()).post("/invocations-response-stream", json={"query": "q"}))
    assert [e["event"] for e in events] == ["sources", "token", "done"]
    assert events[-1]["answer"] == "According to [1] a.md" == events[1]["text"]


def test_failure_mid_stream_becomes_an_error_event():
    response = app_with(StallingGenerator()).post("/invocations-response-stream", json={"query": "q"})
    events = lines(response)
    assert response.status_code == 200
    assert [e["event"] for e in events] == ["sources", "token", "error"]
    assert events[-1]["error_type"] == "timeout" and "deadline" in events[-1]["error"]


def test_unexpected_error_is_a_generic_500():
    class Broken(FakeGenerator):
        def generate(self, *args, **kwargs):
            raise KeyError("secret detail")

    response = app_with(Broken()).post("/invocations", json={"query": "q"})
    assert response.status_code == 500
    body = response.get_json()
    assert body == {
        "error": "internal error; see the service log",
        "error_type": "internal",
        "request_id": body["request_id"],
    }
    assert body["request_id"] == response.headers["X-Request-Id"]


@pytest.mark.parametrize("outcome, status, state", [("ok", 200, "ready"), ("fail", 503, "degraded")])
def test_loader_ping_states(outcome, status, state):
    def load():
        if outcome == "fail":
            raise RuntimeError("weights missing")
        return object()

    app, loader = create_loading_app("test", Settings(), "thing", load)
    loader._thread.join(timeout=5)
    response = app.test_client().get("/ping")
    assert response.status_code == status and response.get_json()["status"] == state


class BlockingGenerator(FakeGenerator):
    """Holds each request inside generate until the test releases it."""

    def __init__(self):
        super().__init__()
        self.inside, self.release = threading.Event(), threading.Event()

    def generate(self, query, passages, params, deadline=None):
        self.inside.set()
        assert self.release.wait(10)
        return super().generate(query, passages, params, deadline)


def limited_app(generator, limit=1):
    settings = Settings(max_concurrent_requests=limit)
    app = create_service_app("test", settings)
    add_invocations(app, settings, lambda: RagPipeline(OneRetriever(), generator, "monolith"))
    return app


def test_past_the_limit_invocations_answer_429_at_once_with_retry_after():
    generator = BlockingGenerator()
    app = limited_app(generator)
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(lambda: app.test_client().post("/invocations", json={"query": "q"}))
        assert generator.inside.wait(10)
        started = time.monotonic()
        refused = app.test_client().post("/invocations", json={"query": "q"})
        streamed = app.test_client().post("/invocations-response-stream", json={"query": "q"})
        assert time.monotonic() - started < 0.5
        generator.release.set()
        assert first.result(10).status_code == 200
    for response in (refused, streamed):
        assert response.status_code == 429 and response.headers["Retry-After"] == "1"
        assert response.get_json()["error_type"] == "overloaded"
    assert len(generator.seen) == 1  # the refused requests cost no model time
    assert app.test_client().post("/invocations", json={"query": "q"}).status_code == 200  # the slot came back


def test_a_stream_gives_its_slot_back_when_it_ends_or_is_dropped():
    app = limited_app(FakeGenerator())
    client = app.test_client()
    assert lines(client.post("/invocations-response-stream", json={"query": "q"}))[-1]["event"] == "done"
    unread = client.post("/invocations-response-stream", json={"query": "q"}, buffered=False)
    unread.close()  # the client went away before reading the body
    assert client.post("/invocations", json={"query": "q"}).status_code == 200


def test_an_upstream_429_keeps_its_type():
    error = errors.from_dict({"error": "full", "error_type": "overloaded"}, 429)
    assert isinstance(error, errors.Overloaded) and error.status == 429 and error.message == "full"


@pytest.mark.parametrize(
    "body", [b"[" * 100_000 + b"]" * 100_000, b'{"a":' * 5_000 + b"1" + b"}" * 5_000], ids=["lists", "objects"]
)
def test_deeply_nested_json_is_invalid_json_not_a_500(body):
    # The decoder's recursion limit raises RecursionError, which is not a ValueError.
    response = app_with(FakeGenerator()).post("/invocations", data=body, content_type="application/json")
    assert response.status_code == 400
    assert response.get_json()["error_type"] == "invalid_json"


def test_method_not_allowed_is_json_and_lists_the_allowed_methods():
    response = app_with(FakeGenerator()).put("/invocations", json={"query": "q"})
    assert response.status_code == 405 and response.get_json()["error_type"] == "method_not_allowed"
    assert set(response.headers["Allow"].replace(" ", "").split(",")) >= {"POST"}
