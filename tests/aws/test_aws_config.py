"""Configuration: precedence, the config file format, and validation messages (pure, no AWS)."""

from __future__ import annotations

import pytest

from sagemaker_lifecycle.config import Config, parse_config_file
from sagemaker_lifecycle.deploy import production_variant, versioned_names
from sagemaker_lifecycle.errors import ConfigError, MissingVariable


def test_command_line_beats_environment_beats_file(tmp_path):
    path = tmp_path / "deploy.env"
    path.write_text("REGION=from-file\nBUCKET_NAME=file-bucket\nIMAGE_TAG=file\n")
    config = Config.load(
        {"IMAGE_TAG": "cli"}, environ={"DEPLOY_CONFIG": str(path), "BUCKET_NAME": "env-bucket", "HOME": "/x"}
    )
    assert (config.get("REGION"), config.get("BUCKET_NAME"), config.image_tag) == ("from-file", "env-bucket", "cli")
    assert config.get("HOME") is None  # only the lifecycle's own variables and RAG_* are read


def test_config_file_format(tmp_path):
    path = tmp_path / "deploy.env"
    path.write_text("# comment\n\nexport ROLE_ARN=arn:aws:iam::1:role/r\nQ='a \"quoted\" question'\nRAG_TOP_K = 5\n")
    assert parse_config_file(path) == {
        "ROLE_ARN": "arn:aws:iam::1:role/r",
        "Q": 'a "quoted" question',
        "RAG_TOP_K": "5",
    }
    path.write_text("REGION=x\nthis is not an assignment\n")
    with pytest.raises(ConfigError, match=r"deploy.env:2: expected KEY=VALUE"):
        parse_config_file(path)
    path.write_text("REGION=x\n\n# comment\n\nREGION\n")  # the line named is the bad one, not a blank before it
    with pytest.raises(ConfigError, match=r"deploy.env:5: expected KEY=VALUE, got 'REGION'"):
        parse_config_file(path)
    # python-dotenv's rules: a comment after an unquoted value is dropped, escapes in double quotes are read.
    path.write_text('IMAGE_TAG=v2  # the release\nQ="say \\"hi\\""\n')
    assert parse_config_file(path) == {"IMAGE_TAG": "v2", "Q": 'say "hi"'}


def test_missing_config_file_and_missing_variable(tmp_path):
    with pytest.raises(ConfigError, match="DEPLOY_CONFIG=.*does not exist"):
        Config.load(environ={"DEPLOY_CONFIG": str(tmp_path / "nope.env")})
    with pytest.raises(MissingVariable, match="missing variable BUCKET_NAME"):
        Config({}).model_data_url()


def test_derived_names_and_environment():
    config = Config({"ARCH": "microservicos", "RAG_TOP_K": "4", "RAG_DEVICE": "cpu", "REGION": "x"})
    assert (config.endpoint_name, config.image_name, config.s3_prefix) == ("rag-microservicos",) * 3
    assert config.container_environment() == {"RAG_DEVICE": "cpu", "RAG_TOP_K": "4"}
    with pytest.raises(ConfigError, match="1 to 45 letters"):
        Config({"ENDPOINT_NAME": "x" * 46}).endpoint_name  # noqa: B018 (the property raises)
    with pytest.raises(ConfigError, match="must be an s3:// URI"):
        Config({"MODEL_DATA_URL": "https://example.com/model.tar.gz"}).model_data_url()


def test_variants_and_versioned_names():
    assert production_variant(Config({}), "m")["ContainerStartupHealthCheckTimeoutInSeconds"] == 600
    serverless = production_variant(Config({"SERVERLESS_MEMORY": "6144"}), "m")
    assert serverless == {
        "VariantName": "AllTraffic",
        "ModelName": "m",
        "ServerlessConfig": {"MemorySizeInMB": 6144, "MaxConcurrency": 5},
    }
    names = [
        "rag-monolito-20261128010203004",
        "rag-monolito-manual",
        "rag-monolito-x-20261128010203004",
        "rag-monolito-2026",
    ]
    assert versioned_names("rag-monolito", names) == ["rag-monolito-20261128010203004"]
