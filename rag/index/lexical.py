"""The index artifact's BM25 part: exact terms (part numbers, codes, names) found by word, not by meaning.

Built by write_index next to faiss.index from the same chunks, in the same chunk-id order, with bm25s:

    bm25.data.npy  bm25.indices.npy  bm25.indptr.npy   the term x chunk BM25 weights (CSC), memory-mapped
    bm25.vocab.json                                    term -> row, read into memory at load
    bm25.params.json                                   k1, b, method, chunk count (bm25s's own file)

The manifest's "bm25" entry lists these files with the tokenizer version: an index built before hybrid
retrieval has no entry, and RAG_RETRIEVAL=hybrid refuses it at start-up (rag.retrieval.local).

Tokenisation keeps identifiers whole and searchable by their parts: "KV-4460-02" is indexed as
`kv-4460-02`, `kv`, `4460` and `02`; "CRC-16/ARC" as `crc-16/arc`, `crc`, `16`, `arc`, all case-folded.
A query naming the whole identifier matches the whole token (rare, so heavily weighted) and its parts; a
query naming a part ("error 41") still finds it. No stemming: it needs a compiled dependency (PyStemmer).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np

from rag.errors import ConfigError, IndexMismatchError

log = logging.getLogger(__name__)

TOKENIZER = "identifiers-1"  # bump when tokenize() changes: indexes built with another version are refused
FILES = {
    "data_name": "bm25.data.npy",
    "indices_name": "bm25.indices.npy",
    "indptr_name": "bm25.indptr.npy",
    "vocab_name": "bm25.vocab.json",
    "params_name": "bm25.params.json",
}
BM25_FILES = frozenset(FILES.values())

# A word, or words joined without spaces by - / . _ : (identifiers, codes, versions, decimals).
_TERM = re.compile(r"\w+(?:[-/._:]\w+)*")
_PART = re.compile(r"[^\W_]+")
# English function words: frequent everywhere, so they only add noise to short questions.
STOPWORDS = frozenset(
    """a an and are as at be but by for if in into is it no not of on or such that the their then there
these they this to was will with what which who whom whose when where why how do does did""".split()
)


def tokenize(text: str) -> list[str]:
    """Case-folded terms of `text`: each word; an identifier whole and then each of its parts."""
    terms = []
    for match in _TERM.finditer(text.casefold()):
        whole = match.group()
        parts = _PART.findall(whole)
        if len(parts) > 1:
            terms.append(whole)
            terms += parts
        elif parts and parts[0] not in STOPWORDS:
            terms.append(parts[0])
    return terms


def _bm25s():
    """bm25s, imported where the BM25 part is built or read (the LLM side never needs it)."""
    import bm25s

    return bm25s


def write_bm25(directory: Path, texts: list[str]) -> dict:
    """Index `texts` (chunk id = position) into `directory`; returns the manifest's "bm25" entry."""
    entry = {"kind": "bm25", "tokenizer": TOKENIZER, "chunks": len(texts), "files": sorted(BM25_FILES)}
    if not texts:  # bm25s cannot index nothing; an empty index has nothing to find either
        return {**entry, "files": []}
    model = _bm25s().BM25()  # BM25 as Lucene scores it, k1=1.5, b=0.75 (bm25s's defaults)
    model.index([tokenize(text) for text in texts], show_progress=False)
    model.save(directory, show_progress=False, **FILES)
    return {**entry, "k1": model.k1, "b": model.b, "method": model.method}


def require_bm25(directory: Path, manifest: dict) -> dict:
    """The manifest's "bm25" entry; an index without one (built before hybrid retrieval) or with another
    tokenizer is refused with one line saying how to fix it."""
    entry = manifest.get("bm25")
    if not entry:
        raise ConfigError(
            f"RAG_RETRIEVAL=hybrid needs the index's BM25 part, and {directory} was built without one; "
            f"rebuild it with `make index DOCS=<folder> INDEX={directory}` (nothing is re-embedded), "
            "or set RAG_RETRIEVAL=dense"
        )
    if entry.get("tokenizer") != TOKENIZER:
        raise IndexMismatchError(
            f"index {directory} has a BM25 part of tokenizer {entry.get('tokenizer')}, this service "
            f"reads {TOKENIZER}; rebuild it with `make index DOCS=<folder> INDEX={directory}`"
        )
    return entry


class LexicalIndex:
    """A loaded BM25 part: a query's best chunks by BM25 score. Thread-safe (it only reads)."""

    def __init__(self, model, chunks: int):
        self.model = model  # None for an empty index
        self.chunks = chunks

    @classmethod
    def load(cls, directory: Path, manifest: dict, mmap: bool = True) -> LexicalIndex:
        """The BM25 part listed in `manifest`, memory-mapped; refused when absent or built otherwise."""
        entry = require_bm25(directory, manifest)
        if not entry["chunks"]:
            return cls(None, 0)
        missing = [name for name in entry["files"] if not (Path(directory) / name).is_file()]
        if missing:
            raise IndexMismatchError(
                f"index {directory} lacks {', '.join(missing)} of its BM25 part; rebuild it with `make index`"
            )
        model = _bm25s().BM25.load(directory, mmap=mmap, show_progress=False, **FILES)
        return cls(model, int(entry["chunks"]))

    def search(self, query: str, count: int) -> list[tuple[int, float]]:
        """Up to `count` (chunk id, BM25 score) pairs, best first; only chunks sharing a term with the query.
        Equal scores keep chunk-id order, so the result is deterministic."""
        if self.model is None:
            return []
        ids = [self.model.vocab_dict[term] for term in dict.fromkeys(tokenize(query)) if term in self.model.vocab_dict]
        if not ids:
            return []
        scores = self.model.get_scores(ids)
        found = np.flatnonzero(scores > 0)
        best = found[np.lexsort((found, -scores[found]))][:count]
        return [(int(chunk_id), float(scores[chunk_id])) for chunk_id in best]
