"""The LLM service: generates a grounded answer from passages (127.0.0.1:5002 by default).

    POST /generate {"query", "passages", "max_new_tokens", "temperature"}  ->  {"answer", "usage", "model"}
    POST /generate-stream (same body)  ->  JSON lines {"text"} ..., then {"answer", "usage", "model"}

As the public server of the split topology's LLM endpoint (RAG_SERVE=llm), `/invocations` is
`/generate` and `/invocations-response-stream` is `/generate-stream`.
"""

from __future__ import annotations

from flask import Flask, request

from rag.api import parse_json_object, validate_generation, validate_query
from rag.errors import InvalidRequest
from rag.generation.generator import load_generator
from rag.settings import MAX_CHUNK_CHARS, MAX_PASSAGES, Settings
from rag.telemetry import uncounted
from rag.types import Answer, Passage
from serving.web import create_loading_app, json_response, request_deadline, stream_events


def _passages(data: dict) -> list[Passage]:
    raw = data.get("passages", [])
    if not isinstance(raw, list) or len(raw) > MAX_PASSAGES:
        raise InvalidRequest(f"'passages' must be a list of at most {MAX_PASSAGES} passages")
    try:
        passages = [Passage.from_dict(item) for item in raw]
    except (KeyError, TypeError, ValueError, OverflowError):
        raise InvalidRequest("each passage must be a JSON object with rank, source, chunk, score and text")
    # Checked before tokenizing: a 6 MB body of passages would otherwise cost seconds of CPU first.
    longest = max((max(len(passage.text), len(passage.source)) for passage in passages), default=0)
    if longest > MAX_CHUNK_CHARS:
        raise InvalidRequest(
            f"a passage's text or source has {longest} characters; the limit is {MAX_CHUNK_CHARS} "
            "(the largest RAG_CHUNK_SIZE)"
        )
    return passages


def create_app(settings: Settings | None = None) -> Flask:
    """Application factory for the LLM service."""
    settings = settings or Settings.from_env()
    app, loader = create_loading_app(
        "llm_service", settings, "LLM service", lambda: load_generator(settings, without_torch=True)
    )

    def parse(data: dict):
        return validate_query(data.get("query")), _passages(data), validate_generation(data, settings.max_new_tokens)

    def final(answer: Answer) -> dict:
        return {"answer": answer.text, "usage": answer.usage(), "model": loader.get().name}

    def body() -> dict:
        return parse_json_object(request.get_data(cache=False))

    @app.post("/generate")
    def generate(data: dict | None = None):
        query, passages, params = parse(body() if data is None else data)
        return json_response(final(loader.get().generate(query, passages, params, request_deadline(settings))))

    @app.post("/generate-stream")
    @app.post("/invocations-response-stream")  # the split topology's LLM endpoint (InvokeEndpointWithResponseStream)
    def generate_stream():
        query, passages, params = parse(body())
        pieces = loader.get().stream(query, passages, params, request_deadline(settings))
        events = (final(piece) if isinstance(piece, Answer) else {"text": piece} for piece in pieces)
        return stream_events(events, "generate")

    @app.post("/invocations")
    def invocations():
        """The split topology's LLM endpoint: SageMaker Runtime reaches only /invocations, so it is
        /generate, and `{"ping": true}` is the front's health probe, answered as /ping."""
        data = body()
        if data == {"ping": True}:
            uncounted()
            return loader.ping()
        return generate(data)

    return app
