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


def _cgroup(folder, files: dict[str, str]):
    folder.mkdir(parents=True)
    for name, text in files.items():
        (folder / name).write_text(text)
    return folder


MIB = 2**20


def test_memory_available_reads_the_cgroups_limit_less_what_it_cannot_drop(tmp_path):
    from rag.runtime import memory_available

    meminfo = tmp_path / "meminfo"
    meminfo.write_text(f"MemTotal: 24000000 kB\nMemAvailable: {20 * 1024 * 1024} kB\n")
    v2 = _cgroup(
        tmp_path / "v2",
        {
            "memory.max": f"{700 * MIB}\n",
            "memory.current": f"{500 * MIB}\n",
            "memory.stat": f"anon 1\ninactive_file {80 * MIB}\nactive_file {20 * MIB}\nshmem {5 * MIB}\n",
        },
    )
    # The page cache (inactive and active file pages) counts as free; shared memory does not.
    assert memory_available([tmp_path / "absent", v2], meminfo) == (300 * MIB, 700 * MIB)
    v1 = _cgroup(
        tmp_path / "v1",
        {
            "memory.limit_in_bytes": f"{1024 * MIB}\n",
            "memory.usage_in_bytes": f"{900 * MIB}\n",
            # v1: the hierarchy's counts are the total_ ones
            "memory.stat": f"inactive_file {1 * MIB}\ntotal_inactive_file {100 * MIB}\ntotal_active_file {50 * MIB}\n",
        },
    )
    assert memory_available([v1], meminfo) == (274 * MIB, 1024 * MIB)
    # No limit: the host's MemAvailable. A limit above what the host has left: the host's.
    unlimited_v1 = _cgroup(
        tmp_path / "u1", {"memory.limit_in_bytes": "9223372036854771712\n", "memory.usage_in_bytes": "1\n"}
    )
    unlimited_v2 = _cgroup(tmp_path / "u2", {"memory.max": "max\n", "memory.current": "1\n"})
    assert memory_available([unlimited_v1], meminfo) == (20 * 1024 * MIB, None)
    assert memory_available([unlimited_v2], meminfo) == (20 * 1024 * MIB, None)
    meminfo.write_text(f"MemAvailable: {100 * 1024} kB\n")
    assert memory_available([v2], meminfo) == (100 * MIB, 700 * MIB)
    assert memory_available([tmp_path / "absent"], tmp_path / "no-meminfo") == (None, None)


def test_a_model_that_cannot_fit_is_refused_in_one_line(monkeypatch):
    from rag import runtime
    from rag.errors import InsufficientMemory

    monkeypatch.setattr(runtime, "memory_available", lambda: (100 * MIB, 700 * MIB))
    with pytest.raises(InsufficientMemory) as error:
        runtime.check_memory_for("the model m", 513 * MIB, "give it more memory")
    assert error.value.message == (
        "the model m needs at least 513 MiB for its weights, but only 100 MiB are free "
        "(the container's limit is 700 MiB); give it more memory"
    )
    assert error.value.error_type == "insufficient_memory"
    runtime.check_memory_for("the model m", 100 * MIB, "")  # it fits
    monkeypatch.setattr(runtime, "memory_available", lambda: (None, None))
    runtime.check_memory_for("the model m", 10**15, "")  # nothing known: no guess


WITHOUT_TORCH = """
import sys
from rag.runtime import transformers_without_torch
with transformers_without_torch() as hidden:
    import transformers
    with transformers_without_torch() as again:
        pass
print(hidden, again, "torch" in sys.modules)
import torch  # importable again after the block
print(torch.__name__)
"""


def test_transformers_is_imported_without_torch_only_where_neither_is_loaded():
    result = subprocess.run(
        [sys.executable, "-c", WITHOUT_TORCH], capture_output=True, text=True, cwd=ROOT, env=child_env(), timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "False", "False", "torch"]
    assert "PyTorch was not found" not in result.stderr  # transformers' warning would read like a fault
