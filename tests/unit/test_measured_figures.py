"""What the test layers measure comes back from pytest-xdist's workers whole: the controller merges each
worker's figures into one dict per layer, and a figure both measured keeps the later one."""

from pathlib import Path

from tests import support


def test_figures_from_two_workers_merge_into_one_report(monkeypatch, tmp_path):
    monkeypatch.setattr(support, "_FIGURES", {})
    path = tmp_path / "observations.json"
    first = {"observations": [str(path), {"build_s": {"monolito": 10.7}, "memory": {"700m": "ok"}}]}
    second = {"observations": [str(path), {"build_s": {"microservicos": 0.2}, "memory": {"700m": "killed"}}]}
    support.take_over_figures(first)
    support.take_over_figures(second)
    assert support.measured_figures("observations", path) == {
        "build_s": {"monolito": 10.7, "microservicos": 0.2},
        "memory": {"700m": "killed"},
    }
    assert support.figures_to_hand_over() == {
        "observations": [str(path), {"build_s": {"monolito": 10.7, "microservicos": 0.2}, "memory": {"700m": "killed"}}]
    }


def test_a_layer_that_measured_nothing_hands_nothing_over(monkeypatch):
    monkeypatch.setattr(support, "_FIGURES", {})
    support.measured_figures("fuzz results", Path("build/fuzz-results.json"))
    assert support.figures_to_hand_over() == {}
