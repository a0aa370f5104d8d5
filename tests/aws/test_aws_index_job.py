"""index-job and index-merge against a real moto server: the Processing jobs they create, as recorded.

moto records Processing jobs (reported Completed at once) but runs nothing, and it drops two fields of
the request: ProcessingResources and Environment. Those are checked in the request as it was sent over
HTTP (a botocore hook on the real call); the container side of the contract runs for real in
tests/container/test_container_index.py.
"""

from __future__ import annotations

import logging
import re

import pytest
from botocore.stub import Stubber

from sagemaker_lifecycle.config import Config
from sagemaker_lifecycle.errors import AccessDenied, LifecycleError, NotFound
from sagemaker_lifecycle.index_job import run_index_job, wait_for_job
from sagemaker_lifecycle.session import Aws
from tests.aws.aws_support import REGION, make, stubbed_sagemaker

IMAGE = "rag-monolito:latest"


@pytest.fixture
def documents(moto, account):
    """Three documents under s3://bucket/corpus/, as `aws s3 sync` would leave them."""
    s3 = moto.client("s3")
    for key in ("corpus/a.md", "corpus/guides/b.pdf", "corpus/c.docx"):
        s3.put_object(Bucket=account.bucket, Key=key, Body=b"content")
    return f"s3://{account.bucket}/corpus/"


def jobs_of(moto, endpoint):
    sagemaker = moto.client("sagemaker")
    names = [
        job["ProcessingJobName"] for job in sagemaker.list_processing_jobs(MaxResults=100)["ProcessingJobSummaries"]
    ]
    return [sagemaker.describe_processing_job(ProcessingJobName=name) for name in names if name.startswith(endpoint)]


def test_index_job_shards_the_documents_over_the_instances(moto, aws_env, account, documents):
    result = make(
        "index-job",
        aws_env,
        *account.variables(f"DOCS_S3={documents}", "INSTANCE_COUNT=3", "ENDPOINT_NAME=corpus-a", "WAIT=1"),
    )
    assert result.returncode == 0, result.stderr
    [job] = jobs_of(moto, "corpus-a-index-")
    name = job["ProcessingJobName"]
    assert job["ProcessingJobStatus"] == "Completed" and len(name) <= 63
    assert job["RoleArn"] == account.role_arn
    assert job["AppSpecification"]["ImageUri"].endswith("/rag-monolito:latest")
    assert job["AppSpecification"]["ContainerArguments"] == ["index", "build"]
    [source] = job["ProcessingInputs"]
    assert source["S3Input"] == {
        "S3Uri": documents,
        "LocalPath": "/opt/ml/processing/input",
        "S3DataType": "S3Prefix",
        "S3InputMode": "File",
        "S3DataDistributionType": "ShardedByS3Key",
    }
    [output] = job["ProcessingOutputConfig"]["Outputs"]
    shards = f"s3://{account.bucket}/corpus-a/index-shards/{name}/"
    assert output["S3Output"] == {"S3Uri": shards, "LocalPath": "/opt/ml/processing/output", "S3UploadMode": "EndOfJob"}
    assert result.stdout.strip().splitlines()[-1] == shards
    assert f"{name}: Completed" in result.stdout


def test_index_merge_takes_the_newest_completed_index_job(moto, aws_env, account, documents):
    variables = account.variables(f"DOCS_S3={documents}", "ENDPOINT_NAME=corpus-b")
    nothing_yet = make("index-merge", aws_env, *variables)
    assert nothing_yet.returncode != 0 and "run `make index-job DOCS_S3=...` first" in nothing_yet.stderr
    assert make("index-job", aws_env, *variables).returncode == 0
    [index_job] = jobs_of(moto, "corpus-b-index-")
    merged = make("index-merge", aws_env, *variables, "STRICT=1")
    assert merged.returncode == 0, merged.stderr
    [job] = jobs_of(moto, "corpus-b-merge-")
    assert job["AppSpecification"]["ContainerArguments"] == ["index", "merge", "--archive", "model.tar.gz"]
    [source] = job["ProcessingInputs"]
    assert (
        source["S3Input"]["S3Uri"] == f"s3://{account.bucket}/corpus-b/index-shards/{index_job['ProcessingJobName']}/"
    )
    assert source["S3Input"]["S3DataDistributionType"] == "FullyReplicated"
    assert job["ProcessingOutputConfig"]["Outputs"][0]["S3Output"]["S3Uri"] == f"s3://{account.bucket}/corpus-b/"
    # The last line is what `make deploy` uses as MODEL_DATA_URL by default.
    assert merged.stdout.strip().splitlines()[-1] == f"s3://{account.bucket}/corpus-b/model.tar.gz"

    explicit = make(
        "index-merge",
        aws_env,
        *variables,
        "SHARDS_S3=s3://elsewhere/shards",
        "MODEL_DATA_URL=s3://other-bucket/v2/index.tar.gz",
    )
    assert explicit.returncode == 0, explicit.stderr
    newest = max(jobs_of(moto, "corpus-b-merge-"), key=lambda j: j["CreationTime"])
    assert newest["ProcessingInputs"][0]["S3Input"]["S3Uri"] == "s3://elsewhere/shards/"
    assert newest["AppSpecification"]["ContainerArguments"][-1] == "index.tar.gz"
    assert newest["ProcessingOutputConfig"]["Outputs"][0]["S3Output"]["S3Uri"] == "s3://other-bucket/v2/"


def test_bad_or_missing_inputs_are_one_line(aws_env, account, documents):
    missing = make("index-job", aws_env, *account.variables("ENDPOINT_NAME=corpus-c"))
    assert missing.returncode != 0 and "missing variable DOCS_S3" in missing.stderr
    not_s3 = make("index-job", aws_env, *account.variables("DOCS_S3=/home/me/docs", "ENDPOINT_NAME=corpus-c"))
    assert not_s3.returncode != 0 and "must be an s3://bucket/prefix/ URI" in not_s3.stderr
    empty = make(
        "index-job",
        aws_env,
        *account.variables(f"DOCS_S3=s3://{account.bucket}/nothing-here/", "ENDPOINT_NAME=corpus-c"),
    )
    assert empty.returncode != 0 and "holds no objects" in empty.stderr
    too_many = make("index-job", aws_env, *account.variables(f"DOCS_S3={documents}", "INSTANCE_COUNT=0"))
    assert too_many.returncode != 0 and "INSTANCE_COUNT" in too_many.stderr
    for result in (missing, not_s3, empty, too_many):
        # make's own "make: *** ... Error 2" line (make[1] when the suite itself runs under make check)
        ours = [line for line in result.stderr.splitlines() if not re.match(r"make(\[\d+\])?: \*\*\*", line)]
        assert "Traceback" not in result.stderr and len(ours) == 1 and ours[0].startswith("error: ")


def test_the_request_sent_carries_instances_and_environment(moto, aws_env, account, documents, monkeypatch):
    for key, value in aws_env.items():
        monkeypatch.setenv(key, value)
    config = Config.load(
        {
            "ROLE_ARN": account.role_arn,
            "BUCKET_NAME": account.bucket,
            "REGION": REGION,
            "DOCS_S3": documents,
            "INSTANCE_COUNT": "4",
            "INSTANCE_TYPE": "ml.c5.2xlarge",
            "ENDPOINT_NAME": "corpus-d",
            "RAG_INDEX_TYPE": "hnsw",
            "RAG_CHUNK_SIZE": "600",
        },
        environ=aws_env,
    )
    aws = Aws(config)
    sent = []
    aws.sagemaker.meta.events.register(
        "provide-client-params.sagemaker.CreateProcessingJob", lambda params, **_: sent.append(params)
    )
    assert run_index_job(aws) == 0
    [request] = sent
    assert request["ProcessingResources"]["ClusterConfig"] == {
        "InstanceCount": 4,
        "InstanceType": "ml.c5.2xlarge",
        "VolumeSizeInGB": 30,
    }
    assert request["Environment"] == {"RAG_CHUNK_SIZE": "600", "RAG_INDEX_TYPE": "hnsw"}
    assert jobs_of(moto, "corpus-d-index-")[0]["ProcessingJobName"] == request["ProcessingJobName"]


def stubbed_job(*describes: dict | str) -> tuple[Aws, Stubber]:
    """An Aws whose DescribeProcessingJob answers `describes` in turn: fields of the job, or an error code."""
    job = {
        "ProcessingJobName": "j",
        "ProcessingJobArn": "arn:aws:sagemaker:us-east-1:1:processing-job/j",
        "ProcessingResources": {
            "ClusterConfig": {"InstanceCount": 1, "InstanceType": "ml.m5.xlarge", "VolumeSizeInGB": 30}
        },
        "AppSpecification": {"ImageUri": "rag-monolito:latest"},
        "CreationTime": 0,
    }
    missing = {"ValidationException": "Could not find requested job with name j"}
    return stubbed_sagemaker("describe_processing_job", job, *describes, messages=missing)


def test_wait_for_job_outcomes(caplog):
    """moto reports a job Completed at once; a real one is InProgress for a while, and may fail or stop."""
    caplog.set_level(logging.INFO, "sagemaker_lifecycle")
    aws, stubber = stubbed_job(*[{"ProcessingJobStatus": s} for s in ("InProgress", "Completed", "Completed")])
    assert wait_for_job(aws, "j")["ProcessingJobStatus"] == "Completed"  # the waiter's polls, then one describe
    stubber.assert_no_pending_responses()
    assert caplog.messages[0].endswith("j: waiting (a poll every 0.1s, WAIT_TIMEOUT=0.2s)")
    assert caplog.messages[-1].endswith("j: Completed")

    aws, _ = stubbed_job({"ProcessingJobStatus": "Failed", "FailureReason": "ClientError: out of disk"})
    with pytest.raises(LifecycleError, match="processing job j Failed: ClientError: out of disk; its logs are in"):
        wait_for_job(aws, "j")
    aws, _ = stubbed_job({"ProcessingJobStatus": "Stopping"}, *[{"ProcessingJobStatus": "Stopped"}] * 2)
    with pytest.raises(LifecycleError, match="processing job j Stopped: no reason given"):
        wait_for_job(aws, "j")
    aws, stubber = stubbed_job(*[{"ProcessingJobStatus": "InProgress"}] * 3)  # WAIT_TIMEOUT / POLL_SECONDS + 1 polls
    with pytest.raises(LifecycleError, match="still InProgress after 0s: raise WAIT_TIMEOUT"):
        wait_for_job(aws, "j")
    stubber.assert_no_pending_responses()
    aws, _ = stubbed_job("ValidationException")
    with pytest.raises(NotFound, match="processing job j does not exist in us-east-1"):
        wait_for_job(aws, "j")
    aws, _ = stubbed_job("AccessDeniedException")
    with pytest.raises(AccessDenied, match="describe processing job j"):
        wait_for_job(aws, "j")
