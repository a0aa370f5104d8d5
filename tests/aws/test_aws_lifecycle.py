"""deploy -> status -> test -> re-deploy (update) -> clean -> clean again, through `make`, against moto."""

from __future__ import annotations

import json

import pytest

from tests.aws.aws_support import ANSWER, REGION, make
from tests.support import ROOT

CAPACITY = {
    "instance": ["INSTANCE_TYPE=ml.m5.large", "INSTANCE_COUNT=1", "STARTUP_TIMEOUT=900"],
    "serverless": ["SERVERLESS_MEMORY=3072", "SERVERLESS_CONCURRENCY=4"],
}


def names(sagemaker, endpoint):
    """(configs, models) of this endpoint, as moto lists them."""
    configs = [
        c["EndpointConfigName"] for c in sagemaker.list_endpoint_configs(NameContains=endpoint)["EndpointConfigs"]
    ]
    models = [m["ModelName"] for m in sagemaker.list_models(NameContains=endpoint)["Models"]]
    return sorted(configs), sorted(models)


@pytest.mark.parametrize("arch", ["monolito", "microservicos"])
@pytest.mark.parametrize("capacity", ["instance", "serverless"])
def test_full_lifecycle(moto, aws_env, account, index_dir, arch, capacity):
    # Serverless runs go through the folder Makefiles (cd Monolitico && make ...), instance runs
    # through the top level with ARCH=...: both must behave the same.
    folder = ROOT / {"monolito": "Monolitico", "microservicos": "Microservicos"}[arch]
    where = {"directory": folder} if capacity == "serverless" else {}
    common = account.variables(*CAPACITY[capacity], "RAG_TOP_K=4", *([] if where else [f"ARCH={arch}"]))
    endpoint = f"rag-{arch}"
    sagemaker = moto.client("sagemaker")

    upload = make("upload", aws_env, *common, f"INDEX={index_dir}", **where)
    assert upload.returncode == 0, upload.stderr
    assert upload.stdout.strip().splitlines()[-1] == f"s3://{account.bucket}/{endpoint}/model.tar.gz"

    deploy = make("deploy", aws_env, *common, **where)
    assert deploy.returncode == 0, deploy.stderr
    assert f"creating endpoint {endpoint}" in deploy.stdout
    first_config = sagemaker.describe_endpoint(EndpointName=endpoint)["EndpointConfigName"]
    variant = sagemaker.describe_endpoint_config(EndpointConfigName=first_config)["ProductionVariants"][0]
    if capacity == "serverless":
        assert variant["ServerlessConfig"] == {"MemorySizeInMB": 3072, "MaxConcurrency": 4}
    else:
        assert variant["InstanceType"] == "ml.m5.large"
        assert variant["ContainerStartupHealthCheckTimeoutInSeconds"] == 900
    container = sagemaker.describe_model(ModelName=variant["ModelName"])["PrimaryContainer"]
    assert container["Image"].endswith(f"/rag-{arch}:latest")
    assert container["ModelDataUrl"] == f"s3://{account.bucket}/{endpoint}/model.tar.gz"
    assert container["Environment"] == {
        "RAG_TOP_K": "4",
        "RAG_ENDPOINT_NAME": endpoint,
        "RAG_VARIANT_NAME": "AllTraffic",
    }

    status = make("status", aws_env, *common, "WAIT=1", **where)
    assert status.returncode == 0, status.stderr
    assert f"{endpoint}: InService (config {first_config})" in status.stdout

    moto.queue_invocation_results(json.dumps(ANSWER))
    answered = make("test", aws_env, *common, "Q=Who designed the first line?", **where)
    assert answered.returncode == 0, answered.stderr
    assert ANSWER["answer"] in answered.stdout
    assert "1. velmora.md#0 (0.830) The tramway opened in 1911." in answered.stdout

    # Re-deploy: a new config and model, then UpdateEndpoint. moto does not implement UpdateEndpoint,
    # so the request is shown, the emulator's answer is reported as not implemented (exit 3), and
    # nothing pretends that the endpoint moved to the new config.
    redeploy = make("deploy", aws_env, *common, **where)
    configs, models = names(sagemaker, endpoint)
    assert len(configs) == 2 and len(models) == 2 and configs == models
    second_config = configs[1]
    assert redeploy.returncode != 0 and "Error 3" in redeploy.stderr, redeploy.stdout + redeploy.stderr
    request = json.dumps({"EndpointName": endpoint, "EndpointConfigName": second_config})
    assert f"UpdateEndpoint request: {request}" in redeploy.stdout
    assert "does not implement" in redeploy.stderr and "was NOT applied" in redeploy.stderr
    assert [line for line in redeploy.stderr.splitlines() if not line.startswith("make")] == [
        line for line in redeploy.stderr.splitlines() if line.startswith("error: ")
    ] and "Traceback" not in redeploy.stderr
    assert "NotImplementedError: The update_endpoint action has not been implemented" in moto.server.log()
    assert sagemaker.describe_endpoint(EndpointName=endpoint)["EndpointConfigName"] == first_config

    clean = make("clean", aws_env, *common, **where)
    assert clean.returncode == 0, clean.stderr
    assert f"deleting endpoint {endpoint}" in clean.stdout
    for name in configs:
        assert f"deleted endpoint config {name}" in clean.stdout and f"deleted model {name}" in clean.stdout
    assert sagemaker.list_endpoints()["Endpoints"] == [] and names(sagemaker, endpoint) == ([], [])

    again = make("clean", aws_env, *common, **where)
    assert again.returncode == 0, again.stderr
    assert f"nothing was left to delete for endpoint {endpoint}" in again.stdout


def test_prune_after_update_keeps_only_the_config_in_use(moto, aws_env, account, index_dir, monkeypatch):
    """What deploy does after a successful update, run for real against moto's configs and models."""
    from sagemaker_lifecycle.config import Config
    from sagemaker_lifecycle.deploy import prune_unused
    from sagemaker_lifecycle.session import Aws

    variables = account.variables(f"INDEX={index_dir}")
    assert make("upload", aws_env, *variables).returncode == 0
    for _ in range(3):
        make("deploy", aws_env, *variables)
    sagemaker = moto.client("sagemaker")
    in_use = sagemaker.describe_endpoint(EndpointName="rag-monolito")["EndpointConfigName"]
    sagemaker.create_endpoint_config(  # someone else's config with a similar name is left alone
        EndpointConfigName="rag-monolito-manual",
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "ModelName": in_use,
                "ServerlessConfig": {"MemorySizeInMB": 1024, "MaxConcurrency": 1},
            }
        ],
    )
    for key in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(key, aws_env[key])
    aws = Aws(Config({"REGION": REGION}))

    deleted = prune_unused(aws, "rag-monolito", keep=in_use)

    assert len(deleted) == 4  # two older configs and their two models
    configs, models = names(sagemaker, "rag-monolito")
    assert configs == sorted([in_use, "rag-monolito-manual"]) and models == [in_use]


def test_deploy_reads_the_config_file_and_the_command_line_wins(moto, aws_env, account, index_dir, tmp_path):
    config_file = tmp_path / "deploy.env"
    config_file.write_text(
        "# written by hand\n"
        f"export ROLE_ARN={account.role_arn}\n"
        f'BUCKET_NAME="{account.bucket}"\n'
        f"REGION={REGION}\n"
        "ENDPOINT_NAME=from-file\n"
        "SERVERLESS_MEMORY=2048\n"
    )
    env = dict(aws_env, DEPLOY_CONFIG=str(config_file))
    assert make("upload", env, f"INDEX={index_dir}").returncode == 0
    deploy = make("deploy", env, "SERVERLESS_MEMORY=1024")
    assert deploy.returncode == 0, deploy.stderr
    sagemaker = moto.client("sagemaker")
    config = sagemaker.describe_endpoint(EndpointName="from-file")["EndpointConfigName"]
    variant = sagemaker.describe_endpoint_config(EndpointConfigName=config)["ProductionVariants"][0]
    assert variant["ServerlessConfig"]["MemorySizeInMB"] == 1024
    assert make("clean", env).returncode == 0
