"""The local generator: a causal LM with its transformers tokenizer and chat template, behind the Generator
interface, run by one of three engines (RAG_LLM_ENGINE): torch (rag/generation/decoder.py), CTranslate2
(rag/generation/ctranslate2_decoder.py) or OpenVINO GenAI (rag/generation/openvino_decoder.py). The prompt, the
stop rules and the usage counts are the same for all."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import nullcontext

from rag.errors import ConfigError, InvalidRequest
from rag.generation.batching import BatchEngine, Job
from rag.generation.prompt import SYSTEM_PROMPT, answer_has_ended, build_messages, visible_answer
from rag.ladder import embedded_tier
from rag.models import engine_model_path, llm_model_path
from rag.runtime import single_threaded_from_now, transformers_without_torch
from rag.settings import CHARS_PER_TOKEN, LLM_ENGINES, Settings
from rag.telemetry import mark, stage, usage
from rag.types import Answer, GenerationParams, Generator, Passage

log = logging.getLogger(__name__)
# Below this, sampling is greedy decoding in all but name, and dividing the logits by it overflows
# float32 (inf, then NaN probabilities: a 500). Found by the fuzzer with temperature 6e-145.
MIN_SAMPLING_TEMPERATURE = 1e-5


def decoding_kwargs(params: GenerationParams) -> dict:
    """Every per-request decoding argument, as `model.generate` takes them; the batched decoder builds
    transformers' own logits processors from them (rag/generation/decoder.py), so one request decodes the same alone
    or in a batch."""
    kwargs: dict = {"max_new_tokens": params.max_new_tokens}
    # A temperature that small is greedy anyway, and dividing the logits by it overflows to NaN (fuzz found 6e-145).
    if params.temperature >= MIN_SAMPLING_TEMPERATURE:
        kwargs.update(do_sample=True, temperature=params.temperature)
    else:
        kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
    return kwargs


class TransformersGenerator(Generator):
    """A causal LM with its chat template, served by a BatchEngine (rag/generation/batching.py): one thread owns the
    model and decodes all admitted requests together. Request threads only encode, enqueue and wait.

    `engine` is torch, ctranslate2 or openvino; the last two load their own copy of the model (`engine_dir`, by
    default the one `make models` made inside `path`). CTranslate2 decodes static batches of up to
    `max_batch_size` requests, OpenVINO runs its own continuous batching of as many.
    """

    def __init__(
        self,
        name: str,
        path: str,
        device: str = "auto",
        threads: int = 1,
        *,
        dtype: str = "auto",
        quantize: str = "none",
        max_batch_size: int = 8,
        batch_wait_ms: int = 0,
        max_concurrent_requests: int = 16,
        system_prompt: str = SYSTEM_PROMPT,
        engine: str = "torch",
        engine_dir: str | None = None,
        without_torch: bool = False,
        prefix_cache: bool = True,
        engine_process: bool = True,
        kv_cache_tokens: int = 0,
    ):
        # `engine_process`: OpenVINO in a child process (False: in this one, for tests of the decoder itself).
        # transformers (1.5 s) and torch (3.0 s, through the decoder) are imported only by a process that
        # loads a model (measured with python -X importtime); the orchestrator and the evaluation client do not.
        # CTranslate2 needs no torch: a process that never will (`without_torch`: the LLM service) imports
        # transformers without it. The block holds the load too: the decoder, made on the engine's thread
        # before BatchEngine returns, imports transformers' configuration classes.
        with transformers_without_torch() if without_torch and engine != "torch" else nullcontext():
            from transformers import AutoTokenizer

            self.name = name
            self.system_prompt = system_prompt
            self.tokenizer = AutoTokenizer.from_pretrained(path)  # request threads encode and decode; no torch there
            # The instructions' tokens, which begin every prompt: every engine computes their state once.
            self.prefix = self._shared_prefix() if prefix_cache else []
            if engine == "ctranslate2":
                from rag.generation.ctranslate2_decoder import CTranslate2Decoder

                engine_dir = engine_dir or str(engine_model_path(path, path, engine))

                def load():
                    return CTranslate2Decoder(path, engine_dir, device, threads, dtype, quantize, self.tokenizer)

            elif engine == "openvino":
                # In a child process: OpenVINO's step() holds the GIL (rag/generation/openvino_process.py).
                from rag.generation.openvino_decoder import OpenVINODecoder
                from rag.generation.openvino_process import OpenVINOProcess

                backend = OpenVINOProcess if engine_process else OpenVINODecoder
                engine_dir = engine_dir or str(engine_model_path(path, path, engine))

                def load():
                    return backend(
                        path,
                        engine_dir,
                        device,
                        threads,
                        dtype,
                        quantize,
                        self.tokenizer,
                        max_batch_size,
                        prefix_cache,
                        kv_cache_tokens=kv_cache_tokens,
                    )

            elif engine == "torch":
                from rag.generation.decoder import TransformersDecoder

                def load():
                    return TransformersDecoder(path, device, threads, dtype, quantize, self.tokenizer)
            else:
                raise ConfigError(f"RAG_LLM_ENGINE={engine!r} is not valid; use {' or '.join(LLM_ENGINES)}")

            self.engine = BatchEngine(
                name,
                load,
                max_batch_size=max_batch_size,
                batch_wait_s=batch_wait_ms / 1000.0,
                max_concurrent=max_concurrent_requests,
            )
        decoder = self.engine.backend
        self.device, self.dtype, self.context_length = decoder.device, decoder.dtype, decoder.context_length
        if self.device == "cpu" and engine == "torch":
            single_threaded_from_now()

    @classmethod
    def from_settings(cls, settings, path: str, without_torch: bool = False) -> TransformersGenerator:
        """The generator that RAG_LLM_* and the batching settings describe, loaded from `path`."""
        model = embedded_tier(settings.llm_model)
        return cls(
            model.upstream if model is not None else settings.llm_model,  # the name answers report
            path,
            settings.device,
            settings.torch_threads,
            dtype=settings.llm_dtype,
            quantize=settings.llm_quantize,
            max_batch_size=settings.max_batch_size,
            batch_wait_ms=settings.batch_wait_ms,
            max_concurrent_requests=settings.max_concurrent_requests,
            system_prompt=(model.system_prompt if model is not None else None) or SYSTEM_PROMPT,
            engine=settings.llm_engine,
            engine_dir=str(engine_model_path(settings.llm_model, path, settings.llm_engine))
            if settings.llm_engine != "torch"
            else None,
            without_torch=without_torch,
            prefix_cache=settings.llm_prefix_cache,
            kv_cache_tokens=settings.llm_kv_cache_tokens,
        )

    def warm_up(self, prompt_chars: int, new_tokens: int = 8) -> None:
        """One request shaped like real traffic, so the first user's request is as fast as the tenth: the
        first passes at a new prompt length pay one-off kernel and memory setup (seen: 5 s instead of 2.5).
        It runs on the model's thread, like every request."""
        started = time.perf_counter()
        sentence = "The harbour office keeps the records of every vessel, its owner and its last inspection. "
        filler = (sentence * (prompt_chars // len(sentence) + 1))[:prompt_chars]
        for tokens in (2, new_tokens):  # a short pass first, then the realistic one
            self.generate(
                "Who keeps the records of every vessel?",
                [Passage(1, "warm-up.md", 0, 1.0, filler)],
                GenerationParams(max_new_tokens=tokens),
            )
        log.info("LLM warm-up with a %d-character context took %.2f s", prompt_chars, time.perf_counter() - started)

    def _encode(self, query: str, passages: list[Passage]) -> list[int]:
        messages = build_messages(query, passages, self.system_prompt)
        if self.tokenizer.chat_template:
            encoded = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=True)
        else:  # a base model without a chat template still gets the same instructions
            text = "\n\n".join(m["content"] for m in messages) + "\n\nAnswer:"
            encoded = self.tokenizer(text)
        return list(encoded["input_ids"])

    def _shared_prefix(self) -> list[int]:
        """The token ids that begin every prompt of this generator, whatever the question and the passages: the
        longest common start of prompts for questions that share no first character. With a chat template
        that is the system turn and the user turn's opening; a prompt that does not begin with them (a
        tokenizer merging across the boundary) is simply started without the cached state (`_job`)."""
        prompts = [self._encode(question, []) for question in ("x", "7", "?")]
        size = 0
        while all(size < len(prompt) for prompt in prompts) and len({prompt[size] for prompt in prompts}) == 1:
            size += 1
        return prompts[0][:size]

    def _job(self, query, passages, params: GenerationParams, deadline, stream: bool) -> Job:
        prompt = self._encode(query, passages)
        if len(prompt) + params.max_new_tokens > self.context_length:
            raise InvalidRequest(
                f"the prompt ({len(prompt)} tokens) plus max_new_tokens ({params.max_new_tokens}) exceeds the "
                f"model's context of {self.context_length} tokens; lower top_k or max_new_tokens"
            )
        options = decoding_kwargs(params)
        options["stop"] = answer_has_ended  # the decoder stops a row whose text reached a stop string
        shared = len(self.prefix) if len(prompt) > len(self.prefix) and prompt[: len(self.prefix)] == self.prefix else 0
        return Job(prompt, options.pop("max_new_tokens"), deadline, decoding=options, stream=stream, prefix=shared)

    def _answer(self, job: Job) -> Answer:
        text = visible_answer(self.tokenizer.decode(job.tokens, skip_special_tokens=True), final=True)
        return Answer(text.strip(), len(job.prompt), len(job.tokens))

    @staticmethod
    def _measured(job: Job, generation: stage) -> None:
        """The job's queue, prefill and decode as stages of the request, and its tokens and batch size."""
        for name, (started, ended) in job.stages().items():
            mark(name, started, ended, generation)
        usage(len(job.prompt), len(job.tokens), job.batch_size)

    def generate(self, query, passages, params, deadline=None):
        with stage("generation") as generation:
            job = self._job(query, passages, params, deadline, stream=False)
            for _ in self.engine.run(job):
                pass
            self._measured(job, generation)
            return self._answer(job)

    def stream(self, query, passages, params, deadline=None):
        generation = stage("generation").begin()  # it ends with the stream, after this returns
        try:
            job = self._job(query, passages, params, deadline, stream=True)
            tokens = self.engine.run(job)  # admitted now: a 429 comes before any byte of the stream
        except BaseException as exc:
            generation.end(exc)
            raise
        return self._pieces(job, tokens, generation)

    def _pieces(self, job: Job, tokens, generation: stage) -> Iterator[str | Answer]:
        ids: list[int] = []
        sent = ""
        try:
            try:
                for token in tokens:
                    ids.append(token)
                    text = visible_answer(self.tokenizer.decode(ids, skip_special_tokens=True), final=False)
                    # Hold back a piece that ends inside a multi-byte character, or that would rewrite text
                    # already sent, or could still be the start of a stop string; the next token settles it.
                    if text.startswith(sent) and len(text) > len(sent) and not text.endswith("\ufffd"):
                        yield text[len(sent) :]
                        sent = text
            finally:
                tokens.close()  # the consumer stopped early (client gone): the row leaves the batch
            rest = visible_answer(self.tokenizer.decode(ids, skip_special_tokens=True), final=True)
            if rest.startswith(sent) and len(rest) > len(sent):
                yield rest[len(sent) :]
            self._measured(job, generation)
        except BaseException as exc:
            generation.end(exc)
            raise
        generation.end()
        yield self._answer(job)


def load_generator(settings: Settings, without_torch: bool = False) -> Generator:
    """The configured causal LM (the embedded one is converted from GGUF on first use). `without_torch`: this
    process loads nothing else (the LLM service), so a CTranslate2 model loads transformers without torch."""
    generator = TransformersGenerator.from_settings(settings, llm_model_path(settings.llm_model), without_torch)
    generator.warm_up(warm_up_context_chars(settings))
    return generator


def warm_up_context_chars(settings: Settings) -> int:
    """How much passage text a typical request puts in the prompt, under these settings."""
    if settings.context_focus == "off":
        return settings.top_k * settings.chunk_size
    return settings.context_max_tokens * CHARS_PER_TOKEN
