"""What the engines load from an LLM folder: its transformers files, and the engines' copies made from them.

Each engine other than torch loads a copy of its own, made once from the folder's already verified files by
`make models` (or `python -m rag.models ctranslate2|openvino --model-dir DIR` for a folder of your own), never
at start-up or request time: the CTranslate2 copy in `<model folder>/ctranslate2/`, the OpenVINO IR in
`<model folder>/openvino/`. A tier's safetensors were converted from the pinned GGUF (tier.json records its
SHA-256). A copy's own marker, `converted.json`, records a fingerprint of those files (the small JSON files
whole, tier.json and config.json among them, and every other file's name and size), so a copy left behind by
other weights is refused at start-up rather than served.

Weights are saved in float32: every compute type the service allows loads from them (CTranslate2 quantizes
float32 to int8 or casts it to bfloat16 at load), and float32 computes the same answers as torch's float32.

OpenVINO's converter (optimum-intel) needs an older transformers than the service pins, so it runs in a
process of its own over the converter's packages (`<venv>/openvino-converter`, which `make setup` installs from
requirements-openvino-converter.txt without their dependencies), beside this venv's torch.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from rag.errors import ConfigError

log = logging.getLogger(__name__)

# Each engine's copy, in the model folder's subfolder of the engine's name, and its name in messages.
ENGINE_COPIES = {"ctranslate2": "CTranslate2", "openvino": "OpenVINO"}
COPY_MARKER = "converted.json"  # written last: what the copy was made from
OPENVINO_CONVERTER = Path(sys.prefix) / "openvino-converter"  # `make setup` installs optimum-intel here
SAVED_QUANTIZATION = "float32"
_WHOLE_FILE_BYTES = 1 << 20  # JSON files up to this size are fingerprinted by content, the rest by size


def make_readable(folder: Path) -> None:
    """Let every user read `folder`: mkdtemp makes it 0700 and transformers writes its weights 0600,
    but the serving workers run as an unprivileged user (serving/gunicorn_conf.py)."""
    for item in folder.rglob("*"):
        item.chmod(0o755 if item.is_dir() else 0o644)
    folder.chmod(0o755)


@contextmanager
def staged(target: Path, ready: Callable[[], bool]) -> Iterator[Path]:
    """Build `target` in a staging folder beside it: the block fills the folder yielded (`<staging>/model`),
    which then becomes readable and is renamed into place, replacing an older `target`, unless `ready()` says
    another process finished first. The staging folder goes whatever happens, so a failure leaves nothing."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        made = staging / "model"
        yield made
        make_readable(made)
        if not ready():
            if target.exists():
                shutil.rmtree(target)
            made.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def copy_dir(model_dir: Path, engine: str = "ctranslate2") -> Path:
    """Where the `engine` copy of `model_dir` lives."""
    return Path(model_dir) / engine


def source_fingerprint(model_dir: Path) -> str:
    """A SHA-256 over the folder's own files (not its CTranslate2 copy): cheap enough for every start."""
    digest = hashlib.sha256()
    for item in sorted(Path(model_dir).iterdir()):
        if not item.is_file():
            continue
        size = item.stat().st_size
        digest.update(f"{item.name}\0{size}\0".encode())
        if item.suffix == ".json" and size <= _WHOLE_FILE_BYTES:
            digest.update(item.read_bytes())
    return digest.hexdigest()


def copy_marker(copy: Path) -> dict:
    """What a copy we made records (its source's fingerprint, its quantization); {} for a copy without a
    readable record."""
    try:
        return json.loads((copy / COPY_MARKER).read_text())
    except (OSError, ValueError):
        return {}


def is_converted(model_dir: Path, engine: str = "ctranslate2") -> bool:
    """True when `model_dir` holds an `engine` copy made from exactly its current files."""
    marker = copy_marker(copy_dir(model_dir, engine))
    return bool(marker) and marker.get("source_fingerprint") == source_fingerprint(model_dir)


def require_copy(model_dir: Path, make_it: str, engine: str = "ctranslate2") -> Path:
    """The `engine` copy of `model_dir`, or one line saying which command (`make_it`) makes it."""
    folder, name = copy_dir(model_dir, engine), ENGINE_COPIES[engine]
    if not (folder / COPY_MARKER).is_file():
        raise ConfigError(f"RAG_LLM_ENGINE={engine}, but {model_dir} has no {name} copy; run `{make_it}`")
    if not is_converted(model_dir, engine):
        raise ConfigError(
            f"RAG_LLM_ENGINE={engine}, but {folder} was made from other files than {model_dir} holds now; "
            f"run `{make_it}` again"
        )
    return folder


def convert(model_dir: Path, engine: str) -> Path:
    """Make the `engine` copy of `model_dir` once; later calls return at once."""
    return {"ctranslate2": convert_ctranslate2, "openvino": convert_openvino}[engine](Path(model_dir))


def convert_ctranslate2(model_dir: Path) -> Path:
    """Make the CTranslate2 copy of `model_dir` once (float32); later calls return at once. Like a tier's
    install, it is written in a staging folder and renamed into place, so a failure leaves nothing behind."""
    model_dir = Path(model_dir)
    target = copy_dir(model_dir)
    if is_converted(model_dir):
        return target
    try:
        import ctranslate2
        from ctranslate2.converters import TransformersConverter
    except ImportError:
        raise ConfigError("the ctranslate2 package is not installed; run `make setup`") from None
    fingerprint = source_fingerprint(model_dir)
    with staged(target, lambda: is_converted(model_dir)) as converted:
        log.info("converting %s for CTranslate2 %s (%s, once)", model_dir, ctranslate2.__version__, SAVED_QUANTIZATION)
        try:
            TransformersConverter(str(model_dir), low_cpu_mem_usage=True).convert(
                str(converted), quantization=SAVED_QUANTIZATION
            )
        except ValueError as exc:  # an architecture CTranslate2 does not know, said in one line
            raise ConfigError(f"CTranslate2 cannot convert {model_dir}: {exc}") from None
        record = {
            "engine": "ctranslate2",
            "ctranslate2_version": ctranslate2.__version__,
            "quantization": SAVED_QUANTIZATION,
            "source_fingerprint": fingerprint,
        }
        _write_marker(converted, record)
    return target


def _write_marker(converted: Path, record: dict) -> None:
    (converted / COPY_MARKER).write_text(json.dumps(record, indent=2) + "\n")


def convert_openvino(model_dir: Path, converter: Path = OPENVINO_CONVERTER) -> Path:
    """Make the OpenVINO IR of `model_dir` once (float32 weights, the stateful decoder with its KV cache and
    OpenVINO's tokenizer models, as optimum-intel exports them for OpenVINO GenAI); later calls return at once.
    The export runs in a child process over the `converter` packages (see the module docstring)."""
    model_dir = Path(model_dir)
    target = copy_dir(model_dir, "openvino")
    if is_converted(model_dir, "openvino"):
        return target
    try:
        import openvino
    except ImportError:
        raise ConfigError(
            "the openvino package is not installed; run `make setup` (it is pinned in requirements-openvino.txt)"
        ) from None
    if not (converter / "optimum" / "intel").is_dir():
        raise ConfigError(
            f"OpenVINO's converter is not installed in {converter} (the container images leave it out); "
            "run `make setup` and make the copy there"
        )
    fingerprint = source_fingerprint(model_dir)
    with staged(target, lambda: is_converted(model_dir, "openvino")) as converted:
        log.info("converting %s for OpenVINO %s (float32, once)", model_dir, openvino.get_version())
        export = ["export", "openvino", "--model", str(model_dir), "--task", "text-generation-with-past"]
        command = [sys.executable, "-m", "optimum.commands.optimum_cli", *export, "--weight-format", "fp32"]
        env = dict(os.environ, PYTHONPATH=str(converter), HF_HUB_OFFLINE="1", OPENVINO_TELEMETRY_OPTOUT="1")
        done = subprocess.run([*command, str(converted)], env=env, capture_output=True, text=True)
        if done.returncode != 0 or not (converted / "openvino_model.xml").is_file():
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise ConfigError(f"OpenVINO cannot convert {model_dir}: {last}")
        record = {
            "engine": "openvino",
            "openvino_version": openvino.get_version(),
            "quantization": SAVED_QUANTIZATION,
            "source_fingerprint": fingerprint,
        }
        _write_marker(converted, record)
    return target
