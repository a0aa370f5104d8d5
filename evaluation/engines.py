"""`make bench-engines`: every inference engine variant x every installed model tier, on the dev sets, in one run.

An engine variant is a name and the environment it needs (RAG_LLM_ENGINE, RAG_LLM_DTYPE, RAG_LLM_QUANTIZE).
For each tier and variant it serves each set's index with the monolith exactly as `make serve` does (the
machinery of `make eval-models`: evaluation/quality.py's serve_and_evaluate), scores every question as
`make eval` does, and reads from the same run: the c=1 latency of every question, prefill tokens/s and
decode ms/token from the service's own per-request stage lines (EMF: StageLatency of prefill and decode,
PromptTokens, CompletionTokens), then throughput at 8 and 32 closed-loop clients (admission raised to 32,
so nothing is turned away; 429s are counted all the same), peak RSS, ready time and the size of the model
files. Beside them, measured in the same run: this machine's memory-bandwidth floor per model and
precision, and llama.cpp's own server on the same prompts (evaluation/llama_peer.py, when `make peer` has
built it). evaluation/engine_report.py applies the rules and renders the table and chart.

Results go to bench/results/engines-<time>.json (partial.json in its folder after every variant);
--publish copies a slim version to bench/results/latest/engines.json and regenerates the table and chart
in docs/performance.md and the README's headline; --report FILE re-renders from a results file.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

from transformers import AutoTokenizer

from bench.core.config import DEFAULT_RESULTS_DIR, REPO_ROOT
from bench.core.machine import cpu
from bench.core.processes import child_env, log_records
from bench.core.stats import percentile
from evaluation import engine_report, llama_peer
from evaluation.engine_report import REFERENCE
from evaluation.evaluate import load_questions, seen_passages
from evaluation.ladder import tier_names
from evaluation.previous import build_index
from evaluation.quality import closed_loop, on_fresh_server, serve_and_evaluate
from rag import settings as rag_settings
from rag.generation.decoder import native_bfloat16
from rag.generation.prompt import SYSTEM_PROMPT, build_messages
from rag.ladder import default_tier, tiers
from rag.model_files import copy_dir, is_converted
from rag.models import tier_dir
from rag.types import Passage

DEFAULT_SETS = ("sample", "harbourline")  # kelvane, the held-out set of the model ladder, with --sets
LEVELS = {8: 32, 32: 64}  # closed-loop clients -> requests; one client is the evaluation itself
ADMITTED = max(LEVELS)  # RAG_MAX_CONCURRENT_REQUESTS: every client of the largest level is admitted
IMAGE = os.environ.get("BENCH_ENGINES_IMAGE", "").strip() or "rag-monolito:latest"


@dataclass(frozen=True)
class Variant:
    """An engine at one precision: its name in the results and the environment the service needs for it."""

    name: str
    engine: str
    precision: str  # float32, bfloat16 or int8: what the weights are read as while decoding
    env: dict = field(default_factory=dict)
    default: bool = True  # in the run when --engines is not given (and it is available)
    note: str = ""  # why it is left out of the default list

    def unavailable(self) -> str | None:
        """Why this variant cannot run here, or None."""
        engines = getattr(rag_settings, "LLM_ENGINES", ("torch",))
        if self.engine not in engines:
            return f"RAG_LLM_ENGINE={self.engine} is not an engine of this service (it has {', '.join(engines)})"
        if importlib.util.find_spec(ENGINE_MODULES.get(self.engine, self.engine)) is None:
            return f"the {self.engine} package is not installed"
        if self.precision == "bfloat16" and not native_bfloat16():
            return "this CPU has no native bfloat16 (AVX512-BF16 or AMX): it would be emulated"
        if self.engine == "ctranslate2" and CTRANSLATE2_COMPUTE[self.precision] not in ctranslate2_cpu_types():
            return (
                f"CTranslate2 has no {CTRANSLATE2_COMPUTE[self.precision]} compute type on this CPU "
                f"(it has {', '.join(sorted(ctranslate2_cpu_types()))})"
            )
        return None


# The module each engine's package is imported as, where it is not the engine's name.
ENGINE_MODULES = {"openvino": "openvino_genai"}
# The compute type the service asks CTranslate2 for at each precision (docs/performance.md's mapping).
CTRANSLATE2_COMPUTE = {"float32": "float32", "int8": "int8_float32", "bfloat16": "bfloat16"}


def ctranslate2_cpu_types() -> set[str]:
    """The compute types CTranslate2 supports on this CPU (its own probe; call only when it is installed)."""
    import ctranslate2  # an optional engine for this runner: its variants are skipped when it is missing

    return set(ctranslate2.get_supported_compute_types("cpu"))


def _variant(engine: str, precision: str, suffix: str = "", extra_env: dict | None = None, **options) -> Variant:
    env = {"RAG_LLM_ENGINE": engine, "RAG_LLM_DTYPE": "float32", "RAG_LLM_QUANTIZE": "none"}
    env |= {"RAG_LLM_QUANTIZE": "int8"} if precision == "int8" else {"RAG_LLM_DTYPE": precision}
    return Variant(f"{engine}-{precision}{suffix}", engine, precision, env | (extra_env or {}), **options)


def _without_prefix_cache(engine: str) -> Variant:
    """The engine's float32 variant with RAG_LLM_PREFIX_CACHE=0, to measure what the cached instructions save."""
    return _variant(
        engine,
        "float32",
        "-noprefix",
        {"RAG_LLM_PREFIX_CACHE": "0"},
        default=False,
        note="every prompt prefilled whole, without the instructions' cached state",
    )


VARIANTS = {
    v.name: v
    for v in (
        _variant("torch", "float32"),  # the reference every other variant of a model is held to
        _without_prefix_cache("torch"),
        _variant("torch", "int8"),
        _variant(
            "torch",
            "bfloat16",
            default=False,
            note="measured 2.1x slower than float32 (docs/performance.md#cpu-precision-and-quantization)",
        ),
        _variant("ctranslate2", "float32"),
        _variant(
            "ctranslate2",
            "float32",
            "-mkl",
            {"CT2_USE_MKL": "1"},
            default=False,
            note="float32 on Intel MKL, CTranslate2's own pick on Intel CPUs, which rag overrides with oneDNN",
        ),
        _without_prefix_cache("ctranslate2"),
        _variant("ctranslate2", "int8"),
        _variant("ctranslate2", "bfloat16"),
        _variant("openvino", "float32"),
        _without_prefix_cache("openvino"),
        _variant("openvino", "bfloat16"),
    )
}


def select_variants(names: str) -> tuple[list[Variant], dict[str, str]]:
    """The variants to run and, for each one left out, why. `names` is "default" or a comma list."""
    if names == "default":
        wanted = [v for v in VARIANTS.values() if v.default]
        left_out = {
            v.name: f"not in the default list: {v.note}; --engines adds it" for v in VARIANTS.values() if not v.default
        }
    else:
        unknown = [n for n in names.split(",") if n and n not in VARIANTS]
        if unknown:
            raise ValueError(f"unknown engine variant(s) {', '.join(unknown)}; known: {', '.join(VARIANTS)}")
        wanted, left_out = [VARIANTS[n] for n in names.split(",") if n], {}
    chosen = []
    for variant in wanted:
        reason = variant.unavailable()
        if reason is None:
            chosen.append(variant)
        else:
            left_out[variant.name] = f"skipped: {reason}"
    return chosen, left_out


def stage_figures(log_text: str) -> dict:
    """Median prefill tokens/s and decode ms/token over the requests in a server log, from its EMF lines:
    prompt_tokens / prefill seconds, and decode ms / (completion_tokens - 1) (the first token is prefill's)."""
    requests_seen: dict[str, dict] = {}
    for record in log_records(log_text):
        if "_aws" not in record or "request_id" not in record:
            continue
        entry = requests_seen.setdefault(record["request_id"], {})
        if record.get("Stage") in ("prefill", "decode"):
            entry[record["Stage"]] = float(record["StageLatency"])
        for key in ("PromptTokens", "CompletionTokens"):
            if key in record:
                entry[key] = float(record[key])
    prefill = [
        e["PromptTokens"] / e["prefill"] * 1000
        for e in requests_seen.values()
        if e.get("prefill") and "PromptTokens" in e
    ]
    decode = [
        e["decode"] / (e["CompletionTokens"] - 1)
        for e in requests_seen.values()
        if "decode" in e and e.get("CompletionTokens", 0) > 1
    ]
    return {
        "requests": len(requests_seen),
        "prefill_tokens_per_s": prefill,
        "decode_ms_per_token": decode,
        "prefill_tokens_per_s_p50": percentile(prefill, 50),
        "decode_ms_per_token_p50": percentile(decode, 50),
    }


def _after_evaluation(url: str, records: list[dict], log_path: Path) -> dict:
    """While the evaluation's server still runs: the stage figures of its requests and its answers per second
    (one client)."""
    served = [r for r in records if r["error"] is None]
    one = {
        "clients": 1,
        "ok": len(served),
        "answers_per_s": round(len(served) / (sum(r["latency_ms"] for r in served) / 1000), 3) if served else None,
    }
    return {"stages": stage_figures(log_path.read_text(errors="replace")), "one_client": one}


def model_files(variant: Variant, tier: str) -> Path:
    """The folder of the weights `variant` loads for `tier`: the safetensors for torch, the engine's copy
    beside them (models/<tier>/ctranslate2/ or openvino/, float32, quantized or cast at load) for the others."""
    folder = tier_dir(tiers()[tier])
    return folder if variant.engine == "torch" else copy_dir(folder, variant.engine)


def tier_unavailable(variant: Variant, tier: str) -> str | None:
    """Why `variant` cannot serve `tier` here (its engine's files for the tier are missing), or None."""
    folder = tier_dir(tiers()[tier])
    if variant.engine != "torch" and not is_converted(folder, variant.engine):
        return (
            f"no current {variant.engine} copy in {copy_dir(folder, variant.engine)}; `make models LLM={tier}` makes it"
        )
    return None


def _disk_mib(folder: Path, top_level_only: bool) -> float | None:
    if not folder.is_dir():
        return None
    files = folder.glob("*") if top_level_only else folder.rglob("*")
    return round(sum(p.stat().st_size for p in files if p.is_file()) / 2**20, 1)


def image_size() -> dict:
    """The size of the built monolith image (BENCH_ENGINES_IMAGE, default rag-monolito:latest), or why not."""
    try:
        done = subprocess.run(
            ["docker", "image", "inspect", IMAGE, "--format", "{{.Size}}"], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {"image": IMAGE, "mib": None, "reason": f"docker: {type(exc).__name__}"}
    if done.returncode != 0:
        return {"image": IMAGE, "mib": None, "reason": (done.stderr.strip().splitlines() or ["not built"])[-1][:160]}
    return {"image": IMAGE, "mib": round(int(done.stdout.strip()) / 2**20, 1)}


def measure(
    tier: str, variant: Variant, sets: dict[str, tuple[Path, Path]], workdir: Path, load: dict[int, int]
) -> dict:
    """One variant of one tier on every set: quality, c=1 latency and stages per set; then `load` (clients ->
    requests) on the first set, each level on a server of its own that has answered nothing before and asked
    each question at most once (OpenVINO's prefix cache keeps whole prompts: repeats would measure it)."""
    env = {"RAG_LLM_MODEL": f"embedded:{tier}", "RAG_MAX_CONCURRENT_REQUESTS": ADMITTED, **variant.env}
    entry = {"variant": variant.name, "engine": variant.engine, "precision": variant.precision, "sets": {}}
    for position, (name, (index, questions)) in enumerate(sets.items()):
        log_path = workdir / f"{tier}-{variant.name}-{name}.log"
        print(f"  {variant.name} on {tier}: {name} (log {log_path.name})", flush=True)
        run = serve_and_evaluate(
            "monolito",
            index,
            questions,
            log_path,
            env=env,
            ready_deadline_s=900,
            then=partial(_after_evaluation, log_path=log_path),
        )
        after = run.pop("then")
        entry["sets"][name] = run | {"stages": after["stages"]}
        if position == 0 and load:
            asked = [r["question"] for r in run["records"]]
            entry["throughput"] = {1: after["one_client"]}
            for clients, count in load.items():
                print(f"  {variant.name} on {tier}: {clients} clients, {count} requests, a fresh server", flush=True)
                entry["throughput"][clients] = on_fresh_server(
                    "monolito",
                    index,
                    workdir / f"{tier}-{variant.name}-{name}-c{clients}.log",
                    partial(closed_loop, questions=asked, clients=clients, requests=count),
                    env=env,
                    ready_deadline_s=900,
                )
    folder = model_files(variant, tier)
    entry["model_files"] = {"path": str(folder), "mib": _disk_mib(folder, variant.engine == "torch")}
    return entry


def served_prompt_ids(tokenizer, model, record: dict) -> list[int]:
    """The token ids of the prompt the service built for an evaluated `record` (the passages as the model saw
    them, the tier's instructions and chat template)."""
    passages = [Passage(rank, "", 0, 0.0, text) for rank, text in enumerate(seen_passages(record), start=1)]
    messages = build_messages(record["question"], passages, model.system_prompt or SYSTEM_PROMPT)
    return list(tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=True)["input_ids"])


def peer_bodies(tier: str, records: list[dict]) -> tuple[list[dict], dict]:
    """llama-server request bodies with our exact prompts (as token ids) and our answers' lengths."""
    model = tiers()[tier]
    tokenizer = AutoTokenizer.from_pretrained(tier_dir(model))
    bodies, matched = [], 0
    for record in records:
        if record["error"] is not None:
            continue
        ids = served_prompt_ids(tokenizer, model, record)
        matched += len(ids) == record["prompt_tokens"]
        bodies.append(llama_peer.completion_body(ids, record["completion_tokens"] or 1))
    return bodies, {"prompts": len(bodies), "same_prompt_tokens_as_ours": matched}


def peer_prompt_source(entry: dict) -> str | None:
    """The variant whose prompts and answer lengths the peer gets: the reference, else the first float32 variant
    that ran (the float32 engines give the reference's answers: tested, and measured on the dev sets), else None."""
    if REFERENCE in entry:
        return REFERENCE
    return next((name for name, run in entry.items() if run["precision"] == "float32"), None)


def measure_peers(tier: str, entry: dict, first_set: str, workdir: Path, requests: int) -> dict:
    """llama-server on this tier at each precision our variants ran in, with the reference's prompts (or those of
    another float32 variant, when the reference did not run)."""
    if not llama_peer.server_binary().exists():
        return {"skipped": f"no llama-server at {llama_peer.server_binary()}; `make peer` builds it"}
    source = peer_prompt_source(entry)
    if source is None:
        return {"skipped": f"no float32 variant ran on {tier}: their prompts and answer lengths are the peer's"}
    bodies, check = peer_bodies(tier, entry[source]["sets"][first_set]["records"])
    check = check | {"from": source}
    peers = {}
    for precision in sorted(
        {llama_peer.PEER_OF[v["precision"]] for v in entry.values() if v["precision"] in llama_peer.PEER_OF}
    ):
        gguf = llama_peer.gguf_path(tier, precision)
        if not gguf.exists():
            peers[precision] = {"skipped": f"no {gguf}; `make peer` converts the installed tiers"}
            continue
        print(f"  llama-server {precision} on {tier} ({len(bodies)} prompts)", flush=True)
        log_path = workdir / f"{tier}-llama-server-{precision}.log"
        peers[precision] = llama_peer.measure(gguf, bodies, log_path, os.cpu_count() or 1, requests) | {
            "prompts": check
        }
    return peers


def load_levels(text: str) -> dict[int, int]:
    """`--load`: "8:96,32:64" -> {8: 96, 32: 64} (clients -> requests), each level at most ADMITTED clients."""
    levels = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        clients, _, requests = part.partition(":")
        try:
            levels[int(clients)] = int(requests)
        except ValueError:
            raise ValueError(f"--load {text!r}: each level is CLIENTS:REQUESTS, e.g. 8:32,32:64") from None
    if not levels or any(not 1 < c <= ADMITTED or r < c for c, r in levels.items()):
        raise ValueError(f"--load {text!r}: 2 to {ADMITTED} clients per level, at least one request per client")
    return levels


def level_requests(levels: dict[int, int], first_set: str, limit: int | None) -> dict[int, int]:
    """The requests of each load level, which asks distinct questions of the first set: at most as many as it
    has. A smoke run (--limit) sends one per client, at most its questions."""
    path = REPO_ROOT / "data" / f"{first_set}.questions.jsonl"
    if not path.is_file():
        raise ValueError(f"no question set {first_set!r} in data/")
    distinct = len(dict.fromkeys(q.question for q in load_questions(path)))
    if limit:
        return {clients: min(clients, limit, distinct) for clients in levels}
    too_many = [f"{clients}:{count}" for clients, count in levels.items() if count > distinct]
    if too_many:
        raise ValueError(
            f"--load {','.join(too_many)}: {first_set} has {distinct} distinct questions and a load level asks each "
            "at most once (a repeated prompt measures OpenVINO's prefix cache, not the engine)"
        )
    return dict(levels)


def run(
    names: list[str],
    variants: list[Variant],
    left_out: dict,
    sets: tuple[str, ...],
    limit: int | None,
    levels: dict[int, int] = LEVELS,
) -> dict:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    workdir = DEFAULT_RESULTS_DIR / f"engines-{stamp}"
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"bench-engines {stamp}: {len(variants)} variant(s) x {len(names)} tier(s) on {', '.join(sets)}", flush=True)
    for name, reason in left_out.items():
        print(f"  {name}: {reason}", flush=True)
    print("measuring the memory bandwidth ...", flush=True)
    result = run_header("engines", stamp, limit) | {
        "native_bfloat16": native_bfloat16(),
        "default_tier": default_tier(),
        "sets": list(sets),
        "question_limit": limit,
        "variants": {v.name: {"engine": v.engine, "precision": v.precision, "env": v.env} for v in variants},
        "left_out": left_out,
        "bandwidth": llama_peer.bandwidth(),
        "image": image_size(),
        "peer_build": llama_peer.build_info(),
        "parameters": {name: llama_peer.parameter_count(tier_dir(tiers()[name])) for name in names},
        "runs": {},
        "peers": {},
    }
    print(f"  {result['bandwidth']['gb_per_s']} GB/s copy bandwidth", flush=True)
    env = child_env()
    files = {}
    for name in sets:
        index = build_index(REPO_ROOT, REPO_ROOT / "data" / name, workdir / f"index-{name}", env)
        files[name] = (index, _questions(name, limit, workdir))
    load = level_requests(levels, sets[0], limit)
    steps, done, started = len(names) * len(variants), 0, time.monotonic()
    for tier in names:
        result["runs"][tier] = {}
        for variant in variants:
            print(
                f"[{done + 1}/{steps}] {tier} / {variant.name} ({(time.monotonic() - started) / 60:.0f} min in)",
                flush=True,
            )
            done += 1
            reason = tier_unavailable(variant, tier)
            try:
                if reason is None:
                    result["runs"][tier][variant.name] = measure(tier, variant, files, workdir, load)
            except (RuntimeError, TimeoutError) as exc:  # a server that never got ready: the run goes on
                reason = f"failed: {exc}"
            if reason is not None:
                print(f"  {variant.name} on {tier}: {reason}", flush=True)
                result["left_out"][f"{variant.name} on {tier}"] = reason
            # Every variant's figures are kept as soon as they exist: a long run stopped later loses nothing.
            (workdir / "partial.json").write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n")
        result["peers"][tier] = measure_peers(
            tier, result["runs"][tier], sets[0], workdir, load[llama_peer.PEER_CLIENTS]
        )
        (workdir / "partial.json").write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n")
    # Copy bandwidth moves with the neighbours' load: measured again at the end, the floor takes the better one.
    start, end = result["bandwidth"]["gb_per_s"], llama_peer.bandwidth()["gb_per_s"]
    result["bandwidth"] |= {"start_gb_per_s": start, "end_gb_per_s": end, "gb_per_s": max(start, end)}
    result["loadavg_end"] = os.getloadavg()
    result["duration_s"] = round(time.monotonic() - started, 1)
    engine_report.decide(result)
    path = DEFAULT_RESULTS_DIR / f"engines-{stamp}.json"
    path.write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n")
    return result | {"path": str(path)}


def run_header(kind: str, stamp: str, limit: int | None) -> dict:
    """What every engine runner's results begin with: the kind (a --limit run is a smoke run), the start, the
    load average and the CPU."""
    return {
        "kind": "smoke" if limit else kind,
        "started_utc": stamp,
        "loadavg_start": os.getloadavg(),
        "cpu_count": os.cpu_count(),
        "cpu": cpu(),
    }


def _questions(name: str, limit: int | None, workdir: Path) -> Path:
    """The set's question file, or its first `limit` questions in a copy (a smoke run)."""
    path = REPO_ROOT / "data" / f"{name}.questions.jsonl"
    if not limit:
        return path
    short = workdir / f"{name}.first-{limit}.questions.jsonl"
    short.write_text("".join(path.read_text().splitlines(keepends=True)[:limit]))
    return short


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m evaluation.engines", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--engines",
        default="default",
        help=f"comma-separated variants of {', '.join(VARIANTS)} (default: every available one)",
    )
    parser.add_argument("--tiers", default="installed", help="comma-separated tiers (default: every installed one)")
    parser.add_argument("--sets", default=",".join(DEFAULT_SETS), help="comma-separated question sets (kelvane too)")
    parser.add_argument(
        "--limit", type=int, help="only the first N questions of each set (a smoke run; not publishable)"
    )
    parser.add_argument(
        "--load",
        default=",".join(f"{c}:{r}" for c, r in LEVELS.items()),
        help="closed-loop levels after the evaluation, CLIENTS:REQUESTS, comma-separated (default: %(default)s)",
    )
    return publishing_options(parser)


def publishing_options(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """--publish and --report, as every engine runner takes them."""
    parser.add_argument("--publish", action="store_true", help="update bench/results/latest, the docs and the chart")
    parser.add_argument(
        "--report", help="only re-render the table (and with --publish, the docs) from this results file"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.report:
        result = json.loads(Path(args.report).read_text())
        engine_report.decide(result)
    else:
        try:
            names = tier_names(args.tiers)
            variants, left_out = select_variants(args.engines)
            sets = tuple(s for s in args.sets.split(",") if s)
            levels = load_levels(args.load)
            level_requests(levels, sets[0] if sets else "", args.limit)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        if not variants:
            print(f"error: no engine variant can run here: {json.dumps(left_out)}", file=sys.stderr)
            return 2
        result = run(names, variants, left_out, sets, args.limit, levels)
        print(f"results: {result['path']}")
    print(engine_report.table(result))
    if args.publish:
        if result["kind"] != "engines":
            print("error: a --limit run is a smoke run and is not published", file=sys.stderr)
            return 2
        engine_report.publish(result)
        print(
            "published to docs/performance.md, docs/images/engines.png, README.md and bench/results/latest/engines.json"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
