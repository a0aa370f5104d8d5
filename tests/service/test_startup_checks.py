"""What the entrypoints refuse before anything loads: wrong values of the variables they use themselves."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass

import pytest

from tests.support import ROOT, ServerProcess, child_env, free_port

ENTRYPOINTS = {"monolito": ROOT / "Monolitico" / "serve", "microservicos": ROOT / "Microservicos" / "start.sh"}


@dataclass
class Outcome:
    returncode: int | None  # None: still running at the deadline (then stopped, with all it started)
    output: str


def run_entrypoint(arch: str, tmp_path, deadline_s: float = 30, **env) -> Outcome:
    """Run the entrypoint as `make serve` does; a refused configuration ends it within seconds."""
    ports = {name: free_port() for name in ("public", "vector", "llm")}
    environment = child_env(
        **{
            "RAG_BIND_HOST": "127.0.0.1",
            "SAGEMAKER_BIND_TO_PORT": str(ports["public"]),
            "RAG_VECTOR_URL": f"http://127.0.0.1:{ports['vector']}",
            "RAG_LLM_URL": f"http://127.0.0.1:{ports['llm']}",
            **env,
        }
    )
    server = ServerProcess([str(ENTRYPOINTS[arch]), "serve"], environment, tmp_path / f"{arch}.log")
    try:
        code = server.proc.wait(timeout=deadline_s)
    except subprocess.TimeoutExpired:
        code = None
    finally:
        server.stop()
    return Outcome(code, server.log())


def test_startup_timeout_never_reaches_bash_arithmetic(tmp_path):
    # Bash evaluates an array subscript inside $((...)), command substitutions included.
    marker = tmp_path / "executed"
    result = run_entrypoint("microservicos", tmp_path, RAG_STARTUP_TIMEOUT=f"x[$(touch {marker})]")
    assert not marker.exists()
    assert result.returncode == 2, result.output[-3000:]
    assert "RAG_STARTUP_TIMEOUT" in result.output


@pytest.mark.parametrize("arch", list(ENTRYPOINTS))
@pytest.mark.parametrize("host", ["0.0.0.0:9999", "127.0.0.1 --reload", "unix:/tmp/rag.sock"])
def test_bind_host_must_be_an_address(arch, host, tmp_path):
    result = run_entrypoint(arch, tmp_path, RAG_BIND_HOST=host)
    assert result.returncode == 2, result.output[-3000:]
    assert f"RAG_BIND_HOST={host!r}" in result.output and "gunicorn" not in result.output.lower()
