"""evaluation/gpu_check.py: replayed passages, the comparison table, and an LLM side that needs no FAISS."""

from __future__ import annotations

import subprocess
import sys

import pytest

from evaluation.gpu_check import ReplayRetriever, compare
from rag.settings import REPO_ROOT
from rag.types import Passage


def _passage(rank: int, text: str) -> dict:
    return Passage(rank, f"doc{rank}.md", 0, 0.5, text, excerpt=text[:5]).to_dict()


def test_replay_returns_the_recorded_passages_in_order_and_refuses_an_unknown_query():
    retriever = ReplayRetriever(
        [{"question": "q?", "passages": [_passage(1, "alpha text"), _passage(2, "beta")]}], "mini"
    )
    got = retriever.retrieve("q?", 3)
    assert [(p.rank, p.source, p.excerpt) for p in got] == [(1, "doc1.md", "alpha"), (2, "doc2.md", "beta")]
    assert [p.text for p in retriever.retrieve("q?", 1)] == ["alpha text"]
    assert retriever.model_name == "mini"
    with pytest.raises(KeyError):
        retriever.retrieve("never recorded", 3)


def _report(machine: dict, dtype: str, answers: list[str], accuracy: float) -> dict:
    summary = {"accuracy": accuracy, "refusal": 0.5, "latency_ms_p50": 120.0, "latency_ms_p95": 300.0}
    result = {
        "name": "sample",
        "summary": summary,
        "answers": answers,
        "throughput": {"1": 2.0, "8": 9.5},
        "identical_batched": {"8": len(answers)},
    }
    return {"machine": machine, "levels": [8], "runs": [{"dtype": dtype, "sets": [result]}]}


def test_compare_counts_answers_equal_to_the_first_run():
    cpu = _report({"cpus": 2}, "float32", ["a", "b", "c", "d"], 0.5)
    gpu = _report({"cpus": 16, "gpu": "NVIDIA H200"}, "bfloat16", ["a", "x", "c", "d"], 0.25)
    table = compare([cpu, gpu]).splitlines()
    assert table[0].startswith("| machine | dtype | set | accuracy")
    assert table[0].endswith("| same answers as the first run |")
    assert (
        table[2]
        == "| CPU (2 cores) | float32 | sample | 50.0 % | 50.0 % | 120 / 300 | 2.0 (1), 9.5 (8) | 4/4 (8) | 4/4 |"
    )
    assert (
        table[3]
        == "| NVIDIA H200 | bfloat16 | sample | 25.0 % | 50.0 % | 120 / 300 | 2.0 (1), 9.5 (8) | 4/4 (8) | 3/4 |"
    )


def test_the_llm_side_imports_without_faiss_or_sentence_transformers():
    """The LLM service, a GPU LLM endpoint and the GPU check load the generator without the retrieval stack."""
    code = (
        "import sys, importlib.abc\n"
        "class Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path, target=None):\n"
        "        if name.split('.')[0] in ('faiss', 'sentence_transformers'):\n"
        "            raise ImportError('blocked ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import rag.generation.generator, rag.generation.decoder, rag.loading, evaluation.evaluate, evaluation.gpu_check\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "ok"


def test_auto_dtype_is_float32_on_cpu_and_cuda_and_an_explicit_dtype_is_kept():
    """`make gpu-check` on an H200: bfloat16 was slower for the embedded model and changed batched answers."""
    import torch

    from rag.generation.decoder import choose_dtype

    assert choose_dtype("auto", "cpu") == torch.float32
    assert choose_dtype("auto", "cuda") == torch.float32
    assert choose_dtype("bfloat16", "cuda") == torch.bfloat16
    assert choose_dtype("float16", "cuda") == torch.float16
