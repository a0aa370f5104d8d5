"""API requests: the /invocations body and the internal routes' fields, validated into typed values.

Every rule of the API contract about a request lives here (fields, ranges, media types); the HTTP edge
(serving/) and the internal services call it, so each field is checked the same way everywhere.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from rag.errors import InvalidJSON, InvalidRequest, UnsupportedMediaType
from rag.settings import MAX_QUERY_CHARS, Settings
from rag.types import GenerationParams

REQUEST_FIELDS = ("query", "top_k", "max_new_tokens", "temperature")


def integer_field(data: dict, name: str, default: int, low: int, high: int) -> int:
    """Field `name` of a request: an integer in [low, high] (not a bool), `default` when absent."""
    value = data.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRequest(f"'{name}' must be an integer between {low} and {high}, got {json.dumps(value)}")
    if not low <= value <= high:
        raise InvalidRequest(f"'{name}' must be between {low} and {high}, got {value}")
    return value


def number_field(data: dict, name: str, default: float, low: float, high: float) -> float:
    """Field `name` of a request: a number in [low, high] (not a bool), `default` when absent."""
    value = data.get(name, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidRequest(f"'{name}' must be a number between {low} and {high}, got {json.dumps(value)}")
    if not low <= value <= high:
        raise InvalidRequest(f"'{name}' must be between {low} and {high}, got {value}")
    return float(value)


def validate_query(value) -> str:
    """A query is a non-empty string of at most MAX_QUERY_CHARS characters once stripped."""
    if not isinstance(value, str):
        raise InvalidRequest(f"'query' must be a string, got {json.dumps(value)[:80]}")
    query = value.strip()
    if not query:
        raise InvalidRequest('\'query\' is empty; send the question to answer, e.g. {"query": "What is ...?"}')
    if len(query) > MAX_QUERY_CHARS:
        raise InvalidRequest(f"'query' has {len(query)} characters; the limit is {MAX_QUERY_CHARS}")
    return query


def validate_top_k(data: dict, default: int) -> int:
    return integer_field(data, "top_k", default, 1, 20)


def validate_generation(data: dict, default_max_new_tokens: int) -> GenerationParams:
    """max_new_tokens 1..1024 and temperature 0..2, as the API contract says."""
    return GenerationParams(
        max_new_tokens=integer_field(data, "max_new_tokens", default_max_new_tokens, 1, 1024),
        temperature=number_field(data, "temperature", 0.0, 0.0, 2.0),
    )


def parse_json_object(body: bytes) -> dict:
    """Decode a JSON object body; anything else is invalid_json or invalid_request."""
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidJSON(f'the body is not valid UTF-8 JSON ({exc}); send a JSON object like {{"query": "..."}}')
    except RecursionError:  # thousands of nested [ or {: the decoder's recursion limit, not a server fault
        raise InvalidJSON('the body nests JSON too deeply; send a flat JSON object like {"query": "..."}')
    if not isinstance(data, dict):
        raise InvalidRequest('the body must be a JSON object like {"query": "..."}')
    return data


@dataclass(frozen=True)
class QueryRequest:
    query: str
    top_k: int = 3
    max_new_tokens: int = 128
    temperature: float = 0.0

    @classmethod
    def from_dict(cls, data: dict, settings: Settings) -> QueryRequest:
        """Validate a decoded JSON request; unknown fields are named in the error."""
        unknown = sorted(set(data) - set(REQUEST_FIELDS))
        if unknown:
            raise InvalidRequest(
                f"unknown field(s): {', '.join(unknown)}; allowed fields are {', '.join(REQUEST_FIELDS)}"
            )
        if "query" not in data:
            raise InvalidRequest('\'query\' is required, e.g. {"query": "What is ...?"}')
        params = validate_generation(data, settings.max_new_tokens)
        return cls(
            validate_query(data["query"]),
            validate_top_k(data, settings.top_k),
            params.max_new_tokens,
            params.temperature,
        )

    @classmethod
    def from_body(cls, body: bytes, content_type: str | None, settings: Settings) -> QueryRequest:
        """Parse an /invocations body: application/json, or text/plain holding the query itself."""
        media_type = (content_type or "").split(";")[0].strip().lower()
        if media_type == "application/json":
            return cls.from_dict(parse_json_object(body), settings)
        if media_type == "text/plain":
            try:
                text = body.decode("utf-8")
            except UnicodeDecodeError:
                raise InvalidRequest("the text/plain body is not UTF-8; send the question as UTF-8 text")
            return cls.from_dict({"query": text}, settings)
        raise UnsupportedMediaType(
            f"Content-Type {media_type or '(none)'} is not supported; send application/json or text/plain"
        )

    @property
    def generation(self) -> GenerationParams:
        return GenerationParams(self.max_new_tokens, self.temperature)
