"""LlamaIndex's SageMakerLLM (llama-index-llms-sagemaker-endpoint) with the handler of
integrations/llamaindex.py, through the SageMaker Runtime stand-in in front of the real monolith: completed,
chatted and streamed (its PayloadParts cut anywhere), it gives the answer and sources of a plain call."""

from __future__ import annotations

import pytest

from tests.service.clients_support import AWKWARD_PARTS, ENDPOINT, OPTIONS, QUESTION

# llama-index-llms-sagemaker-endpoint needs llama-cpp-python, which builds llama.cpp from source: an optional
# install (requirements-llamaindex.txt), so its absence skips this module, saying so, rather than failing it.
pytest.importorskip(
    "llama_index.llms.sagemaker_endpoint",
    reason="LlamaIndex's SageMakerLLM is not installed: .venv/bin/pip install -r requirements-llamaindex.txt",
    exc_type=ImportError,
)
from llama_index.core.base.llms.types import ChatMessage  # noqa: E402

from integrations.llamaindex import rag_sagemaker_llm  # noqa: E402

pytestmark = pytest.mark.slow


def test_llamaindex_sagemaker_llm_with_the_io_handler(aws_env, plain_answer):
    llm = rag_sagemaker_llm(ENDPOINT, model_kwargs=dict(OPTIONS))
    response = llm.complete(QUESTION)
    assert response.text == plain_answer["answer"]
    assert response.raw["Body"]["sources"] == plain_answer["sources"]
    chat = llm.chat([ChatMessage(role="system", content="Be brief."), ChatMessage(role="user", content=QUESTION)])
    assert chat.message.content == plain_answer["answer"]
    aws_env.part_sizes = AWKWARD_PARTS  # SageMakerLLM hands each part over alone: the handler joins them
    pieces = list(llm.stream_complete(QUESTION))
    assert len(pieces) > 10 and pieces[-1].text.strip() == plain_answer["answer"]
    assert "".join(piece.delta for piece in pieces) == pieces[-1].text
