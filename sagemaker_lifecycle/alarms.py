"""alarms: four CloudWatch alarms per endpoint of ARCH, named after it, so that `clean` deletes exactly these.

    <endpoint>-5xx-rate         100 * Invocation5XXErrors / Invocations      > ALARM_5XX_PERCENT (5)
    <endpoint>-p99-latency      ModelLatency p99 (microseconds)              > ALARM_P99_LATENCY_MS (30000) x 1000
    <endpoint>-429-rate         100 * Status429 / Requests (the service's)   > ALARM_429_PERCENT (10)
    <endpoint>-no-invocations   Invocations (Sum) over 5 minutes             < 1 for ALARM_IDLE_MINUTES (30)

The first three look at ALARM_EVALUATION_PERIODS (2) periods of ALARM_PERIOD seconds (300) and treat missing
data as fine (no traffic is no error); the last treats missing data as breaching, because SageMaker publishes
no Invocations datapoint at all for a minute without invocations. ALARM_TOPIC_ARN, when set, is notified on
ALARM and on OK. PutMetricAlarm replaces an alarm of the same name, so running `make alarms` again updates them.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from .config import Config
from .errors import AccessDenied, ConfigError
from .metrics import SAGEMAKER, as_list, namespace, sagemaker_dimensions, service_dimensions
from .session import Aws
from .topology import Endpoint, endpoints

log = logging.getLogger(__name__)

KINDS = ("5xx-rate", "p99-latency", "429-rate", "no-invocations")
IDLE_PERIOD_S = 300
_TOPIC = re.compile(r"arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,256}")


@dataclass(frozen=True)
class Thresholds:
    """The alarms' settings, validated once (the dashboard draws the same lines)."""

    error_percent: float
    throttle_percent: float
    latency_ms: float
    idle_minutes: int
    period_s: int
    evaluation_periods: int
    topic_arn: str | None

    @classmethod
    def from_config(cls, config: Config) -> Thresholds:
        topic = config.get("ALARM_TOPIC_ARN")
        if topic is not None and not _TOPIC.fullmatch(topic):
            raise ConfigError(
                f"ALARM_TOPIC_ARN={topic!r} must be an SNS topic ARN, arn:aws:sns:<region>:<account>:<topic> "
                "(`aws sns create-topic --name rag-alarms` prints one)"
            )
        period = config.integer("ALARM_PERIOD", 300, 60, 3600, step=60)
        periods = config.integer("ALARM_EVALUATION_PERIODS", 2, 1, 100)
        if period * periods > 86400:
            raise ConfigError(
                f"ALARM_PERIOD x ALARM_EVALUATION_PERIODS = {period * periods} s: CloudWatch evaluates at most a day"
            )
        return cls(
            error_percent=_bounded(config, "ALARM_5XX_PERCENT", 5.0, 100.0, "a percentage of invocations"),
            throttle_percent=_bounded(config, "ALARM_429_PERCENT", 10.0, 100.0, "a percentage of requests"),
            latency_ms=_bounded(config, "ALARM_P99_LATENCY_MS", 30000.0, 3_600_000.0, "milliseconds"),
            idle_minutes=config.integer("ALARM_IDLE_MINUTES", 30, 5, 1440, step=5),
            period_s=period,
            evaluation_periods=periods,
            topic_arn=topic,
        )


def _bounded(config: Config, name: str, default: float, high: float, unit: str) -> float:
    raw = config.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 < value <= high:
        raise ConfigError(f"{name}={raw!r} must be a number above 0 and at most {high:g} ({unit})")
    return value


def alarm_names(endpoint: Endpoint) -> list[str]:
    """Our alarms' names for `endpoint`."""
    return [f"{endpoint.name}-{kind}" for kind in KINDS]


def _stat(query_id: str, name: str, space: str, dimensions: dict, stat: str, period: int) -> dict:
    return {
        "Id": query_id,
        "MetricStat": {
            "Metric": {"Namespace": space, "MetricName": name, "Dimensions": as_list(dimensions)},
            "Period": period,
            "Stat": stat,
        },
        "ReturnData": False,
    }


def _rate(numerator: dict, denominator: dict, label: str) -> list[dict]:
    """A percentage by metric math; a period without errors counts as 0, one without traffic has no value."""
    expression = f"100 * FILL({numerator['Id']}, 0) / {denominator['Id']}"
    return [numerator, denominator, {"Id": "rate", "Expression": expression, "Label": label, "ReturnData": True}]


def alarm_requests(config: Config, endpoint: Endpoint, thresholds: Thresholds) -> list[dict]:
    """The PutMetricAlarm requests of `endpoint`, in KINDS order."""
    t, ours = thresholds, sagemaker_dimensions(endpoint)
    service = service_dimensions(config, endpoint)
    window = f"{t.evaluation_periods} periods of {t.period_s} s"
    see = f"See `make logs ENDPOINT_NAME={config.endpoint_name}` and the dashboard {config.endpoint_name}."
    common = {
        "EvaluationPeriods": t.evaluation_periods,
        "DatapointsToAlarm": t.evaluation_periods,
        "ComparisonOperator": "GreaterThanThreshold",
        "TreatMissingData": "notBreaching",
        "ActionsEnabled": True,
        "AlarmActions": [t.topic_arn] if t.topic_arn else [],
        "OKActions": [t.topic_arn] if t.topic_arn else [],
    }
    errors = _stat("errors", "Invocation5XXErrors", SAGEMAKER, ours, "Sum", t.period_s)
    invocations = _stat("invocations", "Invocations", SAGEMAKER, ours, "Sum", t.period_s)
    throttled = _stat("throttled", "Status429", namespace(config), service, "Sum", t.period_s)
    requests = _stat("requests", "Requests", namespace(config), service, "Sum", t.period_s)
    idle_periods = t.idle_minutes * 60 // IDLE_PERIOD_S
    names = dict(zip(KINDS, alarm_names(endpoint)))
    return [
        common
        | {
            "AlarmName": names["5xx-rate"],
            "AlarmDescription": f"{endpoint.name}: 5xx answers above {t.error_percent:g} % of invocations for {window}. {see}",
            "Metrics": _rate(errors, invocations, "5xx % of invocations"),
            "Threshold": t.error_percent,
        },
        common
        | {
            "AlarmName": names["p99-latency"],
            "AlarmDescription": f"{endpoint.name}: ModelLatency p99 above {t.latency_ms:g} ms for {window} "
            f"(SageMaker gives up at 60 s). {see}",
            "Namespace": SAGEMAKER,
            "MetricName": "ModelLatency",
            "Dimensions": as_list(ours),
            "ExtendedStatistic": "p99",
            "Period": t.period_s,
            "Threshold": t.latency_ms * 1000,  # ModelLatency is in microseconds
        },
        common
        | {
            "AlarmName": names["429-rate"],
            "AlarmDescription": f"{endpoint.name}: 429 overloaded above {t.throttle_percent:g} % of requests for "
            f"{window}: add instances (make autoscale) or raise RAG_MAX_CONCURRENT_REQUESTS. {see}",
            "Metrics": _rate(throttled, requests, "429 % of requests"),
            "Threshold": t.throttle_percent,
        },
        common
        | {
            "AlarmName": names["no-invocations"],
            "AlarmDescription": f"{endpoint.name}: no invocation for {t.idle_minutes} minutes. {see}",
            "Namespace": SAGEMAKER,
            "MetricName": "Invocations",
            "Dimensions": as_list(ours),
            "Statistic": "Sum",
            "Period": IDLE_PERIOD_S,
            "EvaluationPeriods": idle_periods,
            "DatapointsToAlarm": idle_periods,
            "Threshold": 1.0,
            "ComparisonOperator": "LessThanThreshold",
            # SageMaker publishes no datapoint for a minute without invocations: silence is the breach.
            "TreatMissingData": "breaching",
        },
    ]


def existing_alarms(aws: Aws, names: list[str]) -> dict[str, dict]:
    """Those of `names` that exist, by name."""
    found = aws.call("describe alarms", aws.cloudwatch.describe_alarms, AlarmNames=names, MaxRecords=100)
    return {alarm["AlarmName"]: alarm for alarm in found.get("MetricAlarms", [])}


def run_alarms(aws: Aws) -> int:
    """`alarms`: put (create or update) the four alarms of every endpoint of ARCH."""
    config = aws.config
    thresholds = Thresholds.from_config(config)
    for endpoint in endpoints(config):
        requests = alarm_requests(config, endpoint, thresholds)
        before = existing_alarms(aws, [request["AlarmName"] for request in requests])
        for request in requests:
            name = request["AlarmName"]
            aws.call(f"put alarm {name}", aws.cloudwatch.put_metric_alarm, **request)
            log.info("%s alarm %s: %s", "updated" if name in before else "created", name, request["AlarmDescription"])
    log.info("notifications: %s", thresholds.topic_arn or "none (set ALARM_TOPIC_ARN to an SNS topic ARN)")
    return 0


def delete_alarms(aws: Aws, endpoint: Endpoint) -> list[str]:
    """Delete our alarms of `endpoint` (those that exist); their labels."""
    found = sorted(existing_alarms(aws, alarm_names(endpoint)))
    if found:
        aws.call(f"delete the alarms of {endpoint.name}", aws.cloudwatch.delete_alarms, AlarmNames=found)
    for name in found:
        log.info("deleted alarm %s", name)
    return [f"alarm {name}" for name in found]


def alarm_summary(aws: Aws, endpoint: Endpoint) -> str:
    """One line for `status`: how many of our alarms exist, and which are not OK."""
    try:
        found = existing_alarms(aws, alarm_names(endpoint))
    except AccessDenied:
        return "alarms: not shown (the caller may not cloudwatch:DescribeAlarms)"
    if not found:
        return "no alarms (make alarms)"
    states: dict[str, list[str]] = {}
    for name, alarm in sorted(found.items()):
        states.setdefault(alarm["StateValue"], []).append(name)
    if set(states) == {"OK"}:
        return f"alarms: {len(found)}, all OK"
    return f"alarms: {len(found)}; " + "; ".join(
        f"{state}: {', '.join(names)}" for state, names in sorted(states.items()) if state != "OK"
    )
