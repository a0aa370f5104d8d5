"""`make eval-models`' rule and report (evaluation/ladder.py), on a run's figures written by hand."""

from __future__ import annotations

from evaluation import ladder


def _summary(accuracy: float) -> dict:
    return {"accuracy": accuracy, "refusal": 0.5, "false_refusal": 0.1, "hit_at_1": 0.9, "answer_in_context": 0.8}


def _tier(accuracy: dict, latency_ms: float, rss: float, engine: str | None = None) -> dict:
    record = {"latency_ms": latency_ms, "error": None, "question": "q", "correct": True}
    sets = {}
    for name, value in accuracy.items():
        run = {"summary": _summary(value), "records": [record] * 4, "ready_s": 9.0, "peak_rss_mib": rss, "burst": None}
        sets[name] = {"monolito": run, "microservicos": run, "parity": {"questions": 4, "identical": 4}}
    sets["sample"]["monolito"] = sets["sample"]["monolito"] | {"burst": {"answers_per_s": 1.25}}
    return {"disk_mib": 500.0, "sets": sets} | ({"engine": engine} if engine else {})


def _result() -> dict:
    result = {
        "started_utc": "20261203T000000Z",
        "loadavg_start": [0.2, 0.2, 0.2],
        "default_before": "small",
        "sets": ["sample", "harbourline", "kelvane"],
        "archs": ["monolito", "microservicos"],
        "tiers": {
            "small": _tier({"sample": 0.5, "harbourline": 0.4, "kelvane": 0.4}, 1000, 2000),
            "medium": _tier({"sample": 0.6, "harbourline": 0.6, "kelvane": 0.5}, 1400, 4000, "ctranslate2 int8"),
            "large": _tier({"sample": 0.9, "harbourline": 0.8, "kelvane": 0.8}, 4000, 7000),
        },
    }
    result["rows"] = ladder.rows(result)
    result["choice"] = ladder.choose(result["rows"], "small")
    return result


def test_the_rule_takes_the_most_accurate_tier_within_the_latency_and_memory_limits():
    result = _result()
    assert result["rows"]["medium"]["held_out_accuracy"] == 0.55
    assert result["choice"]["tier"] == "medium"
    assert result["choice"]["latency_budget_ms"] == 1500
    assert result["choice"]["verdicts"]["large"].startswith("c=1 p50 4,000 ms > 1,500 ms")
    # Fast enough but too big for an ml.m5.large with headroom.
    rows = result["rows"] | {"large": result["rows"]["large"] | {"latency_ms_p50": 1200}}
    choice = ladder.choose(rows, "small")
    assert choice["tier"] == "medium" and "peak RSS 7,000 MiB > 6,144 MiB" in choice["verdicts"]["large"]


def test_a_tie_keeps_the_current_default():
    rows = _result()["rows"]
    rows["medium"] = rows["medium"] | {"held_out_accuracy": rows["small"]["held_out_accuracy"]}
    assert ladder.choose(rows, "small")["tier"] == "small"


def test_the_table_has_a_row_per_tier_and_names_the_choice():
    text = ladder.table(_result())
    lines = [line for line in text.splitlines() if line.startswith("| `")]
    assert [line.split("`")[1] for line in lines] == ["small", "medium", "large"]
    assert "(**chosen**)" in lines[1] and "1.25" in lines[0] and "4/4, 4/4, 4/4" in lines[0]
    assert "the rule chose `medium`" in text
    # The engine a tier was served with is named where the run recorded it (older runs did not).
    assert lines[1].startswith("| `medium` on ctranslate2 int8 (**chosen**) |") and lines[0].startswith("| `small` |")


def test_each_tier_is_served_on_its_own_engine_unless_the_environment_names_one(on_cpu):
    on_cpu("AuthenticAMD")
    assert ladder.served_engine("smollm2-135m-instruct", {}) == "ctranslate2"
    assert ladder.served_engine("qwen2.5-coder-1.5b-instruct", {}) == "ctranslate2 int8"
    assert ladder.served_engine("qwen2.5-coder-0.5b-instruct", {"RAG_LLM_ENGINE": "torch"}) == "torch"
    assert ladder.served_engine("smollm2-135m-instruct", {"RAG_LLM_QUANTIZE": "int8"}) == "ctranslate2 int8"
    assert ladder.served_engine("qwen2.5-coder-0.5b-instruct", {}) == "ctranslate2"
    on_cpu("GenuineIntel")  # each tier's choice on that vendor's CPUs
    assert ladder.served_engine("smollm2-135m-instruct", {}) == "ctranslate2"
    assert ladder.served_engine("qwen2.5-coder-0.5b-instruct", {}) == "openvino"
    assert ladder.served_engine("qwen2.5-coder-1.5b-instruct", {}) == "ctranslate2 int8"
