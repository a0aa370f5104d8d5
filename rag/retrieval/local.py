"""The local retriever: embed the query in this process, search the index (dense, or hybrid with its BM25
part: rag/retrieval/hybrid.py), focus the context.

The monolith and the vector service both retrieve with it; `load_retriever` builds it from the settings.
"""

from __future__ import annotations

import contextlib
import logging
import threading

from rag.index.artifact import VectorIndex, read_manifest
from rag.index.lexical import require_bm25
from rag.models import embedding_model_path
from rag.retrieval.context import SentenceVectors, focus_passages
from rag.retrieval.embedder import Embedder, SentenceTransformerEmbedder
from rag.retrieval.hybrid import hybrid_search
from rag.runtime import IDLE_S, TrimWhenIdle, resolve_device, single_threaded_from_now
from rag.settings import ContextSettings, Settings
from rag.telemetry import stage
from rag.types import Retriever

log = logging.getLogger(__name__)


class LocalRetriever(Retriever):
    """Embeds the query in-process, searches a FAISS index (fused with its BM25 part when the index was
    loaded with it: hybrid retrieval) and focuses the passages' context.
    `concurrency` bounds how many requests retrieve at once (None: no bound); with `trim_idle_s`, freed
    memory goes back to the OS once no request has retrieved for that long (rag.runtime.TrimWhenIdle)."""

    def __init__(
        self,
        embedder: Embedder,
        index: VectorIndex,
        context: ContextSettings | None = None,
        concurrency: int | None = None,
        trim_idle_s: float | None = None,
    ):
        self.embedder = embedder
        self.index = index
        self.context = context or ContextSettings(focus="off")
        self.model_name = embedder.name
        self.sentence_vectors = SentenceVectors(embedder)
        self._slots = threading.BoundedSemaphore(concurrency) if concurrency else contextlib.nullcontext()
        self._trim = TrimWhenIdle(trim_idle_s) if trim_idle_s else contextlib.nullcontext()

    def retrieve(self, query, top_k, deadline=None):
        with self._trim, self._slots:
            with stage("embed"):
                vector = self.embedder.embed([query])[0]
            with stage("search"):
                if self.index.lexical is not None:
                    passages = hybrid_search(self.index, vector, query, top_k)
                else:
                    passages = self.index.search(vector, top_k)
            with stage("context"):
                return focus_passages(vector, passages, self.embedder, self.context, query, self.sentence_vectors)


def load_embedder(settings: Settings) -> Embedder:
    """The configured sentence-transformers model (the embedded one resolves offline)."""
    import torch  # 3.0 s to import (measured): a process that only evaluates over HTTP never pays it

    torch.set_num_threads(settings.torch_threads)
    return SentenceTransformerEmbedder(
        settings.embedding_model,
        embedding_model_path(settings.embedding_model),
        resolve_device(settings.device),
        settings.embed_batch_size,
    )


def load_retriever(
    settings: Settings, concurrency: int | None = None, trim_idle_s: float | None = IDLE_S
) -> LocalRetriever:
    """Embedder plus the index at RAG_INDEX_DIR (and its BM25 part when RAG_RETRIEVAL=hybrid), checked
    against each other; `concurrency` and `trim_idle_s` as LocalRetriever's (by default, memory is handed
    back after IDLE_S without a retrieval)."""
    if settings.retrieval == "hybrid":  # an index without a BM25 part is refused before the model loads
        require_bm25(settings.index_dir, read_manifest(settings.index_dir))
    embedder = load_embedder(settings)
    index = VectorIndex.load(
        settings.index_dir,
        embedder.name,
        embedder.dimension,
        ef_search=settings.index_ef_search,
        nprobe=settings.index_nprobe,
        lexical=settings.retrieval == "hybrid",
    )
    log.info(
        "index %s: %d chunks from %s documents, %s retrieval",
        settings.index_dir,
        len(index.chunks),
        index.manifest.get("documents"),
        settings.retrieval,
    )
    # Queries are embedded on request threads with one torch thread, in the monolith and in the vector
    # service alike: the same sums in the same order, so both architectures give identical sources.
    single_threaded_from_now()
    return LocalRetriever(embedder, index, settings.context, concurrency, trim_idle_s)
