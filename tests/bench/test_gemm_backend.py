"""bench/probes/gemm_backend.py: one real short run on the default tier, and the parsing of CTranslate2's
start-up lines (the live run is `python -m bench.probes.gemm_backend`)."""

from __future__ import annotations

import json
import subprocess
import sys

from bench.core.machine import cpu, cpu_flags, cpuinfo, describe
from bench.probes.gemm_backend import chosen_backend
from tests.support import ROOT, child_env

VERBOSE = """\
[2026-12-04 15:37:16.169] [ctranslate2] [thread 1] [info]  - SGEMM backend: MKL (packed: true)
[2026-12-04 15:37:16.169] [ctranslate2] [thread 1] [info]  - GEMM_S8 backend: DNNL (packed: false, u8s8 preferred: true)
"""


def test_the_reported_backend_is_read_per_compute_type():
    assert chosen_backend(VERBOSE, "float32") == "MKL packed"
    assert chosen_backend(VERBOSE, "int8") == "DNNL"
    assert chosen_backend(VERBOSE, "int8_float32") == "DNNL"
    assert chosen_backend("no such line", "int8") is None


def test_a_short_run_measures_each_backend_in_its_own_process(tmp_path):
    out = tmp_path / "gemm.json"
    completed = subprocess.run(
        [sys.executable, "-m", "bench.probes.gemm_backend", "--rounds", "1", "--compute", "float32"]
        + ["--new-tokens", "3", "--out", str(out)],
        cwd=ROOT,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    results = json.loads(out.read_text())
    figures = results["figures"]["float32"]
    assert set(figures) == {"auto", "mkl", "dnnl"}
    # Each process was given its own CT2_USE_MKL and CTranslate2 says it obeyed; unset follows the vendor.
    assert figures["mkl"]["reported_backend"].startswith("MKL")
    assert figures["dnnl"]["reported_backend"] == "DNNL"
    intel = cpu().get("vendor") == "GenuineIntel"
    assert figures["auto"]["reported_backend"] == figures["mkl" if intel else "dnnl"]["reported_backend"]
    for backend in figures.values():
        assert backend["rounds"] == 1
        assert backend["prefill_ms"]["median"] > 0 and backend["decode_ms_per_token"]["median"] > 0
    assert "| float32 | auto (unset) |" in completed.stdout and results["prompt_tokens"] > 100


def test_the_cpu_is_read_from_cpuinfo(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text(
        "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) Platinum 8259CL CPU @ 2.50GHz\n"
        "flags\t\t: fpu avx avx2 avx512f avx512_vnni\nprocessor\t: 1\nvendor_id\t: GenuineIntel\n"
    )
    machine = cpu(info)
    assert machine["vendor"] == "GenuineIntel" and machine["model"].startswith("Intel(R) Xeon(R) Platinum 8259CL")
    assert machine["flags"] == ["avx", "avx2", "avx512f", "avx512_vnni"]
    assert describe(machine).startswith("Intel(R) Xeon(R) Platinum 8259CL CPU @ 2.50GHz (GenuineIntel, ")
    assert describe(machine).endswith("cores; avx, avx2, avx512f, avx512_vnni)")
    assert cpu_flags(cpuinfo(info)) == {"fpu", "avx", "avx2", "avx512f", "avx512_vnni"}  # what llama_peer builds by
    assert cpuinfo(tmp_path / "missing") is None and cpu_flags([]) == set()
    assert "vendor" not in cpu(tmp_path / "missing") and "no AVX" in describe(cpu(tmp_path / "missing"))
