"""Ingestion: read a folder of documents, chunk them with overlap, embed, write the index.

    python -m rag.ingest --docs data/sample --index indexes/sample [--strict]

Re-indexing is incremental: a file whose content hash is already in the index keeps its chunks and
vectors, only added or changed files are embedded, deleted ones are dropped, and the artifact is
rewritten atomically. An unchanged folder embeds nothing and leaves the index as it is.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np

from rag.errors import IngestError, RagError
from rag.index.artifact import MANIFEST, IndexedDocument, check_index_target, read_manifest, write_index
from rag.index.lexical import TOKENIZER
from rag.index.stored_documents import read_document_hashes, read_documents
from rag.ingest.formats import DESCRIPTION, EXTENSIONS, UnreadableDocument, html_to_text, normalise, read_sections
from rag.retrieval.embedder import Embedder
from rag.retrieval.local import load_embedder
from rag.settings import Settings, parse_bool

log = logging.getLogger(__name__)

__all__ = ["build_index", "chunk_text", "find_documents", "html_to_text", "normalise", "read_document"]


def read_document(path: Path) -> str:
    """The whole normalised text of one file; an unreadable file raises UnreadableDocument naming it."""
    return "\n\n".join(section.text for section in read_sections(path))


def find_documents(folder: Path) -> list[Path]:
    """Every indexable file under `folder`, recursively, in a stable order.

    Hidden files and folders (a name starting with ".") are skipped, and so is anything whose real path
    lies outside `folder`: a link such as notes.txt -> ~/.aws/credentials must never be indexed, served
    in `sources` or uploaded. Each skip is logged with its reason.
    """
    if not folder.is_dir():
        raise IngestError(f"DOCS={folder} is not a folder; point DOCS at a folder of {DESCRIPTION} files")
    root = folder.resolve()
    files = []
    # os.walk does not follow linked folders; linked files are resolved and checked one by one below.
    for directory, subdirs, names in os.walk(root):
        here = Path(directory)
        for name in [d for d in subdirs if d.startswith(".")]:
            log.warning("skipping hidden folder %s", (here / name).relative_to(root))
        subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
        for name in names:
            path = here / name
            reason = _skip_reason(path, root)
            if reason:
                if reason != "not a document":
                    log.warning("skipping %s: %s", path.relative_to(root), reason)
                continue
            files.append(path)
    files.sort()
    if not files:
        raise IngestError(f"DOCS={folder} holds no {DESCRIPTION} files; add documents or point DOCS elsewhere")
    return files


def _skip_reason(path: Path, root: Path) -> str | None:
    """Why `path` is not indexed, or None when it is a document to read."""
    if path.name.startswith("."):
        return "hidden file"
    if path.is_symlink():
        target = path.resolve()
        if target != root and root not in target.parents:
            return "a link to a file outside DOCS"
        if target.suffix.lower() not in EXTENSIONS or not target.is_file():
            return f"a link to something that is not a {DESCRIPTION} file"
        if any(part.startswith(".") for part in target.relative_to(root).parts):
            return "a link to a hidden file"
    if path.suffix.lower() not in EXTENSIONS or not path.is_file():
        return "not a document"
    return None


def _break_point(text: str, start: int, end: int) -> int:
    """The best place to end a chunk in text[start:end]: a paragraph, sentence, then word boundary."""
    floor = start + (end - start) // 2  # never make a chunk shorter than half the size
    for pattern in ("\n\n", "\n", ". ", "? ", "! ", "; ", ", ", " "):
        at = text.rfind(pattern, floor, end)
        if at != -1:
            return at + len(pattern)
    return end


def chunk_text(text: str, size: int, overlap: int) -> list[str]:
    """Split text into chunks of at most `size` characters; consecutive chunks share ~`overlap`."""
    chunks, start = [], 0
    while start < len(text):
        end = min(start + size, len(text))
        if end < len(text):
            end = _break_point(text, start, end)
        piece = text[start:end].strip()
        if piece:
            chunks.append(piece)
        if end >= len(text):
            break
        next_start = max(end - overlap, start + 1)
        # Start the overlap on a word boundary, so no chunk begins mid-word.
        space = text.find(" ", next_start, end)
        start = space + 1 if overlap and space != -1 else next_start
    return chunks


def _reusable(index_dir: Path, embedder: Embedder, settings: Settings) -> dict[str, str]:
    """source -> sha256 of the documents an existing index can lend to this build ({} when none).
    An index built with another model or chunking cannot: everything is embedded again, and we say why."""
    if not (Path(index_dir) / MANIFEST).exists():
        return {}
    manifest = read_manifest(index_dir)
    built_with = (manifest["embedding_model"], manifest.get("chunk_size"), manifest.get("chunk_overlap"))
    if built_with != (embedder.name, settings.chunk_size, settings.chunk_overlap):
        log.info("re-embedding every document: %s was built with model %s, chunks %s/%s", index_dir, *built_with)
        return {}
    hashes = read_document_hashes(index_dir)
    if hashes is None:
        log.info("re-embedding every document: %s records no content hashes (format 1)", index_dir)
        return {}
    return hashes


def _read(path: Path, source: str, data: bytes, settings: Settings, strict: bool) -> IndexedDocument | None:
    """The chunks of one new or changed file, not yet embedded; None when it is skipped."""
    try:
        sections = read_sections(path, data)
    except UnreadableDocument as exc:
        if strict:
            raise
        log.warning("skipping: %s", exc.message)
        return None
    if not sections:
        log.warning("skipping %s: it has no text", path)
        return None
    texts, pages = [], []
    for section in sections:  # chunks never span two pages, so each one has one page
        pieces = chunk_text(section.text, settings.chunk_size, settings.chunk_overlap)
        texts += pieces
        pages += [section.page] * len(pieces)
    return IndexedDocument(source, hashlib.sha256(data).hexdigest(), texts, pages, np.zeros((0, 0), np.float32))


def build_index(
    docs: Path, index_dir: Path, embedder: Embedder, settings: Settings, progress: bool = True, strict: bool = False
) -> dict:
    """Read, chunk, embed and write an index, reusing what an existing one holds; returns its manifest."""
    docs = Path(docs).resolve()
    check_index_target(index_dir, docs)
    files = find_documents(docs)
    known = _reusable(index_dir, embedder, settings)
    kept: list[str] = []
    fresh: dict[str, IndexedDocument] = {}
    for path in files:
        source = path.relative_to(docs).as_posix()
        try:
            data = path.read_bytes()
        except OSError as exc:
            error = UnreadableDocument(f"cannot read {path}: {exc.strerror or exc}; fix its permissions or remove it")
            if strict:
                raise error
            log.warning("skipping: %s", error.message)
            continue
        if known.get(source) == hashlib.sha256(data).hexdigest():
            kept.append(source)
            continue
        document = _read(path, source, data, settings, strict)
        if document is not None:
            fresh[source] = document
    removed = len(set(known) - set(kept))
    if not kept and not fresh:
        raise IngestError(f"DOCS={docs} has files, but none holds any text; add documents with content")
    texts = [text for document in fresh.values() for text in document.texts]
    log.info(
        "%d documents (%d unchanged, %d new or changed, %d removed); embedding %d chunks with %s",
        len(kept) + len(fresh),
        len(kept),
        len(fresh),
        removed,
        len(texts),
        embedder.name,
    )
    existing = read_manifest(index_dir) if known else {}
    # An index written before the BM25 part (or its tokenizer) is rewritten, nothing re-embedded, to gain it.
    if (
        known
        and not fresh
        and not removed
        and existing.get("requested_index_type") == settings.index_type
        and (existing.get("bm25") or {}).get("tokenizer") == TOKENIZER
    ):
        log.info("%s is up to date: nothing embedded, nothing rewritten", index_dir)
        return existing
    vectors = embedder.embed(texts, progress=progress) if texts else np.zeros((0, embedder.dimension), np.float32)
    start = 0
    for document in fresh.values():
        document.vectors = vectors[start : start + len(document.texts)]
        start += len(document.texts)
    reused = read_documents(index_dir, set(kept)) if kept else {}
    documents = [fresh.get(source) or reused[source] for source in sorted({*kept, *fresh})]
    manifest = {
        "embedding_model": embedder.name,
        "dimension": embedder.dimension,
        "chunk_size": settings.chunk_size,
        "chunk_overlap": settings.chunk_overlap,
    }
    return write_index(index_dir, documents, manifest, settings.index_type)


def strict_from_env(env: dict | None = None) -> bool:
    """STRICT=1 makes an unreadable document fatal instead of a skipped file with a warning."""
    return parse_bool((os.environ if env is None else env).get("STRICT"), "STRICT")


def main(argv: list[str] | None = None) -> int:
    """CLI for `make index DOCS=... INDEX=... [STRICT=1]`."""
    parser = argparse.ArgumentParser(prog="python -m rag.ingest", description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=Path, required=True, help=f"folder of {DESCRIPTION} files (recursive)")
    parser.add_argument("--index", type=Path, required=True, help="directory to write the index artifact to")
    parser.add_argument("--strict", action="store_true", help="stop on an unreadable document (default: STRICT)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    started = time.monotonic()
    try:
        settings = Settings.from_env()
        strict = args.strict or strict_from_env()
        # Fail before loading the model when a folder is wrong, and never index into the documents.
        find_documents(args.docs.resolve())
        check_index_target(args.index, args.docs)
        manifest = build_index(args.docs, args.index, load_embedder(settings), settings, strict=strict)
    except RagError as exc:
        log.error("%s", exc.message)
        return 2
    log.info(
        "%s: %d documents, %d chunks, %s index (recall@10 %s) in %.1f s",
        args.index,
        manifest["documents"],
        manifest["chunks"],
        manifest.get("index_type", "flat"),
        manifest.get("recall_at_10", 1.0),
        time.monotonic() - started,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
