"""The wire protocol between the services of one deployment: header names, deadlines, request ids, trace
context, streamed events.

The HTTP edge (serving/) reads these names; the clients (rag.clients.http, rag.clients.sagemaker_runtime)
write them. Nothing here opens a connection.

SageMaker Runtime forwards none of our headers to a container except `X-Amzn-SageMaker-Custom-Attributes`
(and InvokeEndpoint's InferenceId as `X-Amzn-SageMaker-Inference-Id`), so a call to the split topology's
LLM endpoint carries the deadline, the request id and the W3C `traceparent` as custom attributes:
`X-Rag-Timeout-S=12.345,X-Request-Id=<id>,traceparent=00-<trace>-<span>-01`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator

from rag import errors

CUSTOM_ATTRIBUTES = "X-Amzn-SageMaker-Custom-Attributes"  # at most 1024 visible ASCII characters, passed through
DEADLINE_HEADER = "X-Rag-Timeout-S"  # remaining seconds, so the service stops generating in time
REQUEST_ID_HEADER = "X-Request-Id"  # the request's id, in every service's log lines and in the response
INFERENCE_ID_HEADER = "X-Amzn-SageMaker-Inference-Id"  # InvokeEndpoint's InferenceId, as SageMaker passes it on
TRACEPARENT = "traceparent"  # W3C trace context: https://www.w3.org/TR/trace-context/
MAX_REQUEST_ID_CHARS = 64  # SageMaker's limit for an InferenceId, so that ours can travel as one


def valid_request_id(value: str | None) -> bool:
    """A request id we pass on as is: 1 to 64 printable ASCII characters, no space at either end, and no
    `,` or `;` (the separators of custom attributes)."""
    return (
        bool(value)
        and len(value) <= MAX_REQUEST_ID_CHARS
        and value == value.strip()
        and all(32 <= ord(ch) <= 126 and ch not in ",;" for ch in value)
    )


def custom_attributes(items: dict[str, str | None]) -> str:
    """`name=value` pairs for X-Amzn-SageMaker-Custom-Attributes (the empty ones left out)."""
    return ",".join(f"{name}={value}" for name, value in items.items() if value)


def attribute(attributes: str | None, name: str) -> str | None:
    """The value of `name` in a custom-attributes header (`,` or `;` between entries), if it is there."""
    for item in (attributes or "").replace(";", ",").split(","):
        key, sep, value = item.partition("=")
        if sep and key.strip().lower() == name.lower():
            return value.strip()
    return None


def timeout_from_attributes(attributes: str | None) -> float | None:
    """The `X-Rag-Timeout-S=<seconds>` entry of a custom-attributes header, if there is a valid one."""
    value = attribute(attributes, DEADLINE_HEADER)
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
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
