"""The index benchmark (`make bench-index`): flat, hnsw and ivf on synthetic corpora of up to 1M chunks."""
