"""The wire protocol between the services of one deployment: header names, deadlines, streamed events.

The HTTP edge (serving/) reads these names; the clients (rag.clients.http, rag.clients.sagemaker_runtime)
write them. Nothing here opens a connection.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator

from rag import errors

DEADLINE_HEADER = "X-Rag-Timeout-S"  # remaining seconds, so the service stops generating in time


def deadline_attribute(remaining: float) -> str:
    """The remaining seconds as a SageMaker custom attribute: the one header SageMaker Runtime forwards."""
    return f"{DEADLINE_HEADER}={remaining:.3f}"


def timeout_from_attributes(attributes: str | None) -> float | None:
    """The `X-Rag-Timeout-S=<seconds>` entry of a custom-attributes header, if there is a valid one."""
    for item in (attributes or "").replace(";", ",").split(","):
        key, sep, value = item.partition("=")
        if sep and key.strip().lower() == DEADLINE_HEADER.lower():
            try:
                return max(0.0, float(value))
            except ValueError:
                return None
    return None


# The caller's RAG_INSTANCE_TOKEN: a service of another instance (on a port this one expected to own)
# refuses the call instead of answering from its own index.
INSTANCE_HEADER = "X-Rag-Instance"


def decode_events(lines: Iterable[bytes]) -> Iterator[dict]:
    """The JSON objects of a JSON-lines stream; an error line (`error_type`) raises its RagError."""
    for line in lines:
        if not line.strip():
            continue
        event = json.loads(line)
        if "error_type" in event:
            raise errors.from_dict(event, 500)
        yield event
