"""Schemathesis against real servers: run `st run` on one of the OpenAPI descriptions in docs/ and
count what came back (requests, statuses, spec failures), from its HAR report.

FUZZ_EXAMPLES sets the examples per operation and phase: small in `make check`, large in `make fuzz`,
which needs at least FUZZ_MIN_REQUESTS requests per architecture.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from tests.support import ROOT, measured_figures

PUBLIC_SPEC = ROOT / "docs" / "openapi.yaml"
# The chat schema's rules beyond OpenAPI 3.0: its check replaces the built-in positive_data_acceptance.
HOOKS = Path(__file__).with_name("chat_rules.py")
INTERNAL_SPEC = ROOT / "docs" / "openapi-internal.yaml"
RESULTS_FILE = ROOT / "build" / "fuzz-results.json"
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "10"))
MIN_REQUESTS = int(os.environ.get("FUZZ_MIN_REQUESTS", "0"))
SEED = int(os.environ.get("FUZZ_SEED", "20261129"))
# Checks about authentication and about resources created by earlier calls do not apply to this API.
NOT_APPLICABLE = "ignored_auth,object_level_authorization,use_after_free,ensure_resource_availability"
REPLACED = "positive_data_acceptance"  # by HOOKS' positive_data_acceptance_with_chat_rules
# Gunicorn logs each worker it boots; start.sh logs each service it restarts (JSON lines: serving/telemetry.py).
WORKER_BOOT = re.compile(r"Booting worker with pid")
SERVICE_EXIT = re.compile(r'"logger": "start\.sh".*"message": "\w+ exited \(')

results = measured_figures("fuzz results", RESULTS_FILE)  # what each run found, for the terminal summary


@dataclass
class FuzzRun:
    """One `st run`: its exit code, its summary lines, and every response it received."""

    exit_code: int
    output: str
    statuses: Counter = field(default_factory=Counter)

    @property
    def requests(self) -> int:
        return sum(self.statuses.values())

    @property
    def server_errors(self) -> int:
        return sum(count for status, count in self.statuses.items() if status >= 500)

    def summary(self) -> dict:
        failures = re.findall(r"^\s*❌ (.+)$", self.output, re.M)
        return {
            "requests": self.requests,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "5xx": self.server_errors,
            "spec_failures": failures,
            "exit_code": self.exit_code,
        }


def fuzz(
    spec: Path,
    url: str,
    report_dir: Path,
    *,
    paths: str | None = None,
    exclude_checks: str = "",
    examples: int = EXAMPLES,
    timeout_s: float = 3600,
) -> FuzzRun:
    """Run Schemathesis (every applicable check, positive and negative data) and read its HAR report."""
    command = [
        str(Path(sys.executable).parent / "st"),
        "run",
        str(spec),
        "--url",
        url,
        "--no-color",
        "--max-examples",
        str(examples),
        "--seed",
        str(SEED),
        "--checks",
        "all",
        "--exclude-checks",
        ",".join(filter(None, [NOT_APPLICABLE, REPLACED, exclude_checks])),
        "--phases",
        "examples,coverage,fuzzing",
        "--suppress-health-check",
        "all",
        "--request-timeout",
        "60",
        "--report",
        "har",
        "--report-har-path",
        str(report_dir / "fuzz.har"),
    ]
    if paths:
        command += ["--include-path-regex", paths]
    # In the report folder: Schemathesis keeps its replay store (.schemathesis/) in the working directory.
    env = {**os.environ, "SCHEMATHESIS_HOOKS": str(HOOKS)}
    completed = subprocess.run(command, cwd=report_dir, env=env, capture_output=True, text=True, timeout=timeout_s)
    run = FuzzRun(completed.returncode, completed.stdout[-20000:] + completed.stderr[-5000:])
    har = report_dir / "fuzz.har"
    if har.exists():
        for entry in json.loads(har.read_text())["log"]["entries"]:
            run.statuses[int(entry["response"]["status"])] += 1
    return run


def worker_deaths(log: str, ready_log: str) -> dict:
    """Workers booted and services restarted since `ready_log` (the log when the server became ready)."""
    return {
        "workers_booted": len(WORKER_BOOT.findall(log)) - len(WORKER_BOOT.findall(ready_log)),
        "services_restarted": len(SERVICE_EXIT.findall(log)) - len(SERVICE_EXIT.findall(ready_log)),
    }
