"""The concurrency sweep of `make bench`: 1, 2, 4, 8, 16 and 32 closed-loop clients against each target.

At each level every target gets the same clients for the same time, one target after the other (the
order rotates with the level, so a neighbour's burst of load does not always land on the same one).
A client sends its next request as soon as it has an answer; after a 429 it first waits the
Retry-After the server sent, as a well-behaved client does. Per level and target: throughput (200s per
second of wall time), latency p50/p95/p99 of the 200s, the 429 rate and p99 of the 429s, /ping latency
sampled meanwhile (served targets), and peak RSS. Each architecture's idle RSS is read before and after
the sweep, 2 s after its last request (after the idle trim): batching must not leave memory behind.

    BENCH_SWEEP=0                 skip the sweep
    BENCH_SWEEP_LEVELS=1,2,4,...  client counts (default 1,2,4,8,16,32; quick: 1,4)
    BENCH_SWEEP_SECONDS=20        seconds of load per level and target (quick: 3)
"""

from __future__ import annotations

import json
import statistics
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from tqdm import tqdm

from bench.core.stats import percentile
from bench.core.workload import ClientLoop, payloads, poll_ping, retry_after_429
from rag.errors import ConfigError
from rag.runtime import IDLE_S
from rag.settings import env_int

LEVELS = (1, 2, 4, 8, 16, 32)
PING_INTERVAL_S = 0.25
DOC_BEGIN, DOC_END = "<!-- sweep:begin -->", "<!-- sweep:end -->"


@dataclass(frozen=True)
class SweepSettings:
    enabled: bool = True
    levels: tuple[int, ...] = LEVELS
    seconds: int = 20

    @classmethod
    def from_env(cls, env: dict, quick: bool) -> SweepSettings:
        """BENCH_SWEEP, BENCH_SWEEP_LEVELS and BENCH_SWEEP_SECONDS; quick runs sweep two short levels."""
        default = cls(levels=(1, 4), seconds=3) if quick else cls()
        raw = env.get("BENCH_SWEEP_LEVELS", "").strip()
        try:
            levels = tuple(int(part) for part in raw.split(",")) if raw else default.levels
        except ValueError:
            raise ConfigError(f"BENCH_SWEEP_LEVELS={raw!r} must be comma-separated integers, e.g. 1,8,32")
        if not levels or any(not 1 <= level <= 256 for level in levels):
            raise ConfigError(f"BENCH_SWEEP_LEVELS={raw!r}: each level must be between 1 and 256")
        return cls(
            enabled=env_int(env, "BENCH_SWEEP", 1, 0, 1) == 1,
            levels=levels,
            seconds=env_int(env, "BENCH_SWEEP_SECONDS", default.seconds, 1, 3600),
        )


def closed_loop(target, clients: int, seconds: float, questions, max_new_tokens: int, top_k: int):
    """`clients` closed-loop clients for `seconds`; after a 429 a client waits Retry-After first."""
    loop = ClientLoop(
        target,
        payloads(questions, len(questions), 0, max_new_tokens, top_k),
        clients,
        until=time.monotonic() + seconds,
        pause=retry_after_429,
    )
    return loop.run()


def _summary(outcomes: list, wall_s: float, pings: list | None, peak_mib: float | None) -> dict:
    ok = [o.latency_ms for o in outcomes if o.status == 200]
    refused = [o.latency_ms for o in outcomes if o.status == 429]
    other = sorted({o.status if o.status else o.error_type for o in outcomes if o.status not in (200, 429)}, key=str)
    result = {
        "requests": len(outcomes),
        "ok": len(ok),
        "refused": len(refused),
        "errors": len(outcomes) - len(ok) - len(refused),
        "error_kinds": [str(kind) for kind in other],
        "throughput_rps": len(ok) / wall_s if wall_s > 0 else 0.0,
        "wall_s": wall_s,
        "latency_ms": {f"p{q}": percentile(ok, q) for q in (50, 95, 99)},
        "rate_429": len(refused) / len(outcomes) if outcomes else 0.0,
        "refused_p99_ms": percentile(refused, 99),
        "peak_rss_mib": peak_mib,
    }
    if pings is not None:
        answered = [ms for ms in pings if ms is not None]
        result["ping"] = {
            "count": len(pings),
            "failed": len(pings) - len(answered),
            "p99_ms": percentile(answered, 99),
            "max_ms": max(answered, default=None),
        }
    return result


def run_sweep(
    targets: dict, live: dict, sweep: SweepSettings, questions, max_new_tokens: int, top_k: int, sampler_for
) -> dict:
    """Every level against every target; `live` maps architecture to Served, `sampler_for` gives the
    memory sampler of one (or None for the baseline)."""
    names = list(targets)
    data = {"settings": asdict(sweep), "levels": {}, "rss_before_mib": {}, "rss_after_mib": {}}
    data["rss_before_mib"] = {arch: _idle_rss(served) for arch, served in live.items()}
    with tqdm(total=len(sweep.levels) * len(names), desc="sweep", unit="block", file=sys.stderr) as bar:
        for turn, level in enumerate(sweep.levels):
            data["levels"][str(level)] = {}
            for name in names[turn % len(names) :] + names[: turn % len(names)]:
                bar.set_postfix_str(f"clients={level} {name}")
                pings, stop = ([] if name in live else None), threading.Event()
                pinger = (
                    threading.Thread(target=poll_ping, args=(live[name].url, stop, pings, PING_INTERVAL_S), daemon=True)
                    if name in live
                    else None
                )
                sampler = sampler_for(name)
                if pinger:
                    pinger.start()
                if sampler is not None:
                    sampler.samples.clear()
                    sampler.__enter__()
                try:
                    outcomes, wall = closed_loop(targets[name], level, sweep.seconds, questions, max_new_tokens, top_k)
                finally:
                    stop.set()
                    if pinger:
                        pinger.join(timeout=10)
                    if sampler is not None:
                        sampler.__exit__(None, None, None)
                data["levels"][str(level)][name] = _summary(
                    outcomes, wall, pings, sampler.peak_mib if sampler is not None else None
                )
                bar.update(1)
    data["rss_after_mib"] = {arch: _idle_rss(served) for arch, served in live.items()}
    return data


def _idle_rss(served, samples: int = 3) -> float:
    """Idle RSS: read once the services have been idle long enough to hand freed memory back (the model and
    the vector service trim after IDLE_S without work); read sooner, it counts the last batch's buffers."""
    time.sleep(IDLE_S + 1.0)
    readings = []
    for _ in range(samples):
        readings.append(served.memory()["rss_mib"])
        time.sleep(0.3)
    return statistics.median(readings)


def _fmt(value, digits: int = 0, unit: str = "") -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}{unit}"


def sweep_table(sweep: dict) -> str:
    """The sweep as a Markdown table, one row per level and target, then the memory check."""
    from bench.serving.charts import LABELS

    lines = [
        "| clients | target | throughput (req/s) | vs 1 client | p50 / p95 / p99 (s) | 429 rate | 429 p99 (ms) "
        "| /ping p99 (ms) | errors |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    levels = sweep["levels"]
    first = levels[min(levels, key=int)]
    for level, targets in sorted(levels.items(), key=lambda item: int(item[0])):
        for name, row in targets.items():
            base = first.get(name, {}).get("throughput_rps")
            ratio = row["throughput_rps"] / base if base else None
            lat = row["latency_ms"]
            latency = " / ".join(_fmt(lat[k] / 1000 if lat[k] is not None else None, 2) for k in ("p50", "p95", "p99"))
            ping = row.get("ping", {}).get("p99_ms")
            lines.append(
                f"| {level} | {LABELS.get(name, name)} | {row['throughput_rps']:.2f} | {_fmt(ratio, 2, 'x')} "
                f"| {latency} | {row['rate_429']:.0%} | {_fmt(row['refused_p99_ms'], 1)} | {_fmt(ping, 1)} "
                f"| {row['errors']}{' (' + ', '.join(row['error_kinds']) + ')' if row['errors'] else ''} |"
            )
    lines += ["", "| architecture | idle RSS before the sweep | after | change |", "| --- | --- | --- | --- |"]
    for arch, before in sweep["rss_before_mib"].items():
        after = sweep["rss_after_mib"][arch]
        lines.append(
            f"| {LABELS.get(arch, arch)} | {before:,.0f} MiB | {after:,.0f} MiB | {(after / before - 1):+.1%} |"
        )
    return "\n".join(lines)


def sweep_chart(sweep: dict, path: Path) -> Path:
    """Throughput, latency, 429 rate and /ping latency against the number of clients."""
    from bench.serving.charts import COLORS, LABELS, _save, plt

    levels = sorted(sweep["levels"], key=int)
    names = list(sweep["levels"][levels[0]])
    x = [int(level) for level in levels]
    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5))
    panels = [
        (axes[0][0], "throughput (req/s)", lambda r: r["throughput_rps"]),
        (axes[0][1], "latency p50 (solid) and p95 (dashed), s", None),
        (axes[1][0], "share of requests refused with 429", lambda r: r["rate_429"]),
        (axes[1][1], "/ping p99 (ms)", lambda r: r.get("ping", {}).get("p99_ms")),
    ]
    for ax, title, value in panels:
        for name in names:
            rows = [sweep["levels"][level][name] for level in levels]
            if value is None:
                for key, style in (("p50", "-"), ("p95", "--")):
                    ys = [r["latency_ms"][key] / 1000 if r["latency_ms"][key] is not None else None for r in rows]
                    ax.plot(x, ys, style, marker="o", color=COLORS.get(name), label=f"{LABELS.get(name, name)} {key}")
            else:
                ys = [value(r) for r in rows]
                if any(y is not None for y in ys):
                    ax.plot(x, ys, marker="o", color=COLORS.get(name), label=LABELS.get(name, name))
        ax.set_xscale("log", base=2)
        ax.set_xticks(x, [str(level) for level in x])
        ax.set_xlabel("concurrent clients")
        ax.set_title(title)
        ax.legend(fontsize=7)
    fig.suptitle("Concurrency sweep (closed loop; a refused client waits Retry-After)")
    return _save(fig, path)


def _folder(results_path: Path) -> Path:
    # Where bench/serving/report.py puts the charts of a results file (publish copies its PNGs to latest/).
    return results_path.parent / results_path.stem if results_path.name != "results.json" else results_path.parent


def write_sweep(results_path: Path) -> Path | None:
    """sweep.png and sweep.md next to the report of `results_path`; None when the run had no sweep."""
    sweep = json.loads(Path(results_path).read_text()).get("sweep")
    if not sweep or not sweep.get("levels"):
        return None
    folder = _folder(Path(results_path))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sweep.md").write_text(f"# Concurrency sweep\n\n{sweep_table(sweep)}\n\n![sweep](sweep.png)\n")
    return sweep_chart(sweep, folder / "sweep.png")


def update_sweep_doc(results_path: Path, doc: Path) -> None:
    """Regenerate the table between the sweep markers of `doc` (docs/performance.md) from a results file."""
    results = json.loads(Path(results_path).read_text())
    sweep = results.get("sweep")
    text = doc.read_text()
    if not sweep or not sweep.get("levels") or DOC_BEGIN not in text or DOC_END not in text:
        return
    machine, load = results.get("machine", {}), results.get("loadavg_start") or [float("nan")]
    note = (
        f"Measured {results.get('started_utc', '')[:16]} UTC on {machine.get('cpu_model', '?')} "
        f"({machine.get('usable_cpus', '?')} usable CPUs; load average {load[0]:.1f} at the start, from other "
        f"work on the machine), {sweep['settings']['seconds']} s of closed-loop load per level and target, "
        f"{results.get('settings', {}).get('max_new_tokens', '?')} new tokens per request. "
        "Chart: [sweep.png](../bench/results/latest/sweep.png)."
    )
    head, rest = text.split(DOC_BEGIN, 1)
    doc.write_text(f"{head}{DOC_BEGIN}\n{note}\n\n{sweep_table(sweep)}\n{DOC_END}{rest.split(DOC_END, 1)[1]}")
