"""The HTTP edge (serving/web.py) with fakes: JSON errors, streaming, loader states. No model, no server."""
import json

import pytest

from rag.errors import RequestTimeout
from rag.index import Passage
from rag.pipeline import RagPipeline, Retriever
from rag.settings import Settings
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
    assert response.get_json() == {"error": "internal error; see the service log", "error_type": "internal"}


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


@pytest.mark.parametrize("body", [b"[" * 100_000 + b"]" * 100_000, b'{"a":' * 5_000 + b"1" + b"}" * 5_000],
                         ids=["lists", "objects"])
def test_deeply_nested_json_is_invalid_json_not_a_500(body):
    # The decoder's recursion limit raises RecursionError, which is not a ValueError.
    response = app_with(FakeGenerator()).post("/invocations", data=body, content_type="application/json")
    assert response.status_code == 400
    assert response.get_json()["error_type"] == "invalid_json"


def test_method_not_allowed_is_json_and_lists_the_allowed_methods():
    response = app_with(FakeGenerator()).put("/invocations", json={"query": "q"})
    assert response.status_code == 405 and response.get_json()["error_type"] == "method_not_allowed"
    assert set(response.headers["Allow"].replace(" ", "").split(",")) >= {"POST"}
