"""The types that cross a boundary: between retrieval and generation, between services, and between the
pipeline and its two interfaces.

    Passage           a retrieved chunk, as the vector service sends it and the LLM service receives it
    GenerationParams  per-request decoding options
    Answer            a generated answer with its token counts
    Retriever         query -> ranked passages (local: rag.retrieval.local; remote: rag.clients.http)
    Generator         query + passages -> answer (local: rag.generation.generator; remote: rag.clients)
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class Passage:
    rank: int
    source: str
    chunk: int
    score: float
    text: str
    page: int | None = None  # 1-based PDF page; absent from the JSON when the format has no pages
    # What of `text` the prompt gets (rag/retrieval/context.py): None when context focus is off, "" when dropped.
    excerpt: str | None = None

    def to_dict(self) -> dict:
        data = {"rank": self.rank, "source": self.source, "chunk": self.chunk, "score": self.score, "text": self.text}
        if self.page is not None:
            data["page"] = self.page
        if self.excerpt is not None:
            data["excerpt"] = self.excerpt
        return data

    @classmethod
    def from_dict(cls, data: dict) -> Passage:
        """A passage from its JSON form; TypeError, KeyError, ValueError or OverflowError when malformed."""
        if not isinstance(data, dict):
            raise TypeError(f"a passage must be a JSON object, not {type(data).__name__}")
        page, excerpt = data.get("page"), data.get("excerpt")
        return cls(
            int(data["rank"]),
            str(data["source"]),
            int(data["chunk"]),
            float(data["score"]),
            str(data["text"]),
            None if page is None else int(page),
            None if excerpt is None else str(excerpt),
        )


@dataclass(frozen=True)
class GenerationParams:
    max_new_tokens: int = 128
    temperature: float = 0.0  # 0 means greedy decoding: the same input always gives the same answer


@dataclass(frozen=True)
class Answer:
    text: str
    prompt_tokens: int
    completion_tokens: int

    def usage(self) -> dict:
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens}


class Generator(ABC):
    """Subclasses implement `generate`; `deadline` is a time.monotonic() value or None."""

    name: str = "generator"

    @abstractmethod
    def generate(
        self, query: str, passages: list[Passage], params: GenerationParams, deadline: float | None = None
    ) -> Answer:
        """Answer `query` from `passages`."""

    def stream(
        self, query: str, passages: list[Passage], params: GenerationParams, deadline: float | None = None
    ) -> Iterator[str | Answer]:
        """Text pieces as they are generated, then the final Answer. By default, one piece."""
        answer = self.generate(query, passages, params, deadline)
        yield answer.text
        yield answer


class Retriever(ABC):
    """Finds the passages most relevant to a query."""

    model_name: str = "retriever"

    @abstractmethod
    def retrieve(self, query: str, top_k: int, deadline: float | None = None) -> list[Passage]:
        """The `top_k` best passages, ranked."""
