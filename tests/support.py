"""Shared helpers for tests that start real processes: free ports, health polling, clean shutdown.

Every process is started in its own process group and stopped by PID (group) when the test ends,
so that no test leaves a process behind.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def base_env(**overrides: str) -> dict[str, str]:
    """Environment for a child process: offline, the repository importable, the venv first on PATH."""
    env = dict(os.environ)
    env.update(
        PYTHONPATH=str(ROOT),
        PATH=f"{VENV_BIN}:{env.get('PATH', '')}",
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        PYTHONUNBUFFERED="1",
    )
    env.update({key: str(value) for key, value in overrides.items()})
    return env


def wait_for_status(url: str, status: int = 200, deadline_s: float = 180.0, proc=None) -> requests.Response:
    """Poll `url` until it answers `status`; fail with the last answer when the deadline passes."""
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
    """A real server started as a child in its own process group; stop() always reaps it."""

    def __init__(self, argv: list[str], env: dict[str, str], log_path: Path, cwd: Path = ROOT):
        self.argv = argv
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen(
            argv, cwd=cwd, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.started = time.monotonic()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        """Everything the server wrote so far."""
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def descendants(self) -> list:
        """Every live process below this one (psutil objects), whatever its process group."""
        import psutil

        try:
            return psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        """Send `sig` to the process group, wait, then SIGKILL whatever is left. Returns the exit code."""
        import psutil

        # start.sh gives each service its own process group: remember them all before signalling.
        family = self.descendants()
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
        # Whatever is left in the group (grandchildren included) is killed for good.
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        code = self.proc.wait(timeout=10)
        for child in family:
            try:
                child.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(family, timeout=10)
        self._log.close()
        return code


def report_figures(terminalreporter, title: str, figures: dict, path: Path) -> None:
    """Write the figures a test layer measured to `path` (JSON) and print them after the run."""
    if not figures:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(figures, indent=2, sort_keys=True) + "\n")
    terminalreporter.section(title)
    terminalreporter.write_line(json.dumps(figures, indent=2, sort_keys=True))
    terminalreporter.write_line(f"(written to {path.relative_to(ROOT)})")
