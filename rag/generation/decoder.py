"""The model's side of batched generation: a causal LM, the KV cache of the running rows, one step.

Only the engine's thread (rag/generation/batching.py) calls this. Each request is prefilled on its own, exactly as an
unbatched `model.generate` would (batching prefills gains nothing on a CPU: measured 1.01x for four
500-token prompts), and its first token is chosen; the instructions that begin every prompt (`Job.prefix`)
are forwarded once, and each prefill continues a copy of their cache. It then joins the running rows: their
caches are aligned on the right, a shorter one is padded on the left and masked, and each row keeps its own
position ids, so every row attends to exactly its own tokens. A leaving row is cut out, and padding
columns that no remaining row needs are trimmed.

Per-request decoding (greedy, temperature, and whatever else `decoding_kwargs` in rag/generation/generator.py
asks for) goes through transformers' own logits processors, built from the same options
`model.generate` would take, so a batched row decodes as that request alone would.
"""

from __future__ import annotations

import copy
import logging
import time
import warnings
from dataclasses import dataclass

import torch

from rag.errors import ConfigError
from rag.generation.batching import DecodeBackend, Job
from rag.generation.stopping import Ending, end_of_turn_ids
from rag.runtime import release_free_memory, resolve_device

log = logging.getLogger(__name__)


def native_bfloat16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX); elsewhere it is emulated, and slow."""
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, probe, lambda: False)() for probe in probes)


def choose_dtype(requested: str, device: str) -> torch.dtype:
    """RAG_LLM_DTYPE on `device`. `auto` is float32 on CPU and CUDA alike: for the embedded model bfloat16
    was slower on both (2.1x on this project's CPU, 1.2-1.9x on an H200), lost a sample-set answer on the
    GPU, and changed about one greedy answer in five when requests were batched together (float32 changed
    none). docs/performance.md has the measurements; bfloat16 stays an explicit choice for large models."""
    if requested == "auto":
        return torch.float32
    dtype = getattr(torch, requested)
    if device == "cpu" and dtype == torch.bfloat16 and not native_bfloat16():
        log.warning(
            "RAG_LLM_DTYPE=bfloat16 on a CPU without AVX512-BF16 or AMX: it is emulated and slower than float32"
        )
    if device == "cpu" and dtype == torch.float16:
        raise ConfigError("RAG_LLM_DTYPE=float16 is not supported on a CPU; use float32 or bfloat16")
    return dtype


def quantize_int8(model: torch.nn.Module) -> torch.nn.Module:
    """Dynamic int8 quantization of every Linear layer (weights int8, activations quantized per step)."""
    from torch.ao.quantization import quantize_dynamic

    with warnings.catch_warnings():
        # torch.ao's quantized tensors are deprecated in favour of torchao, which has no comparable
        # CPU kernel without torch.compile yet; this path still runs fbgemm's int8 GEMMs.
        warnings.simplefilter("ignore")
        return quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8, inplace=True)


@dataclass
class RowDecoding:
    """How one request picks its tokens: greedy (no processors) or transformers' processors, then sampling."""

    sample: bool
    processors: object  # a transformers LogitsProcessorList, empty for plain greedy
    ending: Ending  # its end-of-turn ids and stop rule (rag/generation/stopping.py)


class TransformersDecoder(DecodeBackend):
    """A transformers causal LM behind the DecodeBackend interface. Construct it on the engine's thread."""

    def __init__(
        self, path: str, device: str, threads: int, dtype: str = "auto", quantize: str = "none", tokenizer=None
    ):
        from transformers import AutoModelForCausalLM

        started = time.perf_counter()
        torch.set_num_threads(threads)
        torch.ones(4).add_(1)  # fixes this thread's OpenMP team size now (torch sizes a thread's team lazily)
        self.device = resolve_device(device)
        self.dtype = choose_dtype(dtype, self.device)
        if quantize == "int8" and self.device != "cpu":
            raise ConfigError("RAG_LLM_QUANTIZE=int8 is a CPU option; on CUDA use RAG_LLM_QUANTIZE=none")
        model = AutoModelForCausalLM.from_pretrained(path, dtype=self.dtype).to(self.device).eval()
        self.model = quantize_int8(model) if quantize == "int8" else model
        self.quantize = quantize
        self.tokenizer = tokenizer
        self.context_length = int(getattr(model.config, "max_position_embeddings", 2048) or 2048)
        self._cache = None  # transformers DynamicCache of the running rows, [rows, heads, columns, dim] per layer
        self._mask = None  # [rows, columns] long: 1 where a row has a token, 0 for its left padding
        self._positions = None  # [rows] the next position id of each row
        self._last = None  # [rows] the last token of each row: the input of the next step
        self._jobs: list[Job] = []  # the running rows, in order; job.state holds each one's RowDecoding
        self._prefix: list[int] = []  # the shared prompt start whose KV cache `_prefix_state` holds
        self._prefix_state = None
        log.info(
            "LLM %s loaded on %s (%s%s, %d threads) in %.1f s",
            path,
            self.device,
            self.dtype,
            ", int8 Linear layers" if quantize == "int8" else "",
            threads,
            time.perf_counter() - started,
        )

    @property
    def rows(self) -> int:
        """How many rows are running."""
        return len(self._jobs)

    @property
    def columns(self) -> int:
        """The width of the running rows' attention (their longest, left-padded sequence)."""
        return 0 if self._mask is None else int(self._mask.shape[1])

    @property
    def padded(self) -> bool:
        """Whether a decode step needs the padding mask (rows of different lengths)."""
        return self._mask is not None and not bool(self._mask.all())

    def decoding(self, options: dict) -> RowDecoding:
        """Build one request's decoding from `model.generate` keyword arguments (not max_new_tokens), plus
        `stop`: a function of the decoded text that says when the answer has ended."""
        options = dict(options)
        stop = options.pop("stop", None)
        config, unused = self.model._prepare_generation_config(None, **options)
        if unused:
            raise ValueError(f"decoding options that generate() would not use: {sorted(unused)}")
        processors = self.model._get_logits_processor(generation_config=config, device=self.device, model_kwargs={})
        ending = Ending(end_of_turn_ids(self.tokenizer, config.eos_token_id), stop)
        return RowDecoding(bool(config.do_sample), processors, ending)

    def prefill(self, job: Job) -> int:
        job.state = self.decoding(job.decoding or {})
        shared = job.prefix  # the instructions every prompt begins with: their cache is computed once
        ids = torch.tensor([job.prompt[shared:]], device=self.device)
        with torch.inference_mode():
            cache = self._prefix_cache(job.prompt[:shared]) if shared else None
            out = self.model(input_ids=ids, past_key_values=cache, use_cache=True, logits_to_keep=1)
            token = self._choose(job.state, job.prompt, out.logits[0, -1])
        self._join(out.past_key_values, len(job.prompt), token)
        self._jobs.append(job)
        return token

    def decode(self) -> list[int]:
        rows = len(self._jobs)
        mask = torch.cat([self._mask, self._mask.new_ones(rows, 1)], dim=1)
        with torch.inference_mode():
            out = self.model(
                input_ids=self._last[:, None],
                position_ids=self._positions[:, None],
                # no padding: no mask, as for one request alone (the causal-only fast path)
                attention_mask=None if bool(mask.all()) else mask,
                past_key_values=self._cache,
                use_cache=True,
                logits_to_keep=1,
            )
            logits = out.logits[:, -1]
            tokens = self._choose_all(logits)
        self._mask = mask
        self._positions = self._positions + 1
        self._last = torch.tensor(tokens, device=self.device)
        return tokens

    def remove(self, rows: list[int]) -> None:
        gone = set(rows)
        keep = [row for row in range(len(self._jobs)) if row not in gone]
        if not keep:
            self._cache = self._mask = self._positions = self._last = None
            self._jobs = []
            return
        index = torch.tensor(keep, device=self.device)
        self._mask = self._mask.index_select(0, index)
        # Columns that every remaining row pads can go: the rows are aligned on the right.
        trim = int(self._mask.shape[1] - self._mask.sum(dim=1).max())
        self._mask = self._mask[:, trim:]
        for layer in self._cache.layers:
            layer.keys = layer.keys.index_select(0, index)[:, :, trim:]
            layer.values = layer.values.index_select(0, index)[:, :, trim:]
        self._positions = self._positions.index_select(0, index)
        self._last = self._last.index_select(0, index)
        self._jobs = [self._jobs[row] for row in keep]

    def ends(self, job: Job, token: int) -> bool:
        return job.state.ending.reached(self.tokenizer, job.tokens, token)

    def idle(self) -> None:
        release_free_memory()

    def _prefix_cache(self, prefix: list[int]):
        """A copy of the KV cache of `prefix` (computed on its first use, then kept: one per model, since a
        generator's prompts share one), for a row to extend with the rest of its prompt."""
        if self._prefix != prefix:
            out = self.model(input_ids=torch.tensor([prefix], device=self.device), use_cache=True, logits_to_keep=1)
            self._prefix, self._prefix_state = list(prefix), out.past_key_values
        return copy.deepcopy(self._prefix_state)

    def _join(self, cache, length: int, token: int) -> None:
        """Add a prefilled row to the running rows, padding on the left whichever is shorter."""
        last = torch.tensor([token], device=self.device)
        position = torch.tensor([length], device=self.device)
        mask = torch.ones(1, length, dtype=torch.long, device=self.device)
        if self._cache is None:
            self._cache, self._mask, self._positions, self._last = cache, mask, position, last
            return
        columns = self._mask.shape[1]
        pad_old, pad_new = max(0, length - columns), max(0, columns - length)
        self._mask = torch.cat(
            [torch.nn.functional.pad(self._mask, (pad_old, 0)), torch.nn.functional.pad(mask, (pad_new, 0))]
        )
        for mine, theirs in zip(self._cache.layers, cache.layers):
            # keys and values are [rows, heads, columns, dim]: pad the columns on the left
            mine.keys = torch.cat([_pad_left(mine.keys, pad_old), _pad_left(theirs.keys, pad_new)])
            mine.values = torch.cat([_pad_left(mine.values, pad_old), _pad_left(theirs.values, pad_new)])
        self._positions = torch.cat([self._positions, position])
        self._last = torch.cat([self._last, last])

    def _choose(self, row: RowDecoding, ids: list[int], logits: torch.Tensor) -> int:
        scores = logits[None].float()
        if len(row.processors):
            scores = row.processors(torch.tensor([ids], device=self.device), scores)
        if row.sample:
            return int(torch.multinomial(torch.softmax(scores, dim=-1), num_samples=1)[0, 0])
        return int(scores.argmax(dim=-1)[0])

    def _choose_all(self, logits: torch.Tensor) -> list[int]:
        if not any(job.state.sample or len(job.state.processors) for job in self._jobs):
            return logits.argmax(dim=-1).tolist()  # all greedy: one argmax for the whole batch
        return [self._choose(job.state, job.prompt + job.tokens, logits[row]) for row, job in enumerate(self._jobs)]


def _pad_left(states: torch.Tensor, columns: int) -> torch.Tensor:
    return torch.nn.functional.pad(states, (0, 0, columns, 0)) if columns else states
