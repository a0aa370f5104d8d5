"""The index artifact: manifest.json, faiss.index and chunks.jsonl in one directory.

Like a checkpoint that stores its model args, the artifact carries its own config in the manifest,
and loading checks it against the configured embedding model.
"""
from __future__ import annotations

import json
import logging
import shutil
import tempfile
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import faiss
import numpy as np

from rag.errors import ConfigError, IndexMismatchError

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
MANIFEST, FAISS_FILE, CHUNKS_FILE = "manifest.json", "faiss.index", "chunks.jsonl"
# Everything an index directory may hold. Replacing an index deletes only a directory made of these.
ARTIFACT_FILES = frozenset({MANIFEST, FAISS_FILE, CHUNKS_FILE})


def check_index_target(directory: Path, docs: Path | None = None) -> None:
    """Refuse a target that `write_index` could not replace without destroying something it did not make:
    an existing folder that is not an index (no manifest.json, or files an index never holds), the
    documents folder itself, or a folder that contains it."""
    directory = Path(directory).expanduser().resolve()
    if docs is not None:
        docs = Path(docs).expanduser().resolve()
        if directory == docs or directory in docs.parents:
            raise ConfigError(f"INDEX={directory} is DOCS or contains it; writing the index there would replace "
                              "your documents. Choose another INDEX folder")
    if directory.is_symlink() or (directory.exists() and not directory.is_dir()):
        raise ConfigError(f"INDEX={directory} exists and is not a folder; choose another INDEX")
    if not directory.exists():
        return
    contents = {entry.name for entry in directory.iterdir()}
    if not contents:
        return
    if MANIFEST not in contents:
        raise ConfigError(f"INDEX={directory} is an existing folder that is not an index (no {MANIFEST}); "
                          "it is left untouched. Choose a new or empty folder for INDEX")
    foreign = sorted(contents - ARTIFACT_FILES)
    if foreign:
        raise ConfigError(f"INDEX={directory} holds files an index never has ({', '.join(foreign[:5])}); "
                          "rebuilding would delete them. Move them out, or choose another INDEX")


@dataclass(frozen=True)
class Chunk:
    id: int
    source: str  # path relative to the indexed folder
    chunk: int  # position of this chunk within its document
    text: str


@dataclass(frozen=True)
class Passage:
    rank: int
    source: str
    chunk: int
    score: float
    text: str
    # What of `text` the prompt gets (rag/context.py): None when context focus is off, "" when dropped.
    excerpt: str | None = None

    def to_dict(self) -> dict:
        data = asdict(self)
        if self.excerpt is None:
            del data["excerpt"]
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "Passage":
        excerpt = data.get("excerpt")
        return cls(int(data["rank"]), str(data["source"]), int(data["chunk"]), float(data["score"]), str(data["text"]),
                   None if excerpt is None else str(excerpt))


class VectorIndex:
    """A loaded index: search a normalised query vector, get ranked passages."""

    def __init__(self, directory: Path, manifest: dict, chunks: list[Chunk], index):
        self.directory = directory
        self.manifest = manifest
        self.chunks = chunks
        self.index = index

    @classmethod
    def load(cls, directory: Path, embedding_model: str, dimension: int) -> "VectorIndex":
        """Load and verify an index; refuse one built with another embedding model."""
        directory = Path(directory)
        manifest_path = directory / MANIFEST
        if not manifest_path.exists():
            raise ConfigError(
                f"RAG_INDEX_DIR={directory} holds no {MANIFEST}; build an index with "
                f"`make index DOCS=<folder> INDEX={directory}` or point RAG_INDEX_DIR at one"
            )
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("format_version") != FORMAT_VERSION:
            raise IndexMismatchError(
                f"index {directory} has format version {manifest.get('format_version')}, this service reads "
                f"{FORMAT_VERSION}; rebuild it with `make index`"
            )
        if manifest["embedding_model"] != embedding_model or int(manifest["dimension"]) != dimension:
            raise IndexMismatchError(
                f"index {directory} was built with embedding model {manifest['embedding_model']} "
                f"(dimension {manifest['dimension']}), but RAG_EMBEDDING_MODEL is {embedding_model} "
                f"(dimension {dimension}); set RAG_EMBEDDING_MODEL={manifest['embedding_model']} or rebuild "
                f"the index with `make index`"
            )
        with open(directory / CHUNKS_FILE, encoding="utf-8") as handle:
            chunks = [Chunk(**json.loads(line)) for line in handle if line.strip()]
        index = faiss.read_index(str(directory / FAISS_FILE))
        if index.ntotal != len(chunks):
            raise IndexMismatchError(
                f"index {directory} is inconsistent: {index.ntotal} vectors but {len(chunks)} chunks; rebuild it"
            )
        return cls(directory, manifest, chunks, index)

    def search(self, vector: np.ndarray, top_k: int) -> list[Passage]:
        """The `top_k` chunks nearest to one query vector, best first."""
        query = np.ascontiguousarray(vector.reshape(1, -1), dtype=np.float32)
        scores, ids = self.index.search(query, min(top_k, len(self.chunks)))
        passages = []
        for score, chunk_id in zip(scores[0], ids[0]):
            if chunk_id < 0:  # FAISS pads with -1 when it has fewer results than asked
                continue
            chunk = self.chunks[chunk_id]
            passages.append(Passage(len(passages) + 1, chunk.source, chunk.chunk, round(float(score), 6), chunk.text))
        return passages


def write_index(directory: Path, chunks: list[Chunk], vectors: np.ndarray, manifest: dict) -> Path:
    """Write the artifact atomically: into a temporary sibling directory, then renamed into place.
    An existing target is replaced only when it is an index (check_index_target), else refused."""
    directory = Path(directory).expanduser().resolve()
    check_index_target(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}-", dir=directory.parent))
    try:
        index = faiss.IndexFlatIP(vectors.shape[1])
        index.add(np.ascontiguousarray(vectors, dtype=np.float32))
        faiss.write_index(index, str(staging / FAISS_FILE))
        with open(staging / CHUNKS_FILE, "w", encoding="utf-8") as handle:
            for chunk in chunks:
                handle.write(json.dumps(asdict(chunk), ensure_ascii=False) + "\n")
        manifest = {
            "format_version": FORMAT_VERSION,
            **manifest,
            "dimension": int(vectors.shape[1]),
            "metric": "inner_product",
            "normalized": True,
            "chunks": len(chunks),
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        staging.chmod(0o755)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)  # our own temporary folder, nothing else
        raise
    _swap_into_place(staging, directory)
    return directory


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
