"""Investigation tools run by hand (`python -m bench.probes.<name>`): they use public interfaces only."""
