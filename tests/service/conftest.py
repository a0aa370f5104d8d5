"""Fixtures that start the real entrypoints (Monolitico/serve, Microservicos/start.sh) on free ports."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
import requests

from sagemaker_lifecycle.local_runtime import LocalRuntime
from tests.service.clients_support import ENDPOINT, OPTIONS, QUESTION, runtime_env
from tests.support import ROOT, ServerProcess, child_env, free_port
from tests.telemetry_support import OtlpReceiver

SAMPLE_INDEX = ROOT / "indexes" / "sample"
# Short answers keep the suite fast; every request path is the same as with the default 128.
TEST_MAX_NEW_TOKENS = "40"


@pytest.fixture(scope="session")
def sample_index():
    """The sample index that `make setup` builds; built here when missing."""
    if not (SAMPLE_INDEX / "manifest.json").exists():
        subprocess.run(
            [sys.executable, "-m", "rag.ingest", "--docs", str(ROOT / "data" / "sample"), "--index", str(SAMPLE_INDEX)],
            check=True,
            env=child_env(),
        )
    return SAMPLE_INDEX


class Service:
    """A started architecture: its URL, its process, and the /ping answers seen while it started."""

    def __init__(self, server: ServerProcess, url: str, ports: dict[str, int]):
        self.server, self.url, self.ports = server, url, ports
        self.ping_history: list[tuple[int, str]] = []

    def wait_ready(self, deadline_s: float = 300.0) -> None:
        end = time.monotonic() + deadline_s
        while time.monotonic() < end:
            if self.server.proc.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.server.log()[-3000:]}")
            try:
                response = requests.get(f"{self.url}/ping", timeout=5)
                self.ping_history.append((response.status_code, response.json().get("status")))
                if response.status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"{self.url}/ping not 200 after {deadline_s}s:\n{self.server.log()[-3000:]}")

    def invoke(self, payload=None, *, data=None, content_type="application/json", headers=None, timeout=120):
        headers = {"Content-Type": content_type, **(headers or {})} if content_type else dict(headers or {})
        return requests.post(
            f"{self.url}/invocations",
            json=payload if data is None else None,
            data=data,
            headers=headers,
            timeout=timeout,
        )


def start_architecture(arch: str, tmp_path, index_dir, *, prefix: tuple[str, ...] = (), **env) -> Service:
    """Start one architecture exactly as `make serve` does, on loopback and free ports (`prefix`: a
    command that execs the entrypoint, e.g. setpriv to start it as another user)."""
    ports = {"public": free_port(), "vector": free_port(), "llm": free_port()}
    environment = child_env(
        RAG_BIND_HOST="127.0.0.1",
        SAGEMAKER_BIND_TO_PORT=ports["public"],
        RAG_INDEX_DIR=index_dir,
        RAG_VECTOR_URL=f"http://127.0.0.1:{ports['vector']}",
        RAG_LLM_URL=f"http://127.0.0.1:{ports['llm']}",
        RAG_MAX_NEW_TOKENS=TEST_MAX_NEW_TOKENS,
        **env,
    )
    entrypoint = ROOT / ("Monolitico/serve" if arch == "monolito" else "Microservicos/start.sh")
    server = ServerProcess([*prefix, str(entrypoint), "serve"], environment, tmp_path / f"{arch}.log")
    return Service(server, f"http://127.0.0.1:{ports['public']}", ports)


@pytest.fixture(scope="session")
def otlp():
    """A real OTLP/HTTP trace receiver (tests/telemetry_support.py): the session's servers send it their traces."""
    receiver = OtlpReceiver()
    yield receiver
    receiver.stop()


def tracing_env(otlp: OtlpReceiver) -> dict[str, str]:
    """Tracing on, through the standard variables, exported to `otlp` within 0.2 s of each span."""
    return {"OTEL_EXPORTER_OTLP_ENDPOINT": otlp.url, "OTEL_BSP_SCHEDULE_DELAY": "200"}


def _running(arch: str, sample_index, tmp_path_factory, otlp):
    service = start_architecture(arch, tmp_path_factory.mktemp(arch), sample_index, **tracing_env(otlp))
    try:
        service.wait_ready()
        yield service
    finally:
        service.server.stop()


@pytest.fixture(scope="session")
def monolith(sample_index, tmp_path_factory, otlp):
    yield from _running("monolito", sample_index, tmp_path_factory, otlp)


@pytest.fixture(scope="session")
def microservices(sample_index, tmp_path_factory, otlp):
    yield from _running("microservicos", sample_index, tmp_path_factory, otlp)


@pytest.fixture(params=["monolito", "microservicos"])
def architecture(request):
    """Each test using this runs against both architectures."""
    return request.getfixturevalue("monolith" if request.param == "monolito" else "microservices")


@pytest.fixture(scope="module")
def runtime_stand_in(monolith):
    """The SageMaker Runtime stand-in in front of the monolith, as endpoint `rag-monolito` (client tests)."""
    runtime = LocalRuntime({ENDPOINT: monolith.url}).start()
    try:
        yield runtime
    finally:
        runtime.stop()


@pytest.fixture
def aws_env(runtime_stand_in, monkeypatch):
    """boto3 in this process sends sagemaker-runtime calls to the stand-in, which cuts no stream."""
    for key, value in runtime_env(runtime_stand_in.url).items():
        monkeypatch.setenv(key, value)
    runtime_stand_in.part_sizes = ()
    try:
        yield runtime_stand_in
    finally:
        runtime_stand_in.part_sizes = ()


@pytest.fixture(scope="session")
def plain_answer(monolith):
    """The plain POST /invocations answer to the client tests' question, which every client must give."""
    return monolith.invoke({"query": QUESTION, **OPTIONS}).json()
