"""Focused context: give the model the few sentences of the retrieved passages that answer the question.

A small model answers better from three relevant sentences than from three whole chunks, and on a CPU
most of a request's time is the prefill of its prompt. So, after retrieval, each passage's sentences are
scored by cosine similarity to the query with the same embedder, and the best ones (with their
neighbours) are kept within a token budget. Passages far below the first one's score are dropped. Sources keep
their whole text: only what the prompt sees changes (`Passage.excerpt`).

This runs where the embedder lives: in the monolith's process, and in the microservices' vector service,
so the LLM service gets short passages and needs no embedder.

A passage's sentence vectors depend only on the passage: they are embedded one passage at a time, and the
retriever keeps those of the passages it has focused lately (`SentenceVectors`), so a passage that comes back
costs no embedding (on a 2-core CPU the embedding was 280-300 ms of every request; docs/performance.md).
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from dataclasses import replace

import numpy as np

from rag.retrieval.embedder import Embedder
from rag.settings import CHARS_PER_TOKEN, ContextSettings
from rag.types import Passage

GAP = " ... "  # marks sentences that were not adjacent in the passage

# A sentence ends at . ! or ? followed by a space and a capital, a digit or a quote; a line break always ends one
# (headings, list items). "Dr. Marrow" or "4.2 km" do not split.
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[A-Z0-9])|\n+")
_MARKUP = re.compile(r"^\s*(#+|[-*+>]|\d+[.)])\s+")
_EMPHASIS = re.compile(r"(\*\*|__|`)")
_RULE = re.compile(r"^[\W_]+$")  # "=====" under a plain-text title, "---", "***": no words


_ABBREVIATION = re.compile(r"\b(Dr|Mr|Mrs|Ms|Prof|St|Mt|No|Nos|Fig|Vol|vs|etc|approx|ca|Jr|Sr|Inc|Ltd|Co)\.$")


def split_sentences(text: str) -> list[str]:
    """The sentences (and list lines) of a passage, in order, without markup and without headings."""
    sentences: list[str] = []
    joined = False
    for piece in _SENTENCE_END.split(text):
        heading = piece.lstrip().startswith("#")
        piece = _EMPHASIS.sub("", _MARKUP.sub("", piece)).strip()
        if joined and piece:  # the previous piece ended in "Dr." or the like: same sentence
            sentences[-1] = f"{sentences[-1]} {piece}"
        elif piece and not heading and not _RULE.match(piece) and not _is_title(piece):
            sentences.append(piece)
        else:
            continue
        joined = bool(_ABBREVIATION.search(sentences[-1]))
    return sentences


def _is_title(piece: str) -> bool:
    """A short line with no sentence punctuation and no number: a plain-text heading, not a fact."""
    return len(piece.split()) <= 8 and not re.search(r"[.!?:;,\d]", piece)


_STOPWORDS = frozenset(
    """a an the of in on at to for from by with and or but is are was were be been being
do does did what which who whom whose when where why how many much long large old its it this that these those
there their they he she his her as into than then so not no yes any all each every some""".split()
)


def _words(text: str) -> set[str]:
    """Lower-case content words, with a plural "s" removed, so "lines" matches "line"."""
    words = (w[:-1] if len(w) > 3 and w.endswith("s") else w for w in re.findall(r"[\w']+", text.lower()))
    return {w for w in words if w not in _STOPWORDS}


def _overlap(query_words: set[str], sentence: str) -> float:
    """The share of the query's content words that the sentence contains."""
    return len(query_words & _words(sentence)) / len(query_words) if query_words else 0.0


def _estimate_tokens(text: str) -> int:
    return -(-len(text) // CHARS_PER_TOKEN)


def _clip(text: str, tokens: int) -> str:
    """At most `tokens` (estimated) of `text`, cut at a word boundary."""
    limit = tokens * CHARS_PER_TOKEN
    if len(text) <= limit:
        return text
    cut = text.rfind(" ", 0, limit)
    return text[: cut if cut > 0 else limit].rstrip(" ,;:")


class SentenceVectors:
    """The sentence vectors of the last `passages` passages focused, by passage text (least recently used
    out first), shared by the request threads. A passage's sentences are embedded together and alone, so its
    vectors are the same whichever passages it was retrieved with, and whether they were kept or computed."""

    def __init__(self, embedder: Embedder, passages: int = 1024):
        self.embedder, self.capacity = embedder, passages
        self._kept: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def __call__(self, text: str, sentences: list[str]) -> np.ndarray:
        with self._lock:
            vectors = self._kept.get(text)
            if vectors is not None:
                self._kept.move_to_end(text)
                self.hits += 1
                return vectors
            self.misses += 1
        vectors = self.embedder.embed(sentences)  # outside the lock: other requests go on meanwhile
        vectors.setflags(write=False)
        with self._lock:
            self._kept[text] = vectors
            self._kept.move_to_end(text)
            while len(self._kept) > self.capacity:
                self._kept.popitem(last=False)
        return vectors


def focus_passages(
    query_vector: np.ndarray,
    passages: list[Passage],
    embedder: Embedder,
    settings: ContextSettings,
    query: str = "",
    sentence_vectors: SentenceVectors | None = None,
) -> list[Passage]:
    """The passages with `excerpt` set: their best sentences within the budget, "" when dropped.
    `sentence_vectors` keeps passages' sentence vectors between calls (without it, each call embeds them)."""
    if settings.focus == "off" or not passages:
        return passages
    # Relative to the first-ranked passage, which is therefore always kept: in dense mode it has the best
    # score; in hybrid mode (rag/retrieval/hybrid.py) the fused order may put a passage that names the
    # question's exact terms first with a lower similarity, and that passage must not be dropped.
    best = passages[0].score
    kept = [i for i, p in enumerate(passages) if p.score >= best - settings.score_gap]
    split = {i: split_sentences(passages[i].text) for i in kept}
    sentences = [(i, j, s) for i in kept for j, s in enumerate(split[i])]
    if not sentences:
        return [replace(p, excerpt="") for p in passages]
    vectors_of = sentence_vectors or (lambda _text, texts: embedder.embed(texts))
    vectors = np.vstack([vectors_of(passages[i].text, split[i]) for i in kept if split[i]])
    similarity = vectors @ np.asarray(query_vector, dtype=np.float32).reshape(-1)
    if settings.lexical_weight:
        query_words = _words(query)
        similarity = similarity + settings.lexical_weight * np.array(
            [_overlap(query_words, text) for _, _, text in sentences], dtype=np.float32
        )
    # Overlapping chunks share sentences. Each copy takes the first copy's score, so copies tie exactly and the
    # order below takes the first-ranked passage's: embedded with different passages' sentences, the copies'
    # vectors differ in their last bits (1e-7 apart, measured), and rounding would pick the copy.
    first_copy: dict[str, int] = {}
    for n, (_, _, text) in enumerate(sentences):
        similarity[n] = similarity[first_copy.setdefault(text, n)]
    chosen: set[tuple[int, int]] = set()
    used = 0
    # Best sentence first; ties keep retrieval order, so the result is deterministic.
    for position in sorted(range(len(sentences)), key=lambda n: (-float(similarity[n]), n)):
        i, j, _ = sentences[position]
        group = [
            (i, k)
            for k in range(max(0, j - settings.window), min(len(split[i]), j + settings.window + 1))
            if (i, k) not in chosen
        ]
        cost = sum(_estimate_tokens(split[a][b]) + 1 for a, b in group)
        if used + cost > settings.max_tokens:
            if not chosen:  # the best sentence alone is over budget: keep the start of it
                chosen.add((i, j))
                used = settings.max_tokens
            continue
        chosen.update(group)
        used += cost
    text_of = {(i, j): text for i, j, text in sentences}
    focused = []
    for i, passage in enumerate(passages):
        picked = sorted(j for (a, j) in chosen if a == i)
        excerpt = ""
        for previous, j in zip([None, *picked], picked):
            joiner = "" if previous is None else (" " if j == previous + 1 else GAP)
            excerpt += joiner + text_of[(i, j)]
        focused.append(replace(passage, excerpt=_clip(excerpt, settings.max_tokens)))
    return focused


def prompt_passages(passages: list[Passage]) -> list[Passage]:
    """What the generator sees: each passage's excerpt as its text, dropped passages left out."""
    return [p if p.excerpt is None else replace(p, text=p.excerpt, excerpt=None) for p in passages if p.excerpt != ""]
