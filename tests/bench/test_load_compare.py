"""evaluation/load_compare.py: the setups it takes, its refusals, and one real short run (a monolith on
CTranslate2, 2 clients, 2 questions): the level on a fresh server, the table. No timing is asserted."""

from __future__ import annotations

import json

import pytest

from evaluation import load_compare


def test_setups_are_architecture_and_engine():
    assert load_compare.parse_setups("monolito:openvino, microservicos:ctranslate2") == [
        ("monolito", "openvino"),
        ("microservicos", "ctranslate2"),
    ]
    for bad in ("monolith:openvino", "monolito:tensorrt", "monolito", ""):
        with pytest.raises(ValueError, match="--setups"):
            load_compare.parse_setups(bad)


def test_the_command_line_refuses_in_one_line(capsys, tmp_path):
    assert load_compare.main(["--setups", "monolito:tensorrt"]) == 2
    assert load_compare.main(["--set", "no-such-set"]) == 2
    assert load_compare.main(["--clients", "8", "--requests", "4"]) == 2
    assert load_compare.main(["--requests", "500"]) == 2  # more than the set's distinct questions
    empty = tmp_path / "engines.json"
    empty.write_text(json.dumps({"runs": {}}))
    assert load_compare.main(["--peer", str(empty), "--requests", "8"]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 5 and all(line.startswith("error: ") for line in errors)
    assert "distinct questions" in errors[3] and "no float32 run" in errors[4]


@pytest.mark.slow
def test_a_short_run_serves_each_level_on_a_fresh_server(tmp_path):
    result = load_compare.run(
        [("monolito", "ctranslate2")], "smollm2-135m-instruct", "sample", 2, 2, 1, None, results_dir=tmp_path
    )
    (level,) = result["levels"]
    assert level["setup"] == "monolito:ctranslate2" and level["ok"] == 2 and level["peak_rss_mib"] > 100
    assert (tmp_path / f"load-compare-{result['started_utc']}.json").exists()
    assert "| monolito:ctranslate2 |" in load_compare.table(result)
