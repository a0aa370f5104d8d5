"""`make bench-index`: the index types measured on synthetic corpora of 10k, 100k and 1M chunks.

For each corpus size (BENCH_INDEX_SIZES, default 10000,100000,1000000) and each type (flat, hnsw, ivf) it
writes a real artifact with rag.index.write_index (build time includes tuning and writing), then measures:
search latency p50/p95 of VectorIndex.search (one query at a time, top 10, chunk texts read from disk),
recall@10 against exact search on queries that are not stored vectors, load time, and the resident
memory of two worker processes sharing the index (PSS; bench/index/workers.py). It also measures how
fast exact search gets slow (the `auto` threshold), and embedding throughput with the real model.
The corpus is described in bench/index/corpus.py. With --publish the table goes into
docs/large-corpora.md and the chart and results into bench/results/index-latest/.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from bench.core.stats import percentile
from bench.index import corpus
from bench.index.workers import index_bytes, measure_workers
from rag.index import faiss_types
from rag.index.artifact import VectorIndex, write_index

log = logging.getLogger("bench.index")

ROOT = Path(__file__).resolve().parents[2]
WORK_DIR = ROOT / "build" / "bench-index"  # the synthetic artifacts (GBs at 1M chunks), deleted as we go
RESULTS_DIR = ROOT / "bench" / "results" / "index"
PUBLISHED = ROOT / "bench" / "results" / "index-latest"
DOC = ROOT / "docs" / "large-corpora.md"
README = ROOT / "README.md"
TYPES = ("flat", "hnsw", "ivf")
SEARCH_QUERIES = 500
LATENCY_BUDGET_MS = 5.0  # the target at 1M chunks, and the line `auto` keeps exact search under
THRESHOLD_SIZES = (10_000, 25_000, 50_000, 75_000, 100_000, 200_000)
EMBED_TEXTS = 1024


def milliseconds(values: list[float], q: float) -> float:
    """The q-th percentile of `values` (bench.core.stats.percentile), rounded to 3 decimals for the tables."""
    return round(percentile(values, q), 3)


def timed_searches(index: VectorIndex, queries: np.ndarray) -> list[float]:
    """Milliseconds of each VectorIndex.search(query, 10), one query at a time."""
    timings = []
    for query in queries:
        started = time.perf_counter()
        index.search(query, 10)
        timings.append((time.perf_counter() - started) * 1000)
    return timings


def measure_type(
    size: int, index_type: str, documents, vectors: np.ndarray, queries: np.ndarray, exact: np.ndarray
) -> dict:
    """Build one artifact of `index_type`, then measure it; the artifact is deleted afterwards."""
    directory = WORK_DIR / f"{size}-{index_type}"
    shutil.rmtree(directory, ignore_errors=True)
    started = time.perf_counter()
    manifest = write_index(
        directory, documents, {"embedding_model": "synthetic", "dimension": corpus.DIMENSION}, index_type
    )
    build_s = time.perf_counter() - started
    try:
        index = VectorIndex.load(directory, "synthetic", corpus.DIMENSION)
        timed_searches(index, queries[:20])  # fault the first pages in, as a warm-up request would
        latencies = timed_searches(index, queries)
        measured_recall = faiss_types.recall(index.index, queries, exact)
        del index
        one, two = measure_workers(directory, corpus.DIMENSION, count=2)
        resident = index_bytes(directory)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    row = {
        "size": size,
        "type": index_type,
        "search_params": manifest["search_params"],
        "build_s": round(build_s, 1),
        "faiss_build_s": manifest["build_seconds"],
        "build_recall_at_10": manifest["recall_at_10"],
        "recall_at_10": round(measured_recall, 4),
        "p50_ms": milliseconds(latencies, 50),
        "p95_ms": milliseconds(latencies, 95),
        "load_s": one["load_s"][0],
        "index_mb": round(resident / 2**20, 1),
        "first_worker_index_pss_mb": round(one["index_pss_kb"][0] / 1024, 1),
        "second_worker_added_mb": round((sum(two["index_pss_kb"]) - one["index_pss_kb"][0]) / 1024, 1),
        "worker_rss_mb": [round(kb / 1024, 1) for kb in two["rss_kb"]],
        "worker_pss_mb": [round(kb / 1024, 1) for kb in two["pss_kb"]],
    }
    log.info("%s", json.dumps(row))
    return row


def measure_size(size: int) -> list[dict]:
    """Every index type on one synthetic corpus of `size` chunks."""
    vectors = corpus.corpus_vectors(size)
    documents = corpus.documents(vectors)
    queries = corpus.queries(size, SEARCH_QUERIES)
    exact = faiss_types.exact_neighbours(queries, vectors)
    return [measure_type(size, kind, documents, vectors, queries, exact) for kind in TYPES]


def flat_threshold() -> dict:
    """Exact-search p95 latency by corpus size, and the largest size still within LATENCY_BUDGET_MS."""
    import faiss

    rows = []
    for size in THRESHOLD_SIZES:
        index = faiss.IndexFlatIP(corpus.DIMENSION)
        index.add(corpus.corpus_vectors(size))
        latencies = []
        for query in corpus.queries(size, 300):
            started = time.perf_counter()
            faiss_types.search_one_thread(index, query.reshape(1, -1), 10)
            latencies.append((time.perf_counter() - started) * 1000)
        rows.append({"size": size, "p50_ms": milliseconds(latencies, 50), "p95_ms": milliseconds(latencies, 95)})
    within = [row["size"] for row in rows if row["p95_ms"] <= LATENCY_BUDGET_MS]
    return {
        "budget_ms": LATENCY_BUDGET_MS,
        "rows": rows,
        "largest_within_budget": max(within, default=None),
        "auto_flat_max_chunks": faiss_types.AUTO_FLAT_MAX_CHUNKS,
    }


def embedding_throughput() -> dict:
    """Chunks per second embedded by the configured model (RAG_EMBEDDING_MODEL) on generated text."""
    from rag.retrieval.local import load_embedder
    from rag.settings import Settings

    settings = Settings.from_env()
    embedder = load_embedder(settings)
    texts = corpus.texts(EMBED_TEXTS, seed=7)
    started = time.perf_counter()
    embedder.embed(texts)
    seconds = time.perf_counter() - started
    return {
        "model": embedder.name,
        "chunks": EMBED_TEXTS,
        "batch_size": settings.embed_batch_size,
        "threads": settings.torch_threads,
        "chunks_per_s": round(EMBED_TEXTS / seconds, 1),
    }


def run(sizes: list[int]) -> Path:
    """Measure everything; write results/<stamp>.json and return its path."""
    started = time.monotonic()
    results = {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "loadavg_start": open("/proc/loadavg").read().split()[:3],
        },
        "corpus": "bench/index/corpus.py: clustered unit vectors (dimension 384, 200 chunks per topic), "
        "~700-character generated texts",
        "threshold": flat_threshold(),
        "embedding": embedding_throughput(),
        "types": [],
    }
    for size in sizes:
        results["types"] += measure_size(size)
        results["machine"][f"loadavg_after_{size}"] = open("/proc/loadavg").read().split()[:3]
    results["duration_s"] = round(time.monotonic() - started)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{results['started_at'].replace(':', '')}.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    shutil.rmtree(WORK_DIR, ignore_errors=True)
    return path


def main(argv: list[str] | None = None) -> int:
    """`python -m bench.index.run [--publish] [--report RESULTS.json]`."""
    parser = argparse.ArgumentParser(prog="python -m bench.index.run", description=__doc__.splitlines()[0])
    parser.add_argument("--publish", action="store_true", help="refresh bench/results/index-latest/ and the docs table")
    parser.add_argument("--report", type=Path, help="only publish this results file again (no measuring)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    from bench.index.report import publish

    raw = os.environ.get("BENCH_INDEX_SIZES", "10000,100000,1000000")
    try:
        sizes = [int(part) for part in raw.split(",") if part.strip()]
    except ValueError:
        sys.stderr.write(f"BENCH_INDEX_SIZES={raw!r} must be comma-separated chunk counts, e.g. 10000,100000\n")
        return 2
    path = args.report or run(sizes)
    sys.stderr.write(f"results: {path}\n")
    if args.publish or args.report:
        sys.stderr.write(f"published: {publish(path, PUBLISHED, DOC, README)}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
