"""HNSW at 1M chunks alone: `python -m bench.index.hnsw_1m` (about 11 min on 2 quiet cores, 3 GB of RAM).

The same synthetic vectors and the same build and tuning as `make bench-index`'s hnsw row
(bench/index/corpus.py corpus_vectors, rag.index.faiss_types.build_tuned), then recall@10 against exact search on 500
queries that are not stored vectors, and FAISS search latency one query at a time on one thread. Unlike
`make bench-index` it writes no artifact, so the latency excludes reading the chunk texts from disk.
Prints its progress and, last, one JSON line with the figures.
"""

from __future__ import annotations

import json
import sys
import time

from bench.index import corpus
from bench.index.run import milliseconds
from rag.index import faiss_types

SIZE = 1_000_000
QUERIES = 500


def main() -> int:
    started = time.perf_counter()
    vectors = corpus.corpus_vectors(SIZE)
    sys.stderr.write(f"{SIZE:,} vectors in {time.perf_counter() - started:.1f} s; building hnsw (minutes)\n")
    started = time.perf_counter()
    index, manifest = faiss_types.build_tuned(vectors, "hnsw")
    build_s = time.perf_counter() - started
    queries = corpus.queries(SIZE, QUERIES)
    recall = faiss_types.recall(index, queries, faiss_types.exact_neighbours(queries, vectors, 10))
    timings = []
    for query in queries:  # as the service searches: one query, on the calling thread alone
        began = time.perf_counter()
        faiss_types.search_one_thread(index, query[None, :], 10)
        timings.append((time.perf_counter() - began) * 1000)
    print(
        json.dumps(
            {
                "chunks": SIZE,
                "build_and_tune_s": round(build_s, 1),
                "manifest": manifest,
                "recall_at_10": round(recall, 4),
                "search_p50_ms": milliseconds(timings, 50),
                "search_p95_ms": milliseconds(timings, 95),
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
