"""The CPU a measurement ran on, as the results record it: engine figures do not carry over between CPUs
(CTranslate2, for one, picks its matrix library by the vendor; docs/performance.md)."""

from __future__ import annotations

import os
import platform
from pathlib import Path

# The vector extensions that decide which kernels the engines run, when the kernel lists them.
FLAGS = ("avx", "avx2", "avx512f", "avx512_vnni", "avx512_bf16", "avx_vnni", "amx_bf16", "amx_int8")


def cpu(cpuinfo: Path = Path("/proc/cpuinfo")) -> dict:
    """The CPU's vendor, model name, core count and which of FLAGS it has (vendor, model and flags are
    missing where /proc/cpuinfo cannot be read)."""
    fields: dict = {"machine": platform.machine(), "cores": os.cpu_count()}
    try:
        text = cpuinfo.read_text()
    except OSError:
        return fields
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key == "vendor_id":
            fields.setdefault("vendor", value)
        elif key == "model name":
            fields.setdefault("model", value)
        elif key == "flags":
            fields.setdefault("flags", [flag for flag in FLAGS if flag in value.split()])
    return fields


def describe(machine: dict) -> str:
    """One phrase for a results footer, e.g. 'AMD EPYC (AuthenticAMD, 2 cores; avx, avx2)'."""
    flags = ", ".join(machine.get("flags") or []) or "no AVX"
    return f"{machine.get('model', '?')} ({machine.get('vendor', '?')}, {machine.get('cores')} cores; {flags})"
