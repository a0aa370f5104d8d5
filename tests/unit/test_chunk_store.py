"""The on-disk chunk store, and artifacts of format 1 (no offsets file) still loading."""

import json

import faiss
import numpy as np
import pytest

from rag.errors import IndexMismatchError
from rag.index.artifact import VectorIndex
from rag.index.chunk_store import Chunk, ChunkStore, write_chunks
from rag.ingest.build import build_index
from rag.settings import Settings
from tests.fakes import FakeEmbedder

CHUNKS = [
    Chunk(0, "a.md", 0, "première ligne"),
    Chunk(1, "guide.pdf", 0, "page two text", page=2),
    Chunk(2, "guide.pdf", 1, "line one\nline two {json}", page=3),
]


def test_chunks_are_read_by_id_from_disk(tmp_path):
    assert write_chunks(tmp_path, CHUNKS) == 3
    store = ChunkStore.open(tmp_path)
    assert len(store) == 3
    assert [store[i] for i in (2, 0, 1)] == [CHUNKS[2], CHUNKS[0], CHUNKS[1]]
    assert list(store) == CHUNKS
    assert isinstance(store.offsets, np.memmap)  # the offsets are mapped, not loaded into the heap
    with pytest.raises(IndexError):
        store[3]
    lines = (tmp_path / "chunks.jsonl").read_text(encoding="utf-8").splitlines()
    assert "page" not in json.loads(lines[0]) and json.loads(lines[1])["page"] == 2


def test_offsets_that_do_not_match_the_chunks_are_refused(tmp_path):
    write_chunks(tmp_path, CHUNKS)
    with open(tmp_path / "chunks.jsonl", "a", encoding="utf-8") as handle:
        handle.write(json.dumps({"id": 3, "source": "b.md", "chunk": 0, "text": "appended by hand"}) + "\n")
    with pytest.raises(IndexMismatchError, match="rebuild it"):
        ChunkStore.open(tmp_path)


def test_an_index_of_format_1_still_loads(tmp_path):
    """What `make index` wrote before format 2: flat index, chunks.jsonl, no offsets, no documents."""
    embedder = FakeEmbedder()
    texts = ["The tramway opened in 1889.", "The glass bridge opened in 1936."]
    vectors = embedder.embed(texts)
    index = faiss.IndexFlatIP(embedder.dimension)
    index.add(vectors)
    faiss.write_index(index, str(tmp_path / "faiss.index"))
    with open(tmp_path / "chunks.jsonl", "w", encoding="utf-8") as handle:
        for number, text in enumerate(texts):
            handle.write(json.dumps({"id": number, "source": f"{number}.md", "chunk": 0, "text": text}) + "\n")
    (tmp_path / "manifest.json").write_text(
        json.dumps(
            {
                "format_version": 1,
                "embedding_model": embedder.name,
                "dimension": embedder.dimension,
                "metric": "inner_product",
                "chunk_size": 200,
                "chunk_overlap": 40,
                "documents": 2,
                "chunks": 2,
            }
        )
    )
    loaded = VectorIndex.load(tmp_path, embedder.name, embedder.dimension)
    assert loaded.manifest["index_type"] == "flat"
    assert loaded.search(embedder.embed(["glass bridge"])[0], 1)[0].source == "1.md"


def test_reindexing_a_format_1_index_embeds_everything_once(tmp_path):
    (tmp_path / "index").mkdir()
    test_an_index_of_format_1_still_loads(tmp_path / "index")  # writes a format 1 index there
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("alpha", encoding="utf-8")
    embedder = FakeEmbedder()
    manifest = build_index(
        tmp_path / "docs", tmp_path / "index", embedder, Settings(chunk_size=200, chunk_overlap=40), progress=False
    )
    assert manifest["format_version"] == 2 and (tmp_path / "index" / "documents.jsonl").exists()
    assert embedder.calls == 1
