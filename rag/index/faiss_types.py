"""FAISS index types, chosen by corpus size: exact search while it is fast, approximate beyond.

    flat   IndexFlatIP: exact; every query reads every vector (~0.12 ms per 1,000 chunks here).
    hnsw   IndexHNSWFlat: a navigable graph over the same vectors; ~0.5 ms at 100,000 chunks here.
    ivf    IndexIVFFlat: vectors clustered into lists, a query scans `nprobe` of them; fastest to build.
    auto   flat up to AUTO_FLAT_MAX_CHUNKS (25,000), hnsw beyond (`make bench-index` measured where flat
           stops being fast enough; docs/large-corpora.md has the figures).

At build time the approximate types are tuned: the smallest efSearch (hnsw) or nprobe (ivf) whose recall@10
against exact search reaches RECALL_TARGET on a sample of queries is kept, with the recall it measured,
in the manifest. RAG_INDEX_EF_SEARCH and RAG_INDEX_NPROBE override them at serve time.

Every type is read memory-mapped: the vectors (and the HNSW graph, and the IVF lists) stay in the page
cache, which all workers of a machine share, instead of one heap copy per worker.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from rag.errors import ConfigError
from rag.settings import INDEX_TYPES

log = logging.getLogger(__name__)

# Measured by `make bench-index` on this 2-core machine: exact search over 384-dimensional chunks
# passes 5 ms per query (the search target at a million chunks) between 20,000 and 30,000 chunks
# with the cores busy (p50; ~40,000 when idle, at 0.12 ms per 1,000 chunks). Below, exact search is
# fast and loses nothing; above, it costs more than embedding the query.
AUTO_FLAT_MAX_CHUNKS = 25_000
RECALL_TARGET = 0.95  # recall@10 against exact search that tuning aims for
RECALL_QUERIES = 200  # sample queries for tuning and for the recall recorded in the manifest
RECALL_K = 10
QUERY_NOISE = 0.75  # a sample query is a stored vector plus noise of this norm: cosine ~0.8 to it
HNSW_M = 32  # graph degree: 32 keeps recall high on 384-dimensional embeddings
# FAISS's default, 40, left a graph that missed 0.95 recall@10 at 100,000 overlapping-topic chunks even
# with efSearch 512 (0.90); 120 reached 0.95 at efSearch 64 on 30,000 (0.86 with 40), building 1.8x slower.
HNSW_EF_CONSTRUCTION = 120
EF_SEARCH_CANDIDATES = (16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512)
IVF_TRAIN_PER_LIST = 50  # k-means training points per list (FAISS warns below 39)


def _faiss():
    """FAISS, imported where an index is built or read: the LLM's side (the LLM service, a GPU endpoint,
    `python -m evaluation.gpu_check run`) imports this module through rag.index and never needs FAISS."""
    import faiss

    return faiss


def resolve_type(requested: str, count: int) -> str:
    """The concrete index type for `count` chunks; `auto` picks flat or hnsw by size."""
    if requested not in INDEX_TYPES:
        raise ConfigError(f"RAG_INDEX_TYPE={requested!r} is not valid; use {', '.join(INDEX_TYPES)}")
    if requested == "auto":
        return "flat" if count <= AUTO_FLAT_MAX_CHUNKS else "hnsw"
    return requested


def ivf_lists(count: int) -> int:
    """IVF list count: a power of two near 2*sqrt(count), with enough vectors per list to train."""
    target = 2 ** round(np.log2(max(1.0, 2 * np.sqrt(count))))
    return int(max(1, min(target, count // IVF_TRAIN_PER_LIST)))


def build(vectors: np.ndarray, index_type: str, seed: int = 0):
    """A FAISS index of `index_type` (flat, hnsw or ivf) holding `vectors`; returns (index, build params)."""
    faiss = _faiss()
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    count, dimension = vectors.shape
    if index_type == "flat":
        index, params = faiss.IndexFlatIP(dimension), {}
    elif index_type == "hnsw":
        index = faiss.IndexHNSWFlat(dimension, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        params = {"m": HNSW_M, "ef_construction": HNSW_EF_CONSTRUCTION}
    elif index_type == "ivf":
        lists = ivf_lists(count)
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dimension), dimension, lists, faiss.METRIC_INNER_PRODUCT)
        rows = np.random.default_rng(seed).choice(count, size=min(count, lists * IVF_TRAIN_PER_LIST), replace=False)
        index.cp.seed = seed
        index.train(vectors[np.sort(rows)])
        params = {"nlist": lists}
    else:
        raise ConfigError(f"unknown index type {index_type!r}; use flat, hnsw or ivf")
    index.add(vectors)
    return index, params


def sample_queries(vectors: np.ndarray, count: int = RECALL_QUERIES, seed: int = 0) -> np.ndarray:
    """Queries near the data but never equal to a stored vector: sampled vectors plus noise, normalised."""
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(len(vectors), size=min(count, len(vectors)), replace=False))
    noise = rng.standard_normal((len(rows), vectors.shape[1])).astype(np.float32)
    noise *= QUERY_NOISE / np.linalg.norm(noise, axis=1, keepdims=True)
    queries = vectors[rows] + noise
    return queries / np.linalg.norm(queries, axis=1, keepdims=True)


def exact_neighbours(queries: np.ndarray, vectors: np.ndarray, k: int = RECALL_K) -> np.ndarray:
    """Ids of the exact `k` nearest vectors (inner product) of each query."""
    faiss = _faiss()
    return faiss.knn(
        np.ascontiguousarray(queries),
        np.ascontiguousarray(vectors),
        min(k, len(vectors)),
        metric=faiss.METRIC_INNER_PRODUCT,
    )[1]


def recall(index, queries: np.ndarray, exact: np.ndarray) -> float:
    """Mean share of the exact neighbours that `index` returns (recall@k, k = exact's width)."""
    found = index.search(np.ascontiguousarray(queries), exact.shape[1])[1]
    hits = sum(len(set(row) & set(truth)) for row, truth in zip(found.tolist(), exact.tolist()))
    return hits / exact.size


def search_parameter(index_type: str) -> str | None:
    """The name of the type's serve-time knob: ef_search, nprobe, or None for exact search."""
    return {"hnsw": "ef_search", "ivf": "nprobe"}.get(index_type)


def apply_search_params(index, index_type: str, params: dict) -> None:
    """Set efSearch (hnsw) or nprobe (ivf) on a loaded index; flat has nothing to set."""
    if index_type == "hnsw" and params.get("ef_search"):
        index.hnsw.efSearch = int(params["ef_search"])
    elif index_type == "ivf" and params.get("nprobe"):
        index.nprobe = int(min(int(params["nprobe"]), index.nlist))


def tune(index, index_type: str, vectors: np.ndarray, target: float = RECALL_TARGET) -> tuple[dict, float]:
    """The cheapest search parameter reaching `target` recall@10 on sample queries, and the recall it got."""
    name = search_parameter(index_type)
    if name is None:
        return {}, 1.0  # exact search finds the exact neighbours by definition
    queries = sample_queries(vectors)
    exact = exact_neighbours(queries, vectors)
    candidates = (
        EF_SEARCH_CANDIDATES
        if name == "ef_search"
        else tuple(2**power for power in range(int(np.log2(index.nlist)) + 1))
    )
    measured = 0.0
    for value in candidates:
        apply_search_params(index, index_type, {name: value})
        measured = recall(index, queries, exact)
        if measured >= target:
            break
    else:
        log.warning(
            "%s reached recall@10 %.3f at most (%s=%d), below the %.2f target",
            index_type,
            measured,
            name,
            value,
            target,
        )
    return {name: value}, measured


def build_tuned(vectors: np.ndarray, index_type: str) -> tuple[object, dict]:
    """Build, tune and measure: the index and the manifest fields describing it."""
    started = time.monotonic()
    index, params = build(vectors, index_type)
    built = time.monotonic()
    search_params, measured = tune(index, index_type, vectors)
    log.info(
        "%s index of %d vectors built in %.1f s; recall@10 %.3f with %s (measured in %.1f s)",
        index_type,
        len(vectors),
        built - started,
        measured,
        search_params or "exact search",
        time.monotonic() - built,
    )
    queries = min(RECALL_QUERIES, len(vectors)) if search_parameter(index_type) else 0  # exact: not sampled
    return index, {
        "index_type": index_type,
        "index_params": params,
        "search_params": search_params,
        "recall_at_10": round(measured, 4),
        "recall_queries": queries,
        "build_seconds": round(built - started, 1),
    }


def search_one_thread(index, queries: np.ndarray, k: int):
    """index.search on the calling thread alone. One query split over OpenMP threads gains little, and
    when the cores are busy (the embedder, other requests) the threads' spin-waiting made exact search
    over 10,000 chunks take 24 ms instead of 0.6 ms here. OpenMP's thread count is per calling thread,
    so this leaves index building (and other threads) as they were."""
    faiss = _faiss()
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        return index.search(queries, k)
    finally:
        faiss.omp_set_num_threads(threads)


def read(path: Path, index_type: str, mmap: bool = True):
    """Load a FAISS index, memory-mapped unless `mmap` is False (then a private heap copy)."""
    faiss = _faiss()
    flags = 0
    if mmap:
        # IFC maps the codes of flat storage (flat, and hnsw's vectors and graph); IVF maps its lists.
        flags = faiss.IO_FLAG_MMAP if index_type == "ivf" else faiss.IO_FLAG_MMAP_IFC
    return faiss.read_index(str(path), flags)


def all_vectors(index) -> np.ndarray:
    """Every stored vector in id order (exact for these flat-storage types), for re-indexing and merging."""
    faiss = _faiss()
    if index.ntotal == 0:
        return np.zeros((0, index.d), dtype=np.float32)
    if isinstance(index, faiss.IndexIVF):
        index.make_direct_map()
    return index.reconstruct_n(0, index.ntotal)


def prepare_reconstruct(index) -> None:
    """Let `index.reconstruct_batch` read stored vectors by id (hybrid retrieval scores the chunks BM25
    found): flat and hnsw can already; ivf needs its id -> list map, 8 bytes per vector of private memory."""
    if isinstance(index, _faiss().IndexIVF):
        index.make_direct_map()


def write(index, path: Path) -> None:
    """Write a FAISS index file."""
    faiss = _faiss()
    faiss.write_index(index, str(path))
