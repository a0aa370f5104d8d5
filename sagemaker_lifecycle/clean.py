"""clean: delete the alarms, deregister autoscaling, delete the endpoint, then its configs and models (every
endpoint of ARCH), then the dashboard; optionally the S3 artifacts and ECR repository.

Idempotent: whatever is already gone is skipped, and a run that finds nothing says so and succeeds.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

from botocore.exceptions import ClientError, WaiterError

from .alarms import delete_alarms
from .autoscale import deregister
from .dashboard import delete_dashboard
from .deploy import delete_quietly, list_names
from .endpoint_status import describe_endpoint
from .errors import AccessDenied, translate
from .session import MISSING, Aws
from .topology import Endpoint, endpoints

log = logging.getLogger(__name__)


def run_clean(aws: Aws) -> int:
    """`clean`: remove everything deploy (and, with DELETE_S3/DELETE_ECR, upload and push) made, for every
    endpoint of ARCH (split: the front first, then the LLM endpoint it calls)."""
    config = aws.config
    deleted: list[str] = []
    for endpoint in reversed(endpoints(config)):
        deleted += clean_endpoint(aws, endpoint)
    deleted += unless_denied("the dashboard", lambda: delete_dashboard(aws))
    if config.flag("DELETE_S3"):
        deleted += delete_s3_prefix(aws, config.require("BUCKET_NAME"), config.s3_prefix)
    if config.flag("DELETE_ECR"):
        deleted += delete_repository(aws, config.image_name)

    names = " and ".join(endpoint.name for endpoint in endpoints(config))
    if deleted:
        log.info("clean: removed %d resource(s) of endpoint %s", len(deleted), names)
    else:
        log.info("clean: nothing was left to delete for endpoint %s in %s", names, aws.region)
    return 0


def clean_endpoint(aws: Aws, target: Endpoint) -> list[str]:
    """Delete its alarms, deregister its autoscaling, delete the endpoint (and wait), then its configs and models."""
    endpoint, sagemaker = target.name, aws.sagemaker
    # Alarms first: the no-invocations alarm would go off (and notify) for an endpoint being deleted.
    deleted = unless_denied(f"the alarms of {endpoint}", lambda: delete_alarms(aws, target))
    # Then scaling: a scalable target left behind would point at an endpoint that no longer exists.
    registered = deregister(aws, target)
    for label in registered:
        log.info("deregistered %s", label)
    deleted += registered
    configs = set(
        list_names(
            aws, "endpoint configs", sagemaker.list_endpoint_configs, "EndpointConfigs", "EndpointConfigName", endpoint
        )
    )
    models = set(list_names(aws, "models", sagemaker.list_models, "Models", "ModelName", endpoint))

    current = describe_endpoint(aws, endpoint)
    if current is not None:
        # The config in use may have been made by hand; it and its models go with the endpoint.
        configs.add(current["EndpointConfigName"])
        models.update(models_of(aws, current["EndpointConfigName"]))
        aws.call(f"delete endpoint {endpoint}", sagemaker.delete_endpoint, EndpointName=endpoint)
        log.info("deleting endpoint %s", endpoint)
        deleted.append(f"endpoint {endpoint}")
        wait_until_gone(aws, endpoint)

    for label in delete_quietly(aws, configs=sorted(configs), models=sorted(models)):
        log.info("deleted %s", label)
        deleted.append(label)
    return deleted


def unless_denied(what: str, remove: Callable[[], list[str]]) -> list[str]:
    """Run `remove`; a caller without CloudWatch permissions is warned instead of stopped, so that the endpoint,
    which is what costs money, is still deleted."""
    try:
        return remove()
    except AccessDenied as exc:
        log.warning("%s not deleted: %s", what, exc)
        return []


def models_of(aws: Aws, config_name: str) -> list[str]:
    """Model names used by an endpoint config ([] when the config is gone)."""
    description = (
        aws.call(
            f"describe endpoint config {config_name}",
            aws.sagemaker.describe_endpoint_config,
            absent=[MISSING],
            EndpointConfigName=config_name,
        )
        or {}
    )
    return [variant["ModelName"] for variant in description.get("ProductionVariants", [])]


def wait_until_gone(aws: Aws, endpoint: str) -> None:
    """Configs in use by a deleting endpoint cannot be deleted: wait until the endpoint is gone."""
    poll = min(max(aws.config.number("POLL_SECONDS", 15.0), 0.1), 5.0)
    # The waiter counts attempts, not seconds: as many as WAIT_TIMEOUT allows at this pace.
    attempts = 1 + math.ceil(aws.config.number("WAIT_TIMEOUT", 3600.0) / poll)
    try:
        aws.sagemaker.get_waiter("endpoint_deleted").wait(
            EndpointName=endpoint, WaiterConfig={"Delay": poll, "MaxAttempts": attempts}
        )
    except WaiterError as exc:
        response = exc.last_response or {}
        if "Error" in response:  # neither there nor gone: access denied, throttling, ...
            raise translate(ClientError(response, "DescribeEndpoint"), f"describe endpoint {endpoint}") from None
        if response.get("EndpointStatus") == "Failed":  # endpoint_deleted gives up on Failed
            log.warning(
                "endpoint %s is Failed while being deleted (%s); run `make clean` again later",
                endpoint,
                response.get("FailureReason") or "no FailureReason given",
            )
        else:
            log.warning("endpoint %s is still being deleted; run `make clean` again later", endpoint)


def delete_s3_prefix(aws: Aws, bucket: str, prefix: str) -> list[str]:
    """Delete every object under s3://bucket/prefix/ (none, or no bucket: nothing)."""
    deleted, token = [], None
    action = f"delete s3://{bucket}/{prefix}/"
    while True:
        page = (
            aws.call(
                action,
                aws.s3.list_objects_v2,
                absent=["NoSuchBucket"],
                Bucket=bucket,
                Prefix=f"{prefix}/",
                **({"ContinuationToken": token} if token else {}),
            )
            or {}
        )
        keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
        if keys:
            aws.call(action, aws.s3.delete_objects, Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
            deleted += [f"s3://{bucket}/{key['Key']}" for key in keys]
        token = page.get("NextContinuationToken")
        if not token:
            break
    for label in deleted:
        log.info("deleted %s", label)
    return deleted


def delete_repository(aws: Aws, name: str) -> list[str]:
    """Delete the ECR repository and its images (absent: nothing)."""
    gone = aws.call(
        f"delete ECR repository {name}",
        aws.ecr.delete_repository,
        absent=["RepositoryNotFoundException"],
        repositoryName=name,
        force=True,
    )
    if gone is None:
        return []
    log.info("deleted ECR repository %s", name)
    return [f"ECR repository {name}"]
