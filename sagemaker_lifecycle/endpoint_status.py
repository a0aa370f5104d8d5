"""Endpoint status: describe, print, and wait (with progress) until InService or Failed."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from .errors import EndpointFailed, EndpointNotFound, LifecycleError
from .session import MISSING, Aws

log = logging.getLogger(__name__)

SETTLED = {"InService", "Failed", "OutOfService"}


def describe_endpoint(aws: Aws, endpoint_name: str) -> dict | None:
    """DescribeEndpoint, or None when the endpoint does not exist."""
    return aws.call(
        f"describe endpoint {endpoint_name}",
        aws.sagemaker.describe_endpoint,
        absent=[MISSING],
        EndpointName=endpoint_name,
    )


def status_line(description: dict) -> str:
    """`<name>: <status> (config <config>)` plus the failure reason when there is one."""
    line = f"{description['EndpointName']}: {description['EndpointStatus']} (config {description.get('EndpointConfigName')})"
    if description.get("FailureReason"):
        line += f" - {description['FailureReason']}"
    return line


def wait_until_settled(
    describe: Callable[[], dict | None],
    endpoint_name: str,
    *,
    timeout_s: float,
    poll_s: float,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> dict:
    """Poll `describe` until the status settles; log elapsed time and status; raise on Failed or timeout."""
    # Not boto3's endpoint_in_service waiter: it logs nothing between polls and never settles on OutOfService.
    start = clock()
    last = None
    while True:
        description = describe()
        elapsed = clock() - start
        if description is None:
            raise EndpointNotFound(endpoint_name)
        status = description["EndpointStatus"]
        if status != last or poll_s >= 10:
            log.info("[%5.0fs] %s", elapsed, status_line(description))
            last = status
        if status == "Failed":
            raise EndpointFailed(endpoint_name, description.get("FailureReason"))
        if status in SETTLED:
            return description
        if elapsed >= timeout_s:
            raise LifecycleError(
                f"endpoint {endpoint_name} is still {status} after {elapsed:.0f}s: keep waiting with "
                "`make status WAIT=1` or raise WAIT_TIMEOUT"
            )
        sleep(poll_s)


def wait_for(aws: Aws, endpoint_name: str) -> dict:
    """Wait with the WAIT_TIMEOUT and POLL_SECONDS of the configuration."""
    return wait_until_settled(
        lambda: describe_endpoint(aws, endpoint_name),
        endpoint_name,
        timeout_s=aws.config.number("WAIT_TIMEOUT", 3600.0),
        poll_s=aws.config.number("POLL_SECONDS", 15.0),
    )
