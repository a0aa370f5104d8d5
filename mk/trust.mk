# Trust targets (included by the top-level Makefile): Schemathesis fuzzing against the OpenAPI
# descriptions in docs/, and a soak with chaos. Both run long; `make check` runs their short versions
# (tests/fuzz/ with few examples, tests/bench/test_soak_smoke.py).

# Examples per operation and phase: 3,200 gave 6,556 requests on the monolith's public API when two POST
# operations took them (/ping has no input), so 5,100 gave about 10,300; the chat schema's third POST
# operation (/v1/chat/completions) and chat bodies on the other two only add to that.
FUZZ_EXAMPLES     ?= 5100
FUZZ_MIN_REQUESTS ?= 10000
SOAK_MINUTES      ?= 30

.PHONY: fuzz soak

fuzz: ## Fuzz both architectures (real servers) with Schemathesis against docs/openapi*.yaml; at least FUZZ_MIN_REQUESTS each
	FUZZ_EXAMPLES=$(call q,$(FUZZ_EXAMPLES)) FUZZ_MIN_REQUESTS=$(call q,$(FUZZ_MIN_REQUESTS)) \
	  $(PYQ) -m pytest $(call q,$(ROOT)/tests/fuzz) -p no:cacheprovider $(PYTEST_ARGS)

soak: ## SOAK_MINUTES (30) of load per architecture, services killed, SIGTERM at the end; soak.json + soak.png
	SOAK_MINUTES=$(call q,$(SOAK_MINUTES)) $(PYQ) -m bench soak
