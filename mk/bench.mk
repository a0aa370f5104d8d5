# Benchmark targets (included by the top-level Makefile): the measured comparison of the two
# architectures. Settings come from BENCH_* variables (bench/core/config.py); BENCH_RESULTS_DIR says where
# results go (default bench/results/, where only latest/ is committed).

.PHONY: bench bench-report bench-split bench-telemetry

bench: ## Measure both architectures and the in-process baseline, with the concurrency sweep (~17 min; BENCH_QUICK=1: ~2 min smoke run)
	$(PYQ) -m bench run --publish

bench-report: ## Regenerate the report, charts, bench/results/latest/ and the README table from the newest results
	$(PYQ) -m bench report

bench-split: ## Measure what the split topology's extra hop adds per request, against the microservices (publishes to docs/bench.md)
	$(PYQ) -m bench split --publish

bench-telemetry: ## Measure what metrics cost: each architecture with RAG_METRICS on and off, interleaved, at 1 and 8 clients (~10 min; publishes to docs/operations.md)
	$(PYQ) -m bench telemetry --publish
