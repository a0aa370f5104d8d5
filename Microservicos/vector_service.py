"""The vector service: embeds queries and searches the FAISS index (127.0.0.1:5001 by default).

POST /retrieve {"query": str, "top_k": int}  ->  {"passages": [...], "model": str}
"""

from __future__ import annotations

from flask import Flask, g, request

from rag.api import parse_json_object, validate_query, validate_top_k
from rag.retrieval.local import load_retriever
from rag.settings import Settings
from serving.web import create_loading_app, json_response


def create_app(settings: Settings | None = None) -> Flask:
    """Application factory for the vector service."""
    settings = settings or Settings.from_env()
    app, loader = create_loading_app("vector_service", settings, "vector service", lambda: load_retriever(settings))

    @app.post("/retrieve")
    def retrieve():
        data = parse_json_object(request.get_data(cache=False))
        query, top_k = validate_query(data.get("query")), validate_top_k(data, settings.top_k)
        retriever = loader.get()
        passages = retriever.retrieve(query, top_k)
        g.timings = {"passages": len(passages)}
        return json_response({"passages": [p.to_dict() for p in passages], "model": retriever.model_name})

    return app
