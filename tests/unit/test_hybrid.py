"""Hybrid retrieval: the index's BM25 part (rag/index/lexical.py) and its fusion with dense search
(rag/retrieval/hybrid.py), built by the real ingestion code and read back from disk."""

import json
import re
from dataclasses import replace

import numpy as np
import pytest

from rag.errors import ConfigError
from rag.index.artifact import VectorIndex, missing_files
from rag.index.lexical import BM25_FILES, tokenize
from rag.ingest.build import build_index
from rag.ingest.processing import build_shard, merge_shards
from rag.retrieval.context import focus_passages
from rag.retrieval.hybrid import hybrid_search, reciprocal_rank_fusion
from rag.retrieval.local import load_retriever
from rag.settings import ContextSettings, Settings
from rag.types import Passage
from tests.fakes import FakeEmbedder
from tests.unit.test_processing import extract

SETTINGS = Settings(chunk_size=200, chunk_overlap=40)
QUERY = "Which pump takes gasket set KV-4460-02?"
# Two look-alike documents: the DP-40's is worded like the question, the DP-60's names its part number.
DOCUMENTS = {
    "dp-40.md": "Which pump takes gasket set KV-4460-01? The DP-40.",
    "dp-60.md": "Gasket set KV-4460-02 fits the DP-60 pump; the DP-60 pump takes no other.",
    "bulletin.md": "Bulletin 7: KV-4460-02 is stocked again; every pump takes it.",
    "motors.md": "The motors run at 1450 rpm on 50 Hz supplies; checksum CRC-16/ARC.",
}


class NumberBlindEmbedder(FakeEmbedder):
    """The fake embedder without digits, as a dense model barely tells KV-4460-01 from KV-4460-02."""

    def embed_batch(self, texts):
        return super().embed_batch([re.sub(r"\d", "", text) for text in texts])


def write_docs(folder, names=DOCUMENTS):
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_text(DOCUMENTS[name], encoding="utf-8")
    return folder


def build(tmp_path, settings=SETTINGS, name="index"):
    build_index(write_docs(tmp_path / "docs"), tmp_path / name, NumberBlindEmbedder(), settings, progress=False)
    return tmp_path / name


def load(index_dir, lexical=True):
    return VectorIndex.load(index_dir, "fake-embedder", 256, lexical=lexical)


def hybrid(index, query=QUERY, top_k=3):
    return hybrid_search(index, NumberBlindEmbedder().embed([query])[0], query, top_k)


def test_identifiers_are_kept_whole_and_split_into_their_parts():
    assert tokenize("Order KV-4460-02 now.") == ["order", "kv-4460-02", "kv", "4460", "02", "now"]
    assert tokenize("CRC-16/ARC, see E-41") == ["crc-16/arc", "crc", "16", "arc", "see", "e-41", "e", "41"]
    assert tokenize("What is the KSR J1722-31 of the Pump?") == ["ksr", "j1722-31", "j1722", "31", "pump"]
    assert tokenize("It rose 11.5 km") == ["rose", "11.5", "11", "5", "km"]  # stopwords dropped, case folded


def test_the_bm25_part_is_written_listed_in_the_manifest_and_memory_mapped(tmp_path):
    index_dir = build(tmp_path)
    entry = json.loads((index_dir / "manifest.json").read_text())["bm25"]
    assert entry["kind"] == "bm25" and entry["chunks"] == 4 and set(entry["files"]) == BM25_FILES
    assert all((index_dir / name).is_file() for name in entry["files"])
    lexical = load(index_dir).lexical
    assert all(isinstance(lexical.model.scores[key], np.memmap) for key in ("data", "indices", "indptr"))
    (index_dir / "bm25.vocab.json").unlink()
    assert missing_files(index_dir) == ["bm25.vocab.json"]


def test_rrf_orders_by_summed_reciprocal_ranks_and_breaks_ties_by_the_earlier_ranking():
    fused = reciprocal_rank_fusion([[7, 8, 9], [8, 9, 7]], k=60)
    assert [item for item, _ in fused] == [8, 7, 9]
    assert fused[0][1] == pytest.approx(1 / 62 + 1 / 61)
    assert [item for item, _ in reciprocal_rank_fusion([[1, 2], [2, 1]])] == [1, 2]
    assert [item for item, _ in reciprocal_rank_fusion([[], [5, 6]])] == [5, 6]


def test_hybrid_puts_the_document_naming_the_part_number_before_its_look_alike(tmp_path):
    index = load(build(tmp_path))
    vector = NumberBlindEmbedder().embed([QUERY])[0]
    assert [p.source for p in index.search(vector, 3)][0] == "dp-40.md"  # dense alone: the look-alike
    assert [chunk for chunk, _ in index.lexical.search(QUERY, 3)][0] == 2  # BM25: dp-60.md (chunk ids by source)
    passages = hybrid(index)
    assert [p.source for p in passages] == ["dp-60.md", "dp-40.md", "bulletin.md"]
    assert [p.rank for p in passages] == [1, 2, 3]
    dense_scores = {p.source: p.score for p in index.search(vector, 4)}
    assert all(p.score == dense_scores[p.source] for p in passages)  # score: the cosine similarity, as in dense
    assert hybrid(index, "crc-16/arc checksum", 1)[0].source == "motors.md"
    only_stopwords = "which of the"  # BM25 finds nothing: the dense ranking alone
    assert index.lexical.search(only_stopwords, 4) == []
    assert hybrid(index, only_stopwords) == index.search(NumberBlindEmbedder().embed([only_stopwords])[0], 3)


def test_focus_always_keeps_the_first_ranked_passage():
    passages = [Passage(1, "a.md", 0, 0.2, "The gasket set is KV-4460-02."), Passage(2, "b.md", 0, 0.9, "Pumps.")]
    focused = focus_passages(FakeEmbedder().embed([QUERY])[0], passages, FakeEmbedder(), ContextSettings(), QUERY)
    assert "KV-4460-02" in focused[0].excerpt


def test_incremental_reindexing_keeps_the_bm25_part_consistent(tmp_path):
    docs, index_dir = write_docs(tmp_path / "docs"), tmp_path / "index"
    build_index(docs, index_dir, NumberBlindEmbedder(), SETTINGS, progress=False)
    (docs / "bridge.md").write_text("The bridge part BR-77 opened in 1936.", encoding="utf-8")  # added
    (docs / "dp-60.md").write_text("The DP-60 pump takes gasket set KV-9999-02.", encoding="utf-8")  # changed
    (docs / "bulletin.md").unlink()  # removed
    build_index(docs, index_dir, NumberBlindEmbedder(), SETTINGS, progress=False)
    fresh = tmp_path / "fresh"
    build_index(docs, fresh, NumberBlindEmbedder(), SETTINGS, progress=False)
    for name in BM25_FILES:
        assert (index_dir / name).read_bytes() == (fresh / name).read_bytes(), name
    index = load(index_dir)
    assert index.lexical.chunks == len(index.chunks) == 4
    assert hybrid(index, "BR-77", 1)[0].source == "bridge.md"
    assert hybrid(index, "KV-9999-02", 1)[0].source == "dp-60.md"
    assert all(index.chunks[chunk].source != "bulletin.md" for chunk, _ in index.lexical.search("bulletin 7", 4))


def strip_bm25(index_dir):
    """Make an index as written before hybrid retrieval: no BM25 files, no manifest entry."""
    manifest = json.loads((index_dir / "manifest.json").read_text())
    del manifest["bm25"]
    (index_dir / "manifest.json").write_text(json.dumps(manifest))
    for name in BM25_FILES:
        (index_dir / name).unlink()


def test_an_index_without_bm25_refuses_hybrid_in_one_line_and_still_serves_dense(tmp_path):
    index_dir = build(tmp_path)
    strip_bm25(index_dir)
    with pytest.raises(ConfigError) as refused:
        load(index_dir)
    assert "\n" not in refused.value.message and "rebuild it with `make index" in refused.value.message
    assert "RAG_RETRIEVAL=dense" in refused.value.message
    with pytest.raises(ConfigError, match="built without one"):  # before any model is loaded
        load_retriever(replace(SETTINGS, index_dir=index_dir, retrieval="hybrid"))
    assert load(index_dir, lexical=False).search(NumberBlindEmbedder().embed([QUERY])[0], 1)[0].source == "dp-40.md"
    # `make index` on the unchanged folder gives it its BM25 part, embedding nothing.
    embedder = NumberBlindEmbedder()
    build_index(tmp_path / "docs", index_dir, embedder, SETTINGS, progress=False)
    assert embedder.calls == 0 and hybrid(load(index_dir))[0].source == "dp-60.md"


@pytest.mark.parametrize("index_type", ["flat", "hnsw", "ivf"])
def test_every_index_type_gives_the_same_hybrid_results(tmp_path, index_type):
    index = load(build(tmp_path, replace(SETTINGS, index_type=index_type)))
    assert index.manifest["index_type"] == index_type
    exact = load(build(tmp_path, replace(SETTINGS, index_type="flat"), name="flat"))
    for query in (QUERY, "crc-16/arc checksum", "motors rpm"):
        assert hybrid(index, query) == hybrid(exact, query)


def test_shards_merged_give_the_same_hybrid_results_as_a_single_build(tmp_path):
    names = list(DOCUMENTS)
    for number, part in enumerate((names[:2], names[2:]), start=1):
        build_shard(write_docs(tmp_path / f"in{number}", part), tmp_path / "shards", SETTINGS, host=f"algo-{number}",
                    embedder=NumberBlindEmbedder())  # fmt: skip
    merged = extract(merge_shards(tmp_path / "shards", tmp_path / "out", SETTINGS), tmp_path / "model")
    single = build(tmp_path)
    for name in BM25_FILES:
        assert (merged / name).read_bytes() == (single / name).read_bytes(), name
    for query in (QUERY, "crc-16/arc checksum"):
        assert hybrid(load(merged), query) == hybrid(load(single), query)


@pytest.mark.parametrize("value, expected", [("", "dense"), ("dense", "dense"), (" HYBRID ", "hybrid")])
def test_rag_retrieval_is_validated(value, expected):
    assert Settings.from_env({"RAG_RETRIEVAL": value}).retrieval == expected


def test_a_wrong_rag_retrieval_is_one_line_naming_the_variable():
    with pytest.raises(ConfigError) as refused:
        Settings.from_env({"RAG_RETRIEVAL": "sparse"})
    assert refused.value.message == "RAG_RETRIEVAL='sparse' is not valid; use dense or hybrid"


def test_weights_scale_each_rankings_share():
    fused = dict(reciprocal_rank_fusion([[1, 2], [2, 1]], k=60, weights=[0.5, 1.0]))
    assert fused == {1: pytest.approx(0.5 / 61 + 1 / 62), 2: pytest.approx(0.5 / 62 + 1 / 61)}
    assert [item for item, _ in reciprocal_rank_fusion([[1, 2], [2, 1]], weights=[0.5, 1.0])] == [2, 1]
