"""The README's comparison table: one row per claim of the original README, each with the measured
figure for each architecture, a verdict derived from the numbers, and the chart that shows it."""
from __future__ import annotations

CHART_DIR = "../bench/results/latest"  # relative to docs/bench.md, where the table is published
SMALL_SHARE = 0.10  # below this share of a replica's memory or a request's time, a saving is "small here"


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.1f} ms"


def _mib(value: float) -> str:
    return f"{value:,.0f} MiB"


def _fault(summary: dict, arch: str, killed: str) -> dict | None:
    return next((f for f in summary["faults"] if f["architecture"] == arch and f["killed"] == killed), None)


def _consistency(floor: dict) -> str:
    return f"slower for {floor['slower']} of {floor['questions']} questions"


def _latency_rows(s: dict) -> list[dict]:
    level = str(s["targets"]["concurrency"])
    mono, micro = (s["latency"][a][level]["e2e_ms"]["p50"] for a in ("monolito", "microservicos"))
    floor = s["overhead"][level]["floor_microservicos_vs_monolito"]
    hops = s["overhead"][level]["floor_hops_ms"]
    generate = s["latency"]["monolito"][level]["stages_ms"]["generate"]["p50"]
    where = f"per-question floors (best of the repeats) differ by {floor['difference']:+.1f} ms, {_consistency(floor)}"
    if floor["p_slower"] < 0.05:
        verdict = f"confirmed: microservices slower; {where} ({100 * floor['relative']:+.2f} %)"
    elif floor["p_faster"] < 0.05:
        verdict = f"refuted: microservices faster; {where}"
    else:
        verdict = (f"depends on generation time: no consistent difference ({where}); generation ({_ms(generate)}) "
                   "dwarfs the two loopback hops")
    logged = s.get("hops_from_logs", {}).get("hop_ms", {})
    if logged.get("/retrieve", {}).get("n") and logged.get("/generate", {}).get("n"):
        # Measured directly: the orchestrator's stage time minus the service's own logged time.
        hop_total = logged["/retrieve"]["p50"] + logged["/generate"]["p50"]
        hop_verdict = (("confirmed" if hop_total > 0 else "refuted") +
                       f", and small: the two hops cost {hop_total:.1f} ms per request at the median (retrieve hop "
                       f"{logged['/retrieve']['p50']:.1f} ms, generate hop {logged['/generate']['p50']:.1f} ms, p95 "
                       f"{logged['/retrieve']['p95'] + logged['/generate']['p95']:.1f} ms: orchestrator stage time minus "
                       f"the service's own logged time), {100 * hop_total / mono:.2f} % of a median request")
    else:
        hop_total = hops["retrieve"]["difference"] + hops["generate"]["difference"]
        consistent = any(hops[stage]["p_slower"] < 0.05 for stage in hops)
        hop_verdict = (("confirmed" if consistent and hop_total > 0 else "depends (within noise)") +
                       f": on the floors the hops add {hop_total:+.1f} ms (retrieve {hops['retrieve']['difference']:+.1f} "
                       f"ms, {_consistency(hops['retrieve'])}; generate {hops['generate']['difference']:+.1f} ms, "
                       f"{_consistency(hops['generate'])}), {100 * hop_total / mono:+.2f} % of a median request")
    return [
        {"claim": "Monolith: lower internal latency (no HTTP calls)", "chart": "overhead.png",
         "monolith": f"p50 {_ms(mono)} (c={level})", "microservices": f"p50 {_ms(micro)} (c={level})", "verdict": verdict},
        {"claim": "Microservices: pay network overhead", "chart": "overhead.png",
         "monolith": f"retrieve p50 {_ms(s['latency']['monolito'][level]['stages_ms']['retrieve']['p50'])}",
         "microservices": f"retrieve p50 {_ms(s['latency']['microservicos'][level]['stages_ms']['retrieve']['p50'])} "
                          f"(incl. HTTP to the vector service)", "verdict": hop_verdict},
    ]


def _boot_row(s: dict) -> dict:
    cold = s["cold_start"]
    mono, micro = cold["monolito"]["ready_s"], cold["microservicos"]["ready_s"]
    if mono["max"] < micro["min"]:
        verdict = f"confirmed: every monolith start was faster ({mono['p50'] - micro['p50']:+.1f} s at the median)"
    elif micro["max"] < mono["min"]:
        verdict = f"refuted: every microservices start was faster ({micro['p50'] - mono['p50']:+.1f} s)"
    else:
        verdict = (f"depends on the machine: the runs overlap (median difference {micro['p50'] - mono['p50']:+.1f} s); "
                   "the three processes load in parallel, which helps with spare cores and hurts without")
    fmt = "median {p50:.1f} s (range {min:.1f}-{max:.1f}, n={n})"
    return {"claim": "Monolith: boots faster", "chart": "cold_start.png", "monolith": fmt.format(**mono),
            "microservices": fmt.format(**micro), "verdict": verdict}


def _fault_rows(s: dict) -> list[dict]:
    mono, llm, vector = (_fault(s, "monolito", "monolith"), _fault(s, "microservicos", "llm_service"),
                         _fault(s, "microservicos", "vector_service"))
    if not (mono and llm and vector):
        return []

    def outcome(f):
        return (f"{f['failed']} requests failed ({', '.join(sorted(f['error_types']))}) for {f['outage_s']:.1f} s; "
                f"first answer {f['first_answer_s'] or float('nan'):.1f} s after the kill; "
                f"other stages down: {', '.join(f['other_stages_affected']) or 'none'}")

    cascade = bool(mono["other_stages_affected"])
    isolated = not llm["other_stages_affected"] and not vector["other_stages_affected"]
    cascade_verdict = ((
        f"confirmed for processes: the crash took {', '.join(mono['other_stages_affected'])} down with generation" if cascade
        else "refuted: nothing but the killed stage went down") + "; but clients see an outage either way, since "
        f"every request needs both stages ({mono['failed_after_kill_pct']:.0f} % vs {llm['failed_after_kill_pct']:.0f} % "
        "of requests after the kill failed)")
    isolation_verdict = (("confirmed" if isolated else "refuted") + ": killing the LLM worker left retrieval answering "
                         f"({llm['probe_failures'].get('vector /retrieve', {}).get('count', 0)} failed direct /retrieve probes) "
                         f"and restarted only {', '.join(llm['workers_restarted'])}; killing the vector worker restarted only "
                         f"{', '.join(vector['workers_restarted'])}. Depends on the request: requests that need the dead "
                         "stage still fail until it is back")
    return [
        {"claim": "Monolith: cascading crashes", "chart": "faults.png", "monolith": outcome(mono),
         "microservices": "LLM killed: " + outcome(llm), "verdict": cascade_verdict},
        {"claim": "Microservices: fault isolation", "chart": "faults.png", "monolith": outcome(mono),
         "microservices": "vector killed: " + outcome(vector), "verdict": isolation_verdict},
    ]


def _resource_rows(s: dict) -> list[dict]:
    level = str(s["targets"]["concurrency"])
    memory, stages = s["memory"], s["latency"]["monolito"][level]["stages_ms"]
    roles = memory["microservicos"]["by_role_mib"]
    mono_rss, llm_rss = memory["monolito"]["steady_rss_mib"], roles.get("llm_service", 0.0)
    # What retrieval adds to a replica: a monolith (master + worker, both models) against an LLM service
    # (master + worker, one model). The vector service's own RSS would overstate it: most of that is the
    # Python and torch runtime, which the monolith shares between the two models.
    retrieval_mib = mono_rss - llm_rss
    ram_share, time_share = retrieval_mib / mono_rss, stages["retrieve"]["p50"] / stages["total"]["p50"]
    small = ram_share < SMALL_SHARE and time_share < SMALL_SHARE
    waste = (f"{'depends on how heavy retrieval is; negligible here' if small else 'confirmed'}: a monolith replica "
             f"added for LLM capacity also carries retrieval, {retrieval_mib:+,.0f} MiB ({100 * ram_share:+.1f} % of the "
             f"replica: monolith minus LLM service, steady RSS) and {100 * time_share:.1f} % of request time; a larger "
             "index or embedding model would change that")
    extra_rss = memory["microservicos"]["steady_rss_mib"] - mono_rss
    extra_pss = memory["microservicos"]["steady_pss_mib"] - memory["monolito"]["steady_pss_mib"]
    saving = 1 - llm_rss / mono_rss
    scaling = (f"{'confirmed' if saving >= SMALL_SHARE else 'depends on the stage sizes; no gain here'}: each LLM "
               f"replica costs {_mib(llm_rss)} instead of {_mib(mono_rss)} ({100 * saving:+.1f} % saved) and retrieval "
               f"keeps its own replica count; one vector service answers a retrieval in "
               f"{_ms(s['latency']['microservicos'][level]['stages_ms']['retrieve']['p50'])} (with its HTTP hop), so "
               "it can feed many LLM replicas")
    return [
        {"claim": "Monolith: wasted hardware (scaling the LLM scales retrieval too)", "chart": "memory.png",
         "monolith": f"{_mib(mono_rss)} per replica (steady RSS)", "microservices": f"LLM service {_mib(llm_rss)} per LLM replica",
         "verdict": waste},
        {"claim": "Microservices: independent scaling", "chart": "memory.png",
         "monolith": f"+{_mib(mono_rss)} per replica, retrieval included",
         "microservices": f"+{_mib(llm_rss)} per LLM replica", "verdict": scaling},
        {"claim": "Microservices: higher base RAM", "chart": "memory.png",
         "monolith": f"steady RSS {_mib(mono_rss)}, PSS {_mib(memory['monolito']['steady_pss_mib'])}",
         "microservices": f"steady RSS {_mib(memory['microservicos']['steady_rss_mib'])}, "
                          f"PSS {_mib(memory['microservicos']['steady_pss_mib'])}",
         "verdict": ("confirmed" if extra_rss > 0 else "refuted") +
                    f": {extra_rss:+,.0f} MiB RSS ({100 * extra_rss / mono_rss:+.0f} %), {extra_pss:+,.0f} MiB PSS: a second "
                    "Python + torch runtime (the vector service) and the orchestrator"},
    ]


def _hardware_row(s: dict) -> dict:
    rows = [r for r in s["cost"]["rows"] if r["gpu_speedup_case"] == "central"]
    mono = next(r for r in rows if r["architecture"] == "monolito")
    micro = next(r for r in rows if r["architecture"] == "microservicos" and r["gpu_instance"] == mono["gpu_instance"])
    change = micro["usd_per_1000_at_scale"] / mono["usd_per_1000"] - 1
    speedup = mono["gpu_generate_speedup"]
    return {"claim": "Microservices: heterogeneous hardware (LLM on GPU, retrieval on CPU)", "chart": "report.md#cost-per-1000-requests-estimate",
            "monolith": f"{mono['scenario']}: ${mono['usd_per_1000']:.4f} per 1,000 requests (estimate)",
            "microservices": f"{micro['scenario']}: ${micro['usd_per_1000_at_scale']:.4f} at scale, "
                             f"${micro['usd_per_1000']:.4f} as one pair (estimate)",
            "verdict": f"depends on the GPU speedup, which is assumed ({speedup}x), not measured: the split is "
                       f"{100 * change:+.0f} % per request at scale, because retrieval is a small share of the work"}


def claim_rows(summary: dict) -> list[dict]:
    """Every row, in the order of the original README's tables."""
    latency = _latency_rows(summary)
    faults = _fault_rows(summary)
    resources = _resource_rows(summary)
    return [latency[0], _boot_row(summary), *faults[:1], resources[0], *faults[1:], resources[1],
            _hardware_row(summary), latency[1], resources[2]]


def claims_table(summary: dict, chart_dir: str = CHART_DIR) -> str:
    """The Markdown table; chart links are relative to `chart_dir`."""
    lines = ["| claim (original README) | monolith, measured | microservices, measured | verdict | chart |",
             "| --- | --- | --- | --- | --- |"]
    for row in claim_rows(summary):
        link = f"{chart_dir}/{row['chart']}" if chart_dir else row["chart"]
        name = row["chart"].split("#")[0]
        lines.append(f"| {row['claim']} | {row['monolith']} | {row['microservices']} | {row['verdict']} | "
                     f"[{name}]({link}) |")
    return "\n".join(lines)
