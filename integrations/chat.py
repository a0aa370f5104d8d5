"""LangChain's `ChatSagemakerEndpoint` (langchain-aws) against this service's chat-completions schema.

ChatSagemakerEndpoint sends whatever its content handler makes of the conversation, through
`invoke_endpoint` (`invoke`) or `invoke_endpoint_with_response_stream` (`stream`, one JSON line at a time,
reassembled across PayloadPart events by langchain-aws itself). This handler sends
`{"messages": [...], **model_kwargs}` and reads a `chat.completion`, or one `chat.completion.chunk` per
line; the answer's `sources` (and the final text, `answer`) land in the message's `response_metadata`,
its token counts in `usage_metadata`, and an error line of a stream raises RagEndpointError.

    from langchain_aws.chat_models.sagemaker_endpoint import ChatSagemakerEndpoint
    from integrations.chat import RagChatContentHandler

    chat = ChatSagemakerEndpoint(endpoint_name="rag-monolito", region_name="us-east-1",
                                 content_handler=RagChatContentHandler(), model_kwargs={"max_tokens": 128})
    reply = chat.invoke("When did the Velmora Tramway open?")
    reply.content, reply.response_metadata["sources"]
"""

from __future__ import annotations

import json
from typing import Any

from langchain_aws.chat_models.sagemaker_endpoint import ChatModelContentHandler
from langchain_core.messages import AIMessage, AIMessageChunk


class RagEndpointError(RuntimeError):
    """The endpoint answered an error ({"error", "error_type"}), or something that is not this service's."""

    def __init__(self, body: dict):
        super().__init__(f"{body.get('error_type', 'internal')}: {body.get('error', 'the endpoint failed')}")
        self.error_type = body.get("error_type")


def _usage(body: dict) -> dict:
    usage = body["usage"]
    return {
        "input_tokens": usage["prompt_tokens"],
        "output_tokens": usage["completion_tokens"],
        "total_tokens": usage["total_tokens"],
    }


def _metadata(body: dict, finish_reason: str, answer: str) -> dict:
    return {"sources": body["sources"], "answer": answer, "finish_reason": finish_reason, "model_name": body["model"]}


class RagChatContentHandler(ChatModelContentHandler):
    """OpenAI-shaped chat requests, and this service's answers with their sources."""

    content_type = "application/json"
    accepts = "application/json"

    def transform_input(self, prompt: list[dict[str, Any]], model_kwargs: dict) -> bytes:
        """The chat request: the conversation's messages and the model kwargs (max_tokens, top_k, ...)."""
        return json.dumps({"messages": prompt, **model_kwargs}, ensure_ascii=False).encode("utf-8")

    def transform_output(self, output: Any) -> AIMessage | AIMessageChunk:
        """A whole answer (a readable body) or one line of a stream, as a LangChain message."""
        body = json.loads(output.read() if hasattr(output, "read") else output)
        if not isinstance(body, dict) or "error" in body:
            raise RagEndpointError(body if isinstance(body, dict) else {})
        kind = body.get("object")
        if kind == "chat.completion":
            choice = body["choices"][0]
            return AIMessage(
                content=choice["message"]["content"],
                id=body["id"],
                usage_metadata=_usage(body),
                response_metadata=_metadata(body, choice["finish_reason"], choice["message"]["content"]),
            )
        if kind == "chat.completion.chunk":
            choice = body["choices"][0]
            if choice["finish_reason"] is None:
                return AIMessageChunk(content=choice["delta"].get("content", ""), id=body["id"])
            # The last chunk: no text, but usage (so LangChain passes it on) and the sources.
            return AIMessageChunk(
                content="",
                id=body["id"],
                usage_metadata=_usage(body),
                response_metadata=_metadata(body, choice["finish_reason"], body["answer"]),
            )
        raise RagEndpointError(
            {"error": "the endpoint answered neither a chat.completion nor a chunk", "error_type": "unexpected_answer"}
        )
