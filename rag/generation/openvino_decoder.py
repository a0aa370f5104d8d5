"""OpenVINO GenAI behind the DecodeBackend interface (RAG_LLM_ENGINE=openvino): its own continuous batching.

OpenVINO GenAI's `ContinuousBatchingPipeline` is a scheduler with a step call: `add_request` queues a prompt
(our token ids) with its own generation config and returns a handle; each `step()` runs one forward pass over
every running request (the new ones' prompts, split into chunks of at most `max_num_batched_tokens`, beside
one token of every decoding row), on a paged KV cache; the handle then holds the row's new tokens. That is
the iteration-level batching the BatchEngine does for torch, done by the engine, so this backend lets rows join
a running batch (`joins_running = True`) and maps the engine's calls onto OpenVINO's:

- `prefill(job)` adds the request and steps until its first token is out. Those steps advance the other rows
  too: their tokens wait in a per-row buffer and the next `decode` hands them over first.
- `decode()` steps once when a row has no buffered token, and returns the next token of every row.
- `remove(rows)` cancels their requests: OpenVINO stops them and frees their cache blocks at its next step.

Everything around it stays the BatchEngine's: admission (429), the queue, deadlines (504), cancellation, the
stop rules (the same `Ending` as the other engines, rag/generation/stopping.py) and the usage counts.
Tokenization stays ours: the prompt is the generator's token ids, so every engine sees the same prompt.
The service drives it from a child process (rag/generation/openvino_process.py): its step() holds the GIL.

Prefix caching (RAG_LLM_PREFIX_CACHE, default on) is OpenVINO's own: cache blocks whose tokens an earlier prompt
began with are reused, so the instructions every prompt starts with are computed once.

Weights are the float32 copy `make models` made (`<model folder>/openvino/`, rag/model_files.py), computed in
float32 by default (`INFERENCE_PRECISION_HINT=f32`): OpenVINO's own default on a CPU with AMX or AVX512-BF16 is
bfloat16, which changed 29 of 145 dev answers and, served, one correct refusal (docs/performance.md).
RAG_LLM_DTYPE=bfloat16 asks for it.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from pathlib import Path

from rag.errors import ConfigError, RagError
from rag.generation.batching import DecodeBackend, Job
from rag.generation.model_config import KNOWN_OPTIONS, first_set, generation_config, sampling_limits
from rag.generation.stopping import Ending, end_of_turn_ids
from rag.runtime import check_memory_for, release_free_memory

log = logging.getLogger(__name__)

# RAG_LLM_DTYPE as OpenVINO's inference precision hint (auto: float32, as for the other engines).
PRECISION_HINTS = {"auto": "f32", "float32": "f32", "bfloat16": "bf16", "float16": "f16"}
# The KV cache's tokens per row of a full batch (RAG_LLM_KV_CACHE_TOKENS overrides the pool). Served prompts are
# 250-450 tokens and answers up to max_new_tokens, so 8 rows fit in 8,192 tokens, one whole context of the 135M model.
# A bigger pool keeps more whole prompts for OpenVINO's prefix cache, which serves a question asked *again* faster
# (8 clients asking the sample set's 73 questions 128 times: 1.50-1.53 answers/s at 1,024 tokens a row, 2.05 at
# 4,096), but under a fair load, each question asked once of a fresh server, it gained nothing: 2.80, 2.90 and 2.91
# answers/s at 4,096 against 2.90, 2.99 and 2.94 at 1,024 (three interleaved pairs, 2026-12-06, Intel Xeon), for
# 540 MiB more memory on the 135M model.
ROW_TOKENS = 1024
# Bytes a cached key or value takes, as measured on the Intel Xeon with float32 inference: the pool grew by 22.7 KB
# a token for the 135M model (11,520 values), whatever KV_CACHE_PRECISION the CPU plugin reports (u8).
KV_VALUE_BYTES = 2
# What serving adds beyond the weights and the KV cache pool (the pipeline's buffers, the CPU plugin's compiled
# kernels): measured on the 135M model, the worker grew by 230 MB more than those two over 150 requests.
RUNTIME_BYTES = 200 * 2**20
# OpenVINO's CPU plugin pages the KV cache in blocks of 32 tokens (measured: 64 blocks held a 1,471-token prompt
# and refused a 2,200-token one).
BLOCK_TOKENS = 32


def kv_cache_blocks(rows: int, context: int, tokens: int = 0) -> int:
    """The paged KV cache's size in blocks: `tokens` (RAG_LLM_KV_CACHE_TOKENS), or by default `rows` rows of
    ROW_TOKENS each, and at least one row of the whole `context` either way, so sized for served requests rather
    than `rows` whole contexts. OpenVINO takes blocks from this pool as rows need them and keeps what it took
    (measured: the process grew by about 11 MB a request until the pool was full, with prefix caching on or off),
    so the pool is what the process holds after a while of serving. A row that outgrows it takes free blocks;
    when none is left OpenVINO's scheduler preempts a row and computes it again later."""
    if tokens and tokens < context:
        raise ConfigError(
            f"RAG_LLM_KV_CACHE_TOKENS={tokens} is less than the model's context ({context} tokens), so a request "
            f"that long could never be scheduled; set it to at least {context}, or 0 for the default"
        )
    return math.ceil(max(tokens or rows * ROW_TOKENS, context) / BLOCK_TOKENS)


def kv_cache_bytes(model_config, blocks: int, value_bytes: int = KV_VALUE_BYTES) -> int:
    """What `blocks` blocks of KV cache take: keys and values of every layer's KV heads, `value_bytes` each, plus,
    for 8-bit values, a float32 scale and zero point per head and token."""
    layers = int(model_config.num_hidden_layers)
    heads = int(first_set(getattr(model_config, "num_key_value_heads", None), model_config.num_attention_heads))
    head_dim = int(
        first_set(getattr(model_config, "head_dim", None), model_config.hidden_size // model_config.num_attention_heads)
    )
    per_head = head_dim * value_bytes + (8 if value_bytes == 1 else 0)
    return 2 * layers * heads * per_head * blocks * BLOCK_TOKENS


def _import_openvino_genai():
    try:
        import openvino
        import openvino_genai
    except ImportError:
        raise ConfigError(
            "RAG_LLM_ENGINE=openvino, but the openvino-genai package is not installed; run `make setup` (it is pinned "
            "in requirements-openvino.txt), or set RAG_LLM_ENGINE=ctranslate2 or torch"
        ) from None
    return openvino, openvino_genai


class OpenVINODecoder(DecodeBackend):
    """The OpenVINO copy of the model (`engine_dir`, made by `make models`) with the transformers folder's
    tokenizer and generation config (`path`). Construct it on the engine's thread."""

    joins_running = True  # OpenVINO's own continuous batching: see the module docstring

    def __init__(
        self,
        path: str,
        engine_dir: str,
        device: str,
        threads: int,
        dtype: str,
        quantize: str,
        tokenizer,
        max_batch_size: int = 8,
        prefix_cache: bool = True,
        end_ids: list[int] | None = None,
        kv_cache_tokens: int = 0,
    ):
        started = time.perf_counter()
        if device not in ("auto", "cpu"):
            raise ConfigError(f"RAG_LLM_ENGINE=openvino runs on the CPU here; RAG_DEVICE={device} is not served by it")
        if quantize != "none":
            raise ConfigError(
                f"RAG_LLM_ENGINE=openvino serves the float32 copy only; RAG_LLM_QUANTIZE={quantize} is not offered "
                "(use RAG_LLM_ENGINE=ctranslate2 for int8)"
            )
        openvino, genai = _import_openvino_genai()
        self._openvino, self._genai = openvino, genai
        self.device, self.dtype = "cpu", PRECISION_HINTS[dtype]
        self.config, model_config, self.context_length = generation_config(path)
        weights = Path(engine_dir) / "openvino_model.bin"
        blocks = kv_cache_blocks(max_batch_size, self.context_length, kv_cache_tokens)
        kv_bytes = kv_cache_bytes(model_config, blocks)
        # The weights (the CPU plugin's own copy), the KV cache pool, which serving fills, and the run-time buffers.
        check_memory_for(
            f"the OpenVINO model {engine_dir} ({self.dtype})",
            weights.stat().st_size + kv_bytes + RUNTIME_BYTES,
            "give the container more memory, serve a smaller model, or lower RAG_LLM_KV_CACHE_TOKENS "
            f"({blocks * BLOCK_TOKENS}) or RAG_MAX_BATCH_SIZE ({max_batch_size})",
            f"its weights, its KV cache ({kv_bytes // 2**20} MiB) and its buffers once serving",
        )
        scheduler = genai.SchedulerConfig()
        scheduler.enable_prefix_caching = prefix_cache
        scheduler.max_num_seqs = max_batch_size
        scheduler.cache_size = 0  # sized by blocks instead: OpenVINO's cache_size counts whole GiB
        scheduler.num_kv_blocks = blocks
        properties = {"INFERENCE_PRECISION_HINT": self.dtype, "INFERENCE_NUM_THREADS": threads}
        self.pipeline = genai.ContinuousBatchingPipeline(engine_dir, scheduler, "CPU", properties)
        self.tokenizer = tokenizer
        if end_ids is not None:  # computed by the parent of rag.generation.openvino_process, which has the tokenizer
            self.end_ids = frozenset(end_ids)
        else:
            self.end_ids = end_of_turn_ids(tokenizer, self.config.eos_token_id) if tokenizer else frozenset()
        self._rows: list[tuple[object, deque]] = []  # each running row's handle and its tokens not yet handed over
        self._next_id = 0
        log.info(
            "LLM %s loaded with OpenVINO GenAI %s on cpu (%s, %d threads, continuous batching, prefix cache %s, "
            "KV cache %d tokens, about %.0f MiB) in %.1f s",
            engine_dir,
            genai.get_version(),
            self.dtype,
            threads,
            "on" if prefix_cache else "off",
            blocks * BLOCK_TOKENS,
            kv_bytes / 2**20,
            time.perf_counter() - started,
        )

    def generation(self, options: dict, max_new_tokens: int):
        """One request's `model.generate` options (decoding_kwargs) as OpenVINO's GenerationConfig: greedy, or
        sampling at its temperature from the top-k and top-p transformers would apply."""
        unknown = set(options) - KNOWN_OPTIONS
        if unknown:
            raise ValueError(f"decoding options that the OpenVINO engine does not take: {sorted(unknown)}")
        config = self._genai.GenerationConfig()
        config.max_new_tokens = max_new_tokens
        config.stop_token_ids = set(self.end_ids)
        config.repetition_penalty = first_set(self.config.repetition_penalty, 1.0)
        config.do_sample = bool(options.get("do_sample"))
        if config.do_sample:
            top_k, top_p = sampling_limits(options, self.config)
            config.temperature = options["temperature"]
            if top_k > 0:  # 0: the whole vocabulary, OpenVINO's own default
                config.top_k = top_k
            config.top_p = top_p
            config.rng_seed = self._next_id + 1
        return config

    def prefill(self, job: Job) -> int:
        import numpy as np

        options = dict(job.decoding or {})
        config = self.generation(options, job.max_new_tokens)
        prompt = self._openvino.Tensor(np.asarray([job.prompt], dtype=np.int64))
        handle = self.pipeline.add_request(self._next_id, prompt, config)
        self._next_id += 1
        row = (handle, deque())
        self._rows.append(row)
        try:
            first = self._next(row)
        except BaseException:
            self._rows.remove(row)
            handle.cancel()
            raise
        job.state = Ending(self.end_ids, options.get("stop"))
        return first

    def decode(self) -> list[int]:
        return [self._next(row) for row in self._rows]

    def _next(self, row) -> int:
        """The row's next token: a buffered one, else the result of more steps (which advance every row)."""
        handle, tokens = row
        status = self._genai.GenerationStatus
        while not tokens:
            if not handle.can_read():
                state = handle.get_status()
                if state == status.IGNORED:  # never scheduled: not a silent empty answer
                    raise RagError("OpenVINO did not schedule the request (its KV cache could not hold it)")
                if state != status.RUNNING:
                    return min(self.end_ids)  # OpenVINO ended the row without a token: it ends here too
                self.pipeline.step()
            self._collect()
        return tokens.popleft()

    def _collect(self) -> None:
        """Move every row's new tokens into its buffer."""
        for handle, tokens in self._rows:
            if handle.can_read():
                for output in handle.read().values():
                    tokens.extend(int(token) for token in output.generated_ids)

    def remove(self, rows: list[int]) -> None:
        leaving = set(rows)
        for row in leaving:
            handle, _ = self._rows[row]
            if handle.get_status() == self._genai.GenerationStatus.RUNNING:
                handle.cancel()  # its cache blocks are freed at the next step
        self._rows = [row for index, row in enumerate(self._rows) if index not in leaving]

    def ends(self, job: Job, token: int) -> bool:
        return job.state.reached(self.tokenizer, job.tokens, token)

    def idle(self) -> None:
        # A cancelled request keeps its KV cache blocks until OpenVINO's next step; with no row running, that step
        # only frees them.
        if self.pipeline.has_non_finished_requests():
            self.pipeline.step()
        release_free_memory()
