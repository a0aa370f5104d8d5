"""The orchestrator: the public /ping and /invocations, composing the two internal services over HTTP.

It runs the same RagPipeline as the monolith, with HTTP clients in place of the local components. In the
split topology (RAG_LLM_URL=sagemaker://<endpoint>) the LLM is another endpoint, reached through
SageMaker Runtime by a client of the same Generator interface.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from flask import Flask

from rag.clients.http import RemoteGenerator, RemoteRetriever
from rag.clients.sagemaker_runtime import SageMakerGenerator
from rag.pipeline import RagPipeline
from rag.settings import Settings
from serving.web import add_invocations, create_service_app, ping_response


def create_app(settings: Settings | None = None) -> Flask:
    """Application factory for the orchestrator; it loads no model."""
    settings = settings or Settings.from_env()
    app = create_service_app("orchestrator", settings)
    token = settings.instance_token
    # Split topology: the LLM is another SageMaker endpoint, reached through SageMaker Runtime.
    generator = (
        SageMakerGenerator(settings.llm_endpoint) if settings.llm_endpoint else RemoteGenerator(settings.llm_url, token)
    )
    pipeline = RagPipeline(
        RemoteRetriever(settings.vector_url, token), generator, "microservices", settings.grounding_check
    )
    probes = {"vector": pipeline.retriever.client.ping, "llm": generator.ping}
    local = set(settings.local_services.split(","))  # the services start.sh starts next to this one
    pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="ping")
    started = time.monotonic()
    seen_ready: set[str] = set()

    @app.get("/ping")
    def ping():
        # Both services are asked in parallel, each with a sub-second timeout: /ping stays under 2 s.
        answers = dict(zip(probes, pool.map(lambda probe: probe(), probes.values())))
        states = {name: body.get("status", "unavailable") for name, body in answers.items()}
        seen_ready.update(name for name, state in states.items() if state == "ready")
        if all(state == "ready" for state in states.values()):
            return ping_response("ready", services=states)
        # A local service that does not answer yet is still starting, until it has been ready once or
        # the startup window has passed; after that, not answering means it is down.
        starting = time.monotonic() - started < settings.startup_timeout_s
        down = {
            name: answers[name].get("error") or f"the {name} service is not answering; it may be restarting"
            for name, state in states.items()
            if state not in ("ready", "loading")
            and (state != "unavailable" or name in seen_ready or name not in local or not starting)
        }
        if down:
            return ping_response("degraded", error="; ".join(down.values()), services=states)
        loading = [answers[name].get("elapsed_s", 0.0) for name, state in states.items() if state == "loading"]
        return ping_response("loading", elapsed_s=max(loading, default=time.monotonic() - started), services=states)

    add_invocations(app, settings, lambda: pipeline)
    return app
