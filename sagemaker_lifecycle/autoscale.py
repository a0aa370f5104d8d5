"""autoscale: Application Auto Scaling for each instance endpoint of ARCH.

    make autoscale MIN_CAPACITY=1 MAX_CAPACITY=4 TARGET_INVOCATIONS=20 [SCALE_IN_COOLDOWN=300 SCALE_OUT_COOLDOWN=60]
    make autoscale ARCH=split ... LLM_MIN_CAPACITY=1 LLM_MAX_CAPACITY=8 LLM_TARGET_INVOCATIONS=20

registers the variant's `sagemaker:variant:DesiredInstanceCount` as a scalable target and puts a
target-tracking policy on `SageMakerVariantInvocationsPerInstance` (invocations per instance per minute).
In the split topology each endpoint has its own settings (LLM_* for the LLM endpoint), so the LLM scales on
its own; an endpoint whose settings are all unset is left as it is. Serverless endpoints are refused:
they scale by themselves. `status` shows the target and policy, and `clean` deregisters before deleting.
"""

from __future__ import annotations

import json
import logging
import math

from .config import ROOT, Config
from .endpoint_status import describe_endpoint
from .errors import ConfigError, EndpointNotFound
from .session import Aws
from .topology import Endpoint, endpoints

log = logging.getLogger(__name__)

NAMESPACE, DIMENSION = "sagemaker", "sagemaker:variant:DesiredInstanceCount"
METRIC = "SageMakerVariantInvocationsPerInstance"
SETTINGS = ("MIN_CAPACITY", "MAX_CAPACITY", "TARGET_INVOCATIONS")
BENCH_RESULTS = ROOT / "bench" / "results" / "latest" / "results.json"
# AWS's rule of thumb for this metric: half the measured peak, so that a scale-out starts well before saturation.
SAFETY_FACTOR = 0.5


def policy_name(endpoint: Endpoint) -> str:
    return f"{endpoint.name}-invocations"


def run_autoscale(aws: Aws) -> int:
    """`autoscale`: register and put the policy on every endpoint that has its settings."""
    config = aws.config
    chosen = [
        (endpoint, settings)
        for endpoint in endpoints(config)
        if (settings := scaling_settings(config, endpoint)) is not None
    ]
    if not chosen:
        raise ConfigError(
            "set MIN_CAPACITY, MAX_CAPACITY and TARGET_INVOCATIONS (LLM_* for the split topology's LLM "
            f"endpoint). {suggestion(config)}"
        )
    for endpoint, _settings in chosen:
        refuse_serverless(aws, endpoint.name)
    for endpoint, settings in chosen:
        aws.call(
            f"register {endpoint.resource_id} for scaling",
            aws.autoscaling.register_scalable_target,
            ServiceNamespace=NAMESPACE,
            ResourceId=endpoint.resource_id,
            ScalableDimension=DIMENSION,
            MinCapacity=settings["min"],
            MaxCapacity=settings["max"],
        )
        aws.call(
            f"put the scaling policy of {endpoint.name}",
            aws.autoscaling.put_scaling_policy,
            PolicyName=policy_name(endpoint),
            ServiceNamespace=NAMESPACE,
            ResourceId=endpoint.resource_id,
            ScalableDimension=DIMENSION,
            PolicyType="TargetTrackingScaling",
            TargetTrackingScalingPolicyConfiguration={
                "TargetValue": settings["target"],
                "PredefinedMetricSpecification": {"PredefinedMetricType": METRIC},
                "ScaleInCooldown": settings["in"],
                "ScaleOutCooldown": settings["out"],
            },
        )
        log.info("%s: %s", endpoint.name, describe_scaling(aws, endpoint))
    log.info("%s", suggestion(config))
    return 0


def scaling_settings(config: Config, endpoint: Endpoint) -> dict | None:
    """The endpoint's validated settings, or None when none of them is set; a partial set is an error."""
    names = [endpoint.variable(name) for name in SETTINGS]
    given = [name for name in names if config.get(name) is not None]
    if not given:
        return None
    if len(given) < len(names):
        missing = ", ".join(name for name in names if name not in given)
        raise ConfigError(f"{endpoint.name}: set {missing} too (autoscale needs {', '.join(names)})")
    low = config.integer(names[0], 1, 1, 1000)
    raw = config.get(names[2])
    try:
        target = float(raw)
    except ValueError:
        target = -1.0
    if not 0 < target <= 1_000_000:
        raise ConfigError(f"{names[2]}={raw!r} must be a positive number of invocations per instance per minute")
    return {
        "min": low,
        "max": config.integer(names[1], low, low, 1000),
        "target": target,
        "in": config.integer(endpoint.variable("SCALE_IN_COOLDOWN"), 300, 0, 3600),
        "out": config.integer(endpoint.variable("SCALE_OUT_COOLDOWN"), 60, 0, 3600),
    }


def refuse_serverless(aws: Aws, name: str) -> None:
    """Autoscaling applies to instance endpoints; a serverless one scales up to its MaxConcurrency by itself."""
    description = describe_endpoint(aws, name)
    if description is None:
        raise EndpointNotFound(name, aws.region)
    config = aws.call(
        f"describe endpoint config {description['EndpointConfigName']}",
        aws.sagemaker.describe_endpoint_config,
        EndpointConfigName=description["EndpointConfigName"],
    )
    if any("ServerlessConfig" in variant for variant in config["ProductionVariants"]):
        raise ConfigError(
            f"endpoint {name} is serverless: SageMaker scales it by itself, up to its MaxConcurrency "
            "(SERVERLESS_CONCURRENCY); autoscale is for instance endpoints"
        )


def describe_scaling(aws: Aws, endpoint: Endpoint) -> str:
    """One line: the scalable target's range and the policy's target, or that there is none."""
    targets = aws.call(
        f"describe the scaling of {endpoint.name}",
        aws.autoscaling.describe_scalable_targets,
        ServiceNamespace=NAMESPACE,
        ResourceIds=[endpoint.resource_id],
        ScalableDimension=DIMENSION,
    )
    if not targets["ScalableTargets"]:
        return "no autoscaling (make autoscale MIN_CAPACITY=... MAX_CAPACITY=... TARGET_INVOCATIONS=...)"
    target = targets["ScalableTargets"][0]
    line = f"autoscaling {target['MinCapacity']}..{target['MaxCapacity']} instances"
    policies = aws.call(
        f"describe the scaling policies of {endpoint.name}",
        aws.autoscaling.describe_scaling_policies,
        ServiceNamespace=NAMESPACE,
        ResourceId=endpoint.resource_id,
        ScalableDimension=DIMENSION,
    )
    for policy in policies["ScalingPolicies"]:
        tracking = policy.get("TargetTrackingScalingPolicyConfiguration", {})
        line += (
            f"; policy {policy['PolicyName']}: {tracking.get('TargetValue')} invocations per instance per minute"
            f" (cooldowns: in {tracking.get('ScaleInCooldown')} s, out {tracking.get('ScaleOutCooldown')} s)"
        )
    return line


def deregister(aws: Aws, endpoint: Endpoint) -> list[str]:
    """Delete the policies, then the scalable target; what is not there is skipped (looked up first: AWS
    says ObjectNotFoundException for a missing one, moto ValidationException)."""
    removed, where = (
        [],
        {"ServiceNamespace": NAMESPACE, "ResourceId": endpoint.resource_id, "ScalableDimension": DIMENSION},
    )
    policies = aws.call(
        f"describe the scaling policies of {endpoint.name}", aws.autoscaling.describe_scaling_policies, **where
    )["ScalingPolicies"]
    for policy in policies:
        aws.call(
            f"delete scaling policy {policy['PolicyName']}",
            aws.autoscaling.delete_scaling_policy,
            PolicyName=policy["PolicyName"],
            **where,
        )
        removed.append(f"scaling policy {policy['PolicyName']}")
    targets = aws.call(
        f"describe the scaling of {endpoint.name}",
        aws.autoscaling.describe_scalable_targets,
        ServiceNamespace=NAMESPACE,
        ResourceIds=[endpoint.resource_id],
        ScalableDimension=DIMENSION,
    )
    if targets["ScalableTargets"]:
        aws.call(f"deregister {endpoint.resource_id}", aws.autoscaling.deregister_scalable_target, **where)
        removed.append(f"scalable target {endpoint.resource_id}")
    return removed


def suggestion(config: Config) -> str:
    """TARGET_INVOCATIONS from `make bench`'s best measured throughput of the architecture that serves."""
    arch = "monolito" if config.arch == "monolito" else "microservicos"  # split runs the microservices' code
    try:
        results = json.loads(BENCH_RESULTS.read_text())
        levels = results["summary"]["latency"][arch]
        level, rps = max(((level, figures["throughput_rps"]) for level, figures in levels.items()), key=lambda x: x[1])
    except (OSError, ValueError, KeyError, TypeError):
        return f"No bench results in {BENCH_RESULTS.relative_to(ROOT)} to suggest TARGET_INVOCATIONS from: run `make bench`."
    machine = results.get("machine", {})
    target = max(1, math.floor(rps * 60 * SAFETY_FACTOR))
    return (
        f"Suggested TARGET_INVOCATIONS={target}: `make bench` measured {rps:.2f} answers/s for {arch} at "
        f"concurrency {level} on {machine.get('usable_cpus', '?')} CPUs ({machine.get('cpu_model', 'unknown CPU')}), "
        f"x 60 s x {SAFETY_FACTOR} headroom. Measure on the instance type you deploy: the figure scales with it."
    )
