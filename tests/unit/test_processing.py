"""The Processing steps in-process, with the fake embedder: shards built apart merge into the index a
single machine builds. (tests/container/test_container_index.py runs the same steps in the real image.)"""

import json
import tarfile
from dataclasses import replace

import numpy as np
import pytest

from rag.errors import IngestError
from rag.index import faiss_types
from rag.index.artifact import VectorIndex
from rag.ingest.build import build_index
from rag.ingest.processing import build_shard, current_host, main, merge_shards
from rag.settings import Settings
from tests.fakes import FakeEmbedder

SETTINGS = Settings(chunk_size=200, chunk_overlap=40)
DOCUMENTS = {
    "tram.md": "The tramway opened in 1889 and was designed by Ilse Marrow. " * 6,
    "bridge.md": "The glass bridge over the river opened in 1936.",
    "ferries/night.txt": "Night ferries run every hour from the Saltmarket quay.",
    "ferries/day.txt": "Day ferries leave every 20 minutes.",
    "wall.md": "The sea wall is four kilometres long.",
}


def write_docs(folder, names):
    for name in names:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(DOCUMENTS[name], encoding="utf-8")
    return folder


def extract(archive, target):
    with tarfile.open(archive) as tar:
        assert all(name.startswith("index/") for name in tar.getnames())
        tar.extractall(target, filter="data")
    return target / "index"


@pytest.mark.parametrize("index_type", ["auto", "hnsw"])
def test_sharded_build_then_merge_equals_a_single_build(tmp_path, index_type):
    settings = replace(SETTINGS, index_type=index_type)
    # ShardedByS3Key keeps each object's key, so every instance sees its files at their DOCS-relative paths.
    shard_inputs = [
        write_docs(tmp_path / "in1", ["tram.md", "ferries/night.txt"]),
        write_docs(tmp_path / "in2", ["bridge.md", "ferries/day.txt", "wall.md"]),
    ]
    shards = tmp_path / "shards"
    for number, folder in enumerate(shard_inputs, start=1):
        assert (
            build_shard(folder, shards, settings, host=f"algo-{number}", embedder=FakeEmbedder()).name
            == f"shard-algo-{number}"
        )
    archive = merge_shards(shards, tmp_path / "out", settings)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["model.tar.gz"]  # nothing else uploaded
    merged = extract(archive, tmp_path / "model")
    single = tmp_path / "single"
    build_index(write_docs(tmp_path / "all", list(DOCUMENTS)), single, FakeEmbedder(), settings, progress=False)
    for name in ("chunks.jsonl", "documents.jsonl", "chunk_offsets.npy"):
        assert (merged / name).read_bytes() == (single / name).read_bytes(), name
    manifest = json.loads((merged / "manifest.json").read_text())
    assert (
        manifest["documents"] == 5
        and manifest["index_type"] == json.loads((single / "manifest.json").read_text())["index_type"]
    )
    loaded = [VectorIndex.load(path, "fake-embedder", 256) for path in (merged, single)]
    assert np.array_equal(*(faiss_types.all_vectors(index.index) for index in loaded))
    query = FakeEmbedder().embed(["when do night ferries run"])[0]
    assert loaded[0].search(query, 3) == loaded[1].search(query, 3)


def test_an_instance_without_documents_writes_no_shard(tmp_path):
    (tmp_path / "in").mkdir()
    assert build_shard(tmp_path / "in", tmp_path / "out", SETTINGS, host="algo-3", embedder=FakeEmbedder()) is None
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    with pytest.raises(IngestError, match="does not exist"):
        build_shard(tmp_path / "missing", tmp_path / "out", SETTINGS, host="algo-3", embedder=FakeEmbedder())


def test_merge_refuses_overlapping_or_mismatched_shards(tmp_path):
    for number in (1, 2):
        build_shard(
            write_docs(tmp_path / f"in{number}", ["wall.md"]),
            tmp_path / "dup",
            SETTINGS,
            host=f"algo-{number}",
            embedder=FakeEmbedder(),
        )
    with pytest.raises(IngestError, match="wall.md is in two shards"):
        merge_shards(tmp_path / "dup", tmp_path / "out", SETTINGS)
    build_shard(
        write_docs(tmp_path / "a", ["tram.md"]), tmp_path / "mixed", SETTINGS, host="algo-1", embedder=FakeEmbedder()
    )
    build_shard(
        write_docs(tmp_path / "b", ["wall.md"]),
        tmp_path / "mixed",
        replace(SETTINGS, chunk_size=300),
        host="algo-2",
        embedder=FakeEmbedder(),
    )
    with pytest.raises(IngestError, match="chunk_size"):
        merge_shards(tmp_path / "mixed", tmp_path / "out", SETTINGS)
    with pytest.raises(IngestError, match="holds no shard"):
        merge_shards(tmp_path / "a", tmp_path / "out", SETTINGS)
    assert main(["merge", "--input", str(tmp_path / "mixed"), "--output", str(tmp_path / "out")]) == 2


def test_the_host_comes_from_sagemakers_resource_config(tmp_path):
    config = tmp_path / "resourceconfig.json"
    config.write_text(json.dumps({"current_host": "algo-2", "hosts": ["algo-1", "algo-2"]}))
    assert current_host(config) == "algo-2" and current_host(tmp_path / "missing.json") == "local"
