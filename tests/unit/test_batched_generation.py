"""Batched generation with the real embedded LLM: a batched answer is the answer the request gets alone
(and the one `model.generate` gives), whatever else shares the batch."""

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from rag.errors import RequestTimeout
from rag.generation.batching import Job
from rag.generation.generator import TransformersGenerator, decoding_kwargs
from rag.generation.prompt import answer_has_ended, build_messages, visible_answer
from rag.ladder import tier
from rag.models import llm_model_path, tier_dir
from rag.types import GenerationParams
from tests.support import sample_prompts

EMBEDDED_LLM = "embedded:smollm2-135m-instruct"
EMBEDDED_LLM_DIR = tier_dir(tier("smollm2-135m-instruct"))

pytestmark = pytest.mark.slow
GREEDY = GenerationParams(max_new_tokens=20)


@pytest.fixture(scope="module")
def generator():
    # One thread: under a loaded CI machine, two threads per generation can be ten times slower.
    generator = TransformersGenerator(
        str(EMBEDDED_LLM_DIR), llm_model_path(EMBEDDED_LLM), "cpu", threads=1, max_batch_size=8
    )
    yield generator
    generator.engine.close()


@pytest.fixture(scope="module")
def prompts():
    return sample_prompts(5)


@pytest.fixture(scope="module")
def alone(generator, prompts):
    """Each question's answer when it has the model to itself."""
    return [generator.generate(question, passages, GREEDY) for question, passages in prompts]


def together(generator, calls):
    """Run the calls at once, so that they share decode steps; returns their results (or exceptions)."""
    before = (generator.engine.steps, generator.engine.rows_decoded)

    def run(call):
        try:
            return call()
        except Exception as exc:  # noqa: BLE001 - returned for the test to inspect
            return exc

    with ThreadPoolExecutor(len(calls)) as pool:
        results = list(pool.map(run, calls))
    steps = generator.engine.steps - before[0]
    rows = generator.engine.rows_decoded - before[1]
    return results, rows / max(1, steps)


def test_batched_greedy_answers_equal_unbatched_ones(generator, prompts, alone):
    results, mean_batch = together(generator, [lambda q=q, p=p: generator.generate(q, p, GREEDY) for q, p in prompts])
    assert mean_batch > 1.5, "the requests did not share decode steps"
    assert [r.text for r in results] == [a.text for a in alone]
    assert [r.usage() for r in results] == [a.usage() for a in alone]


def test_an_answer_alone_equals_model_generate(generator, prompts, alone):
    model, tokenizer = generator.engine.backend.model, generator.tokenizer
    for (question, passages), answer in list(zip(prompts, alone))[:2]:
        encoded = tokenizer.apply_chat_template(
            build_messages(question, passages), add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        with torch.inference_mode():
            output = model.generate(**encoded, **decoding_kwargs(GREEDY), pad_token_id=tokenizer.eos_token_id)
        expected = tokenizer.decode(output[0, encoded["input_ids"].shape[1] :], skip_special_tokens=True)
        # generate() runs on past a stop string, to EOS; the answer is that text up to its first stop string.
        assert answer.text == visible_answer(expected, final=True).strip()


def test_the_instructions_cache_is_computed_once_and_changes_no_answer(generator, prompts, alone):
    backend = generator.engine.backend
    state = backend._prefix_state  # the answers above made it from the instructions every prompt begins with
    assert generator.prefix and backend._prefix == generator.prefix
    question, passages = prompts[0]
    assert generator.generate(question, passages, GREEDY) == alone[0]
    # Kept, not recomputed, and never extended by the rows that started from a copy of it.
    assert backend._prefix_state is state and state.get_seq_length() == len(generator.prefix)
    whole = TransformersGenerator(
        str(EMBEDDED_LLM_DIR), llm_model_path(EMBEDDED_LLM), "cpu", threads=1, prefix_cache=False
    )
    try:
        assert whole.prefix == [] and whole.engine.backend._prefix_state is None
        # Two prompts show it (CI's budget: each answer costs seconds at one thread).
        assert [whole.generate(question, passages, GREEDY) for question, passages in prompts[:2]] == alone[:2]
    finally:
        whole.engine.close()


def test_a_row_ends_at_a_stop_string_or_an_end_of_turn_token(generator):
    backend, tokenizer = generator.engine.backend, generator.tokenizer
    state = backend.decoding(
        {"do_sample": False, "temperature": None, "top_p": None, "top_k": None, "stop": answer_has_ended}
    )
    assert tokenizer.convert_tokens_to_ids("<|im_end|>") in state.ending.end_ids
    job = Job([1, 2, 3], 20, None, decoding=None)
    job.state = state
    ran_on = tokenizer("Ilse Marren of Velmora\n\nQuestion: Who was the first president?")["input_ids"]
    ended = []
    for token in ran_on:
        job.tokens.append(token)
        ended.append(backend.ends(job, token))
    first = ended.index(True)
    assert tokenizer.decode(ran_on[:first]).strip() == "Ilse Marren of Velmora"


def test_sampling_draws_as_model_generate_does(generator, prompts):
    question, passages = prompts[0]
    params = GenerationParams(max_new_tokens=12, temperature=0.8)
    torch.manual_seed(7)
    ours = generator.generate(question, passages, params).text
    encoded = generator.tokenizer.apply_chat_template(
        build_messages(question, passages), add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    torch.manual_seed(7)
    with torch.inference_mode():
        output = generator.engine.backend.model.generate(**encoded, **decoding_kwargs(params), pad_token_id=2)
    assert (
        ours == generator.tokenizer.decode(output[0, encoded["input_ids"].shape[1] :], skip_special_tokens=True).strip()
    )


def test_different_lengths_and_temperatures_share_a_batch(generator, prompts, alone):
    (q0, p0), (q1, p1), (q2, p2) = prompts[:3]
    results, mean_batch = together(
        generator,
        [
            lambda: generator.generate(q0, p0, GenerationParams(max_new_tokens=6)),
            lambda: generator.generate(q1, p1, GenerationParams(max_new_tokens=16, temperature=1.0)),
            lambda: generator.generate(q2, p2, GREEDY),
        ],
    )
    assert mean_batch > 1.2
    assert results[0].completion_tokens <= 6 and alone[0].text.startswith(results[0].text)
    assert 1 <= results[1].completion_tokens <= 16 and results[1].text
    assert results[2] == alone[2]


def test_a_deadline_inside_a_batch_ends_that_request_only(generator, prompts, alone):
    (q0, p0), (q1, p1) = prompts[:2]
    started = time.monotonic()
    results, _ = together(
        generator,
        [
            lambda: generator.generate(q0, p0, GREEDY),
            lambda: generator.generate(q1, p1, GenerationParams(max_new_tokens=1000), time.monotonic() + 2.0),
        ],
    )
    assert isinstance(results[1], RequestTimeout)
    assert results[0] == alone[0]
    assert generator.engine.admission.in_flight == 0
    assert time.monotonic() - started < 300


def test_streamed_pieces_make_the_answer(generator, prompts, alone):
    question, passages = prompts[3]
    pieces = list(generator.stream(question, passages, GREEDY))
    assert pieces[-1] == alone[3]
    text = [piece for piece in pieces[:-1]]
    assert len(text) >= 2 and "".join(text).strip() == alone[3].text


@pytest.mark.parametrize("dtype, quantize", [("bfloat16", "none"), ("float32", "int8")])
def test_faster_cpu_options_load_and_answer(prompts, dtype, quantize):
    generator = TransformersGenerator(
        str(EMBEDDED_LLM_DIR), llm_model_path(EMBEDDED_LLM), "cpu", threads=1, dtype=dtype, quantize=quantize
    )
    try:
        question, passages = prompts[0]
        answer = generator.generate(question, passages, GenerationParams(max_new_tokens=8))
        assert answer.completion_tokens >= 1 and answer.text
        assert generator.dtype == getattr(torch, dtype)
        from torch.ao.nn.quantized.dynamic import Linear as Int8Linear

        quantized = any(isinstance(module, Int8Linear) for module in generator.engine.backend.model.modules())
        assert quantized == (quantize == "int8")
    finally:
        generator.engine.close()
