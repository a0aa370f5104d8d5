"""PDF and DOCX ingestion with generated files; unreadable files skipped with one line, or fatal with STRICT."""

import logging

import pytest

from rag.errors import ConfigError
from rag.index.artifact import VectorIndex
from rag.ingest.build import build_index, strict_from_env
from rag.ingest.formats import UnreadableDocument, read_sections
from rag.settings import Settings
from rag.types import Passage
from tests.documents import docx_bytes, encrypt_pdf, pdf_bytes
from tests.fakes import FakeEmbedder

SETTINGS = Settings(chunk_size=200, chunk_overlap=40)


def test_pdf_text_layer_is_read_page_by_page(tmp_path):
    path = tmp_path / "report.pdf"
    path.write_bytes(
        pdf_bytes(
            [
                "The lighthouse was lit in 1852.\nIts keeper was Odile Brann.",
                None,
                "The fog horn (1901) replaced the bell.",
            ]
        )
    )
    sections = read_sections(path)
    assert [(s.page, s.text) for s in sections] == [
        (1, "The lighthouse was lit in 1852.\nIts keeper was Odile Brann."),
        (3, "The fog horn (1901) replaced the bell."),  # page 2 is an image only: nothing to index
    ]


def test_pdf_locked_only_by_an_owner_password_is_read(tmp_path):
    path = tmp_path / "owner.pdf"
    path.write_bytes(encrypt_pdf(pdf_bytes(["Printing is restricted, reading is not."]), user_password=""))
    assert read_sections(path)[0].text == "Printing is restricted, reading is not."


def test_docx_paragraphs_and_tables_in_reading_order(tmp_path):
    path = tmp_path / "fares.docx"
    path.write_bytes(docx_bytes("Fares", ["A single ride costs 2.40 crowns."], [["ticket", "price"], ["day", "6.00"]]))
    [section] = read_sections(path)
    assert section.page is None
    assert section.text == "Fares\n\nA single ride costs 2.40 crowns.\n\nticket | price\n\nday | 6.00"


@pytest.mark.parametrize(
    "name, content, message",
    [
        (
            "locked.pdf",
            lambda: encrypt_pdf(pdf_bytes(["secret"]), user_password="s3cret"),
            "encrypted PDF that needs a password",
        ),
        ("scan.pdf", lambda: pdf_bytes([None, None]), "no text layer on any of its 2 page"),
        ("broken.pdf", lambda: pdf_bytes(["hello"])[:120], "could not be read as a PDF"),
        ("garbage.pdf", lambda: b"%PDF-1.4\n" + bytes(range(256)) * 2, "could not be read as a PDF"),
        ("locked.docx", lambda: b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(512), "password-protected Word file"),
        ("broken.docx", lambda: b"PK\x03\x04" + bytes(64), "could not be read as a DOCX"),
    ],
)
def test_unreadable_documents_name_the_file(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content())
    with pytest.raises(UnreadableDocument, match=message) as info:
        read_sections(path)
    assert name in info.value.message


def make_corpus(docs):
    docs.mkdir()
    (docs / "guide.pdf").write_bytes(
        pdf_bytes(["Ferries leave the quay every 20 minutes.", "Night ferries run hourly."])
    )
    (docs / "fares.docx").write_bytes(docx_bytes("Fares", ["A single ride costs 2.40 crowns."]))
    (docs / "notes.md").write_text("The sea wall is 4 km long.", encoding="utf-8")
    (docs / "locked.pdf").write_bytes(encrypt_pdf(pdf_bytes(["secret"]), user_password="pw"))
    (docs / "scan.pdf").write_bytes(pdf_bytes([None]))
    (docs / "broken.docx").write_bytes(b"PK\x03\x04" + bytes(64))


def test_unreadable_files_are_skipped_with_one_warning_each(tmp_path, caplog):
    make_corpus(tmp_path / "docs")
    caplog.set_level(logging.WARNING)
    embedder = FakeEmbedder()
    manifest = build_index(tmp_path / "docs", tmp_path / "index", embedder, SETTINGS, progress=False)
    assert manifest["documents"] == 3
    skipped = [r.getMessage() for r in caplog.records if r.getMessage().startswith("skipping")]
    assert len(skipped) == 3
    for name in ("locked.pdf", "scan.pdf", "broken.docx"):
        assert sum(name in line for line in skipped) == 1
    index = VectorIndex.load(tmp_path / "index", embedder.name, embedder.dimension)
    [best] = index.search(embedder.embed(["night ferries run hourly"])[0], top_k=1)
    assert (best.source, best.page, best.chunk) == ("guide.pdf", 2, 1)
    [fares] = index.search(embedder.embed(["single ride crowns"])[0], top_k=1)
    assert fares.source == "fares.docx" and fares.page is None


def test_strict_makes_the_first_unreadable_file_fatal(tmp_path):
    make_corpus(tmp_path / "docs")
    with pytest.raises(UnreadableDocument, match="broken.docx"):
        build_index(tmp_path / "docs", tmp_path / "index", FakeEmbedder(), SETTINGS, progress=False, strict=True)
    assert not (tmp_path / "index").exists()


def test_strict_comes_from_the_make_variable():
    assert strict_from_env({"STRICT": "1"}) and not strict_from_env({}) and not strict_from_env({"STRICT": "0"})
    with pytest.raises(ConfigError, match="STRICT"):
        strict_from_env({"STRICT": "maybe"})


def test_page_round_trips_through_json_and_is_absent_without_one():
    with_page = Passage(1, "guide.pdf", 1, 0.5, "text", page=2)
    assert Passage.from_dict(with_page.to_dict()) == with_page and with_page.to_dict()["page"] == 2
    without = Passage(1, "notes.md", 0, 0.5, "text")
    assert "page" not in without.to_dict() and Passage.from_dict(without.to_dict()) == without
