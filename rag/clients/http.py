"""HTTP clients of the internal services, implementing the same Retriever and Generator interfaces.

One pooled keep-alive session per client, explicit connect and read timeouts, and every failure
turned into a RagError: a refused or reset connection is `upstream_unavailable` at once, and a read
that outlives the request deadline is `timeout`.
"""

from __future__ import annotations

import time
from abc import abstractmethod
from collections.abc import Iterator

import requests
from requests.adapters import HTTPAdapter

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


class ServiceClient:
    """A small JSON-over-HTTP client of one internal service."""

    def __init__(self, name: str, base_url: str, pool_size: int = 16, instance_token: str = ""):
        self.name = name
        self.base_url = base_url.rstrip("/")
        self.session = requests.Session()
        self.instance_token = instance_token
        if instance_token:
            self.session.headers[INSTANCE_HEADER] = instance_token
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=pool_size, max_retries=0)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)

    def _own(self, response: requests.Response) -> bool:
        """Whether the answer came from this instance's own service: with an instance token, the service
        says it back (serving/web.py); anything else on that port (another instance's server, another
        program) does not. Without a token there is nothing to check."""
        return not self.instance_token or response.headers.get(INSTANCE_HEADER) == self.instance_token

    def _foreign(self) -> str:
        return (
            f"what answers at {self.base_url} is another instance's server or another program, not this "
            f"instance's {self.name} service (it did not say back the instance token); give each instance its "
            "own internal ports (RAG_VECTOR_URL, RAG_LLM_URL)"
        )

    def ping(self, timeout: float = 0.8) -> dict:
        """The service's /ping body, or {"status": "unavailable"} when it cannot be reached."""
        try:
            response = self.session.get(f"{self.base_url}/ping", timeout=(0.3, timeout))
            if not self._own(response):
                return {"status": "foreign", "error": self._foreign()}
            body = response.json()
            return body if isinstance(body, dict) else {"status": "unavailable"}
        except (requests.RequestException, ValueError):
            return {"status": "unavailable"}

    def post(self, path: str, payload: dict, deadline: float | None, hop: stage | None = None) -> dict:
        """POST JSON and return the JSON answer, or raise the RagError the service reported; `hop` is the
        request's stage for this call, whose span the service's own becomes a child of."""
        response = self._send(path, payload, deadline, False, hop)
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise errors.UpstreamUnavailable(
                f"the {self.name} service answered {response.status_code} without a usable body"
            )
        return body

    def post_lines(self, path: str, payload: dict, deadline: float | None, hop: stage | None = None) -> Iterator[dict]:
        """POST JSON now, so that a refusal raises here, before anything is streamed to the client;
        then iterate over the JSON lines of the answer (an error line raises its RagError)."""
        return self._lines(self._send(path, payload, deadline, True, hop))

    def _lines(self, response: requests.Response) -> Iterator[dict]:
        with response:
            try:
                yield from decode_events(response.iter_lines())
            except requests.RequestException:
                raise errors.UpstreamUnavailable(f"the {self.name} service stopped in the middle of a stream")

    def _send(
        self, path: str, payload: dict, deadline: float | None, stream: bool, hop: stage | None
    ) -> requests.Response:
        remaining = DEFAULT_READ_TIMEOUT_S if deadline is None else deadline - time.monotonic()
        if remaining <= 0:
            raise errors.RequestTimeout(f"the request deadline passed before calling the {self.name} service")
        try:
            response = self.session.post(
                f"{self.base_url}{path}",
                json=payload,
                headers={DEADLINE_HEADER: f"{remaining:.3f}", **context_headers(hop)},
                timeout=(CONNECT_TIMEOUT_S, remaining),
                stream=stream,
            )
        except requests.Timeout as exc:
            if isinstance(exc, requests.ConnectTimeout):
                raise errors.UpstreamUnavailable(
                    f"the {self.name} service at {self.base_url} did not accept a "
                    "connection; it may be restarting, retry shortly"
                )
            raise errors.RequestTimeout(f"the {self.name} service did not answer before the request deadline")
        except requests.RequestException:
            raise errors.UpstreamUnavailable(
                f"the {self.name} service at {self.base_url} is unavailable; it may be restarting, retry shortly"
            )
        if not self._own(response):
            response.close()
            raise errors.UpstreamUnavailable(self._foreign())
        if response.status_code != 200:
            try:
                body = response.json()
            except ValueError:
                body = None
            if isinstance(body, dict) and "error_type" in body:
                raise errors.from_dict(body, response.status_code)
            raise errors.UpstreamUnavailable(
                f"the {self.name} service answered {response.status_code} without a usable body"
            )
        return response


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
