"""The split topology on one machine: an LLM endpoint (start.sh with RAG_SERVE=llm), the SageMaker
Runtime stand-in, and a front (start.sh with RAG_LLM_URL=sagemaker://...) whose boto3 reaches the
stand-in through AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME. Shared by the split service tests and `bench`."""
from __future__ import annotations

import signal
from pathlib import Path

from sagemaker_lifecycle.local_runtime import LocalRuntime
from tests.support import ROOT, ServerProcess, base_env, free_port

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
        environment = base_env(RAG_LLM_URL=f"sagemaker://{LLM_ENDPOINT}", RAG_BIND_HOST="127.0.0.1",
                               SAGEMAKER_BIND_TO_PORT=str(self.front_port),
                               RAG_VECTOR_URL=f"http://127.0.0.1:{free_port()}",
                               AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME=self.runtime.url, **RUNTIME_CLIENT_ENV, **self.env)
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
        environment = base_env(RAG_SERVE="llm", RAG_BIND_HOST="127.0.0.1", SAGEMAKER_BIND_TO_PORT=str(self.llm_port),
                               **self.env)
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
