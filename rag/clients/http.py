"""HTTP clients of the internal services, implementing the same Retriever and Generator interfaces.

One pool of keep-alive connections per client (the standard library's http.client), explicit connect
and read timeouts, and every failure turned into a RagError: a refused or reset connection is
`upstream_unavailable` at once, and a read that outlives the request deadline is `timeout`.
"""

from __future__ import annotations

import http.client
import json
import select
import socket
import threading
import time
from abc import abstractmethod
from collections.abc import Iterator
from urllib.parse import urlsplit

from rag import errors
from rag.clients.protocol import DEADLINE_HEADER, INSTANCE_HEADER, REQUEST_ID_HEADER, decode_events
from rag.telemetry import request_id, stage
from rag.types import Answer, GenerationParams, Generator, Passage, Retriever

CONNECT_TIMEOUT_S = 1.0  # loopback: a service that does not accept within 1 s is down or restarting
DEFAULT_READ_TIMEOUT_S = 55.0


def context_headers(hop: stage | None = None) -> dict[str, str]:
    """What a call to another service carries of this request: its id, and the trace context naming the
    hop's span as the parent (when tracing is on)."""
    headers = hop.headers() if hop is not None else {}
    current = request_id()
    if current is not None:
        headers[REQUEST_ID_HEADER] = current
    return headers


class _NotAccepted(Exception):
    """The service did not accept a connection within the connect timeout."""


class _Reply:
    """One answer of a service: status, headers, and the open response (read it, or close it)."""

    def __init__(self, response: http.client.HTTPResponse, connection: http.client.HTTPConnection, pool: _Pool):
        self.response, self.connection, self.pool = response, connection, pool
        self.status_code = response.status

    def header(self, name: str) -> str | None:
        return self.response.getheader(name)

    def json(self):
        """The whole body as JSON (ValueError when it is not); the connection goes back to the pool."""
        try:
            body = self.response.read()
        except (OSError, http.client.HTTPException):
            self.close()
            raise
        self.release()
        return json.loads(body)

    def lines(self) -> Iterator[bytes]:
        """The body's lines as they arrive; the connection goes back to the pool only when all were read."""
        try:
            while line := self.response.readline():
                yield line
        except BaseException:
            self.close()  # not read to the end (client gone, error): the connection cannot be reused
            raise
        self.release()

    def release(self) -> None:
        if self.response.will_close:
            self.connection.close()
        else:
            self.pool.put(self.connection)

    def close(self) -> None:
        self.response.close()
        self.connection.close()


class _Pool:
    """Idle keep-alive connections to one service, the most recently used first (at most `size` kept)."""

    def __init__(self, host: str, port: int, https: bool, size: int):
        self.host, self.port, self.https, self.size = host, port, https, size
        self._idle: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()

    def get(self, connect_timeout: float) -> tuple[http.client.HTTPConnection, bool]:
        """A connection and whether it was reused; an idle one the server has closed meanwhile (its
        keep-alive ran out) is dropped, as urllib3 does."""
        while True:
            with self._lock:
                connection = self._idle.pop() if self._idle else None
            if connection is None:
                break
            if connection.sock is not None and not _readable(connection.sock):
                return connection, True
            connection.close()
        kind = http.client.HTTPSConnection if self.https else http.client.HTTPConnection
        connection = kind(self.host, self.port, timeout=connect_timeout)
        connection.connect()
        connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return connection, False

    def put(self, connection: http.client.HTTPConnection) -> None:
        with self._lock:
            if len(self._idle) < self.size:
                self._idle.append(connection)
                return
        connection.close()


def _readable(sock: socket.socket) -> bool:
    """An idle keep-alive socket that is readable has been closed by the server (or holds garbage). poll,
    not select: a busy process's descriptors can be past select's 1024."""
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(0))


class ServiceClient:
    """A small JSON-over-HTTP client of one internal service, on the standard library's http.client: a
    loopback hop is mostly Python, and this takes half the time requests did per call (0.84 against 1.75 ms
    on loopback; the served hops are measured by `make bench-hops`)."""

    def __init__(self, name: str, base_url: str, pool_size: int = 16, instance_token: str = ""):
        self.name = name
        self.base_url = base_url.rstrip("/")
        parts = urlsplit(self.base_url)
        https = parts.scheme == "https"
        self.prefix = parts.path
        self.pool = _Pool(parts.hostname or "127.0.0.1", parts.port or (443 if https else 80), https, pool_size)
        self.instance_token = instance_token
        self.headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if instance_token:
            self.headers[INSTANCE_HEADER] = instance_token

    def _own(self, reply: _Reply) -> bool:
        """Whether the answer came from this instance's own service: with an instance token, the service
        says it back (serving/web.py); anything else on that port (another instance's server, another
        program) does not. Without a token there is nothing to check."""
        return not self.instance_token or reply.header(INSTANCE_HEADER) == self.instance_token

    def _foreign(self) -> str:
        return (
            f"what answers at {self.base_url} is another instance's server or another program, not this "
            f"instance's {self.name} service (it did not say back the instance token); give each instance its "
            "own internal ports (RAG_VECTOR_URL, RAG_LLM_URL)"
        )

    def _request(
        self, method: str, path: str, body: bytes | None, headers: dict, connect_timeout: float, read_timeout: float
    ) -> _Reply:
        """Send one request and read the status line and headers. A reused connection that turns out to
        be closed before anything came back is replaced once by a fresh one (the request never reached
        the service); every other failure is raised as the socket or http.client reported it."""
        for attempt in (0, 1):
            try:
                connection, reused = self.pool.get(connect_timeout)
            except TimeoutError as exc:
                raise _NotAccepted from exc
            try:
                connection.sock.settimeout(read_timeout)
                connection.request(method, self.prefix + path, body=body, headers={**self.headers, **headers})
                return _Reply(connection.getresponse(), connection, self.pool)
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                connection.close()
                if not reused or attempt:
                    raise
            except BaseException:
                connection.close()
                raise
        raise AssertionError("unreachable")

    def ping(self, timeout: float = 0.8) -> dict:
        """The service's /ping body, or {"status": "unavailable"} when it cannot be reached."""
        try:
            reply = self._request("GET", "/ping", None, {}, 0.3, timeout)
        except (OSError, http.client.HTTPException):
            return {"status": "unavailable"}
        try:
            if not self._own(reply):
                reply.close()
                return {"status": "foreign", "error": self._foreign()}
            body = reply.json()
            return body if isinstance(body, dict) else {"status": "unavailable"}
        except (OSError, http.client.HTTPException, ValueError):
            return {"status": "unavailable"}

    def post(self, path: str, payload: dict, deadline: float | None, hop: stage | None = None) -> dict:
        """POST JSON and return the JSON answer, or raise the RagError the service reported; `hop` is the
        request's stage for this call, whose span the service's own becomes a child of."""
        reply = self._send(path, payload, deadline, hop)
        try:
            body = reply.json()
        except TimeoutError:
            raise errors.RequestTimeout(f"the {self.name} service did not answer before the request deadline")
        except (OSError, http.client.HTTPException):
            raise errors.UpstreamUnavailable(f"the {self.name} service stopped in the middle of its answer")
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise errors.UpstreamUnavailable(
                f"the {self.name} service answered {reply.status_code} without a usable body"
            )
        return body

    def post_lines(self, path: str, payload: dict, deadline: float | None, hop: stage | None = None) -> Iterator[dict]:
        """POST JSON now, so that a refusal raises here, before anything is streamed to the client;
        then iterate over the JSON lines of the answer (an error line raises its RagError)."""
        return self._lines(self._send(path, payload, deadline, hop))

    def _lines(self, reply: _Reply) -> Iterator[dict]:
        done = False
        try:
            yield from decode_events(reply.lines())
            done = True
        except TimeoutError:
            raise errors.RequestTimeout(f"the {self.name} service did not finish before the request deadline")
        except (OSError, http.client.HTTPException):
            raise errors.UpstreamUnavailable(f"the {self.name} service stopped in the middle of a stream")
        finally:
            if not done:  # left early (client gone, an error line): the connection is not reused
                reply.close()

    def _send(self, path: str, payload: dict, deadline: float | None, hop: stage | None) -> _Reply:
        remaining = DEFAULT_READ_TIMEOUT_S if deadline is None else deadline - time.monotonic()
        if remaining <= 0:
            raise errors.RequestTimeout(f"the request deadline passed before calling the {self.name} service")
        body = json.dumps(payload, ensure_ascii=False).encode()
        headers = {DEADLINE_HEADER: f"{remaining:.3f}", **context_headers(hop)}
        try:
            reply = self._request("POST", path, body, headers, CONNECT_TIMEOUT_S, remaining)
        except _NotAccepted:
            raise errors.UpstreamUnavailable(
                f"the {self.name} service at {self.base_url} did not accept a connection; it may be restarting, "
                "retry shortly"
            )
        except TimeoutError:
            raise errors.RequestTimeout(f"the {self.name} service did not answer before the request deadline")
        except (OSError, http.client.HTTPException):
            raise errors.UpstreamUnavailable(
                f"the {self.name} service at {self.base_url} is unavailable; it may be restarting, retry shortly"
            )
        if not self._own(reply):
            reply.close()
            raise errors.UpstreamUnavailable(self._foreign())
        if reply.status_code != 200:
            try:
                body = reply.json()
            except (OSError, http.client.HTTPException, ValueError):
                body = None
            if isinstance(body, dict) and "error_type" in body:
                raise errors.from_dict(body, reply.status_code)
            raise errors.UpstreamUnavailable(
                f"the {self.name} service answered {reply.status_code} without a usable body"
            )
        return reply


class RemoteRetriever(Retriever):
    """The vector service behind `POST /retrieve`."""

    def __init__(self, base_url: str, instance_token: str = ""):
        self.client = ServiceClient("vector", base_url, instance_token=instance_token)
        self.model_name = "unknown"

    def retrieve(self, query, top_k, deadline=None):
        with stage("hop_vector", client=True) as hop:
            body = self.client.post("/retrieve", {"query": query, "top_k": top_k}, deadline, hop)
        self.model_name = body.get("model", self.model_name)
        return [Passage.from_dict(item) for item in body["passages"]]


class LlmServiceGenerator(Generator):
    """A Generator answered by the LLM service's contract (`/generate` and its stream), wherever the
    service runs: subclasses only carry a JSON request there and the JSON (lines) back."""

    name = "unknown"

    @abstractmethod
    def _post(self, payload: dict, deadline: float | None, hop: stage) -> dict:
        """Send one generation request (`hop`: its stage, for the trace context); return the answer's JSON
        body or raise its RagError."""

    @abstractmethod
    def _post_lines(self, payload: dict, deadline: float | None, hop: stage) -> Iterator[dict]:
        """Send one streaming request now (a refusal raises here); return an iterator of its events."""

    def generate(self, query, passages, params: GenerationParams, deadline=None):
        with stage("hop_llm", client=True) as hop:
            return self._answer(self._post(self._payload(query, passages, params), deadline, hop))

    def stream(self, query, passages, params: GenerationParams, deadline=None):
        # Not a generator function: the request goes out now, so a service that is down is refused
        # with a JSON 503 before the first event, as in the monolith.
        hop = stage("hop_llm", client=True).begin()  # it ends with the stream
        try:
            events = self._post_lines(self._payload(query, passages, params), deadline, hop)
        except BaseException as exc:
            hop.end(exc)
            raise
        return self._relay(events, hop)

    def _relay(self, events: Iterator[dict], hop: stage) -> Iterator[str | Answer]:
        try:
            for event in events:
                yield event["text"] if "text" in event else self._answer(event)
        except BaseException as exc:
            hop.end(exc)
            raise
        hop.end()

    @staticmethod
    def _payload(query: str, passages: list[Passage], params: GenerationParams) -> dict:
        return {
            "query": query,
            "passages": [p.to_dict() for p in passages],
            "max_new_tokens": params.max_new_tokens,
            "temperature": params.temperature,
        }

    def _answer(self, body: dict) -> Answer:
        self.name = body.get("model", self.name)
        usage = body.get("usage", {})
        return Answer(body["answer"], int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0)))


class RemoteGenerator(LlmServiceGenerator):
    """The LLM service behind `POST /generate` on loopback (the one-container microservices)."""

    def __init__(self, base_url: str, instance_token: str = ""):
        self.client = ServiceClient("llm", base_url, instance_token=instance_token)

    def ping(self) -> dict:
        """The LLM service's /ping body."""
        return self.client.ping()

    def _post(self, payload, deadline, hop):
        return self.client.post("/generate", payload, deadline, hop)

    def _post_lines(self, payload, deadline, hop):
        return self.client.post_lines("/generate-stream", payload, deadline, hop)
