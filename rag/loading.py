"""Both halves in one process: the monolith's pipeline, the in-process evaluation and the bench baseline.

Each half loads itself (rag.retrieval.local.load_retriever, rag.generation.generator.load_generator), so
the LLM service never imports the retrieval side (FAISS, sentence-transformers); this module composes them.
"""

from __future__ import annotations

from rag.generation.generator import load_generator
from rag.pipeline import RagPipeline
from rag.retrieval.local import load_retriever
from rag.settings import Settings


def load_local_pipeline(settings: Settings, architecture: str) -> RagPipeline:
    """Retrieval and generation in this process: the monolith, the in-process eval and bench baseline.

    One request retrieves at a time: the model's thread already keeps every core busy, and a burst of
    admitted requests embedding their sentences all at once (16 threads on 2 cores) starved the threads
    that answer /ping and turn requests away (429 p99 170 ms, 27 ms with one at a time; docs/performance.md).
    Memory is handed back by the model's thread once the model is idle (rag/generation/batching.py), for the whole
    process; a trim when retrieval is idle would run during every request's generation."""
    return RagPipeline(
        load_retriever(settings, concurrency=1, trim_idle_s=None),
        load_generator(settings),
        architecture,
        settings.grounding_check,
    )
