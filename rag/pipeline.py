"""The request path: retrieve passages, generate a grounded answer, and shape the response.

Both architectures run this same code. The monolith gives the pipeline a local retriever and generator
(rag.loading); the microservices orchestrator gives it HTTP clients of the same interfaces (rag.clients).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

from rag.api import QueryRequest
from rag.generation.grounding import check_answer
from rag.retrieval.context import prompt_passages
from rag.types import Answer, Generator, Passage, Retriever

log = logging.getLogger(__name__)


def _ms(seconds: float) -> float:
    return round(seconds * 1000.0, 2)


class RagPipeline:
    """retrieve, then generate; returns the response body of the API contract."""

    def __init__(self, retriever: Retriever, generator: Generator, architecture: str, grounding: str = "off"):
        self.retriever = retriever
        self.generator = generator
        self.architecture = architecture
        self.grounding = grounding  # rag/generation/grounding.py's mode: unsupported answers become a refusal

    def answer(self, request: QueryRequest, deadline: float | None = None) -> dict:
        """Answer one validated request, with sources, usage and stage timings."""
        started = time.perf_counter()
        passages = self.retriever.retrieve(request.query, request.top_k, deadline)
        retrieved = time.perf_counter()
        answer = self.generator.generate(request.query, prompt_passages(passages), request.generation, deadline)
        return self._response(request.query, passages, answer, started, retrieved)

    def stream(self, request: QueryRequest, deadline: float | None = None) -> Iterator[dict]:
        """Retrieve and start generating now (errors raise before any byte is sent), then stream events:
        `sources`, one `token` per text piece, and `done` carrying the same body as answer()."""
        started = time.perf_counter()
        passages = self.retriever.retrieve(request.query, request.top_k, deadline)
        retrieved = time.perf_counter()
        # Started here, not inside events(): a remote generator that is down refuses before any byte is sent.
        pieces = self.generator.stream(request.query, prompt_passages(passages), request.generation, deadline)

        def events() -> Iterator[dict]:
            yield {"event": "sources", "sources": [passage.to_dict() for passage in passages]}
            answer = None
            for piece in pieces:
                if isinstance(piece, Answer):
                    answer = piece
                else:
                    yield {"event": "token", "text": piece}
            yield {"event": "done", **self._response(request.query, passages, answer, started, retrieved)}

        return events()

    def _response(self, query: str, passages: list[Passage], answer: Answer, started: float, retrieved: float) -> dict:
        text = answer.text
        if self.grounding != "off":
            context = [p.text for p in prompt_passages(passages)]
            text, unsupported = check_answer(text, query, context, self.grounding)
            if unsupported:
                log.info("answer replaced by a refusal: %d unsupported number(s) or name(s)", len(unsupported))
        finished = time.perf_counter()
        return {
            "answer": text,
            "sources": [passage.to_dict() for passage in passages],
            "architecture": self.architecture,
            "model": {"embedding": self.retriever.model_name, "llm": self.generator.name},
            "usage": answer.usage(),
            "timings_ms": {
                "retrieve": _ms(retrieved - started),
                "generate": _ms(finished - retrieved),
                "total": _ms(finished - started),
            },
        }
