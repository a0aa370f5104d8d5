"""The benchmarks, organised like the core: what they share, then one package per benchmark.

    core/     settings (config), the process manager the tests share (processes), the request stream,
              its targets and the one closed-loop client loop (workload), percentile and intervals (stats)
    serving/  `make bench`, `bench-split`, `soak`: the monolith against the microservices (python -m bench)
    index/    `make bench-index`: flat, hnsw and ivf on synthetic corpora (python -m bench.index.run)
    probes/   investigation tools run by hand, through public interfaces only

Answer quality (`make eval`, `eval-report`, `gpu-check`) lives in evaluation/, which may use bench.core;
bench never imports evaluation.
"""
