"""`make bench`: measures the monolith against the microservices, on one machine, in one run.

    python -m bench run      start both architectures, drive them, write results/<timestamp>.json + report
    python -m bench report   rebuild the report, charts and the README table from a results file

Modules: config (settings from BENCH_* variables), processes (start/stop a served architecture,
process-tree memory), workload (the identical request stream), inprocess (the no-HTTP baseline),
faults (kill a stage under load), stats, cost (the cost estimate), charts, claims (README table),
report (Markdown), run (the phases in order).
"""
