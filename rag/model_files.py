"""What the engines load from an LLM folder: its transformers files, and the CTranslate2 copy made from them.

The CTranslate2 copy lives in `<model folder>/ctranslate2/` and is made once, by `make models` (or
`python -m rag.models ctranslate2 --model-dir DIR` for a folder of your own), never at start-up or request
time. It is derived from the folder's already verified files: a tier's safetensors were converted from the
pinned GGUF (tier.json records its SHA-256). The copy's own marker, `converted.json`, records a fingerprint of
those files (the small JSON files whole, tier.json and config.json among them, and every other file's name and
size), so a copy left behind by other weights is refused at start-up rather than served.

Weights are saved in float32: every compute type the service allows loads from them (CTranslate2 quantizes
float32 to int8 or casts it to bfloat16 at load), and float32 computes the same answers as torch's float32.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from rag.errors import ConfigError

log = logging.getLogger(__name__)

CTRANSLATE2_DIR = "ctranslate2"  # inside the model folder
CTRANSLATE2_MARKER = "converted.json"  # written last: what the copy was made from
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


def ctranslate2_dir(model_dir: Path) -> Path:
    """Where the CTranslate2 copy of `model_dir` lives."""
    return Path(model_dir) / CTRANSLATE2_DIR


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


def ctranslate2_marker(copy: Path) -> dict:
    """What a CTranslate2 copy we made records (its source's fingerprint, its quantization); {} for a copy
    without a readable record."""
    try:
        return json.loads((copy / CTRANSLATE2_MARKER).read_text())
    except (OSError, ValueError):
        return {}


def is_converted(model_dir: Path) -> bool:
    """True when `model_dir` holds a CTranslate2 copy made from exactly its current files."""
    marker = ctranslate2_marker(ctranslate2_dir(model_dir))
    return bool(marker) and marker.get("source_fingerprint") == source_fingerprint(model_dir)


def require_ctranslate2(model_dir: Path, make_it: str) -> Path:
    """The CTranslate2 copy of `model_dir`, or one line saying which command (`make_it`) makes it."""
    folder = ctranslate2_dir(model_dir)
    if not (folder / CTRANSLATE2_MARKER).is_file():
        raise ConfigError(f"RAG_LLM_ENGINE=ctranslate2, but {model_dir} has no CTranslate2 copy; run `{make_it}`")
    if not is_converted(model_dir):
        raise ConfigError(
            f"RAG_LLM_ENGINE=ctranslate2, but {folder} was made from other files than {model_dir} holds now; "
            f"run `{make_it}` again"
        )
    return folder


def convert_ctranslate2(model_dir: Path) -> Path:
    """Make the CTranslate2 copy of `model_dir` once (float32); later calls return at once. Like a tier's
    install, it is written in a staging folder and renamed into place, so a failure leaves nothing behind."""
    model_dir = Path(model_dir)
    target = ctranslate2_dir(model_dir)
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
        (converted / CTRANSLATE2_MARKER).write_text(json.dumps(record, indent=2) + "\n")
    return target
