"""The monolith: retrieval and generation in the Gunicorn worker's own process.

gunicorn --config python:serving.gunicorn_conf 'Monolitico.app:create_app()'
"""

from __future__ import annotations

from flask import Flask

from rag.loading import load_local_pipeline
from rag.settings import Settings
from serving.web import add_invocations, create_loading_app


def create_app(settings: Settings | None = None) -> Flask:
    """Application factory: models load in the background; /ping is 503 until they have."""
    settings = settings or Settings.from_env()
    app, loader = create_loading_app(
        "monolith", settings, "monolith pipeline", lambda: load_local_pipeline(settings, "monolith")
    )
    add_invocations(app, settings, loader.get)
    return app
