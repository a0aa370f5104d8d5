"""Without a Docker daemon the container tests skip, unless RAG_REQUIRE_DOCKER=1 (CI) makes that a failure."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.support import ROOT, child_env


@pytest.mark.parametrize(
    "required, outcome",
    [("", "1 skipped"), ("0", "1 skipped"), ("no", "1 skipped"), ("1", "1 error"), ("true", "1 error")],
)
def test_no_daemon_is_a_skip_or_a_failure(tmp_path, required, outcome):
    # A docker client that does not exist: `docker version` fails as it does without a daemon.
    env = child_env(DOCKER=str(tmp_path / "no-docker"), RAG_REQUIRE_DOCKER=required)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "tests/container/test_container_images.py::test_image_ships_no_compiler[monolito]",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert outcome in result.stdout, result.stdout[-2000:]
    assert (result.returncode != 0) == (outcome == "1 error")
    if outcome == "1 error":
        assert "RAG_REQUIRE_DOCKER=1" in result.stdout
