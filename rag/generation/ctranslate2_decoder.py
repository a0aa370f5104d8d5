"""CTranslate2 behind the DecodeBackend interface (RAG_LLM_ENGINE=ctranslate2): one row at a time.

CTranslate2's Python API has no step call and no continuous batching. `Generator.generate_tokens` submits a
whole generation to the generator's worker threads and yields its tokens through a queue; closing the
iterator makes the next step's callback return True, which stops that generation. Several iterators at once
are not one batch: with `inter_threads=1` (one model replica) the second generation waits in CTranslate2's
queue until the first has finished (seen here: its first token came 4.0 s after it was asked for, once the
first one's 40 tokens were done), and `inter_threads=N` runs N generations side by side, each with its own
`intra_threads` threads, so N rows would split the cores without sharing a matrix product. Static
batching (`generate_batch` over several prompts) fixes the batch at its start, with one max_length and one
temperature for all of its rows.

So this backend runs one row at a time (the generator forces the engine's RAG_MAX_BATCH_SIZE to 1): a
prefill starts that request's generation and takes its first token, each decode step takes the next, and
removing the row closes the iterator, which stops CTranslate2 within a step. Everything around it stays the
BatchEngine's, unchanged: admission (429), the queue, deadlines (504), cancellation when a client leaves,
the stop rules (the same `Ending` as torch's, rag/generation/stopping.py) and the usage counts. The
generation runs ahead of this thread by the time it takes to hand a token over, so after a stop string a
token or two may be computed and dropped.

Tokenization stays ours: the prompt is the generator's token ids, given to CTranslate2 as token strings,
and it returns ids, so both engines see exactly the same prompt.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from rag.errors import ConfigError
from rag.generation.batching import DecodeBackend, Job
from rag.generation.stopping import Ending, end_of_turn_ids
from rag.runtime import release_free_memory
from rag.settings import compute_type

log = logging.getLogger(__name__)

# The per-request options rag/generation/generator.py's decoding_kwargs gives (as `model.generate` takes them).
KNOWN_OPTIONS = {"do_sample", "temperature", "top_k", "top_p", "stop"}
# What transformers samples from when neither the request nor the model's generation config says (its
# generation defaults: top-k 50, top-p 1.0), so both engines sample from the same candidates.
TRANSFORMERS_TOP_K = 50


def _first_set(*values):
    return next(value for value in values if value is not None)


@dataclass
class RowSteps:
    """One request's generation: its end rule and CTranslate2's iterator over its steps."""

    ending: Ending
    steps: object  # the generator that Generator.generate_tokens returned


def _import_ctranslate2():
    try:
        import ctranslate2
    except ImportError:
        raise ConfigError(
            "RAG_LLM_ENGINE=ctranslate2, but the ctranslate2 package is not installed; run `make setup` "
            "(it is pinned in requirements.txt), or set RAG_LLM_ENGINE=torch"
        ) from None
    return ctranslate2


def resolve_ctranslate2_device(ctranslate2, device: str) -> str:
    """RAG_DEVICE for CTranslate2, which finds CUDA devices itself (no torch import for that)."""
    gpus = ctranslate2.get_cuda_device_count()
    if device == "auto":
        return "cuda" if gpus else "cpu"
    if device == "cuda" and not gpus:
        raise ConfigError("RAG_DEVICE=cuda, but CTranslate2 sees no CUDA device; use RAG_DEVICE=auto or cpu")
    return device


class CTranslate2Decoder(DecodeBackend):
    """A CTranslate2 copy of the model (`engine_dir`, made by `make models`) with the transformers folder's
    tokenizer and generation config (`path`). Construct it on the engine's thread."""

    def __init__(self, path: str, engine_dir: str, device: str, threads: int, dtype: str, quantize: str, tokenizer):
        started = time.perf_counter()
        ctranslate2 = _import_ctranslate2()
        from transformers import AutoConfig, GenerationConfig

        self.device = resolve_ctranslate2_device(ctranslate2, device)
        self.dtype = compute_type(dtype, quantize)
        supported = sorted(ctranslate2.get_supported_compute_types(self.device))
        if self.dtype not in supported:
            raise ConfigError(
                f"RAG_LLM_DTYPE={dtype} with RAG_LLM_QUANTIZE={quantize} is CTranslate2's compute type {self.dtype}, "
                f"which this {self.device} does not support (it supports {', '.join(supported)}); change them"
            )
        # One replica (inter_threads=1): one generation at a time, with every thread (see the module docstring).
        self.model = ctranslate2.Generator(
            engine_dir, device=self.device, compute_type=self.dtype, inter_threads=1, intra_threads=threads
        )
        self.tokenizer = tokenizer
        model_config = AutoConfig.from_pretrained(path)
        try:
            self.config = GenerationConfig.from_pretrained(path)
        except OSError:  # a folder without generation_config.json: transformers derives it from config.json
            self.config = GenerationConfig.from_model_config(model_config)
        self.context_length = int(getattr(model_config, "max_position_embeddings", 2048) or 2048)
        self._row: RowSteps | None = None
        if _first_set(self.config.repetition_penalty, 1.0) != 1.0:
            # transformers penalizes the prompt's tokens too; whether CTranslate2 does when the prompt is not part
            # of the result was not checked, so answers may differ from torch's.
            log.warning("the model's repetition_penalty may not act as it does with torch: compare with `make eval`")
        log.info(
            "LLM %s loaded with CTranslate2 %s on %s (%s, %d threads, one request at a time) in %.1f s",
            engine_dir,
            ctranslate2.__version__,
            self.device,
            self.dtype,
            threads,
            time.perf_counter() - started,
        )

    def sampling(self, options: dict) -> dict:
        """One request's `model.generate` options (decoding_kwargs) as generate_tokens arguments: greedy, or
        sampling at its temperature from the same top-k and top-p that transformers would apply (the model's
        generation config, where transformers' defaults are top-k 50 and top-p 1)."""
        unknown = set(options) - KNOWN_OPTIONS
        if unknown:
            raise ValueError(f"decoding options that the CTranslate2 engine does not take: {sorted(unknown)}")
        penalty = {"repetition_penalty": _first_set(self.config.repetition_penalty, 1.0)}
        if not options.get("do_sample"):
            return {"sampling_topk": 1, **penalty}
        top_k = _first_set(options.get("top_k"), self.config.top_k, TRANSFORMERS_TOP_K)  # 0: the whole vocabulary
        top_p = _first_set(options.get("top_p"), self.config.top_p, 1.0)
        return {
            "sampling_topk": top_k,
            "sampling_topp": top_p,
            "sampling_temperature": options["temperature"],
            **penalty,
        }

    def prefill(self, job: Job) -> int:
        if self._row is not None:
            raise RuntimeError("the CTranslate2 engine runs one request at a time (max_batch_size 1)")
        options = dict(job.decoding or {})
        ending = Ending(end_of_turn_ids(self.tokenizer, self.config.eos_token_id), options.get("stop"))
        steps = self.model.generate_tokens(
            self.tokenizer.convert_ids_to_tokens(job.prompt),
            max_length=job.max_new_tokens,  # generated tokens only: the prompt is not in the result
            end_token=sorted(ending.end_ids),
            **self.sampling(options),
        )
        row = RowSteps(ending, steps)
        try:
            token = self._next(row)
        except BaseException:
            steps.close()
            raise
        job.state, self._row = ending, row
        return token

    def decode(self) -> list[int]:
        return [self._next(self._row)]

    def _next(self, row: RowSteps) -> int:
        """The row's next token id. CTranslate2 hands over the end token that stops it (its last step), as torch
        decodes it, so both count it alike; should its iterator end without one, that is reported as an end
        id, so the row ends at once instead of waiting on an iterator that has nothing more."""
        try:
            return next(row.steps).token_id
        except StopIteration:
            return min(row.ending.end_ids)

    def remove(self, rows: list[int]) -> None:
        if self._row is not None and rows:
            self._row.steps.close()  # CTranslate2 stops at its next step's callback
            self._row = None

    def ends(self, job: Job, token: int) -> bool:
        return job.state.reached(self.tokenizer, job.tokens, token)

    def idle(self) -> None:
        release_free_memory()
