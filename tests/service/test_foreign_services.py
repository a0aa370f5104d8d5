"""One instance never answers from another's services: taken internal ports stop the start, services
check that their caller belongs to their own instance, and they die with their supervisor."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time

import psutil
import pytest
import requests

from tests.service.conftest import start_architecture
from tests.support import ROOT, VENV_BIN, ServerProcess, child_env, free_port

pytestmark = pytest.mark.slow


def accepting(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def running(proc: psutil.Process) -> bool:
    """Alive and not a zombie (an exited process whose parent, here init, has not reaped it yet)."""
    try:
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def wait_until(predicate, deadline_s: float, what: str) -> None:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.1)
    raise TimeoutError(what)


def test_a_second_instance_on_taken_internal_ports_refuses_to_start(sample_index, tmp_path):
    first = start_architecture("microservicos", tmp_path, sample_index)
    second = None
    try:
        wait_until(
            lambda: accepting(first.ports["vector"]) and accepting(first.ports["llm"]),
            120,
            "the first instance's services never listened",
        )
        env = child_env(
            RAG_BIND_HOST="127.0.0.1",
            SAGEMAKER_BIND_TO_PORT=str(free_port()),
            RAG_VECTOR_URL=f"http://127.0.0.1:{first.ports['vector']}",
            RAG_LLM_URL=f"http://127.0.0.1:{first.ports['llm']}",
        )
        second = ServerProcess([str(ROOT / "Microservicos" / "start.sh"), "serve"], env, tmp_path / "second.log")
        try:
            code = second.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            code = None
        log = second.log()
    finally:
        if second is not None:
            second.stop()
        first.server.stop()
    assert code == 1, f"the second instance kept running (exit {code}):\n{log[-3000:]}"
    assert f"port {first.ports['vector']} of the vector service is already in use" in log
    assert "set RAG_VECTOR_URL to a free port" in log


def _foreign_orchestrator(tmp_path, vector_url: str, llm_url: str):
    """A real orchestrator with its own instance token, pointed at services that are not its own: its
    /ping and one /invocations."""
    port = free_port()
    env = child_env(RAG_INSTANCE_TOKEN="another-instance", RAG_VECTOR_URL=vector_url, RAG_LLM_URL=llm_url)
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
        tmp_path / "orchestrator.log",
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: accepting(port), 60, "the orchestrator never listened")
        ping = requests.get(f"{url}/ping", timeout=2)
        answer = requests.post(f"{url}/invocations", json={"query": "When did the tramway open?"}, timeout=60)
    finally:
        orchestrator.stop()
    return ping, answer


def test_services_refuse_an_orchestrator_of_another_instance(microservices, tmp_path):
    """A real orchestrator of another instance (its own token) pointed at this instance's services, as
    after its own service died and this one's took the port: it must not answer from them."""
    ping, answer = _foreign_orchestrator(
        tmp_path,
        f"http://127.0.0.1:{microservices.ports['vector']}",
        f"http://127.0.0.1:{microservices.ports['llm']}",
    )
    assert ping.status_code == 503, ping.text
    assert ping.json()["status"] == "degraded" and ping.json()["services"] == {"vector": "foreign", "llm": "foreign"}
    assert "another instance" in ping.json()["error"]
    assert answer.status_code == 503 and answer.json()["error_type"] == "upstream_unavailable", answer.text[:300]
    # This instance's own orchestrator is unaffected.
    assert microservices.invoke({"query": "When did the tramway open?", "max_new_tokens": 4}).status_code == 200


def test_an_orchestrator_does_not_use_another_server_on_its_service_ports(monolith, tmp_path):
    """Its internal ports held by a server that is not its own service (here a monolith, which answers
    /ping with 200 and has no /retrieve): the orchestrator is degraded and answers 503, never the other
    server's 404 or its health."""
    ping, answer = _foreign_orchestrator(tmp_path, monolith.url, monolith.url)
    assert ping.status_code == 503, ping.text
    assert ping.json()["services"] == {"vector": "foreign", "llm": "foreign"}, ping.text
    assert "did not say back the instance token" in ping.json()["error"]
    assert answer.status_code == 503 and answer.json()["error_type"] == "upstream_unavailable", answer.text[:300]
    assert "another instance's server or another program" in answer.json()["error"]


def test_services_exit_when_start_sh_is_killed(sample_index, tmp_path):
    service = start_architecture("microservicos", tmp_path, sample_index)
    family = []
    try:
        wait_until(
            lambda: all(accepting(service.ports[name]) for name in ("public", "vector", "llm")),
            120,
            "the services never listened",
        )
        family = service.server.descendants()
        assert len(family) >= 6, family  # three gunicorn masters and their workers
        os.kill(service.server.pid, signal.SIGKILL)
        # Gunicorn drains for at most its graceful timeout (25 s) once its master gets SIGTERM.
        end = time.monotonic() + 40
        while (alive := [proc for proc in family if running(proc)]) and time.monotonic() < end:
            time.sleep(0.1)
    finally:
        service.server.stop()
        for proc in family:  # whatever outlived start.sh is killed here, never left behind
            try:
                proc.kill()
            except psutil.NoSuchProcess:
                pass
    assert not alive, f"{alive} outlived start.sh:\n{service.server.log()[-3000:]}"
    assert not any(accepting(service.ports[name]) for name in ("public", "vector", "llm"))
