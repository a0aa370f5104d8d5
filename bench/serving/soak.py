"""Soak and chaos (`make soak`): steady load on each architecture for SOAK_MINUTES, started as `make
serve` starts it. In the microservices a random internal service (its Gunicorn master and workers) is
SIGKILLed every SOAK_KILL_EVERY_S seconds, and both end with a SIGTERM while requests are in flight.

Targets, checked in `verdicts`: resident memory grows less than 5 % after the warm-up; every failed
request is a 503 inside a kill window (from the kill until the first answer after it); each such
recovery takes at most 10 s; SIGTERM loses no request that was in flight. The run writes soak.json and
soak.png into a timestamped folder of BENCH_RESULTS_DIR.
"""

from __future__ import annotations

import json
import os
import random
import signal
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import psutil

from bench.core.config import DEFAULT_RESULTS_DIR
from bench.core.processes import Served, role_of
from bench.core.workload import ClientLoop, HttpTarget, load_questions, pause_after_failure, payloads
from rag.errors import ConfigError
from rag.settings import env_int

MAX_RSS_GROWTH = 0.05
MAX_RECOVERY_S = 10.0
SERVICES = ("vector_service", "llm_service")


@dataclass(frozen=True)
class SoakSettings:
    """One soak run; every field has a SOAK_* variable."""

    minutes: int = 30  # of steady load per architecture
    kill_every_s: int = 180  # microservices: one internal service SIGKILLed this often
    concurrency: int = 2  # clients, each sending its next request when the last one is answered
    max_new_tokens: int = 16  # short answers: many requests per minute, generation still real
    warmup_s: int = 60  # memory growth is measured from the first sample after this
    sample_every_s: int = 60  # resident memory of the whole process tree, every minute
    seed: int = 0  # which service each kill picks
    architectures: tuple[str, ...] = ("monolito", "microservicos")
    results_dir: Path = DEFAULT_RESULTS_DIR

    @classmethod
    def from_env(cls, env: dict | None = None) -> SoakSettings:
        env = dict(os.environ if env is None else env)
        arch = env.get("SOAK_ARCH", "").strip()
        if arch and arch not in ("monolito", "microservicos"):
            raise ConfigError(f"SOAK_ARCH={arch!r} must be monolito or microservicos (unset: both)")
        results = env.get("BENCH_RESULTS_DIR", "").strip()
        return cls(
            minutes=env_int(env, "SOAK_MINUTES", 30, 1, 24 * 60),
            kill_every_s=env_int(env, "SOAK_KILL_EVERY_S", 180, 5, 24 * 3600),
            concurrency=env_int(env, "SOAK_CONCURRENCY", 2, 1, 32),
            max_new_tokens=env_int(env, "SOAK_MAX_NEW_TOKENS", 16, 1, 1024),
            warmup_s=env_int(env, "SOAK_WARMUP_S", 60, 0, 3600),
            sample_every_s=env_int(env, "SOAK_SAMPLE_EVERY_S", 60, 1, 3600),
            seed=env_int(env, "SOAK_SEED", 0, 0, 2**31),
            architectures=(arch,) if arch else ("monolito", "microservicos"),
            results_dir=Path(results).expanduser().resolve() if results else DEFAULT_RESULTS_DIR,
        )


@dataclass
class Tape:
    """Everything one architecture's soak saw, on the monotonic clock."""

    origin: float
    kills: list = field(default_factory=list)  # (at, service, pids)
    rss: list = field(default_factory=list)  # (at, MiB, MiB by role)
    load: ClientLoop | None = None  # the clients: their outcomes, and how many requests are in flight

    @property
    def requests(self) -> list:
        """(started, finished, status, error_type) of every request answered."""
        outcomes = list(self.load.outcomes) if self.load is not None else []
        return [(o.started, o.finished, o.status, o.error_type) for o in outcomes]


def _sampler(served: Served, tape: Tape, stop: threading.Event, every_s: int) -> threading.Thread:
    def sample() -> None:
        while not stop.is_set():
            memory = served.memory()
            tape.rss.append((time.monotonic(), memory["rss_mib"], memory["by_role_mib"]))
            stop.wait(every_s)

    return threading.Thread(target=sample, name="soak-rss", daemon=True)


def kill_service(served: Served, service: str) -> list[int]:
    """SIGKILL a service's Gunicorn master with its workers (its own process group, from start.sh)."""
    family = [proc for proc in served.tree() if role_of(proc) == service]
    pids = {proc.pid for proc in family}
    for master in [proc for proc in family if proc.ppid() not in pids]:
        try:
            os.killpg(master.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return sorted(pids)


def _sigterm_in_flight(served: Served, tape: Tape, stop: threading.Event, deadline_s: float = 30.0) -> dict:
    """Once a request is in flight: stop sending, SIGTERM the entrypoint (as SageMaker does), wait for it."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        with tape.load.lock:
            if tape.load.in_flight:
                stop.set()
                break
        time.sleep(0.005)
    stop.set()
    sent_at = time.monotonic()
    served.proc.send_signal(signal.SIGTERM)
    try:
        code = served.proc.wait(timeout=60)
    except Exception:  # noqa: BLE001 - still running after 60 s: reported as no exit code
        code = None
    return {"at": sent_at, "exit_code": code, "stop_s": time.monotonic() - sent_at}


def soak_architecture(arch: str, settings: SoakSettings, folder: Path) -> dict:
    """Run the soak on one architecture; return its analysis and its tape (times from the start)."""
    served = Served(arch, folder / f"{arch}.log", {"RAG_MAX_NEW_TOKENS": settings.max_new_tokens})
    stop = threading.Event()
    threads: list[threading.Thread] = []
    try:
        served.wait_ready()
        tape = Tape(origin=time.monotonic())
        target = HttpTarget(served.url, 120, name=arch)
        batch = payloads(load_questions(), 64, 0, settings.max_new_tokens, 3)
        tape.load = ClientLoop(target, batch, settings.concurrency, stop=stop, pause=pause_after_failure(0.1))
        sampler = _sampler(served, tape, stop, settings.sample_every_s)
        sampler.start()
        threads = [sampler, *tape.load.start("soak-client")]
        chooser = random.Random(settings.seed)
        end = tape.origin + 60 * settings.minutes
        next_kill = tape.origin + settings.kill_every_s
        while time.monotonic() < end:
            # No kill so late that its recovery could not be seen before the end.
            if arch == "microservicos" and time.monotonic() >= next_kill and next_kill + 2 * MAX_RECOVERY_S < end:
                service = chooser.choice(SERVICES)
                tape.kills.append((time.monotonic(), service, kill_service(served, service)))
                next_kill += settings.kill_every_s
            stop.wait(min(0.5, max(0.0, end - time.monotonic())))
        final = served.memory()  # the last sample, at the end of the load
        tape.rss.append((time.monotonic(), final["rss_mib"], final["by_role_mib"]))
        sigterm = _sigterm_in_flight(served, tape, stop)
        for thread in threads:
            thread.join(timeout=130)
        return {"architecture": arch, **analyse(tape, sigterm, settings)}
    finally:
        stop.set()
        served.stop()


def analyse(tape: Tape, sigterm: dict, settings: SoakSettings) -> dict:
    """Counts, kill windows and recoveries, memory growth, the SIGTERM outcome, and a verdict per target."""
    t0 = tape.origin
    requests = sorted(tape.requests)
    before_term = [r for r in requests if r[0] < sigterm["at"]]
    kills = []
    for at, service, pids in tape.kills:
        answered = [finished for started, finished, status, _ in before_term if started >= at and status == 200]
        recovered = min(answered, default=None)
        kills.append(
            {
                "at_s": at - t0,
                "service": service,
                "pids": pids,
                "recovery_s": None if recovered is None else recovered - at,
            }
        )
    windows = [
        (k["at_s"] + t0, k["at_s"] + t0 + (k["recovery_s"] if k["recovery_s"] is not None else 1e9)) for k in kills
    ]
    failed = [r for r in before_term if r[2] != 200]
    outside = [r for r in failed if r[2] != 503 or not any(lo <= r[1] <= hi + 0.5 for lo, hi in windows)]
    in_flight = [r for r in requests if r[0] < sigterm["at"] < r[1]]
    samples = [(at - t0, mib) for at, mib, _ in tape.rss]
    after_warmup = [mib for at, mib in samples if at >= settings.warmup_s] or [mib for _, mib in samples[-1:]]
    growth = (after_warmup[-1] - after_warmup[0]) / after_warmup[0] if after_warmup else None
    recoveries = [k["recovery_s"] for k in kills]
    verdicts = {
        "rss_growth_under_5_pct": growth is not None and growth < MAX_RSS_GROWTH,
        "failures_only_503_in_kill_windows": not outside,
        "recovery_within_10_s": all(r is not None and r <= MAX_RECOVERY_S for r in recoveries),
        "sigterm_loses_no_request_in_flight": bool(in_flight)
        and all(r[2] == 200 for r in in_flight)
        and sigterm["exit_code"] == 0,
    }
    return {
        "seconds": (sigterm["at"] - t0),
        "requests": len(before_term),
        "answered": sum(r[2] == 200 for r in before_term),
        "failed_by_status": {str(k): v for k, v in sorted(Counter(r[2] for r in failed).items())},
        "failed_by_type": dict(Counter(r[3] for r in failed)),
        "failures_outside_kill_windows": [{"at_s": r[1] - t0, "status": r[2], "error_type": r[3]} for r in outside],
        "kills": kills,
        "rss_mib": [[round(at, 1), round(mib, 1)] for at, mib in samples],
        "rss_growth_after_warmup": growth,
        "sigterm": {
            "in_flight": len(in_flight),
            "lost": sum(r[2] != 200 for r in in_flight),
            "exit_code": sigterm["exit_code"],
            "stop_s": sigterm["stop_s"],
            "at_s": sigterm["at"] - t0,
        },
        "verdicts": verdicts,
        "met": all(verdicts.values()),
        "timeline": [[round(s - t0, 3), round(f - t0, 3), status] for s, f, status, _ in requests],
    }


def run(settings: SoakSettings) -> Path:
    """Soak every chosen architecture; write soak.json and soak.png; return the folder."""
    from bench.serving.charts import soak_chart

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    folder = settings.results_dir / f"soak-{stamp}"
    folder.mkdir(parents=True, exist_ok=True)
    report = {
        "started_utc": stamp,
        "settings": {**asdict(settings), "results_dir": str(settings.results_dir)},
        "loadavg_start": os.getloadavg(),
        "cpus": len(os.sched_getaffinity(0)),
        "memory_gib": psutil.virtual_memory().total / 2**30,
        "targets": {"max_rss_growth": MAX_RSS_GROWTH, "max_recovery_s": MAX_RECOVERY_S},
        "architectures": [soak_architecture(arch, settings, folder) for arch in settings.architectures],
    }
    report["loadavg_end"] = os.getloadavg()
    report["met"] = all(entry["met"] for entry in report["architectures"])
    (folder / "soak.json").write_text(json.dumps(report, indent=1))
    soak_chart(report, folder / "soak.png")
    return folder
