"""The error table: each case gives one human line on stderr, naming the problem and the fix, no traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber

from sagemaker_lifecycle.clean import wait_until_gone
from sagemaker_lifecycle.endpoint_status import wait_until_settled
from sagemaker_lifecycle.errors import AccessDenied, EndpointFailed, LifecycleError, NotImplementedByApi, translate
from sagemaker_lifecycle.session import Aws
from tests.aws.aws_support import CREDENTIALS, REGION, make, stubbed_sagemaker


def error_lines(result) -> list[str]:
    """What the CLI itself wrote to stderr (make's own 'Error N' line left out)."""
    return [line for line in result.stderr.splitlines() if not line.startswith("make")]


def assert_one_line(result, *fragments: str, exit_code: int = 1) -> str:
    assert result.returncode != 0, result.stdout
    assert f"Error {exit_code}" in result.stderr
    lines = error_lines(result)
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0]
    return lines[0]


def test_missing_variable_names_it(aws_env, account):
    result = make("deploy", aws_env, f"BUCKET_NAME={account.bucket}", f"REGION={REGION}")
    assert_one_line(result, "missing variable ROLE_ARN", "make ... ROLE_ARN=...", exit_code=2)


@pytest.mark.parametrize(
    "variables, fragment",
    [
        (["SERVERLESS_MEMORY=1500"], "SERVERLESS_MEMORY=1500 must be an integer from 1024 to 6144 in steps of 1024"),
        (["SERVERLESS_MEMORY=7168"], "SERVERLESS_MEMORY=7168 must be an integer from 1024 to 6144"),
        (
            ["SERVERLESS_MEMORY=2048", "SERVERLESS_CONCURRENCY=201"],
            "SERVERLESS_CONCURRENCY=201 must be an integer from 1 to 200",
        ),
        (["SERVERLESS_MEMORY=2048", "INSTANCE_TYPE=ml.m5.large"], "not both"),
        (["STARTUP_TIMEOUT=30"], "STARTUP_TIMEOUT=30 must be an integer from 60 to 3600"),
        (["ARCH=lambda"], "ARCH='lambda' must be monolito, microservicos or split"),
    ],
)
def test_invalid_capacity_is_refused_before_any_call(aws_env, account, variables, fragment):
    assert_one_line(make("deploy", aws_env, *account.variables(*variables)), fragment, exit_code=2)


def test_missing_credentials(aws_env):
    env = {key: value for key, value in aws_env.items() if key not in CREDENTIALS}
    result = make("status", env, f"REGION={REGION}")
    assert_one_line(result, "no AWS credentials found", "AWS_PROFILE")


def test_unknown_endpoint(aws_env, account):
    for target in ("status", "test"):
        result = make(target, aws_env, *account.variables("ENDPOINT_NAME=nope"))
        assert_one_line(result, "endpoint nope does not exist in us-east-1", "make deploy")


def test_deploy_before_upload_or_push_says_which_step_is_missing(aws_env, account):
    assert_one_line(make("deploy", aws_env, *account.variables()), "model.tar.gz does not exist", "make upload")
    result = make("deploy", aws_env, *account.variables("IMAGE_NAME=never-pushed"))
    assert_one_line(result, "image never-pushed:latest is not in ECR", "make build push")


def test_switching_instance_to_serverless_in_place_is_refused(moto, aws_env, account, index_dir):
    assert make("upload", aws_env, *account.variables(f"INDEX={index_dir}")).returncode == 0
    assert make("deploy", aws_env, *account.variables()).returncode == 0
    result = make("deploy", aws_env, *account.variables("SERVERLESS_MEMORY=2048"))
    assert_one_line(
        result, "is instance-based and SageMaker cannot update it in place to serverless", "make clean", exit_code=2
    )
    assert len(moto.client("sagemaker").list_models()["Models"]) == 1  # refused before creating anything


def test_access_denied(moto, aws_env, account):
    """An IAM user without policies, with moto enforcing IAM for every call after the setup."""
    result = moto.make_as_user("no-permissions", [], "status", aws_env, f"REGION={REGION}")
    assert_one_line(
        result,
        "access denied while trying to describe endpoint rag-monolito",
        "not authorized to perform: sagemaker:DescribeEndpoint",
        "operator policy in docs/deploy.md",
    )


def test_cli_refuses_an_unknown_variable(aws_env):
    result = subprocess.run(
        [sys.executable, "-m", "sagemaker_lifecycle", "status", "ENDPOINT=typo"],
        env=aws_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert (
        result.stderr.strip()
        == "error: unexpected argument 'ENDPOINT=typo': pass KEY=VALUE with a known variable (see --help)"
    )


# --- cases moto cannot produce: unit tests of the same code paths with plain fakes ---


def test_failed_endpoint_while_waiting_prints_the_reason():
    """moto's endpoints are InService at once, so Failed is driven by a scripted describe()."""
    states = iter(
        [
            {"EndpointName": "rag-monolito", "EndpointStatus": "Creating", "EndpointConfigName": "c"},
            {
                "EndpointName": "rag-monolito",
                "EndpointStatus": "Failed",
                "EndpointConfigName": "c",
                "FailureReason": "The primary container for production variant AllTraffic did not pass the ping health check.",
            },
        ]
    )
    ticks = iter(range(0, 1000, 30))
    with pytest.raises(EndpointFailed) as raised:
        wait_until_settled(
            lambda: next(states),
            "rag-monolito",
            timeout_s=3600,
            poll_s=30,
            clock=lambda: next(ticks),
            sleep=lambda _: None,
        )
    message = str(raised.value)
    assert message.startswith("endpoint rag-monolito is Failed: The primary container")
    assert "make logs" in message and "make clean" in message


def test_wait_gives_up_after_the_timeout():
    ticks = iter(range(0, 1000, 30))
    with pytest.raises(LifecycleError, match="still Creating after 60s"):
        wait_until_settled(
            lambda: {"EndpointName": "e", "EndpointStatus": "Creating"},
            "e",
            timeout_s=60,
            poll_s=30,
            clock=lambda: next(ticks),
            sleep=lambda _: None,
        )


def stubbed_aws(*describes: dict | str) -> tuple[Aws, Stubber]:
    """An Aws whose DescribeEndpoint answers `describes` in turn: a status, or an error code."""
    endpoint = {
        "EndpointName": "e",
        "EndpointArn": "arn:aws:sagemaker:us-east-1:1:endpoint/e",
        "EndpointConfigName": "c",
        "CreationTime": 0,
        "LastModifiedTime": 0,
    }
    return stubbed_sagemaker("describe_endpoint", endpoint, *describes)


def test_clean_waits_for_the_deletion_and_gives_up_with_a_warning(caplog):
    """moto deletes at once; a real endpoint is Deleting for a while, may fail to delete, or the caller may lack
    DescribeEndpoint."""
    aws, stubber = stubbed_aws({"EndpointStatus": "Deleting"}, "ValidationException")
    wait_until_gone(aws, "e")
    stubber.assert_no_pending_responses()
    assert not caplog.records

    aws, stubber = stubbed_aws(*[{"EndpointStatus": "Deleting"}] * 3)  # WAIT_TIMEOUT / POLL_SECONDS + 1 polls
    wait_until_gone(aws, "e")
    stubber.assert_no_pending_responses()
    assert caplog.messages == ["endpoint e is still being deleted; run `make clean` again later"]

    caplog.clear()
    aws, _ = stubbed_aws({"EndpointStatus": "Failed", "FailureReason": "boom"})
    wait_until_gone(aws, "e")
    assert caplog.messages == ["endpoint e is Failed while being deleted (boom); run `make clean` again later"]

    aws, _ = stubbed_aws("AccessDeniedException")
    with pytest.raises(AccessDenied, match="access denied while trying to describe endpoint e"):
        wait_until_gone(aws, "e")


def client_error(code: str, message: str, status: int) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": status}}, "X"
    )


def test_translation_of_real_aws_error_shapes():
    """Real AWS sends JSON codes where moto sends XML or bare 500s: both must read the same."""
    denied = translate(
        client_error("AccessDeniedException", "User: u is not authorized to perform: sagemaker:CreateModel", 400),
        "create model m",
    )
    assert "access denied while trying to create model m: User: u is not authorized" in str(denied)
    expired = translate(
        client_error("ExpiredTokenException", "The security token included in the request is expired", 400), "x"
    )
    assert "rejected the credentials" in str(expired) and "aws sso login" in str(expired)
    bare = translate(
        client_error("500", "<!doctype html><title>500 Internal Server Error</title>", 500), "update endpoint e"
    )
    assert isinstance(bare, NotImplementedByApi) and bare.exit_code == 3
    internal = translate(client_error("InternalFailure", "oops", 500), "update endpoint e")
    assert not isinstance(internal, NotImplementedByApi) and "InternalFailure: oops" in str(internal)
