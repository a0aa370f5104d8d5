"""Process-wide CPU settings that must be in place before torch loads: OpenMP spinning, MKL's memory pool
and malloc arenas.

OpenMP (libgomp, bundled with torch) reads its environment once, when torch is imported, so these are
applied when the `rag` package is first imported (rag/__init__.py), which every entry point does first.
A value the user set in the environment always wins.

- GOMP_SPINCOUNT: how long an idle OpenMP thread spins before it sleeps. A decode step runs hundreds of
  small parallel regions; spinning between them saves a sleep and a wake-up each (the issue measured
  1.5x on a quiet machine), but when other processes want the same cores, a spinning thread burns the
  time slice the thread it waits for needs. Measured here on 2 shared cores (load 5, 16 new tokens,
  median of 3): libgomp's default of 300,000 spins took 37.5 s, 30,000 took 10.2 s, 3,000 took 4.7 s and
  no spinning 4.1 s (docs/performance.md). 3,000 spins (tens of microseconds) cover the gap between two
  regions of one step without letting a shared machine collapse.
- MKL_DISABLE_FAST_MM: MKL keeps a memory pool per thread that ran a matrix product and never returns it,
  so every Gunicorn thread that embedded a query kept its own. Measured with a real monolith (32 clients
  for 30 s, RSS 5 s after the burst, over RSS after warm-up): +8.3 % with MKL's pool, +1.6 % without, and
  no measurable change in speed at 1 or 8 clients (docs/performance.md). glibc's malloc_trim can hand the
  freed memory back; it cannot touch MKL's pool.
- MALLOC_ARENA_MAX: glibc gives each thread that allocates its own arena (up to 8 per core); freed memory
  in many arenas fragments and RSS grows under concurrent load. The model allocates on one thread now;
  two arenas are plenty for the rest.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
import threading

from rag.errors import ConfigError

SPIN_COUNT = "3000"
ARENA_MAX = 2
_M_ARENA_MAX = -8  # glibc's mallopt parameter number
IDLE_S = 1.0  # how long a model or retriever waits without work before it hands freed memory back


_libc = None


def _glibc(function: str):
    """A glibc function through ctypes, or None where the C library has no such function."""
    global _libc
    if _libc is None:
        name = ctypes.util.find_library("c")
        _libc = ctypes.CDLL(name) if name else False
    return getattr(_libc, function, None) if _libc else None


def configure_process(env: dict | None = None) -> None:
    """Default GOMP_SPINCOUNT, MKL_DISABLE_FAST_MM and the malloc arena limit, unless the user set them or
    torch is loaded."""
    env = os.environ if env is None else env
    if "torch" not in sys.modules and "GOMP_SPINCOUNT" not in env and "OMP_WAIT_POLICY" not in env:
        env["GOMP_SPINCOUNT"] = SPIN_COUNT
    if "torch" not in sys.modules and "MKL_DISABLE_FAST_MM" not in env:
        env["MKL_DISABLE_FAST_MM"] = "1"
    mallopt = _glibc("mallopt")
    if "MALLOC_ARENA_MAX" not in env and mallopt is not None:
        mallopt(_M_ARENA_MAX, ARENA_MAX)


def release_free_memory() -> None:
    """Hand freed heap memory back to the OS (glibc malloc_trim). After a busy batch, the KV caches and
    activations of 8 or 16 rows are free but stay in the heap; without this, RSS stays at the high-water
    mark of the busiest moment. A no-op where glibc is not the allocator."""
    trim = _glibc("malloc_trim")
    if trim is not None:
        trim(0)


class TrimWhenIdle:
    """A context manager around work done on request threads (retrieval): once none has run for
    `after_s`, freed heap memory is handed back (release_free_memory). The model's thread does the same
    for the model (rag/generation/batching.py); a vector service has no model, and without this its RSS kept what a
    burst of concurrent embeddings had freed. Waiting `after_s` keeps a busy client's requests from paying
    for memory faulted back in."""

    def __init__(self, after_s: float, release=None):
        self.after_s = after_s
        self._release = release or release_free_memory
        self._active = 0
        self._started = 0  # counts every entry, so a timer knows whether work came after it was set
        self._lock = threading.Lock()

    def __enter__(self) -> TrimWhenIdle:
        with self._lock:
            self._active += 1
            self._started += 1
        return self

    def __exit__(self, *exc) -> None:
        with self._lock:
            self._active -= 1
            if self._active:
                return
            started = self._started
        timer = threading.Timer(self.after_s, self._trim, args=(started,))
        timer.daemon = True
        timer.start()

    def _trim(self, started: int) -> None:
        with self._lock:
            if self._active or self._started != started:
                return
        self._release()


def single_threaded_from_now() -> None:
    """From now on, a thread that first calls torch (a request thread embedding a query, say) runs it
    with one thread. Each thread that runs torch in parallel gets its own OpenMP team; once the process has
    more team threads than cores, libgomp stops spinning between parallel regions, and the model's
    hundreds of small regions per token each pay a sleep and a wake-up (1.5x slower, docs/performance.md).
    A model's thread fixed its own team size when it started, so this leaves it alone.

    Serving processes that embed queries call it too (rag.retrieval.local.load_retriever): the monolith and the
    vector service then embed with the same thread count, and so give bit-identical scores and excerpts
    (a float sum's rounding depends on how many threads split it)."""
    import torch

    torch.set_num_threads(1)


def resolve_device(device: str) -> str:
    """`auto` becomes cuda when a GPU is visible, else cpu."""
    import torch  # 3.0 s to import (measured): only processes that load a model pay it

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("RAG_DEVICE=cuda, but torch sees no CUDA device; use RAG_DEVICE=auto or cpu")
    return device
