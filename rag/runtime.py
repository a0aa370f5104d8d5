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
import logging
import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rag.errors import ConfigError, InsufficientMemory

SPIN_COUNT = "3000"
ARENA_MAX = 2
_M_ARENA_MAX = -8  # glibc's mallopt parameter number
IDLE_S = 1.0  # how long a model or retriever waits without work before it hands freed memory back
# A process that keeps dying (the kernel's OOM killer, a broken model) must not be started again in a tight loop:
# the first restart in BACKOFF_WINDOW_S is immediate, later ones wait 1, 2, 4 ... 30 s. Gunicorn's workers
# (serving/gunicorn_conf.py) and OpenVINO's child process (rag/generation/openvino_process.py) follow it.
BACKOFF_WINDOW_S = 60


def restart_delay(recent_deaths: int) -> int:
    """Seconds to wait before starting a process again, after `recent_deaths` deaths in the last minute."""
    return 0 if recent_deaths < 2 else min(30, 2 ** (recent_deaths - 2))


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


@contextmanager
def transformers_without_torch() -> Iterator[bool]:
    """Inside this block, a process that has imported neither torch nor transformers imports transformers
    as if torch were not installed; yields whether it did.

    A CTranslate2 model needs transformers only for its tokenizer and configuration, which do not need
    torch, yet transformers imports torch whenever it is installed: 270 MB of resident memory and 3 s of
    start-up in the LLM service (measured in the image: 880 MB after loading the 135M model, 610 MB
    without). `import torch` fails while the block runs (a None entry in sys.modules is Python's way to
    block an import), so transformers decides once, and caches, that torch is absent. After the block torch
    can be imported again, but transformers keeps its decision: only a process that will never want a torch
    model through transformers (sentence-transformers included: it then fails to import) may use this, so the
    LLM service does and nothing else. A process that already holds torch or transformers is left as it is."""
    if "torch" in sys.modules or "transformers" in sys.modules:
        yield False
        return
    sys.modules["torch"] = None  # type: ignore[assignment]
    # transformers would say so in a warning that reads like a fault ("Models won't be available").
    quiet = logging.getLogger("transformers")
    quiet.addFilter(_no_torch_warning)
    try:
        yield True
    finally:
        quiet.removeFilter(_no_torch_warning)
        if "torch" in sys.modules and sys.modules["torch"] is None:
            del sys.modules["torch"]


def _no_torch_warning(record: logging.LogRecord) -> bool:
    return "PyTorch was not found" not in record.getMessage()


CPUINFO = Path("/proc/cpuinfo")


def cpuinfo(path: Path = CPUINFO) -> list[tuple[str, str]] | None:
    """Every `key: value` line of /proc/cpuinfo, in order (each processor repeats them); None where it cannot
    be read (off Linux)."""
    text = _read(path)
    if text is None:
        return None
    return [(key.strip(), value.strip()) for key, _, value in (line.partition(":") for line in text.splitlines())]


def cpu_vendor(path: Path = CPUINFO) -> str | None:
    """The CPU's vendor as the kernel names it (GenuineIntel, AuthenticAMD), None where it cannot be read. A tier's
    default engine can depend on it (rag/model_ladder.toml's `by_cpu_vendor`): engines are measured per CPU."""
    return next((value for key, value in cpuinfo(path) or [] if key == "vendor_id"), None)


def gpu_visible(dev: Path = Path("/dev")) -> bool:
    """Whether an NVIDIA GPU's device node is here (/dev/nvidia0, ...: a container sees them only when given the
    GPU), without importing torch. Decides whether a tier's per-CPU engine choice applies."""
    return any(node.name.removeprefix("nvidia").isdigit() for node in dev.glob("nvidia[0-9]*"))


UNLIMITED = 1 << 60  # cgroup v1 writes "no limit" as a number near 2**63


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def _cgroup_memory_dirs() -> list[Path]:
    """This process's memory cgroup folder (v2 unified or v1 memory controller), most specific first. Inside a
    container /proc/self/cgroup may name the host's path while the container's own cgroup is mounted at the
    root, so the root comes last."""
    dirs: list[Path] = []
    for line in (_read(Path("/proc/self/cgroup")) or "").splitlines():
        _, controllers, path = line.split(":", 2)
        if controllers == "":
            dirs.append(Path("/sys/fs/cgroup") / path.lstrip("/"))
        elif "memory" in controllers.split(","):
            dirs.append(Path("/sys/fs/cgroup/memory") / path.lstrip("/"))
    return [*dirs, Path("/sys/fs/cgroup"), Path("/sys/fs/cgroup/memory")]


def _stat_field(text: str, name: str) -> int:
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key == name:
            return int(value)
    return 0


def memory_available(
    cgroup_dirs: list[Path] | None = None, meminfo: Path = Path("/proc/meminfo")
) -> tuple[int | None, int | None]:
    """(bytes this process may still allocate, the memory cgroup's limit), each None where unknown.

    The first of `cgroup_dirs` (by default this process's memory cgroup) that has a memory controller counts:
    its limit less its usage, not counting file pages (the page cache, which the kernel can drop: counting the
    recently used part as taken would refuse a restarted worker the model file it just read); and never more
    than the host's MemAvailable."""
    free = limit = None
    for folder in _cgroup_memory_dirs() if cgroup_dirs is None else cgroup_dirs:
        v2_max, v1_max = _read(folder / "memory.max"), _read(folder / "memory.limit_in_bytes")
        raw_max = v2_max if v2_max is not None else v1_max
        if raw_max is None:
            continue
        usage = _read(folder / ("memory.current" if v2_max is not None else "memory.usage_in_bytes"))
        stat = _read(folder / "memory.stat") or ""
        if raw_max.strip() != "max" and usage is not None and int(raw_max) < UNLIMITED:
            limit = int(raw_max)
            prefix = "" if v2_max is not None else "total_"  # v1 counts the hierarchy under these names
            cache = sum(_stat_field(stat, f"{prefix}{kind}_file") for kind in ("inactive", "active"))
            free = max(0, limit - (int(usage) - cache))
        break
    for line in (_read(meminfo) or "").splitlines():
        if line.startswith("MemAvailable:"):
            host = int(line.split()[1]) * 1024
            free = host if free is None else min(free, host)
    return free, limit


def check_memory_for(what: str, need_bytes: int, advice: str, needed_for: str = "its weights") -> None:
    """Raise InsufficientMemory at once when `need_bytes` (a lower bound of what loading `what` allocates)
    cannot fit in the memory left, rather than load into a container too small for it: under a cgroup limit
    the kernel then reclaims the page cache of the code that runs, over and over, and the container crawls
    for minutes (measured: 130 s before its vector service could answer) before anything is killed."""
    free, limit = memory_available()
    if free is None or need_bytes <= free:
        return
    mib = 2**20
    where = f"the container's limit is {limit // mib} MiB" if limit is not None else "this host"
    raise InsufficientMemory(
        f"{what} needs at least {need_bytes // mib} MiB for {needed_for}, but only {free // mib} MiB are free "
        f"({where}); {advice}"
    )
