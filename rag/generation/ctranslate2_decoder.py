"""CTranslate2 behind the DecodeBackend interface (RAG_LLM_ENGINE=ctranslate2): static batches.

CTranslate2's Python API has no step call, so no row can join a batch that is decoding (no continuous
batching). What it has is static batching: `Generator.generate_batch` over several prompts, fixed when it
starts, with one max_length and one sampling rule for all of its rows, and a callback that receives each
row's tokens as they are computed and can stop any row. Several generations at once are no substitute: with
`inter_threads=1` (one model replica) the second waits in CTranslate2's queue until the first has
finished, and `inter_threads=2` (two replicas of one thread each) gave the same throughput as one replica
of two threads here (8 requests: 14.5-14.7 s against 14.8-15.6 s), since both read the same weights.

So the BatchEngine starts rows only when no row runs (`joins_running = False`), several at once:
- `group` takes the oldest waiting request and those waiting with it that share its sampling rule and whose
  prompt lengths lie within MAX_SPREAD tokens of each other. CTranslate2 forwards only the shortest prompt
  at once; every row's remaining prompt tokens take one decode step each, so a wide spread costs steps.
- `prefill_many` starts their generation; each row's first token is its prefill's result, and each decode
  step takes the next token of every row. CTranslate2's worker thread runs ahead by the time it takes to hand
  a token over.
- A row that ends (end of sequence, its max_new_tokens, a stop string, its deadline, its client gone) is
  removed, and the callback then stops CTranslate2 computing it at its next step. The batch's last row to
  leave ends the call; the requests that waited meanwhile start next.
Everything around it stays the BatchEngine's, unchanged: admission (429), the queue, deadlines (504),
cancellation, the stop rules (the same `Ending` as torch's, rag/generation/stopping.py) and the usage counts.

Tokenization stays ours: the prompt is the generator's token ids, given to CTranslate2 as token strings,
and it returns ids, so both engines see exactly the same prompt. Every prompt of a generator begins with the
same instructions (`Job.prefix` tokens): they go to CTranslate2 as its `static_prompt`, whose state it computes
once and copies into every later batch, so a prefill forwards only the question and passages
(RAG_LLM_PREFIX_CACHE=0 turns it off; docs/performance.md has the measurement).
"""

from __future__ import annotations

import atexit
import logging
import os
import queue
import sys
import threading
import time
import weakref
from pathlib import Path

from rag.errors import ConfigError
from rag.generation.batching import DecodeBackend, Job
from rag.generation.model_config import KNOWN_OPTIONS, first_set, generation_config, sampling_limits
from rag.generation.stopping import Ending, end_of_turn_ids
from rag.model_files import copy_marker
from rag.runtime import check_memory_for, release_free_memory
from rag.settings import compute_type

log = logging.getLogger(__name__)

# The widest spread of prompt lengths (tokens) that one batch takes. Measured here, 8 rows of 40 tokens
# on the 135M in float32: a batch took 0.55x the time of the same rows one after another with equal
# prompts, 0.62x with lengths spread over 24 tokens and 0.74x over 48. Served prompts' middle half
# spans about 20-30 tokens (make eval-models' records).
MAX_SPREAD = 32


def _options(job: Job) -> dict:
    return dict(job.decoding or {})


_DONE = object()  # a row's last item: CTranslate2 has nothing more for it


class RunningBatch:
    """One `generate_batch` call: each row's tokens as CTranslate2's worker thread computes them."""

    def __init__(self, limits: list[int]):
        self.limits = limits  # each row's max_new_tokens: the call's max_length is the longest of them
        self.produced = [0] * len(limits)
        self.stopped = [False] * len(limits)
        self.tokens = [queue.SimpleQueue() for _ in limits]
        self.error: BaseException | None = None
        self.finished = threading.Event()

    def step(self, result) -> bool:
        """CTranslate2's callback (on its thread) with one row's next token; True stops that row."""
        row = result.batch_id
        if self.stopped[row]:
            return True
        self.tokens[row].put(result.token_id)
        self.produced[row] += 1
        return self.produced[row] >= self.limits[row]

    def wait(self, results) -> None:
        """On a thread of its own: wait for the call to end, then tell every row that nothing more comes."""
        try:
            for result in results:
                result.result()
        except Exception as exc:  # noqa: BLE001 - raised on the engine's thread by `next`
            self.error = exc
        finally:
            for tokens in self.tokens:
                tokens.put(_DONE)
            self.finished.set()

    def next(self, row: int) -> int | None:
        """The row's next token id, or None once the call has ended without one (or its error)."""
        item = self.tokens[row].get()
        if item is _DONE:
            self.tokens[row].put(_DONE)  # the next call sees the end too
            if self.error is not None:
                raise self.error
            return None
        return item

    def stop(self, rows=None) -> None:
        """Stop these rows (all of them by default) at CTranslate2's next step."""
        for row in range(len(self.stopped)) if rows is None else rows:
            self.stopped[row] = True


# CTranslate2's CPU wheel carries two matrix libraries and picks one by the CPU's vendor: Intel MKL (weights packed
# in advance) on a GenuineIntel CPU, oneDNN on any other, unless its own variable CT2_USE_MKL says. It reads the
# variable once, when the module is imported. Measured with `python -m bench.probes.gemm_backend`
# (docs/performance.md), decode ms/token of the 135M model: in float32, oneDNN 22.1 against MKL 50.5 on an Intel
# Xeon with AVX-512, 27.6 against 59.8 on an AMD EPYC; in int8 the vendor's pick is the faster one on both
# (Intel: MKL 28.5 against oneDNN 32.7; AMD: oneDNN 52.6 against MKL 260.3). So float32 takes oneDNN whatever
# the vendor, and the int8 types keep the vendor's rule.
GEMM_LIBRARY_BY_COMPUTE = {"float32": "0"}
GEMM_LIBRARY_NAMES = {"0": "oneDNN", "1": "MKL"}


def choose_gemm_library(compute: str, env=None) -> tuple[str, bool]:
    """Set CT2_USE_MKL for `compute` where the measurement says the vendor's rule is slower, unless the user set
    it. Returns which library that means, and whether this call set the variable."""
    env = os.environ if env is None else env
    if "CT2_USE_MKL" in env:
        return f"CT2_USE_MKL={env['CT2_USE_MKL']} (set outside rag)", False
    if compute in GEMM_LIBRARY_BY_COMPUTE:
        env["CT2_USE_MKL"] = GEMM_LIBRARY_BY_COMPUTE[compute]
        return f"{GEMM_LIBRARY_NAMES[env['CT2_USE_MKL']]} (CT2_USE_MKL={env['CT2_USE_MKL']}, set for {compute})", True
    return "the vendor's rule, MKL on Intel and oneDNN on others (CT2_USE_MKL unset)", False


def _import_ctranslate2(compute: str):
    """The ctranslate2 module, with its matrix library chosen for `compute` when this import is its first in the
    process (an earlier import has fixed it already), and which library that is."""
    if sys.modules.get("ctranslate2") is not None:
        return sys.modules["ctranslate2"], "fixed when this process first imported ctranslate2"
    library, set_here = choose_gemm_library(compute)
    try:
        import ctranslate2
    except ImportError:
        raise ConfigError(
            "RAG_LLM_ENGINE=ctranslate2, but the ctranslate2 package is not installed; run `make setup` "
            "(it is pinned in requirements.txt), or set RAG_LLM_ENGINE=torch"
        ) from None
    finally:
        # CTranslate2 has read it (or is missing): the environment goes back as it was, so no process this one
        # starts inherits our choice as its user's (an int8 model there would lose the vendor's rule).
        if set_here:
            del os.environ["CT2_USE_MKL"]
    return ctranslate2, library


def resolve_ctranslate2_device(ctranslate2, device: str) -> str:
    """RAG_DEVICE for CTranslate2, which finds CUDA devices itself (no torch import for that)."""
    gpus = ctranslate2.get_cuda_device_count()
    if device == "auto":
        return "cuda" if gpus else "cpu"
    if device == "cuda" and not gpus:
        raise ConfigError("RAG_DEVICE=cuda, but CTranslate2 sees no CUDA device; use RAG_DEVICE=auto or cpu")
    return device


# A process that exits while CTranslate2's threads run can abort ("terminate called without an active exception",
# exit 134): 2 of 5 scripts that exited right after a streamed answer did. CTranslate2 computes a stopped row
# until its next step, calling back into Python from its own threads, and its model's threads are C++ threads
# that must be joined. So at exit the process waits for the running calls, then frees the models while Python
# still runs: waiting alone left 1 abort in 5 such exits, both together none in 14.
_WAITERS: list[threading.Thread] = []
EXIT_WAIT_S = 10.0
_DECODERS: weakref.WeakSet = weakref.WeakSet()


@atexit.register
def _wait_for_running_calls() -> None:
    deadline = time.monotonic() + EXIT_WAIT_S
    for thread in list(_WAITERS):
        thread.join(max(0.0, deadline - time.monotonic()))
    for decoder in list(_DECODERS):  # CTranslate2 stops its own threads when the model goes, while Python still runs
        decoder.model = None


WEIGHT_BITS = {"float32": 32, "float16": 16, "bfloat16": 16, "int16": 16, "int8": 8}


def weight_bytes(engine_dir: str, compute: str) -> int:
    """A lower bound of the memory the weights of a CTranslate2 copy take once loaded with compute type
    `compute`: its model.bin, scaled down when the weights are loaded in fewer bits than they were stored in
    (converted.json says how, where we made the copy; any other copy is taken as float32, the widest)."""
    folder = Path(engine_dir)
    stored = copy_marker(folder).get("quantization", "float32")
    stored_bits = WEIGHT_BITS.get(str(stored).split("_")[0], 32)
    loaded_bits = WEIGHT_BITS.get(compute.split("_")[0], 32)
    size = (folder / "model.bin").stat().st_size
    return size * min(stored_bits, loaded_bits) // stored_bits


class CTranslate2Decoder(DecodeBackend):
    """A CTranslate2 copy of the model (`engine_dir`, made by `make models`) with the transformers folder's
    tokenizer and generation config (`path`). Construct it on the engine's thread."""

    joins_running = False  # a static batch: see the module docstring

    def __init__(self, path: str, engine_dir: str, device: str, threads: int, dtype: str, quantize: str, tokenizer):
        started = time.perf_counter()
        self.dtype = compute_type(dtype, quantize)
        ctranslate2, gemm_library = _import_ctranslate2(self.dtype)

        self.device = resolve_ctranslate2_device(ctranslate2, device)
        supported = sorted(ctranslate2.get_supported_compute_types(self.device))
        if self.dtype not in supported:
            raise ConfigError(
                f"RAG_LLM_DTYPE={dtype} with RAG_LLM_QUANTIZE={quantize} is CTranslate2's compute type {self.dtype}, "
                f"which this {self.device} does not support (it supports {', '.join(supported)}); change them"
            )
        if self.device == "cpu":
            check_memory_for(
                f"the CTranslate2 model {engine_dir} ({self.dtype})",
                weight_bytes(engine_dir, self.dtype),
                "give the container more memory, or serve a smaller model or RAG_LLM_QUANTIZE=int8 (which costs "
                "accuracy: measure it with make eval)",
            )
        # One replica (inter_threads=1): one batch at a time, with every thread (see the module docstring).
        self.model = ctranslate2.Generator(
            engine_dir, device=self.device, compute_type=self.dtype, inter_threads=1, intra_threads=threads
        )
        _DECODERS.add(self)
        self.tokenizer = tokenizer
        self.config, _, self.context_length = generation_config(path)
        self.end_ids = end_of_turn_ids(tokenizer, self.config.eos_token_id) if tokenizer else frozenset()
        self._batch: RunningBatch | None = None
        self._rows: list[int] = []  # the running rows' indexes in the batch, in the engine's row order
        if first_set(self.config.repetition_penalty, 1.0) != 1.0:
            # transformers penalizes the prompt's tokens too; whether CTranslate2 does when the prompt is not part
            # of the result was not checked, so answers may differ from torch's.
            log.warning("the model's repetition_penalty may not act as it does with torch: compare with `make eval`")
        log.info(
            "LLM %s loaded with CTranslate2 %s on %s (%s, %d threads, static batches%s) in %.1f s",
            engine_dir,
            ctranslate2.__version__,
            self.device,
            self.dtype,
            threads,
            f"; matrix library: {gemm_library}" if self.device == "cpu" else "",
            time.perf_counter() - started,
        )

    def sampling(self, options: dict) -> dict:
        """One request's `model.generate` options (decoding_kwargs) as generate_tokens arguments: greedy, or
        sampling at its temperature from the same top-k and top-p that transformers would apply (the model's
        generation config, where transformers' defaults are top-k 50 and top-p 1)."""
        unknown = set(options) - KNOWN_OPTIONS
        if unknown:
            raise ValueError(f"decoding options that the CTranslate2 engine does not take: {sorted(unknown)}")
        penalty = {"repetition_penalty": first_set(self.config.repetition_penalty, 1.0)}
        if not options.get("do_sample"):
            return {"sampling_topk": 1, **penalty}
        top_k, top_p = sampling_limits(options, self.config)  # top-k 0: the whole vocabulary
        return {
            "sampling_topk": top_k,
            "sampling_topp": top_p,
            "sampling_temperature": options["temperature"],
            **penalty,
        }

    def _key(self, job: Job):
        """What rows must share to run in one batch: the sampling rule and the shared prefix (the batch starts
        from one cached state). A job whose options are refused gets a key of its own, so it starts alone and
        fails alone."""
        try:
            return tuple(sorted(self.sampling(_options(job)).items())), tuple(job.prompt[: job.prefix])
        except ValueError:
            return job

    def group(self, jobs: list[Job], limit: int) -> list[Job]:
        """The oldest job, with the waiting jobs that share its sampling rule, inside the window of at most
        MAX_SPREAD prompt tokens that holds it and the most of them; oldest first, at most `limit`."""
        first = jobs[0]
        key = self._key(first)
        alike = [job for job in jobs if job is first or self._key(job) == key]
        length = len(first.prompt)
        best: list[Job] = []
        for low in sorted({len(job.prompt) for job in alike}):
            if low <= length <= low + MAX_SPREAD:
                inside = [job for job in alike if low <= len(job.prompt) <= low + MAX_SPREAD]
                if len(inside) > len(best):
                    best = inside
        return best[:limit]

    def prefill(self, job: Job) -> int:
        return self.prefill_many([job])[0]

    def prefill_many(self, jobs: list[Job]) -> list[int]:
        if self._batch is not None:
            raise RuntimeError("the CTranslate2 engine starts a batch only when the last one has ended")
        sampling = self.sampling(_options(jobs[0]))  # `group` gave every row the same
        endings = [Ending(self.end_ids, _options(job).get("stop")) for job in jobs]
        batch = RunningBatch([job.max_new_tokens for job in jobs])
        shared = jobs[0].prefix  # `group` gave every row the same prefix
        if shared:  # the instructions' state, computed by the first call and reused by CTranslate2 after it
            sampling["static_prompt"] = self.tokenizer.convert_ids_to_tokens(jobs[0].prompt[:shared])
        results = self.model.generate_batch(
            [self.tokenizer.convert_ids_to_tokens(job.prompt[shared:]) for job in jobs],
            max_length=max(batch.limits),  # generated tokens only: the prompt is not in the result
            end_token=sorted(self.end_ids),
            include_prompt_in_result=False,  # forward the prompts at once (to the shortest one's length)
            asynchronous=True,
            callback=batch.step,
            **sampling,
        )
        waiter = threading.Thread(target=batch.wait, args=(results,), name="ctranslate2-batch", daemon=True)
        _WAITERS[:] = [thread for thread in _WAITERS if thread.is_alive()] + [waiter]
        waiter.start()
        try:
            first = [self._next(batch, row) for row in range(len(jobs))]
        except BaseException:
            self._end(batch)
            raise
        for job, ending in zip(jobs, endings):
            job.state = ending
        self._batch, self._rows = batch, list(range(len(jobs)))
        return first

    def decode(self) -> list[int]:
        return [self._next(self._batch, row) for row in self._rows]

    def _next(self, batch: RunningBatch, row: int) -> int:
        """The row's next token id. CTranslate2 hands over the end token that stops a row (its last step), as
        torch decodes it, so both count it alike; should a row end without one, that is reported as an end
        id, so the row ends at once."""
        token = batch.next(row)
        return min(self.end_ids) if token is None else token

    def remove(self, rows: list[int]) -> None:
        if self._batch is None or not rows:
            return
        leaving = set(rows)
        self._batch.stop([self._rows[row] for row in leaving])  # CTranslate2 stops them at its next step
        self._rows = [index for row, index in enumerate(self._rows) if row not in leaving]
        if not self._rows:
            self._end(self._batch)
            self._batch = None

    @staticmethod
    def _end(batch: RunningBatch) -> None:
        """Stop every row and wait for the call to end, so the next batch does not queue behind it."""
        batch.stop()
        batch.finished.wait()

    def ends(self, job: Job, token: int) -> bool:
        return job.state.reached(self.tokenizer, job.tokens, token)

    def idle(self) -> None:
        release_free_memory()
