"""Documents into an index, locally (`python -m rag.ingest`) or on SageMaker Processing (rag.ingest.processing)."""
