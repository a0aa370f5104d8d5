"""ARCH=split against moto, through `make`: the role check, both endpoints (the LLM one first, InService
before the front) with their own variables and the environment that wires them, status, test, logs,
autoscale with LLM_* twins, and a clean that deregisters first and can be repeated."""

from __future__ import annotations

import json
import time

import pytest

from tests.aws.aws_support import ANSWER, REGION, make

SPLIT = [
    "ARCH=split",
    "INSTANCE_TYPE=ml.m5.large",
    "LLM_INSTANCE_TYPE=ml.g4dn.xlarge",
    "LLM_INSTANCE_COUNT=2",
    "RAG_TOP_K=4",
]
LLM_ARN = f"arn:aws:sagemaker:{REGION}:123456789012:endpoint/rag-split-llm"


@pytest.fixture
def invoke_policy(moto, account):
    """The execution role may invoke the LLM endpoint (an inline policy, removed afterwards)."""
    iam = moto.client("iam")
    role = account.role_arn.rsplit("/", 1)[1]
    document = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": "sagemaker:InvokeEndpoint",
                "Resource": "arn:aws:sagemaker:*:*:endpoint/rag-split-*",
            }
        ],
    }
    iam.put_role_policy(RoleName=role, PolicyName="invoke-llm", PolicyDocument=json.dumps(document))
    yield
    iam.delete_role_policy(RoleName=role, PolicyName="invoke-llm")


def test_split_deploy_is_refused_when_the_role_cannot_invoke_the_llm_endpoint(moto, aws_env, account, index_dir):
    assert make("upload", aws_env, *account.variables(f"INDEX={index_dir}", "ARCH=split")).returncode == 0
    deploy = make("deploy", aws_env, *account.variables(*SPLIT))
    assert deploy.returncode == 2, deploy.stdout + deploy.stderr
    assert f"no policy allows sagemaker:InvokeEndpoint on {LLM_ARN}" in deploy.stderr
    assert json.dumps({"Effect": "Allow", "Action": "sagemaker:InvokeEndpoint", "Resource": LLM_ARN}) in deploy.stderr
    assert moto.client("sagemaker").list_models()["Models"] == []
    skipped = make("deploy", aws_env, *account.variables(*SPLIT, "SKIP_ROLE_CHECK=1"))
    assert skipped.returncode == 0, skipped.stderr


def test_split_lifecycle(moto, aws_env, account, index_dir, invoke_policy):
    sagemaker, scaling = moto.client("sagemaker"), moto.client("application-autoscaling")
    common = account.variables(*SPLIT)
    upload = make("upload", aws_env, *common, f"INDEX={index_dir}")
    assert upload.stdout.strip().splitlines()[-1] == f"s3://{account.bucket}/rag-split/model.tar.gz"

    deploy = make("deploy", aws_env, *common)
    assert deploy.returncode == 0, deploy.stderr
    out = deploy.stdout
    assert (
        out.index("creating endpoint rag-split-llm")
        < out.index("rag-split-llm: InService")
        < out.index("creating endpoint rag-split;")
    ), out
    llm, front = (sagemaker.describe_endpoint(EndpointName=name) for name in ("rag-split-llm", "rag-split"))
    assert llm["CreationTime"] <= front["CreationTime"]
    variants = {
        name: sagemaker.describe_endpoint_config(EndpointConfigName=e["EndpointConfigName"])["ProductionVariants"][0]
        for name, e in (("llm", llm), ("front", front))
    }
    assert (variants["llm"]["InstanceType"], variants["llm"]["InitialInstanceCount"]) == ("ml.g4dn.xlarge", 2)
    assert (variants["front"]["InstanceType"], variants["front"]["InitialInstanceCount"]) == ("ml.m5.large", 1)
    containers = {
        name: sagemaker.describe_model(ModelName=variant["ModelName"])["PrimaryContainer"]
        for name, variant in variants.items()
    }
    variant_name = {"RAG_VARIANT_NAME": "AllTraffic"}
    assert containers["llm"]["Environment"] == {
        "RAG_SERVE": "llm",
        "RAG_TOP_K": "4",
        "RAG_ENDPOINT_NAME": "rag-split-llm",
        **variant_name,
    }
    assert containers["front"]["Environment"] == {
        "RAG_LLM_URL": "sagemaker://rag-split-llm",
        "AWS_DEFAULT_REGION": REGION,
        "RAG_TOP_K": "4",
        "RAG_ENDPOINT_NAME": "rag-split",
        **variant_name,
    }
    assert all(c["Image"].endswith("/rag-microservicos:latest") for c in containers.values())

    status = make("status", aws_env, *common)
    assert status.returncode == 0, status.stderr
    assert status.stdout.index("rag-split-llm: InService") < status.stdout.index("rag-split: InService")
    assert status.stdout.count("no autoscaling") == 2

    moto.queue_invocation_results(json.dumps(ANSWER))
    answered = make("test", aws_env, *common)
    assert answered.returncode == 0 and ANSWER["answer"] in answered.stdout, answered.stderr

    logs_client, now = moto.client("logs"), int(time.time() * 1000)
    for name in ("rag-split-llm", "rag-split"):
        group = f"/aws/sagemaker/Endpoints/{name}"
        logs_client.create_log_group(logGroupName=group)
        logs_client.create_log_stream(logGroupName=group, logStreamName="AllTraffic/i-1")
        logs_client.put_log_events(
            logGroupName=group,
            logStreamName="AllTraffic/i-1",
            logEvents=[{"timestamp": now, "message": f"hello from {name}"}],
        )
    logs = make("logs", aws_env, *common)
    assert logs.returncode == 0, logs.stderr
    assert "rag-split-llm " in logs.stdout and "hello from rag-split-llm" in logs.stdout
    assert "hello from rag-split\n" in logs.stdout + "\n"

    autoscale = make(
        "autoscale",
        aws_env,
        *common,
        "MIN_CAPACITY=1",
        "MAX_CAPACITY=3",
        "TARGET_INVOCATIONS=30",
        "LLM_MIN_CAPACITY=2",
        "LLM_MAX_CAPACITY=6",
        "LLM_TARGET_INVOCATIONS=12",
        "LLM_SCALE_OUT_COOLDOWN=30",
    )
    assert autoscale.returncode == 0, autoscale.stderr
    targets = {
        t["ResourceId"]: t for t in scaling.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"]
    }
    assert {key: (t["MinCapacity"], t["MaxCapacity"]) for key, t in targets.items()} == {
        "endpoint/rag-split-llm/variant/AllTraffic": (2, 6),
        "endpoint/rag-split/variant/AllTraffic": (1, 3),
    }
    policies = {
        p["ResourceId"]: p["TargetTrackingScalingPolicyConfiguration"]
        for p in scaling.describe_scaling_policies(ServiceNamespace="sagemaker")["ScalingPolicies"]
    }
    llm_policy = policies["endpoint/rag-split-llm/variant/AllTraffic"]
    assert (llm_policy["TargetValue"], llm_policy["ScaleOutCooldown"], llm_policy["ScaleInCooldown"]) == (12.0, 30, 300)
    assert policies["endpoint/rag-split/variant/AllTraffic"]["TargetValue"] == 30.0
    status = make("status", aws_env, *common)
    assert "autoscaling 2..6 instances; policy rag-split-llm-invocations: 12.0 invocations" in status.stdout
    assert "autoscaling 1..3 instances; policy rag-split-invocations: 30.0 invocations" in status.stdout

    clean = make("clean", aws_env, *common)
    assert clean.returncode == 0, clean.stderr
    out = clean.stdout
    assert (
        out.index("deregistered scaling policy rag-split-invocations")
        < out.index("deleting endpoint rag-split\n")
        < out.index("deregistered scaling policy rag-split-llm-invocations")
        < out.index("deleting endpoint rag-split-llm")
    )
    assert scaling.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"] == []
    assert sagemaker.list_endpoints()["Endpoints"] == [] and sagemaker.list_models()["Models"] == []
    again = make("clean", aws_env, *common)
    assert (
        again.returncode == 0 and "nothing was left to delete for endpoint rag-split-llm and rag-split" in again.stdout
    )


def test_split_refuses_what_it_sets_itself(aws_env, account, index_dir):
    assert make("upload", aws_env, *account.variables(f"INDEX={index_dir}", "ARCH=split")).returncode == 0
    for extra, message in (
        ("RAG_LLM_URL=http://127.0.0.1:5002", "RAG_LLM_URL is set by deploy for ARCH=split"),
        ("RAG_SERVE=llm", "RAG_SERVE is not passed to an endpoint"),
        ("SERVERLESS_MEMORY=2048", "ARCH=split deploys instance endpoints"),
        ("ENDPOINT_NAME=" + "x" * 42, "must be 1 to 41 letters"),
    ):
        deploy = make("deploy", aws_env, *account.variables("ARCH=split", extra))
        assert deploy.returncode == 2 and message in deploy.stderr, (extra, deploy.stderr)
