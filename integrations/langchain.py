"""LangChain (langchain-aws) clients of a RAG endpoint: a content handler for `SagemakerEndpoint`, and
`RagSagemakerEndpoint`, whose generations also carry the sources.

    from langchain_aws import SagemakerEndpoint
    from integrations.langchain import RagContentHandler, RagSagemakerEndpoint

    llm = SagemakerEndpoint(endpoint_name="rag-monolito", region_name="eu-west-1", content_handler=RagContentHandler())
    llm.invoke("When did the Velmora Tramway open?")          # the answer text (POST /invocations)
    "".join(llm.stream("When did the Velmora Tramway open?"))  # the tokens (POST /invocations-response-stream)

    rag = RagSagemakerEndpoint(endpoint_name="rag-monolito", region_name="eu-west-1")
    generation = rag.generate(["When did the Velmora Tramway open?"]).generations[0][0]
    generation.text, generation.generation_info["sources"]

`model_kwargs` (top_k, max_new_tokens, temperature) join the prompt in the request body. Errors: a stream's
`error` event raises InvocationError with the service's `error_type`; RagSagemakerEndpoint also turns
SageMaker's ModelError into InvocationError (a plain SagemakerEndpoint raises it as boto3 does).
"""

from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import ClientError
from langchain_aws.llms.sagemaker_endpoint import LLMContentHandler, SagemakerEndpoint
from langchain_core.outputs import Generation, LLMResult
from pydantic import Field

from integrations.payloads import JSON, answer_body, request_body, token_text
from sagemaker_lifecycle.client import model_error


class RagContentHandler(LLMContentHandler):
    """The prompt as `{"query": prompt, **model_kwargs}`; the answer text, or a stream line's token text."""

    content_type = JSON
    accepts = JSON

    def transform_input(self, prompt: str, model_kwargs: dict) -> bytes:
        """The /invocations body: the prompt is the question, model_kwargs the request's options."""
        return request_body(prompt, model_kwargs)

    def transform_output(self, output: Any) -> str:
        """The answer of an InvokeEndpoint Body, or the text of one line of the stream ("" but for tokens:
        SagemakerEndpoint skips empty pieces)."""
        if isinstance(output, bytes):  # one whole JSON line, joined from PayloadParts by langchain-aws
            return self.received_event(json.loads(output))
        return self.received_body(answer_body(output))["answer"]

    def received_body(self, body: dict) -> dict:
        """The decoded InvokeEndpoint answer (a hook for handlers that keep it)."""
        return body

    def received_event(self, event: dict) -> str:
        """One stream event's text (a hook for handlers that keep the events)."""
        return token_text(event)


class _Recording(RagContentHandler):
    """The handler of one call: it also keeps the answer's whole body (streamed, the `done` event)."""

    def __init__(self):
        self.body: dict = {}

    def received_body(self, body: dict) -> dict:
        self.body = body
        return body

    def received_event(self, event: dict) -> str:
        if event.get("event") == "done":
            self.body = {key: value for key, value in event.items() if key != "event"}
        return token_text(event)


class RagSagemakerEndpoint(SagemakerEndpoint):
    """SagemakerEndpoint with RagContentHandler built in; each generation's `generation_info` is the
    answer's body without `answer` (sources, usage, model, architecture, timings_ms)."""

    content_handler: RagContentHandler = Field(default_factory=RagContentHandler)

    def _generate(self, prompts: list[str], stop=None, run_manager=None, **kwargs: Any) -> LLMResult:
        generations = []
        for prompt in prompts:
            handler = _Recording()  # one per call, so that concurrent calls never share a body
            one_call = self.model_copy(update={"content_handler": handler})
            try:
                text = one_call._call(prompt, stop=stop, run_manager=run_manager, **kwargs)
            except ClientError as exc:  # ModelError (the service's status and error_type), stream errors
                raise model_error(exc, f"endpoint {self.endpoint_name}") from None
            info = {key: value for key, value in handler.body.items() if key != "answer"}
            # Streamed, the `done` event's answer is the one to keep (the grounding check may have replaced
            # the tokens' text); with stop words, the text LangChain cut.
            answer = text if stop else handler.body.get("answer", text)
            generations.append([Generation(text=answer, generation_info=info)])
        return LLMResult(generations=generations)
