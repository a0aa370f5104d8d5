"""LlamaIndex clients of a RAG endpoint: `SageMakerLLM` (llama-index-llms-sagemaker-endpoint) with RagIOHandler.

    from integrations.llamaindex import rag_sagemaker_llm

    llm = rag_sagemaker_llm("rag-monolito", aws_region_name="eu-west-1")
    response = llm.complete("When did the Velmora Tramway open?")       # POST /invocations
    response.text, response.raw["Body"]["sources"]                      # the answer; the whole body
    for piece in llm.stream_complete("When did the Velmora Tramway open?"):  # /invocations-response-stream
        print(piece.delta, end="")

SageMakerLLM hands its content handler each PayloadPart on its own, assuming one JSON document per part.
SageMaker promises no such thing, so RagIOHandler keeps the unfinished line of each thread's stream until
its end arrives. `model_kwargs` (top_k, max_new_tokens, temperature) join the question in the request body.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from typing import Any

from llama_index.core.base.llms.types import ChatMessage, MessageRole
from llama_index.core.bridge.pydantic import PrivateAttr
from llama_index.llms.sagemaker_endpoint import SageMakerLLM
from llama_index.llms.sagemaker_endpoint.utils import BaseIOHandler

from integrations.payloads import JSON, answer_body, request_body, token_text


class RagIOHandler(BaseIOHandler):
    """The question as `{"query": ..., **model_kwargs}`; the answer's whole body as `raw["Body"]` and its
    `answer` as the text; a stream's token texts, from lines joined across PayloadParts."""

    content_type: str = JSON
    accept: str = JSON
    _streams: threading.local = PrivateAttr(default_factory=threading.local)

    def serialize_input(self, request: str, model_kwargs: dict) -> bytes:
        """The /invocations body; a new call also starts this thread's stream afresh."""
        self._streams.pending = b""
        return request_body(request, model_kwargs)

    def deserialize_output(self, response: Any) -> dict:
        """The decoded answer (SageMakerLLM keeps it as the response's `raw["Body"]`)."""
        return answer_body(response)

    def deserialize_streaming_output(self, response: bytes) -> str:
        """The token text of the lines this PayloadPart completes (an error event raises InvocationError)."""
        pending = getattr(self._streams, "pending", b"") + response
        *lines, self._streams.pending = pending.split(b"\n")
        return "".join(token_text(json.loads(line)) for line in lines if line.strip())

    def remove_prefix(self, response: Any, prompt: str) -> str:
        """The answer text: the service never echoes the prompt."""
        return response["answer"] if isinstance(response, dict) else response


def last_question(messages: Sequence[ChatMessage]) -> str:
    """A chat's retrieval question: its last user message (the service answers one question at a time)."""
    for message in reversed(messages):
        if message.role == MessageRole.USER and message.content:
            return message.content
    raise ValueError("the chat has no user message to ask the endpoint")


def rag_sagemaker_llm(endpoint_name: str, **kwargs: Any) -> SageMakerLLM:
    """SageMakerLLM for a RAG endpoint: RagIOHandler, greedy decoding (the service's default; SageMakerLLM's
    own is temperature 0.5) and the question sent as it is, not wrapped in a Llama 2 prompt."""
    kwargs.setdefault("temperature", 0.0)
    return SageMakerLLM(
        endpoint_name=endpoint_name,
        content_handler=RagIOHandler(),
        completion_to_prompt=lambda prompt, system_prompt=None: prompt,
        messages_to_prompt=last_question,
        **kwargs,
    )
