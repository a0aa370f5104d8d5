"""One boto3 session per command: region and profile resolved once, clients made from it.

boto3 itself honours AWS_PROFILE, the shared credential files and AWS_ENDPOINT_URL (which is how the
tests point everything at a moto server), so nothing here special-cases the emulator.
"""

from __future__ import annotations

from collections.abc import Iterable

import boto3
from botocore.exceptions import ClientError

from .config import Config
from .errors import MissingVariable, error_code, error_message, translate

# In `absent`: SageMaker's "Could not find endpoint/config/model" (a ValidationException) means absent.
MISSING = "could not find"


class Aws:
    """Clients for one region; `call` runs an API call and turns its errors into one-line errors."""

    def __init__(self, config: Config, region: str | None = None):
        self.config = config
        self._clients: dict[str, object] = {}
        try:
            self.session = boto3.session.Session()
        except Exception as exc:  # ProfileNotFound and friends
            raise translate(exc, "open the AWS profile") from None
        self.region = region or config.get("REGION") or self.session.region_name
        if not self.region:
            raise MissingVariable("REGION", "the AWS region, e.g. us-east-1; or set one in your AWS profile")

    def client(self, service: str):
        """The boto3 client for `service` in this region (made once)."""
        if service not in self._clients:
            self._clients[service] = self.session.client(service, region_name=self.region)
        return self._clients[service]

    sagemaker = property(lambda self: self.client("sagemaker"))
    s3 = property(lambda self: self.client("s3"))
    ecr = property(lambda self: self.client("ecr"))
    logs = property(lambda self: self.client("logs"))
    iam = property(lambda self: self.client("iam"))
    autoscaling = property(lambda self: self.client("application-autoscaling"))
    cloudwatch = property(lambda self: self.client("cloudwatch"))

    @staticmethod
    def call(action: str, function, /, *, absent: Iterable[str] = (), **kwargs):
        """Run `function(**kwargs)`; any botocore error becomes a LifecycleError saying what failed.

        Returns None instead when the error says the resource does not exist: its code is in `absent`,
        or its message is SageMaker's "Could not find ..." (when `absent` includes MISSING).
        """
        try:
            return function(**kwargs)
        except ClientError as exc:
            codes = set(absent)
            if error_code(exc) in codes or MISSING in codes and "could not find" in error_message(exc).lower():
                return None
            raise translate(exc, action) from None
        except Exception as exc:
            raise translate(exc, action) from None
