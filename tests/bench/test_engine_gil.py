"""bench/probes/engine_gil.py: one real short run of both engines on the default tier (the live probe is
`python -m bench.probes.engine_gil`). It asserts what the run reports, not how fast: the machine may be busy."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from bench.probes.engine_gil import main, ticks
from tests.support import ROOT, child_env

pytestmark = pytest.mark.slow


def test_ticks_counts_how_often_a_thread_ran_and_its_longest_gap():
    alone = ticks(0.2)
    assert alone["ticks_per_s"] > 0 and alone["longest_gap_ms"] >= 1.0


def test_a_short_run_of_both_engines_writes_its_figures(tmp_path):
    completed = subprocess.run(
        [sys.executable, "-m", "bench.probes.engine_gil", "--seconds", "0.3", "--out", str(tmp_path / "gil.json")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env=child_env(),
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "| openvino |" in completed.stdout and "| ctranslate2 |" in completed.stdout
    result = json.loads((tmp_path / "gil.json").read_text())
    for engine in ("openvino", "ctranslate2"):
        run = result["engines"][engine]
        assert run["alone"]["ticks_per_s"] > 0 and run["beside"]["ticks_per_s"] > 0
    assert result["engines"]["openvino"]["step_ms_p50"] > 0  # its steps are timed; CTranslate2's are inside one call


def test_an_unknown_engine_is_refused_in_one_line(capsys):
    with pytest.raises(SystemExit):
        main(["--engines", "tensorrt"])
    assert "--engines: tensorrt (there are openvino, ctranslate2)" in capsys.readouterr().err
