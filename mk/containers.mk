# Container targets (included by the top-level Makefile): the two SageMaker images, their offline
# build path, and the container tests. The images honour SageMaker's container contract (docs/containers.md):
# `docker run IMAGE serve`, the port in SAGEMAKER_BIND_TO_PORT, SIGTERM then SIGKILL 30 s later. The offline
# path (OFFLINE=1) is for hosts whose docker builds cannot pull from Docker Hub or install from PyPI: a
# debootstrap base image and a wheelhouse downloaded on the host. The AWS targets in mk/aws.mk push the same IMAGE_NAME:IMAGE_TAG.

IMAGE_NAME       ?= rag-$(ARCH)
IMAGE_TAG        ?= latest
# cpu: torch X+cpu (serverless, CPU instances); cuda: PyPI's CUDA torch (GPU instances, untested here).
TORCH_VARIANT    ?= cpu
# Inside the repository: it is sent to docker as part of the build context.
WHEELHOUSE       ?= wheelhouse/$(TORCH_VARIANT)
LOCAL_BASE_IMAGE ?= rag-base:bookworm
# OFFLINE=1 builds on the local debootstrap base and installs only from the host wheelhouse.
OFFLINE          ?=
# Engine copies of the LLM tier the image leaves out (space-separated engine names: ctranslate2 openvino);
# each is about the size of the weights again (float32), which matters for the bigger tiers.
SKIP_COPIES      ?=
BASE_IMAGE       ?= $(if $(OFFLINE),$(LOCAL_BASE_IMAGE),python:3.11-slim)
DOCKER_BUILD_ARGS ?=
# The wheelhouse's stamp names the extra LLM tier it holds, so LLM=<tier> fills it again.
WHEELS_STAMP     := $(ROOT)/$(WHEELHOUSE)/.complete$(if $(LLM),-$(LLM))

# BuildKit is required (RUN --mount). A docker client without buildx refuses DOCKER_BUILDKIT=1, so
# prefer Debian's docker.io client (/usr/bin/docker), which builds with the daemon's own BuildKit.
ifeq ($(origin DOCKER),undefined)
DOCKER := $(shell if docker buildx version >/dev/null 2>&1; then echo docker; \
                  elif [ -x /usr/bin/docker ]; then echo /usr/bin/docker; else echo docker; fi)
endif
export DOCKER

DOCKERFILE_monolito      := Monolitico/Dockerfile
DOCKERFILE_microservicos := Microservicos/Dockerfile

.PHONY: build wheels base-image test-container

build: $(if $(OFFLINE),$(WHEELS_STAMP)) ## docker build ARCH's image as IMAGE_NAME:IMAGE_TAG with the LLM tier LLM (default: the ladder's) and its engine copies but SKIP_COPIES; OFFLINE=1: local base + wheelhouse, made when missing
	@test -n $(call q,$(DOCKERFILE_$(ARCH))) || { echo "ARCH must be monolito or microservicos, got: "$(call q,$(ARCH)) >&2; exit 2; }
	@if [ -n $(call q,$(OFFLINE)) ] && ! $(call q,$(DOCKER)) image inspect $(call q,$(LOCAL_BASE_IMAGE)) >/dev/null 2>&1; then \
	  $(MAKE) --no-print-directory base-image; fi
	@# Without OFFLINE a wheelhouse is used when `make wheels` has filled it, else the build uses PyPI.
	@# DOCKER_BUILD_ARGS stays unquoted: it is several words on purpose (--no-cache --progress=plain).
	cd $(call q,$(ROOT)) && DOCKER_BUILDKIT=1 $(call q,$(DOCKER)) build -f $(call q,$(DOCKERFILE_$(ARCH))) \
	  --build-arg BASE_IMAGE=$(call q,$(BASE_IMAGE)) --build-arg TORCH_VARIANT=$(call q,$(TORCH_VARIANT)) \
	  --build-arg WHEELHOUSE=$(call q,$(if $(wildcard $(WHEELS_STAMP)),$(WHEELHOUSE),docker/no-wheelhouse)) \
	  --build-arg LLM=$(call q,$(LLM)) --build-arg SKIP_COPIES=$(call q,$(SKIP_COPIES)) \
	  $(DOCKER_BUILD_ARGS) -t $(call q,$(IMAGE_NAME):$(IMAGE_TAG)) .

wheels: $(WHEELS_STAMP) ## Download every wheel the images need into WHEELHOUSE (TORCH_VARIANT=cpu|cuda; LLM=<tier> adds a tier); again when requirements change

# The stamp is written only after a full download, and goes stale when the requirements or pins change.
$(WHEELS_STAMP): $(ROOT)/requirements.txt $(ROOT)/requirements-openvino.txt $(ROOT)/requirements-openvino-converter.txt \
                 $(ROOT)/docker/wheels.sh $(ROOT)/docker/pip-torch.sh $(ROOT)/rag/model_ladder.toml
	PIP=$(call q,$(PY) -m pip) TORCH_INDEX_URL=$(call q,$(TORCH_INDEX_URL)) LLM=$(call q,$(LLM)) $(call q,$(ROOT)/docker/wheels.sh) $(call q,$(ROOT)/$(WHEELHOUSE)) $(call q,$(TORCH_VARIANT))
	touch $(call q,$@)

base-image: ## Build LOCAL_BASE_IMAGE (Debian bookworm + python3 via debootstrap), for hosts that cannot pull python:3.11-slim
	$(call q,$(ROOT)/docker/base-image.sh) $(call q,$(LOCAL_BASE_IMAGE))

test-container: ## Build both images offline and run the container tests against them (needs a Docker daemon)
	$(PYQ) -m pytest $(call q,$(ROOT)/tests/container) -m docker $(PYTEST_ARGS)
