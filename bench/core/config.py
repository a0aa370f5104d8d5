"""Benchmark settings, read from BENCH_* environment variables in one place and stored in the results."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from rag.errors import ConfigError
from rag.settings import env_int  # the same validated-integer rule as the services' settings

BENCH_DIR = Path(__file__).resolve().parents[1]
REPO_ROOT = BENCH_DIR.parent
DEFAULT_RESULTS_DIR = BENCH_DIR / "results"
QUESTIONS_FILE = REPO_ROOT / "tests" / "data" / "sample_questions.json"
PRICES_FILE = BENCH_DIR / "serving" / "prices.json"


def write_results(name: str, data: dict, path: Path | None = None) -> Path:
    """Write a measuring tool's JSON to `path`, by default bench/results/<name>-<UTC time>.json; print where."""
    if path is None:
        path = DEFAULT_RESULTS_DIR / f"{name}-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1))
    print(f"wrote {path}")
    return path


def publish_run(path: Path, latest: Path, page: Path, markers: tuple[str, str], table: Callable[[dict], str]) -> Path:
    """Copy a full run's results to `latest` and put `table(results)` between the two markers of `page`."""
    results = json.loads(path.read_text())
    if results["kind"] != "full":
        raise ValueError(f"{path} is a quick run: only a full run is published")
    latest.parent.mkdir(parents=True, exist_ok=True)
    latest.write_text(json.dumps(results, indent=1))
    begin, end = markers
    head, rest = page.read_text().split(begin, 1)
    page.write_text(f"{head}{begin}\n{table(results)}\n{end}{rest.split(end, 1)[1]}")
    return latest


def _levels(env: dict, default: tuple[int, ...]) -> tuple[int, ...]:
    raw = env.get("BENCH_CONCURRENCY", "").strip()
    if not raw:
        return default
    try:
        levels = tuple(int(part) for part in raw.split(","))
    except ValueError:
        raise ConfigError(f"BENCH_CONCURRENCY={raw!r} must be comma-separated integers, e.g. 1,4,8")
    if not levels or any(not 1 <= level <= 32 for level in levels):
        raise ConfigError(f"BENCH_CONCURRENCY={raw!r}: each level must be between 1 and 32")
    return levels


@dataclass(frozen=True)
class BenchSettings:
    """What one bench run does. The full defaults keep `make bench` near 15 minutes on 2 CPU cores."""

    quick: bool = False
    results_dir: Path = DEFAULT_RESULTS_DIR
    index_dir: str = ""  # empty: the services' own default (indexes/sample)
    concurrency: tuple[int, ...] = (1, 4, 8)
    # Requests per target and level. They run in blocks that alternate between the targets, so that a
    # load spike from a neighbour lands on all of them rather than on one (see block_size).
    requests: int = 16
    # Concurrency 1 carries the overhead targets: three twins per question, so that a floor per
    # question (the best of three) can be told apart from a neighbour's burst of load.
    requests_c1: int = 24
    warmup: int = 2  # per target, excluded from every figure
    # 48 tokens: long enough that generation dominates as in real use, short enough for the time budget.
    max_new_tokens: int = 48
    top_k: int = 3
    cold_starts: int = 3  # each: model load in a fresh process, then each architecture from nothing to /ping 200
    faults: bool = True
    # The fault load uses short answers so that the timeline has many requests per second of outage.
    fault_concurrency: int = 2
    fault_max_new_tokens: int = 8
    fault_before_s: int = 6  # steady load before the kill
    fault_after_s: int = 6  # load kept up after recovery
    fault_limit_s: int = 120  # an experiment never runs longer than this
    request_timeout_s: int = 120  # client-side bound on one request
    memory_interval_s: float = 1.0  # RSS changes slowly (weights dominate); sampling costs CPU the servers want

    @classmethod
    def from_env(cls, env: dict | None = None) -> BenchSettings:
        """Full defaults, or the smoke-test ones with BENCH_QUICK=1; every value can be overridden."""
        env = dict(os.environ if env is None else env)
        quick = env.get("BENCH_QUICK", "").strip() not in ("", "0", "false", "no")
        # The smoke run exercises every phase with as little work as possible (well under 3 minutes).
        d = (
            cls(
                concurrency=(1, 2),
                requests=2,
                requests_c1=2,
                warmup=1,
                max_new_tokens=4,
                cold_starts=1,
                fault_max_new_tokens=4,
                fault_before_s=2,
                fault_after_s=1,
                fault_limit_s=60,
            )
            if quick
            else cls()
        )
        results = env.get("BENCH_RESULTS_DIR", "").strip()
        return cls(
            quick=quick,
            results_dir=Path(results).expanduser().resolve() if results else DEFAULT_RESULTS_DIR,
            index_dir=env.get("RAG_INDEX_DIR", "").strip(),
            concurrency=_levels(env, d.concurrency),
            requests=env_int(env, "BENCH_REQUESTS", d.requests, 1, 10000),
            requests_c1=env_int(env, "BENCH_REQUESTS_C1", d.requests_c1, 1, 10000),
            warmup=env_int(env, "BENCH_WARMUP", d.warmup, 0, 100),
            max_new_tokens=env_int(env, "BENCH_MAX_NEW_TOKENS", d.max_new_tokens, 1, 1024),
            top_k=env_int(env, "BENCH_TOP_K", d.top_k, 1, 20),
            cold_starts=env_int(env, "BENCH_COLD_STARTS", d.cold_starts, 1, 20),
            faults=env_int(env, "BENCH_FAULTS", 1, 0, 1) == 1,
            fault_concurrency=env_int(env, "BENCH_FAULT_CONCURRENCY", d.fault_concurrency, 1, 16),
            fault_max_new_tokens=env_int(env, "BENCH_FAULT_MAX_NEW_TOKENS", d.fault_max_new_tokens, 1, 1024),
            fault_before_s=env_int(env, "BENCH_FAULT_BEFORE_S", d.fault_before_s, 1, 600),
            fault_after_s=env_int(env, "BENCH_FAULT_AFTER_S", d.fault_after_s, 0, 600),
            fault_limit_s=env_int(env, "BENCH_FAULT_LIMIT_S", d.fault_limit_s, 10, 1800),
        )

    @staticmethod
    def block_size(concurrency: int) -> int:
        """Requests per block. At concurrency 1, one: the targets alternate request by request, so each
        baseline request has a monolith and a microservices twin (same question, seconds apart). Above
        1, two per client, so that most requests of a block see the full queue."""
        return 1 if concurrency == 1 else 2 * concurrency

    def requests_at(self, concurrency: int) -> int:
        """Requests per target at one level: `requests` (`requests_c1` at 1), rounded up to whole blocks."""
        block, wanted = self.block_size(concurrency), self.requests_c1 if concurrency == 1 else self.requests
        return max(block, -(-wanted // block) * block)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["results_dir"] = str(self.results_dir)
        data["concurrency"] = list(self.concurrency)
        return data
