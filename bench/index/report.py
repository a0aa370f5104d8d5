"""The published side of `make bench-index`: the table in docs/large-corpora.md and its chart."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)

BEGIN, END = "<!-- bench-index:begin -->", "<!-- bench-index:end -->"
SUMMARY_BEGIN, SUMMARY_END = "<!-- bench-index-summary:begin -->", "<!-- bench-index-summary:end -->"
CHART = "index-types.png"
COLORS = {"flat": "#7f7f7f", "hnsw": "#1f77b4", "ivf": "#ff7f0e"}


def _size(count: int) -> str:
    return f"{count // 1_000_000}M" if count >= 1_000_000 and count % 1_000_000 == 0 else f"{count // 1000}k"


def _params(row: dict) -> str:
    return ", ".join(f"{key}={value}" for key, value in row["search_params"].items()) or "exact"


def render(results: dict) -> str:
    """Markdown: the conditions, the per-type table, the exact-search threshold and embedding throughput."""
    machine, embedding, threshold = results["machine"], results["embedding"], results["threshold"]
    loads = ", ".join(
        f"{key.removeprefix('loadavg_')}: {' '.join(value)}"
        for key, value in machine.items()
        if key.startswith("loadavg")
    )
    lines = [
        f"Measured {results['started_at'][:10]} by `make bench-index` on {machine['cpus']} shared CPU cores "
        f"(load average {loads}), in {results['duration_s'] // 60} min. Corpus: {results['corpus']}.",
        "",
        "| chunks | type | search params | p50 ms | p95 ms | recall@10 | build s | load s | index MB "
        "| 1st worker PSS MB | 2nd worker adds MB |",
        "| ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in results["types"]:
        lines.append(
            f"| {_size(row['size'])} | {row['type']} | {_params(row)} | {row['p50_ms']:.2f} | "
            f"{row['p95_ms']:.2f} | {row['recall_at_10']:.3f} | {row['build_s']:.1f} | {row['load_s']:.3f} | "
            f"{row['index_mb']:.0f} | {row['first_worker_index_pss_mb']:.0f} | "
            f"{row['second_worker_added_mb']:.1f} |"
        )
    if results.get("note"):
        lines += ["", results["note"]]
    sweep = ", ".join(f"{_size(row['size'])}: {row['p95_ms']:.2f} ms" for row in threshold["rows"])
    lines += [
        "",
        f"Exact search p95 by corpus size: {sweep}. The largest size within {threshold['budget_ms']:.0f} ms was "
        f"{_size(threshold['largest_within_budget'] or 0)}; `auto` keeps exact search up to "
        f"{threshold['auto_flat_max_chunks']:,} chunks.",
        "",
        f"Embedding throughput ({embedding['model']}, batch {embedding['batch_size']}, {embedding['threads']} "
        f"threads, {embedding['chunks']} generated chunks): **{embedding['chunks_per_s']:.0f} chunks/s**, so "
        f"one such machine embeds a million chunks in about {1_000_000 / embedding['chunks_per_s'] / 3600:.1f} h.",
        "",
        f"![search latency and recall by index type](../bench/results/index-latest/{CHART})",
    ]
    return "\n".join(lines)


def render_summary(results: dict) -> str:
    """The README's lines: every type at the largest size measured, against the issue's targets."""
    largest = max(row["size"] for row in results["types"])
    lines = [
        f"| {_size(largest)} chunks | search p95 | recall@10 | build | load | 2nd worker adds |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in (row for row in results["types"] if row["size"] == largest):
        share = 100 * row["second_worker_added_mb"] / max(row["index_mb"], 1e-9)
        lines.append(
            f"| {row['type']} ({_params(row)}) | {row['p95_ms']:.2f} ms | {row['recall_at_10']:.3f} | "
            f"{row['build_s']:.0f} s | {row['load_s']:.3f} s | {row['second_worker_added_mb']:.1f} MB "
            f"({share:.1f} % of {row['index_mb']:.0f} MB) |"
        )
    lines += [
        "",
        f"Embedding: {results['embedding']['chunks_per_s']:.0f} chunks/s on this machine "
        f"({results['started_at'][:10]}, load average at start {' '.join(results['machine']['loadavg_start'])}).",
    ]
    return "\n".join(lines)


def chart(results: dict, path: Path) -> Path:
    """p95 latency (log scale) and recall@10 against corpus size, one line per index type."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for kind, color in COLORS.items():
        rows = [row for row in results["types"] if row["type"] == kind]
        sizes = [row["size"] for row in rows]
        left.plot(sizes, [row["p95_ms"] for row in rows], marker="o", color=color, label=kind)
        right.plot(sizes, [row["recall_at_10"] for row in rows], marker="o", color=color, label=kind)
    left.axhline(5.0, color="black", linestyle="--", linewidth=0.8, label="5 ms target")
    for ax, label in ((left, "search p95 (ms)"), (right, "recall@10 vs exact")):
        ax.set_xscale("log")
        ax.set_xlabel("chunks")
        ax.set_ylabel(label)
        ax.legend()
    left.set_yscale("log")
    right.axhline(0.95, color="black", linestyle="--", linewidth=0.8)
    fig.suptitle("Index types on synthetic 384-dimensional corpora")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def replace_section(document: Path, body: str, begin: str = BEGIN, end: str = END) -> None:
    """Put `body` between the `begin` and `end` markers of `document`."""
    text = document.read_text()
    if begin not in text or end not in text:
        raise ValueError(f"{document} lacks the {begin} / {end} markers where the table belongs")
    head, rest = text.split(begin, 1)
    tail = rest.split(end, 1)[1]
    document.write_text(f"{head}{begin}\n{body}\n{end}{tail}")


def publish(results_path: Path, folder: Path, document: Path, readme: Path | None = None) -> Path:
    """Copy the results to `folder`, draw the chart there, and regenerate the tables in `document` and
    (when given) the README's summary."""
    results = json.loads(Path(results_path).read_text())
    folder.mkdir(parents=True, exist_ok=True)
    if Path(results_path).resolve() != (folder / "results.json").resolve():
        shutil.copyfile(results_path, folder / "results.json")
    chart(results, folder / CHART)
    replace_section(document, render(results))
    if readme is not None:
        replace_section(readme, render_summary(results), SUMMARY_BEGIN, SUMMARY_END)
    return folder
