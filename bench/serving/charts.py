"""PNG charts of one results file (matplotlib, no display needed)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)

from bench.serving.analysis import ARCHS, TARGETS, latency_of  # noqa: E402

COLORS = {"baseline": "#7f7f7f", "monolito": "#1f77b4", "microservicos": "#ff7f0e"}
LABELS = {"baseline": "in-process baseline", "monolito": "monolith", "microservicos": "microservices"}
ROLE_COLORS = {
    "monolith": "#1f77b4",
    "llm_service": "#d62728",
    "vector_service": "#2ca02c",
    "orchestrator": "#9467bd",
    "supervisor": "#8c564b",
}
STATUS_COLORS = {200: "#2ca02c", 503: "#ff7f0e", 0: "#d62728"}


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def latency_chart(results: dict, path: Path) -> Path:
    """End-to-end latency distribution per target, one panel per concurrency."""
    levels = list(results["latency"]["baseline"])
    fig, axes = plt.subplots(1, len(levels), figsize=(4.2 * len(levels), 4), squeeze=False)
    for ax, level in zip(axes[0], levels):
        data = [[v / 1000 for v in latency_of(results["latency"][t][level])] for t in TARGETS]
        box = ax.boxplot(data, patch_artist=True, whis=(5, 95), showfliers=False)
        for patch, target in zip(box["boxes"], TARGETS):
            patch.set_facecolor(COLORS[target])
            patch.set_alpha(0.5)
        for i, values in enumerate(data, start=1):
            ax.scatter([i] * len(values), values, s=8, color="black", alpha=0.5, zorder=3)
        ax.set_xticks(range(1, len(TARGETS) + 1), [LABELS[t] for t in TARGETS], rotation=15)
        ax.set_title(f"concurrency {level}")
        ax.set_ylabel("end-to-end latency (s)")
    fig.suptitle("Latency per request (box: p25-p75, whiskers: p5-p95, dots: every request)")
    return _save(fig, path)


def overhead_chart(results: dict, path: Path) -> Path:
    """Median difference from the baseline (95 % interval), and the non-generation time per stage."""
    summary, levels = results["summary"], list(results["latency"]["baseline"])
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    width = 0.38
    for offset, arch in zip((-width / 2, width / 2), ARCHS):
        diffs = [summary["overhead"][level][arch]["p50_vs_baseline"] for level in levels]
        # Percent of the baseline median, so that every concurrency fits one scale.
        bases = [summary["latency"]["baseline"][level]["e2e_ms"]["p50"] / 100 for level in levels]
        # A level with no usable pair (every block stalled) has no difference: no bar, no error bar.
        usable = [d["difference"] is not None and bool(b) for d, b in zip(diffs, bases)]
        centres = [d["difference"] / b if ok else float("nan") for d, b, ok in zip(diffs, bases, usable)]
        errors = [
            [c - d["low"] / b if ok else 0.0 for c, d, b, ok in zip(centres, diffs, bases, usable)],
            [d["high"] / b - c if ok else 0.0 for c, d, b, ok in zip(centres, diffs, bases, usable)],
        ]
        left.bar(
            [i + offset for i in range(len(levels))],
            centres,
            width,
            yerr=errors,
            capsize=4,
            color=COLORS[arch],
            label=LABELS[arch],
        )
    left.axhline(0, color="black", linewidth=0.8)
    left.set_xticks(range(len(levels)), [f"c={level}" for level in levels])
    left.set_ylabel("median latency vs baseline (% of baseline p50)")
    left.set_title("Serving overhead vs the in-process baseline (95 % CI)")
    left.legend()
    level = levels[0]
    stages = ("retrieve", "remainder")
    for i, target in enumerate(TARGETS):
        bottom = 0.0
        for stage, hatch in zip(stages, ("", "//")):
            value = summary["latency"][target][level]["stages_ms"][stage]["p50"] or 0.0
            right.bar(
                i,
                value,
                0.6,
                bottom=bottom,
                color=COLORS[target],
                hatch=hatch,
                edgecolor="white",
                label=stage if i == 0 else None,
            )
            bottom += value
    right.set_xticks(range(len(TARGETS)), [LABELS[t] for t in TARGETS])
    right.set_ylabel("median ms (generation excluded)")
    right.set_title(f"Time outside generation, c={level}")
    right.legend(["retrieve", "remainder = end-to-end - server total"])
    return _save(fig, path)


def memory_chart(results: dict, path: Path) -> Path:
    """Steady RSS per process role (stacked), with peak RSS and PSS marked."""
    memory = results["summary"]["memory"]
    fig, ax = plt.subplots(figsize=(9.5, 4.5))
    ax.bar(0, memory["baseline"]["rss_mib"], 0.6, color=COLORS["baseline"], label="baseline (one process)")
    for i, arch in enumerate(ARCHS, start=1):
        bottom = 0.0
        for role, value in sorted(memory[arch]["by_role_mib"].items(), key=lambda item: -item[1]):
            ax.bar(i, value, 0.6, bottom=bottom, color=ROLE_COLORS.get(role, "#bbbbbb"), label=role)
            bottom += value
        ax.scatter(
            i,
            memory[arch]["peak_rss_mib"],
            marker="_",
            s=900,
            color="black",
            zorder=3,
            label="peak RSS under load" if i == 1 else None,
        )
        ax.scatter(
            i,
            memory[arch]["steady_pss_mib"],
            marker="x",
            s=60,
            color="black",
            zorder=3,
            label="steady PSS (shared pages counted once)" if i == 1 else None,
        )
    ax.set_xticks(range(3), [LABELS[t] for t in TARGETS])
    ax.set_ylabel("MiB")
    ax.set_title("Memory: steady RSS summed over every process, by role")
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles))
    ax.legend(unique.values(), unique.keys(), fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return _save(fig, path)


def cold_start_chart(results: dict, path: Path) -> Path:
    """Every cold start: model load in a fresh process, and each architecture to /ping 200."""
    cold = results["cold_start"]
    series = [("model load (in-process)", [run["model_load_s"] for run in cold["baseline"]], COLORS["baseline"])]
    series += [(f"{LABELS[arch]} to /ping 200", [run["ready_s"] for run in cold[arch]], COLORS[arch]) for arch in ARCHS]
    fig, ax = plt.subplots(figsize=(7, 4))
    for i, (_label, values, color) in enumerate(series):
        ax.scatter([i] * len(values), values, color=color, s=40, zorder=3)
        ax.hlines(sorted(values)[len(values) // 2], i - 0.25, i + 0.25, color=color, linewidth=2)
    ax.set_xticks(range(len(series)), [label for label, _, _ in series], rotation=10)
    ax.set_ylabel("seconds from process start")
    ax.set_ylim(bottom=0)
    ax.set_title("Cold start (dots: each run, line: median)")
    return _save(fig, path)


def fault_chart(results: dict, path: Path) -> Path:
    """Per experiment: each request as a bar from sent to answered, and each probe's status."""
    faults = results.get("faults", [])
    fig, axes = plt.subplots(max(1, len(faults)), 1, figsize=(11, 2.6 * max(1, len(faults))), squeeze=False)
    for ax, fault in zip(axes[:, 0], faults):
        names = sorted({name for _, name, _ in fault["timeline"]["probes"]})
        lanes: list[float] = []  # each request on the first lane free when it starts: one lane per client
        for request in sorted(fault["timeline"]["requests"], key=lambda r: r["started"]):
            lane = next((i for i, end in enumerate(lanes) if end <= request["started"] + 1e-3), len(lanes))
            lanes[lane : lane + 1] = [request["finished"]]
            ax.hlines(
                -0.2 * lane,
                request["started"],
                request["finished"],
                linewidth=5,
                color=STATUS_COLORS[200] if request["ok"] else STATUS_COLORS[0],
            )
        for row, name in enumerate(names, start=1):
            points = [(t, code) for t, n, code in fault["timeline"]["probes"] if n == name]
            ax.scatter(
                [t for t, _ in points],
                [row] * len(points),
                s=10,
                c=[STATUS_COLORS.get(code, "#7f7f7f") for _, code in points],
            )
        ax.axvline(0, color="black", linestyle="--")
        ax.set_yticks(range(len(names) + 1), ["requests", *names])
        ax.set_title(
            f"{LABELS[fault['architecture']]}: {fault['killed']} worker killed at t=0 "
            f"(failed {fault['failed']} requests; first answer after {fault['first_answer_s'] or 0:.1f} s)",
            fontsize=10,
        )
    axes[-1, 0].set_xlabel("seconds from the kill (green: 200 / answered, orange: 503, red: failed or no answer)")
    return _save(fig, path)


def write_charts(results: dict, folder: Path) -> dict[str, str]:
    """Every chart into `folder`; returns {name: file name}."""
    folder.mkdir(parents=True, exist_ok=True)
    charts = {
        "latency": latency_chart,
        "overhead": overhead_chart,
        "memory": memory_chart,
        "cold_start": cold_start_chart,
        "faults": fault_chart,
    }
    return {name: draw(results, folder / f"{name}.png").name for name, draw in charts.items()}


def soak_chart(report: dict, path: Path) -> Path:
    """Per architecture: resident memory every sample, and answered/failed requests per 10 s, with the kills."""
    entries = report["architectures"]
    fig, axes = plt.subplots(2, len(entries), figsize=(6.5 * len(entries), 6.5), squeeze=False)
    for column, entry in enumerate(entries):
        arch, color = entry["architecture"], COLORS[entry["architecture"]]
        memory, load = axes[0][column], axes[1][column]
        memory.plot(
            [t / 60 for t, _ in entry["rss_mib"]], [mib for _, mib in entry["rss_mib"]], marker="o", color=color
        )
        memory.set_title(
            f"{LABELS[arch]}: RSS of the process tree (growth after warm-up "
            f"{100 * (entry['rss_growth_after_warmup'] or 0):+.1f} %)",
            fontsize=9,
        )
        memory.set_ylabel("MiB")
        buckets: dict[tuple[int, bool], int] = {}
        for _, finished, status in entry["timeline"]:
            key = (int(finished // 10), status == 200)
            buckets[key] = buckets.get(key, 0) + 1
        for ok, shade in ((True, STATUS_COLORS[200]), (False, STATUS_COLORS[503])):
            xs = sorted(b for b, good in buckets if good == ok)
            if not xs:
                continue
            load.bar(
                [x * 10 / 60 for x in xs],
                [buckets[(x, ok)] for x in xs],
                width=10 / 60,
                color=shade,
                alpha=0.8,
                label="answered" if ok else "failed",
                align="edge",
            )
        for kill in entry["kills"]:
            for ax in (memory, load):
                ax.axvline(kill["at_s"] / 60, color="#d62728", linestyle="--", linewidth=0.8)
        load.axvline(entry["sigterm"]["at_s"] / 60, color="black", linestyle=":", linewidth=1)
        load.set_xlabel("minutes (dashed: a service killed; dotted: SIGTERM)")
        load.set_ylabel("requests per 10 s")
        load.legend(fontsize=8)
    return _save(fig, path)
