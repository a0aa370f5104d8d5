"""`make eval-models`: every installed tier of the model ladder, on every dev set, on both architectures.

For each tier (rag/model_ladder.toml, installed by `make models LLM=...`) and each question set it serves
the set's index with the monolith and the microservices exactly as `make serve` does, with
RAG_LLM_MODEL=embedded:<tier> (so on the engine and quantization its tier names, unless RAG_LLM_ENGINE or
RAG_LLM_QUANTIZE says otherwise; the table says which), runs `make eval`'s evaluation against each over HTTP, and checks that both
gave the same answer and sources to every question. Speed comes from the same run: the c=1 latency of
every question (the evaluation asks one at a time), then a closed-loop burst of 8 clients against a fresh
monolith (32 questions, each once); the ready time, and the peak RSS of each architecture's whole process tree
(the monolith's over the burst too).

Then it applies the ladder's rule for the default (docs/evaluation.md#the-model-ladder): the tier with
the highest accuracy on the held-out sets whose c=1 p50 is at most 1.5x the current default's, in the
same run, and whose microservices tree fits an ml.m5.large with headroom. Results go to
bench/results/models-<time>.json; --publish copies them to bench/results/latest/models.json and
regenerates the table in docs/evaluation.md and the README's summary.
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
from bench.core.stats import percentile
from evaluation.evaluate import percent_text
from evaluation.previous import build_index
from evaluation.quality import ARCHS, closed_loop, identical, on_fresh_server, replace_between, serve_and_evaluate
from rag.ladder import default_tier, tiers
from rag.models import is_prepared, tier_dir
from rag.settings import Settings

SETS = ("sample", "harbourline", "kelvane")
HELD_OUT = ("harbourline", "kelvane")  # the rule reads these; `sample` is the tuning set
DOC = REPO_ROOT / "docs" / "evaluation.md"
BEGIN, END = "<!-- models:begin -->", "<!-- models:end -->"
README = REPO_ROOT / "README.md"
README_BEGIN, README_END = "<!-- models-summary:begin -->", "<!-- models-summary:end -->"
LATENCY_RULE = 1.5  # the default's c=1 p50 may grow at most this much
INSTANCE_MIB = 8 * 1024  # ml.m5.large
HEADROOM = 0.75  # the microservices tree's peak RSS must stay under this share of the instance's memory
BURST_CLIENTS, BURST_REQUESTS = 8, 32


def _disk_mib(folder: Path) -> float:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file()) / 2**20


def _serve(tier: str, arch: str, index: Path, questions: Path, workdir: Path, burst: bool) -> dict:
    log_path = workdir / f"{tier}-{questions.stem}-{arch}.log"
    env = {"RAG_LLM_MODEL": f"embedded:{tier}"}
    run = serve_and_evaluate(arch, index, questions, log_path, env=env, ready_deadline_s=900)
    run.pop("then")
    if burst:  # on a server of its own, each question once: no prompt cache holds what the evaluation asked
        asked = [r["question"] for r in run["records"]]
        run["burst"] = on_fresh_server(
            arch,
            index,
            log_path.with_name(f"{log_path.stem}-burst.log"),
            partial(closed_loop, questions=asked, clients=BURST_CLIENTS, requests=BURST_REQUESTS),
            env=env,
            ready_deadline_s=900,
        )
        run["peak_rss_mib"] = max(run["peak_rss_mib"], run["burst"]["peak_rss_mib"])  # as when it shared a server
    return run


def served_engine(tier: str, env: dict) -> str:
    """The engine a tier is served with under `env`, as the services resolve it: "ctranslate2 int8", "torch"."""
    settings = Settings.from_env({**env, "RAG_LLM_MODEL": f"embedded:{tier}"})
    return settings.llm_engine + ("" if settings.llm_quantize == "none" else f" {settings.llm_quantize}")


def run(names: list[str], sets: tuple[str, ...], archs: tuple[str, ...]) -> dict:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    workdir = DEFAULT_RESULTS_DIR / f"models-{stamp}"
    workdir.mkdir(parents=True, exist_ok=True)
    result = {
        "kind": "models",
        "started_utc": stamp,
        "loadavg_start": os.getloadavg(),
        "default_before": default_tier(),
        "sets": list(sets),
        "archs": list(archs),
        "tiers": {},
    }
    env = child_env()
    indexes = {name: build_index(REPO_ROOT, REPO_ROOT / "data" / name, workdir / f"index-{name}", env) for name in sets}
    for tier in names:
        entry = {
            "engine": served_engine(tier, env),
            "disk_mib": round(_disk_mib(tier_dir(tiers()[tier])), 1),
            "sets": {},
        }
        for name in sets:
            questions = REPO_ROOT / "data" / f"{name}.questions.jsonl"
            runs = {
                arch: _serve(
                    tier, arch, indexes[name], questions, workdir, burst=(arch == archs[0] and name == sets[0])
                )
                for arch in archs
            }
            if len(archs) == 2:
                runs["parity"] = identical(runs[archs[0]]["records"], runs[archs[1]]["records"])
            entry["sets"][name] = runs
        result["tiers"][tier] = entry
        # Each tier's figures are kept as soon as they exist: a long run stopped later loses no tier.
        (workdir / "partial.json").write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n")
    result["loadavg_end"] = os.getloadavg()
    result["rows"] = rows(result)
    result["choice"] = choose(result["rows"], result["default_before"])
    path = DEFAULT_RESULTS_DIR / f"models-{stamp}.json"
    path.write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n")
    return result | {"path": str(path)}


def rows(result: dict) -> dict:
    """One row of figures per tier: quality per set (monolith), speed and memory over the whole run."""
    table = {}
    first = result["archs"][0]
    for tier, entry in result["tiers"].items():
        sets = entry["sets"]
        latencies = [r["latency_ms"] for s in sets.values() for r in s[first]["records"] if r["error"] is None]
        burst = next((s[first]["burst"] for s in sets.values() if s[first].get("burst")), None)
        table[tier] = {
            "engine": entry.get("engine"),  # runs before 20261203T194534Z did not record it: all torch
            "quality": {
                name: {
                    key: s[first]["summary"][key]
                    for key in ("accuracy", "refusal", "false_refusal", "hit_at_1", "answer_in_context")
                }
                for name, s in sets.items()
            },
            "held_out_accuracy": _mean([sets[n][first]["summary"]["accuracy"] for n in HELD_OUT if n in sets]),
            "latency_ms_p50": percentile(latencies, 50),
            "latency_ms_p95": percentile(latencies, 95),
            "answers_per_s_8_clients": burst["answers_per_s"] if burst else None,
            "peak_rss_mib": {arch: max(s[arch]["peak_rss_mib"] for s in sets.values()) for arch in result["archs"]},
            "ready_s": max(s[first]["ready_s"] for s in sets.values()),
            "disk_mib": entry["disk_mib"],
            "parity": [s["parity"] for s in sets.values() if "parity" in s],
        }
    return table


def _mean(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return round(sum(values) / len(values), 4) if values else None


def choose(table: dict, current: str, reference_ms: float | None = None) -> dict:
    """The ladder's rule, applied to one run's rows; says which tier wins and why the others do not.
    The latency budget is 1.5x the current default's c=1 p50, or 1.5x `reference_ms` when given (make
    bench-engines: the default as it is served today, while each row is a tier's fastest engine)."""
    if current not in table:
        return {"tier": None, "reason": f"the current default {current} was not measured in this run"}
    budget = LATENCY_RULE * (table[current]["latency_ms_p50"] if reference_ms is None else reference_ms)
    verdicts, eligible = {}, []
    for tier, row in table.items():
        rss = row["peak_rss_mib"].get("microservicos")
        if row["latency_ms_p50"] > budget:
            verdicts[tier] = f"c=1 p50 {row['latency_ms_p50']:,.0f} ms > {budget:,.0f} ms (1.5x {current})"
        elif rss is not None and rss > HEADROOM * INSTANCE_MIB:
            verdicts[tier] = f"microservices peak RSS {rss:,.0f} MiB > {HEADROOM * INSTANCE_MIB:,.0f} MiB"
        else:
            verdicts[tier] = "within the limits"
            eligible.append(tier)
    winner = max(eligible, key=lambda t: (table[t]["held_out_accuracy"] or 0, t == current))
    return {"tier": winner, "latency_budget_ms": round(budget, 1), "verdicts": verdicts}


def table(result: dict) -> str:
    """The Markdown table of docs/evaluation.md: one row per tier."""
    sets = result["sets"]
    header = (
        "| tier | "
        + " | ".join(f"{name}: accuracy / refusal / false refusals / hit@1 / in context" for name in sets)
        + " | c=1 p50 / p95 (ms) | answers/s, 8 clients | peak RSS monolith / microservices (MiB) "
        "| ready (s) | disk (MiB) | same answers on both |"
    )
    lines = [header, "|" + " --- |" * (len(sets) + 7)]
    for tier, row in result["rows"].items():
        quality = [
            " / ".join(percent_text(row["quality"][n][k]) for k in ("accuracy", "refusal", "false_refusal", "hit_at_1"))
            + f" / {percent_text(row['quality'][n]['answer_in_context'])}"
            for n in sets
        ]
        rss = " / ".join(f"{row['peak_rss_mib'].get(a, 0):,.0f}" for a in ARCHS if a in row["peak_rss_mib"])
        same = ", ".join(f"{p['identical']}/{p['questions']}" for p in row["parity"]) or "not run"
        mark = " (**chosen**)" if tier == result["choice"]["tier"] else ""
        throughput = row["answers_per_s_8_clients"]
        speed = (
            f"{row['latency_ms_p50']:,.0f} / {row['latency_ms_p95']:,.0f} | "
            + ("n/a" if throughput is None else f"{throughput:.2f}")
            + f" | {rss} | {row['ready_s']:.0f} | {row['disk_mib']:,.0f} | {same}"
        )
        engine = f" on {row['engine']}" if row.get("engine") else ""
        lines.append(f"| `{tier}`{engine}{mark} | " + " | ".join(quality) + f" | {speed} |")
    load = result["loadavg_start"][0]
    lines += [
        "",
        f"Measured {result['started_utc']} on this machine's 2 CPU cores (load average {load:.1f} at the start), "
        f"{' and '.join(result['archs'])}; the rule chose `{result['choice']['tier']}` "
        f"(c=1 p50 budget {result['choice'].get('latency_budget_ms', 0):,.0f} ms). "
        + "; ".join(f"`{t}`: {v}" for t, v in result["choice"].get("verdicts", {}).items())
        + ".",
    ]
    return "\n".join(lines)


def publish(result: dict) -> None:
    latest = DEFAULT_RESULTS_DIR / "latest"
    latest.mkdir(parents=True, exist_ok=True)
    slim = {k: v for k, v in result.items() if k != "tiers"} | {
        "misses": {
            tier: {
                name: [r for r in runs[result["archs"][0]]["records"] if not r["correct"]]
                for name, runs in entry["sets"].items()
            }
            for tier, entry in result["tiers"].items()
        }
    }
    (latest / "models.json").write_text(json.dumps(slim, indent=1, ensure_ascii=False) + "\n")
    replace_between(DOC, BEGIN, END, table(result))
    choice = result["choice"]["tier"]
    held = "; ".join(
        f"`{tier}` {percent_text(row['held_out_accuracy'])} at c=1 p50 {row['latency_ms_p50']:,.0f} ms"
        for tier, row in result["rows"].items()
    )
    replace_between(README, README_BEGIN, README_END, f"Held-out accuracy by tier: {held}; the rule chose `{choice}`.")


def tier_names(spec: str) -> list[str]:
    """The tiers a --tiers value names ("installed": every installed one); ValueError names any not installed."""
    installed = [name for name, tier in tiers().items() if is_prepared(tier)]
    names = installed if spec == "installed" else [t for t in spec.split(",") if t]
    missing = [name for name in names if name not in installed]
    if missing or not names:
        raise ValueError(f"not installed: {missing or 'any tier'}; run `make models LLM=<tier>`")
    return names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evaluation.ladder", description=__doc__.splitlines()[0])
    parser.add_argument("--tiers", default="installed", help="comma-separated tiers (default: every installed one)")
    parser.add_argument("--sets", default=",".join(SETS), help="comma-separated question sets")
    parser.add_argument("--archs", default=",".join(ARCHS), help="monolito, microservicos or both")
    parser.add_argument("--publish", action="store_true", help="update bench/results/latest and the docs")
    parser.add_argument("--report", help="only re-render the table from this results file")
    args = parser.parse_args(argv)
    if args.report:
        result = json.loads(Path(args.report).read_text())
    else:
        try:
            names = tier_names(args.tiers)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        archs = tuple(a for a in args.archs.split(",") if a)
        result = run(names, tuple(s for s in args.sets.split(",") if s), archs)
    print(table(result))
    if args.publish:
        publish(result)
        print(f"published to {DOC.relative_to(REPO_ROOT)}, README.md and bench/results/latest/models.json")
    parity = [p for row in result["rows"].values() for p in row["parity"]]
    return 0 if all(p["identical"] == p["questions"] for p in parity) else 1


if __name__ == "__main__":
    sys.exit(main())
