"""The RAG core. Importing it first sets the CPU runtime defaults that torch reads when it loads."""

from rag.runtime import configure_process

configure_process()
