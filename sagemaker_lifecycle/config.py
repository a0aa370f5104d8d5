"""Configuration of the lifecycle, read in one place.

A variable is looked up, first match wins, in: `KEY=VALUE` arguments of the CLI (what `make` passes on
its command line arrives through the environment), the environment, then the optional config file
(`DEPLOY_CONFIG`, default `.deploy.env` in the working directory) in `KEY=VALUE` lines, read by python-dotenv.
Variables not listed in VARIABLES are ignored, except `RAG_*`, which deploy checks and passes to the container.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from dotenv.parser import parse_stream

from rag.errors import ConfigError as ServiceConfigError
from rag.settings import Settings, parse_bool, variable_names

from .errors import ConfigError, MissingVariable

ARCHITECTURES = ("monolito", "microservicos", "split")
ROOT = Path(__file__).resolve().parents[1]

# name -> meaning; shown by `python -m sagemaker_lifecycle --help` and in missing-variable errors.
VARIABLES: dict[str, str] = {
    "ROLE_ARN": "IAM role SageMaker assumes to pull the image and model data",
    "BUCKET_NAME": "S3 bucket that holds model.tar.gz",
    "REGION": "AWS region, e.g. us-east-1 (default: the profile's region)",
    "ARCH": "monolito, microservicos, or split (LLM and front as two endpoints, from the microservices image)",
    "IMAGE_NAME": "ECR repository / local image name (default rag-$ARCH; rag-microservicos for split)",
    "IMAGE_TAG": "image tag (default latest)",
    "IMAGE_URI": "full image URI, overriding the ECR lookup of IMAGE_NAME:IMAGE_TAG",
    "ENDPOINT_NAME": "SageMaker endpoint (default rag-$ARCH)",
    "INSTANCE_TYPE": "real-time instance type (default ml.m5.large)",
    "INSTANCE_COUNT": "real-time instance count (default 1)",
    "LLM_INSTANCE_TYPE": "split: the LLM endpoint's instance type, e.g. ml.g5.xlarge (default INSTANCE_TYPE)",
    "LLM_INSTANCE_COUNT": "split: the LLM endpoint's instance count (default 1)",
    "LLM_IMAGE_TAG": "split: the LLM endpoint's image tag, e.g. a TORCH_VARIANT=cuda build (default IMAGE_TAG)",
    "LLM_IMAGE_URI": "split: the LLM endpoint's full image URI, overriding IMAGE_NAME:LLM_IMAGE_TAG",
    "SKIP_ROLE_CHECK": "1: split deploy skips checking that ROLE_ARN may invoke the LLM endpoint",
    "MIN_CAPACITY": "autoscale: fewest instances (1..1000)",
    "MAX_CAPACITY": "autoscale: most instances (MIN_CAPACITY..1000)",
    "TARGET_INVOCATIONS": "autoscale: target invocations per instance per minute (make autoscale prints a suggestion)",
    "SCALE_IN_COOLDOWN": "autoscale: seconds after a scale-in before the next (default 300)",
    "SCALE_OUT_COOLDOWN": "autoscale: seconds after a scale-out before the next (default 60)",
    "LLM_MIN_CAPACITY": "autoscale, split: MIN_CAPACITY of the LLM endpoint",
    "LLM_MAX_CAPACITY": "autoscale, split: MAX_CAPACITY of the LLM endpoint",
    "LLM_TARGET_INVOCATIONS": "autoscale, split: TARGET_INVOCATIONS of the LLM endpoint",
    "LLM_SCALE_IN_COOLDOWN": "autoscale, split: SCALE_IN_COOLDOWN of the LLM endpoint",
    "LLM_SCALE_OUT_COOLDOWN": "autoscale, split: SCALE_OUT_COOLDOWN of the LLM endpoint",
    "STARTUP_TIMEOUT": "ContainerStartupHealthCheckTimeoutInSeconds, 60..3600 (default 600)",
    "SERVERLESS_MEMORY": "serverless memory in MB, 1024..6144 in 1024 steps (selects serverless)",
    "SERVERLESS_CONCURRENCY": "serverless MaxConcurrency, 1..200 (default 5)",
    "S3_PREFIX": "key prefix of model.tar.gz in the bucket (default $ENDPOINT_NAME)",
    "MODEL_DATA_URL": "s3:// URI of model.tar.gz, overriding s3://$BUCKET_NAME/$S3_PREFIX/model.tar.gz",
    "INDEX": "index folder to upload (default indexes/sample)",
    "UPLOAD_LLM": "1: also upload the LLM weights as llm/",
    "LLM_DIR": "LLM folder uploaded with UPLOAD_LLM=1 (default models/smollm2-135m-instruct)",
    "REGISTRY": "registry host[:port] to push to, overriding the ECR registry",
    "WAIT": "1: wait until the endpoint is InService or Failed",
    "WAIT_TIMEOUT": "seconds to wait before giving up (default 3600)",
    "POLL_SECONDS": "seconds between status polls (default 15)",
    "FOLLOW": "1: keep tailing the logs",
    "SINCE": "minutes of logs to show (default 60)",
    "Q": "question for test/invoke",
    "URL": "local server for test/invoke instead of the endpoint",
    "DELETE_S3": "1: clean also deletes s3://$BUCKET_NAME/$S3_PREFIX/",
    "DELETE_ECR": "1: clean also deletes the ECR repository IMAGE_NAME",
    # dashboard / alarms (dashboard.py, alarms.py); the service's namespace is RAG_METRICS_NAMESPACE.
    "ALARM_5XX_PERCENT": "alarms: 5xx answers, in percent of invocations, that raise the alarm (default 5)",
    "ALARM_429_PERCENT": "alarms: 429 overloaded answers, in percent of requests (default 10)",
    "ALARM_P99_LATENCY_MS": "alarms: ModelLatency p99 in milliseconds (default 30000, half SageMaker's 60 s limit)",
    "ALARM_IDLE_MINUTES": "alarms: minutes without an invocation, 5..1440 in steps of 5 (default 30)",
    "ALARM_PERIOD": "alarms: seconds per period of the rate and latency alarms, 60..3600 in steps of 60 (default 300)",
    "ALARM_EVALUATION_PERIODS": "alarms: breaching periods in a row before ALARM, 1..100 (default 2)",
    "ALARM_TOPIC_ARN": "alarms: SNS topic ARN notified on ALARM and on OK (default: none)",
    "DASHBOARD_PNG": "dashboard-image: the PNG to write (default docs/images/dashboard-$ARCH.png)",
    # index-job / index-merge (index_job.py); they also use INSTANCE_TYPE, INSTANCE_COUNT and WAIT.
    "DOCS_S3": "index-job: s3:// prefix of the documents to index",
    "SHARDS_S3": "index-merge: s3:// prefix of the shards (default: the newest completed index job's)",
    "VOLUME_SIZE": "index-job/index-merge: GB of disk per instance (default 30)",
    "STRICT": "1: an unreadable document stops indexing instead of being skipped",
    # Read by the services under SageMaker's names; deploy passes them to the container like RAG_*.
    "MODEL_SERVER_WORKERS": "passed to the container by deploy: Gunicorn workers per service",
    "MODEL_SERVER_TIMEOUT": "passed to the container by deploy: Gunicorn worker timeout, seconds",
}
# The variables besides RAG_* that deploy passes to the container's environment.
FORWARDED = ("MODEL_SERVER_WORKERS", "MODEL_SERVER_TIMEOUT")
# OpenTelemetry's own variables (tracing, docs/operations.md) reach an endpoint too, any OTEL_* name (the SDK's),
# checked like RAG_*; a collector on loopback is refused: an endpoint has none there (no sidecars), so that is a
# workstation's setting (a shell's OTEL_* for its own tools) that would only fill the endpoint's log with errors.
OTEL_PREFIX = "OTEL_"
_OTEL_ENDPOINTS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
# RAG_* variables that make sense on a workstation but would break an endpoint.
NOT_FORWARDED = {
    "RAG_BIND_HOST": "the container must listen on every interface, where SageMaker connects",
    "RAG_INSTANCE_TOKEN": "start.sh makes one for each container",
    "RAG_SERVE": "deploy sets it, for the LLM endpoint of ARCH=split",
    "RAG_ENDPOINT_NAME": "deploy sets it to the endpoint's name (the metrics' Endpoint dimension)",
    "RAG_VARIANT_NAME": "deploy sets it to the endpoint's variant (the metrics' Variant dimension)",
}
_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def parse_config_file(path: Path) -> dict[str, str]:
    """Read `KEY=VALUE` lines in python-dotenv's format (comments, blank lines, `export` and quotes allowed)."""
    values: dict[str, str] = {}
    with path.open() as stream:
        # parse_stream rather than dotenv_values, which only logs a line it cannot read: a typo here must stop.
        for binding in parse_stream(stream):
            text = binding.original.string
            if binding.key is None and not binding.error:
                continue  # a blank line or a comment
            if binding.error or binding.value is None or not _KEY.fullmatch(binding.key):
                # A binding starts with the blank lines before it; its own line is after them.
                number = binding.original.line + text[: len(text) - len(text.lstrip())].count("\n")
                raise ConfigError(f"{path}:{number}: expected KEY=VALUE, got {text.strip()!r}")
            values[binding.key] = binding.value
    return values


@dataclass
class Config:
    """Variables with their origins merged; typed accessors validate and name the variable on error."""

    values: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, overrides: Mapping[str, str] = (), environ: Mapping[str, str] | None = None) -> Config:
        """Merge the config file, the environment and the overrides (later wins)."""
        environ = os.environ if environ is None else environ
        overrides = dict(overrides)
        explicit = overrides.get("DEPLOY_CONFIG") or environ.get("DEPLOY_CONFIG")
        path = Path(explicit) if explicit else Path.cwd() / ".deploy.env"
        if explicit and not path.exists():
            raise ConfigError(f"DEPLOY_CONFIG={explicit} does not exist: fix the path or unset DEPLOY_CONFIG")
        merged = parse_config_file(path) if path.exists() else {}
        merged.update({key: value for key, value in environ.items() if is_variable(key)})
        merged.update(overrides)
        return cls({key: value for key, value in merged.items() if value != ""})

    def get(self, name: str, default: str | None = None) -> str | None:
        """The value, or `default` when unset."""
        return self.values.get(name, default)

    def require(self, name: str) -> str:
        """The value; a MissingVariable error naming it when unset."""
        value = self.values.get(name)
        if value is None:
            raise MissingVariable(name, VARIABLES.get(name, "see README"))
        return value

    def flag(self, name: str) -> bool:
        """True for 1/true/yes/on, false for 0/false/no/off or unset (the project's one yes/no rule)."""
        try:
            return parse_bool(self.values.get(name), name)
        except ServiceConfigError as exc:
            raise ConfigError(exc.message)

    def integer(self, name: str, default: int, low: int, high: int, step: int = 1) -> int:
        """An integer in low..high (multiple of `step`), with the rule spelled out on error."""
        raw = self.values.get(name)
        if raw is None:
            return default
        rule = f"an integer from {low} to {high}" + (f" in steps of {step}" if step > 1 else "")
        try:
            value = int(raw)
        except ValueError:
            raise ConfigError(f"{name}={raw!r} must be {rule}") from None
        if not low <= value <= high or value % step:
            raise ConfigError(f"{name}={value} must be {rule}")
        return value

    def number(self, name: str, default: float) -> float:
        """A non-negative float."""
        raw = self.values.get(name)
        if raw is None:
            return default
        try:
            value = float(raw)
        except ValueError:
            raise ConfigError(f"{name}={raw!r} must be a number of seconds") from None
        if value < 0:
            raise ConfigError(f"{name}={raw!r} must not be negative")
        return value

    # --- derived names, the defaults that depend on other variables ---

    @property
    def arch(self) -> str:
        arch = self.get("ARCH", "monolito")
        if arch not in ARCHITECTURES:
            raise ConfigError(f"ARCH={arch!r} must be monolito, microservicos or split")
        return arch

    @property
    def endpoint_name(self) -> str:
        name = self.get("ENDPOINT_NAME") or f"rag-{self.arch}"
        # Configs and models are named <endpoint>-<17-digit version>, and SageMaker allows 63 characters;
        # the split topology's LLM endpoint adds "-llm".
        longest = 41 if self.arch == "split" else 45
        if not re.fullmatch(rf"[a-zA-Z0-9](-*[a-zA-Z0-9]){{0,{longest - 1}}}", name):
            raise ConfigError(
                f"ENDPOINT_NAME={name!r} must be 1 to {longest} letters, digits and hyphens, starting and ending "
                "with a letter or digit"
            )
        return name

    @property
    def image_name(self) -> str:
        # The split topology runs the microservices image on both of its endpoints.
        return self.get("IMAGE_NAME") or ("rag-microservicos" if self.arch == "split" else f"rag-{self.arch}")

    @property
    def image_tag(self) -> str:
        return self.get("IMAGE_TAG", "latest")

    @property
    def s3_prefix(self) -> str:
        return self.get("S3_PREFIX", self.endpoint_name).strip("/")

    def model_data_url(self) -> str:
        """Where model.tar.gz lives: MODEL_DATA_URL, else s3://$BUCKET_NAME/$S3_PREFIX/model.tar.gz."""
        explicit = self.get("MODEL_DATA_URL")
        if explicit:
            if not explicit.startswith("s3://"):
                raise ConfigError(f"MODEL_DATA_URL={explicit!r} must be an s3:// URI")
            return explicit
        return f"s3://{self.require('BUCKET_NAME')}/{self.s3_prefix}/model.tar.gz"

    def container_environment(self) -> dict[str, str]:
        """The RAG_*, FORWARDED and OTEL_* variables the user set, for the container: names the services read
        (any OTEL_* name: the OpenTelemetry SDK's), values they accept (checked by the services' own settings
        parser), none that would break an endpoint."""
        chosen = {
            key: value
            for key, value in sorted(self.values.items())
            if key.startswith(("RAG_", OTEL_PREFIX)) or key in FORWARDED
        }
        known = sorted(name for name in variable_names() if name.startswith("RAG_"))
        unknown = sorted(key for key in set(chosen) - set(known) - set(FORWARDED) if not key.startswith(OTEL_PREFIX))
        if unknown:
            raise ConfigError(
                f"{', '.join(unknown)}: not a variable the services read, so deploy would pass it "
                f"for nothing; fix the name or unset it (known: {', '.join(known)})"
            )
        for name, why in NOT_FORWARDED.items():
            if name in chosen:
                raise ConfigError(f"{name} is not passed to an endpoint: {why}; unset it for deploy")
        _refuse_loopback_collector(chosen)
        try:
            Settings.from_env(chosen)
        except ServiceConfigError as exc:
            raise ConfigError(f"{exc.message} (a variable that deploy passes to the container)") from None
        return chosen


def is_variable(key: str) -> bool:
    """A name the lifecycle reads (VARIABLES, RAG_*, OTEL_*, DEPLOY_CONFIG), from the environment or KEY=VALUE."""
    return key in VARIABLES or key.startswith(("RAG_", OTEL_PREFIX)) or key == "DEPLOY_CONFIG"


def _refuse_loopback_collector(environment: dict[str, str]) -> None:
    """Tracing that would export to a collector on the endpoint's own loopback, where none runs."""
    targets = [(name, environment[name]) for name in _OTEL_ENDPOINTS if name in environment]
    if not targets and environment.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "otlp":
        targets = [("OTEL_TRACES_EXPORTER=otlp without an endpoint", "http://localhost:4318")]
    for name, url in targets:
        host = (urlsplit(url.strip()).hostname or "").lower()
        if host in ("localhost", "::1") or host.startswith("127."):
            raise ConfigError(
                f"{name} sends traces to {url.strip()}, the endpoint's own loopback, where no collector runs; "
                "give a collector the endpoint can reach (in its VPC), or unset the OTEL_* variables for deploy"
            )
