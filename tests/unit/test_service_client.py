"""The internal services' HTTP client (rag/clients/http.py) against a real HTTP/1.1 server on loopback:
keep-alive reuse, a connection the server closed meanwhile, refused and slow services, error bodies,
foreign servers and streams."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from rag import errors
from rag.clients.http import ServiceClient
from rag.clients.protocol import DEADLINE_HEADER, INSTANCE_HEADER
from tests.support import free_port

TOKEN = "this-instance"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _send(self, status: int, body: bytes, echo: bool = True, close: bool = False, chunks=None):
        self.server.requests.append((self.path, self.client_address[1]))  # before the client has its answer
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        if echo and self.headers.get(INSTANCE_HEADER) == TOKEN:
            self.send_header(INSTANCE_HEADER, TOKEN)
        if close:
            self.send_header("Connection", "close")
        if chunks is None:
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        else:
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for chunk in chunks:
                self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                self.wfile.flush()
                time.sleep(0.01)
            self.wfile.write(b"0\r\n\r\n")

    def do_GET(self):
        self._send(200, b'{"status": "ready"}', echo=self.server.echo)

    def do_POST(self):
        payload = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.deadlines.append(float(self.headers[DEADLINE_HEADER]))
        if self.path == "/echo":
            self._send(200, json.dumps({"got": payload}).encode(), echo=self.server.echo)
        elif self.path == "/close":
            self._send(200, b'{"ok": true}', close=True)
            self.close_connection = True
        elif self.path == "/drop":  # as a keep-alive that runs out: closed later, without saying so
            self._send(200, b'{"ok": true}')
            self.close_connection = True
        elif self.path == "/slow":
            time.sleep(1.0)
            self._send(200, b'{"ok": true}')
        elif self.path == "/busy":
            self._send(429, json.dumps({"error": "busy", "error_type": "overloaded"}).encode())
        elif self.path == "/broken":
            self._send(502, b"<html>bad gateway</html>")
        elif self.path == "/stream":
            lines = [json.dumps({"text": str(i)}).encode() + b"\n" for i in range(20)]
            self._send(200, b"", chunks=[*lines, json.dumps({"answer": "done"}).encode() + b"\n"])


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    httpd.daemon_threads = True
    httpd.requests, httpd.deadlines, httpd.echo = [], [], True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def client_of(httpd, token: str = TOKEN) -> ServiceClient:
    return ServiceClient("vector", f"http://127.0.0.1:{httpd.server_address[1]}", instance_token=token)


def test_answers_come_back_over_one_kept_alive_connection(server):
    client = client_of(server)
    for i in range(5):
        assert client.post("/echo", {"query": f"q{i}", "ü": "é"}, time.monotonic() + 10) == {
            "got": {"query": f"q{i}", "ü": "é"}
        }
    assert len({port for _, port in server.requests}) == 1
    assert 9.0 < server.deadlines[0] <= 10.0  # the time left is sent along


@pytest.mark.parametrize("route", ["/close", "/drop"])
def test_a_connection_the_server_closed_is_replaced(server, route):
    client = client_of(server)
    client.post("/echo", {}, None)
    client.post(route, {}, None)  # the server closes this one after answering (saying so, or not)
    time.sleep(0.1)
    assert client.post("/echo", {"again": 1}, None) == {"got": {"again": 1}}
    ports = [port for _, port in server.requests]
    assert ports[0] == ports[1] != ports[2]


def test_a_service_that_is_not_listening_is_unavailable():
    client = ServiceClient("llm", f"http://127.0.0.1:{free_port()}")
    with pytest.raises(errors.UpstreamUnavailable, match="the llm service at .* is unavailable"):
        client.post("/generate", {}, time.monotonic() + 5)
    assert client.ping() == {"status": "unavailable"}


def test_a_slow_answer_times_out_at_the_deadline(server):
    client = client_of(server)
    started = time.monotonic()
    with pytest.raises(errors.RequestTimeout):
        client.post("/slow", {}, time.monotonic() + 0.3)
    assert time.monotonic() - started < 0.9
    with pytest.raises(errors.RequestTimeout, match="deadline passed before"):
        client.post("/echo", {}, time.monotonic() - 1)


def test_error_bodies_become_their_errors(server):
    client = client_of(server)
    with pytest.raises(errors.RagError) as refused:
        client.post("/busy", {}, None)
    assert refused.value.status == 429 and refused.value.error_type == "overloaded"
    with pytest.raises(errors.UpstreamUnavailable, match="answered 502 without a usable body"):
        client.post("/broken", {}, None)
    assert client.post("/echo", {"still": "fine"}, None) == {"got": {"still": "fine"}}


def test_a_server_that_does_not_say_the_token_back_is_foreign(server):
    server.echo = False
    client = client_of(server)
    with pytest.raises(errors.UpstreamUnavailable, match="did not say back the instance token"):
        client.post("/echo", {}, None)
    assert client.ping()["status"] == "foreign"
    assert client_of(server, token="").ping() == {"status": "ready"}  # no token: nothing to check


def test_a_stream_is_read_line_by_line_and_its_connection_reused(server):
    client = client_of(server)
    events = list(client.post_lines("/stream", {}, time.monotonic() + 10))
    assert [e.get("text") for e in events[:-1]] == [str(i) for i in range(20)] and events[-1] == {"answer": "done"}
    client.post("/echo", {}, None)
    assert len({port for _, port in server.requests}) == 1


def test_a_stream_left_early_does_not_give_its_connection_back(server):
    client = client_of(server)
    events = client.post_lines("/stream", {}, time.monotonic() + 10)
    assert next(events) == {"text": "0"}
    events.close()  # the caller's client went away
    assert client.pool._idle == []
    client.post("/echo", {}, None)
    time.sleep(0.3)  # the stream's handler finishes writing into the closed connection
    assert len({port for path, port in server.requests if path == "/echo"}) == 1
    assert {port for path, port in server.requests if path == "/echo"} != {
        port for path, port in server.requests if path == "/stream"
    }
