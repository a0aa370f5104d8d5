"""Schemathesis against both architectures, started by their real entrypoints: every response must match
docs/openapi.yaml (and the microservices' internal services docs/openapi-internal.yaml), with no 5xx and
no worker death. `make check` runs a short run; `make fuzz` a long one (FUZZ_EXAMPLES, FUZZ_MIN_REQUESTS)."""

from __future__ import annotations

import pytest

from tests.fuzz.fuzz_support import INTERNAL_SPEC, MIN_REQUESTS, PUBLIC_SPEC, fuzz, results, worker_deaths

pytestmark = pytest.mark.slow


def check(run, deaths: dict, where: str) -> None:
    """The targets: zero 5xx, zero worker deaths, every response matching the spec."""
    results[where] = {**run.summary(), **deaths}
    assert run.requests > 0, f"{where}: Schemathesis sent nothing:\n{run.output[-3000:]}"
    assert run.server_errors == 0, f"{where}: {run.server_errors} responses were 5xx:\n{run.output[-6000:]}"
    assert deaths == {"workers_booted": 0, "services_restarted": 0}, f"{where}: {deaths}"
    assert run.exit_code == 0, f"{where}: responses that break the spec:\n{run.output[-8000:]}"


# The short run of `make check` leaves out /v1/chat/completions, the local route for OpenAI clients: it takes
# the chat body that /invocations and the stream route take (fuzzed here), and `make fuzz` covers it too.
QUICK_PATHS = "^/(ping|invocations|invocations-response-stream)$"


def test_public_api_under_fuzz(fuzzed, tmp_path):
    ready_log = fuzzed.server.log()
    run = fuzz(PUBLIC_SPEC, fuzzed.url, tmp_path, paths=None if MIN_REQUESTS else QUICK_PATHS)
    check(run, worker_deaths(fuzzed.server.log(), ready_log), f"{fuzzed.arch} public API")
    assert run.requests >= MIN_REQUESTS, f"only {run.requests} requests; FUZZ_MIN_REQUESTS={MIN_REQUESTS}"


@pytest.mark.parametrize("fuzzed", ["microservicos"], indirect=True)  # only the microservices have them
@pytest.mark.parametrize(
    "service, paths",
    [("vector", "^/(ping|retrieve)$"), ("llm", "^/(ping|generate|generate-stream)$")],
    ids=["vector", "llm"],
)
def test_internal_services_under_fuzz(fuzzed, tmp_path, service, paths):
    ready_log = fuzzed.server.log()
    # The services coerce passage fields as the orchestrator sends them (rank "3" is read as 3): their
    # only client is the orchestrator, so lenient input there is not checked as a rejection.
    run = fuzz(
        INTERNAL_SPEC,
        f"http://127.0.0.1:{fuzzed.ports[service]}",
        tmp_path,
        paths=paths,
        exclude_checks="negative_data_rejection",
    )
    check(run, worker_deaths(fuzzed.server.log(), ready_log), f"microservicos {service} service")
