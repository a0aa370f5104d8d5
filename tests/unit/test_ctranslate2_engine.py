"""RAG_LLM_ENGINE=ctranslate2 on the real embedded LLM: the same prompts as torch, the same stop rules and usage
counts, streaming, max_new_tokens, cancellation, static batches that answer as each request would alone;
and the one-line refusals (no package, no converted copy, an unknown engine, a compute type the device
lacks)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from rag.errors import ConfigError, RequestTimeout
from rag.generation import ctranslate2_decoder
from rag.generation.batching import Job
from rag.generation.generator import TransformersGenerator, decoding_kwargs
from rag.ladder import tier
from rag.model_files import COPY_MARKER, convert_ctranslate2, copy_dir, require_copy
from rag.models import engine_model_path
from rag.settings import LLM_ENGINES, Settings, compute_type
from rag.types import GenerationParams
from tests.support import child_env, sample_prompts
from tests.unit.engine_jobs import EMBEDDED_LLM_DIR, GREEDY, count_to_400, greedy, together

# The settings and the refusals: no model is loaded.


def test_the_engine_is_validated_and_defaults_to_the_tiers(on_cpu):
    assert LLM_ENGINES == ("torch", "ctranslate2", "openvino")
    # The default tier, smollm2-135m-instruct, says ctranslate2 on every CPU (the engines' rule, measured per CPU);
    # a model of no tier is served by torch.
    for vendor in ("GenuineIntel", "AuthenticAMD", None):
        on_cpu(vendor)
        assert Settings.from_env({}).llm_engine == "ctranslate2"
        assert Settings.from_env({"RAG_LLM_ENGINE": "Torch"}).llm_engine == "torch"
        assert Settings.from_env({"RAG_LLM_MODEL": "Qwen/Qwen2.5-0.5B-Instruct"}).llm_engine == "torch"
        assert Settings.from_env({"RAG_LLM_ENGINE": "CTranslate2"}).llm_engine == "ctranslate2"
    with pytest.raises(ConfigError, match="RAG_LLM_ENGINE='onnx' is not valid; use torch or ctranslate2 or openvino"):
        Settings.from_env({"RAG_LLM_ENGINE": "onnx"})


def test_this_machines_vendor_is_read_from_cpuinfo(tmp_path):
    from rag.runtime import cpu_vendor

    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC\n")
    assert cpu_vendor(info) == "AuthenticAMD"
    assert cpu_vendor(tmp_path / "missing") is None


def test_a_cpu_vendors_choice_applies_only_when_the_model_runs_on_the_cpu(monkeypatch, on_cpu, tmp_path):
    """On a GPU instance with an Intel CPU the tier's own engine serves (CTranslate2 finds the GPU itself); the
    per-vendor choices are CPU engines."""
    from rag import settings
    from rag.runtime import gpu_visible

    qwen = {"RAG_LLM_MODEL": "embedded:qwen2.5-coder-0.5b-instruct"}  # openvino on Intel CPUs
    on_cpu("GenuineIntel")
    monkeypatch.setattr(settings, "gpu_visible", lambda: True)
    assert Settings.from_env(qwen).llm_engine == "ctranslate2"
    assert Settings.from_env({**qwen, "RAG_DEVICE": "cpu"}).llm_engine == "openvino"
    assert Settings.from_env({**qwen, "RAG_DEVICE": "auto", "SM_NUM_GPUS": "0"}).llm_engine == "openvino"
    monkeypatch.setattr(settings, "gpu_visible", lambda: False)
    assert Settings.from_env(qwen).llm_engine == "openvino"
    assert Settings.from_env({**qwen, "RAG_DEVICE": "cuda"}).llm_engine == "ctranslate2"
    # The device nodes a container sees only when it is given a GPU.
    assert not gpu_visible(tmp_path)
    (tmp_path / "nvidiactl").touch()
    assert not gpu_visible(tmp_path)
    (tmp_path / "nvidia0").touch()
    assert gpu_visible(tmp_path)


def test_a_tiers_engine_field_is_its_default(monkeypatch, on_cpu):
    import dataclasses

    from rag import settings

    on_cpu("AuthenticAMD")
    smollm2 = tier("smollm2-135m-instruct")
    monkeypatch.setattr(settings, "embedded_tier", lambda name: dataclasses.replace(smollm2, engine="torch"))
    assert Settings.from_env({}).llm_engine == "torch"
    assert Settings.from_env({"RAG_LLM_ENGINE": "ctranslate2"}).llm_engine == "ctranslate2"  # the variable wins
    monkeypatch.setattr(settings, "embedded_tier", lambda name: dataclasses.replace(smollm2, engine="onnx"))
    with pytest.raises(ConfigError, match="tier smollm2-135m-instruct names engine 'onnx' in rag/model_ladder.toml"):
        Settings.from_env({})
    # A vendor's own choice is checked the same way, on that vendor's CPUs only.
    odd = dataclasses.replace(smollm2, by_cpu_vendor=(("GenuineIntel", "torch", "int4"),))
    monkeypatch.setattr(settings, "embedded_tier", lambda name: odd)
    assert Settings.from_env({}).llm_engine == "ctranslate2"
    on_cpu("GenuineIntel")
    with pytest.raises(ConfigError, match="tier smollm2-135m-instruct names quantize 'int4' in rag/model_ladder.toml"):
        Settings.from_env({})


def test_a_tiers_default_is_an_engine_and_a_quantization(monkeypatch, on_cpu):
    """A tier's default is an engine and a precision, per CPU vendor (make bench-engines' rule): the 1.5B tier is
    served by CTranslate2 in int8 when nothing else is named; naming another engine drops the int8, naming the
    quantization wins. The 0.5B tier's int8 failed the rule (refusals on sample, 6 points on kelvane): float32 on
    OpenVINO on Intel CPUs, on CTranslate2 elsewhere; the 135M tier CTranslate2 float32 everywhere."""
    import dataclasses

    from rag import settings

    on_cpu("AuthenticAMD")
    big = {"RAG_LLM_MODEL": "embedded:qwen2.5-coder-1.5b-instruct"}
    assert (tier("qwen2.5-coder-1.5b-instruct").engine, tier("qwen2.5-coder-1.5b-instruct").quantize) == (
        "ctranslate2",
        "int8",
    )
    chosen = Settings.from_env(big)
    assert (chosen.llm_engine, chosen.llm_quantize, chosen.llm_dtype) == ("ctranslate2", "int8", "auto")
    assert compute_type(chosen.llm_dtype, chosen.llm_quantize) == "int8_float32"
    torch = Settings.from_env({**big, "RAG_LLM_ENGINE": "torch"})
    assert (torch.llm_engine, torch.llm_quantize) == ("torch", "none")
    same = Settings.from_env({**big, "RAG_LLM_ENGINE": "ctranslate2"})
    assert (same.llm_engine, same.llm_quantize) == ("ctranslate2", "int8")
    full = Settings.from_env({**big, "RAG_LLM_QUANTIZE": "none"})
    assert (full.llm_engine, full.llm_quantize) == ("ctranslate2", "none")
    with pytest.raises(ConfigError, match="RAG_LLM_QUANTIZE='int4' is not valid"):
        Settings.from_env({**big, "RAG_LLM_QUANTIZE": "int4"})
    # A vendor's choice carries its own precision, and naming another engine drops it there too.
    qwen = tier("qwen2.5-coder-1.5b-instruct")
    intel_int8 = dataclasses.replace(qwen, by_cpu_vendor=(("GenuineIntel", "openvino", "int8"),))
    monkeypatch.setattr(settings, "embedded_tier", lambda name: intel_int8)
    on_cpu("GenuineIntel")
    assert (Settings.from_env(big).llm_engine, Settings.from_env(big).llm_quantize) == ("openvino", "int8")
    other = Settings.from_env({**big, "RAG_LLM_ENGINE": "ctranslate2"})
    assert (other.llm_engine, other.llm_quantize) == ("ctranslate2", "none")
    monkeypatch.undo()

    small = {"RAG_LLM_MODEL": "embedded:qwen2.5-coder-0.5b-instruct"}
    for vendor, engine in (("GenuineIntel", "openvino"), ("AuthenticAMD", "ctranslate2")):
        on_cpu(vendor)
        assert (Settings.from_env(small).llm_engine, Settings.from_env(small).llm_quantize) == (engine, "none")
        # The 135M tier: CTranslate2 float32 on every CPU (its int8 lost 5.0 and 12.1 points; OpenVINO one refusal).
        assert (Settings.from_env({}).llm_engine, Settings.from_env({}).llm_quantize) == ("ctranslate2", "none")


@pytest.mark.parametrize(
    "dtype, quantize, expected",
    [
        ("auto", "none", "float32"),
        ("float32", "none", "float32"),
        ("bfloat16", "none", "bfloat16"),
        ("float16", "none", "float16"),
        ("auto", "int8", "int8_float32"),
        ("bfloat16", "int8", "int8_bfloat16"),
    ],
)
def test_dtype_and_quantize_map_onto_a_compute_type(dtype, quantize, expected):
    assert compute_type(dtype, quantize) == expected


def test_a_missing_or_stale_copy_is_one_line_naming_the_command(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ConfigError) as missing:
        engine_model_path(str(tmp_path), str(tmp_path))
    assert f"run `python -m rag.models ctranslate2 --model-dir {tmp_path}`" in missing.value.message
    with pytest.raises(ConfigError, match="run `make models LLM=qwen2.5-coder-0.5b-instruct`"):
        require_copy(tmp_path, "make models LLM=qwen2.5-coder-0.5b-instruct")
    copy_dir(tmp_path).mkdir()
    (copy_dir(tmp_path) / COPY_MARKER).write_text(json.dumps({"source_fingerprint": "other weights"}))
    with pytest.raises(ConfigError, match="was made from other files") as stale:
        require_copy(tmp_path, "make models")
    with pytest.raises(ConfigError, match="is a hub id"):
        engine_model_path("someone/some-model", "someone/some-model")
    assert all("\n" not in error.value.message for error in (missing, stale))


def test_a_missing_package_is_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "ctranslate2", None)  # `import ctranslate2` raises ImportError
    monkeypatch.delenv("CT2_USE_MKL", raising=False)
    with pytest.raises(ConfigError, match="the ctranslate2 package is not installed; run `make setup`") as error:
        ctranslate2_decoder.CTranslate2Decoder(str(EMBEDDED_LLM_DIR), "unused", "cpu", 1, "auto", "none", None)
    assert "\n" not in error.value.message
    assert "CT2_USE_MKL" not in os.environ  # the failed import leaves the environment as it was


@pytest.mark.parametrize(
    "compute, env, expected, value",
    [
        ("float32", {}, "oneDNN (CT2_USE_MKL=0, set for float32)", "0"),
        ("float32", {"CT2_USE_MKL": "1"}, "CT2_USE_MKL=1 (set outside rag)", "1"),
        ("int8_float32", {}, "the vendor's rule, MKL on Intel and oneDNN on others (CT2_USE_MKL unset)", None),
        ("int8_float32", {"CT2_USE_MKL": "0"}, "CT2_USE_MKL=0 (set outside rag)", "0"),
    ],
)
def test_float32_takes_onednn_unless_the_user_chose(compute, env, expected, value):
    assert ctranslate2_decoder.choose_gemm_library(compute, env)[0] == expected
    assert env.get("CT2_USE_MKL") == value


# The real model. Both engines with one thread, as the other generation tests (CI machines are loaded).


@pytest.fixture(scope="module")
def engine_dir():
    if not (EMBEDDED_LLM_DIR / "config.json").exists():
        pytest.skip("run `make setup` first: it installs the embedded LLM")
    return str(convert_ctranslate2(EMBEDDED_LLM_DIR))  # `make setup` made it; at once when it is there


@pytest.fixture(scope="module")
def ct2(engine_dir):
    generator = TransformersGenerator("smollm2", str(EMBEDDED_LLM_DIR), "cpu", threads=1, engine="ctranslate2")
    yield generator
    generator.engine.close()


@pytest.mark.slow
def test_a_compute_type_the_device_lacks_is_one_line(engine_dir):
    import ctranslate2

    from rag.generation.ctranslate2_decoder import CTranslate2Decoder

    if "float16" in ctranslate2.get_supported_compute_types("cpu"):
        pytest.skip("this CPU computes float16")
    with pytest.raises(ConfigError, match="compute type float16, which this cpu does not support"):
        CTranslate2Decoder(str(EMBEDDED_LLM_DIR), engine_dir, "cpu", 1, "float16", "none", None)


LOAD_ONE = (
    "import sys; from rag.generation.ctranslate2_decoder import CTranslate2Decoder; "
    "CTranslate2Decoder(sys.argv[1], sys.argv[2], 'cpu', 1, sys.argv[3], 'none', None); "
    "import os; print(os.environ.get('CT2_USE_MKL'))"
)


@pytest.mark.slow
@pytest.mark.parametrize("dtype, users, expected", [("auto", None, "DNNL"), ("float32", "1", "MKL packed")])
def test_the_service_loads_float32_on_onednn_unless_told(engine_dir, dtype, users, expected):
    """A fresh process, as a service starts: CTranslate2 itself reports (CT2_VERBOSE) the library it took."""
    from bench.probes.gemm_backend import chosen_backend

    env = child_env(CT2_VERBOSE="1")
    env.pop("CT2_USE_MKL", None)
    if users is not None:
        env["CT2_USE_MKL"] = users
    completed = subprocess.run(
        [sys.executable, "-c", LOAD_ONE, str(EMBEDDED_LLM_DIR), engine_dir, dtype],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert chosen_backend(completed.stderr, "float32") == expected
    # Once CTranslate2 has read it, the environment is the user's again: a process started now inherits no choice.
    assert completed.stdout.split()[-1] == str(users)


@pytest.fixture(scope="module")
def prompts():
    return sample_prompts(4)


@pytest.fixture(scope="module")
def answers(ct2, prompts):
    """CTranslate2's greedy answer to each sample question."""
    return [ct2.generate(question, passages, GREEDY) for question, passages in prompts]


@pytest.mark.slow
def test_int8_loads_from_the_float32_copy_and_answers(engine_dir, prompts):
    generator = TransformersGenerator(
        "smollm2", str(EMBEDDED_LLM_DIR), "cpu", threads=1, quantize="int8", engine="ctranslate2"
    )
    try:
        question, passages = prompts[0][0], prompts[0][1][:1]
        answer = generator.generate(question, passages, GenerationParams(max_new_tokens=8))
        assert generator.dtype == "int8_float32" and answer.completion_tokens >= 1 and answer.text
    finally:
        generator.engine.close()


@pytest.mark.slow
def test_max_new_tokens_and_sampling_are_per_request(ct2, prompts):
    question, passages = prompts[0][0], prompts[0][1][:1]  # one passage: a shorter prefill
    assert ct2.generate(question, passages, GenerationParams(max_new_tokens=2)).completion_tokens == 2
    sampled = ct2.generate(question, passages, GenerationParams(max_new_tokens=6, temperature=1.0))
    assert 1 <= sampled.completion_tokens <= 6 and sampled.text
    # Sampling draws from what transformers would (top-k 50, top-p 1: this model's generation config sets none).
    options = decoding_kwargs(GenerationParams(temperature=0.7))
    del options["max_new_tokens"]  # the engine's, not the backend's
    sampling = ct2.engine.backend.sampling(options)
    assert sampling == {
        "sampling_topk": 50,
        "sampling_topp": 1.0,
        "sampling_temperature": 0.7,
        "repetition_penalty": 1.0,
    }


class CountingSteps:
    """Stands in for the backend's CTranslate2 generator and counts the steps CTranslate2 computes for each
    row of each batch it is asked for."""

    def __init__(self, model):
        self.model, self.steps, self.batches, self.static_prompts = model, {}, 0, []

    def generate_batch(self, prompts, *, callback, **kwargs):
        batch = self.batches
        self.batches += 1
        self.static_prompts.append(kwargs.get("static_prompt"))

        def count(step) -> bool:
            key = (batch, step.batch_id)
            self.steps[key] = self.steps.get(key, 0) + 1
            return callback(step)

        return self.model.generate_batch(prompts, callback=count, **kwargs)


def _counting(generator):
    """The generator's CTranslate2 model wrapped in CountingSteps for one test."""
    backend = generator.engine.backend
    backend.model = CountingSteps(backend.model)
    yield backend.model
    backend.model = backend.model.model


@pytest.fixture
def counting(ct2):
    yield from _counting(ct2)


@pytest.mark.slow
@pytest.mark.parametrize("leaves", ["client gone", "deadline"])
def test_a_row_that_leaves_stops_ctranslate2_generating_it(ct2, counting, leaves):
    long = count_to_400(ct2, time.monotonic() + 2.0 if leaves == "deadline" else None)
    tokens = ct2.engine.run(long)
    if leaves == "deadline":
        with pytest.raises(RequestTimeout):
            list(tokens)
    else:
        assert len([next(tokens) for _ in range(5)]) == 5
        tokens.close()  # the client has gone
    left_at = counting.steps[(0, 0)]
    short = Job([1, 2, 3], 1, decoding={"do_sample": False})
    for _ in ct2.engine.run(short):  # served once the long row has left: its batch has ended
        pass
    assert long.outcome == ("deadline" if leaves == "deadline" else "cancelled") and short.outcome in ("stop", "length")
    # Counting to 400 takes over 1,000 tokens. CTranslate2 runs a step or two ahead of the tokens handed over,
    # then stops at its first step after the row has left; the short job was a batch of its own.
    assert counting.steps[(0, 0)] - left_at < 10, (left_at, counting.steps)
    assert counting.batches == 2 and counting.steps[(1, 0)] == 1
    assert len(long.tokens) < 1000 and ct2.engine.admission.in_flight == 0


# Static batches: requests that wait together start together, and each answers as it would alone.


@pytest.mark.slow
def test_every_prompt_starts_from_the_instructions_computed_once(ct2, counting, prompts, answers, monkeypatch):
    # The shared prefix is the instructions' turn and the user turn's opening, up to the question.
    text = ct2.tokenizer.decode(ct2.prefix)
    assert ct2.system_prompt in text and text.rstrip().endswith("Question:") and len(ct2.prefix) > 40
    jobs = [ct2._job(question, passages, GREEDY, None, False) for question, passages in prompts]
    assert {job.prefix for job in jobs} == {len(ct2.prefix)}
    # CTranslate2 gets it as its static prompt, and the rest of each prompt as the row.
    question, passages = prompts[0]
    assert ct2.generate(question, passages, GREEDY) == answers[0]
    assert counting.static_prompts == [ct2.tokenizer.convert_ids_to_tokens(ct2.prefix)]
    # A prompt that does not begin with it starts from nothing; so does every prompt with the cache off.
    monkeypatch.setattr(ct2, "prefix", [ct2.prefix[0] + 1] + ct2.prefix[1:])
    assert ct2._job(question, passages, GREEDY, None, False).prefix == 0


@pytest.mark.slow
def test_without_the_prefix_cache_the_answers_are_the_same(engine_dir, prompts, answers):
    generator = TransformersGenerator(
        "smollm2", str(EMBEDDED_LLM_DIR), "cpu", threads=1, engine="ctranslate2", prefix_cache=False
    )
    try:
        assert generator.prefix == []
        assert [generator.generate(question, passages, GREEDY) for question, passages in prompts] == answers
    finally:
        generator.engine.close()


def test_the_prefix_cache_is_on_unless_turned_off():
    assert Settings.from_env({}).llm_prefix_cache is True
    assert Settings.from_env({"RAG_LLM_PREFIX_CACHE": "off"}).llm_prefix_cache is False
    with pytest.raises(ConfigError, match="RAG_LLM_PREFIX_CACHE='maybe' is not valid"):
        Settings.from_env({"RAG_LLM_PREFIX_CACHE": "maybe"})


@pytest.fixture(scope="module")
def batching(engine_dir):
    """A CTranslate2 generator whose idle model waits 300 ms for more requests, so that requests sent together
    start together, and that records each prefill's rows."""
    generator = TransformersGenerator(
        "smollm2", str(EMBEDDED_LLM_DIR), "cpu", threads=1, engine="ctranslate2", batch_wait_ms=300
    )
    generator.prefills = []
    generator.engine.on_step = lambda step: generator.prefills.append(step.rows) if step.kind == "prefill" else None
    yield generator
    generator.engine.close()


@pytest.mark.slow
def test_requests_sent_together_share_a_batch_and_answer_as_alone(batching, prompts, answers, monkeypatch):
    # Every prompt in one batch whatever its length: the rows whose prompts are longer than the shortest
    # take their remaining prompt tokens one step at a time, while the others already answer.
    monkeypatch.setattr(ctranslate2_decoder, "MAX_SPREAD", 10_000)
    batching.prefills.clear()
    jobs = together(batching, [greedy(batching, question, passages) for question, passages in prompts])
    assert batching.prefills == [len(prompts)]
    assert len({len(job.prompt) for job in jobs}) > 1  # the prompts differ in length
    assert [batching._answer(job) for job in jobs] == answers
    assert all(job.batch_size > 1 for job in jobs) and batching.engine.admission.in_flight == 0


@pytest.mark.slow
def test_in_a_batch_each_row_ends_on_its_own(batching, counting_batching, prompts, answers):
    (question, passages), (other, other_passages) = prompts[0], prompts[1]
    short = greedy(batching, question, passages, max_new_tokens=2)
    whole = greedy(batching, other, other_passages)
    gone = count_to_400(batching, length=min(len(short.prompt), len(whole.prompt)))
    assert max(len(job.prompt) for job in (gone, short, whole)) - len(gone.prompt) <= ctranslate2_decoder.MAX_SPREAD
    follows = [batching.engine.run(job) for job in (gone, short, whole)]
    assert len([next(follows[0]) for _ in range(5)]) == 5
    follows[0].close()  # its client has gone; the other two go on
    for follow in follows[1:]:
        for _ in follow:
            pass
    assert gone.outcome == "cancelled" and short.outcome == "length" and whole.outcome == "stop"
    assert len(short.tokens) == 2 and answers[0].text.startswith(batching._answer(short).text)
    assert batching._answer(whole) == answers[1]
    # One batch; CTranslate2 stopped computing each row soon after it left (a step or two ahead of the handover).
    assert counting_batching.batches == 1
    rows = {row: steps for (_, row), steps in counting_batching.steps.items()}
    assert rows[1] == 2 and rows[0] < rows[2] + 10 and rows[0] < 100, rows


@pytest.fixture
def counting_batching(batching):
    yield from _counting(batching)


@pytest.mark.slow
def test_a_batch_takes_the_oldest_request_with_those_alike_in_sampling_and_length(ct2):
    backend = ct2.engine.backend

    def job(length, temperature=0.0):
        options = decoding_kwargs(GenerationParams(temperature=temperature))
        return Job([1] * length, options.pop("max_new_tokens"), decoding=options)

    oldest, near, far, sampled, refused = job(250), job(270), job(250 + 33), job(250, 0.7), job(260)
    refused.decoding["num_beams"] = 2  # an option CTranslate2's rows do not take: alone, to fail alone
    jobs = [oldest, near, far, sampled, refused]
    assert backend.group(jobs, 8) == [oldest, near]
    assert backend.group(jobs, 1) == [oldest]
    # The window holds the oldest and the most requests: 240 and 250 with 270 (spread 30), not 283.
    lower = job(240)
    assert backend.group([oldest, far, lower, near], 8) == [oldest, lower, near]
    assert backend.group([sampled, oldest, job(251, 0.7)], 8)[-1].prompt == [1] * 251
    assert backend.group([refused, oldest], 8) == [refused]
    # Rows start from one cached prefix: a request with other instructions waits for a batch of its own.
    other = job(250)
    other.prompt, other.prefix = [2] * 10 + [1] * 240, 10
    assert backend.group([oldest, other, near], 8) == [oldest, near]
    assert backend.group([other, oldest], 8) == [other]


@pytest.mark.slow
def test_an_embedded_tiers_copy_is_made_on_first_use_and_again_when_stale(tmp_path, caplog):
    """As the tier's safetensors are: the default tier is served by CTranslate2, so a start after `models/`
    was deleted must not stop at the missing copy (a folder of the user's still gets one line instead)."""
    from tests.fuzz.tiny_llm import make_tiny_llm

    folder = make_tiny_llm(tmp_path / "tiny")  # stands in for models/smollm2-135m-instruct
    with caplog.at_level("INFO", logger="rag.model_files"):
        assert engine_model_path("embedded:smollm2-135m-instruct", str(folder)) == copy_dir(folder)
    assert f"converting {folder} for CTranslate2" in caplog.text and "once)" in caplog.text
    made = (copy_dir(folder) / COPY_MARKER).stat().st_mtime_ns
    assert engine_model_path("embedded:smollm2-135m-instruct", str(folder)) == copy_dir(folder)
    assert (copy_dir(folder) / COPY_MARKER).stat().st_mtime_ns == made  # made once
    (folder / "config.json").write_text((folder / "config.json").read_text().replace("}", ', "note": 1}', 1))
    assert engine_model_path("embedded:smollm2-135m-instruct", str(folder)) == copy_dir(folder)
    assert require_copy(folder, "unused") == copy_dir(folder)  # made again from the new files
    with pytest.raises(ConfigError, match="run `python -m rag.models ctranslate2 --model-dir"):
        engine_model_path(str(tmp_path / "other"), str(make_tiny_llm(tmp_path / "other")))


@pytest.mark.slow
def test_the_copy_is_made_once_from_a_folder_and_goes_stale_with_it(tmp_path, capsys):
    from rag import models
    from tests.fuzz.tiny_llm import make_tiny_llm

    folder = make_tiny_llm(tmp_path / "tiny")  # a one-layer model with the SmolLM2 tokenizer
    assert models.main(["ctranslate2", "--model-dir", str(folder)]) == 0
    assert f"CTranslate2 copy ready in {copy_dir(folder)}" in capsys.readouterr().out
    assert require_copy(folder, "unused") == copy_dir(folder)
    assert sorted(path.name for path in folder.iterdir() if path.name.startswith(".")) == []  # no staging left
    (folder / "config.json").write_text((folder / "config.json").read_text().replace("}", ', "note": 1}', 1))
    with pytest.raises(ConfigError, match="was made from other files"):
        require_copy(folder, "unused")


def test_the_weights_need_at_least_the_copy_scaled_to_the_loaded_precision(tmp_path):
    (tmp_path / "model.bin").write_bytes(b"\0" * 4000)
    assert ctranslate2_decoder.weight_bytes(str(tmp_path), "float32") == 4000  # a copy we did not make: float32
    assert ctranslate2_decoder.weight_bytes(str(tmp_path), "int8_float32") == 1000
    (tmp_path / "converted.json").write_text(json.dumps({"quantization": "int8"}))
    assert ctranslate2_decoder.weight_bytes(str(tmp_path), "int8_bfloat16") == 4000
    assert ctranslate2_decoder.weight_bytes(str(tmp_path), "float32") == 4000  # never more than the file


@pytest.mark.slow
def test_a_model_that_cannot_fit_is_one_line_before_it_loads(engine_dir, monkeypatch):
    from rag import runtime
    from rag.errors import InsufficientMemory
    from rag.generation.ctranslate2_decoder import CTranslate2Decoder

    monkeypatch.setattr(runtime, "memory_available", lambda: (200 * 2**20, 700 * 2**20))
    with pytest.raises(InsufficientMemory, match=r"needs at least 51\d MiB for its weights, but only 200 MiB") as error:
        CTranslate2Decoder(str(EMBEDDED_LLM_DIR), engine_dir, "cpu", 1, "float32", "none", None)
    assert "RAG_LLM_QUANTIZE=int8" in error.value.message and "\n" not in error.value.message
    # int8 needs a quarter of the float32 copy's bytes
    monkeypatch.setattr(runtime, "memory_available", lambda: (140 * 2**20, 700 * 2**20))
    assert (
        CTranslate2Decoder(str(EMBEDDED_LLM_DIR), engine_dir, "cpu", 1, "float32", "int8", None).dtype == "int8_float32"
    )


TORCH_FREE = """
import json, sys
from rag.generation.generator import TransformersGenerator
from rag.ladder import tier
from rag.models import tier_dir
from rag.types import GenerationParams, Passage
folder = str(tier_dir(tier("smollm2-135m-instruct")))
generator = TransformersGenerator("smollm2", folder, "cpu", threads=1, engine="ctranslate2", without_torch=True)
question, passages, max_new_tokens = json.loads(sys.argv[1])
answer = generator.generate(question, [Passage(**p) for p in passages], GenerationParams(max_new_tokens=max_new_tokens))
print(json.dumps({"text": answer.text, "tokens": answer.completion_tokens, "torch": "torch" in sys.modules}), flush=True)
# A streamed answer read to its end, then the exit at once: CTranslate2 still computes the stopped row
for _ in generator.stream(question, [Passage(**p) for p in passages], GenerationParams(max_new_tokens=4, temperature=0.7)):
    pass
"""


@pytest.mark.slow
def test_the_llm_services_ctranslate2_process_never_imports_torch_and_answers_the_same(prompts, answers):
    """The LLM service loads transformers without torch for CTranslate2 (270 MB less, measured); its answer is
    the one this process, which holds torch, gives. And the process exits cleanly right after a streamed
    answer: without waiting for CTranslate2's threads, 2 of 5 such exits aborted (exit 134), so three tries."""
    import dataclasses
    import subprocess

    from tests.support import ROOT, child_env

    question, passages = prompts[0]
    request = json.dumps([question, [dataclasses.asdict(p) for p in passages], GREEDY.max_new_tokens])
    for _ in range(3):
        result = subprocess.run(
            [sys.executable, "-c", TORCH_FREE, request],
            capture_output=True,
            text=True,
            cwd=ROOT,
            env=child_env(),
            timeout=300,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        seen = json.loads(result.stdout.strip().splitlines()[-1])
        assert seen == {"text": answers[0].text, "tokens": answers[0].completion_tokens, "torch": False}
