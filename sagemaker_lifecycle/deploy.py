"""deploy: model + new versioned endpoint config, then create_endpoint or update_endpoint in place, for
each endpoint of ARCH (sagemaker_lifecycle/topology.py; split: the LLM endpoint first).

Each deploy creates a model and an endpoint config both named `<endpoint>-<version>`, where the
version is the UTC time to the millisecond. An existing endpoint is switched to the new config with
UpdateEndpoint, so it keeps serving during the update; once it is InService on the new config, the
configs and models of earlier versions are deleted.
"""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime

from .config import Config
from .endpoint_status import describe_endpoint, wait_for
from .errors import ConfigError, EndpointFailed, LifecycleError, NotFound, NotImplementedByApi
from .role_check import check_invoke_permission
from .session import MISSING, Aws
from .topology import VARIANT, container_environment, endpoints

log = logging.getLogger(__name__)

TAG_KEY = "rag:endpoint"
BUSY = {"Creating", "Updating", "SystemUpdating", "RollingBack", "Deleting", "UpdateRollbackFailed"}


def new_version(now: datetime | None = None) -> str:
    """A sortable 17-digit version: UTC time to the millisecond."""
    now = now or datetime.now(UTC)
    return now.strftime("%Y%m%d%H%M%S") + f"{now.microsecond // 1000:03d}"


def versioned_names(endpoint_name: str, names: list[str]) -> list[str]:
    """The names among `names` that deploy made for this endpoint (`<endpoint>-<17 digits>`)."""
    pattern = re.compile(re.escape(endpoint_name) + r"-\d{17}")
    return sorted(name for name in names if pattern.fullmatch(name))


def production_variant(config: Config, model_name: str, prefix: str = "") -> dict:
    """The one production variant: serverless when SERVERLESS_MEMORY is set, else real-time instances.
    `prefix` names the endpoint's own variables (LLM_INSTANCE_TYPE for the split topology's LLM endpoint)."""
    serverless = config.get("SERVERLESS_MEMORY") is not None
    if serverless and config.get("INSTANCE_TYPE"):
        raise ConfigError(
            "set either INSTANCE_TYPE/INSTANCE_COUNT or SERVERLESS_MEMORY/SERVERLESS_CONCURRENCY, not both"
        )
    variant = {"VariantName": VARIANT, "ModelName": model_name}
    if serverless:
        variant["ServerlessConfig"] = {
            "MemorySizeInMB": config.integer("SERVERLESS_MEMORY", 3072, 1024, 6144, step=1024),
            "MaxConcurrency": config.integer("SERVERLESS_CONCURRENCY", 5, 1, 200),
        }
    else:
        instance_type = config.get("INSTANCE_TYPE", "ml.m5.large")
        variant.update(
            InstanceType=config.get(f"{prefix}INSTANCE_TYPE", instance_type) if prefix else instance_type,
            InitialInstanceCount=config.integer(f"{prefix}INSTANCE_COUNT", 1, 1, 100),
            # Set explicitly: the default window is too short for loading the models on a cold instance.
            ContainerStartupHealthCheckTimeoutInSeconds=config.integer("STARTUP_TIMEOUT", 600, 60, 3600),
        )
    return variant


def resolve_image(aws: Aws, prefix: str = "") -> str:
    """IMAGE_URI, else the ECR repository IMAGE_NAME with tag IMAGE_TAG, which must have been pushed
    (with `prefix`, its LLM_IMAGE_URI / LLM_IMAGE_TAG twins first)."""
    config = aws.config
    uri = config.get(f"{prefix}IMAGE_URI") or config.get("IMAGE_URI")
    if uri:
        return uri
    name, tag = config.image_name, config.get(f"{prefix}IMAGE_TAG") or config.image_tag
    action, absent = f"look up image {name}:{tag} in ECR", ["RepositoryNotFoundException", "ImageNotFoundException"]
    repositories = aws.call(action, aws.ecr.describe_repositories, absent=absent, repositoryNames=[name])
    images = repositories and aws.call(
        action, aws.ecr.describe_images, absent=absent, repositoryName=name, imageIds=[{"imageTag": tag}]
    )
    if not images:
        raise NotFound(
            f"image {name}:{tag} is not in ECR ({aws.region}): run `make build push` first, or set IMAGE_URI"
        )
    return f"{repositories['repositories'][0]['repositoryUri']}:{tag}"


def check_model_data(aws: Aws, url: str) -> None:
    """Fail early, with the fix, when model.tar.gz has not been uploaded."""
    bucket, _, key = url[len("s3://") :].partition("/")
    if (
        aws.call(f"read {url}", aws.s3.head_object, absent=["404", "NoSuchKey", "NoSuchBucket"], Bucket=bucket, Key=key)
        is None
    ):
        raise NotFound(f"{url} does not exist: run `make upload` first, or set MODEL_DATA_URL")


def run_deploy(aws: Aws) -> int:
    """`deploy`: every endpoint of ARCH (split: the LLM endpoint first, InService before the front)."""
    config = aws.config
    role = config.require("ROLE_ARN")
    model_data = config.model_data_url()
    version = new_version()
    # Everything is checked before anything is created.
    plans = []
    for endpoint in endpoints(config):
        name = f"{endpoint.name}-{version}"
        plans.append(
            (
                endpoint,
                production_variant(config, name, endpoint.prefix),
                container_environment(endpoint, config, aws.region),
            )
        )
    images = {endpoint.name: resolve_image(aws, endpoint.prefix) for endpoint, _, _ in plans}
    check_model_data(aws, model_data)
    if config.arch == "split":
        check_invoke_permission(aws, role, plans[0][0].name)
    for endpoint, variant, environment in plans:
        container = {"Image": images[endpoint.name], "ModelDataUrl": model_data, "Environment": environment}
        # The front must find its LLM endpoint InService: always wait for that one.
        deploy_endpoint(aws, endpoint.name, variant, container, wait=endpoint.part == "llm" or config.flag("WAIT"))
    return 0


def deploy_endpoint(aws: Aws, endpoint: str, variant: dict, container: dict, wait: bool) -> None:
    """Create the model and config `variant["ModelName"]`, then create the endpoint or update it in place."""
    current = describe_endpoint(aws, endpoint)
    if current is not None:
        refuse_busy(current)
        refuse_kind_change(aws, current, variant)
    name, role = variant["ModelName"], aws.config.require("ROLE_ARN")
    tags = [{"Key": TAG_KEY, "Value": endpoint}]
    log.info(
        "%s: container environment: %s",
        endpoint,
        ", ".join(f"{k}={v}" for k, v in container["Environment"].items())
        or "none (every RAG_*, MODEL_SERVER_WORKERS and MODEL_SERVER_TIMEOUT variable set here, on the command line "
        "or in the config file is passed, and OTEL_* too)",
    )
    aws.call(
        f"create model {name}",
        aws.sagemaker.create_model,
        ModelName=name,
        ExecutionRoleArn=role,
        PrimaryContainer=container,
        Tags=tags,
    )
    log.info("created model %s (image %s, model data %s)", name, container["Image"], container["ModelDataUrl"])
    try:
        aws.call(
            f"create endpoint config {name}",
            aws.sagemaker.create_endpoint_config,
            EndpointConfigName=name,
            ProductionVariants=[variant],
            Tags=tags,
        )
    except LifecycleError:
        delete_quietly(aws, models=[name])
        raise
    log.info("created endpoint config %s: %s", name, describe_variant(variant))

    if current is None:
        aws.call(
            f"create endpoint {endpoint}",
            aws.sagemaker.create_endpoint,
            EndpointName=endpoint,
            EndpointConfigName=name,
            Tags=tags,
        )
        log.info("creating endpoint %s; follow it with `make status WAIT=1`", endpoint)
        if wait:
            wait_for(aws, endpoint)
        return
    update_in_place(aws, endpoint, current["EndpointConfigName"], name)


def refuse_busy(current: dict) -> None:
    """An endpoint that is changing or Failed cannot be updated: say what to do instead."""
    status, name = current["EndpointStatus"], current["EndpointName"]
    if status == "Failed":
        raise EndpointFailed(name, current.get("FailureReason"))
    if status in BUSY:
        raise LifecycleError(f"endpoint {name} is {status}: wait with `make status WAIT=1`, then deploy again")


def refuse_kind_change(aws: Aws, current: dict, variant: dict) -> None:
    """SageMaker cannot update an instance endpoint to serverless or back: say so before creating anything."""
    old = (
        aws.call(
            f"describe endpoint config {current['EndpointConfigName']}",
            aws.sagemaker.describe_endpoint_config,
            absent=[MISSING],
            EndpointConfigName=current["EndpointConfigName"],
        )
        or {}
    )
    was_serverless = any("ServerlessConfig" in v for v in old.get("ProductionVariants", []))
    if old and was_serverless != ("ServerlessConfig" in variant):
        kinds = ("serverless", "instance") if was_serverless else ("instance", "serverless")
        raise ConfigError(
            f"endpoint {current['EndpointName']} is {kinds[0]}-based and SageMaker cannot update it in place to "
            f"{kinds[1]}: `make clean` first (downtime), or deploy under another ENDPOINT_NAME"
        )


def update_in_place(aws: Aws, endpoint: str, old_config: str, new_config: str) -> None:
    """UpdateEndpoint to the new config, wait for it, then delete the versions no longer in use."""
    request = {"EndpointName": endpoint, "EndpointConfigName": new_config}
    log.info("endpoint %s exists (config %s); UpdateEndpoint request: %s", endpoint, old_config, json.dumps(request))
    try:
        aws.call(f"update endpoint {endpoint}", aws.sagemaker.update_endpoint, **request)
    except NotImplementedByApi as exc:
        raise NotImplementedByApi(
            f"{exc}. UpdateEndpoint was NOT applied: {endpoint} still serves config {old_config}; the new "
            f"config and model {new_config} are kept (`make clean` removes them)"
        ) from None
    log.info(
        "updating endpoint %s in place (it keeps serving %s until the new config is healthy)", endpoint, old_config
    )
    description = wait_for(aws, endpoint)
    if description.get("EndpointConfigName") != new_config:
        raise EndpointFailed(
            endpoint,
            f"the update was rolled back to {description.get('EndpointConfigName')}: "
            f"{description.get('FailureReason') or 'see `make logs`'}",
        )
    prune_unused(aws, endpoint, keep=new_config)


def prune_unused(aws: Aws, endpoint: str, keep: str) -> list[str]:
    """Delete this endpoint's versioned configs and models other than `keep`; return what was deleted."""
    configs = list_names(
        aws, "endpoint configs", aws.sagemaker.list_endpoint_configs, "EndpointConfigs", "EndpointConfigName", endpoint
    )
    models = list_names(aws, "models", aws.sagemaker.list_models, "Models", "ModelName", endpoint)
    stale_configs = [name for name in configs if name != keep]
    stale_models = [name for name in models if name != keep]
    deleted = delete_quietly(aws, configs=stale_configs, models=stale_models)
    for name in deleted:
        log.info("deleted unused %s", name)
    return deleted


def list_names(aws: Aws, what: str, operation, key: str, field: str, endpoint: str) -> list[str]:
    """All versioned names of `what` that belong to `endpoint` (paginated)."""
    names, token = [], None
    while True:
        kwargs = {"NameContains": endpoint, "MaxResults": 100} | ({"NextToken": token} if token else {})
        page = aws.call(f"list {what}", operation, **kwargs)
        names += [item[field] for item in page.get(key, [])]
        token = page.get("NextToken")
        if not token:
            return versioned_names(endpoint, names)


def delete_quietly(aws: Aws, configs: list[str] = (), models: list[str] = ()) -> list[str]:
    """Delete configs then models, skipping the ones already gone; return labels of what was deleted."""
    deleted = []
    jobs = [("endpoint config", aws.sagemaker.delete_endpoint_config, "EndpointConfigName", n) for n in configs]
    jobs += [("model", aws.sagemaker.delete_model, "ModelName", n) for n in models]
    for label, operation, field, name in jobs:
        if aws.call(f"delete {label} {name}", operation, absent=[MISSING], **{field: name}) is not None:
            deleted.append(f"{label} {name}")
    return deleted


def describe_variant(variant: dict) -> str:
    """One line: serverless memory/concurrency or instance type/count/startup timeout."""
    if "ServerlessConfig" in variant:
        cfg = variant["ServerlessConfig"]
        return f"serverless, {cfg['MemorySizeInMB']} MB, max concurrency {cfg['MaxConcurrency']}"
    return (
        f"{variant['InitialInstanceCount']} x {variant['InstanceType']}, startup health check timeout "
        f"{variant['ContainerStartupHealthCheckTimeoutInSeconds']} s"
    )
