"""`python -m bench run` (what `make bench` does) and `python -m bench report` (`make bench-report`)."""

from __future__ import annotations

import argparse
import json
import logging
import sys

from bench.core.config import REPO_ROOT
from rag.errors import ConfigError

PERFORMANCE_DOC = REPO_ROOT / "docs" / "performance.md"  # its sweep table is generated (bench/serving/sweep.py)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="measure both architectures; write results/<timestamp>.json and its report")
    run.add_argument(
        "--publish",
        action="store_true",
        help="also refresh bench/results/latest/ and the README table (make bench does, unless quick)",
    )
    report = commands.add_parser("report", help="rebuild report, charts and the README table from a results file")
    report.add_argument("results", nargs="?", help="a results JSON (default: the newest full run, else latest/)")
    report.add_argument("--no-publish", action="store_true", help="only the report next to the results file")
    commands.add_parser(
        "soak",
        help="steady load with kills and a final SIGTERM (SOAK_* variables); "
        "writes soak-<timestamp>/soak.json and soak.png; non-zero when a target is missed",
    )
    split = commands.add_parser(
        "split",
        help="measure the split topology's extra hop against the one-container "
        "microservices (bench/serving/split.py); write results/split-<timestamp>.json",
    )
    split.add_argument("--publish", action="store_true", help="also bench/results/latest/split.json and docs/bench.md")
    hops = commands.add_parser(
        "hops",
        help="measure the microservices' internal hops: both architectures, one-token requests alternating "
        "(bench/serving/hops.py); write results/hops-<timestamp>.json",
    )
    hops.add_argument(
        "--publish", action="store_true", help="also bench/results/latest/hops.json and docs/performance.md"
    )
    telemetry = commands.add_parser(
        "telemetry",
        help="measure what metrics cost: each architecture with RAG_METRICS on and off, interleaved, at 1 and 8 "
        "clients (bench/serving/telemetry.py); write results/telemetry-<timestamp>.json",
    )
    telemetry.add_argument(
        "--arch",
        choices=["monolito", "microservicos", "both"],
        default="both",
        help="which architecture (default both)",
    )
    telemetry.add_argument(
        "--publish", action="store_true", help="also bench/results/latest/telemetry.json and docs/operations.md"
    )
    telemetry.add_argument(
        "--direct",
        action="store_true",
        help="only measure the in-process cost of metrics per request again (seconds), against the published run",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    from bench.core.config import BenchSettings
    from bench.serving.report import find_results, publish, write_report
    from bench.serving.sweep import update_sweep_doc, write_sweep

    try:
        settings = BenchSettings.from_env()
        if args.command == "soak":
            from bench.serving.soak import SoakSettings
            from bench.serving.soak import run as run_soak

            soak_settings = SoakSettings.from_env()
    except ConfigError as exc:
        sys.stderr.write(f"configuration error: {exc.message}\n")
        return 2
    if args.command == "soak":
        return _soak(run_soak(soak_settings))
    if args.command in ("split", "hops"):
        from bench.serving import hops, split

        module = split if args.command == "split" else hops
        path = module.measure(settings)
        sys.stdout.write(module.table(json.loads(path.read_text())) + "\n")
        sys.stderr.write(f"results: {path}\n")
        if args.publish:
            sys.stderr.write(f"published: {module.publish(path)}\n")
        return 0
    if args.command == "telemetry":
        from bench.serving import telemetry as overhead

        architectures = overhead.ARCHITECTURES if args.arch == "both" else (args.arch,)
        settings.results_dir.mkdir(parents=True, exist_ok=True)
        if args.direct:
            path = overhead.remeasure_direct(settings.results_dir)
        else:
            path = overhead.measure(settings, architectures)
        sys.stdout.write(overhead.table(json.loads(path.read_text())) + "\n")
        sys.stderr.write(f"results: {path}\n")
        if args.publish and not settings.quick:
            sys.stderr.write(f"published: {overhead.publish(path)}\n")
        elif args.publish:
            sys.stderr.write("a quick run: not published\n")
        return 0
    if args.command == "run":
        from bench.serving.run import run as run_bench

        path = run_bench(settings)
        report_path = write_report(path)
        write_sweep(path)
        sys.stderr.write(f"results: {path}\nreport:  {report_path}\n")
        if args.publish and not settings.quick:
            sys.stderr.write(f"published: {publish(path)}\n")
            update_sweep_doc(path, PERFORMANCE_DOC)
        return 0
    try:
        path = find_results(settings.results_dir, args.results)
        report_path = write_report(path)
        write_sweep(path)
        sys.stderr.write(f"report: {report_path}\n")
        if not args.no_publish:
            sys.stderr.write(f"published: {publish(path)}\n")
            update_sweep_doc(path, PERFORMANCE_DOC)
    except (FileNotFoundError, ValueError) as exc:
        sys.stderr.write(f"bench report: {exc}\n")
        return 2
    return 0


def _soak(folder) -> int:
    """Print each architecture's targets; 0 only when every one was met."""
    import json

    report = json.loads((folder / "soak.json").read_text())
    for entry in report["architectures"]:
        verdicts = ", ".join(f"{name} {'met' if met else 'MISSED'}" for name, met in entry["verdicts"].items())
        sys.stderr.write(
            f"{entry['architecture']}: {entry['requests']} requests, failed {entry['failed_by_status']}, "
            f"recoveries {[k['recovery_s'] for k in entry['kills']]}: {verdicts}\n"
        )
    sys.stderr.write(f"soak: {folder / 'soak.json'}, {folder / 'soak.png'}\n")
    return 0 if report["met"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
