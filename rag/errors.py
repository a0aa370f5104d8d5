"""Errors of the RAG core. Each carries a stable `error_type` and the HTTP status it maps to.

    RagError
    ├── ConfigError            a wrong setting; startup stops (not an HTTP error)
    │   └── InsufficientMemory a model that cannot fit in the memory left; it is not loaded
    ├── IngestError            a document folder that cannot be indexed
    ├── IndexMismatchError     an index built with another embedding model
    ├── InvalidRequest         400 invalid_request
    │   └── InvalidJSON        400 invalid_json
    ├── UnsupportedMediaType   415 unsupported_media_type
    ├── PayloadTooLarge        413 payload_too_large
    ├── NotReady               503 not_ready
    ├── UpstreamUnavailable    503 upstream_unavailable
    ├── RequestTimeout         504 timeout
    ├── Overloaded             429 overloaded (with Retry-After)
    ├── ClientGone             499 client_closed (logged only: nobody is left to read it)
    └── InternalError          500 internal

Messages say what went wrong and how to fix it; they are turned into responses only at the edge.
"""

from __future__ import annotations


class RagError(Exception):
    """Base of every error the core raises on purpose."""

    error_type = "internal"
    status = 500

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def to_dict(self) -> dict:
        """The JSON body every service returns for this error."""
        return {"error": self.message, "error_type": self.error_type}


class ConfigError(RagError):
    error_type = "config"


class InsufficientMemory(ConfigError):
    error_type = "insufficient_memory"


class IngestError(RagError):
    error_type = "ingest"


class IndexMismatchError(RagError):
    error_type = "index_mismatch"


class InvalidRequest(RagError):
    error_type = "invalid_request"
    status = 400


class InvalidJSON(InvalidRequest):
    error_type = "invalid_json"


class UnsupportedMediaType(RagError):
    error_type = "unsupported_media_type"
    status = 415


class PayloadTooLarge(RagError):
    error_type = "payload_too_large"
    status = 413


class NotFound(RagError):
    error_type = "not_found"
    status = 404


class MethodNotAllowed(RagError):
    error_type = "method_not_allowed"
    status = 405


class NotReady(RagError):
    error_type = "not_ready"
    status = 503


class UpstreamUnavailable(RagError):
    error_type = "upstream_unavailable"
    status = 503


class RequestTimeout(RagError):
    error_type = "timeout"
    status = 504


class Overloaded(RagError):
    """Admission control turned the request away at once: the model already has as many requests
    waiting or running as RAG_MAX_CONCURRENT_REQUESTS allows. The client should retry after
    `retry_after_s` seconds (sent as the Retry-After header)."""

    error_type = "overloaded"
    status = 429
    retry_after_s = 1  # a slot frees when any admitted request ends; most take seconds, not minutes


class ClientGone(RagError):
    """The client disconnected while its request waited or generated; the request was dropped."""

    error_type = "client_closed"
    status = 499  # nginx's code for it; it only ever reaches the request log


class InternalError(RagError):
    error_type = "internal"
    status = 500


_BY_TYPE = {
    cls.error_type: cls
    for cls in (
        InvalidRequest,
        InvalidJSON,
        UnsupportedMediaType,
        PayloadTooLarge,
        NotFound,
        MethodNotAllowed,
        NotReady,
        UpstreamUnavailable,
        RequestTimeout,
        Overloaded,
        InternalError,
    )
}


def from_dict(body: dict, status: int) -> RagError:
    """Rebuild an error that another service returned, keeping its type and message."""
    cls = _BY_TYPE.get(body.get("error_type", ""), InternalError)
    return cls(str(body.get("error", f"upstream answered {status}")))
