"""The LLM service: generates a grounded answer from passages (127.0.0.1:5002 by default).

    POST /generate {"query", "passages", "max_new_tokens", "temperature"}  ->  {"answer", "usage", "model"}
"""
from __future__ import annotations

from flask import Flask, request

from rag.errors import InvalidRequest
from rag.index import Passage
from rag.pipeline import load_generator, parse_json_object, validate_generation, validate_query
from rag.settings import Settings
from serving.web import Loader, create_service_app, json_response, request_deadline


def _passages(data: dict) -> list[Passage]:
    raw = data.get("passages", [])
    if not isinstance(raw, list) or len(raw) > 20:
        raise InvalidRequest("'passages' must be a list of at most 20 passages")
    try:
        return [Passage.from_dict(item) for item in raw]
    except (KeyError, TypeError, ValueError):
        raise InvalidRequest("each passage needs rank, source, chunk, score and text")


def create_app(settings: Settings | None = None) -> Flask:
    """Application factory for the LLM service."""
    settings = settings or Settings.from_env()
    app = create_service_app("llm_service", settings)
    loader = Loader("LLM service", lambda: load_generator(settings)).start()

    @app.get("/ping")
    def ping():
        return loader.ping()

    @app.post("/generate")
    def generate():
        data = parse_json_object(request.get_data(cache=False))
        query, passages = validate_query(data.get("query")), _passages(data)
        params = validate_generation(data, settings.max_new_tokens)
        generator = loader.get()
        answer = generator.generate(query, passages, params, request_deadline(settings))
        return json_response({"answer": answer.text, "usage": answer.usage(), "model": generator.name})

    return app
