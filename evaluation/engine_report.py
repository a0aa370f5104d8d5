"""`make bench-engines`' rules, table, chart and headline, from one run's results (evaluation/engines.py).

The engine rule (per model): the fastest variant (c=1 p50) whose accuracy and refusal rate on every dev set are
each within QUALITY_POINTS of torch-float32's on the same model in the same run (a grounded service must not
trade its refusals of what the documents cannot answer for speed, any more than its correct answers). Then the model ladder's rule
(evaluation/ladder.py's `choose`) with each model's fastest variant: the highest held-out accuracy whose
c=1 p50 is at most 1.5x the current default tier's torch-float32 reference.
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)

from bench.core.config import DEFAULT_RESULTS_DIR, REPO_ROOT  # noqa: E402
from bench.core.machine import describe  # noqa: E402
from bench.core.stats import median_interval, percentile  # noqa: E402
from evaluation.evaluate import percent_text  # noqa: E402
from evaluation.ladder import HELD_OUT, choose  # noqa: E402
from evaluation.llama_peer import PEER_OF, PRECISIONS, floor_ms_per_token  # noqa: E402
from evaluation.quality import replace_between  # noqa: E402

REFERENCE = "torch-float32"
# A variant may lose at most 2 points of accuracy (answerable questions) and 2 of refusal rate (unanswerable
# ones) on any set against the reference.
QUALITY_POINTS = 0.02
QUALITY_METRICS = ("accuracy", "refusal")
BYTES_PER_WEIGHT = {"float32": 4.0, "bfloat16": 2.0, "int8": 1.0} | PRECISIONS
DOC = REPO_ROOT / "docs" / "performance.md"
BEGIN, END = "<!-- engines:begin -->", "<!-- engines:end -->"
README = REPO_ROOT / "README.md"
README_BEGIN, README_END = "<!-- engines-summary:begin -->", "<!-- engines-summary:end -->"
CHART = REPO_ROOT / "docs" / "images" / "engines.png"


def _floor(result: dict, tier: str, precision: str) -> float | None:
    parameters, bandwidth = result["parameters"].get(tier), result["bandwidth"]["gb_per_s"]
    if not parameters or not bandwidth or precision not in BYTES_PER_WEIGHT:
        return None
    return round(floor_ms_per_token(parameters, BYTES_PER_WEIGHT[precision], bandwidth), 2)


def _mean(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return round(sum(values) / len(values), 4) if values else None


def variant_row(result: dict, tier: str, run: dict) -> dict:
    """The figures of one variant of one tier: quality per set, then speed and memory over the whole run."""
    sets = run["sets"]
    latencies = [r["latency_ms"] for s in sets.values() for r in s["records"] if r["error"] is None]
    prefill = [v for s in sets.values() for v in s["stages"]["prefill_tokens_per_s"]]
    decode = [v for s in sets.values() for v in s["stages"]["decode_ms_per_token"]]
    interval = median_interval(latencies)
    throughput = {str(level): figures for level, figures in run.get("throughput", {}).items()}
    return {
        "quality": {name: {k: s["summary"][k] for k in ("accuracy", "refusal")} for name, s in sets.items()},
        "held_out_accuracy": _mean([sets[n]["summary"]["accuracy"] for n in HELD_OUT if n in sets]),
        "latency_ms_p50": percentile(latencies, 50),
        "latency_ms_p95": percentile(latencies, 95),
        "latency_ms_p50_interval": [interval["low"], interval["high"]],
        "prefill_tokens_per_s_p50": percentile(prefill, 50),
        "decode_ms_per_token_p50": percentile(decode, 50),
        "floor_ms_per_token": _floor(result, tier, run["precision"]),
        "answers_per_s": {level: f["answers_per_s"] for level, f in throughput.items()},
        # Latency under load, each level's p50 / p95 / p99 (runs from before the tail was kept have p50 only).
        "latency_ms_under_load": {
            level: [f.get(f"latency_ms_p{q}") for q in (50, 95, 99)] for level, f in throughput.items() if level != "1"
        },
        "overloaded_429": sum(f.get("overloaded_429", 0) for f in throughput.values()),
        "peak_rss_mib": max(s["peak_rss_mib"] for s in sets.values()),
        "ready_s": max(s["ready_s"] for s in sets.values()),
        "disk_mib": run["model_files"]["mib"],
    }


def peer_row(result: dict, tier: str, precision: str, peer: dict) -> dict:
    """llama-server's figures on one tier at one precision (or why it was skipped)."""
    if "skipped" in peer:
        return {"skipped": peer["skipped"]}
    single, burst = peer["c1"], peer["c8"]
    return {
        "latency_ms_p50": single["latency_ms_p50"],
        "latency_ms_p95": single["latency_ms_p95"],
        "prefill_tokens_per_s_p50": single["prefill_tokens_per_s_p50"],
        "decode_ms_per_token_p50": single["decode_ms_per_token_p50"],
        "floor_ms_per_token": _floor(result, tier, precision),
        "answers_per_s": {"1": single["answers_per_s"], "8": burst["answers_per_s"]},
        "peak_rss_mib": peer["rss_mib"],
        "ready_s": peer["ready_s"],
        "disk_mib": peer["disk_mib"],
    }


def fastest_within(rows: dict, points: float = QUALITY_POINTS) -> dict:
    """The engine rule for one model: the fastest variant (c=1 p50) within `points` of the reference's
    accuracy and refusal rate on every set; ties keep the reference. Says why each other variant lost."""
    if REFERENCE not in rows:
        return {"variant": None, "reason": f"{REFERENCE}, the reference, was not measured"}
    reference = rows[REFERENCE]["quality"]
    verdicts, eligible = {}, []
    for name, row in rows.items():
        lost = [
            f"{metric} {s} {100 * row['quality'][s][metric]:.1f} % < {100 * q[metric]:.1f} % - {100 * points:.0f}"
            for s, q in reference.items()
            for metric in QUALITY_METRICS
            if row["quality"][s].get(metric) is not None
            and q.get(metric) is not None
            and row["quality"][s][metric] < q[metric] - points - 1e-9
        ]
        verdicts[name] = ", ".join(lost) if lost else "within the quality limits"
        if not lost:
            eligible.append(name)
    best = min(eligible, key=lambda n: (rows[n]["latency_ms_p50"], n != REFERENCE))
    for name in eligible:
        if name != best:
            verdicts[name] = (
                f"slower: c=1 p50 {rows[name]['latency_ms_p50']:,.0f} ms > {rows[best]['latency_ms_p50']:,.0f} ms"
            )
    return {"variant": best, "verdicts": verdicts}


def decide(result: dict) -> dict:
    """Add rows, peer rows and both decisions to `result` (and return them)."""
    result["rows"] = {
        tier: {name: variant_row(result, tier, run) for name, run in runs.items()}
        for tier, runs in result["runs"].items()
    }
    result["peer_rows"] = {
        tier: (
            {"all": {"skipped": peers["skipped"]}}
            if "skipped" in peers
            else {p: peer_row(result, tier, p, v) for p, v in peers.items()}
        )
        for tier, peers in result["peers"].items()
    }
    engines = {tier: fastest_within(rows) for tier, rows in result["rows"].items() if rows}
    default = result["default_tier"]
    best = {
        tier: result["rows"][tier][choice["variant"]]
        | {"peak_rss_mib": {"monolito": result["rows"][tier][choice["variant"]]["peak_rss_mib"]}}
        for tier, choice in engines.items()
        if choice["variant"]
    }
    reference = result["rows"].get(default, {}).get(REFERENCE)
    ladder = choose(best, default, reference["latency_ms_p50"] if reference else None)
    if reference is None and "reason" not in ladder:
        ladder = {"tier": None, "reason": f"{REFERENCE} of the default {default} was not measured"}
    result["decision"] = {"engines": engines, "ladder": ladder}
    return result["decision"]


def _num(value, digits: int = 0) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


def _rates(answers: dict) -> str:
    return " / ".join(_num(answers.get(level), 2) if level in answers else "-" for level in ("1", "8", "32"))


def table(result: dict) -> str:
    """The Markdown table of docs/performance.md: one row per model and engine, then the peer's rows."""
    sets, decision = result["sets"], result["decision"]
    header = (
        "| model | engine | "
        + " | ".join(f"{name}: accuracy / refusal" for name in sets)
        + " | c=1 p50 / p95 (ms) | prefill (tokens/s) | decode (ms/token) | floor (ms/token) "
        "| answers/s at 1 / 8 / 32 clients | peak RSS (MiB) | ready (s) | model files (MiB) |"
    )
    lines = [header, "|" + " --- |" * (len(sets) + 10)]
    for tier, rows in result["rows"].items():
        fastest = decision["engines"].get(tier, {}).get("variant")
        for name, row in rows.items():
            mark = " (**fastest**)" if name == fastest else ""
            quality = [
                f"{percent_text(row['quality'][s]['accuracy'])} / {percent_text(row['quality'][s]['refusal'])}"
                for s in sets
            ]
            lines.append(f"| `{tier}` | {name}{mark} | " + " | ".join(quality) + " | " + _speed(row) + " |")
        for precision, row in result["peer_rows"].get(tier, {}).items():
            label = "llama-server (peer)" if precision == "all" else f"llama-server {precision} (peer)"
            if "skipped" in row:
                lines.append(
                    f"| `{tier}` | {label} | " + " | ".join(["n/a"] * (len(sets) + 7)) + f" | n/a: {row['skipped']} |"
                )
            else:
                lines.append(f"| `{tier}` | {label} | " + " | ".join(["n/a"] * len(sets)) + " | " + _speed(row) + " |")
    return "\n".join(lines + ["", _footer(result)])


def _speed(row: dict) -> str:
    return " | ".join(
        (
            f"{_num(row['latency_ms_p50'])} / {_num(row['latency_ms_p95'])}",
            _num(row["prefill_tokens_per_s_p50"]),
            _num(row["decode_ms_per_token_p50"], 1),
            _num(row["floor_ms_per_token"], 1),
            _rates(row["answers_per_s"]),
            _num(row["peak_rss_mib"]),
            _num(row["ready_s"]),
            _num(row["disk_mib"]),
        )
    )


def _cpu(result: dict) -> str:
    """', AMD EPYC (AuthenticAMD, 2 cores; avx, avx2)' for a run that recorded its CPU, else nothing."""
    return f", {describe(result['cpu'])}" if result.get("cpu") else ""


def _footer(result: dict) -> str:
    decision, bandwidth = result["decision"], result["bandwidth"]
    engines = "; ".join(
        f"`{tier}`: {c['variant'] or c.get('reason')}"
        + (
            f" ({others})"
            if (others := ", ".join(f"{n} {v}" for n, v in c.get("verdicts", {}).items() if n != c["variant"]))
            else ""
        )
        for tier, c in decision["engines"].items()
    )
    ladder = decision["ladder"]
    verdicts = "; ".join(f"`{t}`: {v}" for t, v in ladder.get("verdicts", {}).items())
    left_out = "; ".join(f"{name}: {reason}" for name, reason in result["left_out"].items()) or "none"
    image = result["image"]
    image_text = f"{image['image']} {_num(image['mib'])} MiB" if image.get("mib") else f"n/a ({image.get('reason')})"
    load = result["loadavg_start"][0]
    return (
        f"Measured {result['started_utc']} on this machine's {result['cpu_count']} CPU cores{_cpu(result)} (load average "
        f"{load:.1f} at the start), monolith, greedy; c=1 figures from the evaluation's own requests (the peer's: "
        "its /completion alone, on our prompts, without retrieval or our HTTP layer), prefill and "
        "decode are medians of the service's per-request stage lines; the 8- and 32-client levels ran with "
        f"RAG_MAX_CONCURRENT_REQUESTS=32, so nothing was turned away ({sum(r.get('overloaded_429', 0) for rows in result['rows'].values() for r in rows.values())} "
        f"429s). Floor: parameters x bytes per weight / {bandwidth['gb_per_s']} GB/s, this machine's copy bandwidth "
        f"(numpy, {bandwidth['threads']} threads, {bandwidth['array_mib']} MiB arrays, best of {bandwidth['repeats']}; "
        f"the better of {bandwidth.get('start_gb_per_s')} GB/s at the start and {bandwidth.get('end_gb_per_s')} at the end). "
        f"Fastest within {100 * QUALITY_POINTS:.0f} points of {REFERENCE}'s accuracy and refusal rate on every set: "
        f"{engines}. "
        f"The ladder's rule with each model's fastest engine (c=1 p50 budget "
        f"{_num(ladder.get('latency_budget_ms'))} ms, 1.5x the default's {REFERENCE}) chose "
        f"`{ladder.get('tier')}`" + (f" ({ladder['reason']})" if "reason" in ladder else f": {verdicts}") + ". "
        f"Left out: {left_out}. Image: {image_text}. Peer: {_peer_text(result.get('peer_build', {}))}."
    )


def _peer_text(build: dict) -> str:
    if not build.get("binary"):
        return f"n/a ({build.get('reason', 'not recorded')})"
    return f"llama-server from {build.get('source')} ({build['version']}), built with {' '.join(build['options'])}"


def headline(result: dict) -> str:
    """The README's one line: each model's fastest engine against the peer and the floor, and the ladder's choice."""
    parts = []
    for tier, choice in result["decision"]["engines"].items():
        if not choice["variant"]:
            continue
        row = result["rows"][tier][choice["variant"]]
        precision = PEER_OF.get(result["runs"][tier][choice["variant"]]["precision"])  # the peer at its precision
        peer = result["peer_rows"].get(tier, {}).get(precision, {})
        versus = (
            f"llama-server {precision} {_num(peer['decode_ms_per_token_p50'], 1)}, "
            if "decode_ms_per_token_p50" in peer
            else ""
        )
        parts.append(
            f"`{tier}` {choice['variant']}, c=1 p50 {_num(row['latency_ms_p50'])} ms, decode "
            f"{_num(row['decode_ms_per_token_p50'], 1)} ms/token ({versus}floor {_num(row['floor_ms_per_token'], 1)})"
        )
    ladder = result["decision"]["ladder"]["tier"]
    return (
        f"Fastest CPU engine per model ({result['started_utc']}): "
        + "; ".join(parts)
        + f"; the ladder's rule then chose `{ladder}`."
    )


def chart(result: dict, path: Path = CHART) -> Path:
    """c=1 p50 latency per model and engine, and decode ms/token against the bandwidth floor (log scale)."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    labels, latency, decode, floor = [], [], [], []
    for tier, rows in result["rows"].items():
        entries = list(rows.items()) + [
            (f"llama-server {p}", r) for p, r in result["peer_rows"].get(tier, {}).items() if "skipped" not in r
        ]
        for name, row in entries:
            labels.append(f"{tier.split('-instruct')[0]}\n{name}")
            latency.append((row["latency_ms_p50"] or 0) / 1000)
            decode.append(row["decode_ms_per_token_p50"] or 0)
            floor.append(row["floor_ms_per_token"])
    colors = ["#ff7f0e" if "llama-server" in label else "#1f77b4" for label in labels]
    positions = range(len(labels))
    left.bar(positions, latency, color=colors)
    left.set_ylabel("c=1 p50 latency (s)")
    left.set_title("Latency of one request")
    right.bar(positions, decode, color=colors, label="decode (median)")
    right.scatter(
        positions,
        [f if f is not None else float("nan") for f in floor],
        marker="_",
        s=600,
        color="black",
        label="bandwidth floor",
        zorder=3,
    )
    right.set_yscale("log")
    right.set_ylabel("ms per token (log)")
    right.set_title("Decode vs the memory-bandwidth floor")
    right.legend(fontsize=8, loc="best")
    for ax in (left, right):
        ax.set_xticks(list(positions), labels, rotation=70, fontsize=7)
    fig.suptitle(f"make bench-engines, {result['started_utc']} (blue: this service's engines, orange: llama.cpp)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def slim(result: dict) -> dict:
    """The results without per-question records and per-request lists: what bench/results/latest keeps."""

    def trim(run: dict) -> dict:
        sets = {
            name: {k: v for k, v in s.items() if k not in ("records", "stages")}
            | {"misses": [r["line"] for r in s["records"] if not r["correct"]]}
            for name, s in run["sets"].items()
        }
        return run | {"sets": sets}

    return result | {
        "runs": {tier: {name: trim(run) for name, run in runs.items()} for tier, runs in result["runs"].items()}
    }


def publish(result: dict, doc: Path = DOC, readme: Path = README, chart_path: Path = CHART) -> None:
    """bench/results/latest/engines.json, the docs table, the chart and the README headline."""
    latest = DEFAULT_RESULTS_DIR / "latest"
    latest.mkdir(parents=True, exist_ok=True)
    (latest / "engines.json").write_text(json.dumps(slim(result), indent=1, ensure_ascii=False) + "\n")
    replace_between(doc, BEGIN, END, table(result) + f"\n\n![bench-engines](images/{chart_path.name})")
    chart(result, chart_path)
    replace_between(readme, README_BEGIN, README_END, headline(result))
