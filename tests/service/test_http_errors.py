"""Requests Gunicorn itself refuses, before the app runs, still get the API's JSON errors (both architectures)."""

from __future__ import annotations

import json
import socket
from urllib.parse import urlsplit

import pytest

pytestmark = pytest.mark.slow


def raw_request(url: str, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send bytes no HTTP client library would send; return status, headers and body."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, body


BODY = b'{"query": "tram"}'
CASES = {
    "URI too long": (b"GET /ping?" + b"x" * 10_000 + b" HTTP/1.1\r\nHost: a\r\n\r\n", 414),
    "control byte in custom attributes": (
        b"POST /invocations HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n"
        b"X-Amzn-SageMaker-Custom-Attributes: a\x01b\r\nContent-Length: 17\r\n\r\n" + BODY,
        400,
    ),
    "bad header name": (b"GET /ping HTTP/1.1\r\nHost: a\r\nBad Header: x\r\n\r\n", 400),
    "not HTTP at all": (b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\r\n\r\n", 400),
}


@pytest.mark.parametrize("case", list(CASES))
def test_gunicorn_refusals_are_json(architecture, case):
    request, status = CASES[case]
    code, headers, body = raw_request(architecture.url, request)
    assert code == status, body[:300]
    assert headers["content-type"] == "application/json"
    error = json.loads(body)
    assert (
        set(error) == {"error", "error_type", "request_id"}
        and error["error_type"] == "invalid_request"
        and error["error"]
    )
    assert error["request_id"] == headers["x-request-id"]  # a new id: the request could not be read
