"""Index types chosen by size, tuned at build time, overridable at serve time, loaded memory-mapped."""

import json

import numpy as np
import pytest

from rag.errors import ConfigError
from rag.index import faiss_types
from rag.index.artifact import IndexedDocument, VectorIndex, write_index
from rag.settings import Settings

DIMENSION = 32


def clustered(count: int, seed: int = 0) -> np.ndarray:
    """Unit vectors around 50 random centres: structured like embeddings, unlike uniform noise."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((50, DIMENSION)).astype(np.float32)
    vectors = centres[rng.integers(0, 50, count)] + 0.6 * rng.standard_normal((count, DIMENSION)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def write(directory, vectors, index_type):
    documents = [
        IndexedDocument(f"doc{n:05d}.md", f"{n:064x}", [f"chunk text {n}"], [None], vectors[n : n + 1])
        for n in range(len(vectors))
    ]
    manifest = {"embedding_model": "synthetic", "dimension": DIMENSION, "chunk_size": 800, "chunk_overlap": 120}
    return write_index(directory, documents, manifest, index_type)


def test_auto_keeps_exact_search_up_to_the_measured_threshold():
    assert faiss_types.resolve_type("auto", 10) == "flat"
    assert faiss_types.resolve_type("auto", faiss_types.AUTO_FLAT_MAX_CHUNKS) == "flat"
    assert faiss_types.resolve_type("auto", faiss_types.AUTO_FLAT_MAX_CHUNKS + 1) == "hnsw"
    assert faiss_types.resolve_type("ivf", 10) == "ivf"
    with pytest.raises(ConfigError, match="RAG_INDEX_TYPE"):
        faiss_types.resolve_type("annoy", 10)


def test_settings_validate_the_index_variables():
    settings = Settings.from_env({"RAG_INDEX_TYPE": "HNSW", "RAG_INDEX_EF_SEARCH": "80", "RAG_INDEX_NPROBE": "8"})
    assert (settings.index_type, settings.index_ef_search, settings.index_nprobe) == ("hnsw", 80, 8)
    assert Settings.from_env({}).index_type == "auto" and Settings.from_env({}).index_ef_search is None
    with pytest.raises(ConfigError, match="RAG_INDEX_TYPE"):
        Settings.from_env({"RAG_INDEX_TYPE": "lsh"})
    with pytest.raises(ConfigError, match="RAG_INDEX_EF_SEARCH"):
        Settings.from_env({"RAG_INDEX_EF_SEARCH": "0"})


@pytest.mark.parametrize("index_type, knob", [("hnsw", "ef_search"), ("ivf", "nprobe")])
def test_approximate_types_record_the_recall_they_were_tuned_to(tmp_path, index_type, knob):
    vectors = clustered(4000)
    manifest = write(tmp_path / "index", vectors, index_type)
    stored = json.loads((tmp_path / "index" / "manifest.json").read_text())
    assert stored == manifest
    assert stored["index_type"] == index_type and stored["requested_index_type"] == index_type
    assert stored["recall_at_10"] >= faiss_types.RECALL_TARGET and stored["recall_queries"] == 200
    assert list(stored["search_params"]) == [knob]
    # The recorded recall is what a fresh measurement on the loaded index finds with the same queries.
    loaded = VectorIndex.load(tmp_path / "index", "synthetic", DIMENSION)
    queries = faiss_types.sample_queries(vectors)
    exact = faiss_types.exact_neighbours(queries, vectors)
    assert faiss_types.recall(loaded.index, queries, exact) == pytest.approx(stored["recall_at_10"], abs=1e-4)


def test_flat_is_exact_and_chosen_by_auto_for_small_corpora(tmp_path):
    manifest = write(tmp_path / "index", clustered(300), "auto")
    assert (manifest["index_type"], manifest["requested_index_type"]) == ("flat", "auto")
    assert manifest["recall_at_10"] == 1.0 and manifest["search_params"] == {}


def test_search_parameters_are_overridden_at_serve_time(tmp_path):
    vectors = clustered(3000)
    write(tmp_path / "hnsw", vectors, "hnsw")
    write(tmp_path / "ivf", vectors, "ivf")
    tuned = VectorIndex.load(tmp_path / "hnsw", "synthetic", DIMENSION)
    assert tuned.index.hnsw.efSearch == tuned.manifest["search_params"]["ef_search"]
    assert VectorIndex.load(tmp_path / "hnsw", "synthetic", DIMENSION, ef_search=300).index.hnsw.efSearch == 300
    ivf = VectorIndex.load(tmp_path / "ivf", "synthetic", DIMENSION, nprobe=3, ef_search=999)  # ef: not ivf's knob
    assert ivf.index.nprobe == 3
    # A bigger nprobe never finds less: with every list probed IVF is exact.
    full = VectorIndex.load(tmp_path / "ivf", "synthetic", DIMENSION, nprobe=65536)
    queries = faiss_types.sample_queries(vectors)
    assert faiss_types.recall(full.index, queries, faiss_types.exact_neighbours(queries, vectors)) == 1.0


@pytest.mark.parametrize("index_type", ["flat", "hnsw", "ivf"])
def test_every_type_is_memory_mapped_and_returns_its_vectors_exactly(tmp_path, index_type):
    vectors = clustered(1500)
    write(tmp_path / "index", vectors, index_type)
    loaded = VectorIndex.load(tmp_path / "index", "synthetic", DIMENSION)
    mapped = [
        line for line in open("/proc/self/maps") if line.rstrip().endswith(str(tmp_path / "index" / "faiss.index"))
    ]
    assert mapped, "faiss.index should be mapped into memory, not copied into the heap"
    assert np.array_equal(faiss_types.all_vectors(loaded.index), vectors)
    best = loaded.search(vectors[7], top_k=3)[0]
    assert (best.source, best.text) == ("doc00007.md", "chunk text 7")
