"""What every handler writes and reads: the request body, the answer's body and the stream's events."""

from __future__ import annotations

import json
from typing import Any

from sagemaker_lifecycle.client import decode, decode_error

JSON = "application/json"


def request_body(question: str, options: dict) -> bytes:
    """The /invocations body: the question and the request's options (top_k, max_new_tokens, temperature)."""
    return json.dumps({"query": question, **options}, ensure_ascii=False).encode()


def answer_body(body: Any) -> dict:
    """The decoded answer of an InvokeEndpoint `Body`; an unusable one raises InvocationError."""
    return decode(body.read(), 200, JSON, where="the endpoint")


def token_text(event: dict) -> str:
    """A stream event's text: a token's, "" for `sources` and `done`; an `error` event raises InvocationError."""
    if event.get("event") == "error":
        raise decode_error(json.dumps(event).encode(), None, "the endpoint's stream")
    return event.get("text", "") if event.get("event") == "token" else ""
