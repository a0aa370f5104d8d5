"""The batching engine (rag/generation/batching.py) with a deterministic fake model: who runs together, who is
turned away, and how a row leaves (its own length, deadline, cancellation, a failed step); and a backend
that runs static batches, whose rows start together only when none run."""

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from rag.errors import ClientGone, Overloaded, RequestTimeout
from rag.generation.batching import Admission, BatchEngine, DecodeBackend, Job, Step, client_gone

END = 0


class CountingBackend(DecodeBackend):
    """Row i answers prompt[0]+1, prompt[0]+2, ... and ends with END once it reaches prompt[1].
    `hold` keeps the model's thread inside its next prefill or step until the test releases it."""

    def __init__(self):
        self.rows: list[Job] = []
        self.batch_sizes: list[int] = []  # rows in each decode step
        self.removed: list[Job] = []
        self.thread = threading.current_thread().name
        self.hold = threading.Event()
        self.hold.set()
        self.entered = threading.Event()  # set when the model's thread reaches a prefill or step
        self.fail_next_step = False
        self.idles = 0
        self.permits: threading.Semaphore | None = None  # when set, each prefill or step takes one

    def _wait(self):
        self.entered.set()
        assert self.hold.wait(10), "the test never released the model"
        if self.permits is not None:
            assert self.permits.acquire(timeout=10), "the test gave the model no more steps"

    def _next(self, job):
        last = job.tokens[-1] if job.tokens else job.prompt[0]
        return END if last >= job.prompt[1] else last + 1

    def prefill(self, job):
        self._wait()
        self.rows.append(job)
        return self._next(job)

    def decode(self):
        self._wait()
        if self.fail_next_step:
            self.fail_next_step = False
            raise RuntimeError("out of memory")
        self.batch_sizes.append(len(self.rows))
        return [self._next(job) for job in self.rows]

    def remove(self, rows):
        self.removed += [self.rows[row] for row in rows]
        self.rows = [job for row, job in enumerate(self.rows) if row not in set(rows)]

    def ends(self, job, token):
        return token == END

    def idle(self):
        self.idles += 1


@pytest.fixture
def backend():
    return CountingBackend()


def engine_with(backend, **options):
    engine = BatchEngine("fake", lambda: backend, **options)
    return engine


def answer(engine, first, last, max_new_tokens=100, deadline=None):
    job = Job([first, last], max_new_tokens, deadline)
    for _ in engine.run(job):
        pass
    return job.tokens


def test_the_model_loads_and_runs_on_its_own_thread(backend):
    loaded_on = []
    engine = BatchEngine("fake", lambda: loaded_on.append(threading.current_thread().name) or backend)
    assert answer(engine, 10, 13) == [11, 12, 13, END]
    assert loaded_on == ["model-fake"]
    engine.close()


def test_a_failed_load_is_raised_by_the_constructor():
    def load():
        raise OSError("no weights here")

    with pytest.raises(OSError, match="no weights"):
        BatchEngine("fake", load)


def test_waiting_requests_decode_together(backend):
    engine = engine_with(backend, max_batch_size=8)
    backend.hold.clear()
    with ThreadPoolExecutor(4) as pool:
        first = pool.submit(answer, engine, 0, 5)
        assert backend.entered.wait(5)  # the model is inside the first prefill; the others queue meanwhile
        others = [pool.submit(answer, engine, 100 * i, 100 * i + 5) for i in (1, 2, 3)]
        _until(lambda: engine.admission.in_flight == 4)
        backend.hold.set()
        assert first.result(10) == [1, 2, 3, 4, 5, END]
        assert [f.result(10) for f in others] == [
            [101, 102, 103, 104, 105, END],
            [201, 202, 203, 204, 205, END],
            [301, 302, 303, 304, 305, END],
        ]
    assert max(backend.batch_sizes) == 4
    assert engine.admission.in_flight == 0
    engine.close()


def test_the_batch_never_exceeds_max_batch_size(backend):
    engine = engine_with(backend, max_batch_size=2)
    with ThreadPoolExecutor(5) as pool:
        results = list(pool.map(lambda i: answer(engine, 10 * i, 10 * i + 3), range(5)))
    assert results == [[10 * i + 1, 10 * i + 2, 10 * i + 3, END] for i in range(5)]
    assert max(backend.batch_sizes) <= 2
    engine.close()


def test_each_row_stops_at_its_own_max_new_tokens(backend):
    engine = engine_with(backend)
    backend.hold.clear()
    with ThreadPoolExecutor(2) as pool:
        short = pool.submit(answer, engine, 0, 50, 2)
        assert backend.entered.wait(5)
        long = pool.submit(answer, engine, 1000, 1050, 6)
        _until(lambda: engine.admission.in_flight == 2)
        backend.hold.set()
        assert short.result(10) == [1, 2] and long.result(10) == [1001, 1002, 1003, 1004, 1005, 1006]
    assert backend.removed[0].tokens == [1, 2]  # the short row left first; the long one went on alone
    assert backend.batch_sizes[-1] == 1
    engine.close()


def test_past_the_limit_a_request_is_refused_at_once(backend):
    engine = engine_with(backend, max_concurrent=2)
    backend.hold.clear()
    with ThreadPoolExecutor(2) as pool:
        running = [pool.submit(answer, engine, 0, 3), pool.submit(answer, engine, 10, 13)]
        _until(lambda: engine.admission.in_flight == 2)
        started = time.monotonic()
        with pytest.raises(Overloaded) as refused:
            engine.run(Job([20, 23], 10))
        assert time.monotonic() - started < 0.1
        assert refused.value.status == 429 and refused.value.retry_after_s >= 1
        assert "RAG_MAX_CONCURRENT_REQUESTS" in refused.value.message
        backend.hold.set()
        assert [f.result(10)[-1] for f in running] == [END, END]
    assert answer(engine, 20, 21) == [21, END]  # slots come back when requests end
    engine.close()


def test_a_deadline_ends_only_its_own_request(backend):
    engine = engine_with(backend)
    backend.hold.clear()
    with ThreadPoolExecutor(2) as pool:
        patient = pool.submit(answer, engine, 0, 40)
        assert backend.entered.wait(5)
        hurried = pool.submit(answer, engine, 100, 140, 100, time.monotonic() + 0.3)
        started = time.monotonic()
        with pytest.raises(RequestTimeout, match="deadline"):
            hurried.result(10)  # while the model is still held: the request thread itself gives up on time
        assert time.monotonic() - started < 1.0
        backend.hold.set()
        assert patient.result(10) == list(range(1, 41)) + [END]
    assert engine.admission.in_flight == 0
    engine.close()


def test_a_streaming_consumer_that_stops_reading_leaves_the_batch(backend):
    engine = engine_with(backend)
    backend.permits = threading.Semaphore(2)
    job = Job([0, 1000], 1000, stream=True)
    tokens = engine.run(job)
    assert [next(tokens), next(tokens)] == [1, 2]  # tokens arrive one by one, as they are made
    tokens.close()
    backend.permits.release(10)
    _until(lambda: job in backend.removed)
    assert job.outcome == "cancelled" and len(job.tokens) <= 3
    _until(lambda: engine.admission.in_flight == 0)
    engine.close()


def test_a_client_that_disconnects_is_dropped(backend):
    engine = engine_with(backend)
    backend.hold.clear()
    gone = threading.Event()
    token = client_gone.set(gone.is_set)
    try:
        job = Job([0, 1000], 1000)
        follow = engine.run(job)
        gone.set()
        with pytest.raises(ClientGone):
            list(follow)
    finally:
        client_gone.reset(token)
    backend.hold.set()
    assert job.outcome == "cancelled"
    _until(lambda: not backend.rows)
    engine.close()


def test_a_failed_step_fails_its_rows_and_the_engine_goes_on(backend):
    engine = engine_with(backend)
    backend.fail_next_step = True
    with pytest.raises(RuntimeError, match="out of memory"):
        answer(engine, 0, 5)
    assert answer(engine, 0, 2) == [1, 2, END]
    engine.close()


def test_memory_is_released_when_the_model_goes_idle(backend):
    engine = engine_with(backend)
    answer(engine, 0, 2)
    _until(lambda: backend.idles >= 1)
    engine.close()


def test_admission_counts_slots():
    admission = Admission(1, "thing")
    admission.enter()
    with pytest.raises(Overloaded, match="thing already has 1"):
        admission.enter()
    admission.leave()
    admission.enter()
    assert admission.in_flight == 1


def _until(condition, deadline_s: float = 10.0) -> None:
    end = time.monotonic() + deadline_s
    while not condition():
        assert time.monotonic() < end, "condition not met before the deadline"
        time.sleep(0.005)


def test_on_step_sees_each_prefill_decode_step_and_wait_on_the_model_thread(backend):
    seen, threads = [], set()

    def observe(step):
        seen.append(step)
        threads.add(threading.current_thread().name)

    engine = engine_with(backend, on_step=observe)
    assert answer(engine, 10, 12) == [11, 12, END]
    engine.close()
    kinds = [step.kind for step in seen]
    assert kinds[0] == "wait" and kinds.count("prefill") == 1 and kinds.count("decode") == 2
    prefill = next(step for step in seen if step.kind == "prefill")
    assert (prefill.rows, prefill.tokens) == (1, 2)
    assert all(step.rows == 1 for step in seen if step.kind == "decode")
    assert all(isinstance(step, Step) and step.seconds >= 0 for step in seen)
    assert threads == {"model-fake"}


def test_on_step_is_off_by_default(backend):
    engine = engine_with(backend)
    assert engine.on_step is None
    assert answer(engine, 10, 11) == [11, END]
    engine.close()


def test_a_job_records_its_queue_prefill_decode_and_the_rows_it_shared(backend):
    """What the request's metrics read (rag/telemetry.py): times in order, and the mean rows per decode step."""
    engine = engine_with(backend)
    alone = Job([0, 4], 100)
    for _ in engine.run(alone):
        pass
    assert alone.submitted <= alone.prefill_started <= alone.prefill_ended <= alone.finished_at
    assert set(alone.stages()) == {"queue", "prefill", "decode"}
    assert alone.decode_steps == len(alone.tokens) - 1 and alone.batch_size == 1.0  # the first token is the prefill's
    backend.hold.clear()
    backend.entered.clear()
    long, short = Job([0, 40], 100), Job([100, 103], 100)
    with ThreadPoolExecutor(2) as pool:
        done = pool.submit(lambda: [list(engine.run(long)), long.tokens])
        assert backend.entered.wait(5)  # inside the long one's prefill: the short one waits in the queue
        waited = pool.submit(lambda: [list(engine.run(short)), short.tokens])
        _until(lambda: engine.admission.in_flight == 2)
        backend.hold.set()
        done.result(10), waited.result(10)
    assert short.prefill_started > short.submitted and short.batch_size == 2.0  # every step it took, it shared
    assert 1.0 < long.batch_size < 2.0
    assert Job([0, 1], 1).batch_size is None  # no decode step yet
    engine.close()


# A backend that runs static batches (CTranslate2's kind): rows start together, only when none run.


class StaticBackend(CountingBackend):
    """CountingBackend whose rows cannot join a running batch. `group` keeps the oldest job with the waiting
    jobs of the same parity of prompt[0] (what a real backend would match on: its sampling rule)."""

    joins_running = False

    def __init__(self):
        super().__init__()
        self.groups: list[list[int]] = []  # prompt[0] of each batch's rows, as it started
        self.fail_next_prefill = False

    def group(self, jobs, limit):
        parity = jobs[0].prompt[0] % 2
        return [job for job in jobs if job.prompt[0] % 2 == parity][:limit]

    def prefill(self, job):
        raise AssertionError("a static backend is asked prefill_many")

    def prefill_many(self, jobs):
        self._wait()
        assert not self.rows, "a batch started while rows were running"
        if self.fail_next_prefill:
            self.fail_next_prefill = False
            raise RuntimeError("bad batch")
        self.groups.append([job.prompt[0] for job in jobs])
        self.rows = list(jobs)
        return [self._next(job) for job in jobs]


def test_a_static_batch_starts_together_once_the_running_one_has_ended():
    backend = StaticBackend()
    engine = engine_with(backend, max_batch_size=8, on_step=lambda step: steps.append(step))
    steps = []
    backend.hold.clear()
    with ThreadPoolExecutor(4) as pool:
        first = pool.submit(answer, engine, 0, 5)
        assert backend.entered.wait(5)  # the first batch is starting; the others queue meanwhile
        others = [pool.submit(answer, engine, first, first + 2) for first in (200, 400, 101)]
        _until(lambda: engine.admission.in_flight == 4)
        backend.hold.set()
        assert first.result(10) == [1, 2, 3, 4, 5, END]
        assert [f.result(10) for f in others] == [[201, 202, END], [401, 402, END], [102, 103, END]]
    # The even ones started together once the first batch had ended, then the odd one alone.
    assert backend.groups == [[0], [200, 400], [101]]
    prefills = [(step.rows, step.tokens) for step in steps if step.kind == "prefill"]
    assert prefills == [(1, 2), (2, 4), (1, 2)]
    assert max(backend.batch_sizes) == 2 and engine.admission.in_flight == 0
    engine.close()


def test_a_failed_static_batch_fails_its_rows_and_the_engine_goes_on():
    backend = StaticBackend()
    engine = engine_with(backend)
    backend.fail_next_prefill = True
    with pytest.raises(RuntimeError, match="bad batch"):
        answer(engine, 0, 5)
    assert answer(engine, 0, 2) == [1, 2, END]
    assert engine.admission.in_flight == 0
    engine.close()


def test_a_request_that_expires_while_a_static_batch_runs_never_starts():
    backend = StaticBackend()
    engine = engine_with(backend)
    backend.permits = threading.Semaphore(1)  # the first batch's prefill, then one step at a time
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(answer, engine, 0, 3)
        _until(lambda: backend.rows)
        late = pool.submit(answer, engine, 10, 12, deadline=time.monotonic() + 0.2)
        with pytest.raises(RequestTimeout):
            late.result(10)
        for _ in range(3):
            backend.permits.release()
        assert first.result(10) == [1, 2, 3, END]
    assert backend.groups == [[0]]
    engine.close()
