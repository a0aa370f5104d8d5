"""The README's comparison table: one row per claim of the original README, each with the measured
figure for each architecture, a verdict derived from the numbers, and the chart that shows it.

A verdict says "confirmed" or "refuted" only when its 95 % interval lies wholly on one side; otherwise it
says "inconclusive", with the interval. Figures with no interval (one kill per architecture) get none."""

from __future__ import annotations

from bench.core.stats import ABOVE, BELOW, INCONCLUSIVE, interval_text, side_of

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


def _decide(interval: dict, above: str, below: str, unit: str = " ms", digits: int = 1, key: str = "difference") -> str:
    """`above` / `below` when the 95 % interval lies wholly on that side of zero, else `inconclusive`;
    the estimate and its interval always follow."""
    side = side_of(interval.get("low"), interval.get("high"))
    word = {ABOVE: above, BELOW: below, INCONCLUSIVE: "inconclusive"}[side]
    value = interval.get(key)
    estimate = "n/a" if value is None else f"{value:+,.{digits}f}{unit}"
    return f"{word}: {estimate}, {interval_text(interval.get('low'), interval.get('high'), unit, digits)}" + (
        " spans zero" if side == INCONCLUSIVE and value is not None else ""
    )


def _latency_rows(s: dict) -> list[dict]:
    level = str(s["targets"]["concurrency"])
    mono, micro = (s["latency"][a][level]["clean_e2e_ms"].get("p50") for a in ("monolito", "microservicos"))
    paired = s["overhead"][level]["microservicos_vs_monolito"]
    floor = s["overhead"][level]["floor_microservicos_vs_monolito"]
    generate = s["latency"]["monolito"][level]["stages_ms"]["generate"]["p50"]
    verdict = (
        _decide(paired, "confirmed, microservices slower", "refuted, microservices faster")
        + f" (median of {paired.get('n', 0)} paired twins at c={level}, microservices minus monolith, "
        f"{paired.get('left_out', 0)} pairs left out for CPU stall or errors); per-question floors "
        f"{_decide(floor, 'slower', 'faster')} ({_consistency(floor)}); generation ({_ms(generate)}) "
        "dwarfs the two loopback hops"
    )
    logged = s.get("hops_from_logs", {})
    hop = logged.get("hop_ms", {})
    if hop.get("/retrieve", {}).get("n") and hop.get("/generate", {}).get("n"):
        # Measured directly: the orchestrator's stage time minus the service's own logged time.
        total = logged["total_ms"]
        hop_verdict = (
            _decide({**total, "difference": total["estimate"]}, "confirmed", "refuted")
            + f" per request for both hops at the median (retrieve hop {hop['/retrieve']['p50']:.1f} ms, "
            f"generate hop {hop['/generate']['p50']:.1f} ms: orchestrator stage time minus the service's "
            f"own logged time)"
            + (f", {100 * (total['estimate'] or 0.0) / mono:.2f} % of a median request" if mono else "")
        )
    else:
        hops = s["overhead"][level]["floor_hops_ms"]
        both = [side_of(hops[stage].get("low"), hops[stage].get("high")) for stage in ("retrieve", "generate")]
        word = "confirmed" if both == [ABOVE, ABOVE] else "inconclusive"
        hop_verdict = (
            f"{word}: on the floors the retrieve hop adds {_decide(hops['retrieve'], 'more', 'less')}, "
            f"the generate hop {_decide(hops['generate'], 'more', 'less')}"
        )
    return [
        {
            "claim": "Monolith: lower internal latency (no HTTP calls)",
            "chart": "overhead.png",
            "monolith": f"p50 {_ms(mono)} (c={level}, unstalled blocks)",
            "microservices": f"p50 {_ms(micro)} (c={level}, unstalled blocks)",
            "verdict": verdict,
        },
        {
            "claim": "Microservices: pay network overhead",
            "chart": "overhead.png",
            "monolith": f"retrieve p50 {_ms(s['latency']['monolito'][level]['stages_ms']['retrieve']['p50'])}",
            "microservices": f"retrieve p50 {_ms(s['latency']['microservicos'][level]['stages_ms']['retrieve']['p50'])} "
            f"(incl. HTTP to the vector service)",
            "verdict": hop_verdict,
        },
    ]


def _boot_row(s: dict) -> dict:
    cold = s["cold_start"]
    mono, micro = cold["monolito"]["ready_s"], cold["microservicos"]["ready_s"]
    difference = cold["microservices_minus_monolith_s"]
    verdict = (
        _decide(
            difference, "confirmed, the monolith is ready sooner", "refuted, the microservices are ready sooner", " s"
        )
        + f" (median microservices minus monolith, {mono['n']} starts each); the three "
        "processes load in parallel, which helps with spare cores and hurts without"
    )
    fmt = "median {p50:.1f} s (range {min:.1f}-{max:.1f}, n={n})"
    return {
        "claim": "Monolith: boots faster",
        "chart": "cold_start.png",
        "monolith": fmt.format(**mono),
        "microservices": fmt.format(**micro),
        "verdict": verdict,
    }


def _felt(f: dict) -> str:
    """What clients felt: seconds down and availability over the experiment, and failed requests."""
    whole = f.get("availability") or {}
    down = whole.get("down_s")
    return (
        f"down {down:.1f} s of {whole['window_s']:.0f} s, {100 * whole['availability']:.1f} % available "
        if down is not None and whole.get("availability") is not None
        else ""
    ) + (
        f"({f['failed']} requests failed: {', '.join(sorted(f['error_types']))}; first answer "
        f"{f['first_answer_s'] or float('nan'):.1f} s after the kill)"
    )


# Probes that must keep answering while the other stage is down, for isolation to count as shown.
MIN_PROBES_DURING_OUTAGE = 5


def _isolation(f: dict, probe: str) -> str:
    """`confirmed` when enough probes of the other stage ran during the outage and none failed, `refuted`
    when one failed, else `inconclusive` (too few probes to tell)."""
    during = f.get("during_outage", {}).get(probe, {"count": 0, "failed": 0})
    if during["failed"]:
        return f"refuted: {during['failed']} of {during['count']} {probe} probes failed during the outage"
    word = "confirmed" if during["count"] >= MIN_PROBES_DURING_OUTAGE else "inconclusive (too few probes)"
    return f"{word}: {during['count']} of {during['count']} {probe} probes answered during the outage"


def _fault_rows(s: dict) -> list[dict]:
    mono, llm, vector = (
        _fault(s, "monolito", "monolith"),
        _fault(s, "microservicos", "llm_service"),
        _fault(s, "microservicos", "vector_service"),
    )
    if not (mono and llm and vector):
        return []
    # That one process holds every stage is how the monolith is built, not a finding: what users feel is
    # how long the service is down. One kill per architecture gives no interval, so no verdict.
    outage_verdict = (
        "inconclusive (one kill per architecture, no interval): clients saw "
        f"{mono['availability']['down_s']:.1f} s down with the monolith and "
        f"{llm['availability']['down_s']:.1f} s with the LLM service killed; every request needs both "
        "stages, so a dead stage is an outage in both"
    )
    isolation_verdict = (
        f"LLM killed: {_isolation(llm, 'vector /retrieve')}; vector killed: "
        f"{_isolation(vector, 'llm /ping')}; restarted only {', '.join(llm['workers_restarted'])} and "
        f"{', '.join(vector['workers_restarted'])} respectively. Requests that need the dead stage "
        "still fail until it is back"
    )
    return [
        {
            "claim": "Monolith: cascading crashes",
            "chart": "faults.png",
            "monolith": _felt(mono),
            "microservices": "LLM killed: " + _felt(llm),
            "verdict": outage_verdict,
        },
        {
            "claim": "Microservices: fault isolation",
            "chart": "faults.png",
            "monolith": _felt(mono),
            "microservices": "vector killed: " + _felt(vector),
            "verdict": isolation_verdict,
        },
    ]


def _resource_rows(s: dict) -> list[dict]:
    level = str(s["targets"]["concurrency"])
    memory, stages = s["memory"], s["latency"]["monolito"][level]["stages_ms"]
    roles = memory["microservicos"]["by_role_mib"]
    idle_roles = memory["microservicos"].get("idle_by_role_mib") or roles
    mono_rss, llm_rss = memory["monolito"]["steady_rss_mib"], roles.get("llm_service", 0.0)
    mono_idle, llm_idle = memory["monolito"]["idle_rss_mib"], idle_roles.get("llm_service", 0.0)
    # What retrieval adds to a replica: a monolith (master + worker, both models) against an LLM service
    # (master + worker, one model). The vector service's own RSS would overstate it: most of that is the
    # Python and torch runtime, which the monolith shares between the two models.
    retrieval_mib = mono_rss - llm_rss
    ram_share, time_share = retrieval_mib / mono_rss, stages["retrieve"]["p50"] / stages["total"]["p50"]
    small = ram_share < SMALL_SHARE and time_share < SMALL_SHARE
    waste = (
        f"{'depends on how heavy retrieval is; negligible here' if small else 'confirmed'}: a monolith replica "
        f"added for LLM capacity also carries retrieval, {retrieval_mib:+,.0f} MiB ({100 * ram_share:+.1f} % of the "
        f"replica: monolith minus LLM service, steady RSS) and {100 * time_share:.1f} % of request time; a larger "
        "index or embedding model would change that"
    )
    # Memory has no interval: the two readings (idle, steady) stand in for one, and must agree.
    savings = [1 - llm_idle / mono_idle, 1 - llm_rss / mono_rss]
    if min(savings) >= SMALL_SHARE:
        word = "confirmed"
    elif max(savings) < SMALL_SHARE:
        word = "depends on the stage sizes; no gain here"
    else:
        word = "inconclusive (the two readings disagree)"
    scaling = (
        f"{word}: each LLM replica costs {_mib(llm_rss)} instead of {_mib(mono_rss)} "
        f"({100 * savings[1]:+.1f} % saved steady, {100 * savings[0]:+.1f} % idle) and retrieval keeps its own "
        f"replica count; one vector service answers a retrieval in "
        f"{_ms(s['latency']['microservicos'][level]['stages_ms']['retrieve']['p50'])} (with its HTTP hop), so "
        "it can feed many LLM replicas"
    )
    extra = [memory["microservicos"]["idle_rss_mib"] - mono_idle, memory["microservicos"]["steady_rss_mib"] - mono_rss]
    extra_pss = memory["microservicos"]["steady_pss_mib"] - memory["monolito"]["steady_pss_mib"]
    base_word = (
        "confirmed" if min(extra) > 0 else "refuted" if max(extra) < 0 else "inconclusive (the readings disagree)"
    )
    return [
        {
            "claim": "Monolith: wasted hardware (scaling the LLM scales retrieval too)",
            "chart": "memory.png",
            "monolith": f"{_mib(mono_rss)} per replica (steady RSS)",
            "microservices": f"LLM service {_mib(llm_rss)} per LLM replica",
            "verdict": waste,
        },
        {
            "claim": "Microservices: independent scaling",
            "chart": "memory.png",
            "monolith": f"+{_mib(mono_rss)} per replica, retrieval included",
            "microservices": f"+{_mib(llm_rss)} per LLM replica",
            "verdict": scaling,
        },
        {
            "claim": "Microservices: higher base RAM",
            "chart": "memory.png",
            "monolith": f"steady RSS {_mib(mono_rss)}, PSS {_mib(memory['monolito']['steady_pss_mib'])}",
            "microservices": f"steady RSS {_mib(memory['microservicos']['steady_rss_mib'])}, "
            f"PSS {_mib(memory['microservicos']['steady_pss_mib'])}",
            "verdict": f"{base_word}: {extra[1]:+,.0f} MiB RSS steady ({100 * extra[1] / mono_rss:+.0f} %), "
            f"{extra[0]:+,.0f} MiB idle, {extra_pss:+,.0f} MiB PSS: a second Python + torch runtime (the vector "
            "service) and the orchestrator",
        },
    ]


def _hardware_row(s: dict) -> dict:
    rows = [r for r in s["cost"]["rows"] if r["gpu_speedup_case"] == "central"]
    mono = next(r for r in rows if r["architecture"] == "monolito")
    micro = next(r for r in rows if r["architecture"] == "microservicos" and r["gpu_instance"] == mono["gpu_instance"])
    change = micro["usd_per_1000_at_scale"] / mono["usd_per_1000"] - 1
    speedup = mono["gpu_generate_speedup"]
    return {
        "claim": "Microservices: heterogeneous hardware (LLM on GPU, retrieval on CPU)",
        "chart": "report.md#cost-per-1000-requests-estimate",
        "monolith": f"{mono['scenario']}: ${mono['usd_per_1000']:.4f} per 1,000 requests (estimate)",
        "microservices": f"{micro['scenario']}: ${micro['usd_per_1000_at_scale']:.4f} at scale, "
        f"${micro['usd_per_1000']:.4f} as one pair (estimate)",
        "verdict": f"depends on the GPU speedup, which is assumed ({speedup}x), not measured: the split is "
        f"{100 * change:+.0f} % per request at scale, because retrieval is a small share of the work",
    }


def claim_rows(summary: dict) -> list[dict]:
    """Every row, in the order of the original README's tables."""
    latency = _latency_rows(summary)
    faults = _fault_rows(summary)
    resources = _resource_rows(summary)
    return [
        latency[0],
        _boot_row(summary),
        *faults[:1],
        resources[0],
        *faults[1:],
        resources[1],
        _hardware_row(summary),
        latency[1],
        resources[2],
    ]


def claims_table(summary: dict, chart_dir: str = CHART_DIR) -> str:
    """The Markdown table; chart links are relative to `chart_dir`."""
    lines = [
        "| claim (original README) | monolith, measured | microservices, measured | verdict | chart |",
        "| --- | --- | --- | --- | --- |",
    ]
    for row in claim_rows(summary):
        link = f"{chart_dir}/{row['chart']}" if chart_dir else row["chart"]
        name = row["chart"].split("#")[0]
        lines.append(
            f"| {row['claim']} | {row['monolith']} | {row['microservices']} | {row['verdict']} | [{name}]({link}) |"
        )
    return "\n".join(lines)
