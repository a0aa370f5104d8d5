"""The Markdown report of one results file, its charts, and publishing: bench/results/latest/ plus the
comparison table in docs/bench.md between its markers."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from bench.core.config import DEFAULT_RESULTS_DIR, REPO_ROOT
from bench.core.stats import interval_text
from bench.serving.analysis import ARCHS, TARGETS, summarize_results
from bench.serving.charts import LABELS, write_charts
from bench.serving.claims import claims_table

README = REPO_ROOT / "docs" / "bench.md"  # the published page; the README links to it
LATEST = DEFAULT_RESULTS_DIR / "latest"
BEGIN, END, PLACEHOLDER = "<!-- bench:begin -->", "<!-- bench:end -->", "<!-- section:bench -->"
README_INTRO = f"""# Monolith vs microservices: measured

`make bench` starts both architectures with the same entrypoints as `make serve` (loopback, free ports),
drives them and an in-process baseline (the same retrieval and generation in one Python process, no HTTP)
with the same questions at concurrency 1, 4 and 8, and measures latency (p50/p95/p99), throughput, the
stage times the server reports, cold start to `/ping` 200, memory summed over each process tree, and what
clients see when a worker is killed under load. It takes about 15 minutes on 2 CPU cores;
`BENCH_QUICK=1 make bench` is a two-minute smoke run (it writes no README and no `latest/`), and
`tests/bench/` runs it in `make check`. `make bench-report` regenerates the report, the charts,
`bench/results/latest/` and this table from the newest results file (`BENCH_RESULTS_DIR` moves the
results; `BENCH_*` variables in `bench/core/config.py` change the workload). The cost figures are an
estimate: measured CPU throughput times the prices and the stated GPU assumption in `bench/serving/prices.json`. The figures below come from one machine (its CPU,
load average and every setting are in the [report](../bench/results/latest/report.md)); the machine was shared,
so read small differences against the confidence intervals, and measure on your own hardware.

How to read the verdicts: each comparison is a median difference with a 95 % bootstrap interval (at
concurrency 1, twin requests, the same question seconds apart on each target, are paired). A claim is
"confirmed" or "refuted", and a target "met" or "missed", only when the whole interval lies on one side;
otherwise the verdict is "inconclusive" and quotes the interval. A block during which runnable tasks
waited more than 250 ms per second for a CPU (Linux PSI, every process on the machine; quiet blocks here
stall 20 to 40 ms/s) ran under someone else's load: the report's latency table counts it, and no interval
or verdict uses it. Memory is read twice (idle after warm-up, steady after the latency phase) and gets a
verdict only when both readings agree. A worker is killed once per architecture, so the fault rows give
outage seconds and time-weighted availability (the share of the experiment during which the latest
request to finish had succeeded) without a verdict. `make bench-report` publishes full runs only; a quick
run is refused.

{BEGIN}
{END}"""


def find_results(results_dir: Path, explicit: str | None = None) -> Path:
    """The results file to report on: the given one, else the newest full run, else latest/results.json.
    Quick runs are never picked: they are smoke tests, not measurements."""
    if explicit:
        return Path(explicit).resolve()
    for path in sorted(results_dir.glob("*.json"), reverse=True):
        if json.loads(path.read_text()).get("kind") == "full":
            return path
    if (LATEST / "results.json").exists():
        return LATEST / "results.json"
    raise FileNotFoundError(f"no full run in {results_dir}; run `make bench` (without BENCH_QUICK) first")


def _row(cells) -> str:
    return "| " + " | ".join(str(cell) for cell in cells) + " |"


def _f(value, digits: int = 1, unit: str = "") -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}{unit}"


def _latency_section(s: dict) -> list[str]:
    lines = [
        "## Latency and throughput",
        "",
        _row(
            [
                "c",
                "target",
                "p50 ms",
                "p95 ms",
                "p99 ms",
                "req/s",
                "errors",
                "retrieve p50",
                "generate p50",
                "remainder p50 (serving + HTTP)",
                "CPU stall ms/s",
                "stalled blocks",
            ]
        ),
        _row(["---"] * 12),
    ]
    for level in s["latency"]["baseline"]:
        for target in TARGETS:
            e = s["latency"][target][level]
            lines.append(
                _row(
                    [
                        level,
                        LABELS[target],
                        _f(e["e2e_ms"]["p50"]),
                        _f(e["e2e_ms"]["p95"]),
                        _f(e["e2e_ms"]["p99"]),
                        _f(e["throughput_rps"], 3),
                        e["errors"],
                        _f(e["stages_ms"]["retrieve"]["p50"]),
                        _f(e["stages_ms"]["generate"]["p50"]),
                        _f(e["stages_ms"]["remainder"]["p50"]),
                        _f(e["cpu_stall_ms_per_s"], 0),
                        f"{e.get('stalled_blocks', 0)} of {e.get('blocks', 0)}",
                    ]
                )
            )
    lines += [
        "",
        "CPU stall: how long runnable tasks on the machine waited for a CPU per second of this target's "
        "blocks (Linux PSI, all processes): the contention each target ran under. Stalled blocks (above "
        f"{s['targets']['cpu_stall_limit_ms_per_s']:.0f} ms/s) stay in this table but are left out of every "
        "interval and verdict.",
        "",
        "Overhead against the in-process baseline (median difference, 95 % bootstrap interval; paired "
        "request by request at c=1), and on the per-question floors (median over questions of the best "
        "repeat's difference, with how many questions were slower):",
        "",
        _row(
            [
                "c",
                "monolith",
                "microservices",
                "microservices - monolith",
                "internal hops (stage p50 diff)",
                "floors: monolith",
                "floors: microservices",
                "floors: micro - mono",
            ]
        ),
        _row(["---"] * 8),
    ]
    for level, row in s["overhead"].items():
        cells = [level]
        for key in (*ARCHS, "microservicos_vs_monolito"):
            d = row[key]["p50_vs_baseline"] if key in ARCHS else row[key]
            pct = (
                f" ({100 * row[key]['p50_ratio']:+.1f} % p50)"
                if key in ARCHS and row[key]["p50_ratio"] is not None
                else ""
            )
            cells.append(
                "n/a"
                if d["difference"] is None
                else f"{d['difference']:+.1f} ms [{d['low']:+.1f}, {d['high']:+.1f}]{pct}"
            )
        hop = row["internal_http_ms"]
        cells.append(f"retrieve {hop['retrieve']:+.1f} ms, generate {hop['generate']:+.1f} ms")
        for floor in (
            row["monolito"]["floor_vs_baseline"],
            row["microservicos"]["floor_vs_baseline"],
            row["floor_microservicos_vs_monolito"],
        ):
            cells.append(
                "n/a"
                if floor["difference"] is None
                else f"{floor['difference']:+.1f} ms ({floor['slower']}/{floor['questions']} slower)"
            )
        lines.append(_row(cells))
    return lines + ["", "![latency](latency.png)", "", "![overhead](overhead.png)", ""]


def _verdict_cell(target: dict, unit: str, digits: int) -> str:
    low, high = target["ci"]
    value = "n/a" if target["value"] is None else f"{target['value']:+,.{digits}f}{unit}"
    return f"{value} ({interval_text(low, high, unit, digits)})"


def _targets_section(s: dict) -> list[str]:
    t = s["targets"]
    c = t["concurrency"]
    rows = [
        (f"monolith p50 within 5 % of the baseline (c={c})", t["monolith_vs_baseline"], " %", 2),
        (f"microservices p50 within 5 ms of the monolith (c={c})", t["microservices_vs_monolith"], " ms", 1),
        ("on the floors: monolith within 5 % of the baseline", t["on_floors"]["monolith_vs_baseline"], " %", 2),
        (
            "on the floors: microservices within 5 ms of the monolith",
            t["on_floors"]["microservices_vs_monolith"],
            " ms",
            1,
        ),
    ]
    rows += [
        (f"{LABELS[arch]} cold start within 2 s of model load", t[f"cold_start_{arch}"], " s", 2) for arch in ARCHS
    ]
    logs = s.get("hops_from_logs") or {}
    decomposition = []
    if logs.get("hop_ms", {}).get("/generate", {}).get("n"):
        hop, own = logs["hop_ms"], logs["service_own_ms"]
        mono_generate = s["latency"]["monolito"][str(c)]["stages_ms"]["generate"]["p50"]
        decomposition = [
            "Where the microservices' extra time goes (c=1, medians): the HTTP hops cost "
            f"{hop['/retrieve']['p50']:.1f} ms (retrieve) + {hop['/generate']['p50']:.1f} ms (generate), measured as "
            "the orchestrator's stage time minus the internal service's own logged handling time; the LLM service's "
            f"own generation took {own['/generate']['p50']:,.1f} ms against the monolith's {mono_generate:,.1f} ms, "
            "so the rest of any gap is generation itself running slower or faster in another process on the "
            "same two cores, not HTTP.",
            "",
        ]
    return [
        "## Serving-overhead targets",
        "",
        f"A target is **met** only when the whole 95 % interval of the difference is within its limit, "
        f"**missed** when the whole interval is beyond it, and *inconclusive* otherwise. Blocks whose CPU stall "
        f"exceeded {t['cpu_stall_limit_ms_per_s']:.0f} ms/s are left out (see the latency table). The floors are "
        "each question's fastest repeat, which a neighbour's burst of load cannot inflate.",
        "",
        _row(["target", "measured (95 % interval)", "n", "verdict"]),
        _row(["---"] * 4),
        *[
            _row(
                [
                    name,
                    _verdict_cell(target, unit, digits),
                    target["n"] if target["n"] is not None else "",
                    {"met": "met", "missed": "**missed**"}.get(target["verdict"], "*inconclusive*"),
                ]
            )
            for name, target, unit, digits in rows
        ],
        "",
        *decomposition,
    ]


def _cold_memory_section(s: dict) -> list[str]:
    cold, memory = s["cold_start"], s["memory"]
    lines = [
        "## Cold start",
        "",
        _row(["what", "median s", "min", "max", "n", "first request after ready (ms)"]),
        _row(["---"] * 6),
        _row(
            [
                "model load in a fresh process (baseline)",
                *(_f(cold["model_load_s"][k], 2) for k in ("p50", "min", "max")),
                cold["model_load_s"]["n"],
                _f(cold["baseline_first_request_ms"]["p50"], 0),
            ]
        ),
    ]
    for arch in ARCHS:
        r = cold[arch]["ready_s"]
        lines.append(
            _row(
                [
                    f"{LABELS[arch]}: process start to /ping 200",
                    *(_f(r[k], 2) for k in ("p50", "min", "max")),
                    r["n"],
                    _f(cold[arch]["first_request_ms"]["p50"], 0),
                ]
            )
        )
    lines += [
        "",
        "Serving's own share of a cold start (process start to /ping 200, minus the load time the service "
        'itself logs as "ready after X s"): '
        + ", ".join(f"{LABELS[arch]} {_f(cold[arch]['startup_overhead_s']['p50'], 2)} s" for arch in ARCHS)
        + ". The microservices load their two models in parallel processes, so on few cores each load is slower "
        "than the same load alone.",
        "",
        "![cold start](cold_start.png)",
        "",
        "## Memory (MiB, summed over every process of the tree)",
        "",
        _row(["target", "idle RSS", "steady RSS", "steady PSS", "peak RSS", "by role (steady RSS)"]),
        _row(["---"] * 6),
        _row(
            [
                "baseline (one process)",
                "",
                _f(memory["baseline"]["rss_mib"], 0),
                _f(memory["baseline"]["pss_mib"], 0),
                "",
                "",
            ]
        ),
    ]
    for arch in ARCHS:
        m = memory[arch]
        roles = ", ".join(
            f"{role} {value:,.0f}" for role, value in sorted(m["by_role_mib"].items(), key=lambda i: -i[1])
        )
        lines.append(
            _row(
                [
                    LABELS[arch],
                    _f(m["idle_rss_mib"], 0),
                    _f(m["steady_rss_mib"], 0),
                    _f(m["steady_pss_mib"], 0),
                    _f(m["peak_rss_mib"], 0),
                    roles,
                ]
            )
        )
    return lines + [
        "",
        "RSS counts pages shared between a gunicorn master and its worker twice; PSS counts them once.",
        "",
        "![memory](memory.png)",
        "",
    ]


def _fault_section(s: dict) -> list[str]:
    lines = [
        "## Fault isolation (SIGKILL of a worker under load)",
        "",
        _row(
            [
                "architecture",
                "killed worker",
                "requests after kill",
                "failed",
                "error types",
                "failures until (s)",
                "/ping 200 again (s)",
                "first answer (s)",
                "restarted",
                "other stages down",
            ]
        ),
        _row(["---"] * 10),
    ]
    for f in s["faults"]:
        lines.append(
            _row(
                [
                    LABELS[f["architecture"]],
                    f["killed"],
                    f["requests_after_kill"],
                    f["failed"],
                    ", ".join(f"{k} {v}" for k, v in f["error_types"].items()),
                    _f(f["outage_s"]),
                    _f(f["ready_again_s"]),
                    _f(f["first_answer_s"]),
                    ", ".join(f["workers_restarted"]),
                    ", ".join(f["other_stages_affected"]) or "none",
                ]
            )
        )
    return lines + ["", "![faults](faults.png)", ""]


def _cost_section(s: dict) -> list[str]:
    cost = s["cost"]
    lines = [
        "## Cost per 1000 requests (estimate)",
        "",
        f"**{cost['label']}.** Prices: {cost['region']}, retrieved {cost['prices_retrieved']}. {cost['prices_note']}",
        "",
        _row(
            [
                "scenario",
                "assumed GPU speedup",
                "req/s per instance (or pair)",
                "$ per 1,000 (one instance / pair)",
                "$ per 1,000 at scale",
            ]
        ),
        _row(["---"] * 5),
    ]
    for r in cost["rows"]:
        lines.append(
            _row(
                [
                    r["scenario"],
                    f"{r['gpu_generate_speedup']}x ({r['gpu_speedup_case']})" if r["gpu_speedup_case"] else "-",
                    _f(r["rps_per_instance"], 3),
                    f"${r['usd_per_1000']:.4f}",
                    f"${r['usd_per_1000_at_scale']:.4f}",
                ]
            )
        )
    lines += [
        "",
        "Measured inputs:",
        "",
        "```json",
        json.dumps(cost["measured_inputs"], indent=1),
        "```",
        "",
        "Prices and assumptions (bench/serving/prices.json):",
        "",
        "```json",
        json.dumps({"instances": cost["prices"], **cost["assumptions"]}, indent=1),
        "```",
        "",
    ]
    return lines


def render(results: dict) -> str:
    """The whole report as Markdown."""
    s, m = results["summary"], results["machine"]
    header = [
        f"# Monolith vs microservices: bench report ({results['kind']} run)",
        "",
        f"Started {results['started_utc']}, took {results['duration_s'] / 60:.1f} min. Machine: {m['cpu_model']}, "
        f"{m['usable_cpus']} usable CPUs, {m['memory_gib']:.0f} GiB, {m['os']}, Python {m['python']}; git "
        f"{m['git_commit']}{' (uncommitted changes)' if m['git_dirty'] else ''}. Load average (1/5/15 min) at start "
        f"{', '.join(f'{x:.2f}' for x in results['loadavg_start'])}, at end "
        f"{', '.join(f'{x:.2f}' for x in results['loadavg_end'])}: other work shared these CPUs, so small differences "
        "are only meaningful where the confidence interval excludes zero.",
        "",
        f"Versions: {', '.join(f'{k} {v}' for k, v in m['versions'].items())}.",
        "",
        f"Settings: `{json.dumps(results['settings'])}`; server environment: `{json.dumps(results['server_env'])}`.",
        "",
    ]
    return "\n".join(
        [
            *header,
            *_targets_section(s),
            "## The README's claims",
            "",
            claims_table(s, ""),
            "",
            *_latency_section(s),
            *_cold_memory_section(s),
            *_fault_section(s),
            *_cost_section(s),
        ]
    )


def write_report(results_path: Path) -> Path:
    """Recompute the summary, draw the charts and write report.md into <results>/<stamp>/."""
    results = json.loads(results_path.read_text())
    results["summary"] = summarize_results(results)
    folder = results_path.parent / results_path.stem if results_path.name != "results.json" else results_path.parent
    write_charts(results, folder)
    report = folder / "report.md"
    report.write_text(render(results))
    return report


def update_readme(table: str, readme: Path = README) -> None:
    """Put `table` between the bench markers (adding the section at its placeholder the first time)."""
    text = readme.read_text()
    if BEGIN not in text:
        if PLACEHOLDER not in text:
            raise ValueError(f"{readme} has neither {BEGIN} nor {PLACEHOLDER}; add one where the table belongs")
        text = text.replace(PLACEHOLDER, README_INTRO, 1)
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    readme.write_text(f"{head}{BEGIN}\n{table}\n{END}{tail}")


def publish(results_path: Path, latest: Path = LATEST, readme: Path = README) -> Path:
    """Copy the results, report and charts to bench/results/latest/ and regenerate the README table.
    Only a full run is published; a quick run is refused (ValueError)."""
    kind = json.loads(results_path.read_text()).get("kind")
    if kind != "full":
        raise ValueError(
            f"{results_path} is a {kind} run, a smoke test: only a full run (`make bench`) is published; "
            "`python -m bench report --no-publish FILE` writes its report alone"
        )
    folder = results_path.parent / results_path.stem if results_path.name != "results.json" else results_path.parent
    if folder.resolve() != latest.resolve():
        latest.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(results_path, latest / "results.json")
        for item in list(folder.glob("*.png")) + [folder / "report.md"]:
            shutil.copyfile(item, latest / item.name)
    results = json.loads((latest / "results.json").read_text())
    update_readme(claims_table(summarize_results(results)), readme)
    return latest
