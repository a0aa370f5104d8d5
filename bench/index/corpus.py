"""Synthetic corpora for `make bench-index`: vectors with a stated distribution, and generated text.

Embedding a million real chunks takes hours on this machine (~160 chunks/s), so the index types are
measured on vectors drawn from a distribution shaped like sentence embeddings, and embedding throughput
is measured separately, with the real model, on generated text.

Distribution (dimension 384, as all-MiniLM-L6-v2): `topics = count // 200` topic centres drawn uniformly on
the unit sphere. Each chunk has a main and a secondary topic, both random, and is
`normalize(c_main + 0.5 * c_second + z)` with isotropic Gaussian noise z of norm ~1. A chunk then has
cosine ~0.67 to its main topic and ~0.33 to its secondary one, two chunks of one main topic ~0.45, and
unrelated chunks ~0: like passages under MiniLM, related ones cluster without forming clean islands
(topics overlap, which is what makes approximate search miss). Queries are drawn the same way, so they
are never stored vectors.
Texts: ~700 characters of words from a fixed vocabulary, so chunks.jsonl has a real chunk's size.
"""

from __future__ import annotations

import numpy as np

from rag.index.artifact import IndexedDocument

DIMENSION = 384
CHUNKS_PER_TOPIC = 200
SECONDARY_WEIGHT = 0.5
CHUNKS_PER_DOCUMENT = 10
TEXT_WORDS = 100  # ~700 characters
VOCABULARY = (
    "harbour tram bridge ferry fare council station lantern festival flood wall quay lighthouse keeper "
    "timetable route line depot signal platform ticket museum archive island river canal market "
    "square tower bell clock garden library school hospital tunnel viaduct funicular observatory"
).split()


def _unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def topic_centres(count: int, seed: int = 0) -> np.ndarray:
    """The topic centres of a corpus of `count` chunks."""
    rng = np.random.default_rng(seed)
    return _unit(rng.standard_normal((max(1, count // CHUNKS_PER_TOPIC), DIMENSION)).astype(np.float32))


def around(centres: np.ndarray, count: int, seed: int) -> np.ndarray:
    """`count` unit vectors drawn as the module says (in blocks, to bound memory)."""
    rng = np.random.default_rng(seed)
    out = np.empty((count, DIMENSION), dtype=np.float32)
    for start in range(0, count, 100_000):
        size = min(100_000, count - start)
        noise = rng.standard_normal((size, DIMENSION)).astype(np.float32) / np.sqrt(DIMENSION)
        main, second = (centres[rng.integers(0, len(centres), size)] for _ in range(2))
        out[start : start + size] = _unit(main + SECONDARY_WEIGHT * second + noise)
    return out


def corpus_vectors(count: int, seed: int = 0) -> np.ndarray:
    """The chunk vectors of a synthetic corpus of `count` chunks."""
    return around(topic_centres(count, seed), count, seed + 1)


def queries(corpus_size: int, count: int, seed: int = 0) -> np.ndarray:
    """`count` query vectors for the corpus of `corpus_size` chunks: new draws around its topic centres."""
    return around(topic_centres(corpus_size, seed), count, seed + 2)


def texts(count: int, seed: int = 0) -> list[str]:
    """`count` generated chunk texts of about 700 characters."""
    rng = np.random.default_rng(seed)
    words = np.array(VOCABULARY)
    picks = rng.integers(0, len(words), (count, TEXT_WORDS))
    return [f"Chunk {n}: " + " ".join(words[row]) + "." for n, row in enumerate(picks)]


def documents(vectors: np.ndarray, seed: int = 0) -> list[IndexedDocument]:
    """The corpus as documents of CHUNKS_PER_DOCUMENT chunks, ready for write_index."""
    chunk_texts = texts(len(vectors), seed)
    result = []
    for start in range(0, len(vectors), CHUNKS_PER_DOCUMENT):
        end = min(start + CHUNKS_PER_DOCUMENT, len(vectors))
        number = start // CHUNKS_PER_DOCUMENT
        result.append(
            IndexedDocument(
                f"synthetic/doc-{number:07d}.md",
                f"{number:064x}",
                chunk_texts[start:end],
                [None] * (end - start),
                vectors[start:end],
            )
        )
    return result
