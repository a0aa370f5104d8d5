"""Real containers for the container tests: built once with `make build OFFLINE=1`, run exactly as
SageMaker runs them (`docker run IMAGE serve`, /opt/ml/model mounted read-only), always removed.

Every container is published on a free 127.0.0.1 port and removed by id when its test ends, so no
test leaves a container behind, whatever happens.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

from tests.support import ROOT, free_port

ARCHES = ("monolito", "microservicos")
# Two checkouts testing at once on one daemon (worktrees) set their own tag, so neither runs the other's image.
IMAGE_TAG = os.environ.get("RAG_TEST_IMAGE_TAG", "container-test")
# A slow, shared CI machine loads two torch processes at once: be generous, the deadlines only
# bound a failure.
STARTUP_DEADLINE_S = 300.0
QUERY_TIMEOUT_S = 120.0
# Short answers keep generation (the slow part on CPU) to seconds; the fact comes first anyway.
QUESTION = {"query": "When did the Velmora Tramway open, and who designed its first line?", "max_new_tokens": 24}


def docker_cli() -> str:
    """The docker client `make build` uses too (mk/containers.mk): one with BuildKit support."""
    if os.environ.get("DOCKER"):
        return os.environ["DOCKER"]
    found = shutil.which("docker")
    if found and subprocess.run([found, "buildx", "version"], capture_output=True).returncode == 0:
        return found
    return "/usr/bin/docker" if Path("/usr/bin/docker").exists() else (found or "docker")


DOCKER = docker_cli()


def docker(*args: str, timeout: float = 120.0, check: bool = True) -> subprocess.CompletedProcess:
    """Run one docker CLI command and return its output; fail with stderr when `check` is set."""
    result = subprocess.run([DOCKER, *args], capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args[:3])} failed ({result.returncode}): {result.stderr.strip()}")
    return result


def daemon_problem() -> str | None:
    """Why no Docker daemon can be used here, or None when one answers."""
    try:
        result = subprocess.run(
            [DOCKER, "version", "--format", "{{.Server.Version}}"], capture_output=True, text=True, timeout=20
        )
    except FileNotFoundError:
        return f"no docker client ({DOCKER}); apt-get install -y docker.io"
    except subprocess.TimeoutExpired:
        return "`docker version` did not answer within 20 s"
    if result.returncode != 0 or not result.stdout.strip():
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        return f"no Docker daemon reachable ({lines[-1] if lines else 'docker version failed'})"
    return None


def build_image(arch: str, log_path: Path) -> tuple[str, float]:
    """`make build OFFLINE=1` for one architecture; returns the image reference and the seconds it took."""
    image = f"rag-{arch}:{IMAGE_TAG}"
    started = time.monotonic()
    with open(log_path, "wb") as log:
        result = subprocess.run(
            [
                "make",
                "--no-print-directory",
                "build",
                "OFFLINE=1",
                f"ARCH={arch}",
                f"IMAGE_NAME=rag-{arch}",
                f"IMAGE_TAG={IMAGE_TAG}",
                f"DOCKER={DOCKER}",
            ],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            timeout=1800,
        )
    if result.returncode != 0:
        tail = log_path.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"make build ARCH={arch} failed ({result.returncode}); log {log_path}:\n{tail}")
    return image, time.monotonic() - started


@dataclass
class Startup:
    """What /ping answered from `docker run` until it first said 200."""

    statuses: list[int] = field(default_factory=list)  # each distinct status in order; 0 = no answer
    ready_s: float | None = None  # seconds from `docker run` to the first 200


class Container:
    """One container run as SageMaker runs it; `remove()` (or leaving the `with`) always deletes it."""

    def __init__(
        self,
        image: str,
        *,
        model_dir: Path | None = None,
        env: dict[str, str] | None = None,
        memory: str | None = None,
        container_port: int = 8080,
        user: str | None = None,
    ):
        self.image = image
        self.port = free_port()
        args = ["run", "--detach", "--publish", f"127.0.0.1:{self.port}:{container_port}"]
        if model_dir is not None:
            args += ["--volume", f"{model_dir}:/opt/ml/model:ro"]
        for name, value in (env or {}).items():
            args += ["--env", f"{name}={value}"]
        if memory is not None:
            args += ["--memory", memory, "--memory-swap", memory]  # no swap: the limit is the limit
        if user is not None:
            args += ["--user", user]  # SageMaker starts as root; this is how a normal user's start looks
        self.started = time.monotonic()
        self.id = docker(*args, image, "serve").stdout.strip()

    def __enter__(self) -> Container:
        return self

    def __exit__(self, *exc) -> None:
        self.remove()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def ping(self) -> requests.Response:
        """One health check with SageMaker's own 2 s timeout."""
        return requests.get(self.url("/ping"), timeout=2)

    def invoke(
        self,
        body,
        *,
        content_type: str = "application/json",
        timeout: float = QUERY_TIMEOUT_S,
        request_id: str | None = None,
    ) -> requests.Response:
        """POST /invocations; dicts are sent as JSON, bytes and str as they are."""
        data = json.dumps(body) if isinstance(body, dict) else body
        headers = {"Content-Type": content_type, **({"X-Request-Id": request_id} if request_id else {})}
        return requests.post(self.url("/invocations"), data=data, headers=headers, timeout=timeout)

    def wait_ready(self, deadline_s: float = STARTUP_DEADLINE_S) -> Startup:
        """Poll /ping every 0.1 s until it answers 200, recording the statuses on the way."""
        startup = Startup()
        end = time.monotonic() + deadline_s
        while time.monotonic() < end:
            try:
                status = self.ping().status_code
            except requests.RequestException:
                status = 0
            if not startup.statuses or startup.statuses[-1] != status:
                startup.statuses.append(status)
            if status == 200:
                startup.ready_s = round(time.monotonic() - self.started, 1)
                return startup
            if status == 0 and not self.running():
                raise RuntimeError(f"{self.image} exited before /ping answered 200:\n{self.logs()[-3000:]}")
            time.sleep(0.1)
        raise TimeoutError(
            f"{self.image} /ping not 200 within {deadline_s}s ({startup.statuses}):\n{self.logs()[-3000:]}"
        )

    def running(self) -> bool:
        return self.inspect("{{.State.Running}}") == "true"

    def inspect(self, template: str) -> str:
        return docker("inspect", "--format", template, self.id).stdout.strip()

    def logs(self) -> str:
        result = docker("logs", self.id, check=False)
        return result.stdout + result.stderr

    def exec_python(self, code: str, timeout: float = 60.0) -> subprocess.CompletedProcess:
        """Run Python inside the container (the images have no curl, ps or pkill)."""
        return docker("exec", self.id, "python", "-c", code, timeout=timeout, check=False)

    def stop(self) -> float:
        """`docker stop` with SageMaker's 30 s grace period; returns the seconds it took."""
        started = time.monotonic()
        docker("stop", "--time", "30", self.id, timeout=60)
        return round(time.monotonic() - started, 1)

    def remove(self) -> None:
        docker("rm", "--force", "--volumes", self.id, check=False, timeout=60)


def wait_until(predicate, deadline_s: float, interval_s: float = 0.2):
    """Poll `predicate` until it returns something truthy; return that, or None at the deadline."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(interval_s)
    return None


def start_ready(containers: dict[str, Container]) -> dict[str, Startup]:
    """Wait for several containers at once (they load in parallel); return each one's startup record."""
    results: dict[str, Startup | BaseException] = {}

    def wait(arch: str) -> None:
        try:
            results[arch] = containers[arch].wait_ready()
        except BaseException as exc:  # re-raised below, in the test's own thread
            results[arch] = exc

    threads = [threading.Thread(target=wait, args=(arch,)) for arch in containers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for outcome in results.values():
        if isinstance(outcome, BaseException):
            raise outcome
    return results  # type: ignore[return-value]
