"""model.tar.gz members are readable by the unprivileged serving user whatever the packed files' modes."""

from __future__ import annotations

import stat
import tarfile

from rag.ingest.archive import readable_by_all
from sagemaker_lifecycle.upload import pack


def test_private_files_and_folders_are_packed_readable_by_all(tmp_path):
    index = tmp_path / "index"
    (index / "deep").mkdir(parents=True)
    (index / "faiss.index").write_bytes(b"x")
    (index / "deep" / "tool").write_bytes(b"#!/bin/sh\n")
    (index / "faiss.index").chmod(0o600)
    (index / "deep" / "tool").chmod(0o700)
    (index / "deep").chmod(0o700)
    archive = pack({"index": index}, tmp_path / "model.tar.gz")
    with tarfile.open(archive) as tar:
        modes = {member.name: stat.S_IMODE(member.mode) for member in tar.getmembers()}
    assert modes == {"index/deep/tool": 0o755, "index/faiss.index": 0o644}


def test_the_filter_never_adds_write_permission():
    for start, kind, expected in (
        (0o600, tarfile.REGTYPE, 0o644),
        (0o700, tarfile.DIRTYPE, 0o755),
        (0o400, tarfile.REGTYPE, 0o444),
        (0o644, tarfile.REGTYPE, 0o644),
    ):
        member = tarfile.TarInfo("x")
        member.mode, member.type = start, kind
        assert readable_by_all(member).mode == expected


def test_missing_files_follow_the_index_format(tmp_path):
    """`make upload` ships what the service and the next incremental `make index` need, per format."""
    import json

    import pytest

    from rag.errors import IndexMismatchError
    from rag.index.artifact import missing_files

    assert missing_files(tmp_path) == ["manifest.json", "faiss.index", "chunks.jsonl"]
    (tmp_path / "manifest.json").write_text(json.dumps({"format_version": 2}))
    (tmp_path / "faiss.index").write_bytes(b"x")
    (tmp_path / "chunks.jsonl").write_text("{}\n")
    assert missing_files(tmp_path) == ["chunk_offsets.npy", "documents.jsonl"]
    (tmp_path / "manifest.json").write_text(json.dumps({"format_version": 1}))
    assert missing_files(tmp_path) == []
    (tmp_path / "manifest.json").write_text(json.dumps({"format_version": 99}))
    with pytest.raises(IndexMismatchError, match="format version 99"):
        missing_files(tmp_path)
