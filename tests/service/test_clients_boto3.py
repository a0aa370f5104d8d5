"""docs/clients.md's plain boto3 examples, run unchanged through the SageMaker Runtime stand-in in front of
the real monolith: the same answer and sources as a plain /invocations call, errors with the service's
status and error_type, and JSON lines reassembled from PayloadParts cut anywhere."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.service.clients_support import (
    AWKWARD_PARTS,
    ENDPOINT,
    OPTIONS,
    QUESTION,
    RecordingClient,
    examples,
    load_example,
    runtime_env,
)
from tests.support import child_env

pytestmark = pytest.mark.slow
INVOKE, STREAM = "boto3-invoke-endpoint", "boto3-invoke-endpoint-with-response-stream"


def source_lines(result: dict) -> list[str]:
    """The lines the examples print for the sources."""
    return [f"{s['rank']}. {s['source']}#{s['chunk']} ({s['score']:.3f})" for s in result["sources"]]


def run_program(name: str, runtime, tmp_path) -> str:
    program = tmp_path / f"{name}.py"
    program.write_text(examples()[name])
    finished = subprocess.run(
        [sys.executable, str(program), ENDPOINT, QUESTION],
        env=child_env(**runtime_env(runtime.url)),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert finished.returncode == 0, finished.stderr[-2000:]
    return finished.stdout


def test_both_examples_as_programs_print_the_plain_answer(runtime_stand_in, plain_answer, tmp_path):
    printed = run_program(INVOKE, runtime_stand_in, tmp_path)
    assert printed.splitlines() == [*plain_answer["answer"].splitlines(), *source_lines(plain_answer)]
    printed = run_program(STREAM, runtime_stand_in, tmp_path)
    sources = "\n" + "\n".join(source_lines(plain_answer)) + "\n"
    assert printed.endswith(sources), printed
    assert printed[: -len(sources)].strip() == plain_answer["answer"]  # the tokens, as they were printed


def test_stream_lines_cut_anywhere_are_reassembled(aws_env, plain_answer):
    """PayloadParts of 1 to 7 bytes, so that lines and UTF-8 characters are cut: the example still yields one
    event per line the container sent, and they add up to the plain answer."""
    example = load_example(STREAM)
    recording = example["runtime"] = RecordingClient(example["runtime"])
    aws_env.part_sizes = AWKWARD_PARTS
    events = list(example["ask_streaming"](ENDPOINT, QUESTION, **OPTIONS))

    assert events[0] == {"event": "sources", "sources": plain_answer["sources"]}
    tokens = [event["text"] for event in events[1:-1] if event["event"] == "token"]
    assert len(tokens) == len(events) - 2 >= 2 and "".join(tokens).strip() == plain_answer["answer"]
    done = events[-1]
    assert done["event"] == "done" and (done["answer"], done["sources"]) == (
        plain_answer["answer"],
        plain_answer["sources"],
    )
    parts = recording.parts
    # Every size is used, cycled; the last part is what was left (its length depends on the body's, whose
    # timings vary from run to run).
    assert {len(part) for part in parts[:-1]} == set(AWKWARD_PARTS) and 1 <= len(parts[-1]) <= max(AWKWARD_PARTS)
    assert any(not ends_whole(part) for part in parts), "no part ended inside a UTF-8 character"
    assert b"".join(parts).count(b"\n") == len(events) < len(parts)


def ends_whole(part: bytes) -> bool:
    try:
        part.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


def test_invoke_example_returns_the_plain_answer_and_raises_the_services_errors(aws_env, plain_answer):
    ask = load_example(INVOKE)
    result = ask["ask"](ENDPOINT, QUESTION, **OPTIONS)
    assert (result["answer"], result["sources"]) == (plain_answer["answer"], plain_answer["sources"])

    with pytest.raises(ask["EndpointError"]) as refused:
        ask["ask"](ENDPOINT, "   ")
    assert (refused.value.status, refused.value.error_type) == (400, "invalid_request")
    with pytest.raises(ask["EndpointError"]) as refused:
        ask["ask"](ENDPOINT, QUESTION, top_k=99)
    assert (refused.value.status, refused.value.error_type) == (400, "invalid_request")
    assert "top_k" in refused.value.message


def test_stream_example_raises_refusals_and_errors_mid_stream(aws_env):
    example = load_example(STREAM)
    with pytest.raises(example["StreamError"], match=r"^400: .*invalid_request"):
        list(example["ask_streaming"](ENDPOINT, ""))
    # A deadline of 0.2 s, sent as SageMaker sends it (a custom attribute): the stream ends with an error
    # event, or, when the deadline passed before streaming began, it is refused with a 504.
    example["runtime"] = RecordingClient(example["runtime"], custom_attributes="X-Rag-Timeout-S=0.2")
    with pytest.raises(example["StreamError"], match=r"^(timeout: |504: .*timeout)"):
        list(example["ask_streaming"](ENDPOINT, QUESTION, max_new_tokens=1024))
