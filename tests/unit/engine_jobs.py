"""The embedded LLM and the requests that the engines' tests send it (tests/unit/test_ctranslate2_engine.py,
tests/unit/test_openvino_engine.py, tests/unit/test_engines_like_torch.py)."""

from __future__ import annotations

from rag.generation.batching import Job
from rag.generation.generator import decoding_kwargs
from rag.ladder import tier
from rag.models import tier_dir
from rag.types import GenerationParams

EMBEDDED_LLM_DIR = tier_dir(tier("smollm2-135m-instruct"))
GREEDY = GenerationParams(max_new_tokens=24)


def count_to_400(generator, deadline=None, length: int = 0) -> Job:
    """A request whose answer runs to over 1,000 tokens, its prompt padded to at least `length` tokens."""
    ask = "Write the numbers from 1 to 400, separated by commas."
    note = "The harbour office keeps the records of every vessel. "
    for notes in range(1000):
        messages = [{"role": "user", "content": note * notes + ask}]
        encoded = generator.tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=True)
        if len(encoded["input_ids"]) >= length:
            break
    options = decoding_kwargs(GenerationParams(max_new_tokens=1000))
    return Job(list(encoded["input_ids"]), options.pop("max_new_tokens"), deadline, options, stream=True)


def together(generator, jobs: list[Job]) -> list[Job]:
    """Send the jobs at once and wait for all of them."""
    follows = [generator.engine.run(job) for job in jobs]
    for follow in follows:
        for _ in follow:
            pass
    return jobs


def greedy(generator, question, passages, max_new_tokens=GREEDY.max_new_tokens, deadline=None) -> Job:
    """The job the generator makes for a greedy request, as the engine receives it."""
    options = decoding_kwargs(GenerationParams(max_new_tokens=max_new_tokens))
    options["stop"] = generator._job(question, passages, GREEDY, None, False).decoding["stop"]
    return Job(generator._encode(question, passages), options.pop("max_new_tokens"), deadline, options)
