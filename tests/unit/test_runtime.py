"""CPU runtime defaults applied when the rag package loads, before torch (rag/runtime.py)."""

import subprocess
import sys

import pytest

from tests.support import ROOT, child_env

PROBE = "import os, rag; print(os.environ.get('GOMP_SPINCOUNT'), os.environ.get('OMP_WAIT_POLICY'))"


@pytest.mark.parametrize(
    "env, expected",
    [
        ({}, "3000 None"),  # the bounded spin
        ({"GOMP_SPINCOUNT": "200000"}, "200000 None"),  # the user's value wins
        ({"OMP_WAIT_POLICY": "PASSIVE"}, "None PASSIVE"),  # so does a wait policy
    ],
)
def test_spin_default_unless_the_user_chose(env, expected):
    clean = {key: value for key, value in child_env().items() if key not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    output = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout.strip()
    assert output == expected


@pytest.mark.parametrize("env, expected", [({}, "1"), ({"MKL_DISABLE_FAST_MM": "0"}, "0")])
def test_mkl_memory_pool_off_unless_the_user_chose(env, expected):
    clean = {key: value for key, value in child_env().items() if key != "MKL_DISABLE_FAST_MM"}
    probe = "import os, rag; print(os.environ.get('MKL_DISABLE_FAST_MM'))"
    output = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout.strip()
    assert output == expected


def test_nothing_is_changed_once_torch_is_loaded():
    import torch  # noqa: F401 - loaded: libgomp has read its environment already

    from rag.runtime import configure_process

    env = {}
    configure_process(env)
    assert "GOMP_SPINCOUNT" not in env and "MKL_DISABLE_FAST_MM" not in env


def test_memory_is_handed_back_once_the_work_has_been_idle():
    import threading
    import time

    from rag.runtime import TrimWhenIdle

    released = threading.Event()
    trim = TrimWhenIdle(0.2, release=released.set)
    with trim:
        with trim:  # two requests at once: the first one's end is not idle
            pass
        assert not released.wait(0.3)
    with trim:  # work that comes back before the delay cancels that trim
        pass
    with trim:
        assert not released.wait(0.3)
    deadline = time.monotonic() + 5
    while not released.is_set() and time.monotonic() < deadline:
        released.wait(0.05)
    assert released.is_set()
