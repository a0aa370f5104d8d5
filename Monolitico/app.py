"""The monolith: retrieval and generation in the Gunicorn worker's own process.

    gunicorn --config python:serving.gunicorn_conf 'Monolitico.app:create_app()'
"""
from __future__ import annotations

from flask import Flask

from rag.pipeline import RagPipeline, load_generator, load_retriever
from rag.settings import Settings
from serving.web import Loader, add_invocations, create_service_app


def create_app(settings: Settings | None = None) -> Flask:
    """Application factory: models load in the background; /ping is 503 until they have."""
    settings = settings or Settings.from_env()
    app = create_service_app("monolith", settings)
    loader = Loader("monolith pipeline", lambda: RagPipeline(
        load_retriever(settings), load_generator(settings), "monolith")).start()
    app.extensions["rag_loader"] = loader

    @app.get("/ping")
    def ping():
        return loader.ping()

    add_invocations(app, settings, loader.get)
    return app
