"""SageMakerGenerator (rag/clients/sagemaker_runtime.py) through real boto3 and the SageMaker Runtime stand-in,
in front of a scripted container: error mapping, retries, deadlines, stream decoding, health."""

from __future__ import annotations

import io
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3
import pytest
from botocore.response import StreamingBody
from botocore.stub import Stubber

from rag import errors
from rag.clients.sagemaker_runtime import NotSent, SageMakerGenerator, split_lines
from rag.types import GenerationParams, Passage
from sagemaker_lifecycle.local_runtime import LocalRuntime
from tests.support import free_port

PASSAGES = [Passage(1, "velmora.md", 0, 0.8, "The tramway opened in 1889.")]
PARAMS = GenerationParams(max_new_tokens=8)
ANSWER = {"answer": "In 1889.", "usage": {"prompt_tokens": 50, "completion_tokens": 4}, "model": "tiny"}


class ScriptedContainer:
    """A stand-in LLM container: answers each request with the next scripted (status, body parts)."""

    def __init__(self):
        self.script: list[tuple[int, list[bytes]]] = []
        self.requests: list[tuple[str, dict, bytes]] = []
        container = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                container.requests.append((self.path, dict(self.headers), body))
                status, parts = container.script.pop(0) if container.script else (200, [json.dumps(ANSWER).encode()])
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                if len(parts) == 1:
                    self.send_header("Content-Length", str(len(parts[0])))
                    self.end_headers()
                    self.wfile.write(parts[0])
                    return
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for part in parts:
                    if part == b"<cut>":  # the container dies mid-stream
                        self.wfile.flush()
                        self.connection.shutdown(2)
                        return
                    self.wfile.write(f"{len(part):x}\r\n".encode() + part + b"\r\n")
                    self.wfile.flush()
                self.wfile.write(b"0\r\n\r\n")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def then(self, status: int, *parts) -> ScriptedContainer:
        self.script.append((status, [part if isinstance(part, bytes) else json.dumps(part).encode() for part in parts]))
        return self


@pytest.fixture
def setup(monkeypatch):
    container = ScriptedContainer()
    runtime = LocalRuntime({"rag-split-llm": container.url}).start()
    for key, value in {
        "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME": runtime.url,
        "AWS_ACCESS_KEY_ID": "x",
        "AWS_SECRET_ACCESS_KEY": "x",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(key, value)
    try:
        yield container, runtime, SageMakerGenerator("rag-split-llm")
    finally:
        runtime.stop()
        container.server.shutdown()


def test_answer_and_deadline_travel_through_the_runtime(setup):
    container, runtime, generator = setup
    answer = generator.generate("When?", PASSAGES, PARAMS, time.monotonic() + 10)
    assert (answer.text, answer.completion_tokens, generator.name) == ("In 1889.", 4, "tiny")
    path, headers, body = container.requests[0]
    assert path == "/invocations" and json.loads(body)["passages"][0]["text"] == PASSAGES[0].text
    remaining = float(headers["X-Amzn-SageMaker-Custom-Attributes"].split("=")[1])
    assert 9 < remaining <= 10  # the deadline reached the container, the one header the runtime forwards


@pytest.mark.parametrize(
    "status, body, expected",
    [
        (400, {"error": "bad passages", "error_type": "invalid_request"}, errors.InvalidRequest),
        (503, {"error": "still loading", "error_type": "not_ready"}, errors.UpstreamUnavailable),
        (504, {"error": "out of time", "error_type": "timeout"}, errors.RequestTimeout),
        (500, b"<html>Internal Server Error</html>", errors.UpstreamUnavailable),
    ],
)
def test_a_container_error_keeps_its_type(setup, status, body, expected):
    container, runtime, generator = setup
    container.then(status, body)
    with pytest.raises(expected) as raised:
        generator.generate("When?", PASSAGES, PARAMS)
    assert len(container.requests) == 1  # the container answered: never retried
    if isinstance(body, dict) and status != 503:
        assert raised.value.message == body["error"]
    if status == 503:  # the front is ready, its upstream is loading: upstream_unavailable, and /ping says so
        assert "still loading" in raised.value.message and generator.ping()["status"] == "loading"


def test_throttling_is_retried_within_bounds(setup):
    container, runtime, generator = setup
    runtime.throttle = 1
    assert generator.generate("When?", PASSAGES, PARAMS).text == "In 1889."
    assert runtime.invocations == 2
    runtime.throttle, runtime.invocations = 10, 0
    with pytest.raises(errors.UpstreamUnavailable, match="ThrottlingException"):
        generator.generate("When?", PASSAGES, PARAMS)
    assert runtime.invocations == 3 and container.requests[1:] == []  # two retries, then the error


def test_no_retry_when_the_deadline_has_no_room(setup):
    container, runtime, generator = setup
    runtime.throttle = 1
    with pytest.raises(errors.UpstreamUnavailable):
        generator.generate("When?", PASSAGES, PARAMS, time.monotonic() + 0.5)
    assert runtime.invocations == 1


def test_a_container_that_does_not_answer_is_upstream_unavailable_at_once(setup):
    container, runtime, generator = setup
    runtime.endpoints["rag-split-llm"] = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    with pytest.raises(errors.UpstreamUnavailable, match="did not answer"):
        generator.generate("When?", PASSAGES, PARAMS)
    assert time.monotonic() - started < 3 and runtime.invocations == 1
    assert generator.ping()["status"] == "unavailable"  # the failure stands in for a probe


def test_unknown_endpoint_says_so():
    runtime = LocalRuntime({}).start()
    try:
        with pytest.MonkeyPatch.context() as patch:
            for key, value in {
                "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME": runtime.url,
                "AWS_ACCESS_KEY_ID": "x",
                "AWS_SECRET_ACCESS_KEY": "x",
                "AWS_DEFAULT_REGION": "us-east-1",
            }.items():
                patch.setenv(key, value)
            with pytest.raises(errors.UpstreamUnavailable, match="does not exist"):
                SageMakerGenerator("rag-split-llm").generate("When?", PASSAGES, PARAMS)
    finally:
        runtime.stop()


def test_stream_is_reassembled_across_event_boundaries(setup):
    container, runtime, generator = setup
    lines = b'{"text": "In "}\n{"text": "1889."}\n' + json.dumps(ANSWER).encode() + b"\n"
    container.then(200, *[lines[i : i + 7] for i in range(0, len(lines), 7)])  # cut mid-line, mid-character
    pieces = list(generator.stream("When?", PASSAGES, PARAMS, time.monotonic() + 10))
    assert pieces[:2] == ["In ", "1889."] and pieces[2].text == "In 1889."
    assert container.requests[0][0] == "/invocations-response-stream"


def test_stream_errors_before_and_during(setup):
    container, runtime, generator = setup
    container.then(503, {"error": "still loading", "error_type": "not_ready"})
    with pytest.raises(errors.UpstreamUnavailable):  # raised by the call itself, before any event is consumed
        generator.stream("When?", PASSAGES, PARAMS)
    container.then(200, b'{"text": "In "}\n', b'{"event": "error", "error": "late", "error_type": "timeout"}\n')
    events = generator.stream("When?", PASSAGES, PARAMS)
    assert next(events) == "In "
    with pytest.raises(errors.RequestTimeout, match="late"):
        next(events)
    container.then(200, b'{"text": "In "}\n', b"<cut>")
    events = generator.stream("When?", PASSAGES, PARAMS)
    assert next(events) == "In "
    with pytest.raises(errors.UpstreamUnavailable, match="stream broke"):
        next(events)


def test_ping_probes_when_nothing_was_observed(setup):
    container, runtime, generator = setup
    container.then(200, {"status": "ready"})
    assert generator.ping() == {"status": "ready"}
    assert json.loads(container.requests[0][2]) == {"ping": True}
    generator._observed = None
    container.then(503, {"status": "loading", "elapsed_s": 3.0})
    assert generator.ping() == {"status": "loading", "elapsed_s": 3.0}


def test_split_lines():
    assert list(split_lines([b'{"a"', b': 1}\n{"b": 2}\n', b'{"c"', b": 3}"])) == [
        b'{"a": 1}',
        b'{"b": 2}',
        b'{"c": 3}',
    ]


def stubbed(*codes: tuple[str, int]) -> tuple[SageMakerGenerator, Stubber]:
    """A generator whose SageMaker Runtime client answers the given (error code, status)s in turn, then
    the answer: botocore's own errors, without a network."""
    client = boto3.client(
        "sagemaker-runtime", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    stubber = Stubber(client)
    for code, status in codes:
        stubber.add_client_error("invoke_endpoint", code, f"{code} from the stub", status)
    stubber.add_response(
        "invoke_endpoint", {"Body": StreamingBody(io.BytesIO(json.dumps(ANSWER).encode()), len(json.dumps(ANSWER)))}
    )
    stubber.activate()
    generator = SageMakerGenerator("rag-split-llm")
    generator._client = lambda read_timeout, connect_timeout: client
    return generator, stubber


def test_a_call_turned_away_is_retried_with_a_warning(caplog):
    generator, stubber = stubbed(("ModelNotReadyException", 429), ("ThrottlingException", 400))
    assert generator.generate("When?", PASSAGES, PARAMS, time.monotonic() + 10).text == "In 1889."
    stubber.assert_no_pending_responses()
    assert [m for m in caplog.messages if "retrying in" in m][1].startswith("LLM endpoint rag-split-llm: SageMaker")


def test_a_failure_after_the_model_may_have_run_is_not_retried():
    generator, stubber = stubbed(("InternalFailure", 500))
    with pytest.raises(errors.UpstreamUnavailable, match="InternalFailure") as raised:
        generator.generate("When?", PASSAGES, PARAMS, time.monotonic() + 10)
    assert not isinstance(raised.value, NotSent)
    assert len(stubber._queue) == 1  # only the answer is left: one call, no retry


def test_retries_stop_where_the_deadline_leaves_no_room():
    """A retry starts only when it would still have the read's grace (1 s) before the deadline: with 1.4 s,
    the first retry (after 0.1 to 0.2 s) fits, the second (after 0.3 to 0.4 s more) does not."""
    generator, stubber = stubbed(*[("ThrottlingException", 400)] * 3)
    started = time.monotonic()
    with pytest.raises(NotSent, match="ThrottlingException"):
        generator.generate("When?", PASSAGES, PARAMS, started + 1.4)
    assert time.monotonic() - started < 0.6
    assert len(stubber._queue) == 2  # two calls made: the third error and the answer were never asked for
