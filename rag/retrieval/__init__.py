"""Query time: the embedder, the local retriever and focused context."""
