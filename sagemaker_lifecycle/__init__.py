"""Deploy the RAG service to Amazon SageMaker and talk to it.

The lifecycle (push, upload, deploy, status, test, logs, dashboard, alarms, clean) runs as
`python -m sagemaker_lifecycle <command>` or through `make <command>`. From Python, ask a deployed
endpoint or a local server a question:

    from sagemaker_lifecycle import invoke_endpoint, InvocationError

    result = invoke_endpoint("When did the Velmora Tramway open?", endpoint_name="rag-monolito")
    print(result["answer"])
    for source in result["sources"]:
        print(source["rank"], source["source"], source["score"])

    invoke_endpoint("...", url="http://127.0.0.1:8080")   # a local `make serve`
"""

from .client import invoke_endpoint
from .errors import InvocationError, LifecycleError

__all__ = ["invoke_endpoint", "InvocationError", "LifecycleError"]
