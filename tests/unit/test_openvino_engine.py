"""RAG_LLM_ENGINE=openvino on the real embedded LLM: the same prompts as torch, the same stop rules and usage
counts, streaming, max_new_tokens, sampling, cancellation (a row that leaves stops OpenVINO computing it),
continuous batching (a request joins rows that are decoding, and answers as it would alone); the copy made once
by `python -m rag.models openvino`; and the one-line refusals (no package, no copy, int8, a GPU)."""

from __future__ import annotations

import builtins
import time

import pytest

from rag.errors import ConfigError, RequestTimeout
from rag.generation import openvino_decoder
from rag.generation.batching import Job
from rag.generation.generator import TransformersGenerator, decoding_kwargs
from rag.model_files import COPY_MARKER, convert_openvino, copy_dir, require_copy
from rag.models import engine_model_path
from rag.settings import Settings
from rag.types import GenerationParams
from tests.support import sample_prompts
from tests.unit.engine_jobs import EMBEDDED_LLM_DIR, GREEDY, count_to_400, greedy, together

# The settings and the refusals: no model is loaded.


def test_openvino_is_named_or_the_05b_tiers_engine_on_intel(on_cpu):
    assert Settings.from_env({"RAG_LLM_ENGINE": "OpenVINO"}).llm_engine == "openvino"
    qwen = {"RAG_LLM_MODEL": "embedded:qwen2.5-coder-0.5b-instruct"}
    on_cpu("GenuineIntel")
    assert Settings.from_env(qwen).llm_engine == "openvino"
    assert Settings.from_env({}).llm_engine == "ctranslate2"  # the default tier: one refusal lost on kelvane
    on_cpu("AuthenticAMD")  # not measured there: CTranslate2
    assert Settings.from_env(qwen).llm_engine == "ctranslate2"


def test_the_kv_cache_size_is_a_setting():
    assert Settings.from_env({}).llm_kv_cache_tokens == 0  # the default for the batch size
    assert Settings.from_env({"RAG_LLM_KV_CACHE_TOKENS": "8192"}).llm_kv_cache_tokens == 8192
    with pytest.raises(ConfigError, match="RAG_LLM_KV_CACHE_TOKENS"):
        Settings.from_env({"RAG_LLM_KV_CACHE_TOKENS": "lots"})


def test_a_missing_or_stale_copy_is_one_line_naming_the_command(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ConfigError, match=r"has no OpenVINO copy; run `python -m rag.models openvino --model-dir"):
        engine_model_path(str(tmp_path), str(tmp_path), "openvino")
    copy_dir(tmp_path, "openvino").mkdir()
    (copy_dir(tmp_path, "openvino") / COPY_MARKER).write_text('{"source_fingerprint": "other weights"}')
    with pytest.raises(ConfigError, match="was made from other files"):
        require_copy(tmp_path, "make models", "openvino")
    with pytest.raises(ConfigError, match="RAG_LLM_ENGINE=openvino needs a local model folder"):
        engine_model_path("someone/some-model", "someone/some-model", "openvino")


def test_a_missing_package_is_one_line(monkeypatch, tmp_path):
    real_import = builtins.__import__

    def without_openvino(name, *args, **kwargs):
        if name.startswith("openvino"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", without_openvino)
    # An embedded tier's missing copy cannot be made without the package either.
    with pytest.raises(ConfigError, match=r"the openvino package is not installed; run `make setup`"):
        convert_openvino(tmp_path)
    with pytest.raises(
        ConfigError,
        match=r"the openvino-genai package is not installed; run `make setup`",
    ):
        openvino_decoder.OpenVINODecoder("unused", "unused", "cpu", 1, "auto", "none", None)


@pytest.mark.parametrize(
    "device, quantize, message",
    [
        ("cuda", "none", "runs on the CPU here; RAG_DEVICE=cuda"),
        ("cpu", "int8", "RAG_LLM_QUANTIZE=int8 is not offered"),
    ],
)
def test_what_the_engine_does_not_serve_is_one_line(device, quantize, message):
    with pytest.raises(ConfigError, match=message):
        openvino_decoder.OpenVINODecoder("unused", "unused", device, 1, "auto", quantize, None)


def test_the_kv_cache_holds_a_full_batch_of_served_rows_and_one_whole_context():
    from types import SimpleNamespace

    assert openvino_decoder.kv_cache_blocks(16, 8192) == 512  # 16 rows x 1,024 tokens, in blocks of 32
    assert openvino_decoder.kv_cache_blocks(8, 8192) == 256  # at least one whole context
    assert openvino_decoder.kv_cache_blocks(2, 32768) == 1024
    # RAG_LLM_KV_CACHE_TOKENS sets the pool, rounded up to whole blocks, never below one whole context.
    assert openvino_decoder.kv_cache_blocks(8, 8192, 8192) == 256
    assert openvino_decoder.kv_cache_blocks(8, 8192, 10_000) == 313
    with pytest.raises(ConfigError, match=r"RAG_LLM_KV_CACHE_TOKENS=4096 is less than the model's context \(8192"):
        openvino_decoder.kv_cache_blocks(8, 8192, 4096)
    smollm2 = SimpleNamespace(num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3, hidden_size=576)
    # 30 layers x (K and V) x 3 heads x 64 dims: 11,520 values a token
    assert openvino_decoder.kv_cache_bytes(smollm2, 1024) == 11_520 * 2 * 32_768  # 720 MiB in 16-bit values
    # 8-bit values carry a float32 scale and zero point per head and token
    assert openvino_decoder.kv_cache_bytes(smollm2, 1, 1) == (11_520 + 30 * 2 * 3 * 8) * 32
    qwen15 = SimpleNamespace(num_hidden_layers=28, num_attention_heads=12, num_key_value_heads=2, hidden_size=1536)
    assert openvino_decoder.kv_cache_bytes(qwen15, 1, 4) == 28 * 2 * 2 * 128 * 4 * 32


# The real model, with one thread, as the other generation tests (CI machines are loaded).


@pytest.fixture(scope="module")
def engine_dir():
    if not (EMBEDDED_LLM_DIR / "config.json").exists():
        pytest.skip("run `make setup` first: it installs the embedded LLM")
    return str(convert_openvino(EMBEDDED_LLM_DIR))  # `make setup` made it; at once when it is there


def _openvino(**options) -> TransformersGenerator:
    """OpenVINO in this process (`engine_process=False`), so that a test can look into its pipeline; the service
    drives it from a child process (tests/unit/test_openvino_process.py)."""
    options = {"engine_process": False} | options
    return TransformersGenerator("smollm2", str(EMBEDDED_LLM_DIR), "cpu", threads=1, engine="openvino", **options)


@pytest.fixture(scope="module")
def ov(engine_dir):
    generator = _openvino()
    yield generator
    generator.engine.close()


@pytest.fixture(scope="module")
def prompts():
    return sample_prompts(4)


@pytest.fixture(scope="module")
def answers(ov, prompts):
    """OpenVINO's greedy answer to each sample question."""
    return [ov.generate(question, passages, GREEDY) for question, passages in prompts]


@pytest.mark.slow
def test_max_new_tokens_and_sampling_are_per_request(ov, prompts):
    question, passages = prompts[0][0], prompts[0][1][:1]
    assert ov.generate(question, passages, GenerationParams(max_new_tokens=2)).completion_tokens == 2
    sampled = ov.generate(question, passages, GenerationParams(max_new_tokens=6, temperature=1.0))
    assert 1 <= sampled.completion_tokens <= 6 and sampled.text
    options = decoding_kwargs(GenerationParams(temperature=0.7))
    del options["max_new_tokens"]
    config = ov.engine.backend.generation(options, 9)
    # Drawn from what transformers would (top-k 50, top-p 1: this model's generation config sets none).
    assert (config.do_sample, config.temperature, config.top_k, config.top_p) == (True, pytest.approx(0.7), 50, 1.0)
    assert config.max_new_tokens == 9 and config.stop_token_ids == set(ov.engine.backend.end_ids)
    greedy = ov.engine.backend.generation({"do_sample": False}, 9)
    assert greedy.do_sample is False
    with pytest.raises(ValueError, match="num_beams"):
        ov.engine.backend.generation({"num_beams": 2}, 9)


class CountingSteps:
    """Stands in for the backend's OpenVINO pipeline and counts the steps it is asked for."""

    def __init__(self, pipeline):
        self.pipeline, self.steps = pipeline, 0

    def add_request(self, *args):
        return self.pipeline.add_request(*args)

    def step(self):
        self.steps += 1
        self.pipeline.step()

    def has_non_finished_requests(self):
        return self.pipeline.has_non_finished_requests()


@pytest.fixture
def counting(ov):
    backend = ov.engine.backend
    backend.pipeline = CountingSteps(backend.pipeline)
    yield backend.pipeline
    backend.pipeline = backend.pipeline.pipeline


@pytest.mark.slow
@pytest.mark.parametrize("leaves", ["client gone", "deadline"])
def test_a_row_that_leaves_stops_openvino_computing_it(ov, counting, leaves):
    long = count_to_400(ov, time.monotonic() + 2.0 if leaves == "deadline" else None)
    tokens = ov.engine.run(long)
    if leaves == "deadline":
        with pytest.raises(RequestTimeout):
            list(tokens)
    else:
        assert len([next(tokens) for _ in range(5)]) == 5
        tokens.close()  # the client has gone
    short = Job([1, 2, 3], 1, decoding={"do_sample": False})
    for _ in ov.engine.run(short):  # served once the long row has left
        pass
    assert long.outcome == ("deadline" if leaves == "deadline" else "cancelled") and short.outcome in ("stop", "length")
    # Counting to 400 takes over 1,000 tokens; OpenVINO stopped the row at its next step after it left.
    assert not ov.engine.backend.pipeline.has_non_finished_requests()
    assert len(long.tokens) < 1000 and counting.steps < len(long.tokens) + 10, (counting.steps, len(long.tokens))
    assert ov.engine.admission.in_flight == 0


@pytest.mark.slow
def test_a_row_cancelled_last_frees_its_cache_blocks_once_the_engine_is_idle(ov):
    # OpenVINO frees a cancelled request's blocks at its next step; with nothing after it, the idle engine takes it.
    long = count_to_400(ov, None)
    tokens = ov.engine.run(long)
    assert len([next(tokens) for _ in range(3)]) == 3
    tokens.close()  # the client has gone, and no request follows
    end = time.monotonic() + 10
    while ov.engine.backend.pipeline.has_non_finished_requests() and time.monotonic() < end:
        time.sleep(0.1)
    assert not ov.engine.backend.pipeline.has_non_finished_requests()
    assert long.outcome == "cancelled" and ov.engine.admission.in_flight == 0


@pytest.mark.slow
def test_a_request_joins_rows_that_are_decoding_and_answers_as_alone(ov, prompts, answers):
    """Continuous batching: a request sent while a long answer decodes starts at once, beside it, ends first
    and answers as it does alone; the long row goes on."""
    ov.steps_seen = []
    ov.engine.on_step = lambda step: ov.steps_seen.append((step.kind, step.rows))
    try:
        long = count_to_400(ov)
        long.max_new_tokens = 200
        follow_long = ov.engine.run(long)
        assert len([next(follow_long) for _ in range(5)]) == 5  # decoding
        question, passages = prompts[0]
        short = greedy(ov, question, passages)
        for _ in ov.engine.run(short):
            pass
        assert not long.done and ov._answer(short) == answers[0]
        for _ in follow_long:
            pass
    finally:
        ov.engine.on_step = None
    assert long.outcome == "length" and len(long.tokens) == 200
    assert short.batch_size is not None and short.batch_size == 2  # every step of its answer decoded both rows
    assert ("decode", 2) in ov.steps_seen and ov.engine.admission.in_flight == 0


@pytest.fixture(scope="module")
def batching(engine_dir):
    """A generator whose idle model waits 300 ms for more requests, so requests sent together start together."""
    generator = _openvino(batch_wait_ms=300)
    yield generator
    generator.engine.close()


@pytest.mark.slow
def test_requests_sent_together_answer_as_alone(batching, prompts, answers):
    jobs = together(batching, [greedy(batching, question, passages) for question, passages in prompts])
    assert [batching._answer(job) for job in jobs] == answers
    assert all(job.batch_size > 1 for job in jobs) and batching.engine.admission.in_flight == 0


@pytest.mark.slow
def test_without_the_prefix_cache_the_answers_are_the_same(engine_dir, prompts, answers):
    generator = _openvino(prefix_cache=False)
    try:
        assert [generator.generate(question, passages, GREEDY) for question, passages in prompts] == answers
    finally:
        generator.engine.close()


@pytest.mark.slow
def test_the_copy_is_made_once_from_a_folder_and_goes_stale_with_it(tmp_path, capsys):
    from rag import models
    from tests.fuzz.tiny_llm import make_tiny_llm

    folder = make_tiny_llm(tmp_path / "tiny")  # a one-layer model with the SmolLM2 tokenizer
    assert models.main(["openvino", "--model-dir", str(folder)]) == 0
    assert f"OpenVINO copy ready in {copy_dir(folder, 'openvino')}" in capsys.readouterr().out
    assert require_copy(folder, "unused", "openvino") == copy_dir(folder, "openvino")
    made = (copy_dir(folder, "openvino") / COPY_MARKER).stat().st_mtime_ns
    assert convert_openvino(folder) == copy_dir(folder, "openvino")
    assert (copy_dir(folder, "openvino") / COPY_MARKER).stat().st_mtime_ns == made  # made once
    assert (copy_dir(folder, "openvino") / "openvino_model.xml").is_file()
    assert sorted(path.name for path in folder.iterdir() if path.name.startswith(".")) == []  # no staging left
    (folder / "config.json").write_text((folder / "config.json").read_text().replace("}", ', "note": 1}', 1))
    with pytest.raises(ConfigError, match="was made from other files"):
        require_copy(folder, "unused", "openvino")


def test_a_missing_converter_is_one_line(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    # As in the container images, which leave the converter out.
    with pytest.raises(
        ConfigError,
        match=r"OpenVINO's converter is not installed in .* \(the container images leave it out\); run `make setup`",
    ):
        convert_openvino(tmp_path, converter=tmp_path / "nowhere")


def test_a_container_too_small_for_the_model_and_its_kv_cache_is_one_line_before_it_loads(engine_dir, monkeypatch):
    from rag import runtime
    from rag.errors import InsufficientMemory

    # 513 MiB of weights + 720 MiB of KV cache (32,768 tokens) + 200 MiB of buffers: 1,433 MiB.
    monkeypatch.setattr(runtime, "memory_available", lambda: (1400 * 2**20, 1792 * 2**20))
    with pytest.raises(
        InsufficientMemory, match=r"needs at least 143\d MiB for its weights, its KV cache \(720 MiB\) and its buffers"
    ) as error:
        openvino_decoder.OpenVINODecoder(
            str(EMBEDDED_LLM_DIR), engine_dir, "cpu", 1, "float32", "none", None, kv_cache_tokens=32_768
        )
    message = error.value.message
    assert "RAG_LLM_KV_CACHE_TOKENS (32768) or RAG_MAX_BATCH_SIZE (8)" in message and "\n" not in message
    # The default pool, one whole context at 8 rows (8,192 tokens, 180 MiB): it loads.
    decoder = openvino_decoder.OpenVINODecoder(str(EMBEDDED_LLM_DIR), engine_dir, "cpu", 1, "float32", "none", None)
    assert decoder.dtype == "f32"
