"""Static checks of the container files, run with or without Docker."""

from __future__ import annotations

import json
import re

from tests.support import ROOT

MARKER = "# --- architecture"


def instructions(text: str) -> list[str]:
    """Dockerfile instructions with comments and line continuations folded away."""
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    return [step.strip() for step in re.split(r"\n(?=[A-Z]+ )", "\n".join(lines).replace("\\\n", " ")) if step.strip()]


def test_both_dockerfiles_share_every_step_before_the_architecture():
    # Identical steps give identical BuildKit cache keys: the second image reuses the first's layers.
    mono = (ROOT / "Monolitico" / "Dockerfile").read_text()
    micro = (ROOT / "Microservicos" / "Dockerfile").read_text()
    assert MARKER in mono and MARKER in micro
    assert instructions(mono.split(MARKER)[0]) == instructions(micro.split(MARKER)[0])


def test_dockerfiles_follow_the_sagemaker_contract():
    for folder in ("Monolitico", "Microservicos"):
        text = (ROOT / folder / "Dockerfile").read_text()
        assert "LABEL com.amazonaws.sagemaker.capabilities.accept-bind-to-port=true" in text
        entrypoint = re.search(r"^ENTRYPOINT (.+)$", text, re.M).group(1)
        assert isinstance(json.loads(entrypoint), list), "ENTRYPOINT must be in exec form"
        assert "PYTHONUNBUFFERED=1" in text
        assert "ARG BASE_IMAGE=python:3.11-slim" in text


def test_dockerignore_keeps_the_context_small():
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    rules = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    assert rules[0] == "*", "deny everything first, then allow what the images need"
    allowed = {rule[1:].rstrip("/") for rule in rules if rule.startswith("!")}
    assert not allowed & {".venv", "models", "indexes", ".git", "tests", "build"}
