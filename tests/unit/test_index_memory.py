"""Two serving workers do not double the index's resident memory (PSS), because the index is mapped.

Each worker is a real process loading the index with VectorIndex.load (bench/index/workers.py). With
mmap the second worker adds almost nothing; loading a heap copy instead (mmap=False, the old behaviour)
doubles the total, which shows the measurement can tell the two apart.
"""

import pytest

from bench.index.corpus import corpus_vectors
from bench.index.workers import index_bytes, measure_workers
from rag.index.artifact import IndexedDocument, write_index

pytestmark = pytest.mark.slow
DIMENSION = 384


@pytest.fixture(scope="module", params=["flat", "ivf"])
def big_index(request, tmp_path_factory):
    """About 75 MB of vectors: large next to the few MB a Python process's memory moves by itself."""
    count = 50_000
    vectors = corpus_vectors(count)  # clustered like embeddings (bench/index/corpus.py)
    documents = [
        IndexedDocument(f"doc{n}.md", f"{n:064x}", [f"text of chunk {n}"], [None], vectors[n : n + 1])
        for n in range(count)
    ]
    directory = tmp_path_factory.mktemp("memory") / request.param
    write_index(directory, documents, {"embedding_model": "synthetic", "dimension": DIMENSION}, request.param)
    return directory


# Every ivf list probed, so that the whole index is resident, as after many different queries.
ALL_LISTS = 65536


def test_a_second_worker_adds_under_a_tenth_of_the_index(big_index):
    size_kb = index_bytes(big_index) / 1024
    one, two = measure_workers(big_index, DIMENSION, count=2, nprobe=ALL_LISTS)
    first_alone = one["index_pss_kb"][0]
    assert first_alone > 0.9 * size_kb, one  # the first worker really has the whole index resident
    added = sum(two["index_pss_kb"]) - first_alone
    assert added <= 0.10 * size_kb, (one, two, size_kb)
    assert sum(two["index_pss_kb"]) <= 1.10 * size_kb


def test_a_heap_copy_per_worker_would_double_it(big_index):
    size_kb = index_bytes(big_index) / 1024
    _, two = measure_workers(big_index, DIMENSION, count=2, mmap=False, nprobe=ALL_LISTS)
    assert sum(two["index_pss_kb"]) >= 1.8 * size_kb, two
