"""LangChain's SagemakerEndpoint (langchain-aws) with the handler of integrations/langchain.py, and
RagSagemakerEndpoint, through the SageMaker Runtime stand-in in front of the real monolith: invoked and
streamed, each gives the answer and sources of a plain /invocations call."""

from __future__ import annotations

import pytest
from langchain_aws import SagemakerEndpoint

from integrations.langchain import RagContentHandler, RagSagemakerEndpoint
from sagemaker_lifecycle import InvocationError
from tests.service.clients_support import AWKWARD_PARTS, ENDPOINT, OPTIONS, QUESTION

pytestmark = pytest.mark.slow


def test_langchain_sagemaker_endpoint_with_the_content_handler(aws_env, plain_answer):
    llm = SagemakerEndpoint(endpoint_name=ENDPOINT, content_handler=RagContentHandler(), model_kwargs=dict(OPTIONS))
    assert llm.invoke(QUESTION) == plain_answer["answer"]
    aws_env.part_sizes = AWKWARD_PARTS  # langchain-aws joins the parts into lines itself
    pieces = list(llm.stream(QUESTION))
    assert len(pieces) >= 2 and "".join(pieces).strip() == plain_answer["answer"]


@pytest.mark.parametrize("streaming", [False, True])
def test_rag_sagemaker_endpoint_gives_the_sources(aws_env, plain_answer, streaming):
    aws_env.part_sizes = AWKWARD_PARTS if streaming else ()
    llm = RagSagemakerEndpoint(endpoint_name=ENDPOINT, model_kwargs=dict(OPTIONS), streaming=streaming)
    generation = llm.generate([QUESTION]).generations[0][0]
    assert generation.text == plain_answer["answer"]
    assert generation.generation_info["sources"] == plain_answer["sources"]
    assert generation.generation_info["usage"] == plain_answer["usage"]
    assert "answer" not in generation.generation_info


def test_rag_sagemaker_endpoint_raises_the_services_error(aws_env):
    llm = RagSagemakerEndpoint(endpoint_name=ENDPOINT)
    with pytest.raises(InvocationError) as refused:
        llm.invoke("   ")
    assert (refused.value.status, refused.value.error_type) == (400, "invalid_request")
