"""The index artifact: one directory holding

    manifest.json        what the artifact is: format, embedding model, index type, search params, recall
    faiss.index          the FAISS index (flat, hnsw or ivf; rag/index/faiss_types.py), read memory-mapped
    chunks.jsonl         one line per chunk: id, source, chunk number, text (and page for PDFs)
    chunk_offsets.npy    where each line of chunks.jsonl starts (rag/index/chunk_store.py)
    documents.jsonl      one line per document: source, sha256, first chunk id, chunk count
    bm25.*               the BM25 part over the same chunks (rag/index/lexical.py), for hybrid retrieval

Like a checkpoint that stores its model args, the artifact carries its own config in the manifest,
and loading checks it against the configured embedding model.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from rag.errors import ConfigError, IndexMismatchError
from rag.index import faiss_types
from rag.index.chunk_store import CHUNKS_FILE, OFFSETS_FILE, Chunk, ChunkStore, write_chunks
from rag.index.lexical import BM25_FILES, LexicalIndex, write_bm25
from rag.types import Passage

log = logging.getLogger(__name__)

FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)  # format 1: flat index, chunks.jsonl without offsets or documents.jsonl
MANIFEST, FAISS_FILE, DOCUMENTS_FILE = "manifest.json", "faiss.index", "documents.jsonl"
# Everything an index directory may hold. Replacing an index deletes only a directory made of these.
ARTIFACT_FILES = frozenset({MANIFEST, FAISS_FILE, CHUNKS_FILE, OFFSETS_FILE, DOCUMENTS_FILE}) | BM25_FILES

__all__ = [
    "ARTIFACT_FILES",
    "Chunk",
    "IndexedDocument",
    "VectorIndex",
    "check_index_target",
    "missing_files",
    "read_manifest",
    "write_index",
]


def check_index_target(directory: Path, docs: Path | None = None) -> None:
    """Refuse a target that `write_index` could not replace without destroying something it did not make:
    an existing folder that is not an index (no manifest.json, or files an index never holds), the
    documents folder itself, or a folder that contains it."""
    directory = Path(directory).expanduser().resolve()
    if docs is not None:
        docs = Path(docs).expanduser().resolve()
        if directory == docs or directory in docs.parents:
            raise ConfigError(
                f"INDEX={directory} is DOCS or contains it; writing the index there would replace "
                "your documents. Choose another INDEX folder"
            )
    if directory.is_symlink() or (directory.exists() and not directory.is_dir()):
        raise ConfigError(f"INDEX={directory} exists and is not a folder; choose another INDEX")
    if not directory.exists():
        return
    contents = {entry.name for entry in directory.iterdir()}
    if not contents:
        return
    if MANIFEST not in contents:
        raise ConfigError(
            f"INDEX={directory} is an existing folder that is not an index (no {MANIFEST}); "
            "it is left untouched. Choose a new or empty folder for INDEX"
        )
    foreign = sorted(contents - ARTIFACT_FILES)
    if foreign:
        raise ConfigError(
            f"INDEX={directory} holds files an index never has ({', '.join(foreign[:5])}); "
            "rebuilding would delete them. Move them out, or choose another INDEX"
        )


def missing_files(directory: Path) -> list[str]:
    """The files an index at `directory` lacks to be served as it was built: format 1 needs the manifest,
    the FAISS index and the chunks; format 2 also the chunk offsets (else every start scans the chunks)
    and the documents list (else the next `make index` cannot update it incrementally), and the files of
    the BM25 part its manifest lists."""
    directory = Path(directory)
    needed = [MANIFEST, FAISS_FILE, CHUNKS_FILE]
    if (directory / MANIFEST).is_file():
        manifest = read_manifest(directory)
        if manifest.get("format_version") != 1:
            needed += [OFFSETS_FILE, DOCUMENTS_FILE]
        needed += (manifest.get("bm25") or {}).get("files", [])
    return [name for name in needed if not (directory / name).is_file()]


def read_manifest(directory: Path) -> dict:
    """The manifest of an index directory, refused when missing or of a format this code cannot read."""
    path = Path(directory) / MANIFEST
    if not path.exists():
        raise ConfigError(
            f"RAG_INDEX_DIR={directory} holds no {MANIFEST}; build an index with "
            f"`make index DOCS=<folder> INDEX={directory}` or point RAG_INDEX_DIR at one"
        )
    manifest = json.loads(path.read_text())
    if manifest.get("format_version") not in READABLE_VERSIONS:
        raise IndexMismatchError(
            f"index {directory} has format version {manifest.get('format_version')}, this "
            f"service reads {', '.join(map(str, READABLE_VERSIONS))}; rebuild it with `make index`"
        )
    manifest.setdefault("index_type", "flat")  # format 1 only ever wrote exact indexes
    manifest.setdefault("search_params", {})
    return manifest


class VectorIndex:
    """A loaded index: search a normalised query vector, get ranked passages. `lexical` is the BM25 part
    (rag.index.lexical.LexicalIndex) when loaded with `lexical=True`, else None."""

    lexical: LexicalIndex | None = None

    def __init__(self, directory: Path, manifest: dict, chunks: ChunkStore, index, lexical_index=None):
        self.directory = directory
        self.manifest = manifest
        self.chunks = chunks  # a ChunkStore: len() and chunks[id], read from disk per hit
        self.index = index
        self.lexical = lexical_index

    @classmethod
    def load(
        cls,
        directory: Path,
        embedding_model: str,
        dimension: int,
        *,
        ef_search: int | None = None,
        nprobe: int | None = None,
        mmap: bool = True,
        lexical: bool = False,
    ) -> VectorIndex:
        """Load and verify an index (memory-mapped); refuse one built with another embedding model.
        `ef_search`/`nprobe` override the search parameters tuned at build time; `lexical` loads the BM25
        part too (refused, with how to fix it, when the index has none)."""
        directory = Path(directory)
        manifest = read_manifest(directory)
        if manifest["embedding_model"] != embedding_model or int(manifest["dimension"]) != dimension:
            raise IndexMismatchError(
                f"index {directory} was built with embedding model {manifest['embedding_model']} "
                f"(dimension {manifest['dimension']}), but RAG_EMBEDDING_MODEL is {embedding_model} "
                f"(dimension {dimension}); set RAG_EMBEDDING_MODEL={manifest['embedding_model']} or rebuild "
                f"the index with `make index`"
            )
        chunks = ChunkStore.open(directory)
        kind = manifest["index_type"]
        index = faiss_types.read(directory / FAISS_FILE, kind, mmap=mmap)
        if index.ntotal != len(chunks):
            raise IndexMismatchError(
                f"index {directory} is inconsistent: {index.ntotal} vectors but {len(chunks)} chunks; rebuild it"
            )
        params = dict(manifest["search_params"])
        overrides = {"ef_search": ef_search, "nprobe": nprobe}
        name = faiss_types.search_parameter(kind)
        if name and overrides[name]:
            params[name] = overrides[name]
        faiss_types.apply_search_params(index, kind, params)
        lexical_index = None
        if lexical:
            lexical_index = LexicalIndex.load(directory, manifest, mmap=mmap)
            if lexical_index.chunks != len(chunks):
                raise IndexMismatchError(
                    f"index {directory} is inconsistent: BM25 over {lexical_index.chunks} chunks but "
                    f"{len(chunks)} chunks; rebuild it with `make index`"
                )
            faiss_types.prepare_reconstruct(index)
        log.info("index %s: %s, %d chunks, search %s", directory, kind, len(chunks), params or "exact")
        return cls(directory, manifest, chunks, index, lexical_index)

    def search(self, vector: np.ndarray, top_k: int) -> list[Passage]:
        """The `top_k` chunks nearest to one query vector, best first."""
        query = np.ascontiguousarray(vector.reshape(1, -1), dtype=np.float32)
        scores, ids = faiss_types.search_one_thread(self.index, query, min(top_k, len(self.chunks)))
        found = [(int(chunk_id), float(score)) for score, chunk_id in zip(scores[0], ids[0]) if chunk_id >= 0]
        return self.passages(found)  # FAISS pads with -1 when it has fewer results than asked

    def nearest(self, vector: np.ndarray, count: int) -> list[tuple[int, float]]:
        """The `count` nearest (chunk id, similarity) pairs to one query vector, best first."""
        query = np.ascontiguousarray(vector.reshape(1, -1), dtype=np.float32)
        scores, ids = faiss_types.search_one_thread(self.index, query, min(count, len(self.chunks)))
        return [(int(chunk_id), float(score)) for score, chunk_id in zip(scores[0], ids[0]) if chunk_id >= 0]

    def similarities(self, vector: np.ndarray, chunk_ids: list[int]) -> np.ndarray:
        """The query's similarity (inner product) to the stored vectors of `chunk_ids`, exact for every type."""
        if not chunk_ids:
            return np.zeros(0, dtype=np.float32)
        stored = self.index.reconstruct_batch(np.asarray(chunk_ids, dtype=np.int64))
        return stored @ np.asarray(vector, dtype=np.float32).reshape(-1)

    def passages(self, scored: list[tuple[int, float]]) -> list[Passage]:
        """Passages for (chunk id, score) pairs, ranked 1, 2 ... in the order given."""
        passages = []
        for rank, (chunk_id, score) in enumerate(scored, start=1):
            chunk = self.chunks[chunk_id]
            passages.append(Passage(rank, chunk.source, chunk.chunk, round(score, 6), chunk.text, chunk.page))
        return passages


@dataclass
class IndexedDocument:
    """One document's chunks and their vectors, ready to be written (freshly embedded or reused)."""

    source: str
    sha256: str
    texts: list[str]
    pages: list[int | None]
    vectors: np.ndarray = field(repr=False)


def write_index(directory: Path, documents: list[IndexedDocument], manifest: dict, index_type: str = "auto") -> dict:
    """Write the artifact atomically: into a temporary sibling directory, then renamed into place.
    Chunk ids follow the order of `documents`. An existing target is replaced only when it is an index
    (check_index_target), else refused. Returns the manifest written."""
    directory = Path(directory).expanduser().resolve()
    check_index_target(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    dimension = int(manifest["dimension"])
    vectors = np.vstack([doc.vectors for doc in documents] or [np.zeros((0, dimension), np.float32)])
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}-", dir=directory.parent))
    try:
        kind = faiss_types.resolve_type(index_type, len(vectors))
        index, described = faiss_types.build_tuned(vectors, kind)
        faiss_types.write(index, staging / FAISS_FILE)
        del index
        count = write_chunks(staging, _chunks(documents))
        bm25 = write_bm25(staging, [text for doc in documents for text in doc.texts])
        with open(staging / DOCUMENTS_FILE, "w", encoding="utf-8") as handle:
            first = 0
            for doc in documents:
                handle.write(
                    json.dumps(
                        {"source": doc.source, "sha256": doc.sha256, "first": first, "chunks": len(doc.texts)},
                        ensure_ascii=False,
                    )
                    + "\n"
                )
                first += len(doc.texts)
        manifest = {
            **manifest,
            "format_version": FORMAT_VERSION,
            "dimension": dimension,
            "metric": "inner_product",
            "normalized": True,
            "documents": len(documents),
            "chunks": count,
            "requested_index_type": index_type,
            **described,
            "bm25": bm25,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        staging.chmod(0o755)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)  # our own temporary folder, nothing else
        raise
    _swap_into_place(staging, directory)
    return manifest


def _chunks(documents: list[IndexedDocument]):
    next_id = 0
    for doc in documents:
        for number, (text, page) in enumerate(zip(doc.texts, doc.pages)):
            yield Chunk(next_id, doc.source, number, text, page)
            next_id += 1


def _swap_into_place(staging: Path, directory: Path) -> None:
    """Rename `staging` to `directory`. An index already there is moved aside first and, once the new one
    is in place, only its known artifact files are deleted: a stray file makes the old folder stay."""
    old = None
    if directory.exists():
        old = directory.with_name(f".{directory.name}-old-{staging.name}")
        directory.rename(old)
    try:
        staging.rename(directory)
    except BaseException:
        if old is not None:
            old.rename(directory)
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if old is not None:
        for name in ARTIFACT_FILES:
            (old / name).unlink(missing_ok=True)
        try:
            old.rmdir()
        except OSError:
            log.warning("kept %s: it held files an index never has", old)
