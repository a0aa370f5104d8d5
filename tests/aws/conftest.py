"""AWS layer: a real moto_server on a free loopback port, and the lifecycle CLI run against it.

One moto server serves the whole session; each test deletes what it made. Subprocesses get
dummy credentials, AWS_ENDPOINT_URL pointing at moto, and none of the caller's lifecycle variables,
profiles or config files, so a developer's .deploy.env or AWS account can never leak in.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from sagemaker_lifecycle.config import VARIABLES
from tests.aws.aws_support import CREDENTIALS, Account, Moto
from tests.support import VENV_BIN, ServerProcess, child_env, free_port, wait_for_status


@pytest.fixture(scope="session")
def moto(tmp_path_factory) -> Moto:
    """One real moto_server for the session, stopped by PID at the end."""
    port = free_port()
    log_path = tmp_path_factory.mktemp("moto") / "moto.log"
    server = ServerProcess(
        [str(VENV_BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        env=child_env(MOTO_IAM_LOAD_MANAGED_POLICIES="true"),
        log_path=log_path,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for_status(f"{url}/moto-api/data.json", 200, deadline_s=60, proc=server.proc)
        yield Moto(url=url, server=server)
    finally:
        server.stop()


@pytest.fixture(autouse=True)
def fresh_moto(moto: Moto):
    """Every test ends by deleting what it made (cheaper than moto's reset, which reloads IAM policies)."""
    yield moto
    moto.enforce_iam(False)
    sagemaker, s3, logs = moto.client("sagemaker"), moto.client("s3"), moto.client("logs")
    for endpoint in sagemaker.list_endpoints()["Endpoints"]:
        sagemaker.delete_endpoint(EndpointName=endpoint["EndpointName"])
    for config in sagemaker.list_endpoint_configs()["EndpointConfigs"]:
        sagemaker.delete_endpoint_config(EndpointConfigName=config["EndpointConfigName"])
    for model in sagemaker.list_models()["Models"]:
        sagemaker.delete_model(ModelName=model["ModelName"])
    for bucket in s3.list_buckets()["Buckets"]:
        for item in s3.list_objects_v2(Bucket=bucket["Name"]).get("Contents", []):
            s3.delete_object(Bucket=bucket["Name"], Key=item["Key"])
    for group in logs.describe_log_groups()["logGroups"]:
        logs.delete_log_group(logGroupName=group["logGroupName"])
    cloudwatch = moto.client("cloudwatch")
    alarms = [alarm["AlarmName"] for alarm in cloudwatch.describe_alarms()["MetricAlarms"]]
    if alarms:
        cloudwatch.delete_alarms(AlarmNames=alarms)
    dashboards = [entry["DashboardName"] for entry in cloudwatch.list_dashboards()["DashboardEntries"]]
    if dashboards:
        cloudwatch.delete_dashboards(DashboardNames=dashboards)


@pytest.fixture
def aws_env(moto: Moto, tmp_path: Path) -> dict[str, str]:
    """Environment for lifecycle subprocesses: moto, dummy credentials, nothing from the caller."""
    env = child_env()
    for key in list(env):
        if key in VARIABLES or key.startswith(("RAG_", "AWS_")) or key in {"DEPLOY_CONFIG", "MAKEFLAGS", "MFLAGS"}:
            del env[key]
    env.update(CREDENTIALS)
    env.update(
        AWS_ENDPOINT_URL=moto.url,
        AWS_CONFIG_FILE=str(tmp_path / "no-aws-config"),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "no-aws-credentials"),
        AWS_EC2_METADATA_DISABLED="true",
        DEPLOY_CONFIG="/dev/null",
        DOCKER_CONFIG=str(tmp_path / "docker-config"),
    )
    return env


@pytest.fixture
def index_dir(tmp_path: Path) -> Path:
    """A tiny format-1 index folder: the three files upload packs, with dummy content."""
    index = tmp_path / "index"
    index.mkdir()
    (index / "manifest.json").write_text(json.dumps({"format_version": 1, "embedding_model": "dummy", "chunks": 2}))
    (index / "faiss.index").write_bytes(os.urandom(2048))
    (index / "chunks.jsonl").write_text(
        "\n".join(json.dumps({"id": i, "source": "velmora.md", "chunk": i, "text": f"chunk {i}"}) for i in range(2))
        + "\n"
    )
    return index


@pytest.fixture(scope="session")
def account(moto: Moto) -> Account:
    """Role, bucket and ECR images made through moto's real API (push itself needs docker: see test_aws_push)."""
    role = moto.client("iam").create_role(
        RoleName="rag-sagemaker-execution",
        AssumeRolePolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {"Effect": "Allow", "Principal": {"Service": "sagemaker.amazonaws.com"}, "Action": "sts:AssumeRole"}
                ],
            }
        ),
    )["Role"]["Arn"]
    moto.client("s3").create_bucket(Bucket="rag-artifacts-test")
    ecr = moto.client("ecr")
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {
                "mediaType": "application/vnd.docker.container.image.v1+json",
                "size": 7023,
                "digest": "sha256:" + "a" * 64,
            },
            "layers": [],
        }
    )
    for arch in ("monolito", "microservicos"):
        ecr.create_repository(repositoryName=f"rag-{arch}")
        ecr.put_image(repositoryName=f"rag-{arch}", imageManifest=manifest, imageTag="latest")
    return Account(role_arn=role, bucket="rag-artifacts-test")
