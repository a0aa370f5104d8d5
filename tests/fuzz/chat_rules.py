"""A Schemathesis hook (loaded through SCHEMATHESIS_HOOKS by fuzz_support.fuzz): the chat schema's rules
that OpenAPI 3.0 cannot state, restated from docs/api.md, so that the fuzz still holds the servers to them.

`positive_data_acceptance` says a request valid for docs/openapi.yaml must not get a 4xx. A chat request
can match the schema and still break a documented rule that no JSON Schema keyword expresses: the roles'
order (the user's question last; system messages only first), a message's text parts joined beyond
4,000 characters, more than 32,000 characters in all, or a body over SageMaker's 6 MB. Such a request must
get exactly that refusal (400, or 413 for the size); every other one is left to the built-in check.
"""

from __future__ import annotations

import json

import schemathesis
from schemathesis.specs.openapi.checks import positive_data_acceptance

INSTRUCTIONS = ("system", "developer")
MAX_MESSAGE_CHARS, MAX_CONVERSATION_CHARS = 4000, 32000
MAX_PAYLOAD_BYTES = 6 * 1024 * 1024


def _text(content) -> str:
    if isinstance(content, list):
        return "\n".join(str(part.get("text", "")) for part in content if isinstance(part, dict)).strip()
    return content.strip() if isinstance(content, str) else ""


def broken_rule(body) -> tuple[str, int] | None:
    """The documented rule a chat body breaks beyond the schema, with the status it must get; else None."""
    if not isinstance(body, dict) or not isinstance(body.get("messages"), list) or not body["messages"]:
        return None
    messages = [m for m in body["messages"] if isinstance(m, dict)]
    if len(json.dumps(body, ensure_ascii=False).encode()) > MAX_PAYLOAD_BYTES:
        return "a body over 6 MB", 413
    texts = [_text(m.get("content")) for m in messages]
    if any(len(text) > MAX_MESSAGE_CHARS for text in texts):
        return "a message over 4,000 characters", 400
    if sum(map(len, texts)) > MAX_CONVERSATION_CHARS:
        return "a conversation over 32,000 characters", 400
    roles = [m.get("role") for m in messages]
    if roles[-1] != "user":
        return "a conversation that does not end with the user's question", 400
    began = False
    for role in roles:
        if role in INSTRUCTIONS and began:
            return "a system message after the conversation began", 400
        began = began or role not in INSTRUCTIONS
    return None


@schemathesis.check
def positive_data_acceptance_with_chat_rules(ctx, response, case):
    """The built-in positive_data_acceptance, except where a documented chat rule says the request is refused."""
    rule = broken_rule(case.body) if case.meta is not None and case.meta.generation.mode.is_positive else None
    if rule is None:
        return positive_data_acceptance(ctx, response, case)
    what, status = rule
    if response.status_code != status:
        raise AssertionError(f"{what} must be refused with {status} (docs/api.md), got {response.status_code}")
    return None
