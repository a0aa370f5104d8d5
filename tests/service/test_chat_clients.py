"""The chat-completions schema on real servers of both architectures, and the clients users already have:
the `openai` client on /v1/chat/completions, and langchain-aws `ChatSagemakerEndpoint` through the local
SageMaker Runtime stand-in. Each gets the same answer and sources as a plain /invocations call."""

from __future__ import annotations

import json

import boto3
import pytest
import requests
from langchain_aws.chat_models.sagemaker_endpoint import ChatSagemakerEndpoint
from openai import OpenAI

from integrations.chat import RagChatContentHandler, RagEndpointError
from sagemaker_lifecycle.local_runtime import LocalRuntime

pytestmark = pytest.mark.slow
QUESTION = "In what year did the Glass Bridge over the River Ossa open?"
MAX_TOKENS = 16
CONVERSATION = [
    {"role": "user", "content": "What river does the Glass Bridge cross?"},
    {"role": "assistant", "content": "The River Ossa."},
    {"role": "user", "content": "Who designed it?"},
]
ENDPOINT = "rag-chat-local"


@pytest.fixture(scope="module")
def plain_answers(monolith, microservices):
    """The plain /invocations answer to QUESTION, per architecture (asked once)."""
    payload = {"query": QUESTION, "max_new_tokens": MAX_TOKENS}
    return {service.url: service.invoke(payload).json() for service in (monolith, microservices)}


def test_a_conversation_gets_the_same_chat_completion_from_both_architectures(monolith, microservices):
    payload = {"messages": CONVERSATION, "max_tokens": MAX_TOKENS}
    bodies = [service.invoke(payload).json() for service in (monolith, microservices)]
    for body in bodies:
        assert body["object"] == "chat.completion", body
        assert body["choices"][0]["message"]["role"] == "assistant"
    first, second = bodies
    assert first["choices"] == second["choices"] and first["sources"] == second["sources"]
    assert first["usage"] == second["usage"]
    # The follow-up was retrieved on the earlier subject: "Who designed it?" alone finds no bridge.
    assert first["sources"][0]["source"] == "glass-bridge.md"


def test_bad_chat_input_is_a_json_400_on_both_architectures(architecture):
    cases = [
        {"messages": [*CONVERSATION, {"role": "assistant", "content": "Benedikt Sørhaug."}]},
        {"messages": [{"role": "user", "content": ""}]},
        {"messages": [{"role": "user", "content": 7}]},
        {"messages": CONVERSATION, "functions": []},
        {"messages": [{"role": "user", "content": "hi"}] * 10_000},
    ]
    for body in cases:
        for route in ("/invocations", "/invocations-response-stream", "/v1/chat/completions"):
            response = requests.post(f"{architecture.url}{route}", json=body, timeout=30)
            assert response.status_code == 400, (route, body, response.text)
            assert set(response.json()) == {"error", "error_type", "request_id"}


def test_openai_client_gets_the_plain_answer_and_sources(architecture, plain_answers):
    plain = plain_answers[architecture.url]
    client = OpenAI(base_url=f"{architecture.url}/v1", api_key="unused", max_retries=0, timeout=120)
    messages = [{"role": "user", "content": QUESTION}]
    reply = client.chat.completions.create(model="rag", messages=messages, max_tokens=MAX_TOKENS)
    assert reply.choices[0].message.content == plain["answer"]
    assert reply.model_extra["sources"] == plain["sources"]
    assert reply.usage.prompt_tokens == plain["usage"]["prompt_tokens"]

    stream = client.chat.completions.create(model="rag", messages=messages, max_tokens=MAX_TOKENS, stream=True)
    chunks = list(stream)
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks)
    last = chunks[-1].model_extra
    assert last["answer"] == plain["answer"] and last["sources"] == plain["sources"]
    assert text.strip() == plain["answer"] or plain["answer"] == "The documents do not say."
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")


@pytest.fixture(scope="module")
def runtime_client(monolith):
    """boto3's SageMaker Runtime client, pointed at the local stand-in in front of the real monolith."""
    runtime = LocalRuntime({ENDPOINT: monolith.url}).start()
    try:
        yield boto3.client(
            "sagemaker-runtime",
            region_name="us-east-1",
            endpoint_url=runtime.url,
            aws_access_key_id="local",
            aws_secret_access_key="local",
        )
    finally:
        runtime.stop()


def test_chat_sagemaker_endpoint_gets_the_plain_answer_and_sources(runtime_client, monolith, plain_answers):
    plain = plain_answers[monolith.url]
    kwargs = {"endpoint_name": ENDPOINT, "client": runtime_client, "model_kwargs": {"max_tokens": MAX_TOKENS}}
    chat = ChatSagemakerEndpoint(content_handler=RagChatContentHandler(), **kwargs)
    reply = chat.invoke(QUESTION)
    assert reply.content == plain["answer"]
    assert reply.response_metadata["sources"] == plain["sources"]
    assert reply.usage_metadata["input_tokens"] == plain["usage"]["prompt_tokens"]
    # Streamed through invoke_endpoint_with_response_stream: JSON lines re-cut into PayloadPart events.
    chunks = list(chat.stream(QUESTION))
    merged = chunks[0]
    for chunk in chunks[1:]:
        merged += chunk
    assert merged.response_metadata["answer"] == plain["answer"]
    assert merged.response_metadata["sources"] == plain["sources"]
    assert merged.content.strip() == plain["answer"] or plain["answer"] == "The documents do not say."


def test_the_content_handler_turns_an_error_line_into_a_clear_error():
    line = json.dumps({"event": "error", "error": "generation did not finish", "error_type": "timeout"})
    with pytest.raises(RagEndpointError, match="timeout: generation did not finish"):
        RagChatContentHandler().transform_output(line.encode())
