"""Shared helpers for tests that start real processes: free ports, health polling, clean shutdown.

Every process is started in its own process group and stopped by PID (group) when the test ends,
so that no test leaves a process behind. The process manager is the benchmarks' (bench/core/processes.py):
one implementation, re-exported here for the tests.
"""

from __future__ import annotations

import json
from pathlib import Path

from bench.core.config import REPO_ROOT
from bench.core.processes import VENV_BIN, ServerProcess, child_env, free_port, wait_for_status

__all__ = [
    "ROOT",
    "VENV_BIN",
    "ServerProcess",
    "child_env",
    "free_port",
    "report_figures",
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


def report_figures(terminalreporter, title: str, figures: dict, path: Path) -> None:
    """Write the figures a test layer measured to `path` (JSON) and print them after the run."""
    if not figures:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(figures, indent=2, sort_keys=True) + "\n")
    terminalreporter.section(title)
    terminalreporter.write_line(json.dumps(figures, indent=2, sort_keys=True))
    terminalreporter.write_line(f"(written to {path.relative_to(ROOT)})")
