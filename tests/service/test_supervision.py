"""Process supervision: a crashed LLM service, SIGTERM with requests in flight, no leftovers."""

import os
import signal
import sys
import threading
import time

import psutil
import pytest
import requests

from tests.service.conftest import start_architecture
from tests.support import ROOT, VENV_BIN, ServerProcess, child_env, free_port

pytestmark = pytest.mark.slow
QUESTION = "How long is the track of the Kessel Heights Funicular, in metres?"


def service_master(service, module: str) -> psutil.Process:
    """The gunicorn master that start.sh launched for `module` (a direct child of start.sh)."""
    for child in psutil.Process(service.server.pid).children():
        if any(module in part for part in child.cmdline()):
            return child
    raise LookupError(module)


def wait_until_in_flight(service, deadline_s: float = 30) -> None:
    """Block until a handler has started on the request (logged at DEBUG level)."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if "POST /invocations started" in service.server.log():
            return
        time.sleep(0.02)
    raise TimeoutError("the request never reached a handler")


def test_crashed_llm_service_is_isolated_and_restarted(sample_index, tmp_path):
    service = start_architecture("microservicos", tmp_path, sample_index)
    try:
        service.wait_ready()
        llm = service_master(service, "llm_service")
        llm.send_signal(signal.SIGKILL)
        llm.wait(timeout=10)

        started = time.monotonic()
        response = service.invoke({"query": QUESTION}, timeout=10)
        assert response.status_code == 503, response.text
        assert response.json()["error_type"] in ("upstream_unavailable", "not_ready")
        assert time.monotonic() - started < 5  # answered at once, not after a hang

        ping = requests.get(f"{service.url}/ping", timeout=2)
        assert ping.status_code == 503 and ping.json()["status"] in ("degraded", "loading")

        vector = requests.post(
            f"http://127.0.0.1:{service.ports['vector']}/retrieve", json={"query": QUESTION, "top_k": 2}, timeout=10
        )
        assert vector.status_code == 200 and vector.json()["passages"][0]["source"] == "funicular.md"

        service.wait_ready(deadline_s=180)
        assert service_master(service, "llm_service").pid != llm.pid
        answer = service.invoke({"query": QUESTION, "max_new_tokens": 16})
        assert answer.status_code == 200 and answer.json()["sources"][0]["source"] == "funicular.md"
        assert "restarting in" in service.server.log()
    finally:
        family = service.server.descendants()
        code = service.server.stop()
    assert code == 0
    assert not [p for p in family if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


@pytest.mark.parametrize("arch", ["monolito", "microservicos"])
def test_sigterm_drains_in_flight_request(arch, sample_index, tmp_path):
    service = start_architecture(arch, tmp_path, sample_index, RAG_LOG_LEVEL="DEBUG")
    result = {}
    try:
        service.wait_ready()
        family = [psutil.Process(service.server.pid), *service.server.descendants()]
        worker = threading.Thread(
            target=lambda: result.update(response=service.invoke({"query": QUESTION, "max_new_tokens": 48}, timeout=60))
        )
        worker.start()
        wait_until_in_flight(service)
        stopped_at = time.monotonic()
        os.kill(service.server.pid, signal.SIGTERM)
        worker.join(timeout=60)
        code = service.server.proc.wait(timeout=30)
        elapsed = time.monotonic() - stopped_at
    finally:
        service.server.stop()
    assert result["response"].status_code == 200, result["response"].text
    assert result["response"].json()["sources"][0]["source"] == "funicular.md"
    assert code == 0 and elapsed < 30
    assert not [p for p in family if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


def test_monolith_worker_crash_loop_backs_off(sample_index, tmp_path):
    """Gunicorn replaces a dead worker; repeated deaths within a minute are spaced out, then it recovers."""
    service = start_architecture("monolito", tmp_path, sample_index)
    try:
        service.wait_ready()
        master = psutil.Process(service.server.pid)
        for _ in range(2):
            worker = master.children()[0]
            worker.send_signal(signal.SIGKILL)
            worker.wait(timeout=10)
            end = time.monotonic() + 30
            while time.monotonic() < end and not [c for c in master.children() if c.pid != worker.pid]:
                time.sleep(0.05)
        assert requests.get(f"{service.url}/ping", timeout=2).status_code == 503
        service.wait_ready(deadline_s=180)
        assert "2 workers died in the last minute; waiting 1 s" in service.server.log()
        assert service.invoke({"query": QUESTION, "max_new_tokens": 8}).status_code == 200
    finally:
        service.server.stop()


FAKE_GUNICORN = """#!{python}
# Stands in for gunicorn under start.sh: answers /ping on --bind; the service named in STUBBORN ignores SIGTERM.
import os, signal, sys
from http.server import BaseHTTPRequestHandler, HTTPServer
host, _, port = sys.argv[sys.argv.index("--bind") + 1].rpartition(":")
if os.environ["STUBBORN"] in sys.argv[-1]:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
class Ping(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.send_header("Content-Length", "0"); self.end_headers()
    def log_message(self, *args):
        pass
HTTPServer((host, int(port)), Ping).serve_forever()
"""


def test_stop_is_bounded_when_a_service_ignores_sigterm(tmp_path):
    """SageMaker's SIGKILL comes 30 s after SIGTERM: start.sh's whole stop, orchestrator drain and internal
    services together, ends within its 25 s budget even when a service never exits on SIGTERM."""
    fake = tmp_path / "bin" / "gunicorn"
    fake.parent.mkdir()
    fake.write_text(FAKE_GUNICORN.format(python=sys.executable))
    fake.chmod(0o755)
    ports = {name: free_port() for name in ("public", "vector", "llm")}
    env = child_env(
        PATH=f"{fake.parent}:{VENV_BIN}:{os.environ['PATH']}",
        STUBBORN="vector_service",
        RAG_BIND_HOST="127.0.0.1",
        SAGEMAKER_BIND_TO_PORT=str(ports["public"]),
        RAG_VECTOR_URL=f"http://127.0.0.1:{ports['vector']}",
        RAG_LLM_URL=f"http://127.0.0.1:{ports['llm']}",
    )
    server = ServerProcess([str(ROOT / "Microservicos" / "start.sh"), "serve"], env, tmp_path / "start.log")
    try:
        end = time.monotonic() + 60
        while "service(s) ready" not in server.log():
            assert time.monotonic() < end and server.proc.poll() is None, server.log()
            time.sleep(0.1)
        family = server.descendants()
        stopped_at = time.monotonic()
        os.kill(server.pid, signal.SIGTERM)
        code = server.proc.wait(timeout=40)
        elapsed = time.monotonic() - stopped_at
        psutil.wait_procs(family, timeout=2)
        survivors = [p for p in family if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    finally:
        server.stop()
    assert code == 0 and 24 < elapsed < 27, (elapsed, server.log())
    assert "services still running 25s after SIGTERM: SIGKILL" in server.log()
    assert not survivors
