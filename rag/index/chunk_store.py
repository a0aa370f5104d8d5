"""The on-disk chunk store: chunks.jsonl plus chunk_offsets.npy, read one chunk per search hit.

A million chunks parsed into Python objects cost each worker hundreds of MB of private heap. Instead the
texts stay in chunks.jsonl and a memory-mapped array of byte offsets (N+1 little-endian uint64) says
where each line starts, so a hit costs one `os.pread`. Both files live in the page cache, which every
worker shares, so a second worker adds next to nothing. Artifacts of format 1 have no offsets file:
the offsets are then computed once at load by scanning chunks.jsonl.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from rag.errors import IndexMismatchError

CHUNKS_FILE, OFFSETS_FILE = "chunks.jsonl", "chunk_offsets.npy"


@dataclass(frozen=True)
class Chunk:
    id: int
    source: str  # path relative to the indexed folder
    chunk: int  # position of this chunk within its document
    text: str
    page: int | None = None  # 1-based page of a PDF; None for formats without pages

    def to_json(self) -> str:
        """One chunks.jsonl line (without the newline); `page` only when there is one."""
        row = asdict(self)
        if self.page is None:
            del row["page"]
        return json.dumps(row, ensure_ascii=False)


def write_chunks(directory: Path, chunks: Iterable[Chunk]) -> int:
    """Write chunks.jsonl and its offsets file into `directory`; returns the number of chunks."""
    offsets = [0]
    with open(directory / CHUNKS_FILE, "wb") as handle:
        for chunk in chunks:
            handle.write((chunk.to_json() + "\n").encode("utf-8"))
            offsets.append(handle.tell())
    np.save(directory / OFFSETS_FILE, np.asarray(offsets, dtype="<u8"))
    return len(offsets) - 1


def _scan_offsets(path: Path) -> np.ndarray:
    """Offsets of every non-empty line, for artifacts written before the offsets file existed."""
    offsets, position = [], 0
    with open(path, "rb") as handle:
        for line in handle:
            if line.strip():
                offsets.append(position)
            position += len(line)
    return np.asarray(offsets + [position], dtype="<u8")


class ChunkStore:
    """Chunks by id, read from disk on demand; len() is the number of chunks. Thread-safe (pread)."""

    def __init__(self, path: Path, offsets: np.ndarray):
        self.path = path
        self.offsets = offsets
        self._fd = -1
        self._fd = os.open(path, os.O_RDONLY)

    @classmethod
    def open(cls, directory: Path) -> ChunkStore:
        """Open the store of an index directory; an offsets file that does not match is refused."""
        directory = Path(directory)
        path = directory / CHUNKS_FILE
        if (directory / OFFSETS_FILE).exists():
            offsets = np.load(directory / OFFSETS_FILE, mmap_mode="r")
        else:
            offsets = _scan_offsets(path)
        size = path.stat().st_size
        if offsets.ndim != 1 or len(offsets) < 1 or int(offsets[-1]) != size:
            raise IndexMismatchError(
                f"index {directory} is inconsistent: {OFFSETS_FILE} does not match "
                f"{CHUNKS_FILE} ({size} bytes); rebuild it with `make index`"
            )
        return cls(path, offsets)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, chunk_id: int) -> Chunk:
        if not 0 <= chunk_id < len(self):
            raise IndexError(f"chunk {chunk_id} is not in {self.path} ({len(self)} chunks)")
        start, end = int(self.offsets[chunk_id]), int(self.offsets[chunk_id + 1])
        return Chunk(**json.loads(os.pread(self._fd, end - start, start)))

    def __iter__(self) -> Iterator[Chunk]:
        """Every chunk in id order, read sequentially (for re-indexing and merging, not for serving)."""
        with open(self.path, encoding="utf-8") as handle:
            for line in handle:
                if line.strip():
                    yield Chunk(**json.loads(line))

    def close(self) -> None:
        """Close the file; the store cannot be read afterwards."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __del__(self):
        self.close()
