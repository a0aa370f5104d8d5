"""`make bench-engines`' rules, table and headline (evaluation/engine_report.py), its arguments and the
figures it reads from a server's log (evaluation/engines.py), and the peer's build options and floor
(evaluation/llama_peer.py): on figures written by hand, with no server."""

from __future__ import annotations

import json

import pytest

from evaluation import engine_report, engines, llama_peer


def _run(precision: str, accuracy: dict, latency_ms: float, rss: float = 900.0) -> dict:
    record = {"latency_ms": latency_ms, "error": None, "question": "q", "correct": True, "line": 1}
    stages = {"prefill_tokens_per_s": [400.0, 500.0], "decode_ms_per_token": [20.0, 30.0]}
    sets = {
        name: {
            "summary": {"accuracy": value, "refusal": 0.5},
            "records": [record] * 3,
            "ready_s": 4.0,
            "peak_rss_mib": rss,
            "stages": stages,
        }
        for name, value in accuracy.items()
    }
    throughput = {
        1: {"answers_per_s": 0.5},
        8: {"answers_per_s": 1.0, "overloaded_429": 0, "latency_ms_p50": 6000.0, "latency_ms_p95": 9000.0},
    }
    return {
        "precision": precision,
        "sets": sets,
        "throughput": throughput,
        "model_files": {"path": "x", "mib": 500.0},
    }


def _result() -> dict:
    small = {
        "torch-float32": _run("float32", {"sample": 0.50, "harbourline": 0.40}, 2000),
        "torch-int8": _run("int8", {"sample": 0.20, "harbourline": 0.40}, 1000),  # fast, but loses accuracy
        "ctranslate2-int8": _run("int8", {"sample": 0.485, "harbourline": 0.39}, 1200),  # within 2 points
    }
    big = {
        "torch-float32": _run("float32", {"sample": 0.70, "harbourline": 0.60}, 4000),
        "ctranslate2-float32": _run("float32", {"sample": 0.70, "harbourline": 0.61}, 2600),
    }
    result = {
        "kind": "engines",
        "started_utc": "20261203T000000Z",
        "loadavg_start": [0.5, 0.5, 0.5],
        "cpu_count": 2,
        "default_tier": "small",
        "sets": ["sample", "harbourline"],
        "left_out": {"ctranslate2-bfloat16": "skipped: the ctranslate2 package is not installed"},
        "bandwidth": {"gb_per_s": 10.0, "threads": 2, "array_mib": 1024, "repeats": 10},
        "image": {"image": "rag-monolito:latest", "mib": None, "reason": "not built"},
        "parameters": {"small": 135_000_000, "big": 500_000_000},
        "runs": {"small": small, "big": big},
        "peers": {
            "small": {
                "f32": {
                    "c1": {
                        "latency_ms_p50": 900,
                        "latency_ms_p95": 1500,
                        "prefill_tokens_per_s_p50": 900,
                        "decode_ms_per_token_p50": 12.5,
                        "answers_per_s": 1.1,
                    },
                    "c8": {"answers_per_s": 2.2},
                    "rss_mib": 700,
                    "ready_s": 1.0,
                    "disk_mib": 515.0,
                },
                "q8_0": {"skipped": "no GGUF"},
            },
            "big": {"skipped": "no llama-server"},
        },
    }
    engine_report.decide(result)
    return result


def test_the_engine_rule_takes_the_fastest_variant_within_two_points_on_every_set():
    decision = _result()["decision"]["engines"]
    assert decision["small"]["variant"] == "ctranslate2-int8"
    assert decision["small"]["verdicts"]["torch-int8"].startswith("accuracy sample 20.0 % < 50.0 % - 2")
    assert decision["small"]["verdicts"]["torch-float32"].startswith("slower: c=1 p50 2,000 ms > 1,200 ms")
    assert decision["big"]["variant"] == "ctranslate2-float32"


def test_the_engine_rule_holds_refusals_to_two_points_too():
    rows = _result()["rows"]["small"]  # every variant refuses 50.0 % of the unanswerable questions
    rows["ctranslate2-int8"]["quality"]["harbourline"]["refusal"] = 0.485  # within 2 points: still chosen
    assert engine_report.fastest_within(rows)["variant"] == "ctranslate2-int8"
    rows["ctranslate2-int8"]["quality"]["harbourline"]["refusal"] = 0.45  # answers one it should have refused
    decision = engine_report.fastest_within(rows)
    assert decision["variant"] == "torch-float32"
    assert decision["verdicts"]["ctranslate2-int8"] == "refusal harbourline 45.0 % < 50.0 % - 2"


def test_a_tie_keeps_the_reference_and_no_reference_decides_nothing():
    rows = _result()["rows"]["big"]
    rows["ctranslate2-float32"]["latency_ms_p50"] = rows["torch-float32"]["latency_ms_p50"]
    assert engine_report.fastest_within(rows)["variant"] == "torch-float32"
    assert engine_report.fastest_within({"ctranslate2-float32": rows["ctranslate2-float32"]})["variant"] is None


def test_the_ladder_rule_uses_each_models_fastest_engine_against_the_defaults_reference():
    ladder = _result()["decision"]["ladder"]
    # Budget: 1.5 x the default's torch-float32 (2,000 ms), not its fastest engine's 1,200 ms.
    assert ladder["latency_budget_ms"] == 3000
    assert ladder["tier"] == "big"  # 2,600 ms with ctranslate2 (4,000 with torch) and more accurate
    result = _result()
    del result["runs"]["big"]["ctranslate2-float32"]
    engine_report.decide(result)
    assert result["decision"]["ladder"]["tier"] == "small"
    assert result["decision"]["ladder"]["verdicts"]["big"].startswith("c=1 p50 4,000 ms > 3,000 ms")


def test_the_floor_is_weight_bytes_over_bandwidth():
    row = _result()["rows"]["small"]
    assert row["torch-float32"]["floor_ms_per_token"] == 54.0  # 135e6 x 4 B / 10 GB/s
    assert row["ctranslate2-int8"]["floor_ms_per_token"] == 13.5
    assert llama_peer.floor_ms_per_token(1_000_000_000, 2.0, 20.0) == 100.0


def _safetensors(path, shapes: dict) -> None:
    header = json.dumps({k: {"dtype": "F32", "shape": s, "data_offsets": [0, 0]} for k, s in shapes.items()}).encode()
    path.write_bytes(len(header).to_bytes(8, "little") + header)


def test_the_floor_counts_the_weights_a_step_reads(tmp_path):
    layers = {"model.layers.0.mlp.up_proj.weight": [8, 4]}
    _safetensors(tmp_path / "model.safetensors", {"model.embed_tokens.weight": [100, 4], **layers})
    assert llama_peer.parameter_count(tmp_path) == 432  # tied: the output layer reads the whole matrix
    _safetensors(
        tmp_path / "model.safetensors", {"model.embed_tokens.weight": [100, 4], "lm_head.weight": [100, 4], **layers}
    )
    assert llama_peer.parameter_count(tmp_path) == 432  # untied: one row of the input matrix per step


def test_the_table_has_every_variant_the_peer_and_the_reasons():
    result = _result()
    text = engine_report.table(result)
    rows = [line for line in text.splitlines() if line.startswith("| `")]
    assert [line.split(" | ")[1] for line in rows[:5]] == [
        "torch-float32",
        "torch-int8",
        "ctranslate2-int8 (**fastest**)",
        "llama-server f32 (peer)",
        "llama-server q8_0 (peer)",
    ]
    assert "| 2,000 / 2,000 | 450 | 25.0 | 54.0 | 0.50 / 1.00 / - |" in rows[0]
    assert "| 900 / 1,500 | 900 | 12.5 | 54.0 | 1.10 / 2.20 / - | 700 | 1 | 515 |" in rows[3]
    assert rows[4].endswith("| n/a: no GGUF |") and rows[-1].endswith("| n/a: no llama-server |")
    assert len({line.count("|") for line in text.splitlines() if line.startswith("|")}) == 1
    assert "chose `big`" in text and "ctranslate2-bfloat16: skipped: the ctranslate2 package" in text
    assert "Image: n/a (not built)" in text and "Peer: n/a (not recorded)" in text
    assert "on this machine's 2 CPU cores (load average" in text  # a run from before the CPU was recorded
    result["cpu"] = {"vendor": "AuthenticAMD", "model": "AMD EPYC", "cores": 2, "flags": ["avx", "avx2"]}
    assert "on this machine's 2 CPU cores, AMD EPYC (AuthenticAMD, 2 cores; avx, avx2) (load average" in (
        engine_report.table(result)
    )
    line = engine_report.headline(result)
    assert line.startswith(
        "Fastest CPU engine per model (20261203T000000Z): `small` ctranslate2-int8, c=1 p50 1,200 ms"
    )
    # The peer beside an int8 variant is q8_0 (skipped here), never f32.
    assert "decode 25.0 ms/token (floor 13.5)" in line and line.endswith("chose `big`.")
    result["runs"]["small"]["ctranslate2-int8"]["precision"] = "float32"
    assert "(llama-server f32 12.5, floor 13.5)" in engine_report.headline(result)


def test_the_published_results_drop_the_records_and_the_report_re_renders_them(tmp_path):
    result = _result()
    slim = engine_report.slim(result)
    assert "records" not in slim["runs"]["small"]["torch-float32"]["sets"]["sample"]
    assert "records" in result["runs"]["small"]["torch-float32"]["sets"]["sample"]  # the full run is untouched
    path = tmp_path / "engines.json"
    path.write_text(json.dumps(result))
    assert engine_report.chart(result, tmp_path / "engines.png").stat().st_size > 0


def test_stage_figures_pair_each_requests_tokens_with_its_prefill_and_decode():
    lines = [
        {"_aws": {}, "request_id": "a", "PromptTokens": 200, "CompletionTokens": 11},
        {"_aws": {}, "request_id": "a", "Stage": "prefill", "StageLatency": 500.0},
        {"_aws": {}, "request_id": "a", "Stage": "decode", "StageLatency": 300.0},
        {"_aws": {}, "request_id": "b", "PromptTokens": 100, "CompletionTokens": 1},  # one token: no decode rate
        {"_aws": {}, "request_id": "b", "Stage": "prefill", "StageLatency": 250.0},
        {"logger": "rag.http", "request_id": "a", "ms": 900},
    ]
    text = "not json\n" + "\n".join(json.dumps(line) for line in lines)
    figures = engines.stage_figures(text)
    assert figures["prefill_tokens_per_s"] == [400.0, 400.0]
    assert figures["decode_ms_per_token"] == [30.0]


def test_variants_that_cannot_run_are_reported_with_the_reason(monkeypatch):
    monkeypatch.setattr(engines.rag_settings, "LLM_ENGINES", ("torch",), raising=False)
    chosen, left_out = engines.select_variants("default")
    assert [v.name for v in chosen][:2] == ["torch-float32", "torch-int8"]
    assert left_out["ctranslate2-float32"].startswith("skipped: RAG_LLM_ENGINE=ctranslate2 is not an engine")
    assert left_out["torch-bfloat16"].startswith("not in the default list")
    assert left_out["ctranslate2-float32-mkl"].startswith("not in the default list: float32 on Intel MKL")
    assert engines.VARIANTS["ctranslate2-float32-mkl"].env == {
        "RAG_LLM_ENGINE": "ctranslate2",
        "RAG_LLM_DTYPE": "float32",
        "RAG_LLM_QUANTIZE": "none",
        "CT2_USE_MKL": "1",
    }
    assert left_out["ctranslate2-float32-noprefix"].startswith("not in the default list: every prompt prefilled whole")
    assert engines.VARIANTS["ctranslate2-float32-noprefix"].env["RAG_LLM_PREFIX_CACHE"] == "0"
    assert engines.VARIANTS["ctranslate2-int8"].env == {
        "RAG_LLM_ENGINE": "ctranslate2",
        "RAG_LLM_DTYPE": "float32",
        "RAG_LLM_QUANTIZE": "int8",
    }
    # A tier whose CTranslate2 copy is missing (or stale) is left out of that engine only, with the command.
    monkeypatch.setattr(engines, "is_converted", lambda folder, engine="ctranslate2": False)
    assert engines.tier_unavailable(engines.VARIANTS["torch-float32"], "smollm2-135m-instruct") is None
    reason = engines.tier_unavailable(engines.VARIANTS["ctranslate2-int8"], "smollm2-135m-instruct")
    assert reason.endswith("`make models LLM=smollm2-135m-instruct` makes it")
    with pytest.raises(ValueError, match="unknown engine variant"):
        engines.select_variants("torch-float32,tensorrt")


def test_the_command_line(capsys):
    with pytest.raises(SystemExit) as exit_info:
        engines.main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert all(option in text for option in ("--engines", "--tiers", "--sets", "--publish", "--report", "--limit"))
    assert engines.main(["--tiers", "no-such-tier"]) == 2
    assert engines.main(["--engines", "tensorrt-float32"]) == 2


def test_the_peer_is_built_without_amx_and_with_what_the_cpu_has(tmp_path):
    assert llama_peer.build_info(tmp_path)["reason"].startswith("no llama-server at")
    options = llama_peer.cmake_flags({"avx", "avx2", "fma", "f16c", "avx512f", "amx_tile"})
    assert "-DGGML_NATIVE=OFF" in options and "-DGGML_AMX_TILE=OFF" in options
    assert "-DGGML_AVX512=ON" in options and "-DGGML_AVX512_BF16=OFF" in options
    body = llama_peer.completion_body([1, 2, 3], 0)
    assert body["prompt"] == [1, 2, 3] and body["n_predict"] == 1 and body["ignore_eos"] and body["cache_prompt"]


def test_latency_under_load_is_kept_per_level_and_the_load_option_is_checked():
    result = _result()
    engine_report.decide(result)
    row = next(iter(next(iter(result["rows"].values())).values()))
    assert row["latency_ms_under_load"] == {"8": [6000.0, 9000.0, None]}  # no p99 recorded: None, not a guess
    assert engines.load_levels("8:96, 32:64") == {8: 96, 32: 64}
    for bad in ("8", "8:x", "64:64", "8:4", ""):
        with pytest.raises(ValueError):
            engines.load_levels(bad)


def test_the_peer_takes_the_references_prompts_else_another_float32_variants():
    run = {"precision": "float32"}
    assert engines.peer_prompt_source({"ctranslate2-float32": run, engines.REFERENCE: run}) == engines.REFERENCE
    # A run without torch still has a peer: the float32 engines give the reference's answers.
    assert engines.peer_prompt_source({"openvino-bfloat16": {"precision": "bfloat16"}, "openvino-float32": run}) == (
        "openvino-float32"
    )
    assert engines.peer_prompt_source({"ctranslate2-int8": {"precision": "int8"}}) is None
