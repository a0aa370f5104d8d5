"""Errors of the AWS lifecycle, and the one translation of botocore errors into them.

Every error carries one human line that names the problem and the fix. The CLI prints that line to
stderr and exits with `exit_code`; nothing below ever reaches the user as a traceback.

    LifecycleError                  base class; `str(err)` is the line shown to the user
    ├── ConfigError                 exit 2: a variable is missing or has a wrong value
    │   └── MissingVariable
    ├── CredentialsError            no usable AWS credentials
    ├── AccessDenied                the caller's IAM policy does not allow the action
    ├── NotFound                    a resource (endpoint, bucket, repository, log group) does not exist
    │   └── EndpointNotFound
    ├── EndpointFailed              the endpoint ended in Failed; carries FailureReason
    ├── NotImplementedByApi         exit 3: the API (an emulator such as moto) lacks the action
    ├── AwsError                    any other AWS error, with its code and message
    └── InvocationError             an invocation (endpoint or local URL) answered an error
"""

from __future__ import annotations

import os
import re

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
    ProfileNotFound,
)


class LifecycleError(Exception):
    """Base class: the message is the one line the user sees."""

    exit_code = 1


class ConfigError(LifecycleError):
    """A variable has a wrong value (or a combination of variables is invalid)."""

    exit_code = 2


class MissingVariable(ConfigError):
    """A required variable is not set anywhere (command line, environment, config file)."""

    def __init__(self, name: str, meaning: str):
        self.name = name
        super().__init__(
            f"missing variable {name} ({meaning}): set it on the command line "
            f"(make ... {name}=...), in the environment, or in .deploy.env"
        )


class CredentialsError(LifecycleError):
    """No credentials, or credentials AWS does not recognise."""


class AccessDenied(LifecycleError):
    """IAM refused the call."""


class NotFound(LifecycleError):
    """A resource does not exist."""


class EndpointNotFound(NotFound):
    """The SageMaker endpoint does not exist."""

    def __init__(self, endpoint_name: str, region: str | None = None):
        self.endpoint_name = endpoint_name
        where = f" in {region}" if region else ""
        super().__init__(
            f"endpoint {endpoint_name} does not exist{where}: deploy it with `make deploy`, "
            "or set ENDPOINT_NAME/REGION to an existing one"
        )


class EndpointFailed(LifecycleError):
    """The endpoint is (or ended) in status Failed."""

    def __init__(self, endpoint_name: str, reason: str | None):
        self.endpoint_name = endpoint_name
        self.reason = reason or "no FailureReason given"
        super().__init__(
            f"endpoint {endpoint_name} is Failed: {self.reason}. Fix the cause, then `make logs` for "
            "details, `make clean` and `make deploy` again"
        )


class NotImplementedByApi(LifecycleError):
    """The API answered an action with a bare HTTP 500, as moto does for actions it lacks."""

    exit_code = 3


class AwsError(LifecycleError):
    """Any other AWS error, reported with its code."""


class InvocationError(LifecycleError):
    """An invocation failed; `status` and `error_type` come from the server's error body if any."""

    def __init__(self, message: str, *, status: int | None = None, error_type: str | None = None):
        self.status = status
        self.error_type = error_type
        super().__init__(message)


_XML_MESSAGE = re.compile(r"<Message>(.*?)</Message>", re.S)
_DENIED_CODES = {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "403"}
_BAD_CREDENTIAL_CODES = {
    "InvalidClientTokenId",
    "UnrecognizedClientException",
    "SignatureDoesNotMatch",
    "InvalidAccessKeyId",
    "ExpiredToken",
    "ExpiredTokenException",
    "RequestExpired",
}


def error_code(exc: ClientError) -> str:
    """The AWS error code of a ClientError ('' when absent)."""
    return str(exc.response.get("Error", {}).get("Code", ""))


def error_message(exc: ClientError) -> str:
    """The AWS error message, with an XML error document (as moto sends for denials) reduced to its text."""
    message = str(exc.response.get("Error", {}).get("Message", "")).strip()
    match = _XML_MESSAGE.search(message)
    if match:
        return match.group(1).strip()
    return message


def http_status(exc: ClientError) -> int | None:
    """The HTTP status of the failed call."""
    return exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")


def is_bare_server_error(exc: ClientError) -> bool:
    """True for an HTTP 500 without an AWS error code: moto's answer to an action it does not implement."""
    code = error_code(exc)
    return http_status(exc) == 500 and (code == "" or code.isdigit())


def translate(exc: BaseException, action: str) -> LifecycleError:
    """Turn a botocore exception raised while doing `action` into a LifecycleError with one line."""
    if isinstance(exc, LifecycleError):
        return exc
    if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
        return CredentialsError(
            f"no AWS credentials found while trying to {action}: set AWS_PROFILE (after `aws configure` "
            "or `aws sso login`) or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
        )
    if isinstance(exc, ProfileNotFound):
        return CredentialsError(f"{exc}: fix AWS_PROFILE or add the profile with `aws configure --profile ...`")
    if isinstance(exc, NoRegionError):
        return MissingVariable("REGION", "the AWS region, e.g. us-east-1")
    if isinstance(exc, EndpointConnectionError):
        return AwsError(f"cannot reach AWS to {action}: {exc} (check REGION, AWS_ENDPOINT_URL and the network)")
    if isinstance(exc, ClientError):
        return _translate_client_error(exc, action)
    if isinstance(exc, BotoCoreError):
        return AwsError(f"could not {action}: {exc}")
    raise exc


def _translate_client_error(exc: ClientError, action: str) -> LifecycleError:
    code, message = error_code(exc), error_message(exc)
    if code in _DENIED_CODES or http_status(exc) == 403 and code not in _BAD_CREDENTIAL_CODES:
        return AccessDenied(
            f"access denied while trying to {action}: {message or code}. Grant that permission to the "
            "caller (see the operator policy in docs/deploy.md, IAM) or use another AWS_PROFILE"
        )
    if code in _BAD_CREDENTIAL_CODES:
        return CredentialsError(
            f"AWS rejected the credentials while trying to {action}: {message or code}. Refresh them "
            "(`aws sso login`, new access keys) or pick another AWS_PROFILE"
        )
    if is_bare_server_error(exc):
        api = os.environ.get("AWS_ENDPOINT_URL", "AWS")
        return NotImplementedByApi(
            f"the API at {api} answered HTTP 500 without an AWS error code when asked to {action}; "
            "this is how an emulator such as moto reports an action it does not implement"
        )
    return AwsError(f"could not {action}: {code}: {message}")
