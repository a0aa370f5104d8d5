"""The orchestrator: the public /ping and /invocations, composing the two internal services over HTTP.

It runs the same RagPipeline as the monolith, with HTTP clients in place of the local components.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from flask import Flask

from rag.pipeline import RagPipeline
from rag.remote import RemoteGenerator, RemoteRetriever
from rag.settings import Settings
from serving.web import add_invocations, create_service_app, json_response


def create_app(settings: Settings | None = None) -> Flask:
    """Application factory for the orchestrator; it loads no model."""
    settings = settings or Settings.from_env()
    app = create_service_app("orchestrator", settings)
    pipeline = RagPipeline(RemoteRetriever(settings.vector_url), RemoteGenerator(settings.llm_url), "microservices",
                           settings.grounding_check)
    clients = {"vector": pipeline.retriever.client, "llm": pipeline.generator.client}
    pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="ping")

    @app.get("/ping")
    def ping():
        # Both services are asked in parallel, each with a sub-second timeout: /ping stays under 2 s.
        answers = dict(zip(clients, pool.map(lambda client: client.ping(), clients.values())))
        states = {name: body.get("status", "unavailable") for name, body in answers.items()}
        if all(state == "ready" for state in states.values()):
            return json_response({"status": "ready", "services": states})
        status = "loading" if set(states.values()) <= {"ready", "loading"} else "degraded"
        return json_response({"status": status, "services": states}, 503)

    add_invocations(app, settings, lambda: pipeline)
    return app
