"""Which endpoints an ARCH deploys. monolito and microservicos: one. split: two, from the microservices
image: `$ENDPOINT_NAME-llm` (the LLM service alone, RAG_SERVE=llm) and `$ENDPOINT_NAME` (orchestrator and
vector service, calling the first through SageMaker Runtime: RAG_LLM_URL=sagemaker://$ENDPOINT_NAME-llm).

Every command walks the list in deploy order (the LLM endpoint first, since the front calls it); clean
walks it backwards. Variables of the LLM endpoint carry the `LLM_` prefix (LLM_INSTANCE_TYPE, ...).
"""

from __future__ import annotations

from dataclasses import dataclass

from .config import Config
from .errors import ConfigError

VARIANT = "AllTraffic"


@dataclass(frozen=True)
class Endpoint:
    """One endpoint of the topology: its name, its part, and the prefix of its own variables."""

    name: str
    part: str  # "endpoint" (a one-endpoint ARCH), "llm" or "front"
    prefix: str = ""  # "LLM_" for the split topology's LLM endpoint

    @property
    def resource_id(self) -> str:
        """The Application Auto Scaling resource of its variant."""
        return f"endpoint/{self.name}/variant/{VARIANT}"

    def variable(self, name: str) -> str:
        """`name` as this endpoint's variable (MIN_CAPACITY -> LLM_MIN_CAPACITY for the LLM endpoint)."""
        return self.prefix + name


def endpoints(config: Config) -> list[Endpoint]:
    """The endpoints of ARCH, in deploy order."""
    name = config.endpoint_name
    if config.arch != "split":
        return [Endpoint(name, "endpoint")]
    return [Endpoint(f"{name}-llm", "llm", "LLM_"), Endpoint(name, "front")]


def container_environment(endpoint: Endpoint, config: Config, region: str) -> dict[str, str]:
    """The container environment of `endpoint`: the operator's checked RAG_* and MODEL_SERVER_* variables,
    the names its metrics carry as dimensions (docs/operations.md), and what the split topology wires
    between its two endpoints."""
    environment = {**config.container_environment(), "RAG_ENDPOINT_NAME": endpoint.name, "RAG_VARIANT_NAME": VARIANT}
    if endpoint.part == "endpoint":
        return environment
    if config.get("SERVERLESS_MEMORY") is not None:
        raise ConfigError(
            "ARCH=split deploys instance endpoints (INSTANCE_TYPE, LLM_INSTANCE_TYPE): the front calls "
            "the LLM endpoint on every request, and serverless cold starts would stack; unset SERVERLESS_MEMORY"
        )
    if "RAG_LLM_URL" in environment:
        raise ConfigError("RAG_LLM_URL is set by deploy for ARCH=split (sagemaker://<ENDPOINT_NAME>-llm); unset it")
    if endpoint.part == "llm":
        return {**environment, "RAG_SERVE": "llm"}
    llm = endpoints(config)[0].name
    # boto3 in the front needs the region; the execution role gives it credentials.
    return {**environment, "RAG_LLM_URL": f"sagemaker://{llm}", "AWS_DEFAULT_REGION": region}
