"""RAG_LLM_ENGINE=openvino as the service runs it: the pipeline in a child process (rag/generation/openvino_process.py),
because OpenVINO GenAI's step() holds the GIL. The same greedy answers as OpenVINO in this process, the child's
errors raised here with their kind, its load line logged here, and the child gone with the backend or the engine."""

from __future__ import annotations

import logging
import time

import pytest

from rag.errors import InsufficientMemory, NotReady, RagError
from rag.generation.batching import Job
from rag.generation.generator import TransformersGenerator
from rag.generation.openvino_process import OpenVINOProcess
from rag.model_files import convert_openvino
from tests.support import sample_prompts
from tests.unit.engine_jobs import EMBEDDED_LLM_DIR, GREEDY

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def engine_dir():
    if not (EMBEDDED_LLM_DIR / "config.json").exists():
        pytest.skip("run `make setup` first: it installs the embedded LLM")
    return str(convert_openvino(EMBEDDED_LLM_DIR))


def _generator(engine_process: bool, **options) -> TransformersGenerator:
    return TransformersGenerator(
        "smollm2", str(EMBEDDED_LLM_DIR), "cpu", threads=1, engine="openvino", engine_process=engine_process, **options
    )


def test_the_child_gives_the_answers_openvino_gives_in_this_process(engine_dir, caplog):
    prompts = sample_prompts(3)
    with caplog.at_level(logging.INFO):
        child = _generator(engine_process=True, kv_cache_tokens=12_288)  # RAG_LLM_KV_CACHE_TOKENS reaches the child
    try:
        assert isinstance(child.engine.backend, OpenVINOProcess)
        # Its load line, logged in the child, comes back with its first reply, with the pool it was given.
        loaded = [r.getMessage() for r in caplog.records if "loaded with OpenVINO GenAI" in r.getMessage()]
        assert len(loaded) == 1 and "KV cache 12288 tokens" in loaded[0], loaded
        assert (child.device, child.dtype) == ("cpu", "f32") and child.context_length > 0
        served = [child.generate(question, passages, GREEDY) for question, passages in prompts]
    finally:
        child.engine.close()
    here = _generator(engine_process=False)
    try:
        alone = [here.generate(question, passages, GREEDY) for question, passages in prompts]
    finally:
        here.engine.close()
    assert [(a.text, a.prompt_tokens, a.completion_tokens) for a in served] == [
        (a.text, a.prompt_tokens, a.completion_tokens) for a in alone
    ]


@pytest.fixture
def backend(engine_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(EMBEDDED_LLM_DIR)
    backend = OpenVINOProcess(str(EMBEDDED_LLM_DIR), engine_dir, "cpu", 1, "auto", "none", tokenizer, 2, True)
    yield backend
    backend.close()


def test_rows_errors_and_the_end_of_the_child(backend):
    first = backend.prefill(job := Job([1, 2, 3, 4], 8, decoding={"do_sample": False}))
    assert isinstance(first, int) and job.state is not None
    assert len(backend.decode()) == 1
    backend.remove([0])
    backend.idle()
    # A request the engine refuses raises here what it raised there, and the child goes on serving.
    with pytest.raises(ValueError, match="num_beams"):
        backend.prefill(Job([1, 2, 3], 4, decoding={"num_beams": 2}))
    assert isinstance(backend.prefill(Job([5, 6, 7], 4, decoding={"do_sample": False})), int)
    # A child that died (the OOM killer sends SIGKILL) is an error for the rows it held, not a hang, and the next
    # request starts a new child: the service serves on.
    dead = backend._child
    dead.kill()
    dead.wait()
    with pytest.raises(RagError, match=r"the OpenVINO engine's process ended \(exit status -9\)"):
        backend.decode()
    backend.remove([0])  # the engine drops the failed rows: nothing to ask a dead child
    assert isinstance(backend.prefill(Job([5, 6, 7], 4, decoding={"do_sample": False})), int)
    assert backend._child is not dead and backend._child.poll() is None


def test_children_that_keep_dying_are_started_again_only_after_the_backoff(backend):
    # The first death in a minute: the next request starts a new child at once (above). The second, here while no
    # call was running (so no call saw it): the next request gets a 503 at once, not a child loaded again, until
    # rag.runtime.restart_delay(2) = 1 s has passed since; then a new child serves.
    greedy = {"do_sample": False}
    for _ in range(2):
        dead = backend._child
        dead.kill()
        dead.wait()
        try:
            backend.prefill(Job([5, 6, 7], 4, decoding=greedy))
        except NotReady as exc:
            refused = exc
            break
    else:
        pytest.fail("two deaths in a minute, and the child was started again at once")
    assert refused.status == 503 and "ended 2 times in the last minute; it starts again in 1 s" in refused.message
    assert backend._child is None  # nothing was started
    time.sleep(1.1)
    assert isinstance(backend.prefill(Job([5, 6, 7], 4, decoding=greedy)), int)
    assert backend._child is not dead and backend._child.poll() is None


def test_closing_the_backend_ends_the_child(backend):
    child = backend._child
    assert child.poll() is None
    backend.close()
    assert child.poll() is not None


def test_a_model_too_big_for_the_memory_left_is_refused_with_its_kind(engine_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(EMBEDDED_LLM_DIR)
    # A KV cache pool of 4 million tokens (about 86 GiB for this model) fits no machine this runs on: the child's
    # memory check refuses it, and the parent raises InsufficientMemory (the service's /ping then says
    # insufficient_memory, as with the other engines), not an internal error; the child is gone.
    with pytest.raises(InsufficientMemory, match=r"needs at least \d+ MiB for its weights, its KV cache") as refused:
        OpenVINOProcess(
            str(EMBEDDED_LLM_DIR), engine_dir, "cpu", 1, "auto", "none", tokenizer, 2, True, kv_cache_tokens=4_000_000
        )
    assert refused.value.error_type == "insufficient_memory" and "RAG_LLM_KV_CACHE_TOKENS" in refused.value.message
