"""The identical request stream: the same questions, in the same order, for every target.

A target answers one payload and returns the server's `timings_ms`. The HTTP targets post to
/invocations with one keep-alive session per client thread (as a load balancer would); the
in-process target calls RagPipeline.answer directly, which is the floor that serving overhead is
measured against.
"""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass

import requests

from bench.config import QUESTIONS_FILE


def load_questions() -> list[str]:
    """The sample questions about data/sample (tests/data/sample_questions.json)."""
    return [item["question"] for item in json.loads(QUESTIONS_FILE.read_text())]


@dataclass
class Outcome:
    """One request as the client saw it; times are time.monotonic() seconds."""

    started: float
    finished: float
    ok: bool
    status: int  # HTTP status; 0 when no HTTP answer came back
    error_type: str = ""
    timings_ms: dict | None = None
    completion_tokens: int = 0

    @property
    def latency_ms(self) -> float:
        return (self.finished - self.started) * 1000.0

    def to_dict(self, origin: float = 0.0) -> dict:
        data = asdict(self)
        data["started"], data["finished"] = round(self.started - origin, 4), round(self.finished - origin, 4)
        return data


class HttpTarget:
    """A served architecture behind POST /invocations."""

    def __init__(self, name: str, url: str, timeout_s: float):
        self.name, self.url, self.timeout_s = name, url.rstrip("/"), timeout_s
        self._local = threading.local()

    def _session(self) -> requests.Session:
        if not hasattr(self._local, "session"):
            self._local.session = requests.Session()
        return self._local.session

    def call(self, payload: dict) -> Outcome:
        started = time.monotonic()
        try:
            response = self._session().post(f"{self.url}/invocations", json=payload, timeout=self.timeout_s)
        except requests.RequestException as exc:
            return Outcome(started, time.monotonic(), False, 0, type(exc).__name__)
        finished = time.monotonic()
        try:
            body = response.json()
        except ValueError:
            body = {}
        if response.status_code == 200:
            return Outcome(
                started,
                finished,
                True,
                200,
                timings_ms=body.get("timings_ms"),
                completion_tokens=int(body.get("usage", {}).get("completion_tokens", 0)),
            )
        return Outcome(started, finished, False, response.status_code, str(body.get("error_type", "unknown")))


class InProcessTarget:
    """The same RagPipeline the monolith serves, called directly: no HTTP, no Flask, no gunicorn."""

    name = "baseline"

    def __init__(self, pipeline, settings):
        self.pipeline, self.settings = pipeline, settings

    def call(self, payload: dict) -> Outcome:
        from rag.api import QueryRequest
        from rag.errors import RagError

        started = time.monotonic()
        try:
            # The same validation and the same request deadline as /invocations, so both do the same work.
            request = QueryRequest.from_dict(payload, self.settings)
            body = self.pipeline.answer(request, started + self.settings.request_timeout_s)
        except RagError as exc:
            return Outcome(started, time.monotonic(), False, exc.status, exc.error_type)
        return Outcome(
            started,
            time.monotonic(),
            True,
            200,
            timings_ms=body["timings_ms"],
            completion_tokens=body["usage"]["completion_tokens"],
        )


def cpu_stall_ms() -> float | None:
    """Milliseconds that runnable tasks on this machine have waited for a CPU since boot (Linux PSI,
    /proc/pressure/cpu "some"): its growth over a block says how contended the CPUs were meanwhile."""
    try:
        line = open("/proc/pressure/cpu").readline()
    except OSError:
        return None
    return int(line.rsplit("total=", 1)[1]) / 1000.0


def payloads(questions: list[str], count: int, offset: int, max_new_tokens: int, top_k: int) -> list[dict]:
    """`count` requests cycling through the questions from `offset`: every target gets the same list."""
    return [
        {
            "query": questions[(offset + i) % len(questions)],
            "top_k": top_k,
            "max_new_tokens": max_new_tokens,
            "temperature": 0.0,
        }
        for i in range(count)
    ]


def run_block(
    target, requests_list: list[dict], concurrency: int, progress=None, pool: ThreadPoolExecutor | None = None
) -> tuple[list[Outcome], float]:
    """Closed loop: `concurrency` clients take the next request as soon as theirs is answered.

    Pass a long-lived `pool` to reuse client threads between blocks: a new thread would open new
    keep-alive connections, and for the in-process target start a new OpenMP team inside torch.
    Returns the outcomes in submission order and the wall time of the block in seconds.
    """
    lock = threading.Lock()
    queue = iter(enumerate(requests_list))
    outcomes: list[Outcome | None] = [None] * len(requests_list)

    def client() -> None:
        while True:
            with lock:
                item = next(queue, None)
            if item is None:
                return
            index, payload = item
            outcomes[index] = target.call(payload)
            if progress is not None:
                progress.update(1)

    own_pool = pool is None
    pool = pool or ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix=f"client-{target.name}")
    started = time.monotonic()
    try:
        for future in [pool.submit(client) for _ in range(concurrency)]:
            future.result()
    finally:
        if own_pool:
            pool.shutdown()
    return [outcome for outcome in outcomes if outcome is not None], time.monotonic() - started
