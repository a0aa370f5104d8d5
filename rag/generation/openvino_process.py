"""RAG_LLM_ENGINE=openvino from a child process: OpenVINO GenAI's `step()` holds Python's GIL.

OpenVINO GenAI binds `ContinuousBatchingPipeline.step` without releasing the GIL, so while a step runs (about
37 ms for 8 rows of the 135M model) no other thread of the process runs Python. In the monolith that stalled the
request threads' query embedding a step at a time: at 8 clients retrieval took a median 5.2 s of a 6.1 s request
(docs/performance.md, `python -m bench.probes.engine_gil`). So the pipeline (rag.generation.openvino_decoder's
OpenVINODecoder) lives in a child process of its own, `python -m rag.generation.openvino_process`, and this
backend forwards the BatchEngine's calls to it over a pipe: one pickled message per call (prefill, decode,
remove, idle), one reply. While the child steps, the model's thread waits on the pipe without the GIL.

The child is the serving process's: it starts with it, reads its requests from its stdin and exits when that
closes (the parent gone, or `close()`); its log lines at load come back in its first reply and are logged here.
Errors keep their meaning: a request the engine refuses raises the same RagError or ValueError in the parent,
and a child that dies raises RagError for the rows it held; the next request starts a new one, at once the
first time in a minute, later only after the backoff Gunicorn's workers follow (rag.runtime.restart_delay: 1, 2,
4 ... 30 s); meanwhile requests get a 503 (NotReady) at once rather than a child loaded again and again.
"""

from __future__ import annotations

import logging
import math
import os
import pickle
import subprocess
import sys
import threading
import time
from types import SimpleNamespace

from rag.errors import ConfigError, InsufficientMemory, NotReady, RagError
from rag.generation.batching import DecodeBackend, Job
from rag.generation.model_config import generation_config
from rag.generation.stopping import Ending, end_of_turn_ids
from rag.runtime import BACKOFF_WINDOW_S, restart_delay, transformers_without_torch

log = logging.getLogger(__name__)

# The child's errors, raised here again with their kind: a model refused for memory stays insufficient_memory in /ping.
ERRORS = {e.__name__: e for e in (ConfigError, InsufficientMemory, RagError, ValueError)}


class OpenVINOProcess(DecodeBackend):
    """OpenVINODecoder's calls, forwarded to a child process that holds the pipeline. The same arguments."""

    joins_running = True

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
        kv_cache_tokens: int = 0,
    ):
        self.tokenizer = tokenizer
        config = generation_config(path)[0]
        self.end_ids = end_of_turn_ids(tokenizer, config.eos_token_id) if tokenizer else frozenset()
        arguments = {
            "path": path,
            "engine_dir": engine_dir,
            "device": device,
            "threads": threads,
            "dtype": dtype,
            "quantize": quantize,
            "end_ids": sorted(self.end_ids),
            "max_batch_size": max_batch_size,
            "prefix_cache": prefix_cache,
            "kv_cache_tokens": kv_cache_tokens,
        }
        self._arguments = arguments
        self._lock = threading.Lock()
        self._child = None
        self._deaths: list[float] = []  # when children died or failed to start (time.monotonic), for the backoff
        self._start()

    def _start(self) -> None:
        """Start the child and load the model in it; its load lines are logged here."""
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
        self._child = subprocess.Popen(
            [sys.executable, "-m", "rag.generation.openvino_process"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
        try:
            self.device, self.dtype, self.context_length, records = self._call("load", self._arguments)
        except BaseException:
            if self._child is not None:  # a refusal, not a death that _call has counted already
                self.close()
                self._ended()
            raise
        for level, name, message in records:
            logging.getLogger(name).log(level, message)

    def _alive(self) -> bool:
        return self._child is not None and self._child.poll() is None

    def _ended(self) -> None:
        """The child is gone (dead, or failed to start): count it for the backoff, and forget it."""
        now = time.monotonic()
        self._deaths = [t for t in self._deaths if now - t < BACKOFF_WINDOW_S] + [now]
        self._child = None

    def _restart(self) -> None:
        """Start a new child, unless children died too often lately: then NotReady until the backoff has passed."""
        now = time.monotonic()
        recent = [t for t in self._deaths if now - t < BACKOFF_WINDOW_S]
        wait = restart_delay(len(recent)) - (now - recent[-1]) if recent else 0
        if wait > 0:
            raise NotReady(
                f"the OpenVINO engine's process ended {len(recent)} times in the last minute; it starts again in "
                f"{math.ceil(wait)} s"
            )
        self._start()

    def _call(self, op: str, *args):
        with self._lock:
            try:
                pickle.dump((op, args), self._child.stdin, protocol=pickle.HIGHEST_PROTOCOL)
                self._child.stdin.flush()
                status, value = pickle.load(self._child.stdout)
            except (EOFError, OSError, pickle.UnpicklingError):
                code = self._child.wait()
                self._ended()
                why = " (killed: out of memory?)" if code == -9 else ""
                log.error(
                    "the OpenVINO engine's process ended (exit status %s)%s; the next request starts it again",
                    code,
                    why,
                )
                raise RagError(f"the OpenVINO engine's process ended (exit status {code})") from None
        if status == "error":
            kind, message = value
            raise ERRORS.get(kind, RagError)(message)
        return value

    def prefill(self, job: Job) -> int:
        options = dict(job.decoding or {})
        # The stop rule (a function of the answer so far) is applied here, by `ends`: the child never needs it.
        sent = {key: value for key, value in options.items() if key != "stop"}
        if self._child is not None and self._child.poll() is not None:
            self._ended()  # it died between calls (the kernel's OOM killer, say): no call saw it
        if self._child is None:  # its rows have failed; a new one serves on
            self._restart()
        first = self._call("prefill", list(job.prompt), sent, job.max_new_tokens)
        job.state = Ending(self.end_ids, options.get("stop"))
        return first

    def decode(self) -> list[int]:
        return self._call("decode")

    def remove(self, rows: list[int]) -> None:
        if self._alive():  # a dead child's rows are gone with it
            self._call("remove", list(rows))

    def ends(self, job: Job, token: int) -> bool:
        return job.state.reached(self.tokenizer, job.tokens, token)

    def idle(self) -> None:
        if self._alive():
            self._call("idle")

    def close(self) -> None:
        """Stop the child: it exits when its stdin closes."""
        if self._child is None:
            return
        try:
            self._child.stdin.close()
        except OSError:
            pass
        try:
            self._child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._child.kill()
            self._child.wait()

    def __del__(self):
        child = getattr(self, "_child", None)
        if child is not None and child.poll() is None:
            self.close()


class _Records(logging.Handler):
    """The child's log records at load, sent back with its first reply."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.records: list[tuple[int, str, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append((record.levelno, record.name, record.getMessage()))


def serve(requests, replies) -> None:
    """The child's loop: each request a pickled (op, args), each reply a pickled (status, value)."""
    decoder = None

    def reply(status, value):
        pickle.dump((status, value), replies, protocol=pickle.HIGHEST_PROTOCOL)
        replies.flush()

    while True:
        try:
            op, args = pickle.load(requests)
        except EOFError:
            return
        try:
            if op == "load":
                from rag.generation.openvino_decoder import OpenVINODecoder

                handler = _Records()
                logging.getLogger().addHandler(handler)
                logging.getLogger().setLevel(logging.INFO)
                try:
                    decoder = OpenVINODecoder(tokenizer=None, **args[0])
                finally:
                    logging.getLogger().removeHandler(handler)
                reply("ok", (decoder.device, decoder.dtype, decoder.context_length, handler.records))
            elif op == "prefill":
                prompt, options, max_new_tokens = args
                job = SimpleNamespace(prompt=prompt, decoding=options, max_new_tokens=max_new_tokens, state=None)
                reply("ok", decoder.prefill(job))
            elif op == "decode":
                reply("ok", decoder.decode())
            elif op == "remove":
                reply("ok", decoder.remove(args[0]))
            elif op == "idle":
                reply("ok", decoder.idle())
            else:
                reply("error", ("RagError", f"unknown request {op!r}"))
        except Exception as exc:  # the parent raises it again, with its kind
            reply("error", (type(exc).__name__, str(exc)))


if __name__ == "__main__":
    # The pipe is this process's stdin and stdout: nothing else may write to stdout.
    channel_out = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    # transformers only reads the model's configuration here: without torch, 270 MB less (rag/runtime.py).
    with transformers_without_torch():
        serve(sys.stdin.buffer, channel_out)
