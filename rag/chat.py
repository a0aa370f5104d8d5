"""The chat-completions schema: OpenAI's request and response shapes, which SageMaker's LMI containers
accept on /invocations whenever a request has `messages`.

A chat request is validated here (roles, contents, limits, and the other fields OpenAI clients send);
its conversation is condensed into one retrieval query (rag/condense.py) and answered by the
same RagPipeline as {"query": ...}; the answer is shaped here into a `chat.completion`, or into
`chat.completion.chunk`s when streamed. The HTTP edge (serving/web.py) only picks the framing: one JSON
body, JSON lines (SageMaker's response stream) or Server-Sent Events (/v1/chat/completions).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from rag.api import QueryRequest, integer_field, number_field, parse_json_object
from rag.condense import condense
from rag.errors import InvalidRequest, UnsupportedMediaType
from rag.settings import MAX_QUERY_CHARS, Settings

# Limits, checked before any work: a long chat costs nothing to refuse. Condensation reads the user
# turns only, so a longer history would add text to read, never a better query.
MAX_MESSAGES = 64
MAX_CONVERSATION_CHARS = 32_000  # all messages' text together; each message at most MAX_QUERY_CHARS
MAX_CONTENT_PARTS = 64

ROLES = ("system", "developer", "user", "assistant")
INSTRUCTIONS = ("system", "developer")  # OpenAI's newer models take "developer" where others take "system"
MESSAGE_FIELDS = ("role", "content", "name")

# The fields this service reads.
USED_FIELDS = (
    "messages",
    "model",
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_k",
    "stream",
    "stream_options",
)
# Fields OpenAI clients send that change nothing here, accepted with any value of their type...
IGNORED_FIELDS = {"user": str, "seed": int}
# ...or only with their neutral value: any other would ask for something this service does not do.
NEUTRAL_VALUES = {
    "n": 1,
    "top_p": 1,
    "presence_penalty": 0,
    "frequency_penalty": 0,
    "logprobs": False,
    "response_format": {"type": "text"},
}
# Features the service does not have: refused by name.
UNSUPPORTED_FIELDS = (
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "functions",
    "function_call",
    "stop",
    "logit_bias",
    "top_logprobs",
    "audio",
    "modalities",
    "prediction",
)
ALL_FIELDS = (*USED_FIELDS, *IGNORED_FIELDS, *NEUTRAL_VALUES, *UNSUPPORTED_FIELDS)


@dataclass(frozen=True)
class ChatMessage:
    role: str
    content: str  # stripped text; list-of-parts content arrives here joined


def _kind(value) -> str:
    kinds = {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}
    return "null" if value is None else kinds.get(type(value), "a number")


def _same(value, neutral) -> bool:
    """JSON equality without Python's True == 1."""
    if isinstance(neutral, bool) or isinstance(value, bool):
        return value is neutral
    if isinstance(neutral, (int, float)):
        return isinstance(value, (int, float)) and value == neutral
    return value == neutral


def _check_fields(data: dict) -> None:
    unsupported = [name for name in UNSUPPORTED_FIELDS if name in data]
    if unsupported:
        raise InvalidRequest(
            f"{', '.join(unsupported)}: not supported; this service answers from its documents, with no tools, "
            "stop sequences or token options; leave the field(s) out"
        )
    unknown = sorted(set(data) - set(ALL_FIELDS))
    if unknown:
        raise InvalidRequest(
            f"unknown field(s): {', '.join(unknown)}; a chat request has messages and optionally "
            f"{', '.join(name for name in ALL_FIELDS if name not in ('messages', *UNSUPPORTED_FIELDS))}"
        )
    for name, kind in IGNORED_FIELDS.items():
        if name in data and (isinstance(data[name], bool) or not isinstance(data[name], kind)):
            raise InvalidRequest(f"'{name}' must be {'a string' if kind is str else 'an integer'}")
    for name, neutral in NEUTRAL_VALUES.items():
        if name in data and not _same(data[name], neutral):
            raise InvalidRequest(f"'{name}' can only be {json.dumps(neutral)} here (got {json.dumps(data[name])[:80]})")
    if "model" in data and not isinstance(data["model"], str):
        raise InvalidRequest(f"'model' must be a string, got {_kind(data['model'])}")
    if "stream" in data and not isinstance(data["stream"], bool):
        raise InvalidRequest(f"'stream' must be true or false, got {_kind(data['stream'])}")
    options = data.get("stream_options", {})
    if not isinstance(options, dict) or set(options) - {"include_usage"} or not _is_bool(options, "include_usage"):
        raise InvalidRequest("'stream_options' may only be {\"include_usage\": true|false}")


def _is_bool(data: dict, name: str) -> bool:
    return name not in data or isinstance(data[name], bool)


def _text_part(part, where: str) -> str:
    if not isinstance(part, dict) or not isinstance(part.get("type"), str):
        raise InvalidRequest(f'{where} must be a content part like {{"type": "text", "text": "..."}}')
    if part["type"] != "text":
        raise InvalidRequest(f"{where} is a {part['type']!r} part; only text parts are supported, send the text alone")
    if set(part) != {"type", "text"} or not isinstance(part["text"], str):
        raise InvalidRequest(f'{where} must be exactly {{"type": "text", "text": "<a string>"}}')
    if not part["text"].strip():
        raise InvalidRequest(f"{where} has empty text")
    return part["text"]


def _content(value, where: str) -> str:
    """A message's text: a string, or OpenAI's list of text parts joined by newlines; stripped."""
    if isinstance(value, list):
        if not 1 <= len(value) <= MAX_CONTENT_PARTS:
            raise InvalidRequest(f"{where} must hold 1 to {MAX_CONTENT_PARTS} text parts, got {len(value)}")
        value = "\n".join(_text_part(part, f"{where}[{i}]") for i, part in enumerate(value))
    elif not isinstance(value, str):
        raise InvalidRequest(f"{where} must be a string (or a list of text parts), got {_kind(value)}")
    text = value.strip()
    if not text:
        raise InvalidRequest(f"{where} is empty; every message needs text")
    if len(text) > MAX_QUERY_CHARS:
        raise InvalidRequest(f"{where} has {len(text)} characters; the limit is {MAX_QUERY_CHARS} per message")
    return text


def _message(item, index: int) -> ChatMessage:
    where = f"messages[{index}]"
    if not isinstance(item, dict):
        raise InvalidRequest(f'{where} must be an object like {{"role": "user", "content": "..."}}')
    extra = sorted(set(item) - set(MESSAGE_FIELDS))
    if extra:
        raise InvalidRequest(
            f"{where} has field(s) {', '.join(extra)}, which are not supported (this service calls no tools); "
            "a message has role, content and optionally name"
        )
    role = item.get("role")
    if role not in ROLES:
        raise InvalidRequest(f"{where}.role must be one of {', '.join(ROLES)}, got {json.dumps(role)[:40]}")
    if "name" in item and not isinstance(item["name"], str):
        raise InvalidRequest(f"{where}.name must be a string")
    if "content" not in item:
        raise InvalidRequest(f"{where} has no content")
    return ChatMessage(role, _content(item["content"], f"{where}.content"))


def parse_messages(value) -> tuple[ChatMessage, ...]:
    """Validated messages: 1 to MAX_MESSAGES, at most MAX_CONVERSATION_CHARS of text in all, system (or
    developer) messages only at the start, and the user's question last."""
    if not isinstance(value, list) or not value:
        raise InvalidRequest('\'messages\' must be a non-empty list like [{"role": "user", "content": "..."}]')
    if len(value) > MAX_MESSAGES:
        raise InvalidRequest(
            f"'messages' has {len(value)} messages; the limit is {MAX_MESSAGES}; send the latest turns"
        )
    messages, total, started = [], 0, False
    for index, item in enumerate(value):
        message = _message(item, index)
        total += len(message.content)
        if total > MAX_CONVERSATION_CHARS:
            raise InvalidRequest(
                f"the conversation has more than {MAX_CONVERSATION_CHARS} characters; send the latest turns"
            )
        if message.role in INSTRUCTIONS and started:
            raise InvalidRequest(
                f"messages[{index}] is a {message.role} message after the conversation began; "
                f"{message.role} messages may only come first"
            )
        started = started or message.role not in INSTRUCTIONS
        messages.append(message)
    if messages[-1].role != "user":
        raise InvalidRequest(f"the last message must be the user's question; it is a(n) {messages[-1].role} message")
    return tuple(messages)


@dataclass(frozen=True)
class ChatRequest:
    messages: tuple[ChatMessage, ...]
    top_k: int = 3
    max_tokens: int = 128
    temperature: float = 0.0
    stream: bool = False

    @classmethod
    def from_dict(cls, data: dict, settings: Settings) -> ChatRequest:
        """Validate a decoded chat request; every refusal names the field and says what to send."""
        _check_fields(data)
        if "messages" not in data:
            raise InvalidRequest('\'messages\' is required, e.g. {"messages": [{"role": "user", "content": "..."}]}')
        messages = parse_messages(data["messages"])
        # max_completion_tokens is OpenAI's newer name; when both come, it wins.
        max_tokens = integer_field(data, "max_tokens", settings.max_new_tokens, 1, 1024)
        return cls(
            messages,
            integer_field(data, "top_k", settings.top_k, 1, 20),
            integer_field(data, "max_completion_tokens", max_tokens, 1, 1024),
            number_field(data, "temperature", 0.0, 0.0, 2.0),
            data.get("stream", False),
        )

    @classmethod
    def from_body(cls, body: bytes, content_type: str | None, settings: Settings) -> ChatRequest:
        """Parse a /v1/chat/completions body (application/json only)."""
        if _media_type(content_type) != "application/json":
            raise UnsupportedMediaType(
                f"Content-Type {_media_type(content_type) or '(none)'} is not supported; send application/json"
            )
        return cls.from_dict(parse_json_object(body), settings)

    def query(self, strategy: str) -> QueryRequest:
        """The request the pipeline answers: the conversation condensed into one query."""
        turns = [message.content for message in self.messages if message.role == "user"]
        return QueryRequest(condense(turns, strategy), self.top_k, self.max_tokens, self.temperature)


def _media_type(content_type: str | None) -> str:
    return (content_type or "").split(";")[0].strip().lower()


def parse_invocation(body: bytes, content_type: str | None, settings: Settings) -> QueryRequest | ChatRequest:
    """An /invocations body: a chat request when it is a JSON object with `messages`, else a query."""
    if _media_type(content_type) == "application/json":
        data = parse_json_object(body)
        return ChatRequest.from_dict(data, settings) if "messages" in data else QueryRequest.from_dict(data, settings)
    return QueryRequest.from_body(body, content_type, settings)


def _usage(result: dict) -> dict:
    prompt, completion = result["usage"]["prompt_tokens"], result["usage"]["completion_tokens"]
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _finish_reason(result: dict, request: ChatRequest) -> str:
    return "length" if result["usage"]["completion_tokens"] >= request.max_tokens else "stop"


def completion(result: dict, request: ChatRequest, completion_id: str, created: int) -> dict:
    """The pipeline's answer (its /invocations body) as a `chat.completion`, with the sources added."""
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": result["model"]["llm"],
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": result["answer"]},
                "finish_reason": _finish_reason(result, request),
            }
        ],
        "usage": _usage(result),
        "sources": result["sources"],
    }


def chunks(
    events: Iterable[dict], request: ChatRequest, completion_id: str, created: int, model: str
) -> Iterator[dict]:
    """The pipeline's stream events as `chat.completion.chunk`s: a role delta once the sources are
    known, a content delta per text piece, and a last chunk with the finish reason, usage, sources and
    the answer as /invocations returns it (the grounding check may have replaced the streamed text)."""

    def chunk(delta: dict, finish_reason: str | None = None, **extra) -> dict:
        choice = {"index": 0, "delta": delta, "finish_reason": finish_reason}
        return {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [choice],
            **extra,
        }

    try:
        for event in events:
            if event["event"] == "sources":
                yield chunk({"role": "assistant", "content": ""})
            elif event["event"] == "token":
                yield chunk({"content": event["text"]})
            elif event["event"] == "done":
                yield chunk(
                    {},
                    _finish_reason(event, request),
                    usage=_usage(event),
                    sources=event["sources"],
                    answer=event["answer"],
                )
    finally:  # a client that went away closes this; the generation behind it is closed with it
        getattr(events, "close", lambda: None)()
