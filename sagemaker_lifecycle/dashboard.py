"""dashboard: one CloudWatch dashboard, named ENDPOINT_NAME, with a band of panels per endpoint of ARCH (split:
the front, then the LLM endpoint it calls).

Each band: invocations and requests; ModelLatency p50/p99 in ms (with the p99 alarm's line); 4xx/5xx/429
counts; the alarms' error rates (with their lines); RequestLatency p50/p99; StageLatency p50 and p99 by
stage; tokens; batch size; CPU and memory. The body is built by one function, `dashboard_body`, from the
same metric definitions the alarms use (metrics.py); `make dashboard-image` draws it. PutDashboard replaces
a dashboard of the same name, so running `make dashboard` again updates it.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

from .alarms import Thresholds
from .config import Config
from .endpoint_status import describe_endpoint
from .metrics import INSTANCES, SAGEMAKER, STAGES, architecture, namespace, sagemaker_dimensions, service_dimensions
from .session import Aws
from .topology import Endpoint, endpoints

log = logging.getLogger(__name__)

HEIGHT = 6  # grid rows of a graph; the grid is 24 columns wide
ROLES = {
    "endpoint": "the endpoint",
    "front": "the front: orchestrator and vector service",
    "llm": "the LLM endpoint, called by the front",
}


@dataclass(frozen=True)
class MetricLine:
    """One metric of a widget, read back from the dashboard's array form."""

    namespace: str
    name: str
    dimensions: dict[str, str]
    options: dict

    def stat(self, widget: dict) -> str:
        """Its statistic: its own, else the widget's."""
        return self.options.get("stat", widget["properties"].get("stat", "Average"))


def metric_lines(widget: dict) -> list[MetricLine]:
    """The metrics of a metric widget (expressions left out): `[namespace, name, dim, value, ..., {options}]`."""
    lines = []
    for row in widget.get("properties", {}).get("metrics", []):
        options = row[-1] if isinstance(row[-1], dict) else {}
        parts = row[:-1] if options else row
        if parts:
            space, name, *pairs = parts
            lines.append(MetricLine(space, name, dict(zip(pairs[::2], pairs[1::2])), options))
    return lines


def expressions(widget: dict) -> list[dict]:
    """The metric math rows of a widget: `[{"expression": ..., "label": ..., "id": ...}]`."""
    rows = widget.get("properties", {}).get("metrics", [])
    return [row[0] for row in rows if len(row) == 1 and "expression" in row[0]]


def _metric(space: str, name: str, dimensions: dict[str, str], **options) -> list:
    row = [space, name, *(part for pair in dimensions.items() for part in pair)]
    return row + [options] if options else row


def _expression(expression: str, label: str, query_id: str) -> list:
    return [{"expression": expression, "label": label, "id": query_id}]


def _graph(title: str, x: int, y: int, width: int, metrics: list, region: str, **properties) -> dict:
    settings = {"view": "timeSeries", "stacked": False, "period": 60, "stat": "Sum"} | properties
    unit = settings.pop("unit", None)
    if unit:
        settings["yAxis"] = {"left": {"label": unit, "showUnits": False, "min": 0}}
    return {
        "type": "metric",
        "x": x,
        "y": y,
        "width": width,
        "height": HEIGHT,
        "properties": {"title": title, "region": region, "metrics": metrics, **settings},
    }


def _line(label: str, value: float) -> dict:
    return {"horizontal": [{"label": label, "value": value}]}


def endpoint_widgets(config: Config, endpoint: Endpoint, region: str, thresholds: Thresholds, y: int) -> list[dict]:
    """The band of one endpoint, from grid row `y`: a title line and three rows of graphs."""
    ours, space = sagemaker_dimensions(endpoint), namespace(config)
    service, kind = service_dimensions(config, endpoint), architecture(config, endpoint)
    title = f"### {endpoint.name}: {ROLES[endpoint.part]} (Architecture={kind}, namespaces {SAGEMAKER}, {space})"
    header = {"type": "text", "x": 0, "y": y, "width": 24, "height": 1, "properties": {"markdown": title}}
    top, middle, bottom = y + 1, y + 1 + HEIGHT, y + 1 + 2 * HEIGHT
    rate_lines = {
        "horizontal": [
            {"label": "5xx alarm", "value": thresholds.error_percent},
            {"label": "429 alarm", "value": thresholds.throttle_percent},
        ]
    }

    def stages(stat: str) -> list:
        return [
            _metric(space, "StageLatency", service_dimensions(config, endpoint, stage), stat=stat, label=stage)
            for stage in STAGES[kind]
        ]

    def spread(name: str, source: str, dimensions: dict) -> list:
        return [_metric(source, name, dimensions, stat=stat, label=stat) for stat in ("Average", "Maximum")]

    return [
        header,
        _graph(
            "Invocations and requests per minute",
            0,
            top,
            6,
            [
                _metric(SAGEMAKER, "Invocations", ours, label="Invocations (SageMaker)"),
                _metric(space, "Requests", service, label="Requests (service)"),
            ],
            region,
        ),
        _graph(
            "ModelLatency p50 / p99 (ms)",
            6,
            top,
            6,
            [
                _metric(SAGEMAKER, "ModelLatency", ours, stat="p50", id="model50", visible=False),
                _metric(SAGEMAKER, "ModelLatency", ours, stat="p99", id="model99", visible=False),
                _metric(SAGEMAKER, "OverheadLatency", ours, stat="p99", id="overhead99", visible=False),
                _expression("model50 / 1000", "ModelLatency p50", "p50"),
                _expression("model99 / 1000", "ModelLatency p99", "p99"),
                _expression("overhead99 / 1000", "OverheadLatency p99", "overhead"),
            ],
            region,
            unit="ms",
            annotations=_line("p99 alarm", thresholds.latency_ms),
        ),
        _graph(
            "4xx / 5xx / 429 per minute",
            12,
            top,
            6,
            [
                _metric(SAGEMAKER, "Invocation4XXErrors", ours, label="4xx (SageMaker)"),
                _metric(SAGEMAKER, "Invocation5XXErrors", ours, label="5xx (SageMaker)"),
                _metric(space, "Status4xx", service, label="4xx (service)"),
                _metric(space, "Status429", service, label="429 overloaded (service)"),
                _metric(space, "Status5xx", service, label="5xx (service)"),
            ],
            region,
        ),
        _graph(
            "Error rates, as the alarms see them (%)",
            18,
            top,
            6,
            [
                _metric(SAGEMAKER, "Invocations", ours, id="invocations", visible=False),
                _metric(SAGEMAKER, "Invocation5XXErrors", ours, id="errors5xx", visible=False),
                _metric(SAGEMAKER, "Invocation4XXErrors", ours, id="errors4xx", visible=False),
                _metric(space, "Requests", service, id="requests", visible=False),
                _metric(space, "Status429", service, id="throttled", visible=False),
                _expression("100 * FILL(errors5xx, 0) / invocations", "5xx % of invocations", "rate5xx"),
                _expression("100 * FILL(errors4xx, 0) / invocations", "4xx % of invocations", "rate4xx"),
                _expression("100 * FILL(throttled, 0) / requests", "429 % of requests", "rate429"),
            ],
            region,
            period=thresholds.period_s,
            unit="%",
            annotations=rate_lines,
        ),
        _graph(
            "RequestLatency p50 / p99 (ms)",
            0,
            middle,
            8,
            [_metric(space, "RequestLatency", service, stat=stat, label=stat) for stat in ("p50", "p99")],
            region,
            unit="ms",
        ),
        _graph("StageLatency p50 by stage (ms)", 8, middle, 8, stages("p50"), region, stat="p50", unit="ms"),
        _graph("StageLatency p99 by stage (ms)", 16, middle, 8, stages("p99"), region, stat="p99", unit="ms"),
        _graph(
            "Tokens per minute",
            0,
            bottom,
            6,
            [_metric(space, name, service, label=name) for name in ("PromptTokens", "CompletionTokens")],
            region,
        ),
        _graph(
            "BatchSize (rows per decode step)",
            6,
            bottom,
            6,
            spread("BatchSize", space, service),
            region,
            stat="Average",
        ),
        _graph(
            "CPUUtilization (%, 100 per core)",
            12,
            bottom,
            6,
            spread("CPUUtilization", INSTANCES, ours),
            region,
            stat="Average",
            unit="%",
        ),
        _graph(
            "MemoryUtilization (%)",
            18,
            bottom,
            6,
            spread("MemoryUtilization", INSTANCES, ours),
            region,
            stat="Average",
            unit="%",
        ),
    ]


def dashboard_body(config: Config, region: str) -> dict:
    """The DashboardBody of ARCH's endpoint(s): one band each, the endpoint clients call first."""
    thresholds = Thresholds.from_config(config)
    widgets: list[dict] = []
    for endpoint in reversed(endpoints(config)):
        y = max((widget["y"] + widget["height"] for widget in widgets), default=0)
        widgets += endpoint_widgets(config, endpoint, region, thresholds, y)
    return {"start": "-PT3H", "periodOverride": "inherit", "widgets": widgets}


def dashboard_exists(aws: Aws, name: str) -> bool:
    """Whether a dashboard of exactly this name exists (ListDashboards by prefix, every page)."""
    token = None
    while True:
        page = aws.call(
            "list dashboards",
            aws.cloudwatch.list_dashboards,
            DashboardNamePrefix=name,
            **({"NextToken": token} if token else {}),
        )
        if any(entry["DashboardName"] == name for entry in page.get("DashboardEntries", [])):
            return True
        token = page.get("NextToken")
        if not token:
            return False


def run_dashboard(aws: Aws) -> int:
    """`dashboard`: put (create or update) the dashboard; warn about endpoints that do not exist yet."""
    config = aws.config
    name, body = config.endpoint_name, dashboard_body(config, aws.region)
    names = [endpoint.name for endpoint in reversed(endpoints(config))]
    for endpoint in names:
        if describe_endpoint(aws, endpoint) is None:
            log.warning(
                "endpoint %s does not exist in %s yet: its panels stay empty until `make deploy`", endpoint, aws.region
            )
    existed = dashboard_exists(aws, name)
    answer = aws.call(
        f"put dashboard {name}", aws.cloudwatch.put_dashboard, DashboardName=name, DashboardBody=json.dumps(body)
    )
    for message in answer.get("DashboardValidationMessages", []):
        log.warning("dashboard %s: %s (%s)", name, message.get("Message"), message.get("DataPath"))
    graphs = sum(widget["type"] == "metric" for widget in body["widgets"])
    log.info(
        "%s dashboard %s: %d graphs for %s", "updated" if existed else "created", name, graphs, " and ".join(names)
    )
    log.info(
        "open it: https://%s.console.aws.amazon.com/cloudwatch/home?region=%s#dashboards/dashboard/%s",
        aws.region,
        aws.region,
        name,
    )
    return 0


def delete_dashboard(aws: Aws) -> list[str]:
    """Delete the dashboard of ENDPOINT_NAME if it exists; its label."""
    name = aws.config.endpoint_name
    if not dashboard_exists(aws, name):
        return []
    aws.call(f"delete dashboard {name}", aws.cloudwatch.delete_dashboards, DashboardNames=[name])
    log.info("deleted dashboard %s", name)
    return [f"dashboard {name}"]
