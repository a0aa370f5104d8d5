"""Incremental indexing: only added or changed files are embedded, deleted ones dropped, atomically."""

import json
import logging
from dataclasses import replace

import numpy as np

from rag.index import faiss_types
from rag.index.artifact import VectorIndex
from rag.ingest.build import build_index
from rag.settings import Settings
from tests.fakes import FakeEmbedder

SETTINGS = Settings(chunk_size=200, chunk_overlap=40)


class CountingEmbedder(FakeEmbedder):
    """The fake embedder, counting the texts it embeds (not only the batches)."""

    def __init__(self):
        super().__init__()
        self.texts: list[str] = []

    def embed_batch(self, texts):
        self.texts += texts
        return super().embed_batch(texts)


def corpus(docs):
    docs.mkdir(exist_ok=True)
    (docs / "tram.md").write_text("The tramway opened in 1889. " * 12, encoding="utf-8")
    (docs / "bridge.md").write_text("The glass bridge opened in 1936.", encoding="utf-8")
    (docs / "sub").mkdir(exist_ok=True)
    (docs / "sub" / "ferry.txt").write_text("Ferries leave every 20 minutes.", encoding="utf-8")


def snapshot(index):
    return {path.name: path.read_bytes() for path in sorted(index.iterdir())}


def test_unchanged_folder_embeds_nothing_and_rewrites_nothing(tmp_path, caplog):
    corpus(tmp_path / "docs")
    build_index(tmp_path / "docs", tmp_path / "index", FakeEmbedder(), SETTINGS, progress=False)
    before = snapshot(tmp_path / "index")
    embedder = CountingEmbedder()
    caplog.set_level(logging.INFO)
    manifest = build_index(tmp_path / "docs", tmp_path / "index", embedder, SETTINGS, progress=False)
    assert embedder.texts == [] and embedder.calls == 0
    assert snapshot(tmp_path / "index") == before and manifest["documents"] == 3
    assert "is up to date" in caplog.text


def test_only_added_or_changed_files_are_embedded_and_deleted_ones_dropped(tmp_path):
    docs, index = tmp_path / "docs", tmp_path / "index"
    corpus(docs)
    build_index(docs, index, FakeEmbedder(), SETTINGS, progress=False)
    (docs / "bridge.md").write_text("The glass bridge opened in 1937, a year late.", encoding="utf-8")
    (docs / "sub" / "ferry.txt").unlink()
    (docs / "wall.md").write_text("The sea wall is 4 km long.", encoding="utf-8")
    embedder = CountingEmbedder()
    manifest = build_index(docs, index, embedder, SETTINGS, progress=False)
    assert embedder.texts == ["The glass bridge opened in 1937, a year late.", "The sea wall is 4 km long."]
    assert manifest["documents"] == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["docs", "index"]  # atomic: no staging left behind
    rows = [json.loads(line) for line in (index / "documents.jsonl").read_text().splitlines()]
    assert [row["source"] for row in rows] == ["bridge.md", "tram.md", "wall.md"]
    # The result is the index a fresh build of the same folder writes: same chunks, same vectors.
    fresh = tmp_path / "fresh"
    build_index(docs, fresh, FakeEmbedder(), SETTINGS, progress=False)
    assert (index / "chunks.jsonl").read_bytes() == (fresh / "chunks.jsonl").read_bytes()
    assert (index / "documents.jsonl").read_bytes() == (fresh / "documents.jsonl").read_bytes()
    incremental = faiss_types.all_vectors(VectorIndex.load(index, "fake-embedder", 256).index)
    assert np.array_equal(incremental, faiss_types.all_vectors(VectorIndex.load(fresh, "fake-embedder", 256).index))


def test_another_model_or_chunking_re_embeds_everything(tmp_path, caplog):
    corpus(tmp_path / "docs")
    build_index(tmp_path / "docs", tmp_path / "index", FakeEmbedder(), SETTINGS, progress=False)
    embedder = CountingEmbedder()
    caplog.set_level(logging.INFO)
    manifest = build_index(
        tmp_path / "docs", tmp_path / "index", embedder, replace(SETTINGS, chunk_size=300), progress=False
    )
    assert len(embedder.texts) == manifest["chunks"] == 4 and "re-embedding every document" in caplog.text


def test_changing_the_index_type_rebuilds_without_embedding(tmp_path):
    corpus(tmp_path / "docs")
    build_index(tmp_path / "docs", tmp_path / "index", FakeEmbedder(), SETTINGS, progress=False)
    embedder = CountingEmbedder()
    manifest = build_index(
        tmp_path / "docs", tmp_path / "index", embedder, replace(SETTINGS, index_type="hnsw"), progress=False
    )
    assert embedder.texts == [] and manifest["index_type"] == "hnsw"
    assert json.loads((tmp_path / "index" / "manifest.json").read_text())["index_type"] == "hnsw"
