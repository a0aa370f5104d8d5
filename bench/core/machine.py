"""The CPU a measurement ran on, as the results record it: engine figures do not carry over between CPUs
(CTranslate2, for one, picks its matrix library by the vendor; docs/performance.md)."""

from __future__ import annotations

import os
import platform
from importlib import metadata
from pathlib import Path

from rag.runtime import CPUINFO, cpuinfo

# The vector extensions that decide which kernels the engines run, when the kernel lists them.
FLAGS = ("avx", "avx2", "avx512f", "avx512_vnni", "avx512_bf16", "avx_vnni", "amx_bf16", "amx_int8")


def cpu_flags(lines: list[tuple[str, str]] | None = None) -> set[str]:
    """Every instruction-set flag /proc/cpuinfo lists (empty where it cannot be read)."""
    lines = cpuinfo() if lines is None else lines
    return {flag for key, value in lines or [] if key == "flags" for flag in value.split()}


def cpu(path: Path = CPUINFO) -> dict:
    """The CPU's vendor, model name, core count and which of FLAGS it has (vendor, model and flags are
    missing where /proc/cpuinfo cannot be read)."""
    fields: dict = {"machine": platform.machine(), "cores": os.cpu_count()}
    lines = cpuinfo(path)
    if lines is None:
        return fields
    first = {}
    for key, value in lines:
        first.setdefault(key, value)
    for name, key in (("vendor", "vendor_id"), ("model", "model name")):
        if key in first:
            fields[name] = first[key]
    if "flags" in first:
        flags = cpu_flags(lines)
        fields["flags"] = [flag for flag in FLAGS if flag in flags]
    return fields


def describe(machine: dict) -> str:
    """One phrase for a results footer, e.g. 'AMD EPYC (AuthenticAMD, 2 cores; avx, avx2)'."""
    flags = ", ".join(machine.get("flags") or []) or "no AVX"
    return f"{machine.get('model', '?')} ({machine.get('vendor', '?')}, {machine.get('cores')} cores; {flags})"


def package_versions(packages) -> dict[str, str | None]:
    """The installed version of each package (None where it is not installed)."""
    versions: dict[str, str | None] = {}
    for package in packages:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return versions
