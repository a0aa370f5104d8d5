"""The whole suite's hooks.

`make check` runs the suite on two processes (pytest-xdist, `-n`; `--dist loadgroup` in pyproject.toml). The
tests of one file stay on one worker, so each file's module fixtures start once; every test that needs the
Docker daemon shares one worker, so the images are built once and no two container tests compete for the
daemon. What the layers measured (tests/support.py `measured_figures`) comes back from the workers, and is
written and printed after the run as without workers.
"""

from __future__ import annotations

import pytest

from tests.support import figures_to_hand_over, report_all_figures, take_over_figures


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    for item in items:
        group = "docker" if item.get_closest_marker("docker") else item.nodeid.split("::", 1)[0]
        item.add_marker(pytest.mark.xdist_group(group))


def pytest_sessionfinish(session):
    handover = getattr(session.config, "workeroutput", None)  # set only on an xdist worker
    if handover is not None:
        handover["figures"] = figures_to_hand_over()


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    take_over_figures(getattr(node, "workeroutput", {}).get("figures", {}))


def pytest_terminal_summary(terminalreporter, config):
    if not hasattr(config, "workeroutput"):  # the controller (or the only process) writes and prints
        report_all_figures(terminalreporter)


@pytest.fixture
def on_cpu(monkeypatch):
    """Pretend the CPU is of the vendor given (`on_cpu("GenuineIntel")`), and no GPU is here: a tier's default
    engine depends on both (rag/model_ladder.toml's by_cpu_vendor)."""
    from rag import settings

    monkeypatch.setattr(settings, "gpu_visible", lambda: False)
    return lambda vendor: monkeypatch.setattr(settings, "cpu_vendor", lambda: vendor)
