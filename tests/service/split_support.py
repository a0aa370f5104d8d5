"""The split topology on one machine: an LLM endpoint (start.sh with RAG_SERVE=llm), the SageMaker
Runtime stand-in, and a front (start.sh with RAG_LLM_URL=sagemaker://...) whose boto3 reaches the
stand-in through AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME; and the restart-under-load experiment that the
process and the container tests both run."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import requests

from sagemaker_lifecycle.local_runtime import LocalRuntime
from tests.support import ROOT, ServerProcess, child_env, free_port, wait_for_status

LLM_ENDPOINT = "rag-split-llm"
START_SH = ROOT / "Microservicos" / "start.sh"
# boto3 in the front needs some credentials and a region; the stand-in checks neither.
RUNTIME_CLIENT_ENV = {"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local", "AWS_DEFAULT_REGION": "us-east-1"}


class SplitTopology:
    """LLM endpoint, runtime stand-in and front, each on its own free loopback port."""

    def __init__(self, workdir: Path, index_dir: Path, **env: str):
        self.workdir, self.env = workdir, {"RAG_INDEX_DIR": str(index_dir), **env}
        self.llm_port, self.front_port = free_port(), free_port()
        self.llm: ServerProcess | None = None
        self.runtime = LocalRuntime({LLM_ENDPOINT: f"http://127.0.0.1:{self.llm_port}"}).start()
        self.start_llm()
        environment = child_env(
            RAG_LLM_URL=f"sagemaker://{LLM_ENDPOINT}",
            RAG_BIND_HOST="127.0.0.1",
            SAGEMAKER_BIND_TO_PORT=str(self.front_port),
            RAG_VECTOR_URL=f"http://127.0.0.1:{free_port()}",
            AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME=self.runtime.url,
            **RUNTIME_CLIENT_ENV,
            **self.env,
        )
        self.front = ServerProcess([str(START_SH), "serve"], environment, workdir / "front.log")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.front_port}"

    @property
    def llm_url(self) -> str:
        return f"http://127.0.0.1:{self.llm_port}"

    def start_llm(self) -> None:
        """Start the LLM endpoint's container process, as SageMaker does (`serve`, RAG_SERVE=llm)."""
        count = len(list(self.workdir.glob("llm-*.log")))
        environment = child_env(
            RAG_SERVE="llm", RAG_BIND_HOST="127.0.0.1", SAGEMAKER_BIND_TO_PORT=str(self.llm_port), **self.env
        )
        self.llm = ServerProcess([str(START_SH), "serve"], environment, self.workdir / f"llm-{count}.log")

    def kill_llm(self) -> None:
        """The LLM endpoint's container crashes (SIGKILL, nothing drained)."""
        self.llm.stop(signal.SIGKILL)

    def stop(self) -> None:
        """Stop everything that was started, whatever state it is in."""
        for server in (self.front, self.llm):
            if server is not None:
                server.stop()
        self.runtime.stop()


@dataclass
class Recovery:
    """What clients saw while the LLM endpoint's container was killed and started again."""

    outcomes: list[tuple[float, float, int, str]]  # (sent, answered, status, error_type), monotonic seconds
    killed_at: float
    ready_at: float  # when the LLM container's own /ping said 200 again
    degraded: dict  # the front's /ping body while the LLM container was down
    front_ready_after_s: float  # from ready_at until the front's /ping said 200

    def check(self) -> None:
        """The target: 503 upstream_unavailable at once and never a 500 while it is down, /ping degraded,
        every request sent once its /ping says 200 answered, the front's /ping 200 within 2 s."""
        assert self.degraded["status"] == "degraded" and self.degraded["services"]["llm"] != "ready", self.degraded
        failures = [o for o in self.outcomes if o[2] != 200]
        assert failures, "no request failed while the LLM container was down"
        assert {(status, kind) for _, _, status, kind in failures} == {(503, "upstream_unavailable")}, failures
        # Refused at once (a request in flight at the kill fails when the container dies).
        assert max(answered - sent for sent, answered, _, _ in failures if sent >= self.killed_at) < 2
        after = [o for o in self.outcomes if o[0] >= self.ready_at]
        assert after and all(status == 200 for _, _, status, _ in after), after
        assert self.front_ready_after_s <= 2.0, f"the front's /ping said 200 {self.front_ready_after_s:.1f} s later"


def restart_under_load(
    front_url: str,
    llm_url: str,
    kill: Callable[[], None],
    start: Callable[[], None],
    payload: dict,
    clients: int = 2,
    proc=None,
) -> Recovery:
    """Keep `clients` requests going to the front; kill the LLM container, start it again, and record."""
    outcomes: list[tuple[float, float, int, str]] = []
    stop = threading.Event()

    def load():
        with requests.Session() as session:
            while not stop.is_set():
                sent = time.monotonic()
                response = session.post(f"{front_url}/invocations", json=payload, timeout=120)
                outcomes.append((sent, time.monotonic(), response.status_code, response.json().get("error_type", "")))

    threads = [threading.Thread(target=load) for _ in range(clients)]
    for thread in threads:
        thread.start()
    try:
        end = time.monotonic() + 120
        while len([o for o in outcomes if o[2] == 200]) < clients and time.monotonic() < end:
            time.sleep(0.05)
        killed_at = time.monotonic()
        kill()
        wait_for_status(f"{front_url}/ping", 503, deadline_s=15)
        degraded = requests.get(f"{front_url}/ping", timeout=2).json()
        start()
        wait_for_status(f"{llm_url}/ping", 200, deadline_s=300, proc=proc() if proc else None)
        ready_at = time.monotonic()
        wait_for_status(f"{front_url}/ping", 200, deadline_s=30)
        front_ready_after = time.monotonic() - ready_at
        end = ready_at + 120
        while len([o for o in outcomes if o[0] >= ready_at]) < clients and time.monotonic() < end:
            time.sleep(0.02)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=120)
    return Recovery(outcomes, killed_at, ready_at, degraded, front_ready_after)
