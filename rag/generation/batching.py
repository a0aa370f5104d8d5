"""Batched generation: one thread owns the model and decodes every admitted request together.

    request threads                            the model's thread (one per model)
    ---------------                            ----------------------------------
    Admission.enter()  (429 past the limit)
    submit a Job  ------------- queue ------>  take new jobs while fewer than RAG_MAX_BATCH_SIZE run;
    follow it: token ids as they come,           prefill each one on its own, then one decode step for
    504 at its deadline, cancel when the         every running row. A row leaves as soon as it ends
    client has gone                              (end of sequence, its max_new_tokens, its deadline,
                                                 cancelled), and a new request joins at the next step.

Iteration-level ("continuous") batching: short answers never wait for long ones, and a request that
arrives while others decode starts at the next step instead of after the whole batch. Every torch call
happens on the model's thread, so one OpenMP team serves the model (see docs/performance.md for why that
matters on a CPU). This module knows nothing about torch: the model side is a `DecodeBackend`.

An engine that can only run a static batch (CTranslate2: its batch is fixed when it starts) gets the same
queue, admission, deadlines and cancellation, but new requests start only when the running batch has
ended, together, in the group its backend chooses (`DecodeBackend.joins_running`).
"""

from __future__ import annotations

import contextvars
import logging
import queue
import threading
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rag.errors import ClientGone, Overloaded, RagError, RequestTimeout
from rag.runtime import IDLE_S

log = logging.getLogger(__name__)

POLL_S = 0.1  # how often a waiting request thread checks its deadline and its client
_END = object()  # the last item of a streaming job's token queue

# The HTTP edge sets a probe that says whether this request's client has disconnected (serving/web.py).
client_gone: contextvars.ContextVar[Callable[[], bool]] = contextvars.ContextVar("client_gone", default=lambda: False)


class Admission:
    """A bounded count of requests waiting or running; past the limit, Overloaded at once."""

    def __init__(self, limit: int, what: str = "model"):
        self.limit = limit
        self.what = what
        self.in_flight = 0
        self._lock = threading.Lock()

    def enter(self) -> None:
        """Take a slot, or raise Overloaded (429) without waiting."""
        with self._lock:
            if self.in_flight >= self.limit:
                raise Overloaded(
                    f"the {self.what} already has {self.limit} requests waiting or running "
                    f"(RAG_MAX_CONCURRENT_REQUESTS); retry after {Overloaded.retry_after_s} s, "
                    "with backoff"
                )
            self.in_flight += 1

    def leave(self) -> None:
        """Give the slot back."""
        with self._lock:
            self.in_flight -= 1


@dataclass(eq=False)
class Job:
    """One request inside the engine. `outcome` stays empty until the job ends, then never changes."""

    prompt: list[int]
    max_new_tokens: int
    deadline: float | None = None  # a time.monotonic() value
    decoding: Any = None  # per-request decoding options, opaque to the engine (see DecodeBackend)
    # How many of the prompt's first tokens every request of this model shares (the instructions): a backend
    # may compute their state once and reuse it (both engines do: RAG_LLM_PREFIX_CACHE); 0: none known.
    prefix: int = 0
    state: Any = None  # the backend's own per-request state
    stream: bool = False  # when true, `pieces` receives each token id as it is produced
    tokens: list[int] = field(default_factory=list)
    outcome: str = ""  # "stop", "length", "deadline", "cancelled" or "error"
    error: BaseException | None = None
    pieces: queue.SimpleQueue = field(default_factory=queue.SimpleQueue)
    on_finish: Callable[[], None] | None = None  # called once, on whichever thread ends the job
    # Where its time went, as time.perf_counter() values (None: not reached), and the decode steps it took
    # part in with the rows those steps decoded: the request's stages and batch size (rag/telemetry.py).
    submitted: float | None = None
    prefill_started: float | None = None
    prefill_ended: float | None = None
    finished_at: float | None = None
    decode_steps: int = 0
    decode_rows: int = 0
    _done: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def finish(self, outcome: str, error: BaseException | None = None) -> bool:
        """End the job once; False when it had already ended (the first outcome wins)."""
        with self._lock:
            if self._done.is_set():
                return False
            self.outcome, self.error, self.finished_at = outcome, error, time.perf_counter()
            self._done.set()
        if self.stream:
            self.pieces.put(_END)
        if self.on_finish is not None:
            self.on_finish()
        return True

    def add(self, token: int) -> None:
        """Record one generated token (model thread only)."""
        self.tokens.append(token)
        if self.stream:
            self.pieces.put(token)

    def expired(self, now: float) -> bool:
        return self.deadline is not None and now >= self.deadline

    def stages(self) -> dict[str, tuple[float | None, float | None]]:
        """Its time in the queue, in its prefill and in decoding, as (start, end) perf_counter() pairs."""
        return {
            "queue": (self.submitted, self.prefill_started),
            "prefill": (self.prefill_started, self.prefill_ended),
            "decode": (self.prefill_ended, self.finished_at),
        }

    @property
    def batch_size(self) -> float | None:
        """Mean rows per decode step it took part in (None before its first step)."""
        return self.decode_rows / self.decode_steps if self.decode_steps else None

    def wait(self, timeout: float) -> bool:
        return self._done.wait(timeout)


class DecodeBackend(ABC):
    """The model side, called only on the engine's thread. It keeps the running rows (e.g. their KV
    cache) in the order they were added; `remove` takes positions in that order.

    A backend that cannot add a row to a batch that is decoding (a static batch: CTranslate2) sets
    `joins_running` False. The engine then starts rows only when none run, several at once: `group`
    chooses which waiting jobs share the batch, and `prefill_many` starts them together.
    """

    joins_running = True

    @abstractmethod
    def prefill(self, job: Job) -> int:
        """Add `job` as a new row and return its first token; on failure, add nothing and raise."""

    def group(self, jobs: list[Job], limit: int) -> list[Job]:
        """Which of these waiting jobs (oldest first) start together, at most `limit`; the oldest always does."""
        return jobs[:limit]

    def prefill_many(self, jobs: list[Job]) -> list[int]:
        """Add these jobs as rows at once and return each one's first token; on failure, add none and raise.
        Only a backend whose rows cannot join a running batch is asked this."""
        raise NotImplementedError

    @abstractmethod
    def decode(self) -> list[int]:
        """One step for every row: the next token of each, in row order."""

    @abstractmethod
    def remove(self, rows: list[int]) -> None:
        """Drop the rows at these positions (all of them when a step failed)."""

    @abstractmethod
    def ends(self, job: Job, token: int) -> bool:
        """Whether `token` ends `job`'s answer (end of sequence, or a stop rule)."""

    def idle(self) -> None:  # noqa: B027 (an optional hook: doing nothing is the right default)
        """Called when the model has had nothing to do for IDLE_S: a moment to release memory."""

    def close(self) -> None:  # noqa: B027 (an optional hook: doing nothing is the right default)
        """Called once the engine has stopped: release what lives outside this process (a child process)."""


class Follow:
    """A request thread's view of its job: token ids as the model's thread produces them, then the job's
    error, if any. It checks the deadline and the client itself, so a request answers 504 on time even
    while the model is busy with another request's long prefill. Dropping it cancels the job."""

    def __init__(self, job: Job):
        self.job = job
        self._gone = client_gone.get()

    def __iter__(self) -> Follow:
        return self

    def __next__(self) -> int:
        job = self.job
        while True:
            timeout = POLL_S if job.deadline is None else max(0.0, min(POLL_S, job.deadline - time.monotonic()))
            if job.stream:
                try:
                    item = job.pieces.get(timeout=timeout)
                except queue.Empty:
                    item = None
                if item is _END:
                    break
                if item is not None:
                    return item
            elif job.wait(timeout):
                break
            if job.expired(time.monotonic()):
                job.finish("deadline")
            elif self._gone():
                job.finish("cancelled")
        if job.outcome == "deadline":
            raise RequestTimeout(
                "generation did not finish before the request deadline (RAG_REQUEST_TIMEOUT); "
                "lower max_new_tokens or raise the timeout"
            )
        if job.outcome == "cancelled":
            raise ClientGone("the client disconnected; its request was dropped from the batch")
        if job.error is not None:
            raise job.error
        raise StopIteration

    def close(self) -> None:
        """Cancel the job unless it has ended (its row leaves the batch at the next step)."""
        self.job.finish("cancelled")

    __del__ = close


@dataclass(frozen=True)
class Step:
    """One piece of the model thread's work, as an engine's `on_step` observer receives it."""

    kind: str  # "prefill" (new rows), "decode" (one step of every row) or "wait" (idle, waiting for work)
    rows: int  # rows decoded in a step; the new rows of a prefill (1, but a static batch's several); 0 for a wait
    seconds: float
    tokens: int = 0  # a prefill's prompt tokens


class BatchEngine:
    """The model's thread and its queue. `load` runs on that thread and returns the DecodeBackend.

    `on_step`, when set, is called on the model's thread after every prefill, decode step and wait for
    work with a `Step` (for profiling: bench/probes/engine_profile.py). It is off by default, and then
    costs one attribute check per step; an observer must be quick and must not raise.
    """

    def __init__(
        self,
        name: str,
        load: Callable[[], DecodeBackend],
        max_batch_size: int = 8,
        batch_wait_s: float = 0.0,
        max_concurrent: int = 16,
        on_step: Callable[[Step], None] | None = None,
    ):
        self.name = name
        self.on_step = on_step
        self.max_batch_size = max_batch_size
        self.batch_wait_s = batch_wait_s
        self.admission = Admission(max_concurrent, f"model {name}")
        self.backend: DecodeBackend | None = None
        self.steps = 0  # decode steps run, and rows decoded in them: their ratio is the mean batch size
        self.rows_decoded = 0
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._load = load
        self._loaded = threading.Event()
        self._load_error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"model-{name}", daemon=True)
        self._thread.start()
        self._loaded.wait()
        if self._load_error is not None:
            raise self._load_error

    def run(self, job: Job) -> Follow:
        """Admit `job` now (Overloaded past the limit) and queue it. Returns an iterator over its token ids
        (each as it comes for a streaming job, none otherwise) that raises the job's error at the end."""
        self.admission.enter()
        job.on_finish = self.admission.leave  # the slot is free as soon as the job ends, however it ends
        job.submitted = time.perf_counter()
        self._queue.put(job)
        return Follow(job)

    def close(self) -> None:
        """Stop the model's thread once the running rows are done, then the backend (tests; the service runs
        until exit)."""
        self._queue.put(None)
        self._thread.join(timeout=60)
        if self.backend is not None and not self._thread.is_alive():
            self.backend.close()

    # Everything below runs on the model's thread.

    def _run(self) -> None:
        try:
            self.backend = self._load()
        except BaseException as exc:  # noqa: BLE001 - re-raised by the constructor
            self._load_error = exc
            self._loaded.set()
            return
        self._loaded.set()
        running: list[Job] = []
        waiting: deque[Job] = deque()
        while True:
            if not self._take(waiting, block=not running and not waiting):
                break
            self._start(running, waiting)
            if running:
                self._step(running)
        for job in [*running, *waiting]:
            job.finish("error", RagError("the model was stopped"))

    def _take(self, waiting: deque, block: bool) -> bool:
        """Move queued jobs to `waiting`; when idle, block for the first one (then the batch window)."""
        try:
            if block:
                started = time.perf_counter()
                waiting.append(self._first_job())
                if self.on_step is not None:
                    self.on_step(Step("wait", 0, time.perf_counter() - started))
                window_end = time.monotonic() + self.batch_wait_s
                while len(waiting) < self.max_batch_size and (left := window_end - time.monotonic()) > 0:
                    waiting.append(self._queue.get(timeout=left))
            while True:
                waiting.append(self._queue.get_nowait())
        except queue.Empty:
            pass
        if None in waiting:  # close()
            waiting.remove(None)
            return False
        return True

    def _first_job(self):
        """The next job for an idle model. After IDLE_S with none, the backend may release memory first:
        not between the requests of a busy client, where it would only be faulted back in."""
        try:
            return self._queue.get(timeout=IDLE_S)
        except queue.Empty:
            self.backend.idle()
            return self._queue.get()

    @staticmethod
    def _live(job: Job) -> bool:
        """False for a job that ended while it waited (cancelled, timed out), now ended if its deadline passed."""
        if job.done:
            return False
        if job.expired(time.monotonic()):
            job.finish("deadline")
            return False
        return True

    def _start(self, running: list[Job], waiting: deque) -> None:
        """Prefill waiting jobs, oldest first, while the batch has room: each on its own, or for a static
        batch, once no row runs, the group the backend chooses, at once (the rest wait)."""
        if self.backend.joins_running:
            while waiting and len(running) < self.max_batch_size:
                job = waiting.popleft()
                if self._live(job):
                    self._prefill(running, [job], lambda job=job: [self.backend.prefill(job)])
        elif not running:
            live = [job for job in waiting if self._live(job)]
            waiting.clear()
            if live:
                jobs = self.backend.group(live, self.max_batch_size)
                waiting.extend(job for job in live if job not in jobs)
                self._prefill(running, jobs, lambda: self.backend.prefill_many(jobs))
        self._retire(running)

    def _prefill(self, running: list[Job], jobs: list[Job], prefill: Callable[[], list[int]]) -> None:
        """Run `prefill` for these jobs: they join the running rows with their first tokens, or fail."""
        started = time.perf_counter()
        for job in jobs:
            job.prefill_started = started
        try:
            tokens = prefill()
        except Exception as exc:  # noqa: BLE001 - these requests fail; the others go on
            log.exception("prefill failed")
            for job in jobs:
                job.finish("error", exc)
            return
        ended = time.perf_counter()
        for job in jobs:
            job.prefill_ended = ended
        if self.on_step is not None:
            self.on_step(Step("prefill", len(jobs), ended - started, sum(len(job.prompt) for job in jobs)))
        for job, token in zip(jobs, tokens):
            running.append(job)
            self._advance(job, token)

    def _step(self, running: list[Job]) -> None:
        try:
            started = time.perf_counter()
            tokens = self.backend.decode()
        except Exception as exc:  # noqa: BLE001 - every running request fails; the engine goes on
            log.exception("decode step failed")
            for job in running:
                job.finish("error", exc)
            self.backend.remove(list(range(len(running))))
            running.clear()
            return
        if self.on_step is not None:
            self.on_step(Step("decode", len(running), time.perf_counter() - started))
        self.steps += 1
        rows = len(running)
        self.rows_decoded += rows
        for job, token in zip(running, tokens):
            job.decode_steps += 1  # before _advance, which may end the job and wake its request thread
            job.decode_rows += rows
            self._advance(job, token)
        self._retire(running)

    def _advance(self, job: Job, token: int) -> None:
        if job.done:  # its request thread gave up meanwhile; the row leaves in _retire
            return
        job.add(token)
        if self.backend.ends(job, token):
            job.finish("stop")
        elif len(job.tokens) >= job.max_new_tokens:
            job.finish("length")
        elif job.expired(time.monotonic()):
            job.finish("deadline")

    def _retire(self, running: list[Job]) -> None:
        ended = [row for row, job in enumerate(running) if job.done]
        if ended:
            self.backend.remove(ended)
            running[:] = [job for job in running if not job.done]
