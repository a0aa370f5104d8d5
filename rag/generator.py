"""Generators answer a question from numbered passages. The real one wraps a transformers causal LM."""
from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Iterator

from rag.errors import InvalidRequest, RequestTimeout
from rag.grounding import REFUSAL
from rag.index import Passage

log = logging.getLogger(__name__)
# Below this, sampling is greedy decoding in all but name, and dividing the logits by it overflows
# float32 (inf, then NaN probabilities: a 500). Found by the fuzzer with temperature 6e-145.
MIN_SAMPLING_TEMPERATURE = 1e-5

# Chosen with `make eval` on the sample corpus's 73 questions (docs/evaluation.md), with focused context:
# this wording answered 33 of 60 where the previous one ("Passages: [1] (source: ...)", quote the passages)
# answered 26. Numbered passages with their file names made the 135M model recite "[2] (source: x.md)";
# the question stated before and after the context kept it on the question; a fixed refusal sentence is
# one the grounding check and `make eval` recognise.
SYSTEM_PROMPT = (
    "Answer the question using only the context below. Give the exact name, number or date from the context "
    f"in one short sentence. If the context does not contain the answer, reply exactly: {REFUSAL}"
)


@dataclass(frozen=True)
class GenerationParams:
    max_new_tokens: int = 128
    temperature: float = 0.0  # 0 means greedy decoding: the same input always gives the same answer


@dataclass(frozen=True)
class Answer:
    text: str
    prompt_tokens: int
    completion_tokens: int

    def usage(self) -> dict:
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens}


def build_messages(query: str, passages: list[Passage]) -> list[dict]:
    """The grounded chat prompt: instructions, then the question, the passages' text and the question again."""
    context = "\n\n".join(p.text for p in passages) or "(nothing was found)"
    user = f"Question: {query}\n\nContext:\n{context}\n\nQuestion: {query}"
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]


class Generator(ABC):
    """Subclasses implement `generate`; `deadline` is a time.monotonic() value or None."""

    name: str = "generator"

    @abstractmethod
    def generate(self, query: str, passages: list[Passage], params: GenerationParams,
                 deadline: float | None = None) -> Answer:
        """Answer `query` from `passages`."""

    def stream(self, query: str, passages: list[Passage], params: GenerationParams,
               deadline: float | None = None) -> Iterator["str | Answer"]:
        """Text pieces as they are generated, then the final Answer. By default, one piece."""
        answer = self.generate(query, passages, params, deadline)
        yield answer.text
        yield answer


def resolve_device(device: str) -> str:
    """`auto` becomes cuda when a GPU is visible, else cpu."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        from rag.errors import ConfigError

        raise ConfigError("RAG_DEVICE=cuda, but torch sees no CUDA device; use RAG_DEVICE=auto or cpu")
    return device


class TransformersGenerator(Generator):
    """A causal LM with its chat template. bf16 on CUDA, float32 on CPU; one generation at a time."""

    def __init__(self, name: str, path: str, device: str = "auto", threads: int = 1):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self._torch = torch
        torch.set_num_threads(threads)
        self.name = name
        self.device = resolve_device(device)
        dtype = torch.bfloat16 if self.device == "cuda" else torch.float32
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(self.device).eval()
        self.context_length = int(getattr(self.model.config, "max_position_embeddings", 2048) or 2048)
        # One generation at a time: concurrent generate() calls on one CPU only fight over the cores,
        # and on a GPU they would need batching, which this service does not do.
        self._lock = threading.Lock()
        eos = self.model.generation_config.eos_token_id
        self._eos_ids = set(eos if isinstance(eos, list) else [eos]) | {self.tokenizer.eos_token_id}
        log.info("LLM %s loaded on %s (%s, %d threads)", name, self.device, dtype, threads)

    def warm_up(self, prompt_chars: int, new_tokens: int = 8) -> None:
        """One request shaped like real traffic, so the first user's request is as fast as the tenth: the
        first passes at a new prompt length pay one-off kernel and memory setup (seen: 5 s instead of 2.5)."""
        started = time.perf_counter()
        sentence = "The harbour office keeps the records of every vessel, its owner and its last inspection. "
        filler = (sentence * (prompt_chars // len(sentence) + 1))[:prompt_chars]
        for tokens in (2, new_tokens):  # a short pass first, then the realistic one
            self.generate("Who keeps the records of every vessel?", [Passage(1, "warm-up.md", 0, 1.0, filler)],
                          GenerationParams(max_new_tokens=tokens))
        log.info("LLM warm-up with a %d-character context took %.2f s", prompt_chars, time.perf_counter() - started)

    def _encode(self, query: str, passages: list[Passage]):
        messages = build_messages(query, passages)
        if self.tokenizer.chat_template:
            encoded = self.tokenizer.apply_chat_template(
                messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
        else:  # a base model without a chat template still gets the same instructions
            text = "\n\n".join(m["content"] for m in messages) + "\n\nAnswer:"
            encoded = self.tokenizer(text, return_tensors="pt")
        return {key: value.to(self.device) for key, value in encoded.items()}

    def generate(self, query, passages, params, deadline=None, streamer=None):
        torch = self._torch
        inputs = self._encode(query, passages)
        prompt_tokens = int(inputs["input_ids"].shape[1])
        if prompt_tokens + params.max_new_tokens > self.context_length:
            raise InvalidRequest(
                f"the prompt ({prompt_tokens} tokens) plus max_new_tokens ({params.max_new_tokens}) exceeds the "
                f"model's context of {self.context_length} tokens; lower top_k or max_new_tokens")
        wait = None if deadline is None else max(0.0, deadline - time.monotonic())
        if not self._lock.acquire(timeout=-1 if wait is None else wait):
            raise RequestTimeout("the request timed out waiting for the model; retry, or lower the load")
        try:
            kwargs = dict(max_new_tokens=params.max_new_tokens, pad_token_id=self.tokenizer.eos_token_id)
            if params.temperature >= MIN_SAMPLING_TEMPERATURE:
                kwargs.update(do_sample=True, temperature=params.temperature)
            else:
                kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
            if deadline is not None:
                # generate() checks max_time after each token, so a slow request stops on time.
                kwargs["max_time"] = max(0.01, deadline - time.monotonic())
            if streamer is not None:
                kwargs["streamer"] = streamer
            with torch.inference_mode():
                output = self.model.generate(**inputs, **kwargs)
        finally:
            self._lock.release()
        new_tokens = output[0, prompt_tokens:]
        completion = int(new_tokens.shape[0])
        # Generation ends at an end-of-sequence token or at max_new_tokens; anything shorter was cut by max_time.
        finished = completion >= params.max_new_tokens or (completion > 0 and int(new_tokens[-1]) in self._eos_ids)
        if deadline is not None and not finished:
            raise RequestTimeout("generation did not finish before the request deadline (RAG_REQUEST_TIMEOUT); "
                                 "lower max_new_tokens or raise the timeout")
        text = self.tokenizer.decode(new_tokens, skip_special_tokens=True).strip()
        return Answer(text, prompt_tokens, completion)

    def stream(self, query, passages, params, deadline=None):
        from transformers import TextIteratorStreamer

        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        outcome: dict = {}

        def run():
            try:
                outcome["answer"] = self.generate(query, passages, params, deadline, streamer)
            except BaseException as exc:  # noqa: BLE001 - handed to the consumer below
                outcome["error"] = exc
                streamer.end()  # unblock the consumer even if generate() failed before streaming

        worker = threading.Thread(target=run, name="generate-stream", daemon=True)
        worker.start()
        for text in streamer:
            if text:
                yield text
        worker.join()
        if "error" in outcome:
            raise outcome["error"]
        yield outcome["answer"]
