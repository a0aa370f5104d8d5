"""make autoscale against moto (Application Auto Scaling): register, policy, status, suggestion, refusals,
and clean deregistering before it deletes."""

from __future__ import annotations

import json

import pytest

from sagemaker_lifecycle.autoscale import suggestion
from sagemaker_lifecycle.config import Config
from sagemaker_lifecycle.role_check import endpoint_arn, matching_effects
from tests.aws.aws_support import make

RESOURCE = "endpoint/rag-monolito/variant/AllTraffic"


def deployed(aws_env, account, index_dir, *capacity):
    assert make("upload", aws_env, *account.variables(f"INDEX={index_dir}")).returncode == 0
    deploy = make("deploy", aws_env, *account.variables(*capacity))
    assert deploy.returncode == 0, deploy.stderr


def test_autoscale_registers_a_target_tracking_policy(moto, aws_env, account, index_dir):
    scaling = moto.client("application-autoscaling")
    deployed(aws_env, account, index_dir, "INSTANCE_TYPE=ml.m5.large")

    incomplete = make("autoscale", aws_env, *account.variables("MIN_CAPACITY=1"))
    assert incomplete.returncode == 2 and "set MAX_CAPACITY, TARGET_INVOCATIONS too" in incomplete.stderr
    nothing = make("autoscale", aws_env, *account.variables())
    assert nothing.returncode == 2 and "Suggested TARGET_INVOCATIONS=" in nothing.stderr, nothing.stderr

    scaled = make(
        "autoscale",
        aws_env,
        *account.variables("MIN_CAPACITY=1", "MAX_CAPACITY=4", "TARGET_INVOCATIONS=20", "SCALE_IN_COOLDOWN=600"),
    )
    assert scaled.returncode == 0, scaled.stderr
    assert "Suggested TARGET_INVOCATIONS=" in scaled.stdout and "answers/s for monolito" in scaled.stdout
    [target] = scaling.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"]
    assert (target["ResourceId"], target["ScalableDimension"], target["MinCapacity"], target["MaxCapacity"]) == (
        RESOURCE,
        "sagemaker:variant:DesiredInstanceCount",
        1,
        4,
    )
    [policy] = scaling.describe_scaling_policies(ServiceNamespace="sagemaker")["ScalingPolicies"]
    assert policy["PolicyType"] == "TargetTrackingScaling"
    assert policy["TargetTrackingScalingPolicyConfiguration"] == {
        "TargetValue": 20.0,
        "PredefinedMetricSpecification": {"PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"},
        "ScaleInCooldown": 600,
        "ScaleOutCooldown": 60,
    }
    status = make("status", aws_env, *account.variables())
    assert (
        "autoscaling 1..4 instances; policy rag-monolito-invocations: 20.0 invocations per instance per minute "
        "(cooldowns: in 600 s, out 60 s)" in status.stdout
    )

    clean = make("clean", aws_env, *account.variables())
    assert clean.returncode == 0, clean.stderr
    assert clean.stdout.index(f"deregistered scalable target {RESOURCE}") < clean.stdout.index("deleting endpoint")
    assert scaling.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"] == []


def test_autoscale_refuses_serverless_and_missing_endpoints(moto, aws_env, account, index_dir):
    settings = ("MIN_CAPACITY=1", "MAX_CAPACITY=2", "TARGET_INVOCATIONS=10")
    missing = make("autoscale", aws_env, *account.variables(*settings))
    assert "Error 1" in missing.stderr and "endpoint rag-monolito does not exist" in missing.stderr
    deployed(aws_env, account, index_dir, "SERVERLESS_MEMORY=2048")
    refused = make("autoscale", aws_env, *account.variables(*settings))
    assert refused.returncode == 2 and "rag-monolito is serverless: SageMaker scales it by itself" in refused.stderr
    assert (
        moto.client("application-autoscaling").describe_scalable_targets(ServiceNamespace="sagemaker")[
            "ScalableTargets"
        ]
        == []
    )


@pytest.mark.parametrize(
    "values, message",
    [
        (
            ("MIN_CAPACITY=0", "MAX_CAPACITY=2", "TARGET_INVOCATIONS=10"),
            "MIN_CAPACITY=0 must be an integer from 1 to 1000",
        ),
        (
            ("MIN_CAPACITY=3", "MAX_CAPACITY=2", "TARGET_INVOCATIONS=10"),
            "MAX_CAPACITY=2 must be an integer from 3 to 1000",
        ),
        (
            ("MIN_CAPACITY=1", "MAX_CAPACITY=2", "TARGET_INVOCATIONS=lots"),
            "TARGET_INVOCATIONS='lots' must be a positive",
        ),
    ],
)
def test_autoscale_values_are_checked(aws_env, account, values, message):
    result = make("autoscale", aws_env, *account.variables(*values))
    assert result.returncode == 2 and message in result.stderr, result.stderr


def test_suggestion_comes_from_the_bench_throughput(tmp_path, monkeypatch):
    results = tmp_path / "results.json"
    results.write_text(
        json.dumps(
            {
                "machine": {"usable_cpus": 2, "cpu_model": "Test CPU"},
                "summary": {"latency": {"microservicos": {"1": {"throughput_rps": 0.4}, "4": {"throughput_rps": 0.6}}}},
            }
        )
    )
    monkeypatch.setattr("sagemaker_lifecycle.autoscale.BENCH_RESULTS", results)
    text = suggestion(Config({"ARCH": "split"}))
    assert text.startswith(
        "Suggested TARGET_INVOCATIONS=18: `make bench` measured 0.60 answers/s for microservicos "
        "at concurrency 4 on 2 CPUs (Test CPU)"
    )


def test_policy_statements_are_evaluated_for_the_one_action():
    resource = endpoint_arn("arn:aws:iam::123456789012:role/x", "eu-west-1", "Rag-Split-LLM")
    assert resource == "arn:aws:sagemaker:eu-west-1:123456789012:endpoint/rag-split-llm"
    allow = {"Statement": [{"Effect": "Allow", "Action": ["s3:GetObject", "SageMaker:Invoke*"], "Resource": "*"}]}
    deny = {
        "Statement": {"Effect": "Deny", "Action": "sagemaker:*", "Resource": "arn:aws:sagemaker:*:*:endpoint/rag-*"}
    }
    other = {
        "Statement": [
            {
                "Effect": "Allow",
                "Action": "sagemaker:InvokeEndpoint",
                "Resource": "arn:aws:sagemaker:*:*:endpoint/prod-*",
            },
            {"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"},
        ]
    }
    assert matching_effects(allow, "sagemaker:InvokeEndpoint", resource) == ["Allow"]
    assert matching_effects(deny, "sagemaker:InvokeEndpoint", resource) == ["Deny"]
    assert matching_effects(other, "sagemaker:InvokeEndpoint", resource) == []
