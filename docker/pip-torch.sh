#!/usr/bin/env bash
# pip install (or download) the CPU build of the torch version that requirements.txt pins: torch==X
# there, torch==X+cpu here. PyPI's Linux torch wheel is the multi-GB CUDA build; the CPU build is
# published only on the PyTorch index. The sources pip is already configured with are tried first (a
# local mirror or find-links folder that holds the CPU wheel), then TORCH_INDEX_URL, so a machine
# with no pip configuration of its own gets the same build.
# Usage: pip-torch.sh install|download [pip options...]
# Environment: PIP (default: python3 -m pip), TORCH_INDEX_URL (default: the PyTorch CPU index).
set -euo pipefail

action="${1:?usage: pip-torch.sh install|download [pip options...]}"
shift
case "$action" in install|download) ;; *) echo "pip-torch.sh: install or download, got '$action'" >&2; exit 2 ;; esac
root="$(cd "$(dirname "$0")/.." && pwd)"
read -r -a pip <<< "${PIP:-python3 -m pip}"
version="$(sed -n 's/^torch==\([^ ;#+]*\).*/\1/p' "$root/requirements.txt")"
[ -n "$version" ] || { echo "requirements.txt must pin torch==VERSION" >&2; exit 1; }
index="${TORCH_INDEX_URL:-https://download.pytorch.org/whl/cpu}"

# The first try is quiet: on a machine without a local copy it fails fast (PyPI has no +cpu build).
"${pip[@]}" "$action" "$@" "torch==${version}+cpu" 2>/dev/null \
  || "${pip[@]}" "$action" --extra-index-url "$index" "$@" "torch==${version}+cpu"
