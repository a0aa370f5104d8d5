"""The chat-completions schema (rag/chat.py, rag/condense.py, its routes in serving/web.py) with
fakes: validation, condensation, and the response and chunk shapes. No model, no server."""

from __future__ import annotations

import dataclasses
import json
import time

import pytest

from rag.chat import MAX_CONVERSATION_CHARS, MAX_MESSAGES, ChatRequest, parse_invocation
from rag.condense import condense, names_a_subject
from rag.errors import InvalidRequest
from rag.pipeline import RagPipeline
from rag.settings import Settings
from rag.types import Passage, Retriever
from serving.web import add_invocations, create_service_app
from tests.fakes import FakeGenerator

TRAM = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "When did the Velmora Tramway open?"},
    {"role": "assistant", "content": "On 14 May 1889."},
    {"role": "user", "content": "And who designed it?"},
]


class RecordingRetriever(Retriever):
    model_name = "recording"

    def __init__(self):
        self.queries = []

    def retrieve(self, query, top_k, deadline=None):
        self.queries.append(query)
        return [Passage(1, "tramway.md", 0, 0.9, "The tramway opened in 1889.")][:top_k]


def client(strategy="keywords"):
    settings = dataclasses.replace(Settings(), chat_condense=strategy, grounding_check="off")
    retriever, generator = RecordingRetriever(), FakeGenerator()
    app = create_service_app("test", settings)
    add_invocations(app, settings, lambda: RagPipeline(retriever, generator, "monolith"))
    return app.test_client(), retriever, generator


def chat(messages=None, **fields):
    return {"messages": TRAM if messages is None else messages, **fields}


# --- condensation ---------------------------------------------------------------------------------------


def test_each_strategy_condenses_the_user_turns():
    turns = ["When did the Velmora Tramway open?", "And who designed it?"]
    assert condense(turns, "last") == "And who designed it?"
    assert condense(turns, "concat") == "When did the Velmora Tramway open? And who designed it?"
    assert condense(turns, "keywords") == "And who designed it? (Velmora Tramway open)"
    assert condense(turns, "auto") == "And who designed it? (Velmora Tramway open)"
    # A last turn that names its own subject is asked alone under auto.
    shifted = ["When did the Velmora Tramway open?", "How long is the Glass Bridge?"]
    assert condense(shifted, "auto") == "How long is the Glass Bridge?"
    assert condense(["Only one question?"], "concat") == "Only one question?"


def test_names_a_subject():
    assert names_a_subject("What is the population of Velmora?")
    assert names_a_subject("Velmora's population?")
    assert not names_a_subject("And who designed it?")
    assert not names_a_subject("OK, and how long is it?")


@pytest.mark.parametrize("strategy", ["concat", "keywords"])
def test_a_condensed_query_stays_within_the_limit_and_keeps_the_last_turn_whole(strategy):
    turns = [f"Question number {i} about subject{i} and topic{i}?" for i in range(200)] + ["And the last one?"]
    query = condense(turns, strategy, limit=300)
    assert len(query) <= 300 and "And the last one?" in query
    assert "subject199" in query and "subject0 " not in query  # the oldest turns are dropped first


def test_an_unknown_strategy_is_an_error():
    with pytest.raises(ValueError):
        condense(["a", "b"], "magic")


# --- validation -----------------------------------------------------------------------------------------


def parse(data):
    return ChatRequest.from_dict(data, Settings())


@pytest.mark.parametrize(
    "messages, says",
    [
        ([{"role": "assistant", "content": "Hello"}], "last message must be the user's"),
        ([*TRAM, {"role": "assistant", "content": "Ilse Marrow."}], "last message must be the user's"),
        ([TRAM[1], {"role": "system", "content": "Be brief."}, TRAM[3]], "system messages may only come first"),
        ([{"role": "user", "content": ""}], "messages[0].content is empty"),
        ([{"role": "user", "content": " \n\t"}], "messages[0].content is empty"),
        ([{"role": "user", "content": 42}], "must be a string (or a list of text parts), got a number"),
        ([{"role": "user", "content": None}], "got null"),
        ([{"role": "user", "content": {"text": "hi"}}], "got an object"),
        ([{"role": "user", "content": []}], "1 to 64 text parts"),
        ([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}], "only text parts"),
        ([{"role": "user", "content": [{"type": "text", "text": "  "}]}], "empty text"),
        ([{"role": "user"}], "has no content"),
        ([{"role": "tool", "content": "x"}], "role must be one of"),
        ([{"role": "user", "content": "hi", "tool_calls": []}], "not supported"),
        ([{"role": "user", "content": "x" * 4001}], "limit is 4000"),
        ([], "non-empty list"),
        ("hello", "non-empty list"),
        (["hello"], "must be an object"),
    ],
)
def test_bad_messages_are_refused_with_a_reason(messages, says):
    with pytest.raises(InvalidRequest) as caught:
        parse({"messages": messages})
    assert says in caught.value.message


@pytest.mark.parametrize(
    "fields, says",
    [
        ({"tools": []}, "tools: not supported"),
        ({"stop": ["\n"]}, "stop: not supported"),
        ({"query": "x"}, "unknown field(s): query"),
        ({"n": 2}, "'n' can only be 1"),
        ({"n": True}, "'n' can only be 1"),
        ({"logprobs": 0}, "'logprobs' can only be false"),
        ({"top_p": 0.5}, "'top_p' can only be 1"),
        ({"response_format": {"type": "json_object"}}, "'response_format' can only be"),
        ({"seed": "1"}, "'seed' must be an integer"),
        ({"max_tokens": 0}, "'max_tokens' must be between 1 and 1024"),
        ({"max_completion_tokens": 2000}, "'max_completion_tokens' must be between"),
        ({"temperature": "hot"}, "'temperature' must be a number"),
        ({"top_k": 21}, "'top_k' must be between 1 and 20"),
        ({"stream": "yes"}, "'stream' must be true or false"),
        ({"stream_options": {"include_usage": 1}}, "stream_options"),
        ({"model": 7}, "'model' must be a string"),
    ],
)
def test_bad_fields_are_refused_by_name(fields, says):
    with pytest.raises(InvalidRequest) as caught:
        parse(chat(**fields))
    assert says in caught.value.message


def test_fields_openai_clients_send_are_accepted():
    request = parse(
        chat(
            model="anything",
            max_tokens=10,
            max_completion_tokens=12,
            temperature=0.5,
            top_k=2,
            stream=True,
            stream_options={"include_usage": True},
            n=1,
            top_p=1.0,
            presence_penalty=0,
            frequency_penalty=0.0,
            logprobs=False,
            user="u-1",
            seed=7,
            response_format={"type": "text"},
        )
    )
    assert (request.max_tokens, request.temperature, request.top_k, request.stream) == (12, 0.5, 2, True)
    assert [m.role for m in request.messages] == ["system", "user", "assistant", "user"]


def test_text_parts_are_joined():
    request = parse(
        {"messages": [{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}]}
    )
    assert request.messages[0].content == "a\nb"


def test_a_huge_conversation_is_refused_before_any_message_is_read():
    turns = [{"role": "user", "content": "x"}] * 10_000
    started = time.perf_counter()
    with pytest.raises(InvalidRequest) as caught:
        parse({"messages": turns})
    assert f"the limit is {MAX_MESSAGES}" in caught.value.message
    assert time.perf_counter() - started < 0.05
    long = [{"role": "user", "content": "y" * 4000}] * (MAX_CONVERSATION_CHARS // 4000 + 1)
    with pytest.raises(InvalidRequest, match="more than 32000 characters"):
        parse({"messages": long})


def test_parse_invocation_tells_the_shapes_apart():
    settings = Settings()
    assert isinstance(parse_invocation(json.dumps(chat()).encode(), "application/json", settings), ChatRequest)
    assert parse_invocation(b'{"query": "q"}', "application/json", settings).query == "q"
    assert parse_invocation(b"q", "text/plain", settings).query == "q"


# --- routes ---------------------------------------------------------------------------------------------


def test_a_chat_request_on_invocations_gets_a_chat_completion_retrieved_on_the_condensed_query():
    test_client, retriever, generator = client("keywords")
    response = test_client.post("/invocations", json=chat(max_tokens=5))
    body = response.get_json()
    assert response.status_code == 200, body
    assert retriever.queries == ["And who designed it? (Velmora Tramway open)"]
    assert generator.seen[0][0] == retriever.queries[0]
    assert body["object"] == "chat.completion" and body["id"] == "chatcmpl-" + response.headers["X-Request-Id"]
    assert body["model"] == "fake-llm" and isinstance(body["created"], int)
    assert body["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "According to [1] tramway.md"},
            "finish_reason": "length",
        }
    ]
    assert body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"] + body["usage"]["completion_tokens"]
    assert body["sources"][0]["source"] == "tramway.md"


def test_the_query_payload_is_unchanged():
    test_client, retriever, _ = client()
    body = test_client.post("/invocations", json={"query": "When did it open?"}).get_json()
    assert body["answer"] == "According to [1] tramway.md" and "choices" not in body
    assert retriever.queries == ["When did it open?"]


def chunk_lines(response):
    return [json.loads(line) for line in response.get_data(as_text=True).splitlines() if line]


def test_the_stream_route_sends_chat_completion_chunks_as_json_lines():
    test_client, _, _ = client()
    response = test_client.post("/invocations-response-stream", json=chat())
    chunks = chunk_lines(response)
    assert response.mimetype == "application/jsonlines"
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"} and len({c["id"] for c in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    last = chunks[-1]
    assert text == last["answer"] == "According to [1] tramway.md"
    assert last["choices"][0]["finish_reason"] == "stop" and last["usage"]["total_tokens"] > 0
    assert last["sources"][0]["source"] == "tramway.md"
    assert all(c["choices"][0]["finish_reason"] is None for c in chunks[:-1])


def test_v1_chat_completions_streams_server_sent_events_and_answers_json():
    test_client, _, _ = client()
    response = test_client.post("/v1/chat/completions", json=chat(stream=True))
    assert response.mimetype == "text/event-stream"
    frames = [f for f in response.get_data(as_text=True).split("\n\n") if f]
    assert all(f.startswith("data: ") for f in frames) and frames[-1] == "data: [DONE]"
    chunks = [json.loads(f.removeprefix("data: ")) for f in frames[:-1]]
    assert chunks[-1]["answer"] == "According to [1] tramway.md"
    plain = test_client.post("/v1/chat/completions", json=chat())
    assert plain.get_json()["choices"][0]["message"]["content"] == chunks[-1]["answer"]


@pytest.mark.parametrize(
    "route, body, content_type, status, error_type",
    [
        (
            "/invocations",
            {"messages": [{"role": "assistant", "content": "hi"}]},
            "application/json",
            400,
            "invalid_request",
        ),
        ("/invocations-response-stream", {"messages": "x"}, "application/json", 400, "invalid_request"),
        ("/v1/chat/completions", {"query": "q"}, "application/json", 400, "invalid_request"),
        ("/v1/chat/completions", "hello", "text/plain", 415, "unsupported_media_type"),
        ("/v1/chat/completions", "{", "application/json", 400, "invalid_json"),
    ],
)
def test_errors_keep_the_json_shape_and_cost_no_model_time(route, body, content_type, status, error_type):
    test_client, retriever, generator = client()
    data = body if isinstance(body, str) else json.dumps(body)
    response = test_client.post(route, data=data, content_type=content_type)
    assert response.status_code == status
    assert (
        set(response.get_json()) == {"error", "error_type", "request_id"}
        and response.get_json()["error_type"] == error_type
    )
    assert retriever.queries == [] and generator.seen == []
