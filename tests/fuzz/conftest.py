"""Fuzzing fixtures: both architectures started by their real entrypoints with the tiny LLM, and the
figures of every run collected (tests/fuzz/fuzz_support.py) for the terminal summary and build/fuzz-results.json."""

from __future__ import annotations

import pytest

from tests.fuzz.tiny_llm import make_tiny_llm
from tests.service.conftest import sample_index, start_architecture  # noqa: F401 - sample_index is a fixture


@pytest.fixture(scope="session")
def tiny_llm(tmp_path_factory):
    """The fuzzing LLM, made once per session in a folder the workers can read."""
    folder = tmp_path_factory.mktemp("tiny-llm")
    folder.chmod(0o755)
    return make_tiny_llm(folder / "model")


@pytest.fixture(scope="module", params=["monolito", "microservicos"])
def fuzzed(request, sample_index, tiny_llm, tmp_path_factory):  # noqa: F811 - the fixture imported above
    """One architecture, ready, serving the sample index with the tiny LLM (one torch thread each)."""
    service = start_architecture(
        request.param,
        tmp_path_factory.mktemp(f"fuzz-{request.param}"),
        sample_index,
        RAG_LLM_MODEL=tiny_llm,
        RAG_TORCH_THREADS=1,
    )
    try:
        service.wait_ready()
        service.arch = request.param
        yield service
    finally:
        service.server.stop()
