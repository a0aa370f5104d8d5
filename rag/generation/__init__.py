"""The LLM side: generator, prompt, batching engine, decoder and grounding check.

It never imports the retrieval side (FAISS, sentence-transformers): the LLM service loads only this.
"""
