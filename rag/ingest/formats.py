"""Document formats: the text of .md, .txt, .html, .pdf and .docx files, as sections with their page.

A PDF gives one section per page that has a text layer (so each chunk knows its page); the other
formats give one section without a page. A file that cannot be read (binary, not UTF-8, an encrypted,
scanned-only or corrupt PDF or DOCX) raises UnreadableDocument, whose message names the file and says
what to do; ingestion skips it with that one line, or stops on it with STRICT=1.
"""

from __future__ import annotations

import io
import logging
import re
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

from rag.errors import IngestError

log = logging.getLogger(__name__)
# pypdf logs its own repairs of damaged files; the one line we write per file says what matters.
logging.getLogger("pypdf").setLevel(logging.ERROR)

TEXT_SUFFIXES = (".md", ".markdown", ".txt")
HTML_SUFFIXES = (".html", ".htm")
EXTENSIONS = TEXT_SUFFIXES + HTML_SUFFIXES + (".pdf", ".docx")
DESCRIPTION = ".md, .txt, .html, .pdf or .docx"
_BLOCK_TAGS = {
    "p",
    "div",
    "br",
    "li",
    "ul",
    "ol",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "tr",
    "table",
    "section",
    "article",
    "header",
    "footer",
    "pre",
    "blockquote",
    "title",
}
_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # what an encrypted Office file (or an old .doc) starts with


class UnreadableDocument(IngestError):
    """A document that cannot be read; skipped with a warning unless STRICT=1."""


@dataclass(frozen=True)
class Section:
    text: str
    page: int | None = None  # 1-based PDF page


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


def _plain_text(path: Path, data: bytes) -> str:
    if b"\x00" in data[:8192]:
        raise UnreadableDocument(
            f"{path} looks like a binary file (it contains NUL bytes); remove it or convert it to text"
        )
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UnreadableDocument(f"{path} is not UTF-8 text (bad byte at offset {exc.start}); re-save it as UTF-8")
    return html_to_text(text) if path.suffix.lower() in HTML_SUFFIXES else text


def _pdf_sections(path: Path, data: bytes) -> list[Section]:
    from pypdf import PdfReader

    # Third-party parsers raise many kinds of errors on damaged files; each becomes one line naming the file.
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not _open_with_empty_password(reader):
            raise UnreadableDocument(
                f"{path} is an encrypted PDF that needs a password; save a decrypted copy or remove it"
            )
        texts = [normalise(page.extract_text() or "") for page in reader.pages]
    except UnreadableDocument:
        raise
    except Exception as exc:
        raise UnreadableDocument(
            f"{path} could not be read as a PDF ({type(exc).__name__}: {str(exc)[:120]}); "
            "it may be damaged: re-export it or remove it"
        )
    sections = [Section(text, number) for number, text in enumerate(texts, start=1) if text]
    if not sections:
        raise UnreadableDocument(
            f"{path} has no text layer on any of its {len(texts)} page(s) (a scan?); run "
            "OCR on it (for example ocrmypdf) or remove it"
        )
    if len(sections) < len(texts):
        log.warning(
            "%s: %d of %d pages have no text layer (scanned?); indexing the others",
            path,
            len(texts) - len(sections),
            len(texts),
        )
    return sections


def _open_with_empty_password(reader) -> bool:
    """True when an encrypted PDF opens without a password (only an owner password restricts it)."""
    try:
        return bool(reader.decrypt(""))
    except Exception:  # e.g. AES without the optional crypto package: treat as locked
        return False


def _docx_text(path: Path, data: bytes) -> str:
    if data.startswith(_OLE_MAGIC):
        raise UnreadableDocument(
            f"{path} is a password-protected Word file (or an old .doc renamed); save an "
            "unprotected .docx copy or remove it"
        )
    import docx
    from docx.table import Table

    try:
        document = docx.Document(io.BytesIO(data))
        blocks = []
        for block in document.iter_inner_content():  # paragraphs and tables in reading order
            if isinstance(block, Table):
                blocks += [" | ".join(cell.text.strip() for cell in row.cells) for row in block.rows]
            else:
                blocks.append(block.text)
    except Exception as exc:
        raise UnreadableDocument(
            f"{path} could not be read as a DOCX ({type(exc).__name__}: {str(exc)[:120]}); "
            "it may be damaged: re-save it in Word or remove it"
        )
    return "\n\n".join(blocks)


def read_sections(path: Path, data: bytes | None = None) -> list[Section]:
    """The normalised text of one file (its bytes, when already read) as sections; [] when it has none."""
    if data is None:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise UnreadableDocument(f"cannot read {path}: {exc.strerror or exc}; fix its permissions or remove it")
    suffix = path.suffix.lower()
    if suffix == ".pdf":
        return _pdf_sections(path, data)
    text = normalise(_docx_text(path, data) if suffix == ".docx" else _plain_text(path, data))
    return [Section(text)] if text else []
