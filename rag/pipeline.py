"""The request path: validate a query, retrieve passages, generate a grounded answer.

Both architectures run this same code. The monolith gives the pipeline a local retriever and
generator; the microservices orchestrator gives it HTTP clients of the same interfaces (rag/remote.py).
"""
from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Iterator

from rag.batching import IDLE_S
from rag.context import CHARS_PER_TOKEN, ContextSettings, focus_passages, prompt_passages
from rag.embedder import Embedder
from rag.grounding import check_answer
from rag.errors import InvalidJSON, InvalidRequest, UnsupportedMediaType
from rag.generator import Answer, GenerationParams, Generator
from rag.index import Passage, VectorIndex
from rag.runtime import TrimWhenIdle, single_threaded_from_now
from rag.settings import MAX_QUERY_CHARS, Settings

log = logging.getLogger(__name__)

REQUEST_FIELDS = ("query", "top_k", "max_new_tokens", "temperature")


def _integer(data: dict, name: str, default: int, low: int, high: int) -> int:
    value = data.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRequest(f"'{name}' must be an integer between {low} and {high}, got {json.dumps(value)}")
    if not low <= value <= high:
        raise InvalidRequest(f"'{name}' must be between {low} and {high}, got {value}")
    return value


def _number(data: dict, name: str, default: float, low: float, high: float) -> float:
    value = data.get(name, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidRequest(f"'{name}' must be a number between {low} and {high}, got {json.dumps(value)}")
    if not low <= value <= high:
        raise InvalidRequest(f"'{name}' must be between {low} and {high}, got {value}")
    return float(value)


def validate_query(value) -> str:
    """A query is a non-empty string of at most MAX_QUERY_CHARS characters once stripped."""
    if not isinstance(value, str):
        raise InvalidRequest(f"'query' must be a string, got {json.dumps(value)[:80]}")
    query = value.strip()
    if not query:
        raise InvalidRequest("'query' is empty; send the question to answer, e.g. {\"query\": \"What is ...?\"}")
    if len(query) > MAX_QUERY_CHARS:
        raise InvalidRequest(f"'query' has {len(query)} characters; the limit is {MAX_QUERY_CHARS}")
    return query


def validate_top_k(data: dict, default: int) -> int:
    return _integer(data, "top_k", default, 1, 20)


def validate_generation(data: dict, default_max_new_tokens: int) -> GenerationParams:
    """max_new_tokens 1..1024 and temperature 0..2, as the API contract says."""
    return GenerationParams(
        max_new_tokens=_integer(data, "max_new_tokens", default_max_new_tokens, 1, 1024),
        temperature=_number(data, "temperature", 0.0, 0.0, 2.0),
    )


def parse_json_object(body: bytes) -> dict:
    """Decode a JSON object body; anything else is invalid_json or invalid_request."""
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidJSON(f"the body is not valid UTF-8 JSON ({exc}); send a JSON object like {{\"query\": \"...\"}}")
    except RecursionError:  # thousands of nested [ or {: the decoder's recursion limit, not a server fault
        raise InvalidJSON("the body nests JSON too deeply; send a flat JSON object like {\"query\": \"...\"}")
    if not isinstance(data, dict):
        raise InvalidRequest("the body must be a JSON object like {\"query\": \"...\"}")
    return data


@dataclass(frozen=True)
class QueryRequest:
    query: str
    top_k: int = 3
    max_new_tokens: int = 128
    temperature: float = 0.0

    @classmethod
    def from_dict(cls, data: dict, settings: Settings) -> "QueryRequest":
        """Validate a decoded JSON request; unknown fields are named in the error."""
        unknown = sorted(set(data) - set(REQUEST_FIELDS))
        if unknown:
            raise InvalidRequest(f"unknown field(s): {', '.join(unknown)}; allowed fields are {', '.join(REQUEST_FIELDS)}")
        if "query" not in data:
            raise InvalidRequest("'query' is required, e.g. {\"query\": \"What is ...?\"}")
        params = validate_generation(data, settings.max_new_tokens)
        return cls(validate_query(data["query"]), validate_top_k(data, settings.top_k),
                   params.max_new_tokens, params.temperature)

    @classmethod
    def from_body(cls, body: bytes, content_type: str | None, settings: Settings) -> "QueryRequest":
        """Parse an /invocations body: application/json, or text/plain holding the query itself."""
        media_type = (content_type or "").split(";")[0].strip().lower()
        if media_type == "application/json":
            return cls.from_dict(parse_json_object(body), settings)
        if media_type == "text/plain":
            try:
                text = body.decode("utf-8")
            except UnicodeDecodeError:
                raise InvalidRequest("the text/plain body is not UTF-8; send the question as UTF-8 text")
            return cls.from_dict({"query": text}, settings)
        raise UnsupportedMediaType(
            f"Content-Type {media_type or '(none)'} is not supported; send application/json or text/plain")

    @property
    def generation(self) -> GenerationParams:
        return GenerationParams(self.max_new_tokens, self.temperature)


class Retriever(ABC):
    """Finds the passages most relevant to a query."""

    model_name: str = "retriever"

    @abstractmethod
    def retrieve(self, query: str, top_k: int, deadline: float | None = None) -> list[Passage]:
        """The `top_k` best passages, ranked."""


class LocalRetriever(Retriever):
    """Embeds the query in-process, searches a FAISS index and focuses the passages' context.
    `concurrency` bounds how many requests retrieve at once (None: no bound); with `trim_idle_s`, freed
    memory goes back to the OS once no request has retrieved for that long (rag.runtime.TrimWhenIdle)."""

    def __init__(self, embedder: Embedder, index: VectorIndex, context: ContextSettings | None = None,
                 concurrency: int | None = None, trim_idle_s: float | None = None):
        self.embedder = embedder
        self.index = index
        self.context = context or ContextSettings(focus="off")
        self.model_name = embedder.name
        self._slots = threading.BoundedSemaphore(concurrency) if concurrency else contextlib.nullcontext()
        self._trim = TrimWhenIdle(trim_idle_s) if trim_idle_s else contextlib.nullcontext()

    def retrieve(self, query, top_k, deadline=None):
        with self._trim, self._slots:
            vector = self.embedder.embed([query])[0]
            return focus_passages(vector, self.index.search(vector, top_k), self.embedder, self.context, query)


def _ms(seconds: float) -> float:
    return round(seconds * 1000.0, 2)


class RagPipeline:
    """retrieve, then generate; returns the response body of the API contract."""

    def __init__(self, retriever: Retriever, generator: Generator, architecture: str, check_grounding: bool = False):
        self.retriever = retriever
        self.generator = generator
        self.architecture = architecture
        self.check_grounding = check_grounding  # rag/grounding.py: unsupported answers become a refusal

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
        if self.check_grounding:
            context = "\n".join(p.text for p in prompt_passages(passages))
            text, unsupported = check_answer(text, query, context)
            if unsupported:
                log.info("answer replaced by a refusal: %d unsupported number(s) or name(s)", len(unsupported))
        finished = time.perf_counter()
        return {
            "answer": text,
            "sources": [passage.to_dict() for passage in passages],
            "architecture": self.architecture,
            "model": {"embedding": self.retriever.model_name, "llm": self.generator.name},
            "usage": answer.usage(),
            "timings_ms": {"retrieve": _ms(retrieved - started), "generate": _ms(finished - retrieved),
                           "total": _ms(finished - started)},
        }


def load_embedder(settings: Settings) -> Embedder:
    """The configured sentence-transformers model (the embedded one resolves offline)."""
    from rag.embedder import SentenceTransformerEmbedder
    from rag.generator import resolve_device
    from rag.models import embedding_model_path

    import torch

    torch.set_num_threads(settings.torch_threads)
    return SentenceTransformerEmbedder(settings.embedding_model, embedding_model_path(settings.embedding_model),
                                       resolve_device(settings.device), settings.embed_batch_size)


def load_retriever(settings: Settings, concurrency: int | None = None,
                   trim_idle_s: float | None = IDLE_S) -> LocalRetriever:
    """Embedder plus the index at RAG_INDEX_DIR, checked against each other; `concurrency` and `trim_idle_s`
    as LocalRetriever's (by default, memory is handed back after IDLE_S without a retrieval)."""
    embedder = load_embedder(settings)
    index = VectorIndex.load(settings.index_dir, embedder.name, embedder.dimension,
                             ef_search=settings.index_ef_search, nprobe=settings.index_nprobe)
    log.info("index %s: %d chunks from %s documents", settings.index_dir, len(index.chunks),
             index.manifest.get("documents"))
    # Queries are embedded on request threads with one torch thread, in the monolith and in the vector
    # service alike: the same sums in the same order, so both architectures give identical sources.
    single_threaded_from_now()
    return LocalRetriever(embedder, index, settings.context, concurrency, trim_idle_s)


def load_local_pipeline(settings: Settings, architecture: str) -> RagPipeline:
    """Retrieval and generation in this process: the monolith, the in-process eval and bench baseline.

    One request retrieves at a time: the model's thread already keeps every core busy, and a burst of
    admitted requests embedding their sentences all at once (16 threads on 2 cores) starved the threads
    that answer /ping and turn requests away (429 p99 170 ms, 27 ms with one at a time; docs/performance.md).
    Memory is handed back by the model's thread once the model is idle (rag/batching.py), for the whole
    process; a trim when retrieval is idle would run during every request's generation."""
    return RagPipeline(load_retriever(settings, concurrency=1, trim_idle_s=None), load_generator(settings),
                       architecture, settings.grounding_check)


def load_generator(settings: Settings) -> Generator:
    """The configured causal LM (the embedded one is converted from GGUF on first use)."""
    from rag.generator import TransformersGenerator
    from rag.models import llm_model_path

    generator = TransformersGenerator.from_settings(settings, llm_model_path(settings.llm_model))
    generator.warm_up(warm_up_context_chars(settings))
    return generator


def warm_up_context_chars(settings: Settings) -> int:
    """How much passage text a typical request puts in the prompt, under these settings."""
    if settings.context_focus == "off":
        return settings.top_k * settings.chunk_size
    return settings.context_max_tokens * CHARS_PER_TOKEN
