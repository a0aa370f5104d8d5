"""Small deterministic fakes of the core's interfaces, for unit tests only."""

from __future__ import annotations

import hashlib
import re

import numpy as np

from rag.retrieval.embedder import Embedder
from rag.types import Answer, Generator


class FakeEmbedder(Embedder):
    """Bag of hashed words: texts sharing words get similar vectors; same text, same vector."""

    name = "fake-embedder"
    dimension = 256
    batch_size = 4

    def __init__(self):
        self.calls = 0

    def embed_batch(self, texts):
        self.calls += 1
        vectors = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in re.findall(r"\w+", text.lower()):
                bucket = int(hashlib.sha1(word.encode()).hexdigest(), 16) % self.dimension
                vectors[row, bucket] += 1.0
        return vectors


class FakeGenerator(Generator):
    """Answers with the first passage's source, so tests can see what it was given."""

    name = "fake-llm"

    def __init__(self):
        self.seen = []

    def generate(self, query, passages, params, deadline=None):
        self.seen.append((query, passages, params))
        text = f"According to [1] {passages[0].source}" if passages else "The documents do not contain the answer."
        return Answer(text, prompt_tokens=len(query.split()), completion_tokens=min(5, params.max_new_tokens))
