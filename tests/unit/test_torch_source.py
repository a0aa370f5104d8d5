"""Where torch's CPU build comes from: the project's own rule (docker/pip-torch.sh, used by `make setup`
and `make wheels`), not this machine's pip configuration. Resolved with `pip install --dry-run`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote

import pytest

from tests.support import ROOT, child_env

VERSION = next(
    line.split("==")[1].strip()
    for line in (ROOT / "requirements.txt").read_text().splitlines()
    if line.startswith("torch==")
)


def local_cpu_wheel() -> Path | None:
    """A torch X+cpu wheel on this machine (a find-links folder), to stand in for the PyTorch index."""
    folders = [part for part in os.environ.get("PIP_FIND_LINKS", "").split() if part] + ["/opt/wheels"]
    for folder in folders:
        found = sorted(Path(folder.removeprefix("file://")).glob(f"torch-{VERSION}+cpu-*.whl"))
        if found:
            return found[0]
    return None


WHEEL = local_cpu_wheel()


def clean_pip_env(**extra: str) -> dict[str, str]:
    """A fresh machine's pip: no configuration files, no find-links, no constraints."""
    env = child_env(PIP_CONFIG_FILE=os.devnull, PIP_FIND_LINKS="", PIP_EXTRA_INDEX_URL="", PIP_CONSTRAINT="", **extra)
    env.pop("PIP_INDEX_URL", None)
    return env


def resolve(command: list[str], env: dict[str, str], report: Path) -> dict:
    """What pip would install (name, version, where from), without installing anything."""
    subprocess.run(
        [*command, "--dry-run", "--no-deps", "--ignore-installed", "--quiet", "--report", str(report)],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        timeout=300,
    )
    chosen = json.loads(report.read_text())["install"][0]
    return {"version": chosen["metadata"]["version"], "url": chosen["download_info"]["url"]}


@pytest.mark.skipif(WHEEL is None, reason=f"no local torch {VERSION}+cpu wheel to serve as the PyTorch index")
def test_a_machine_without_this_pip_configuration_gets_the_cpu_build(tmp_path):
    # A one-package "PyPI simple" index on disk, in place of the PyTorch CPU index.
    (tmp_path / "simple" / "torch").mkdir(parents=True)
    (tmp_path / "simple" / "torch" / "index.html").write_text(f'<a href="{WHEEL.as_uri()}">{WHEEL.name}</a>')
    env = clean_pip_env(PIP=f"{sys.executable} -m pip", TORCH_INDEX_URL=(tmp_path / "simple").as_uri())
    chosen = resolve([str(ROOT / "docker" / "pip-torch.sh"), "install"], env, tmp_path / "rule.json")
    assert chosen["version"] == f"{VERSION}+cpu" and unquote(chosen["url"]) == unquote(WHEEL.as_uri())
    # Without the rule, the same clean pip takes PyPI's wheel of that version: the CUDA build.
    plain = resolve([sys.executable, "-m", "pip", "install", f"torch=={VERSION}"], env, tmp_path / "plain.json")
    assert plain["version"] == VERSION and "+cpu" not in plain["url"]
