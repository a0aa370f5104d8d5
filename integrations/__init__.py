"""Adapters for the clients users already have: content handlers that let LangChain's `SagemakerEndpoint`
(`integrations.langchain`), its `ChatSagemakerEndpoint` (`integrations.chat`) and LlamaIndex's `SageMakerLLM` (`integrations.llamaindex`) ask a RAG endpoint
and return its answer and sources. docs/clients.md shows each in use, next to plain boto3.

Client-side only: the containers never import this package (an import-linter contract says so), and the
frameworks it adapts are test dependencies, not runtime ones: langchain-aws in requirements-dev.txt, LlamaIndex
in the optional requirements-llamaindex.txt (it needs llama-cpp-python built from source).
"""
