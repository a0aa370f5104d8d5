"""Shared helpers for tests that start real processes: free ports, health polling, clean shutdown.

Every process is started in its own process group and stopped by PID (group) when the test ends,
so that no test leaves a process behind. The process manager is the benchmarks' (bench/core/processes.py):
one implementation, re-exported here for the tests.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from bench.core.config import REPO_ROOT
from bench.core.processes import VENV_BIN, ServerProcess, child_env, free_port, wait_for_status

__all__ = [
    "ROOT",
    "VENV_BIN",
    "ServerProcess",
    "child_env",
    "free_port",
    "json_server",
    "measured_figures",
    "sample_prompts",
    "wait_for_status",
]

ROOT = REPO_ROOT
SAMPLE_INDEX = ROOT / "indexes" / "sample"


def sample_prompts(count: int) -> list[tuple[str, list]]:
    """The first `count` questions of the sample set, each with the passages the sample index retrieves for it
    (the generation tests' prompts: several documents, answers of different lengths)."""
    import pytest

    from rag.retrieval.local import load_retriever
    from rag.settings import Settings

    if not (SAMPLE_INDEX / "manifest.json").exists():
        pytest.skip("run `make setup` first: it builds indexes/sample")
    questions = [json.loads(line)["question"] for line in (ROOT / "data" / "sample.questions.jsonl").open()][:count]
    retriever = load_retriever(Settings(index_dir=SAMPLE_INDEX, device="cpu", torch_threads=1))
    return [(question, retriever.retrieve(question, 3)) for question in questions]


# What the test layers measured, by title: (the JSON file they go to, the figures). Filled by the tests through
# `measured_figures`; under pytest-xdist each worker hands its share to the controller (tests/conftest.py),
# which merges them, writes each file and prints them after the run.
_FIGURES: dict[str, tuple[Path, dict]] = {}


def measured_figures(title: str, path: Path) -> dict:
    """The dict a test layer fills with what it measured; written to `path` and printed after the run."""
    return _FIGURES.setdefault(title, (path, {}))[1]


def figures_to_hand_over() -> dict:
    """Every layer's figures of this process, as plain JSON-ready data (an xdist worker's output)."""
    return {title: [str(path), figures] for title, (path, figures) in _FIGURES.items() if figures}


def take_over_figures(handed: dict) -> None:
    """Merge figures another process (an xdist worker) measured into this one's."""
    for title, (path, figures) in handed.items():
        _merge(measured_figures(title, Path(path)), figures)


def _merge(into: dict, more: dict) -> None:
    for key, value in more.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


def report_all_figures(terminalreporter) -> None:
    """Write each layer's figures to its JSON file and print them after the run."""
    for title, (path, figures) in _FIGURES.items():
        if not figures:
            continue
        text = json.dumps(figures, indent=2, sort_keys=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n")
        terminalreporter.section(title)
        terminalreporter.write_line(text)
        terminalreporter.write_line(f"(written to {path.relative_to(ROOT)})")


@contextmanager
def json_server(answer: Callable[[dict], dict]) -> Iterator[str]:
    """A real HTTP server on loopback (http.server, a thread per request) that answers every POST with
    `answer(the request's JSON)` as JSON and 200, like /invocations; yields its URL and stops after."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's naming
            payload = json.dumps(answer(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
