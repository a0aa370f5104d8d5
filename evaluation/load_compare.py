"""`python -m evaluation.load_compare`: answers per second of several setups at N clients, side by side.

A setup is an architecture and an engine (`monolito:openvino`, `microservicos:ctranslate2`, ...) serving the
set's index with the tier. Each level runs on a server started for it alone, warmed up on two questions of no
set, and asks distinct questions of the set, each once (evaluation.quality: `on_fresh_server`, `closed_loop`), so
that no prompt cache answers a question again; the setups take turns, round after round, so that a neighbour's
load lands on all of them alike. With `--peer FILE` (a `make bench-engines` results file that ran the tier on the
set), llama.cpp's own server takes its turn too, on our exact prompts as token ids with our answers' lengths
(evaluation.llama_peer, f32). This is how docs/performance.md compares the architectures on OpenVINO with the peer.

    --setups monolito:openvino,microservicos:openvino   --clients 8   --requests 73   --repeats 2
    --set sample   --tier default   --peer bench/results/engines-<time>.json

Results go to bench/results/load-compare-<time>.json; a table is printed. Measure alone.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

from bench.core.config import DEFAULT_RESULTS_DIR, REPO_ROOT
from bench.core.processes import child_env
from evaluation import llama_peer
from evaluation.engines import REFERENCE, peer_bodies, run_header
from evaluation.evaluate import load_questions
from evaluation.ladder import tier_names
from evaluation.previous import build_index
from evaluation.quality import ARCHS, closed_loop, fresh_questions, on_fresh_server
from rag.ladder import default_tier
from rag.settings import LLM_ENGINES

PEER = "llama-server f32"


def parse_setups(text: str) -> list[tuple[str, str]]:
    """ "monolito:openvino,microservicos:ctranslate2" -> [(arch, engine), ...]."""
    setups = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        arch, _, engine = part.partition(":")
        if arch not in ARCHS or engine not in LLM_ENGINES:
            raise ValueError(
                f"--setups {part!r}: ARCH:ENGINE, ARCH one of {', '.join(ARCHS)}, ENGINE one of {', '.join(LLM_ENGINES)}"
            )
        setups.append((arch, engine))
    if not setups:
        raise ValueError("--setups: at least one ARCH:ENGINE")
    return setups


def peer_prompts(results_file: Path, tier: str, set_name: str, requests: int) -> list[dict]:
    """llama-server bodies for the first `requests` distinct questions, from a bench-engines run's records."""
    result = json.loads(results_file.read_text())
    runs = result.get("runs", {}).get(tier, {})
    source = REFERENCE if REFERENCE in runs else next((n for n, r in runs.items() if r["precision"] == "float32"), None)
    if source is None or set_name not in runs[source]["sets"] or "records" not in runs[source]["sets"][set_name]:
        raise ValueError(f"--peer {results_file}: no float32 run of {tier} on {set_name} with its records")
    records = runs[source]["sets"][set_name]["records"]
    asked = set(fresh_questions([r["question"] for r in records], requests, "--peer"))
    bodies, _ = peer_bodies(tier, [r for r in records if r["question"] in asked])
    return bodies


def run(
    setups,
    tier: str,
    set_name: str,
    clients: int,
    requests: int,
    repeats: int,
    peer: Path | None,
    results_dir: Path = DEFAULT_RESULTS_DIR,
) -> dict:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    workdir = results_dir / f"load-compare-{stamp}"
    workdir.mkdir(parents=True, exist_ok=True)
    questions = [q.question for q in load_questions(REPO_ROOT / "data" / f"{set_name}.questions.jsonl")]
    fresh_questions(questions, requests, f"{clients} clients")  # refuses more requests than distinct questions
    bodies = peer_prompts(peer, tier, set_name, requests) if peer else None
    if bodies is not None and not llama_peer.server_binary().exists():
        raise ValueError(f"--peer: no llama-server at {llama_peer.server_binary()}; `make peer` builds it")
    result = run_header("load-compare", stamp, None) | {
        "tier": tier,
        "set": set_name,
        "clients": clients,
        "requests": requests,
        "repeats": repeats,
        "setups": [f"{a}:{e}" for a, e in setups] + ([PEER] if bodies else []),
        "levels": [],
    }
    index = build_index(REPO_ROOT, REPO_ROOT / "data" / set_name, workdir / f"index-{set_name}", child_env())
    turns = len(result["setups"]) * repeats
    for repeat in range(repeats):
        for name in result["setups"]:
            print(f"[{len(result['levels']) + 1}/{turns}] {name}, round {repeat + 1}", flush=True)
            log_path = workdir / f"{name.replace(':', '-').replace(' ', '-')}-{repeat + 1}.log"
            if name == PEER:
                gguf = llama_peer.gguf_path(tier, "f32")
                level = llama_peer.load_level(gguf, bodies, clients, log_path, os.cpu_count() or 1)
            else:
                arch, engine = name.split(":")
                env = {"RAG_LLM_MODEL": f"embedded:{tier}", "RAG_LLM_ENGINE": engine}
                env |= {"RAG_MAX_CONCURRENT_REQUESTS": max(clients, 16)}
                level = on_fresh_server(
                    arch,
                    index,
                    log_path,
                    partial(closed_loop, questions=questions, clients=clients, requests=requests),
                    env=env,
                    ready_deadline_s=900,
                )
            result["levels"].append(level | {"setup": name, "round": repeat + 1})
            print(f"  {level['answers_per_s']} answers/s", flush=True)
    result["loadavg_end"] = os.getloadavg()
    path = results_dir / f"load-compare-{stamp}.json"
    path.write_text(json.dumps(result, indent=1) + "\n")
    return result | {"path": str(path)}


def table(result: dict) -> str:
    peer = [level["answers_per_s"] for level in result["levels"] if level["setup"] == PEER]
    lines = [
        f"| setup | answers/s at {result['clients']} clients, each round | against {PEER}, each round | p50 (s) | peak RSS (MiB) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name in result["setups"]:
        levels = [level for level in result["levels"] if level["setup"] == name]
        rates = [level["answers_per_s"] for level in levels]
        against = ", ".join(f"{r / p:.2f}x" for r, p in zip(rates, peer)) if peer and name != PEER else "-"
        p50 = ", ".join(f"{level['latency_ms_p50'] / 1000:.1f}" for level in levels)
        rss = ", ".join(f"{level['peak_rss_mib']:,.0f}" for level in levels)
        lines.append(f"| {name} | {', '.join(f'{r:.2f}' for r in rates)} | {against} | {p50} | {rss} |")
    lines.append(
        f"\n{result['requests']} distinct questions of `{result['set']}` once each per level, tier `{result['tier']}`, "
        f"{result['repeats']} round(s); load average {result['loadavg_start'][0]:.2f} at the start, "
        f"{result['loadavg_end'][0]:.2f} at the end."
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evaluation.load_compare", description=__doc__.splitlines()[0])
    parser.add_argument("--setups", default="monolito:openvino,microservicos:openvino,monolito:ctranslate2")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=73)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--set", default="sample")
    parser.add_argument("--tier", default="default")
    parser.add_argument("--peer", type=Path, help="a make bench-engines results file: llama-server takes a turn too")
    args = parser.parse_args(argv)
    try:
        setups = parse_setups(args.setups)
        tier = tier_names(default_tier() if args.tier == "default" else args.tier)[0]
        if not (REPO_ROOT / "data" / f"{args.set}.questions.jsonl").is_file():
            raise ValueError(f"no question set {args.set!r} in data/")
        if args.clients < 1 or args.repeats < 1 or args.requests < args.clients:
            raise ValueError("--clients and --repeats at least 1, --requests at least --clients")
        result = run(setups, tier, args.set, args.clients, args.requests, args.repeats, args.peer)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(table(result))
    print(f"results: {result['path']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
