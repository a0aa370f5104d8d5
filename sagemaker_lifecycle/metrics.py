"""The CloudWatch metrics the dashboard charts and the alarms watch: where each lives and how it is named.

Two sources, one endpoint each time:

    AWS/SageMaker              SageMaker's own, per variant: Invocations, ModelLatency (microseconds),
                               OverheadLatency, Invocation4XXErrors, Invocation5XXErrors
                               dimensions EndpointName, VariantName
    /aws/sagemaker/Endpoints   the instances': CPUUtilization, MemoryUtilization (percent)
                               dimensions EndpointName, VariantName
    RagService                 the service's own, from the embedded metric format lines it writes to stdout
    (RAG_METRICS_NAMESPACE)    (CloudWatch Logs turns them into metrics): Requests, Status4xx, Status429,
                               Status5xx, RequestLatency, PromptTokens, CompletionTokens, BatchSize
                               dimensions Endpoint, Variant, Architecture; StageLatency also by Stage

The service's names and dimensions are its contract with this module (docs/operations.md lists
them); a renamed metric would leave a panel or an alarm without data, which tests/aws/test_aws_dashboard.py
catches by putting metric data under the contract's names and reading it back through these definitions.
"""

from __future__ import annotations

from .config import Config
from .topology import VARIANT, Endpoint

SAGEMAKER = "AWS/SageMaker"
INSTANCES = "/aws/sagemaker/Endpoints"
DEFAULT_NAMESPACE = "RagService"

# The value of the Architecture dimension each endpoint's containers write: the split topology's front runs
# the microservices' orchestrator and vector service, its LLM endpoint the LLM service alone.
ARCHITECTURE = {"monolito": "monolith", "microservicos": "microservices", "front": "microservices", "llm": "llm"}

# The stages each kind of container measures (the internal hops exist only between services). A stage that
# a container does not report simply draws no line.
_GENERATION = ("queue", "prefill", "decode", "generation")
STAGES = {
    "monolith": ("admission", "embed", "search", "context", *_GENERATION),
    "microservices": ("admission", "embed", "search", "context", *_GENERATION, "hop_vector", "hop_llm"),
    "llm": ("admission", *_GENERATION),
}


def namespace(config: Config) -> str:
    """The service's namespace: RAG_METRICS_NAMESPACE (which deploy also passes to the containers), or RagService."""
    return config.get("RAG_METRICS_NAMESPACE", DEFAULT_NAMESPACE)


def architecture(config: Config, endpoint: Endpoint) -> str:
    """The Architecture dimension of `endpoint`'s metrics."""
    return ARCHITECTURE[endpoint.part if endpoint.part != "endpoint" else config.arch]


def sagemaker_dimensions(endpoint: Endpoint) -> dict[str, str]:
    """The dimensions of AWS/SageMaker and /aws/sagemaker/Endpoints metrics."""
    return {"EndpointName": endpoint.name, "VariantName": VARIANT}


def service_dimensions(config: Config, endpoint: Endpoint, stage: str | None = None) -> dict[str, str]:
    """The dimensions of the service's metrics, in the order the service writes them (plus Stage for StageLatency)."""
    dimensions = {"Endpoint": endpoint.name, "Variant": VARIANT, "Architecture": architecture(config, endpoint)}
    return dimensions | ({"Stage": stage} if stage else {})


def as_list(dimensions: dict[str, str]) -> list[dict[str, str]]:
    """Dimensions as the CloudWatch API takes them."""
    return [{"Name": name, "Value": value} for name, value in dimensions.items()]
