"""Start real server processes, watch their memory, and always stop them: the benchmarks' and the tests'.

`ServerProcess` is any server started as a child in its own session (process group). stop() signals the
group, then kills every process that was ever seen in the tree: start.sh gives each service its own
process group, so signalling one group is not enough. `Served` is one architecture started exactly as
`make serve` starts it, on free loopback ports. tests/support.py re-exports this module for the tests.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import psutil
import requests

from bench.core.config import REPO_ROOT

VENV_BIN = Path(sys.executable).parent
ENTRYPOINTS = {
    "monolito": REPO_ROOT / "Monolitico" / "serve",
    "microservicos": REPO_ROOT / "Microservicos" / "start.sh",
}
# Which process is which, from its command line (gunicorn workers keep their master's command line).
ROLES = (
    ("vector_service", "Microservicos.vector_service"),
    ("llm_service", "Microservicos.llm_service"),
    ("orchestrator", "Microservicos.orchestrator"),
    ("monolith", "Monolitico.app"),
)
READY_MESSAGE = re.compile(r"(\S.*?) ready after ([0-9.]+) s")


def log_records(text: str) -> Iterator[dict]:
    """The JSON log lines in a server's output (serving/telemetry.py: one object per line), others skipped."""
    for line in text.splitlines():
        if line.startswith("{"):
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                yield record


def request_lines(text: str, path: str) -> list[tuple[float, float]]:
    """(epoch seconds, ms) of each request to `path` answered 200, from the one line a service logs per
    request (serving/telemetry.py: {"timestamp", ..., "path", "status", "ms"})."""
    return [
        (datetime.strptime(record["timestamp"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp(), record["ms"])
        for record in log_records(text)
        if record.get("logger") == "rag.http" and record.get("path") == path and record.get("status") == 200
    ]


_HANDED_OUT: set[int] = set()
_HANDED_OUT_LOCK = threading.Lock()


def _port_share() -> tuple[int, int]:
    """(this process's share, number of shares) of the port numbers: (0, 1) unless pytest-xdist runs it."""
    worker, count = os.environ.get("PYTEST_XDIST_WORKER", ""), os.environ.get("PYTEST_XDIST_WORKER_COUNT", "")
    if worker.startswith("gw") and worker[2:].isdigit() and count.isdigit() and int(count) > 1:
        return int(worker[2:]) % int(count), int(count)
    return 0, 1


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now and that this process has not handed out before.

    A port is only free until its server binds it, and servers start asynchronously: without the memory,
    two architectures started back to back could be given the same port (the kernel may hand a freshly
    released port out again), and one's orchestrator would then talk to the other's server. Test processes
    that run side by side (pytest-xdist's workers, PYTEST_XDIST_WORKER=gw<i> of PYTEST_XDIST_WORKER_COUNT)
    each keep to their own share of the port numbers, so one never takes a port another has just handed out.
    """
    share, shares = _port_share()
    with _HANDED_OUT_LOCK:
        for _ in range(10_000):
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", 0))
                port = sock.getsockname()[1]
            # Port // 2, not the port: Linux gives bind(0) ports of one parity (and connect() the other).
            if (port // 2) % shares == share and port not in _HANDED_OUT:
                _HANDED_OUT.add(port)
                return port
    raise RuntimeError(f"no free loopback port in share {share} of {shares} after 10,000 offers")


def child_env(**overrides) -> dict[str, str]:
    """The environment of a child server: offline, the repository importable, this venv first on PATH."""
    env = dict(os.environ)
    env.update(
        PYTHONPATH=str(REPO_ROOT),
        PATH=f"{VENV_BIN}:{env.get('PATH', '')}",
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        PYTHONUNBUFFERED="1",
    )
    env.update({key: str(value) for key, value in overrides.items()})
    return env


def wait_for_status(url: str, status: int = 200, deadline_s: float = 180.0, proc=None) -> requests.Response:
    """Poll `url` until it answers `status`; fail with the last answer when the deadline passes (or at
    once when the process `proc` exits)."""
    end = time.monotonic() + deadline_s
    last = "no answer"
    while time.monotonic() < end:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {url} answered {status}")
        try:
            response = requests.get(url, timeout=2)
            if response.status_code == status:
                return response
            last = f"{response.status_code} {response.text[:200]}"
        except requests.RequestException as exc:
            last = repr(exc)
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer {status} within {deadline_s}s (last: {last})")


class ServerProcess:
    """A real server started as a child in its own session; stop() always reaps its whole tree."""

    def __init__(self, argv: list[str], env: dict[str, str], log_path: Path, cwd: Path = REPO_ROOT):
        self.argv = argv
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            argv, cwd=cwd, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self._seen: dict[int, psutil.Process] = {}

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        """Everything the server wrote so far."""
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def tree(self) -> list[psutil.Process]:
        """Every live process of the server, itself first; each one is remembered for stop()."""
        try:
            root = psutil.Process(self.proc.pid)
            family = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []
        for proc in family:
            self._seen.setdefault(proc.pid, proc)
        return family

    def descendants(self) -> list[psutil.Process]:
        """Every live process below this one, whatever its process group."""
        return self.tree()[1:]

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 30.0) -> int:
        """Send `sig` to the process group and wait; then SIGKILL the group and every process ever seen in
        the tree (start.sh gives each service its own group). Returns the exit code."""
        self.tree()  # remember the whole family before signalling: some of it re-parents as it dies
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, sig)
                self.proc.wait(timeout=timeout_s)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        code = self.proc.wait(timeout=10)
        leftovers = [proc for pid, proc in self._seen.items() if pid != self.proc.pid and proc.is_running()]
        for proc in leftovers:
            try:
                proc.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(leftovers, timeout=10)
        self._log.close()
        return code


def role_of(proc: psutil.Process) -> str:
    """vector_service, llm_service, orchestrator, monolith, or supervisor (start.sh and its helpers)."""
    try:
        cmdline = " ".join(proc.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return "gone"
    return next((role for role, marker in ROLES if marker in cmdline), "supervisor")


class Served(ServerProcess):
    """One running architecture, started as `make serve` starts it: its public URL, internal ports and
    process tree."""

    def __init__(self, arch: str, log_path: Path, env: dict, root: Path = REPO_ROOT):
        """`root` is the checkout whose entrypoint runs (evaluation/previous.py gives an earlier commit's)."""
        self.arch = arch
        self.ports = {"public": free_port(), "vector": free_port(), "llm": free_port()}
        self.url = f"http://127.0.0.1:{self.ports['public']}"
        # `env` may override the wiring too (bench/serving/split.py points RAG_LLM_URL at an endpoint).
        environment = child_env(
            **{
                "RAG_BIND_HOST": "127.0.0.1",
                "SAGEMAKER_BIND_TO_PORT": self.ports["public"],
                "RAG_VECTOR_URL": f"http://127.0.0.1:{self.ports['vector']}",
                "RAG_LLM_URL": f"http://127.0.0.1:{self.ports['llm']}",
                **env,
            }
        )
        environment["PYTHONPATH"] = str(root)
        entrypoint = root / ENTRYPOINTS[arch].relative_to(REPO_ROOT)
        super().__init__([str(entrypoint), "serve"], environment, log_path, cwd=root)

    def wait_ready(self, deadline_s: float = 300.0, interval_s: float = 0.05) -> float:
        """Poll /ping until 200; return the seconds since the process was started."""
        end = time.monotonic() + deadline_s
        with requests.Session() as session:
            while time.monotonic() < end:
                if self.proc.poll() is not None:
                    raise RuntimeError(
                        f"{self.arch} exited ({self.proc.returncode}) before /ping answered 200; see {self.log_path}"
                    )
                try:
                    if session.get(f"{self.url}/ping", timeout=2).status_code == 200:
                        return time.monotonic() - self.started
                except requests.RequestException:
                    pass
                self.tree()  # remember children early, so stop() finds them even if they re-parent
                time.sleep(interval_s)
        raise TimeoutError(f"{self.arch} /ping was not 200 after {deadline_s:.0f} s; see {self.log_path}")

    def ready_lines(self) -> dict[str, float]:
        """The services' own "<what> ready after X s" log lines (model load, as each process saw it)."""
        matches = (READY_MESSAGE.fullmatch(str(record.get("message"))) for record in log_records(self.log()))
        return {
            match.group(1): float(match.group(2)) for match in matches if match and "service(s)" not in match.group(1)
        }

    def service_times(self, since: float, until: float) -> list[tuple[float, str, float]]:
        """(epoch seconds, path, ms) of each internal /retrieve and /generate the services logged in
        [since, until]: their own handling time, to set against what the orchestrator measured."""
        text = self.log()
        return sorted(
            (stamp, path, ms)
            for path in ("/retrieve", "/generate")
            for stamp, ms in request_lines(text, path)
            if since <= stamp <= until
        )

    def worker(self, role: str) -> psutil.Process:
        """The gunicorn worker of `role`: the process of that role whose parent has the same role."""
        family = [proc for proc in self.tree() if role_of(proc) == role]
        pids = {proc.pid for proc in family}
        for proc in family:
            try:
                if proc.ppid() in pids:
                    return proc
            except psutil.NoSuchProcess:
                continue
        raise LookupError(f"no {role} worker in the {self.arch} process tree")

    def memory(self, detailed: bool = False) -> dict:
        """RSS (and with `detailed`, PSS) in MiB, summed over the tree and per role."""
        total, pss, by_role = 0, 0, {}
        for proc in self.tree():
            try:
                if detailed:
                    info = proc.memory_full_info()
                    pss += info.pss
                else:
                    info = proc.memory_info()
                rss, role = info.rss, role_of(proc)
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            total += rss
            by_role[role] = by_role.get(role, 0) + rss / 2**20
        result = {"rss_mib": total / 2**20, "by_role_mib": by_role}
        if detailed:
            result["pss_mib"] = pss / 2**20
        return result


class MemorySampler:
    """Samples a Served tree's RSS in a background thread while entered, for the peak under load.

    It can be entered again and again: the bench samples only while that architecture is under load,
    so the sampling thread never competes with the in-process baseline for the GIL.
    """

    def __init__(self, served: Served, interval_s: float):
        self.served, self.interval_s = served, interval_s
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> MemorySampler:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"memory-{self.served.arch}", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.monotonic(), self.served.memory()["rss_mib"]))
            self._stop.wait(self.interval_s)

    @property
    def peak_mib(self) -> float:
        return max((rss for _, rss in self.samples), default=0.0)
