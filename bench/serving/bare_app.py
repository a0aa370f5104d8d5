"""The floor of one internal hop: a bare Flask app under the services' own Gunicorn settings.

`python -m bench hops` serves it beside nothing and calls it with the orchestrator's own client
(`rag.clients.http.ServiceClient`): what remains is the client, loopback TCP, Gunicorn's gthread worker and
Flask, with no telemetry, no instance check and no model. Two hops of the microservices cannot cost less
than two of these calls, whatever the services do.
"""

from __future__ import annotations

from flask import Flask, Response, request


def create_app() -> Flask:
    """POST /echo answers the JSON body it was sent; GET /ping answers 200."""
    app = Flask("bare")

    @app.get("/ping")
    def ping():
        return Response('{"status": "ok"}', mimetype="application/json")

    @app.post("/echo")
    def echo():
        return Response(request.get_data(cache=False), mimetype="application/json")

    return app
