"""deploy passes the operator's RAG_* variables, MODEL_SERVER_WORKERS, MODEL_SERVER_TIMEOUT and OTEL_* to the
container only when the services would accept them, and says which it passes."""

from __future__ import annotations

import pytest

from tests.aws.aws_support import make


@pytest.mark.parametrize(
    "variable, message",
    [
        ("RAG_TOPK=4", "RAG_TOPK: not a variable the services read"),
        ("RAG_TOP_K=99", "RAG_TOP_K=99 is out of range"),
        ("RAG_DEVICE=tpu", "RAG_DEVICE='tpu' is not valid"),
        ("RAG_BIND_HOST=127.0.0.1", "RAG_BIND_HOST is not passed to an endpoint"),
        ("MODEL_SERVER_WORKERS=0", "MODEL_SERVER_WORKERS=0 is out of range"),
        ("MODEL_SERVER_TIMEOUT=2m", "MODEL_SERVER_TIMEOUT='2m' is not an integer"),
        ("OTEL_TRACES_EXPORTER=zipkin", "OTEL_TRACES_EXPORTER='zipkin' is not supported"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:4318", "the endpoint's own loopback, where no collector runs"),
        ("OTEL_TRACES_EXPORTER=otlp", "OTEL_TRACES_EXPORTER=otlp without an endpoint sends traces to"),
    ],
)
def test_deploy_refuses_a_variable_the_container_would_refuse(moto, aws_env, account, index_dir, variable, message):
    assert make("upload", aws_env, *account.variables(f"INDEX={index_dir}")).returncode == 0
    # Set in the operator's shell, not on the command line: the case that used to slip through.
    name, _, value = variable.partition("=")
    deploy = make("deploy", dict(aws_env, **{name: value}), *account.variables())
    assert deploy.returncode == 2 and message in deploy.stderr, deploy.stdout + deploy.stderr
    assert moto.client("sagemaker").list_models()["Models"] == []  # refused before anything was created


def test_deploy_says_which_variables_it_passes(moto, aws_env, account, index_dir):
    assert make("upload", aws_env, *account.variables(f"INDEX={index_dir}")).returncode == 0
    deploy = make("deploy", dict(aws_env, RAG_LOG_LEVEL="debug"), *account.variables("RAG_TOP_K=4"))
    assert deploy.returncode == 0, deploy.stderr
    assert "container environment: RAG_LOG_LEVEL=debug, RAG_TOP_K=4" in deploy.stdout
    sagemaker = moto.client("sagemaker")
    model = sagemaker.list_models()["Models"][0]["ModelName"]
    endpoint = sagemaker.list_endpoints()["Endpoints"][0]["EndpointName"]
    assert sagemaker.describe_model(ModelName=model)["PrimaryContainer"]["Environment"] == {
        "RAG_LOG_LEVEL": "debug",
        "RAG_TOP_K": "4",
        "RAG_ENDPOINT_NAME": endpoint,  # the metrics' dimensions (docs/operations.md)
        "RAG_VARIANT_NAME": "AllTraffic",
    }


def test_deploy_passes_the_gunicorn_variables(moto, aws_env, account, index_dir):
    """MODEL_SERVER_WORKERS and MODEL_SERVER_TIMEOUT keep SageMaker's names (no RAG_ prefix), and deploy passes them too."""
    assert make("upload", aws_env, *account.variables(f"INDEX={index_dir}")).returncode == 0
    deploy = make("deploy", dict(aws_env, MODEL_SERVER_WORKERS="2"), *account.variables("MODEL_SERVER_TIMEOUT=300"))
    assert deploy.returncode == 0, deploy.stderr
    assert "container environment: MODEL_SERVER_TIMEOUT=300, MODEL_SERVER_WORKERS=2" in deploy.stdout
    sagemaker = moto.client("sagemaker")
    model = sagemaker.list_models()["Models"][0]["ModelName"]
    endpoint = sagemaker.list_endpoints()["Endpoints"][0]["EndpointName"]
    assert sagemaker.describe_model(ModelName=model)["PrimaryContainer"]["Environment"] == {
        "MODEL_SERVER_TIMEOUT": "300",
        "MODEL_SERVER_WORKERS": "2",
        "RAG_ENDPOINT_NAME": endpoint,
        "RAG_VARIANT_NAME": "AllTraffic",
    }


def test_deploy_passes_the_opentelemetry_variables(moto, aws_env, account, index_dir):
    """Tracing on an endpoint: the OTEL_* variables reach the container, from the shell or the command line."""
    assert make("upload", aws_env, *account.variables(f"INDEX={index_dir}")).returncode == 0
    collector = "http://otel-collector.internal:4318"
    deploy = make(
        "deploy",
        dict(aws_env, OTEL_EXPORTER_OTLP_ENDPOINT=collector),
        *account.variables("OTEL_SERVICE_NAME=rag-prod", "OTEL_RESOURCE_ATTRIBUTES=team=search"),
    )
    assert deploy.returncode == 0, deploy.stderr
    assert (
        f"container environment: OTEL_EXPORTER_OTLP_ENDPOINT={collector}, OTEL_RESOURCE_ATTRIBUTES=team=search, "
        "OTEL_SERVICE_NAME=rag-prod" in deploy.stdout
    )
    sagemaker = moto.client("sagemaker")
    model = sagemaker.list_models()["Models"][0]["ModelName"]
    environment = sagemaker.describe_model(ModelName=model)["PrimaryContainer"]["Environment"]
    assert {key: value for key, value in environment.items() if key.startswith("OTEL_")} == {
        "OTEL_EXPORTER_OTLP_ENDPOINT": collector,
        "OTEL_RESOURCE_ATTRIBUTES": "team=search",
        "OTEL_SERVICE_NAME": "rag-prod",
    }
