"""The identical request stream, the targets that answer it, and the one closed-loop client loop.

A target answers one payload with an `Outcome`: the client's view (times, status) and the server's
`timings_ms`. `HttpTarget` posts to /invocations with one keep-alive session per client thread (as a load
balancer would); `InProcessTarget` calls RagPipeline.answer directly, the floor that serving overhead is
measured against. `ClientLoop` is every benchmark's load: N clients, each sending its next request as
soon as it has an answer, until the requests run out, a time is up or a stop event is set.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import requests

from bench.core.config import QUESTIONS_FILE

CONNECT_TIMEOUT_S = 5.0  # loopback connects at once; a server that accepts nothing within this is down


def load_questions() -> list[str]:
    """The sample questions about data/sample (tests/data/sample_questions.json)."""
    return [item["question"] for item in json.loads(QUESTIONS_FILE.read_text())]


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
    error: str = field(default="", repr=False)  # the error's message (not stored in results files)
    body: dict | None = field(default=None, repr=False)  # the whole answer of a 200 (not stored either)

    @property
    def latency_ms(self) -> float:
        return (self.finished - self.started) * 1000.0

    def to_dict(self, origin: float = 0.0) -> dict:
        data = asdict(self)
        del data["error"], data["body"]
        data["started"], data["finished"] = round(self.started - origin, 4), round(self.finished - origin, 4)
        return data


def _answered(started: float, body: dict) -> Outcome:
    return Outcome(
        started,
        time.monotonic(),
        True,
        200,
        timings_ms=body.get("timings_ms"),
        completion_tokens=int(body.get("usage", {}).get("completion_tokens", 0)),
        body=body,
    )


class HttpTarget:
    """A served architecture (either one) behind POST /invocations."""

    def __init__(self, url: str, timeout_s: float = 120.0, name: str | None = None):
        self.url, self.timeout_s = url.rstrip("/"), timeout_s
        self.name = name or self.url
        self._local = threading.local()

    def _session(self) -> requests.Session:
        if not hasattr(self._local, "session"):
            self._local.session = requests.Session()
        return self._local.session

    def call(self, payload: dict) -> Outcome:
        """POST one payload; never raises for a failed request (the Outcome says what went wrong)."""
        started = time.monotonic()
        try:
            response = self._session().post(
                f"{self.url}/invocations", json=payload, timeout=(CONNECT_TIMEOUT_S, self.timeout_s)
            )
        except requests.RequestException as exc:
            return Outcome(
                started, time.monotonic(), False, 0, type(exc).__name__, error=f"connection: {type(exc).__name__}"
            )
        try:
            body = response.json()
        except ValueError:
            body = {}
        if response.status_code == 200:
            return _answered(started, body)
        return Outcome(
            started,
            time.monotonic(),
            False,
            response.status_code,
            str(body.get("error_type", "unknown")),
            error=str(body.get("error", response.text[:200])),
        )


class InProcessTarget:
    """The same RagPipeline the monolith serves, called directly: no HTTP, no Flask, no gunicorn."""

    def __init__(self, pipeline, settings, name: str = "baseline"):
        self.pipeline, self.settings, self.name = pipeline, settings, name

    def call(self, payload: dict) -> Outcome:
        """Answer one payload as /invocations would: the same validation and the same request deadline."""
        from rag.api import QueryRequest
        from rag.errors import RagError

        started = time.monotonic()
        try:
            request = QueryRequest.from_dict(payload, self.settings)
            body = self.pipeline.answer(request, started + self.settings.request_timeout_s)
        except RagError as exc:
            return Outcome(started, time.monotonic(), False, exc.status, exc.error_type, error=exc.message)
        return _answered(started, body)


def retry_after_429(outcome: Outcome) -> float:
    """A well-behaved client's pause: the Retry-After the server sends with a 429, else none."""
    from rag.errors import Overloaded

    return Overloaded.retry_after_s if outcome.status == 429 else 0.0


def pause_after_failure(seconds: float) -> Callable[[Outcome], float]:
    """A pause after every failed request: bounded load while a service is down."""
    return lambda outcome: 0.0 if outcome.ok else seconds


class ClientLoop:
    """`clients` closed-loop clients: each takes the next request as soon as its last one is answered.

    Request k is `requests_list[k % len(requests_list)]`. The loop ends when `limit` requests have been
    sent (default: the list once), at `until` (a time.monotonic() value) or when `stop` is set; no
    request begins after that. `pause(outcome)` is how long a client waits before its next request.
    `in_flight` counts requests sent and not yet answered (read it under `lock`).
    """

    def __init__(
        self,
        target,
        requests_list: list[dict],
        clients: int,
        *,
        limit: int | None = None,
        until: float | None = None,
        stop: threading.Event | None = None,
        pause: Callable[[Outcome], float] | None = None,
        progress=None,
    ):
        self.target, self.requests_list, self.clients = target, requests_list, clients
        self.limit = len(requests_list) if limit is None and until is None and stop is None else limit
        self.until, self.stop = until, stop or threading.Event()
        self.pause, self.progress = pause, progress
        self.lock = threading.Lock()
        self.in_flight = 0
        self.outcomes: list[Outcome] = []  # in the order they were answered
        self._sent: list[tuple[int, Outcome]] = []
        self._next = 0

    def _take(self) -> int | None:
        with self.lock:  # checked and counted together, so that once stopped no request begins
            if self.stop.is_set() or (self.until is not None and time.monotonic() >= self.until):
                return None
            if self.limit is not None and self._next >= self.limit:
                return None
            index, self._next = self._next, self._next + 1
            self.in_flight += 1
            return index

    def client(self) -> None:
        """One client's loop (runs on the calling thread)."""
        while (index := self._take()) is not None:
            outcome = self.target.call(self.requests_list[index % len(self.requests_list)])
            with self.lock:
                self.in_flight -= 1
                self.outcomes.append(outcome)
                self._sent.append((index, outcome))
            if self.progress is not None:
                self.progress.update(1)
            wait = self.pause(outcome) if self.pause is not None else 0.0
            if wait > 0:
                left = None if self.until is None else max(0.0, self.until - time.monotonic())
                self.stop.wait(wait if left is None else min(wait, left))

    def in_order(self) -> list[Outcome]:
        """The outcomes in the order their requests were sent."""
        with self.lock:
            return [outcome for _, outcome in sorted(self._sent, key=lambda pair: pair[0])]

    def run(self, pool: ThreadPoolExecutor | None = None) -> tuple[list[Outcome], float]:
        """Run every client to the end; the outcomes in sending order and the wall time in seconds.

        Pass a long-lived `pool` to reuse client threads between blocks: a new thread would open new
        keep-alive connections, and for the in-process target start a new OpenMP team inside torch.
        """
        own_pool = pool is None
        pool = pool or ThreadPoolExecutor(self.clients, thread_name_prefix=f"client-{self.target.name}")
        started = time.monotonic()
        try:
            for future in [pool.submit(self.client) for _ in range(self.clients)]:
                future.result()
        finally:
            if own_pool:
                pool.shutdown()
        return self.in_order(), time.monotonic() - started

    def start(self, name: str = "client") -> list[threading.Thread]:
        """Run the clients on daemon threads of their own, in the background; join the threads returned."""
        threads = [threading.Thread(target=self.client, name=f"{name}-{n}", daemon=True) for n in range(self.clients)]
        for thread in threads:
            thread.start()
        return threads


def run_block(
    target, requests_list: list[dict], concurrency: int, progress=None, pool: ThreadPoolExecutor | None = None
) -> tuple[list[Outcome], float]:
    """Every request of the list once, by `concurrency` closed-loop clients (ClientLoop.run)."""
    return ClientLoop(target, requests_list, concurrency, progress=progress).run(pool)


def poll_ping(url: str, stop: threading.Event, seen: list, interval_s: float = 0.25) -> None:
    """GET `url`/ping every `interval_s` until `stop`; append each answer's ms to `seen` (None: not a 200)."""
    with requests.Session() as session:
        while not stop.is_set():
            started = time.monotonic()
            try:
                ok = session.get(f"{url}/ping", timeout=5).status_code == 200
            except requests.RequestException:
                ok = False
            seen.append((time.monotonic() - started) * 1000 if ok else None)
            stop.wait(interval_s)


def cpu_stall_ms() -> float | None:
    """Milliseconds that runnable tasks on this machine have waited for a CPU since boot (Linux PSI,
    /proc/pressure/cpu "some"): its growth over a block says how contended the CPUs were meanwhile."""
    try:
        line = open("/proc/pressure/cpu").readline()
    except OSError:
        return None
    return int(line.rsplit("total=", 1)[1]) / 1000.0


class MeasuredRun:
    """The frame of one measuring run (`python -m bench split`, `... telemetry`): its time stamp and work folder,
    the servers' environment from the settings, and the results' header (kind, start, load, settings) and
    footer (duration, load, CPU stall), written to `<results_dir>/<name>-<stamp>.json` by finish()."""

    def __init__(self, settings, name: str):
        self.settings, self.name = settings, name
        self.stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        self.workdir = settings.results_dir / f"{name}-{self.stamp}"
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.env = {"RAG_MAX_NEW_TOKENS": settings.max_new_tokens, "RAG_TOP_K": settings.top_k}
        if settings.index_dir:
            self.env["RAG_INDEX_DIR"] = settings.index_dir
        self._started, self._stall = time.monotonic(), cpu_stall_ms()
        self.results: dict = {
            "kind": "quick" if settings.quick else "full",
            "started_utc": datetime.now(UTC).isoformat(),
            "loadavg_start": os.getloadavg(),
            "settings": settings.to_dict(),
        }

    def finish(self) -> Path:
        """Add the footer, write the results, and return their path."""
        elapsed = time.monotonic() - self._started
        self.results.update(
            duration_s=elapsed,
            loadavg_end=os.getloadavg(),
            cpu_stall_ms_per_s=(cpu_stall_ms() - self._stall) / elapsed if self._stall is not None else None,
        )
        path = self.settings.results_dir / f"{self.name}-{self.stamp}.json"
        path.write_text(json.dumps(self.results, indent=1))
        return path
