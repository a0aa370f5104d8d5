"""Container layer: both images built once per session with `make build OFFLINE=1`, and containers
run the way SageMaker runs them. Tests that need the daemon are marked `docker` and skipped, with the
reason, when no Docker daemon answers, so `make check` passes on a machine without one (unless
RAG_REQUIRE_DOCKER=1, which CI sets: then they fail).

Measurements (build and startup times, `docker stop` times, what memory limits did) are gathered
in `observations`, written to build/container-observations.json and printed after the run.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from rag.settings import parse_bool
from tests.container.docker_support import ARCHES, Container, build_image, daemon_problem, start_ready
from tests.support import ROOT, measured_figures

OBSERVATIONS_FILE = ROOT / "build" / "container-observations.json"
_observations = measured_figures("container observations", OBSERVATIONS_FILE)


@pytest.fixture(scope="session")
def observations() -> dict:
    """Measurements to report; written to OBSERVATIONS_FILE and printed at the end of the run."""
    return _observations


# CI sets it (.ci/run): there the container tests are meant to run, so no daemon is a failure, not a skip.
REQUIRE_DOCKER = "RAG_REQUIRE_DOCKER"


@pytest.fixture(scope="session")
def docker_ready() -> None:
    reason = daemon_problem()
    if reason and parse_bool(os.environ.get(REQUIRE_DOCKER), REQUIRE_DOCKER):
        pytest.fail(f"{reason}, and {REQUIRE_DOCKER}=1 says the container tests must run", pytrace=False)
    if reason:
        pytest.skip(f"{reason}; start dockerd (see .ci/run) to run the container tests")


@pytest.fixture(scope="session")
def images(docker_ready, tmp_path_factory, observations) -> dict[str, str]:
    """Both images, built once per session through the same command CI and users run."""
    logs = tmp_path_factory.mktemp("build")
    built = {}
    for arch in ARCHES:
        image, seconds = build_image(arch, logs / f"{arch}.log")
        built[arch] = image
        observations.setdefault("build_s", {})[arch] = round(seconds, 1)
    return built


@pytest.fixture(scope="session")
def empty_model_dir(tmp_path_factory) -> Path:
    """SageMaker always mounts /opt/ml/model; with no index in it the built-in sample index serves.
    Readable by all, as SageMaker's is (pytest makes 0700 folders; the workers do not run as root)."""
    folder = tmp_path_factory.mktemp("opt-ml-model-empty")
    folder.chmod(0o755)
    return folder


@pytest.fixture(scope="module")
def served(images, empty_model_dir, observations):
    """One ready container per image, as SageMaker starts it; removed when the module ends."""
    containers: dict[str, Container] = {}
    try:
        for arch in ARCHES:
            # DEBUG logs the start of each request, which the shutdown test waits for. One torch thread:
            # on a shared CI machine two threads per process oversubscribe the cores and a short
            # request could take 20 s instead of 1 (measured), which would make the timing checks lie.
            env = {"RAG_LOG_LEVEL": "DEBUG", "RAG_TORCH_THREADS": "1"}
            containers[arch] = Container(images[arch], model_dir=empty_model_dir, env=env)
        startups = start_ready(containers)
        for arch, startup in startups.items():
            observations.setdefault("run_to_ping_200_s", {})[arch] = startup.ready_s
        yield containers, startups
    finally:
        for container in containers.values():
            container.remove()
