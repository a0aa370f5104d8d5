"""Cost per 1,000 requests on SageMaker: an ESTIMATE from measured throughput and bench/serving/prices.json.

Measured here: the monolith's best throughput, and the median stage times at concurrency 1.
Assumed (inputs in prices.json, never measured here): instance prices, linear scaling with vCPUs,
and how much faster the generate stage runs on a GPU. Every instance is taken as fully busy: at
saturation its throughput is set by its busiest resource (its CPUs or its GPU), and cost per 1,000
requests = $/hour / (requests/s x 3600) x 1000.
"""

from __future__ import annotations

import json

from bench.core.config import PRICES_FILE

SPEEDUP_CASES = ("low", "central", "high")


def _per_thousand(usd_per_hour: float, rps: float) -> float:
    return usd_per_hour / (rps * 3.6)


def _inputs(summary: dict, machine: dict) -> dict:
    latency = summary["latency"]
    mono_levels = latency["monolito"]
    level = "1" if "1" in mono_levels else min(mono_levels, key=int)

    def p50(arch, stage):
        return latency[arch][level]["stages_ms"][stage]["p50"]

    return {
        "usable_cpus": machine["usable_cpus"],
        "monolith_best_rps": max(entry["throughput_rps"] for entry in mono_levels.values()),
        "monolith_retrieve_ms": p50("monolito", "retrieve"),
        "monolith_generate_ms": p50("monolito", "generate"),
        "monolith_remainder_ms": p50("monolito", "remainder"),
        "microservices_retrieve_ms": p50("microservicos", "retrieve"),
        "microservices_generate_ms": p50("microservicos", "generate"),
        "microservices_remainder_ms": p50("microservicos", "remainder"),
        "stage_times_at_concurrency": int(level),
    }


def _scenario(scenario: dict, prices: dict, inputs: dict, speedup: float | None) -> dict:
    instances, cpus = prices["instances"], inputs["usable_cpus"]
    if scenario["architecture"] == "monolito":
        instance = instances[scenario["instance"]]
        scale = instance["vcpus"] / cpus
        if instance["gpu"] is None:
            rps = inputs["monolith_best_rps"] * scale
        else:
            gpu_ms = inputs["monolith_generate_ms"] / speedup
            cpu_ms = (inputs["monolith_retrieve_ms"] + inputs["monolith_remainder_ms"]) / scale
            rps = 1000.0 / max(gpu_ms, cpu_ms)
        cost = _per_thousand(instance["usd_per_hour"], rps)
        return {"rps_per_instance": rps, "usd_per_1000": cost, "usd_per_1000_at_scale": cost}
    llm, retrieval = instances[scenario["llm_instance"]], instances[scenario["retrieval_instance"]]
    # The LLM service's GPU time per request; the retrieval tier does retrieval, orchestration and HTTP.
    llm_rps = 1000.0 / (inputs["monolith_generate_ms"] / speedup)
    internal_http_ms = inputs["microservices_generate_ms"] - inputs["monolith_generate_ms"]
    retrieval_ms = (
        inputs["microservices_retrieve_ms"] + inputs["microservices_remainder_ms"] + max(0.0, internal_http_ms)
    )
    retrieval_rps = 1000.0 / retrieval_ms * retrieval["vcpus"] / cpus
    pair_rps = min(llm_rps, retrieval_rps)
    return {
        "rps_per_instance": pair_rps,
        "llm_rps": llm_rps,
        "retrieval_tier_rps": retrieval_rps,
        "llm_instances_per_retrieval_instance": retrieval_rps / llm_rps,
        # One of each (the smallest deployment), and at scale where one retrieval instance feeds
        # several LLM instances (the independent scaling the microservices allow).
        "usd_per_1000": _per_thousand(llm["usd_per_hour"] + retrieval["usd_per_hour"], pair_rps),
        "usd_per_1000_at_scale": _per_thousand(llm["usd_per_hour"], llm_rps)
        + _per_thousand(retrieval["usd_per_hour"], retrieval_rps),
    }


def _uses_gpu(scenario: dict, instances: dict) -> bool:
    return any(instances[scenario[key]]["gpu"] for key in ("instance", "llm_instance") if key in scenario)


def estimate_costs(summary: dict, machine: dict, prices: dict | None = None) -> dict:
    """Every scenario of prices.json, for each assumed GPU speedup; inputs listed with the result."""
    prices = prices or json.loads(PRICES_FILE.read_text())
    inputs = _inputs(summary, machine)
    rows = []
    for scenario in prices["scenarios"]:
        gpu = _uses_gpu(scenario, prices["instances"])
        for case in SPEEDUP_CASES if gpu else (None,):
            speedup = prices["gpu_generate_speedup"][case] if case else None
            rows.append(
                {
                    "scenario": scenario["name"],
                    "architecture": scenario["architecture"],
                    "gpu_instance": scenario.get("llm_instance") or scenario["instance"],
                    "gpu_speedup_case": case,
                    "gpu_generate_speedup": speedup,
                    **_scenario(scenario, prices, inputs, speedup),
                }
            )
    return {
        "label": "ESTIMATE: measured CPU throughput and stage times x assumed prices, CPU scaling and GPU speedup",
        "measured_inputs": inputs,
        "prices": prices["instances"],
        "region": prices["region"],
        "prices_retrieved": prices["retrieved"],
        "prices_note": prices["about"],
        "assumptions": {"gpu_generate_speedup": prices["gpu_generate_speedup"], "cpu_scaling": prices["cpu_scaling"]},
        "rows": rows,
    }
