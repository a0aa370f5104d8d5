"""Fault isolation: SIGKILL one stage's process under steady load and record what the clients see.

The killed process is the gunicorn worker that holds the stage's model: what an out-of-memory kill
or a crash inside torch takes down. Its gunicorn master replaces it, and the replacement reloads the
model. Requests, and /ping probes of the public port and of each internal service, are logged on one
clock for the timeline; the analysis says what failed, for how long, and what else was affected.
"""

from __future__ import annotations

import signal
import threading
import time
from collections import Counter

import requests

from bench.core.processes import Served
from bench.core.workload import ClientLoop, HttpTarget, Outcome, pause_after_failure, payloads

# The stages each kind of process holds: killing one takes all of them down.
STAGES = {
    "monolith": ["http front", "retrieve", "generate"],
    "orchestrator": ["http front"],
    "vector_service": ["retrieve"],
    "llm_service": ["generate"],
}
# The stage whose fault the kill simulates: a crash in the LLM code takes the monolith's worker down.
FAULTY_STAGE = {"monolith": "generate", "llm_service": "generate", "vector_service": "retrieve"}
PROBE_INTERVAL_S = 0.2
FAILED_REQUEST_PAUSE_S = 0.1  # a client whose request failed waits this long: bounded load while down
MAX_REQUESTS = 5000  # per client


class _Probes(threading.Thread):
    """GET /ping on the public port and on each internal service; POST /retrieve straight to the vector
    service, which shows whether retrieval still works while another stage is down."""

    def __init__(self, served: Served, stop: threading.Event):
        super().__init__(name="fault-probes", daemon=True)
        self.served, self.stop = served, stop
        self.records: list[tuple[float, str, int]] = []

    def _probe(self, session, name, method, url, **kwargs):
        try:
            code = session.request(method, url, timeout=2, **kwargs).status_code
        except requests.RequestException:
            code = 0
        self.records.append((time.monotonic(), name, code))

    def run(self):
        ports = self.served.ports
        with requests.Session() as session:
            while not self.stop.is_set():
                self._probe(session, "public /ping", "GET", f"{self.served.url}/ping")
                if self.served.arch == "microservicos":
                    vector = f"http://127.0.0.1:{ports['vector']}"
                    self._probe(session, "vector /ping", "GET", f"{vector}/ping")
                    self._probe(session, "llm /ping", "GET", f"http://127.0.0.1:{ports['llm']}/ping")
                    self._probe(
                        session,
                        "vector /retrieve",
                        "POST",
                        f"{vector}/retrieve",
                        json={"query": "Velmora Tramway", "top_k": 1},
                    )
                self.stop.wait(PROBE_INTERVAL_S)


def _first_answer(outcomes: list[Outcome], killed_at: float) -> float | None:
    """When the first request sent after the kill was answered: service is back."""
    return min((o.finished for o in list(outcomes) if o.ok and o.started >= killed_at), default=None)


def _ready_again(probes: list, killed_at: float) -> float | None:
    """The first public /ping 200 after the first non-200 that followed the kill."""
    down = None
    for t, name, code in list(probes):
        if name != "public /ping" or t < killed_at:
            continue
        if code != 200 and down is None:
            down = t
        elif code == 200 and down is not None:
            return t
    return None


def run_fault(served: Served, role: str, settings, questions: list[str], progress=None) -> dict:
    """Kill `role`'s worker under load; return the timeline and its analysis (times relative to the kill)."""
    target = HttpTarget(served.url, settings.request_timeout_s, name=served.arch)
    batch = payloads(questions, len(questions), 0, settings.fault_max_new_tokens, settings.top_k)
    roles = [r for r in STAGES if r != "monolith"] if served.arch == "microservicos" else ["monolith"]
    pids_before = {r: served.worker(r).pid for r in roles}
    stop = threading.Event()
    probes = _Probes(served, stop)
    load = ClientLoop(
        target,
        batch,
        settings.fault_concurrency,
        limit=MAX_REQUESTS * settings.fault_concurrency,
        stop=stop,
        pause=pause_after_failure(FAILED_REQUEST_PAUSE_S),
    )
    outcomes = load.outcomes  # filled as requests are answered
    probes.start()
    clients = load.start("fault-client")
    killed_at = answered_at = None
    try:
        stop.wait(settings.fault_before_s)
        victim = served.worker(role)
        killed_at = time.monotonic()
        victim.send_signal(signal.SIGKILL)
        limit = killed_at + settings.fault_limit_s
        if progress is not None:
            progress.set_postfix_str(f"{served.arch}: {role} killed, waiting for the first answer")
        while time.monotonic() < limit and answered_at is None:
            stop.wait(0.2)
            answered_at = _first_answer(outcomes, killed_at)
        stop.wait(settings.fault_after_s)
    finally:
        stop.set()
        for thread in [probes, *clients]:
            thread.join(timeout=settings.request_timeout_s)
    pids_after = {}
    for r in roles:
        try:
            pids_after[r] = served.worker(r).pid
        except LookupError:
            pids_after[r] = None
    return analyse(served.arch, role, killed_at, answered_at, outcomes, probes.records, pids_before, pids_after)


def _span(times: list[float]) -> dict:
    return {"count": len(times), "first_s": min(times, default=None), "last_s": max(times, default=None)}


def _collateral(arch: str, role: str, restarted: list[str], probe_failures: dict, front_unanswered: int) -> list:
    """Stages other than the faulty one that became unavailable, from the evidence collected."""
    affected: set[str] = set()
    if arch == "monolito":
        # One process holds every stage: when it went down (restarted, /ping not 200), they all did.
        if role in restarted or probe_failures.get("public /ping", {}).get("count"):
            affected.update(set(STAGES["monolith"]) - {FAULTY_STAGE[role]})
        return sorted(affected)
    for other in restarted:
        if other != role:
            affected.update(STAGES[other])
    if role != "vector_service" and probe_failures.get("vector /retrieve", {}).get("count"):
        affected.add("retrieve")
    if role != "llm_service" and probe_failures.get("llm /ping", {}).get("count"):
        affected.add("generate")
    if front_unanswered:  # a 503 `degraded` is the front working as designed; no answer at all is not
        affected.add("http front")
    return sorted(affected)


def analyse(arch, role, killed_at, answered_at, outcomes, probes, pids_before, pids_after) -> dict:
    """What failed, for how long, and which stages other than the faulty one were affected."""
    failed = [o for o in outcomes if not o.ok]
    after = [o for o in outcomes if o.finished >= killed_at]
    probe_failures = {}
    for name in sorted({name for _, name, _ in probes}):
        bad = [t - killed_at for t, n, code in probes if n == name and code != 200 and t >= killed_at]
        probe_failures[name] = {
            **_span(bad),
            "probes_after_kill": sum(1 for t, n, _ in probes if n == name and t >= killed_at),
        }
    front_unanswered = sum(1 for t, n, code in probes if n == "public /ping" and code == 0 and t >= killed_at)
    restarted = sorted(r for r in pids_before if pids_before[r] != pids_after.get(r))
    return {
        "architecture": arch,
        "killed": role,
        "faulty_stage": FAULTY_STAGE[role],
        "process_holds": STAGES[role],
        "requests": len(outcomes),
        "requests_after_kill": len(after),
        "failed": len(failed),
        "failed_after_kill_pct": 100.0 * len([o for o in after if not o.ok]) / len(after) if after else None,
        "error_types": dict(Counter(o.error_type for o in failed)),
        "first_failure_s": min((o.finished - killed_at for o in failed), default=None),
        "outage_s": max((o.finished - killed_at for o in failed), default=0.0),
        "ready_again_s": None if (ready := _ready_again(probes, killed_at)) is None else ready - killed_at,
        "first_answer_s": None if answered_at is None else answered_at - killed_at,
        "in_flight_at_kill": [o.ok for o in outcomes if o.started < killed_at < o.finished],
        "probe_failures": probe_failures,
        "front_unanswered_probes": front_unanswered,
        "workers_restarted": restarted,
        "pids_before": pids_before,
        "pids_after": pids_after,
        "other_stages_affected": _collateral(arch, role, restarted, probe_failures, front_unanswered),
        "timeline": {
            "requests": [o.to_dict(killed_at) for o in outcomes],
            "probes": [(round(t - killed_at, 3), name, code) for t, name, code in probes],
        },
    }
