"""make dashboard, make alarms and their clean-up against a real moto server (CloudWatch dashboards, alarms and
metric data); the dashboard's body and its picture; and the metric contract read back through the dashboard's
own definitions, so that a metric renamed on either side fails here.

moto 5.2.5 stores dashboards and alarms and answers GetMetricData for plain statistics, but it computes no
percentile (p50/p99 come back empty), evaluates no metric math beyond a bare id, and does not read embedded
metric format log lines: the round trip below queries SampleCount, and turns the contract's EMF documents
into PutMetricData calls the way CloudWatch Logs would.
"""

from __future__ import annotations

import json
import re
import struct
from datetime import UTC, datetime, timedelta

import pytest

from sagemaker_lifecycle.alarms import Thresholds, alarm_names, alarm_requests, alarm_summary, run_alarms
from sagemaker_lifecycle.config import Config
from sagemaker_lifecycle.dashboard import dashboard_body, expressions, metric_lines
from sagemaker_lifecycle.dashboard_image import render
from sagemaker_lifecycle.errors import ConfigError
from sagemaker_lifecycle.session import Aws
from sagemaker_lifecycle.topology import endpoints
from tests.aws.aws_support import REGION, make

# The metrics contract, as the service writes it (docs/operations.md): namespace RagService,
# dimensions Endpoint, Variant, Architecture (and Stage for StageLatency).
REQUEST_METRICS = {
    "Requests": "Count",
    "Status4xx": "Count",
    "Status429": "Count",
    "Status5xx": "Count",
    "RequestLatency": "Milliseconds",
    "PromptTokens": "Count",
    "CompletionTokens": "Count",
    "BatchSize": "Count",
}
CONTRACT_STAGES = ("admission", "queue", "embed", "search", "context", "prefill", "decode", "generation")
CONTRACT_STAGES += ("hop_vector", "hop_llm")
SAGEMAKER_METRICS = ("Invocations", "ModelLatency", "OverheadLatency", "Invocation4XXErrors", "Invocation5XXErrors")
INSTANCE_METRICS = ("CPUUtilization", "MemoryUtilization")
PANELS = {
    "Invocations and requests per minute",
    "ModelLatency p50 / p99 (ms)",
    "4xx / 5xx / 429 per minute",
    "Error rates, as the alarms see them (%)",
    "RequestLatency p50 / p99 (ms)",
    "StageLatency p50 by stage (ms)",
    "StageLatency p99 by stage (ms)",
    "Tokens per minute",
    "BatchSize (rows per decode step)",
    "CPUUtilization (%, 100 per core)",
    "MemoryUtilization (%)",
}


def body_of(**values: str) -> dict:
    return dashboard_body(Config({"REGION": REGION, **values}), REGION)


def graphs(widgets: list[dict]) -> dict[str, dict]:
    return {widget["properties"]["title"]: widget for widget in widgets if widget["type"] == "metric"}


def bands(body: dict) -> list[list[dict]]:
    """The widgets of each endpoint: a text header, then its graphs."""
    found: list[list[dict]] = []
    for widget in sorted(body["widgets"], key=lambda widget: (widget["y"], widget["x"])):
        if widget["type"] == "text":
            found.append([])
        found[-1].append(widget)
    return found


def test_the_body_charts_every_panel_of_one_endpoint():
    body = body_of()
    [band] = bands(body)
    assert band[0]["properties"]["markdown"] == (
        "### rag-monolito: the endpoint (Architecture=monolith, namespaces AWS/SageMaker, RagService)"
    )
    panels = graphs(band)
    assert set(panels) == PANELS
    taken = set()  # the 24-column grid: every cell at most once, nothing outside
    for widget in body["widgets"]:
        cells = {
            (x, y)
            for x in range(widget["x"], widget["x"] + widget["width"])
            for y in range(widget["y"], widget["y"] + widget["height"])
        }
        assert not cells & taken and all(0 <= x < 24 for x, _ in cells), widget
        taken |= cells
    assert len(taken) == 24 * 19  # full rows: a header and three rows of graphs, no gaps

    charted = {(line.namespace, line.name, line.stat(w)) for w in panels.values() for line in metric_lines(w)}
    assert {("AWS/SageMaker", "ModelLatency", stat) for stat in ("p50", "p99")} <= charted
    assert {
        ("AWS/SageMaker", name, "Sum") for name in ("Invocations", "Invocation4XXErrors", "Invocation5XXErrors")
    } <= charted
    assert {("/aws/sagemaker/Endpoints", name, "Maximum") for name in INSTANCE_METRICS} <= charted
    assert {("RagService", "RequestLatency", stat) for stat in ("p50", "p99")} <= charted
    assert {("RagService", name, "Sum") for name in ("Requests", "Status4xx", "Status429", "Status5xx")} <= charted
    assert {("RagService", "PromptTokens", "Sum"), ("RagService", "BatchSize", "Average")} <= charted
    for widget in panels.values():
        assert widget["properties"]["region"] == REGION
        for line in metric_lines(widget):
            if line.namespace == "RagService":
                assert line.dimensions.items() >= {"Endpoint": "rag-monolito", "Variant": "AllTraffic"}.items()
                assert line.dimensions["Architecture"] == "monolith"
            else:
                assert line.dimensions == {"EndpointName": "rag-monolito", "VariantName": "AllTraffic"}
        ids = {line.options["id"] for line in metric_lines(widget) if "id" in line.options}
        for expression in expressions(widget):  # metric math names only metrics of its own widget
            assert set(re.findall(r"\b[a-z]\w*", expression["expression"])) <= ids, expression
    stages = [line.dimensions["Stage"] for line in metric_lines(panels["StageLatency p50 by stage (ms)"])]
    assert stages == ["admission", "embed", "search", "context", "queue", "prefill", "decode", "generation"]
    rates = panels["Error rates, as the alarms see them (%)"]["properties"]
    assert rates["period"] == 300 and [line["value"] for line in rates["annotations"]["horizontal"]] == [5.0, 10.0]
    latency = panels["ModelLatency p50 / p99 (ms)"]["properties"]
    assert latency["annotations"]["horizontal"] == [{"label": "p99 alarm", "value": 30000.0}]


def test_the_split_body_has_a_band_per_endpoint_the_front_first():
    body = body_of(ARCH="split", ENDPOINT_NAME="shop", ALARM_P99_LATENCY_MS="12000", RAG_METRICS_NAMESPACE="Shop/Rag")
    front, llm = bands(body)
    assert front[0]["properties"]["markdown"].startswith("### shop: the front")
    assert llm[0]["properties"]["markdown"].startswith("### shop-llm: the LLM endpoint")
    assert min(w["y"] for w in llm) == max(w["y"] + w["height"] for w in front)
    for band, name, kind in ((front, "shop", "microservices"), (llm, "shop-llm", "llm")):
        panels = graphs(band)
        assert set(panels) == PANELS
        for line in (line for widget in panels.values() for line in metric_lines(widget)):
            assert name in (line.dimensions.get("Endpoint"), line.dimensions.get("EndpointName"))
            if "Endpoint" in line.dimensions:
                assert (line.namespace, line.dimensions["Architecture"]) == ("Shop/Rag", kind)
        latency = panels["ModelLatency p50 / p99 (ms)"]["properties"]["annotations"]["horizontal"]
        assert latency == [{"label": "p99 alarm", "value": 12000.0}]
    front_stages = {line.dimensions["Stage"] for line in metric_lines(graphs(front)["StageLatency p99 by stage (ms)"])}
    llm_stages = [line.dimensions["Stage"] for line in metric_lines(graphs(llm)["StageLatency p99 by stage (ms)"])]
    assert {"hop_vector", "hop_llm"} <= front_stages and llm_stages == [
        "admission",
        "queue",
        "prefill",
        "decode",
        "generation",
    ]


def test_make_dashboard_and_alarms_update_in_place_and_clean_deletes_exactly_theirs(moto, aws_env):
    cloudwatch = moto.client("cloudwatch")
    topic = moto.client("sns").create_topic(Name="rag-alarms")["TopicArn"]
    # Someone else's, under names that start like ours: clean must leave them alone.
    cloudwatch.put_dashboard(DashboardName="rag-monolito-team", DashboardBody=json.dumps({"widgets": []}))
    cloudwatch.put_metric_alarm(
        AlarmName="rag-monolito-5xx-rate-team",
        Namespace="AWS/SageMaker",
        MetricName="Invocations",
        Statistic="Sum",
        Period=60,
        EvaluationPeriods=1,
        Threshold=1.0,
        ComparisonOperator="GreaterThanThreshold",
    )
    where = f"REGION={REGION}"

    first = make("dashboard", aws_env, where)
    assert first.returncode == 0, first.stderr
    assert "endpoint rag-monolito does not exist in us-east-1 yet" in first.stdout
    assert "created dashboard rag-monolito: 11 graphs for rag-monolito" in first.stdout
    stored = json.loads(cloudwatch.get_dashboard(DashboardName="rag-monolito")["DashboardBody"])
    assert stored == body_of()
    again = make("dashboard", aws_env, where, "ALARM_5XX_PERCENT=2")
    assert again.returncode == 0 and "updated dashboard rag-monolito" in again.stdout, again.stderr
    stored = json.loads(cloudwatch.get_dashboard(DashboardName="rag-monolito")["DashboardBody"])
    assert stored == body_of(ALARM_5XX_PERCENT="2")
    assert sorted(e["DashboardName"] for e in cloudwatch.list_dashboards()["DashboardEntries"]) == [
        "rag-monolito",
        "rag-monolito-team",
    ]

    settings = (f"ALARM_TOPIC_ARN={topic}", "ALARM_P99_LATENCY_MS=20000", "ALARM_IDLE_MINUTES=15")
    alarms = make("alarms", aws_env, where, *settings)
    assert alarms.returncode == 0, alarms.stderr
    names = [
        "rag-monolito-5xx-rate",
        "rag-monolito-p99-latency",
        "rag-monolito-429-rate",
        "rag-monolito-no-invocations",
    ]
    assert [f"created alarm {name}:" in alarms.stdout for name in names] == [True] * 4
    assert f"notifications: {topic}" in alarms.stdout
    stored = {a["AlarmName"]: a for a in cloudwatch.describe_alarms(AlarmNames=names)["MetricAlarms"]}
    assert sorted(stored) == sorted(names)
    for alarm in stored.values():
        assert alarm["AlarmActions"] == [topic] and alarm["OKActions"] == [topic]
    latency, idle = stored["rag-monolito-p99-latency"], stored["rag-monolito-no-invocations"]
    assert (latency["MetricName"], latency["ExtendedStatistic"], latency["Threshold"]) == ("ModelLatency", "p99", 2e7)
    assert latency["Dimensions"] == [
        {"Name": "EndpointName", "Value": "rag-monolito"},
        {"Name": "VariantName", "Value": "AllTraffic"},
    ]
    assert (idle["MetricName"], idle["Statistic"], idle["Period"], idle["EvaluationPeriods"]) == (
        "Invocations",
        "Sum",
        300,
        3,
    )
    assert (idle["ComparisonOperator"], idle["Threshold"], idle["TreatMissingData"]) == (
        "LessThanThreshold",
        1.0,
        "breaching",
    )
    assert stored["rag-monolito-5xx-rate"]["Threshold"] == 5.0 and stored["rag-monolito-429-rate"]["Threshold"] == 10.0

    repeat = make("alarms", aws_env, where, *settings, "ALARM_5XX_PERCENT=1.5")
    assert repeat.returncode == 0 and repeat.stdout.count("updated alarm rag-monolito-") == 4, repeat.stderr
    assert "created alarm" not in repeat.stdout
    assert cloudwatch.describe_alarms(AlarmNames=names[:1])["MetricAlarms"][0]["Threshold"] == 1.5
    assert len(cloudwatch.describe_alarms()["MetricAlarms"]) == 5

    clean = make("clean", aws_env, where)
    assert clean.returncode == 0, clean.stderr
    assert all(f"deleted alarm {name}" in clean.stdout for name in names)
    assert "deleted dashboard rag-monolito\n" in clean.stdout and "removed 5 resource(s)" in clean.stdout
    assert [e["DashboardName"] for e in cloudwatch.list_dashboards()["DashboardEntries"]] == ["rag-monolito-team"]
    assert [a["AlarmName"] for a in cloudwatch.describe_alarms()["MetricAlarms"]] == ["rag-monolito-5xx-rate-team"]
    assert "nothing was left to delete" in make("clean", aws_env, where).stdout


def test_split_dashboard_covers_both_endpoints_and_clean_removes_everything(moto, aws_env):
    cloudwatch, split = moto.client("cloudwatch"), (f"REGION={REGION}", "ARCH=split")
    for target in ("dashboard", "alarms"):
        result = make(target, aws_env, *split)
        assert result.returncode == 0, result.stderr
    assert [e["DashboardName"] for e in cloudwatch.list_dashboards()["DashboardEntries"]] == ["rag-split"]
    stored = json.loads(cloudwatch.get_dashboard(DashboardName="rag-split")["DashboardBody"])
    assert [band[0]["properties"]["markdown"].split(":")[0] for band in bands(stored)] == [
        "### rag-split",
        "### rag-split-llm",
    ]
    alarms = sorted(a["AlarmName"] for a in cloudwatch.describe_alarms()["MetricAlarms"])
    expected = [name for endpoint in endpoints(Config({"ARCH": "split"})) for name in alarm_names(endpoint)]
    assert alarms == sorted(expected) and len(alarms) == 8 and "rag-split-llm-p99-latency" in alarms
    clean = make("clean", aws_env, *split)
    assert clean.returncode == 0 and "removed 9 resource(s) of endpoint rag-split-llm and rag-split" in clean.stdout
    assert cloudwatch.list_dashboards()["DashboardEntries"] == [] and cloudwatch.describe_alarms()["MetricAlarms"] == []


def in_process(aws_env, monkeypatch, **values: str) -> Aws:
    for key, value in aws_env.items():
        monkeypatch.setenv(key, value)
    return Aws(Config({"REGION": REGION, **values}))


def test_the_alarms_metric_math_periods_and_the_status_line(moto, aws_env, monkeypatch):
    """The metric math and the periods as CloudWatch (moto) stores them, and `status`'s summary of the states."""
    aws = in_process(aws_env, monkeypatch, ENDPOINT_NAME="shop", ALARM_PERIOD="120", ALARM_EVALUATION_PERIODS="3")
    [endpoint] = endpoints(aws.config)
    assert alarm_summary(aws, endpoint) == "no alarms (make alarms)"
    assert run_alarms(aws) == 0
    cloudwatch = moto.client("cloudwatch")
    described = cloudwatch.describe_alarms(AlarmNames=alarm_names(endpoint))["MetricAlarms"]
    stored = {alarm["AlarmName"].removeprefix("shop-"): alarm for alarm in described}
    errors, latency, throttled, idle = (
        stored[kind] for kind in ("5xx-rate", "p99-latency", "429-rate", "no-invocations")
    )
    sagemaker = [{"Name": "EndpointName", "Value": "shop"}, {"Name": "VariantName", "Value": "AllTraffic"}]
    assert errors["Metrics"] == [
        *(
            {
                "Id": query_id,
                "MetricStat": {
                    "Metric": {"Namespace": "AWS/SageMaker", "MetricName": name, "Dimensions": sagemaker},
                    "Period": 120,
                    "Stat": "Sum",
                },
                "ReturnData": False,
            }
            for query_id, name in (("errors", "Invocation5XXErrors"), ("invocations", "Invocations"))
        ),
        {
            "Id": "rate",
            "Expression": "100 * FILL(errors, 0) / invocations",
            "Label": "5xx % of invocations",
            "ReturnData": True,
        },
    ]
    assert [query["MetricStat"]["Metric"] for query in throttled["Metrics"][:2]] == [
        {
            "Namespace": "RagService",
            "MetricName": name,
            "Dimensions": [
                {"Name": "Endpoint", "Value": "shop"},
                {"Name": "Variant", "Value": "AllTraffic"},
                {"Name": "Architecture", "Value": "monolith"},
            ],
        }
        for name in ("Status429", "Requests")
    ]
    assert throttled["Metrics"][2]["Expression"] == "100 * FILL(throttled, 0) / requests"
    for request in (errors, latency, throttled):
        assert (request["EvaluationPeriods"], request["DatapointsToAlarm"], request["TreatMissingData"]) == (
            3,
            3,
            "notBreaching",
        )
    assert latency["Period"] == 120 and (idle["Period"], idle["EvaluationPeriods"]) == (300, 6)
    assert errors["AlarmActions"] == [] and errors["OKActions"] == []  # no ALARM_TOPIC_ARN

    assert alarm_summary(aws, endpoint) == "alarms: 4, all OK"  # moto starts alarms OK (AWS: INSUFFICIENT_DATA)
    cloudwatch.set_alarm_state(AlarmName="shop-5xx-rate", StateValue="ALARM", StateReason="test")
    cloudwatch.set_alarm_state(AlarmName="shop-no-invocations", StateValue="INSUFFICIENT_DATA", StateReason="test")
    assert alarm_summary(aws, endpoint) == "alarms: 4; ALARM: shop-5xx-rate; INSUFFICIENT_DATA: shop-no-invocations"


BAD_SETTINGS = [
    ({"ALARM_5XX_PERCENT": "0"}, "ALARM_5XX_PERCENT='0' must be a number above 0 and at most 100"),
    ({"ALARM_429_PERCENT": "lots"}, "ALARM_429_PERCENT='lots' must be a number above 0"),
    ({"ALARM_IDLE_MINUTES": "7"}, "ALARM_IDLE_MINUTES=7 must be an integer from 5 to 1440 in steps of 5"),
    ({"ALARM_PERIOD": "90"}, "ALARM_PERIOD=90 must be an integer from 60 to 3600 in steps of 60"),
    ({"ALARM_PERIOD": "3600", "ALARM_EVALUATION_PERIODS": "48"}, "CloudWatch evaluates at most a day"),
    ({"ALARM_TOPIC_ARN": "rag-alarms"}, "ALARM_TOPIC_ARN='rag-alarms' must be an SNS topic ARN"),
]


def test_alarm_settings_are_checked_and_a_bad_one_is_one_line_before_anything_is_made(moto, aws_env):
    for values, message in BAD_SETTINGS:
        with pytest.raises(ConfigError, match=re.escape(message)):
            Thresholds.from_config(Config(values))
    result = make("alarms", aws_env, f"REGION={REGION}", "ALARM_TOPIC_ARN=arn:aws:sqs:us-east-1:123456789012:q")
    assert result.returncode == 2 and "error: ALARM_TOPIC_ARN='arn:aws:sqs" in result.stderr
    assert "Traceback" not in result.stderr
    assert moto.client("cloudwatch").describe_alarms()["MetricAlarms"] == []


def emf_to_metric_data(document: dict) -> list[tuple[str, list[dict]]]:
    """What CloudWatch Logs makes of one embedded-metric-format document: (namespace, MetricData) per dimension set."""
    calls = []
    for directive in document["_aws"]["CloudWatchMetrics"]:
        for dimension_set in directive["Dimensions"]:
            dimensions = [{"Name": name, "Value": document[name]} for name in dimension_set]
            data = []
            for metric in directive["Metrics"]:
                value = document[metric["Name"]]
                values = value if isinstance(value, list) else [value]
                data.append(
                    {
                        "MetricName": metric["Name"],
                        "Dimensions": dimensions,
                        "Values": [float(v) for v in values],
                        "Unit": metric.get("Unit", "None"),
                    }
                )
            calls.append((directive["Namespace"], data))
    return calls


def contract_documents(endpoint: str, architecture: str) -> list[dict]:
    """One request's EMF documents as the contract describes them: the request's metrics, then one per stage."""
    now = int(datetime.now(UTC).timestamp() * 1000)
    identity = {"Endpoint": endpoint, "Variant": "AllTraffic", "Architecture": architecture}

    def document(metrics: dict, dimensions: list[str], values: dict) -> dict:
        directive = {
            "Namespace": "RagService",
            "Dimensions": [dimensions],
            "Metrics": [{"Name": name, "Unit": unit} for name, unit in metrics.items()],
        }
        return {"_aws": {"Timestamp": now, "CloudWatchMetrics": [directive]}, **identity, **values}

    request = document(REQUEST_METRICS, list(identity), dict.fromkeys(REQUEST_METRICS, 1))
    stages = [
        document({"StageLatency": "Milliseconds"}, [*identity, "Stage"], {"Stage": stage, "StageLatency": [4.0, 6.0]})
        for stage in CONTRACT_STAGES
    ]
    return [request, *stages]


@pytest.mark.parametrize("values", [{"ENDPOINT_NAME": "contract-mono"}, {"ARCH": "split", "ENDPOINT_NAME": "contract"}])
def test_metric_data_of_the_contract_is_read_back_through_the_dashboards_definitions(moto, values):
    cloudwatch = moto.client("cloudwatch")
    config = Config({"REGION": REGION, **values})
    architectures = {"monolito": ["monolith"], "split": ["llm", "microservices"]}[config.arch]
    for endpoint, architecture in zip(endpoints(config), architectures):
        for document in contract_documents(endpoint.name, architecture):
            for space, data in emf_to_metric_data(document):
                cloudwatch.put_metric_data(Namespace=space, MetricData=data)
        sagemaker = [{"Name": "EndpointName", "Value": endpoint.name}, {"Name": "VariantName", "Value": "AllTraffic"}]
        for space, names in (("AWS/SageMaker", SAGEMAKER_METRICS), ("/aws/sagemaker/Endpoints", INSTANCE_METRICS)):
            data = [{"MetricName": name, "Dimensions": sagemaker, "Value": 1.0} for name in names]
            cloudwatch.put_metric_data(Namespace=space, MetricData=data)

    body = dashboard_body(config, REGION)
    lines = {
        (line.namespace, line.name, tuple(line.dimensions.items())): line
        for widget in body["widgets"]
        for line in metric_lines(widget)
    }
    now = datetime.now(UTC)
    queries = [
        {
            "Id": f"q{number}",
            "MetricStat": {
                "Metric": {
                    "Namespace": space,
                    "MetricName": name,
                    "Dimensions": [{"Name": k, "Value": v} for k, v in dims],
                },
                "Period": 60,
                "Stat": "SampleCount",
            },
        }
        for number, (space, name, dims) in enumerate(lines)
    ]
    results = cloudwatch.get_metric_data(
        MetricDataQueries=queries, StartTime=now - timedelta(minutes=10), EndTime=now + timedelta(minutes=5)
    )["MetricDataResults"]
    values = {result["Id"]: result["Values"] for result in results}
    empty = [key for number, key in enumerate(lines) if not values[f"q{number}"]]
    assert not empty, f"dashboard metrics that the contract's data does not feed: {empty}"
    for space, name, dims in lines:  # GetMetricData in moto ignores the namespace when dimensions are given
        found = cloudwatch.list_metrics(
            Namespace=space, MetricName=name, Dimensions=[{"Name": k, "Value": v} for k, v in dims]
        )["Metrics"]
        assert found, (space, name, dims)
    charted = {(space, name) for space, name, _ in lines}
    contract = {("RagService", name) for name in [*REQUEST_METRICS, "StageLatency"]}
    contract |= {("AWS/SageMaker", name) for name in SAGEMAKER_METRICS}
    contract |= {("/aws/sagemaker/Endpoints", name) for name in INSTANCE_METRICS}
    assert charted == contract
    stages = {dict(dims).get("Stage") for _, _, dims in lines} - {None}
    assert stages <= set(CONTRACT_STAGES)
    for endpoint in endpoints(config):  # the alarms watch contract metrics too
        for request in alarm_requests(config, endpoint, Thresholds.from_config(config)):
            watched = [query["MetricStat"]["Metric"] for query in request.get("Metrics", []) if "MetricStat" in query]
            watched += [request] if "MetricName" in request else []
            assert {(metric["Namespace"], metric["MetricName"]) for metric in watched} <= contract


def test_dashboard_image_draws_every_widget_with_its_metrics(tmp_path):
    body = body_of(ARCH="split")
    path = tmp_path / "dashboard.png"
    drawn = render(body, path, "the layout")
    text = "\n".join(drawn)
    for widget in body["widgets"]:
        if widget["type"] == "metric":
            assert widget["properties"]["title"] in drawn
            assert all(f"{line.namespace}: {line.name} " in text for line in metric_lines(widget))
            assert all(expression["expression"] in text for expression in expressions(widget))
    png = path.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", png[16:24])
    rows = max(widget["y"] + widget["height"] for widget in body["widgets"])
    assert width == 1620 and abs(height - (rows + 1.6) * 0.42 * 90) <= 1


def test_make_dashboard_image(aws_env, tmp_path):
    target = tmp_path / "pictures" / "split.png"
    result = make("dashboard-image", aws_env, "ARCH=split", f"DASHBOARD_PNG={target}")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"wrote {target} (22 graphs)" and target.stat().st_size > 10_000


def test_clean_without_cloudwatch_permissions_still_deletes_the_endpoint_side_and_says_what_it_left(moto, aws_env):
    """An operator who may not touch CloudWatch: clean warns about the alarms and the dashboard and goes on."""
    for target in ("dashboard", "alarms"):
        assert make(target, aws_env, f"REGION={REGION}").returncode == 0
    allowed = ["sagemaker:*", "application-autoscaling:*"]
    clean = moto.make_as_user("no-cloudwatch", allowed, "clean", aws_env, f"REGION={REGION}")
    assert clean.returncode == 0, clean.stderr
    assert "the alarms of rag-monolito not deleted: access denied while trying to describe alarms" in clean.stdout
    assert "the dashboard not deleted: access denied while trying to list dashboards" in clean.stdout
    assert "nothing was left to delete" in clean.stdout
    cloudwatch = moto.client("cloudwatch")
    assert (
        len(cloudwatch.describe_alarms()["MetricAlarms"]) == 4
        and len(cloudwatch.list_dashboards()["DashboardEntries"]) == 1
    )
