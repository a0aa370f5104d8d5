"""docs/clients.md's boto3 examples against the failures a real server does not show on demand, through real
boto3 and the SageMaker Runtime stand-in: a container that dies mid-stream (SageMaker's ModelStreamError) and
one that does not answer (a ModelError with status 0); and the stand-in's own re-cutting of streams."""

from __future__ import annotations

import pytest

from sagemaker_lifecycle.local_runtime import LocalRuntime, recut
from tests.service.clients_support import ENDPOINT, load_example, runtime_env
from tests.support import free_port
from tests.unit.test_sagemaker_runtime import ScriptedContainer

GONE = "rag-gone"  # an endpoint whose container does not listen


@pytest.fixture
def container(monkeypatch):
    container = ScriptedContainer()
    runtime = LocalRuntime({ENDPOINT: container.url, GONE: f"http://127.0.0.1:{free_port()}"}).start()
    for key, value in runtime_env(runtime.url).items():
        monkeypatch.setenv(key, value)
    try:
        yield container
    finally:
        runtime.stop()
        container.server.shutdown()


def test_a_stream_that_sagemaker_breaks_off_raises_after_the_events_before(container):
    container.then(200, b'{"event": "sources", "sources": []}\n', b'{"event": "token", "text": " In"}\n', b"<cut>")
    example = load_example("boto3-invoke-endpoint-with-response-stream")
    events = []
    with pytest.raises(example["StreamError"], match=r"^ModelStreamError: the model container closed the stream"):
        for event in example["ask_streaming"](ENDPOINT, "When did the tramway open?"):
            events.append(event)
    assert events == [{"event": "sources", "sources": []}, {"event": "token", "text": " In"}]


def test_a_container_that_does_not_answer_is_status_0_without_error_type(container):
    example = load_example("boto3-invoke-endpoint")
    with pytest.raises(example["EndpointError"]) as failed:
        example["ask"](GONE, "When did the tramway open?")
    assert (failed.value.status, failed.value.error_type) == (0, None)
    assert "could not get a response" in failed.value.message


def test_recut_keeps_the_bytes_in_parts_of_the_sizes_given():
    assert list(recut([b"abc", b"defgh", b"ij"], (1, 3))) == [b"a", b"bcd", b"e", b"fgh", b"i", b"j"]
    assert list(recut([b"abc", b"de"], ())) == [b"abc", b"de"]  # without sizes, as they came
    with pytest.raises(ValueError):
        list(recut([b"abc"], (2, 0)))
