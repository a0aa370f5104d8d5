"""Documents read back out of an existing index, with their chunks and stored vectors.

Re-indexing reuses the unchanged documents of the previous artifact, and the Processing merge step
reuses every document of each shard's partial artifact: neither embeds a chunk twice. The vectors come
back exactly as written (the index types keep uncompressed float32 vectors).
"""

from __future__ import annotations

import json
from pathlib import Path

from rag.errors import IndexMismatchError
from rag.index import faiss_types
from rag.index.artifact import DOCUMENTS_FILE, FAISS_FILE, IndexedDocument, read_manifest
from rag.index.chunk_store import ChunkStore


def _document_rows(directory: Path) -> list[dict] | None:
    path = Path(directory) / DOCUMENTS_FILE
    if not path.exists():
        return None
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def read_document_hashes(directory: Path) -> dict[str, str] | None:
    """source -> sha256 of every document in the index; None when it records none (format 1)."""
    rows = _document_rows(directory)
    return None if rows is None else {row["source"]: row["sha256"] for row in rows}


def read_documents(directory: Path, sources: set[str] | None = None) -> dict[str, IndexedDocument]:
    """source -> document (texts, pages, vectors) for `sources`, or every document when None."""
    directory = Path(directory)
    manifest = read_manifest(directory)
    rows = _document_rows(directory)
    if rows is None:
        raise IndexMismatchError(f"index {directory} records no documents (format 1); rebuild it with `make index`")
    store = ChunkStore.open(directory)
    try:
        vectors = faiss_types.all_vectors(faiss_types.read(directory / FAISS_FILE, manifest["index_type"]))
        if len(vectors) != len(store) or sum(row["chunks"] for row in rows) != len(store):
            raise IndexMismatchError(
                f"index {directory} is inconsistent: {len(vectors)} vectors, {len(store)} "
                f"chunks, documents listing {sum(row['chunks'] for row in rows)}; rebuild it"
            )
        wanted = {row["source"] for row in rows} if sources is None else sources
        documents: dict[str, IndexedDocument] = {}
        chunks = iter(store)
        for row in rows:  # documents.jsonl lists documents in chunk-id order
            texts, pages = [], []
            for _ in range(row["chunks"]):
                chunk = next(chunks)
                texts.append(chunk.text)
                pages.append(chunk.page)
            if row["source"] in wanted:
                first = row["first"]
                documents[row["source"]] = IndexedDocument(
                    row["source"], row["sha256"], texts, pages, vectors[first : first + row["chunks"]]
                )
    finally:
        store.close()
    return documents
