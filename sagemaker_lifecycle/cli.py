"""Command line: `python -m sagemaker_lifecycle <command> [KEY=VALUE ...]`.

This is the edge where errors become one line on stderr and an exit status: 0 success, 1 an AWS or
service error, 2 a configuration error, 3 an action the API (an emulator) does not implement.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

from .alarms import alarm_summary, run_alarms
from .autoscale import describe_scaling, run_autoscale
from .clean import run_clean
from .client import format_result, invoke_endpoint
from .config import VARIABLES, Config, is_variable
from .dashboard import run_dashboard
from .deploy import run_deploy
from .endpoint_status import describe_endpoint, status_line, wait_for
from .errors import ConfigError, EndpointFailed, EndpointNotFound, LifecycleError
from .index_job import run_index_job, run_index_merge
from .logs import run_logs
from .push import run_push
from .session import Aws
from .topology import endpoints
from .upload import run_upload

log = logging.getLogger("sagemaker_lifecycle")

SAMPLE_QUESTION = "When did the Velmora Tramway open, and who designed its first line?"
COMMANDS = {
    "push": "create the ECR repository if missing, docker login with an ECR token, tag and push IMAGE_NAME:IMAGE_TAG",
    "upload": "pack INDEX (and the LLM with UPLOAD_LLM=1) into model.tar.gz and upload it to S3",
    "deploy": "create a model and a new endpoint config; create the endpoint or update it in place",
    "status": "print the endpoint status; WAIT=1 waits for InService or Failed",
    "test": "ask the endpoint (or URL=...) the question Q and print the answer and sources",
    "invoke": "ask the local server at URL the question Q and print the answer and sources",
    "logs": "print recent CloudWatch events of the endpoint; FOLLOW=1 tails them",
    "index-job": "index DOCS_S3 on SageMaker Processing, sharded over INSTANCE_COUNT instances",
    "index-merge": "merge the newest index job's shards (or SHARDS_S3) into model.tar.gz at MODEL_DATA_URL",
    "clean": "delete alarms, autoscaling, the endpoint, its configs and models, the dashboard (DELETE_S3=1, DELETE_ECR=1 for more)",
    "autoscale": "register the endpoint(s) with Application Auto Scaling and put a target-tracking policy",
    "dashboard": "create or update the CloudWatch dashboard ENDPOINT_NAME (split: both endpoints)",
    "alarms": "create or update four CloudWatch alarms per endpoint (ALARM_*; ALARM_TOPIC_ARN notifies)",
}


def usage() -> str:
    """The --help text: commands, then variables."""
    lines = ["usage: python -m sagemaker_lifecycle <command> [KEY=VALUE ...]", "", "commands:"]
    width = max(map(len, COMMANDS))
    lines += [f"  {name:<{width}} {text}" for name, text in COMMANDS.items()]
    lines += ["", "variables (KEY=VALUE, environment, or .deploy.env / DEPLOY_CONFIG):"]
    width = max(map(len, VARIABLES))
    lines += [f"  {name:<{width}} {text}" for name, text in VARIABLES.items()]
    lines += [f"  {'RAG_*':<{width}} passed to the container's environment by deploy"]
    lines += [f"  {'OTEL_*':<{width}} passed too (tracing); a collector on loopback is refused"]
    return "\n".join(lines)


def parse(argv: list[str]) -> tuple[str, dict[str, str]]:
    """(command, KEY=VALUE overrides); a usage error names what was wrong."""
    if not argv or argv[0] not in COMMANDS:
        got = f" (got {argv[0]!r})" if argv else ""
        raise ConfigError(f"expected a command, one of {', '.join(COMMANDS)}{got}: see --help")
    return argv[0], parse_overrides(argv[1:])


def parse_overrides(arguments: list[str]) -> dict[str, str]:
    """KEY=VALUE arguments of known variables (or RAG_*, OTEL_*, DEPLOY_CONFIG) as a dict."""
    overrides = {}
    for argument in arguments:
        key, sep, value = argument.partition("=")
        if not sep or not is_variable(key):
            raise ConfigError(f"unexpected argument {argument!r}: pass KEY=VALUE with a known variable (see --help)")
        overrides[key] = value
    return overrides


def run_test(config: Config) -> int:
    """`test`/`invoke`: one question, answer and sources printed; any error raises."""
    question = config.get("Q", SAMPLE_QUESTION)
    url = config.get("URL")
    if url:
        result = invoke_endpoint(question, url=url)
    else:
        aws = Aws(config)
        for endpoint in endpoints(config):  # split: the LLM endpoint must be InService too
            name = endpoint.name
            description = describe_endpoint(aws, name)
            if description is None:
                raise EndpointNotFound(name, aws.region)
            status = description["EndpointStatus"]
            if status == "Failed":
                raise EndpointFailed(name, description.get("FailureReason"))
            if status != "InService":
                raise LifecycleError(f"endpoint {name} is {status}, not InService: wait with `make status WAIT=1`")
        result = invoke_endpoint(question, endpoint_name=config.endpoint_name, region=aws.region)
    log.info("Q: %s\n\n%s", question, format_result(result))
    return 0


def run_status(aws: Aws) -> int:
    """`status`: each endpoint of ARCH with its autoscaling and alarms; WAIT=1 waits until each settles. Non-zero on Failed."""
    for endpoint in endpoints(aws.config):
        if aws.config.flag("WAIT"):
            description = wait_for(aws, endpoint.name)
        else:
            description = describe_endpoint(aws, endpoint.name)
            if description is None:
                raise EndpointNotFound(endpoint.name, aws.region)
            log.info("%s", status_line(description))
        log.info("  %s", describe_scaling(aws, endpoint))
        log.info("  %s", alarm_summary(aws, endpoint))
        if description["EndpointStatus"] == "Failed":
            raise EndpointFailed(endpoint.name, description.get("FailureReason"))
    return 0


def dispatch(command: str, config: Config) -> int:
    """Run one command."""
    if command in {"test", "invoke"}:
        if command == "invoke" and not config.get("URL"):
            raise ConfigError("invoke posts to a local server: set URL, e.g. URL=http://127.0.0.1:8080")
        return run_test(config)
    handler = {
        "push": run_push,
        "upload": run_upload,
        "deploy": run_deploy,
        "status": run_status,
        "logs": run_logs,
        "clean": run_clean,
        "autoscale": run_autoscale,
        "index-job": run_index_job,
        "index-merge": run_index_merge,
        "dashboard": run_dashboard,
        "alarms": run_alarms,
    }[command]
    return handler(Aws(config))


def main(argv: list[str] | None = None) -> int:
    """Entry point: --help, or one command run at the edge."""
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in {"-h", "--help", "help"}:
        sys.stdout.write(usage() + "\n")
        return 0

    def run() -> int:
        command, overrides = parse(argv)
        return dispatch(command, Config.load(overrides))

    return edge(run)


def edge(run: Callable[[], int]) -> int:
    """Configure logging, run, turn any LifecycleError into one line on stderr and its exit status."""
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    for noisy in ("botocore", "boto3", "urllib3", "s3transfer", "matplotlib"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        return run()
    except LifecycleError as exc:
        sys.stdout.flush()
        sys.stderr.write(f"error: {exc}\n")
        return exc.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return 130
