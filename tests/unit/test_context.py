"""Focused context (rag/retrieval/context.py) with the fake embedder: which sentences reach the prompt."""

from dataclasses import replace

import numpy as np
import pytest

from rag.retrieval.context import GAP, SentenceVectors, focus_passages, prompt_passages, split_sentences
from rag.settings import ContextSettings
from rag.types import Passage
from tests.fakes import FakeEmbedder

TRAM = (
    "# The Tramway\n\nThe tramway opened on 14 May 1889. Its first line was designed by Ilse Marrow. "
    "Horses pulled the cars. The fare was one copper penny.\n\n## Today\n\nToday there are 7 lines."
)
BRIDGE = "The Glass Bridge opened in 1936. It crosses the River Ossa. Its architect was Dr. Anton Vell."
FERRY = "Ferries sail every twenty minutes. The F1 route crosses the harbour."


def passages(*scores):
    texts = (TRAM, BRIDGE, FERRY)
    return [Passage(rank, f"doc{rank}.md", 0, score, texts[rank - 1]) for rank, score in enumerate(scores, start=1)]


def focus(query, items, **settings):
    embedder = FakeEmbedder()
    settings = {"lexical_weight": 0.0, **settings}  # the fake embedder alone, unless a test asks for words
    return focus_passages(embedder.embed([query])[0], items, embedder, ContextSettings(**settings), query)


def test_sentences_split_on_ends_and_lines_without_markup():
    assert split_sentences(TRAM) == [
        "The tramway opened on 14 May 1889.",
        "Its first line was designed by Ilse Marrow.",
        "Horses pulled the cars.",
        "The fare was one copper penny.",
        "Today there are 7 lines.",
    ]
    assert split_sentences(
        "GREYHOOK LIGHT\n=====\nDr. Vell measured 4.2 km. Then **Single fare:** 2.40.\n"
        "- item one, with a comma\nHistory\n"
    ) == ["Dr. Vell measured 4.2 km.", "Then Single fare: 2.40.", "item one, with a comma"]


def test_off_leaves_passages_untouched():
    items = passages(0.8, 0.7)
    assert focus("who designed the first line", items, focus="off") == items
    assert prompt_passages(items) == items


def test_best_sentences_within_budget_and_sources_intact():
    items = passages(0.80, 0.75, 0.70)
    focused = focus("first line designed by marrow", items, max_tokens=30, score_gap=0.5)
    assert [p.text for p in focused] == [p.text for p in items]  # sources keep the whole chunk
    assert "Its first line was designed by Ilse Marrow." in focused[0].excerpt
    total = sum(len(p.excerpt) for p in focused)
    assert total <= 30 * 4  # the budget, estimated as 4 characters per token
    assert all(p.excerpt is not None for p in focused)


def test_passages_far_below_the_best_are_dropped():
    focused = focus("when did the tramway open", passages(0.80, 0.70, 0.50), max_tokens=200, score_gap=0.15)
    assert focused[0].excerpt and focused[2].excerpt == ""
    assert [p.rank for p in prompt_passages(focused)] == [1, 2] if focused[1].excerpt else [1]


def test_excerpt_keeps_document_order_and_marks_gaps():
    focused = focus("tramway opened 1889 fare copper penny", passages(0.9), max_tokens=30, score_gap=0.0)
    excerpt = focused[0].excerpt
    assert excerpt.index("1889") < excerpt.index("penny") and GAP in excerpt


def test_window_adds_neighbours():
    narrow = focus("horses pulled the cars", passages(0.9), max_tokens=8, window=0)[0].excerpt
    wide = focus("horses pulled the cars", passages(0.9), max_tokens=30, window=1)[0].excerpt
    assert narrow == "Horses pulled the cars."
    assert wide == "Its first line was designed by Ilse Marrow. Horses pulled the cars. The fare was one copper penny."


def test_an_over_budget_best_sentence_is_clipped_not_lost():
    long = Passage(1, "long.md", 0, 0.9, "Marrow " + "designed the line and " * 30 + "retired.")
    focused = focus("who designed the line", [long], max_tokens=16)
    assert focused[0].excerpt.startswith("Marrow designed") and len(focused[0].excerpt) <= 16 * 4


def test_shared_query_words_lift_a_sentence():
    class Blind(FakeEmbedder):
        def embed_batch(self, texts):  # every text the same vector: only the words can decide
            return super().embed_batch(["same"] * len(texts))

    embedder, items = Blind(), passages(0.9)
    query = "how many died in the flood"
    settings = ContextSettings(max_tokens=12, score_gap=0.0, lexical_weight=0.0)
    first = focus_passages(embedder.embed([query])[0], items, embedder, settings, query)[0].excerpt
    weighted = ContextSettings(max_tokens=12, score_gap=0.0, lexical_weight=0.5)
    text = Passage(1, "flood.md", 0, 0.9, "The storm came at night. In total 127 people died in the flood.")
    chosen = focus_passages(embedder.embed([query])[0], [text], embedder, weighted, query)[0].excerpt
    assert first == "The tramway opened on 14 May 1889."  # ties keep document order
    assert chosen == "In total 127 people died in the flood."


def test_prompt_passages_use_excerpts_and_skip_dropped():
    items = [replace(p, excerpt=e) for p, e in zip(passages(0.9, 0.8, 0.1), ["one.", "two.", ""])]
    assert [(p.rank, p.text, p.excerpt) for p in prompt_passages(items)] == [(1, "one.", None), (2, "two.", None)]


def test_passage_json_round_trip_with_and_without_excerpt():
    plain = passages(0.9)[0]
    assert "excerpt" not in plain.to_dict() and Passage.from_dict(plain.to_dict()) == plain
    focused = replace(plain, excerpt="")
    assert Passage.from_dict(focused.to_dict()) == focused


@pytest.mark.parametrize(
    "env, message",
    [
        ({"RAG_CONTEXT_FOCUS": "words"}, "RAG_CONTEXT_FOCUS"),
        ({"RAG_CONTEXT_MAX_TOKENS": "8"}, "RAG_CONTEXT_MAX_TOKENS"),
        ({"RAG_CONTEXT_SCORE_GAP": "-1"}, "RAG_CONTEXT_SCORE_GAP"),
        ({"RAG_CONTEXT_WINDOW": "x"}, "RAG_CONTEXT_WINDOW"),
    ],
)
def test_context_settings_are_validated(env, message):
    from rag.errors import ConfigError
    from rag.settings import Settings

    with pytest.raises(ConfigError, match=message):
        Settings.from_env(env)


def test_pipeline_gives_the_generator_excerpts_and_the_client_whole_sources():
    from rag.api import QueryRequest
    from rag.index.artifact import VectorIndex
    from rag.pipeline import RagPipeline
    from rag.retrieval.local import LocalRetriever
    from tests.fakes import FakeGenerator

    embedder = FakeEmbedder()

    class Index(VectorIndex):
        def __init__(self):
            pass

        def search(self, vector, top_k):
            return passages(0.9, 0.85, 0.1)[:top_k]

    generator = FakeGenerator()
    retriever = LocalRetriever(embedder, Index(), ContextSettings(max_tokens=60, score_gap=0.2))
    body = RagPipeline(retriever, generator, "test").answer(QueryRequest("who designed the first line", 3))
    seen = generator.seen[0][1]
    assert [p.rank for p in seen] == [1, 2] and all(p.excerpt is None for p in seen)
    assert "Marrow" in seen[0].text and len(seen[0].text) < len(TRAM)
    assert [s["text"] for s in body["sources"]] == [TRAM, BRIDGE, FERRY]
    assert body["sources"][2]["excerpt"] == "" and "Marrow" in body["sources"][0]["excerpt"]


@pytest.mark.parametrize("concurrency, most", [(1, 1), (None, 4)])
def test_local_retriever_bounds_how_many_requests_retrieve_at_once(concurrency, most):
    import threading

    from rag.index.artifact import VectorIndex
    from rag.retrieval.local import LocalRetriever

    inside, peak, lock = 0, 0, threading.Lock()
    all_in = threading.Barrier(4, timeout=1.0)  # without a bound, the four searches meet here

    class Index(VectorIndex):
        def __init__(self):
            pass

        def search(self, vector, top_k):
            nonlocal inside, peak
            with lock:
                inside += 1
                peak = max(peak, inside)
            try:
                all_in.wait()
            except threading.BrokenBarrierError:  # bounded: the others are still waiting for a slot
                pass
            with lock:
                inside -= 1
            return passages(0.9)[:top_k]

    retriever = LocalRetriever(FakeEmbedder(), Index(), ContextSettings(focus="off"), concurrency)
    threads = [threading.Thread(target=retriever.retrieve, args=("who designed the first line", 1)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert peak == most


def test_kept_sentence_vectors_give_the_same_excerpts_and_embed_each_passage_once():
    from rag.retrieval.context import SentenceVectors

    query, settings = "who designed the first line", ContextSettings(max_tokens=60, score_gap=1.0, lexical_weight=0.0)
    plain = FakeEmbedder()
    fresh = focus_passages(plain.embed([query])[0], passages(0.9, 0.85, 0.8), plain, settings, query)
    embedder = FakeEmbedder()
    kept = SentenceVectors(embedder)
    vector = embedder.embed([query])[0]
    first = focus_passages(vector, passages(0.9, 0.85, 0.8), embedder, settings, query, kept)
    calls = embedder.calls
    second = focus_passages(vector, passages(0.9, 0.85, 0.8), embedder, settings, query, kept)
    assert first == second == fresh
    assert embedder.calls == calls  # the second call embedded nothing
    assert (kept.misses, kept.hits) == (3, 3)


def test_a_passages_sentence_vectors_do_not_depend_on_the_passages_beside_it():
    from rag.retrieval.context import SentenceVectors

    embedder = FakeEmbedder()
    kept = SentenceVectors(embedder)
    alone = kept(BRIDGE, split_sentences(BRIDGE)).copy()
    with_others = SentenceVectors(embedder)
    for text in (TRAM, FERRY, BRIDGE):
        with_others(text, split_sentences(text))
    assert (with_others(BRIDGE, split_sentences(BRIDGE)) == alone).all()


def test_sentence_vectors_keep_the_most_recently_used_passages():
    from rag.retrieval.context import SentenceVectors

    embedder = FakeEmbedder()
    kept = SentenceVectors(embedder, passages=2)
    for text in (TRAM, BRIDGE, TRAM, FERRY):  # FERRY pushes out BRIDGE, the least recently used
        kept(text, split_sentences(text))
    assert (kept.misses, kept.hits) == (3, 1)
    vectors = kept(TRAM, split_sentences(TRAM))
    assert kept.hits == 2 and not vectors.flags.writeable  # one array serves every request: read-only
    kept(BRIDGE, split_sentences(BRIDGE))
    assert kept.misses == 4


def test_the_local_retriever_keeps_sentence_vectors_between_requests():
    from rag.index.artifact import VectorIndex
    from rag.retrieval.local import LocalRetriever

    class Index(VectorIndex):
        def __init__(self):
            pass

        def search(self, vector, top_k):
            return passages(0.9, 0.85, 0.1)[:top_k]

    retriever = LocalRetriever(FakeEmbedder(), Index(), ContextSettings(max_tokens=12, score_gap=0.2))
    first = retriever.retrieve("who designed the first line", 3)
    assert retriever.retrieve("who designed the first line", 3) == first
    assert "Marrow" in first[0].excerpt
    assert "fare" in retriever.retrieve("what did the fare cost", 3)[0].excerpt
    assert (retriever.sentence_vectors.misses, retriever.sentence_vectors.hits) == (2, 4)


class _BatchRoundingEmbedder(FakeEmbedder):
    """The same text embeds a hair differently in batches of different sizes, as a real embedder's kernels
    round differently (measured with all-MiniLM-L6-v2 on an Intel Xeon: 1e-7 apart, enough to order a tie)."""

    def embed(self, texts, progress=False):
        return super().embed(texts, progress) * np.float32(1 + 1e-5 / max(len(texts), 1))


def test_a_sentence_that_two_overlapping_passages_share_is_taken_from_the_first_ranked():
    shared = "The tether is 2,400 metres long."
    first = Passage(1, "n9.md", 1, 0.57, f"The arm costs 41,000 euros. {shared} The base N9 costs 312,000 euros.")
    second = Passage(2, "n9.md", 0, 0.51, f"The N9 is rated to 2,000 metres. {shared}")
    query = "how long is the tether"
    embedder = _BatchRoundingEmbedder()
    vector = embedder.embed([query])[0]
    # Embedded passage by passage, the second passage's copy (a batch of 2) outscores the first's (a batch of 3).
    assert (
        embedder.embed(split_sentences(second.text))[1] @ vector
        > embedder.embed(split_sentences(first.text))[1] @ vector
    )
    settings = ContextSettings(max_tokens=12, score_gap=1.0, lexical_weight=0.0)
    focused = focus_passages(vector, [first, second], embedder, settings, query, SentenceVectors(embedder))
    assert [p.excerpt for p in focused] == [shared, ""]
