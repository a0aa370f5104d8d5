"""Resident memory of serving workers that share one index, measured as PSS.

Each worker is a real separate process, as Gunicorn's are: it loads the index with VectorIndex.load,
answers queries, then waits. PSS (proportional set size) splits every shared page between the processes
that map it, so the PSS of the workers adds up to what they really cost the machine. A worker's index
memory is the PSS of its mappings of files in the index directory plus the anonymous memory that loading
and searching added: a heap copy of the index shows up in the second term, a shared mapping in the first.

    python -m bench.index.workers INDEX_DIR DIMENSION [--no-mmap]    (one worker; driven by measure_workers)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[2]
WARM_QUERIES = 200


def anonymous_kb(pid: int | None = None) -> int:
    """Anonymous memory (kB) of a process: the sum over its mappings, as /proc/PID/smaps counts it."""
    return sum(m.anonymous for m in psutil.Process(pid).memory_maps(grouped=True)) // 1024


def mapped_pss_kb(pid: int, directory: Path) -> int:
    """PSS (kB) of the mappings of `pid` whose file lies in `directory`."""
    prefix = str(Path(directory).resolve()) + "/"
    return sum(m.pss for m in psutil.Process(pid).memory_maps(grouped=True) if m.path.startswith(prefix)) // 1024


def worker(index_dir: Path, dimension: int, mmap: bool, nprobe: int | None = None) -> None:
    """Load, warm with queries, print one JSON line, then wait for stdin to close."""
    import faiss  # noqa: F401  before the baseline: rag imports FAISS on first use, and its own memory is not the index's
    import numpy as np

    from rag.index.artifact import VectorIndex, read_manifest

    before = anonymous_kb()
    started = time.perf_counter()
    index = VectorIndex.load(
        index_dir, read_manifest(index_dir)["embedding_model"], dimension, mmap=mmap, nprobe=nprobe
    )
    load_s = time.perf_counter() - started
    queries = np.random.default_rng(1).standard_normal((WARM_QUERIES, dimension)).astype(np.float32)
    for query in queries / np.linalg.norm(queries, axis=1, keepdims=True):
        index.search(query, 10)
    after = anonymous_kb()
    print(json.dumps({"load_s": round(load_s, 3), "anon_growth_kb": after - before}), flush=True)
    sys.stdin.read()


def index_bytes(index_dir: Path) -> int:
    """Bytes of the files a worker keeps resident: the FAISS index and the chunk offsets. (The chunk
    texts are read from the page cache per hit, and documents.jsonl only at indexing time.)"""
    from rag.index.artifact import FAISS_FILE
    from rag.index.chunk_store import OFFSETS_FILE

    return sum((Path(index_dir) / name).stat().st_size for name in (FAISS_FILE, OFFSETS_FILE))


def measure_workers(
    index_dir: Path,
    dimension: int,
    count: int = 2,
    mmap: bool = True,
    nprobe: int | None = None,
    timeout_s: float = 300.0,
) -> list[dict]:
    """Start `count` workers one after the other; after each is warm, record every live worker's index
    PSS. Returns one row per step: {"workers": n, "index_pss_kb": [per worker], "load_s": [...]}.
    `nprobe` overrides an ivf index's (a large one makes every list resident)."""
    procs, loads, steps = [], [], []
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    argv = [sys.executable, "-m", "bench.index.workers", str(index_dir), str(dimension)] + (
        [] if mmap else ["--no-mmap"]
    )
    argv += ["--nprobe", str(nprobe)] if nprobe else []
    try:
        for _ in range(count):
            proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT)
            procs.append(proc)
            line = _read_line(proc, timeout_s)
            loads.append(json.loads(line))
            steps.append(
                {
                    "workers": len(procs),
                    "index_pss_kb": [
                        mapped_pss_kb(p.pid, index_dir) + max(0, load["anon_growth_kb"])
                        for p, load in zip(procs, loads)
                    ],
                    "pss_kb": [psutil.Process(p.pid).memory_full_info().pss // 1024 for p in procs],
                    "rss_kb": [psutil.Process(p.pid).memory_full_info().rss // 1024 for p in procs],
                    "load_s": [load["load_s"] for load in loads],
                }
            )
    finally:
        for proc in procs:
            proc.stdin.close()
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    return steps


def _read_line(proc: subprocess.Popen, timeout_s: float) -> str:
    import selectors

    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        if not selector.select(timeout_s):
            raise TimeoutError(f"index worker {proc.pid} did not load within {timeout_s:.0f} s")
    line = proc.stdout.readline()
    if not line:
        raise RuntimeError(f"index worker {proc.pid} exited ({proc.wait()}) before loading the index")
    return line


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.index.workers")
    parser.add_argument("index_dir", type=Path)
    parser.add_argument("dimension", type=int)
    parser.add_argument("--no-mmap", action="store_true", help="load a private heap copy (the old behaviour)")
    parser.add_argument("--nprobe", type=int, help="override an ivf index's nprobe")
    arguments = parser.parse_args()
    worker(arguments.index_dir, arguments.dimension, not arguments.no_mmap, arguments.nprobe)
