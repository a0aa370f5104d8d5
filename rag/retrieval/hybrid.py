"""Hybrid retrieval: the dense (FAISS) ranking and the BM25 ranking, fused by reciprocal rank fusion.

Dense search finds passages by meaning, and so ranks a look-alike document (the other pump model, the
superseded policy) as high as the right one; BM25 finds the exact terms a question names (a part
number, an error code). Each ranks its best candidates (CANDIDATES_PER_RESULT x top_k, at least
MIN_CANDIDATES); a chunk's fused score is the sum over both rankings of 1 / (RRF_K + its rank there), and
the fused order decides the passages' ranks and what focused context sees (rag/retrieval/context.py).

A passage's `score` stays what it is in dense mode, the query's cosine similarity to the chunk (computed
from the stored vector for a chunk only BM25 found), so it means the same in both modes; the fused score
only orders. Scores therefore need not decrease with rank in hybrid mode.
"""

from __future__ import annotations

import numpy as np

from rag.index.artifact import VectorIndex
from rag.types import Passage

RRF_K = 60  # the usual constant (Cormack et al., 2009); it damps the weight of the very first ranks
CANDIDATES_PER_RESULT = 4  # each ranking contributes this many candidates per passage asked for
MIN_CANDIDATES = 20
# The BM25 ranking's weight in the fused score (the dense ranking's is 1). Plain RRF: 0.5 gained nothing on the
# sample set's answers (docs/evaluation.md#hybrid-retrieval).
BM25_WEIGHT = 1.0


def reciprocal_rank_fusion(
    rankings: list[list[int]], k: int = RRF_K, weights: list[float] | None = None
) -> list[tuple[int, float]]:
    """(id, fused score) over the union of `rankings` (ids best first), best first: the sum over rankings of
    weight / (k + rank). Equal scores are ordered by the best rank the id had anywhere, the earlier ranking
    first, so the order is deterministic."""
    fused: dict[int, float] = {}
    best: dict[int, tuple[int, int]] = {}
    for which, ranking in enumerate(rankings):
        weight = 1.0 if weights is None else weights[which]
        for rank, item in enumerate(ranking, start=1):
            fused[item] = fused.get(item, 0.0) + weight / (k + rank)
            best[item] = min(best.get(item, (rank, which)), (rank, which))
    return sorted(fused.items(), key=lambda pair: (-pair[1], best[pair[0]]))


def hybrid_search(index: VectorIndex, vector: np.ndarray, query: str, top_k: int) -> list[Passage]:
    """The `top_k` passages of the fused dense and BM25 rankings, scored by cosine similarity."""
    count = max(CANDIDATES_PER_RESULT * top_k, MIN_CANDIDATES)
    dense = index.nearest(vector, count)
    lexical = index.lexical.search(query, count)
    # BM25 first: on a tie (first in one ranking and second in the other) its first place stands, since it
    # rests on exact terms that dense vectors blur (a part number's digits barely move an embedding).
    fused = reciprocal_rank_fusion(
        [[chunk_id for chunk_id, _ in lexical], [chunk_id for chunk_id, _ in dense]], weights=[BM25_WEIGHT, 1.0]
    )
    chosen = [chunk_id for chunk_id, _ in fused[:top_k]]
    similarity = dict(dense)
    missing = [chunk_id for chunk_id in chosen if chunk_id not in similarity]
    similarity.update(zip(missing, index.similarities(vector, missing).tolist()))
    return index.passages([(chunk_id, similarity[chunk_id]) for chunk_id in chosen])
