"""The importable client and `make test`/`make invoke`: a local HTTP server, and moto's sagemaker-runtime."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from botocore.exceptions import ClientError

from sagemaker_lifecycle import InvocationError, invoke_endpoint
from sagemaker_lifecycle.client import _runtime_client, model_error
from tests.aws.aws_support import ANSWER, REGION, make


class FakeService(BaseHTTPRequestHandler):
    """Speaks the public /invocations contract (docs/api.md) over real HTTP, with a canned answer."""

    requests: list[tuple[dict, dict]] = []

    def do_POST(self):  # noqa: N802 (http.server's naming)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        FakeService.requests.append((body, dict(self.headers)))
        if self.path != "/invocations":
            self.reply(404, {"error": "no such route", "error_type": "not_found"})
        elif body["query"] == "too long":
            self.reply(400, {"error": "query is longer than 4000 characters", "error_type": "invalid_request"})
        elif body["query"] == "crash":
            self.reply(500, {"error": "internal error", "error_type": "internal"})
        else:
            self.reply(200, ANSWER)

    def reply(self, status: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def service_url():
    FakeService.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeService)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_invoke_endpoint_against_a_local_url(service_url):
    result = invoke_endpoint(
        "Who designed it?", url=service_url + "/", top_k=2, temperature=0.0, custom_attributes="trace=1"
    )
    assert result == ANSWER
    body, headers = FakeService.requests[-1]
    assert body == {"query": "Who designed it?", "top_k": 2, "temperature": 0.0}
    assert headers["X-Amzn-SageMaker-Custom-Attributes"] == "trace=1"


@pytest.mark.parametrize(
    "query, status, error_type", [("too long", 400, "invalid_request"), ("crash", 500, "internal")]
)
def test_error_answers_raise_with_status_and_type(service_url, query, status, error_type):
    with pytest.raises(InvocationError) as raised:
        invoke_endpoint(query, url=service_url)
    assert (raised.value.status, raised.value.error_type) == (status, error_type)
    assert f"answered {status} [{error_type}]" in str(raised.value)


def test_unreachable_server_and_empty_query():
    with pytest.raises(InvocationError, match="cannot reach http://127.0.0.1:9/invocations"):
        invoke_endpoint("q", url="http://127.0.0.1:9", timeout=2)
    with pytest.raises(InvocationError, match="the query is empty"):
        invoke_endpoint("   ", url="http://127.0.0.1:9")


def test_make_invoke_and_make_test_with_url(aws_env, service_url):
    for target in ("invoke", "test"):
        result = make(target, aws_env, f"URL={service_url}", 'Q=What is "Velmora"?')
        assert result.returncode == 0, result.stderr
        assert 'Q: What is "Velmora"?' in result.stdout and ANSWER["answer"] in result.stdout
        assert "1. velmora.md#0 (0.830)" in result.stdout
        assert FakeService.requests[-1][0] == {"query": 'What is "Velmora"?'}
    failed = make("invoke", aws_env, f"URL={service_url}", "Q=crash")
    assert failed.returncode != 0 and "answered 500 [internal]: internal error" in failed.stderr


def test_invoke_endpoint_through_sagemaker_runtime(moto, aws_env, monkeypatch):
    for key in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(key, aws_env[key])
    _runtime_client.cache_clear()
    try:
        moto.queue_invocation_results(json.dumps(ANSWER), "plain text, not JSON")
        assert invoke_endpoint("first", endpoint_name="rag-monolito", region=REGION) == ANSWER
        with pytest.raises(InvocationError, match="endpoint rag-monolito answered .* that is not JSON"):
            invoke_endpoint("second", endpoint_name="rag-monolito", region=REGION)
    finally:
        _runtime_client.cache_clear()


def test_model_error_carries_the_container_error():
    """SageMaker wraps a container's 4xx/5xx in ModelError; moto never does, so the shape is built here."""
    exc = ClientError(
        {
            "Error": {"Code": "ModelError", "Message": "Received client error (400) from primary"},
            "OriginalStatusCode": 400,
            "OriginalMessage": json.dumps({"error": "unknown field 'topk'", "error_type": "invalid_request"}),
            "ResponseMetadata": {"HTTPStatusCode": 424},
        },
        "InvokeEndpoint",
    )
    error = model_error(exc, "endpoint rag-monolito")
    assert (error.status, error.error_type) == (400, "invalid_request")
    assert str(error) == "endpoint rag-monolito answered 400 [invalid_request]: unknown field 'topk'"
