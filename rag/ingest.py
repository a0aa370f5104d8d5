"""Ingestion: read a folder of .md/.txt/.html files, chunk them with overlap, embed, write the index.

    python -m rag.ingest --docs data/sample --index indexes/sample
"""
from __future__ import annotations

import argparse
import logging
import os
import re
import sys
import time
from html.parser import HTMLParser
from pathlib import Path

from rag.embedder import Embedder
from rag.errors import IngestError, RagError
from rag.index import Chunk, check_index_target, write_index
from rag.settings import Settings

log = logging.getLogger(__name__)

EXTENSIONS = (".md", ".markdown", ".txt", ".html", ".htm")
_BLOCK_TAGS = {"p", "div", "br", "li", "ul", "ol", "h1", "h2", "h3", "h4", "h5", "h6", "tr", "table",
               "section", "article", "header", "footer", "pre", "blockquote", "title"}


class _HTMLText(HTMLParser):
    """Visible text of an HTML page; script and style are dropped, block tags become line breaks."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "style", "noscript", "template"):
            self._skip += 1
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n\n")

    def handle_endtag(self, tag):
        if tag in ("script", "style", "noscript", "template"):
            self._skip = max(0, self._skip - 1)
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n\n")

    def handle_data(self, data):
        if not self._skip:
            self.parts.append(data)


def html_to_text(html: str) -> str:
    """Visible text of an HTML document."""
    parser = _HTMLText()
    parser.feed(html)
    parser.close()
    return "".join(parser.parts)


def normalise(text: str) -> str:
    """Collapse runs of spaces and of blank lines; keep paragraph breaks, which chunking prefers."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = re.sub(r"[ \t\f\v]+", " ", text)
    text = re.sub(r" *\n *", "\n", text)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def read_document(path: Path) -> str:
    """The text of one file; binary or unreadable files raise IngestError naming the file."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise IngestError(f"cannot read {path}: {exc.strerror or exc}; fix its permissions or remove it")
    if b"\x00" in data[:8192]:
        raise IngestError(f"{path} looks like a binary file (it contains NUL bytes); remove it or convert it to text")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise IngestError(f"{path} is not UTF-8 text (bad byte at offset {exc.start}); re-save it as UTF-8")
    if path.suffix.lower() in (".html", ".htm"):
        text = html_to_text(text)
    return normalise(text)


def find_documents(folder: Path) -> list[Path]:
    """Every indexable file under `folder`, recursively, in a stable order.

    Hidden files and folders (a name starting with ".") are skipped, and so is anything whose real path
    lies outside `folder`: a link such as notes.txt -> ~/.aws/credentials must never be indexed, served
    in `sources` or uploaded. Each skip is logged with its reason.
    """
    if not folder.is_dir():
        raise IngestError(f"DOCS={folder} is not a folder; point DOCS at a folder of .md, .txt or .html files")
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
        raise IngestError(f"DOCS={folder} holds no .md, .txt or .html files; add documents or point DOCS elsewhere")
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
            return "a link to something that is not a .md, .txt or .html file"
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


def build_index(docs: Path, index_dir: Path, embedder: Embedder, settings: Settings, progress: bool = True) -> dict:
    """Read, chunk, embed and write an index; returns the manifest written."""
    docs = Path(docs).resolve()
    check_index_target(index_dir, docs)
    files = find_documents(docs)
    chunks: list[Chunk] = []
    documents = 0
    for path in files:
        text = read_document(path)
        if not text:
            log.warning("skipping %s: it has no text", path)
            continue
        documents += 1
        source = path.relative_to(docs).as_posix()
        for number, piece in enumerate(chunk_text(text, settings.chunk_size, settings.chunk_overlap)):
            chunks.append(Chunk(len(chunks), source, number, piece))
    if not chunks:
        raise IngestError(f"DOCS={docs} has files, but none holds any text; add documents with content")
    log.info("%d documents, %d chunks; embedding with %s", documents, len(chunks), embedder.name)
    vectors = embedder.embed([chunk.text for chunk in chunks], progress=progress)
    manifest = {
        "embedding_model": embedder.name,
        "chunk_size": settings.chunk_size,
        "chunk_overlap": settings.chunk_overlap,
        "documents": documents,
    }
    write_index(index_dir, chunks, vectors, manifest)
    return {**manifest, "chunks": len(chunks)}


def main(argv: list[str] | None = None) -> int:
    """CLI for `make index DOCS=... INDEX=...`."""
    parser = argparse.ArgumentParser(prog="python -m rag.ingest", description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=Path, required=True, help="folder of .md/.txt/.html files (recursive)")
    parser.add_argument("--index", type=Path, required=True, help="directory to write the index artifact to")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    started = time.monotonic()
    try:
        settings = Settings.from_env()
        from rag.pipeline import load_embedder  # heavy imports only once arguments are valid

        # Fail before loading the model when a folder is wrong, and never index into the documents.
        find_documents(args.docs.resolve())
        check_index_target(args.index, args.docs)
        manifest = build_index(args.docs, args.index, load_embedder(settings), settings)
    except RagError as exc:
        log.error("%s", exc.message)
        return 2
    log.info("wrote %s: %d documents, %d chunks in %.1f s", args.index, manifest["documents"],
             manifest["chunks"], time.monotonic() - started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
