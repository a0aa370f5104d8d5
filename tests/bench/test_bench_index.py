"""`make bench-index` on a tiny corpus: every figure is produced and published where the docs expect it.
It asserts no timing (the machine may be busy), only what must hold whatever the load."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bench.index import corpus as index_corpus
from bench.index import run as index_bench
from bench.index.report import BEGIN, END, SUMMARY_BEGIN, SUMMARY_END, publish

pytestmark = pytest.mark.slow


def test_the_synthetic_corpus_has_the_stated_distribution():
    vectors = index_corpus.corpus_vectors(4000)
    assert vectors.shape == (4000, 384) and np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    centres = index_corpus.topic_centres(4000)
    assert len(centres) == 4000 // index_corpus.CHUNKS_PER_TOPIC
    nearest = (vectors @ centres.T).max(axis=1)
    assert 0.6 < float(nearest.mean()) < 0.75  # a chunk sits at cosine ~0.67 of its main topic
    queries = index_corpus.queries(4000, 50)
    assert not np.isin(queries, vectors).all(axis=1).any()  # queries are never stored vectors
    texts = index_corpus.texts(3)
    assert all(600 < len(text) < 900 for text in texts)


def test_a_tiny_run_measures_every_type_and_publishes(tmp_path, monkeypatch):
    monkeypatch.setattr(index_bench, "WORK_DIR", tmp_path / "work")
    monkeypatch.setattr(index_bench, "RESULTS_DIR", tmp_path / "results")
    monkeypatch.setattr(index_bench, "THRESHOLD_SIZES", (1000, 2000))
    monkeypatch.setattr(index_bench, "EMBED_TEXTS", 64)
    path = index_bench.run([3000])
    results = json.loads(path.read_text())
    rows = results["types"]
    assert [row["type"] for row in rows] == ["flat", "hnsw", "ivf"]
    flat = rows[0]
    assert flat["recall_at_10"] == 1.0 and flat["search_params"] == {}
    for row in rows:
        assert row["p50_ms"] <= row["p95_ms"] and 0 < row["recall_at_10"] <= 1
        assert row["first_worker_index_pss_mb"] > 0.8 * row["index_mb"]
        assert row["second_worker_added_mb"] < row["index_mb"]  # shared, not copied
    assert results["embedding"]["chunks_per_s"] > 0 and [r["size"] for r in results["threshold"]["rows"]] == [
        1000,
        2000,
    ]
    assert not (tmp_path / "work").exists()  # the synthetic artifacts are deleted

    document, readme = tmp_path / "large-corpora.md", tmp_path / "README.md"
    document.write_text(f"intro\n{BEGIN}\nold\n{END}\noutro\n")
    readme.write_text(f"top\n{SUMMARY_BEGIN}\n{SUMMARY_END}\n")
    folder = publish(path, tmp_path / "latest", document, readme)
    text = document.read_text()
    assert text.startswith("intro\n") and text.endswith("outro\n") and "old" not in text
    assert text.count("| 3k | ") == 3 and "chunks/s" in text
    assert "| hnsw (ef_search=" in readme.read_text()
    assert (folder / "index-types.png").read_bytes().startswith(b"\x89PNG")
    assert json.loads((folder / "results.json").read_text()) == results
