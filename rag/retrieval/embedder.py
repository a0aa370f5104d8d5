"""Embedders turn texts into L2-normalised float32 vectors, so inner product is cosine similarity."""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod

import numpy as np

log = logging.getLogger(__name__)


class Embedder(ABC):
    """Subclasses implement `embed_batch`; batching, normalising and progress come from here."""

    name: str = "embedder"
    dimension: int = 0
    batch_size: int = 32

    @abstractmethod
    def embed_batch(self, texts: list[str]) -> np.ndarray:
        """Embed one batch; returns an array of shape (len(texts), dimension)."""

    def embed(self, texts: list[str], progress: bool = False) -> np.ndarray:
        """Embed any number of texts in batches, optionally with a progress bar."""
        batches = range(0, len(texts), self.batch_size)
        if progress:
            from tqdm import tqdm

            batches = tqdm(batches, desc="embedding", unit="batch", total=len(batches))
        parts = [self.embed_batch(texts[start : start + self.batch_size]) for start in batches]
        if not parts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        vectors = np.ascontiguousarray(np.vstack(parts), dtype=np.float32)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors / np.maximum(norms, 1e-12)


class SentenceTransformerEmbedder(Embedder):
    """A sentence-transformers model, from a Hugging Face id or a local directory."""

    def __init__(self, name: str, path: str, device: str = "cpu", batch_size: int = 32):
        from sentence_transformers import SentenceTransformer

        self.name = name
        self.batch_size = batch_size
        self.model = SentenceTransformer(path, device=device)
        getter = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        self.dimension = int(getter())
        self.embed_batch(["warm-up"])  # the first call pays one-off setup, not the first user
        log.info("embedding model %s loaded on %s (dimension %d)", name, device, self.dimension)

    def embed_batch(self, texts: list[str]) -> np.ndarray:
        return self.model.encode(texts, batch_size=len(texts), convert_to_numpy=True, show_progress_bar=False)
