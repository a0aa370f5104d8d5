"""The one closed-loop client loop of the benchmarks (bench/core/workload.py), with a made-up target."""

import threading
import time

from bench.core.workload import ClientLoop, Outcome, pause_after_failure, run_block


class Echo:
    """Answers at once; fails every request whose payload says so."""

    name = "echo"

    def __init__(self):
        self.seen = []
        self.lock = threading.Lock()

    def call(self, payload):
        with self.lock:
            self.seen.append(payload["n"])
        now = time.monotonic()
        ok = not payload.get("fail")
        return Outcome(now, now, ok, 200 if ok else 503)


def test_a_block_sends_every_request_once_and_returns_them_in_sending_order():
    target = Echo()
    outcomes, wall = run_block(target, [{"n": n} for n in range(50)], 4)
    assert sorted(target.seen) == list(range(50)) and len(outcomes) == 50 and wall >= 0


def test_a_stopped_loop_begins_no_request_and_counts_none_in_flight():
    target, stop = Echo(), threading.Event()
    loop = ClientLoop(target, [{"n": 0}], 3, stop=stop)
    threads = loop.start("test-client")
    time.sleep(0.05)
    with loop.lock:
        stop.set()
    for thread in threads:
        thread.join(timeout=5)
    assert loop.in_flight == 0 and len(loop.outcomes) == len(target.seen) > 0


def test_a_time_limited_loop_ends_and_failed_clients_pause():
    target = Echo()
    loop = ClientLoop(target, [{"n": 0, "fail": True}], 2, until=time.monotonic() + 0.3, pause=pause_after_failure(0.2))
    outcomes, wall = loop.run()
    assert 2 <= len(outcomes) <= 6 and wall < 2
