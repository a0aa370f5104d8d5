"""Ingestion and the index artifact, with the fake embedder."""

import json
import logging
import os

import numpy as np
import pytest

from rag.errors import ConfigError, IndexMismatchError, IngestError
from rag.index.artifact import VectorIndex
from rag.ingest.build import build_index, chunk_text, find_documents, read_document
from rag.ingest.formats import html_to_text, normalise
from rag.settings import Settings
from tests.fakes import FakeEmbedder

SETTINGS = Settings(chunk_size=200, chunk_overlap=40)


def write(folder, name, text):
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_chunks_respect_size_and_overlap():
    text = normalise(" ".join(f"Sentence number {i} tells a fact about the harbour." for i in range(60)))
    chunks = chunk_text(text, size=200, overlap=40)
    assert len(chunks) > 5
    assert all(len(chunk) <= 200 for chunk in chunks)
    for first, second in zip(chunks, chunks[1:]):
        # consecutive chunks share text, so a fact on a boundary is whole in one of them
        assert first[-25:].split()[-1] in second
    # every word of the document survives chunking
    assert set(text.split()) <= set(" ".join(chunks).split())


def test_chunks_prefer_paragraph_breaks():
    text = "A" * 120 + "\n\n" + "B" * 120
    assert chunk_text(text, size=200, overlap=0) == ["A" * 120, "B" * 120]


def test_short_text_is_one_chunk_and_empty_text_none():
    assert chunk_text("one short line", 200, 40) == ["one short line"]
    assert chunk_text("", 200, 40) == []


def test_html_keeps_visible_text_only():
    html = (
        "<html><head><title>Lanterns</title><style>p{color:red}</style></head><body><h1>Festival</h1>"
        "<p>First held in 1598.</p><script>var secret = 'SENTINEL';</script></body></html>"
    )
    text = normalise(html_to_text(html))
    assert "First held in 1598." in text and "Festival" in text and "Lanterns" in text
    assert "SENTINEL" not in text and "color" not in text


def test_finds_documents_recursively_and_ignores_others(tmp_path):
    write(tmp_path, "a.md", "alpha")
    write(tmp_path, "deep/b.txt", "beta")
    write(tmp_path, "deep/er/c.html", "<p>gamma</p>")
    write(tmp_path, "d.pdf", "read later")
    write(tmp_path, "e.DOCX", "read later")
    write(tmp_path, "f.xlsx", "not indexed")
    write(tmp_path, "g.doc", "not indexed")
    assert [p.relative_to(tmp_path).as_posix() for p in find_documents(tmp_path)] == [
        "a.md",
        "d.pdf",
        "deep/b.txt",
        "deep/er/c.html",
        "e.DOCX",
    ]


@pytest.mark.parametrize(
    "content, message",
    [
        (b"\x89PNG\r\n\x1a\n\x00\x00binary", "binary"),
        (b"caf\xe9 latin-1 text", "not UTF-8"),
    ],
)
def test_binary_or_non_utf8_file_is_named(tmp_path, content, message):
    path = tmp_path / "bad.md"
    path.write_bytes(content)
    with pytest.raises(IngestError, match=message) as info:
        read_document(path)
    assert "bad.md" in info.value.message


def test_unreadable_file_is_named(tmp_path):
    os.symlink(tmp_path / "missing-target.md", tmp_path / "dangling.md")
    with pytest.raises(IngestError, match="cannot read .*dangling.md"):
        read_document(tmp_path / "dangling.md")


def test_empty_folder_is_refused(tmp_path):
    with pytest.raises(IngestError, match="holds no .md, .txt, .html, .pdf or .docx"):
        find_documents(tmp_path)
    with pytest.raises(IngestError, match="not a folder"):
        find_documents(tmp_path / "nope")


def test_build_load_and_search(tmp_path):
    docs = tmp_path / "docs"
    write(docs, "tram.md", "# Tram\n\nThe tramway opened in 1889 and was designed by Ilse Marrow.")
    write(docs, "bridge.md", "# Bridge\n\nThe glass bridge over the river opened in 1936.")
    write(docs, "sub/empty.txt", "   \n")
    embedder = FakeEmbedder()
    manifest = build_index(docs, tmp_path / "index", embedder, SETTINGS, progress=False)
    assert manifest["documents"] == 2 and manifest["chunks"] == 2
    stored = json.loads((tmp_path / "index" / "manifest.json").read_text())
    for key in (
        "format_version",
        "embedding_model",
        "dimension",
        "metric",
        "chunk_size",
        "chunk_overlap",
        "documents",
        "chunks",
        "created_at",
    ):
        assert key in stored
    lines = [json.loads(line) for line in (tmp_path / "index" / "chunks.jsonl").read_text().splitlines()]
    assert {line["source"] for line in lines} == {"tram.md", "bridge.md"}
    index = VectorIndex.load(tmp_path / "index", embedder.name, embedder.dimension)
    passages = index.search(embedder.embed(["who designed the tramway, Ilse Marrow?"])[0], top_k=5)
    assert [p.rank for p in passages] == [1, 2]  # fewer chunks than top_k: no padding
    assert passages[0].source == "tram.md" and passages[0].score > passages[1].score


def test_failed_strict_build_leaves_no_partial_index(tmp_path):
    docs = tmp_path / "docs"
    write(docs, "good.md", "fine text")
    (docs / "bad.txt").write_bytes(b"\x00\x01\x02")
    with pytest.raises(IngestError, match="bad.txt"):
        build_index(docs, tmp_path / "index", FakeEmbedder(), SETTINGS, progress=False, strict=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["docs"]


def test_rebuild_replaces_index_atomically(tmp_path):
    docs = tmp_path / "docs"
    write(docs, "a.md", "first version")
    build_index(docs, tmp_path / "index", FakeEmbedder(), SETTINGS, progress=False)
    write(docs, "b.md", "second document")
    build_index(docs, tmp_path / "index", FakeEmbedder(), SETTINGS, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["docs", "index"]
    assert json.loads((tmp_path / "index" / "manifest.json").read_text())["documents"] == 2


def test_mismatched_embedding_model_is_refused(tmp_path):
    write(tmp_path / "docs", "a.md", "text")
    build_index(tmp_path / "docs", tmp_path / "index", FakeEmbedder(), SETTINGS, progress=False)
    with pytest.raises(IndexMismatchError, match="RAG_EMBEDDING_MODEL=fake-embedder"):
        VectorIndex.load(tmp_path / "index", "other-model", 256)
    with pytest.raises(IndexMismatchError, match="dimension"):
        VectorIndex.load(tmp_path / "index", "fake-embedder", 384)


def test_missing_index_names_the_variable(tmp_path):
    with pytest.raises(ConfigError, match="RAG_INDEX_DIR"):
        VectorIndex.load(tmp_path, "fake-embedder", 256)


def test_embed_normalises_and_batches():
    embedder = FakeEmbedder()
    vectors = embedder.embed([f"text {i}" for i in range(10)])
    assert vectors.shape == (10, 256) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0)
    assert embedder.calls == 3  # batch_size 4


# --- Nothing outside an index is ever deleted, and nothing outside DOCS is ever read ----------------


def test_existing_folder_that_is_not_an_index_is_refused_and_kept(tmp_path):
    docs, home = tmp_path / "docs", tmp_path / "home"
    write(docs, "a.md", "alpha")
    write(home, "thesis.tex", "years of work")
    with pytest.raises(ConfigError, match="not an index"):
        build_index(docs, home, FakeEmbedder(), SETTINGS, progress=False)
    assert (home / "thesis.tex").read_text() == "years of work"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["docs", "home"]  # no staging folder left either


@pytest.mark.parametrize("target", ["docs", "."])
def test_index_into_docs_or_a_folder_containing_it_is_refused(tmp_path, target):
    docs = tmp_path / "docs"
    write(docs, "a.md", "alpha")
    with pytest.raises(ConfigError, match="is DOCS or contains it"):
        build_index(docs, tmp_path / target, FakeEmbedder(), SETTINGS, progress=False)
    assert (docs / "a.md").read_text() == "alpha"


def test_index_with_a_stray_file_is_not_replaced(tmp_path):
    docs, index = tmp_path / "docs", tmp_path / "index"
    write(docs, "a.md", "alpha")
    build_index(docs, index, FakeEmbedder(), SETTINGS, progress=False)
    write(index, "notes.txt", "mine")
    with pytest.raises(ConfigError, match="notes.txt"):
        build_index(docs, index, FakeEmbedder(), SETTINGS, progress=False)
    assert (index / "notes.txt").read_text() == "mine" and (index / "manifest.json").exists()


def test_empty_existing_folder_is_a_valid_target(tmp_path):
    docs, index = tmp_path / "docs", tmp_path / "index"
    write(docs, "a.md", "alpha")
    index.mkdir()
    build_index(docs, index, FakeEmbedder(), SETTINGS, progress=False)
    assert (index / "manifest.json").exists()


def test_make_index_cli_refuses_a_foreign_folder_before_loading_a_model(tmp_path):
    from rag.ingest.build import main

    write(tmp_path / "docs", "a.md", "alpha")
    write(tmp_path / "keep", "data.csv", "1,2,3")
    assert main(["--docs", str(tmp_path / "docs"), "--index", str(tmp_path / "keep")]) == 2
    assert (tmp_path / "keep" / "data.csv").read_text() == "1,2,3"


def test_links_out_of_docs_and_hidden_files_are_skipped_and_logged(tmp_path, caplog):
    docs, secrets = tmp_path / "docs", tmp_path / "secrets"
    write(docs, "a.md", "alpha")
    write(docs, ".hidden.md", "hidden")
    write(docs, ".git/notes.md", "inside a hidden folder")
    write(secrets, "credentials", "aws_secret_access_key = AKIA...")
    write(secrets, "notes.md", "outside")
    (docs / "notes.txt").symlink_to(secrets / "credentials")  # the suffix is on the link's name only
    (docs / "outside.md").symlink_to(secrets / "notes.md")
    (docs / "linked-folder").symlink_to(secrets, target_is_directory=True)
    (docs / "alias.md").symlink_to(docs / "a.md")  # a link that stays inside DOCS is fine
    caplog.set_level(logging.WARNING)
    found = [p.relative_to(docs).as_posix() for p in find_documents(docs)]
    assert found == ["a.md", "alias.md"]
    logged = caplog.text
    assert "notes.txt: a link to a file outside DOCS" in logged and "outside.md" in logged
    assert ".hidden.md: hidden file" in logged and "hidden folder .git" in logged


def test_a_link_to_a_non_document_inside_docs_is_skipped(tmp_path):
    docs = tmp_path / "docs"
    write(docs, "a.md", "alpha")
    write(docs, "data.bin", "x")
    (docs / "data.txt").symlink_to(docs / "data.bin")
    assert [p.name for p in find_documents(docs)] == ["a.md"]
