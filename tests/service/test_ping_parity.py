"""Both architectures answer /ping with the same body in every state, apart from the microservices'
`services` map, and never with exception text; and both refuse a stream they cannot answer before it starts."""

import time

import pytest
import requests

from tests.service.conftest import start_architecture
from tests.support import VENV_BIN, ServerProcess, child_env, free_port, wait_for_status

pytestmark = pytest.mark.slow
ARCHES = ("monolito", "microservicos")


def without_services(body: dict) -> dict:
    return {key: value for key, value in body.items() if key != "services"}


def test_ready_bodies_are_identical(monolith, microservices):
    mono, micro = (requests.get(f"{service.url}/ping", timeout=2) for service in (monolith, microservices))
    assert mono.status_code == micro.status_code == 200
    assert mono.json() == without_services(micro.json()) == {"status": "ready"}
    assert micro.json()["services"] == {"vector": "ready", "llm": "ready"}


def watch_until_degraded(service, deadline_s: float = 180) -> list[tuple[int, dict]]:
    """Every /ping answer from start until the first `degraded`."""
    seen, end = [], time.monotonic() + deadline_s
    while time.monotonic() < end:
        try:
            response = requests.get(f"{service.url}/ping", timeout=2)
            seen.append((response.status_code, response.json()))
            if response.json().get("status") == "degraded":
                return seen
        except requests.RequestException:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"{service.url}/ping never said degraded: {seen[-3:]}\n{service.server.log()[-3000:]}")


def test_loading_and_degraded_bodies_are_identical_and_hold_no_exception_text(sample_index, tmp_path):
    missing = tmp_path / "no-such-model"
    services = {
        arch: start_architecture(arch, tmp_path / arch, sample_index, RAG_LLM_MODEL=str(missing))
        for arch in ARCHES
        if not (tmp_path / arch).mkdir()
    }
    try:
        history = {arch: watch_until_degraded(service) for arch, service in services.items()}
        streams = {
            arch: requests.post(f"{service.url}/invocations-response-stream", json={"query": "Who?"}, timeout=30)
            for arch, service in services.items()
        }
    finally:
        for service in services.values():
            service.server.stop()
    for arch, answers in history.items():
        assert all(status == 503 for status, _ in answers), (arch, answers)
        bodies = [without_services(body) for _, body in answers]
        loading = [body for body in bodies if body["status"] == "loading"]
        # The monolith loads the embedder before failing on the LLM, so it always shows loading first; the
        # microservices' LLM service may fail before the first /ping (see the orchestrator test below).
        assert loading or arch == "microservicos", f"{arch}: /ping never said loading before degraded: {bodies[:3]}"
        assert all(set(body) == {"status", "elapsed_s"} for body in loading), (arch, loading[:3])
        degraded = bodies[-1]
        assert set(degraded) == {"status", "error"}, (arch, degraded)
        assert str(missing) not in degraded["error"] and "Error" not in degraded["error"], (arch, degraded)
        assert "failed to load" in degraded["error"]
    assert history["microservicos"][-1][1]["services"]["llm"] == "degraded"
    for arch, response in streams.items():
        assert response.status_code == 503 and response.headers["Content-Type"] == "application/json", (
            arch,
            response.text,
        )
        assert response.json()["error_type"] == "not_ready", (arch, response.text)


def test_orchestrator_loading_body_while_its_services_start(tmp_path):
    """A real orchestrator whose services do not listen yet (as in the first seconds of start.sh): loading,
    with the monolith's keys plus services, not degraded."""
    port = free_port()
    env = child_env(RAG_VECTOR_URL=f"http://127.0.0.1:{free_port()}", RAG_LLM_URL=f"http://127.0.0.1:{free_port()}")
    orchestrator = ServerProcess(
        [
            str(VENV_BIN / "gunicorn"),
            "--config",
            "python:serving.gunicorn_conf",
            "--bind",
            f"127.0.0.1:{port}",
            "Microservicos.orchestrator:create_app()",
        ],
        env,
        tmp_path / "o.log",
    )
    try:
        body = wait_for_status(f"http://127.0.0.1:{port}/ping", 503, deadline_s=60, proc=orchestrator.proc).json()
    finally:
        orchestrator.stop()
    assert without_services(body).keys() == {"status", "elapsed_s"} and body["status"] == "loading", body
    assert body["services"] == {"vector": "unavailable", "llm": "unavailable"}
