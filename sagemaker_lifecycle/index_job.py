"""index-job and index-merge: index a big corpus in parallel on SageMaker Processing, then merge it.

    make index-job DOCS_S3=s3://bucket/docs/ INSTANCE_COUNT=4 [WAIT=1]
        One Processing job on the project's image, running `index` (rag/ingest/processing.py) on INSTANCE_COUNT
        instances. ShardedByS3Key gives each instance its share of the objects under DOCS_S3; each writes a
        partial index, and SageMaker uploads them to s3://$BUCKET_NAME/$S3_PREFIX/index-shards/<job>/.
    make index-merge [SHARDS_S3=s3://...] [WAIT=1]
        A second job, on one instance, running `index merge` over those shards (by default the newest
        completed index job's); it writes model.tar.gz to MODEL_DATA_URL, which `make deploy` then uses.

Nothing is downloaded to the caller's machine: both steps run where the data is.
"""

from __future__ import annotations

import logging
import math
import re
import time
from datetime import UTC, datetime

from botocore.exceptions import BotoCoreError, ClientError, WaiterError

from .config import Config
from .deploy import TAG_KEY, resolve_image
from .errors import ConfigError, LifecycleError, NotFound, error_message, translate
from .session import Aws

log = logging.getLogger(__name__)

INPUT_DIR, OUTPUT_DIR = "/opt/ml/processing/input", "/opt/ml/processing/output"
DEFAULT_INSTANCE_TYPE = "ml.m5.xlarge"  # 4 vCPU, 16 GB: embeds on CPU and holds a merged million chunks
MAX_RUNTIME_S = 24 * 3600
FINISHED = {"Completed", "Failed", "Stopped"}


def job_name(endpoint: str, step: str, now: datetime | None = None) -> str:
    """`<endpoint>-<step>-<yymmddHHMMSS>`, within SageMaker's 63 characters."""
    now = now or datetime.now(UTC)
    return f"{endpoint[:44]}-{step}-{now:%y%m%d%H%M%S}"


def s3_prefix_uri(config: Config, name: str) -> str:
    """Variable `name` as an s3://bucket/prefix/ URI (with a trailing slash); a clear error otherwise."""
    value = config.require(name)
    if not re.fullmatch(r"s3://[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9](/.*)?", value):
        raise ConfigError(f"{name}={value!r} must be an s3://bucket/prefix/ URI")
    return value.rstrip("/") + "/"


def shards_uri(config: Config, job: str) -> str:
    """Where an index job's instances upload their shards."""
    return f"s3://{config.require('BUCKET_NAME')}/{config.s3_prefix}/index-shards/{job}/"


def _job(
    config: Config,
    name: str,
    image: str,
    arguments: list[str],
    instance_count: int,
    inputs: list[dict],
    output_uri: str,
) -> dict:
    """The CreateProcessingJob request shared by both steps."""
    return {
        "ProcessingJobName": name,
        "RoleArn": config.require("ROLE_ARN"),
        # The images' entrypoint (serve / start.sh) dispatches `index ...` to rag.ingest.processing.
        "AppSpecification": {"ImageUri": image, "ContainerArguments": arguments},
        "ProcessingInputs": inputs,
        "ProcessingOutputConfig": {
            "Outputs": [
                {
                    "OutputName": "index",
                    "S3Output": {"S3Uri": output_uri, "LocalPath": OUTPUT_DIR, "S3UploadMode": "EndOfJob"},
                }
            ]
        },
        "ProcessingResources": {
            "ClusterConfig": {
                "InstanceCount": instance_count,
                "InstanceType": config.get("INSTANCE_TYPE", DEFAULT_INSTANCE_TYPE),
                "VolumeSizeInGB": config.integer("VOLUME_SIZE", 30, 1, 16384),
            }
        },
        "StoppingCondition": {"MaxRuntimeInSeconds": MAX_RUNTIME_S},
        "Environment": config.container_environment(),
        "Tags": [{"Key": TAG_KEY, "Value": config.endpoint_name}],
    }


def _input(uri: str, distribution: str) -> dict:
    return {
        "InputName": "documents" if distribution == "ShardedByS3Key" else "shards",
        "S3Input": {
            "S3Uri": uri,
            "LocalPath": INPUT_DIR,
            "S3DataType": "S3Prefix",
            "S3InputMode": "File",
            "S3DataDistributionType": distribution,
        },
    }


def index_job_request(config: Config, image: str, name: str) -> dict:
    """CreateProcessingJob for `index-job`: DOCS_S3 sharded over INSTANCE_COUNT instances."""
    arguments = ["index", "build"] + (["--strict"] if config.flag("STRICT") else [])
    return _job(
        config,
        name,
        image,
        arguments,
        config.integer("INSTANCE_COUNT", 1, 1, 100),
        [_input(s3_prefix_uri(config, "DOCS_S3"), "ShardedByS3Key")],
        shards_uri(config, name),
    )


def merge_job_request(config: Config, image: str, name: str, shards: str) -> dict:
    """CreateProcessingJob for `index-merge`: every shard on one instance, model.tar.gz to MODEL_DATA_URL."""
    folder, _, archive = config.model_data_url().rpartition("/")
    return _job(
        config,
        name,
        image,
        ["index", "merge", "--archive", archive],
        1,
        [_input(shards, "FullyReplicated")],
        folder + "/",
    )


def latest_index_job(aws: Aws) -> dict:
    """The newest index job of this endpoint; it must have completed."""
    prefix = f"{aws.config.endpoint_name[:44]}-index-"
    jobs = aws.call(
        "list processing jobs",
        aws.sagemaker.list_processing_jobs,
        NameContains=prefix,
        SortBy="CreationTime",
        SortOrder="Descending",
        MaxResults=100,
    )["ProcessingJobSummaries"]
    jobs = sorted(
        (job for job in jobs if job["ProcessingJobName"].startswith(prefix)),
        key=lambda job: job["CreationTime"],
        reverse=True,
    )
    if not jobs:
        raise NotFound(
            f"no index job of {aws.config.endpoint_name} found: run `make index-job DOCS_S3=...` first, "
            "or set SHARDS_S3"
        )
    job = jobs[0]
    if job["ProcessingJobStatus"] != "Completed":
        raise LifecycleError(
            f"index job {job['ProcessingJobName']} is {job['ProcessingJobStatus']}: wait for it "
            "(`make index-job ... WAIT=1` waits), or set SHARDS_S3"
        )
    return job


def wait_for_job(aws: Aws, name: str) -> dict:
    """Wait until the job finishes (boto3's processing_job_completed_or_stopped waiter); raise with its
    FailureReason unless it Completed.

    The waiter logs nothing between polls, so the wait is logged when it starts and when it ends: a job is
    InProgress (then perhaps Stopping) until it finishes, so no status in between goes unseen but Stopping.
    """
    timeout_s, poll_s = aws.config.number("WAIT_TIMEOUT", 3600.0), max(aws.config.number("POLL_SECONDS", 15.0), 0.1)
    action, started = f"describe processing job {name}", time.monotonic()
    log.info("[%5.0fs] %s: waiting (a poll every %gs, WAIT_TIMEOUT=%gs)", 0, name, poll_s, timeout_s)
    try:
        aws.sagemaker.get_waiter("processing_job_completed_or_stopped").wait(
            # The waiter counts attempts, not seconds: as many as WAIT_TIMEOUT allows at this pace.
            ProcessingJobName=name,
            WaiterConfig={"Delay": poll_s, "MaxAttempts": 1 + math.ceil(timeout_s / poll_s)},
        )
    except WaiterError as exc:  # Failed, out of attempts, or an error (no such job, access denied, ...)
        job = exc.last_response or {}
        if "Error" in job:
            error = ClientError(job, "DescribeProcessingJob")
            if "could not find" in error_message(error).lower():
                raise NotFound(f"processing job {name} does not exist in {aws.region}")
            raise translate(error, action) from None
    except BotoCoreError as exc:  # no credentials, no connection: one line, as aws.call gives
        raise translate(exc, action) from None
    else:  # Completed or Stopped; the waiter returns no description
        job = aws.call(action, aws.sagemaker.describe_processing_job, ProcessingJobName=name)
    status, elapsed = job["ProcessingJobStatus"], time.monotonic() - started
    log.info("[%5.0fs] %s: %s", elapsed, name, status)
    if status == "Completed":
        return job
    if status in FINISHED:
        raise LifecycleError(
            f"processing job {name} {status}: {job.get('FailureReason', 'no reason given')}; "
            "its logs are in CloudWatch under /aws/sagemaker/ProcessingJobs"
        )
    raise LifecycleError(f"processing job {name} is still {status} after {elapsed:.0f}s: raise WAIT_TIMEOUT")


def _start(aws: Aws, request: dict) -> None:
    aws.call(f"create processing job {request['ProcessingJobName']}", aws.sagemaker.create_processing_job, **request)
    cluster = request["ProcessingResources"]["ClusterConfig"]
    log.info(
        "started processing job %s on %d x %s (image %s)",
        request["ProcessingJobName"],
        cluster["InstanceCount"],
        cluster["InstanceType"],
        request["AppSpecification"]["ImageUri"],
    )
    if aws.config.flag("WAIT"):
        wait_for_job(aws, request["ProcessingJobName"])


def run_index_job(aws: Aws) -> int:
    """`index-job`: start the sharded build; the last line is the S3 URI of the shards."""
    config = aws.config
    documents = s3_prefix_uri(config, "DOCS_S3")
    bucket, _, prefix = documents[len("s3://") :].partition("/")
    listing = aws.call(
        f"list {documents}", aws.s3.list_objects_v2, absent=["NoSuchBucket"], Bucket=bucket, Prefix=prefix, MaxKeys=1
    )
    if not listing or not listing.get("KeyCount"):
        raise NotFound(
            f"DOCS_S3={documents} holds no objects: upload your documents first (`aws s3 sync ~/my-docs {documents}`)"
        )
    request = index_job_request(config, resolve_image(aws), job_name(config.endpoint_name, "index"))
    _start(aws, request)
    log.info("%s", request["ProcessingOutputConfig"]["Outputs"][0]["S3Output"]["S3Uri"])
    return 0


def run_index_merge(aws: Aws) -> int:
    """`index-merge`: merge the shards into model.tar.gz; the last line is its MODEL_DATA_URL."""
    config = aws.config
    if config.get("SHARDS_S3"):
        shards = s3_prefix_uri(config, "SHARDS_S3")
    else:
        job = latest_index_job(aws)
        shards = shards_uri(config, job["ProcessingJobName"])
        log.info("merging the shards of %s", job["ProcessingJobName"])
    request = merge_job_request(config, resolve_image(aws), job_name(config.endpoint_name, "merge"), shards)
    _start(aws, request)
    log.info("%s", config.model_data_url())  # for scripts: MODEL_DATA_URL=$(make -s index-merge | tail -1)
    return 0
