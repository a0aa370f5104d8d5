"""A local stand-in for SageMaker Runtime, so the split topology runs on one machine: it forwards
`POST /endpoints/<name>/invocations(-response-stream)` to the container serving <name>, with the
runtime's semantics as boto3 sees them:

- a request body over 6 MB is refused (ValidationError) before the container sees it;
- the container's non-2xx answer becomes a ModelError (HTTP 424) carrying OriginalStatusCode and
  OriginalMessage; a container that does not answer is a ModelError with status 0, as SageMaker reports it;
- a response stream is re-encoded as AWS event-stream messages (PayloadPart), and a container that breaks
  off mid-stream ends it with a ModelStreamError event (StreamBroken);
- PayloadParts follow the container's own chunks, which the real runtime does not promise: `part_sizes`
  (`--part-sizes 1,2,3,5,7`) re-cuts every stream into parts of those byte sizes, cycled, to test that a
  client reassembles lines cut anywhere, even inside a UTF-8 character;
- X-Amzn-SageMaker-Custom-Attributes is forwarded both ways, and nothing else of the caller's headers.

    python -m sagemaker_lifecycle.local_runtime --port 9000 rag-split-llm=http://127.0.0.1:8081

Point boto3 at it with AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME=http://127.0.0.1:9000 (any credentials).
The tests and the bench start it in-process (`LocalRuntime(...).start()`).
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
import struct
import threading
import zlib
from collections.abc import Iterable, Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests

MAX_PAYLOAD_BYTES = 6 * 1024 * 1024  # SageMaker's real-time limit
INVOCATION_TIMEOUT_S = 60.0  # SageMaker's own limit for a container's answer
ACCOUNT = "123456789012"
CUSTOM_ATTRIBUTES = "X-Amzn-SageMaker-Custom-Attributes"
_ROUTE = re.compile(r"^/endpoints/([A-Za-z0-9-]+)/(invocations|invocations-response-stream)$")


def event_message(headers: dict[str, str], payload: bytes) -> bytes:
    """One AWS event-stream message: prelude (lengths and CRC), string headers, payload, message CRC."""
    encoded = b"".join(
        bytes([len(name)]) + name.encode() + b"\x07" + struct.pack(">H", len(value)) + value.encode()
        for name, value in headers.items()
    )
    prelude = struct.pack(">II", 16 + len(encoded) + len(payload), len(encoded))
    message = prelude + struct.pack(">I", zlib.crc32(prelude)) + encoded + payload
    return message + struct.pack(">I", zlib.crc32(message))


def recut(parts: Iterable[bytes], sizes: Sequence[int]) -> Iterator[bytes]:
    """The same bytes in pieces of `sizes` bytes (cycled), whatever pieces they came in; unchanged without sizes."""
    if not sizes:
        yield from parts
        return
    if min(sizes) < 1:
        raise ValueError(f"part sizes must be at least 1 byte, got {tuple(sizes)}")
    cycle, pending = itertools.cycle(sizes), b""
    size = next(cycle)
    for part in parts:
        pending += part
        while len(pending) >= size:
            yield pending[:size]
            pending, size = pending[size:], next(cycle)
    if pending:
        yield pending


class LocalRuntime:
    """The stand-in server; `endpoints` maps endpoint names to container base URLs (changeable live)."""

    def __init__(self, endpoints: dict[str, str], host: str = "127.0.0.1", port: int = 0):
        self.endpoints = dict(endpoints)
        self.throttle = 0  # the next N invocations are refused with ThrottlingException (tests of retries)
        self.part_sizes: tuple[int, ...] = ()  # re-cut response streams into PayloadParts of these sizes, cycled
        self.invocations = 0
        self._local = threading.local()
        self.server = ThreadingHTTPServer((host, port), _handler(self))
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, name="local-runtime", daemon=True)

    def session(self) -> requests.Session:
        """This thread's keep-alive session to the containers (SageMaker keeps its connections open too)."""
        if not hasattr(self._local, "session"):
            self._local.session = requests.Session()
        return self._local.session

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> LocalRuntime:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _handler(runtime: LocalRuntime):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, and chunked response streams

        def log_message(self, *args):  # quiet: the containers log every request themselves
            pass

        def do_POST(self):
            try:
                self._invoke()
            except (BrokenPipeError, ConnectionResetError):  # the caller gave up (its own timeout)
                self.close_connection = True

        def _invoke(self):
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            match = _ROUTE.match(self.path.split("?")[0])
            if not match:
                return self._error(404, "UnknownOperationException", f"no operation at {self.path}")
            name, route = match.groups()
            runtime.invocations += 1
            if name not in runtime.endpoints:
                return self._error(400, "ValidationError", f"Endpoint {name} of account {ACCOUNT} not found.")
            if len(body) > MAX_PAYLOAD_BYTES:
                return self._error(
                    400, "ValidationError", f"Request payload of {len(body)} bytes exceeds the 6 MB limit"
                )
            if runtime.throttle > 0:
                runtime.throttle -= 1
                return self._error(400, "ThrottlingException", "Rate exceeded")
            headers = {
                key: self.headers[key] for key in ("Content-Type", "Accept", CUSTOM_ATTRIBUTES) if self.headers.get(key)
            }
            stream = route == "invocations-response-stream"
            try:
                answer = runtime.session().post(
                    f"{runtime.endpoints[name]}/{route}",
                    data=body,
                    headers=headers,
                    timeout=(2.0, INVOCATION_TIMEOUT_S),
                    stream=stream,
                )
            except requests.RequestException:
                return self._model_error(
                    name, 0, f"Amazon SageMaker could not get a response from the {name} endpoint."
                )
            with answer:
                if not 200 <= answer.status_code < 300:
                    return self._model_error(name, answer.status_code, answer.text)
                if stream:
                    return self._relay_stream(answer)
                self._send(
                    200,
                    answer.content,
                    answer.headers.get("Content-Type", "application/json"),
                    self._passed_back(answer),
                )

        def _passed_back(self, answer) -> dict:
            extra = {"x-Amzn-Invoked-Production-Variant": "AllTraffic"}
            if answer.headers.get(CUSTOM_ATTRIBUTES):
                extra[CUSTOM_ATTRIBUTES] = answer.headers[CUSTOM_ATTRIBUTES]
            return extra

        def _relay_stream(self, answer) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/vnd.amazon.eventstream")
            self.send_header("X-Amzn-SageMaker-Content-Type", answer.headers.get("Content-Type", ""))
            for key, value in self._passed_back(answer).items():
                self.send_header(key, value)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            try:
                for part in recut(answer.iter_content(chunk_size=None), runtime.part_sizes):
                    self._chunk(
                        event_message(
                            {
                                ":event-type": "PayloadPart",
                                ":content-type": "application/octet-stream",
                                ":message-type": "event",
                            },
                            part,
                        )
                    )
            except requests.RequestException:
                error = json.dumps({"Message": "the model container closed the stream", "ErrorCode": "StreamBroken"})
                self._chunk(
                    event_message(
                        {
                            ":exception-type": "ModelStreamError",
                            ":content-type": "application/json",
                            ":message-type": "exception",
                        },
                        error.encode(),
                    )
                )
            self._chunk(b"")

        def _chunk(self, data: bytes) -> None:
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()

        def _model_error(self, name: str, status: int, original: str) -> None:
            kind = "client" if 400 <= status < 500 else "server"
            group = f"/aws/sagemaker/Endpoints/{name}"
            body = {
                "ErrorCode": f"{kind.upper()}_ERROR_FROM_MODEL",
                "OriginalStatusCode": status,
                "OriginalMessage": original,
                "LogStreamArn": f"arn:aws:logs:us-east-1:{ACCOUNT}:log-group:{group}",
                "Message": f'Received {kind} error ({status}) from primary with message "{original}". '
                f"See the log group {group} for more information.",
            }
            self._send(424, json.dumps(body).encode(), "application/json", {"x-amzn-ErrorType": "ModelError"})

        def _error(self, status: int, code: str, message: str) -> None:
            self._send(
                status, json.dumps({"message": message}).encode(), "application/json", {"x-amzn-ErrorType": code}
            )

        def _send(self, status: int, body: bytes, content_type: str, headers: dict) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for key, value in headers.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(body)

    return Handler


def _part_sizes(text: str) -> tuple[int, ...]:
    sizes = tuple(int(size) for size in text.split(","))
    if min(sizes) < 1:
        raise ValueError("each part size must be at least 1 byte")
    return sizes


def main(argv: list[str] | None = None) -> int:
    """Serve the stand-in in the foreground until interrupted."""
    parser = argparse.ArgumentParser(
        prog="python -m sagemaker_lifecycle.local_runtime", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument(
        "--part-sizes",
        type=_part_sizes,
        default=(),
        help="re-cut response streams into PayloadParts of these byte sizes, cycled (e.g. 1,2,3,5,7)",
    )
    parser.add_argument(
        "endpoints", nargs="+", metavar="NAME=URL", help="an endpoint name and its container's base URL"
    )
    args = parser.parse_args(argv)
    endpoints = dict(item.split("=", 1) for item in args.endpoints)
    runtime = LocalRuntime(endpoints, args.host, args.port)
    runtime.part_sizes = args.part_sizes
    print(f"SageMaker Runtime stand-in on {runtime.url}: {endpoints}", flush=True)
    try:
        runtime.server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
