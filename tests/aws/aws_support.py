"""Helpers of the AWS tests that are not fixtures: the moto handle, `make` runner, shared values."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import boto3
import requests
from botocore.stub import Stubber

from sagemaker_lifecycle.config import Config
from sagemaker_lifecycle.session import Aws
from tests.support import ROOT, ServerProcess

REGION = "us-east-1"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
# A /invocations answer shaped as docs/api.md documents it, queued in moto or served by a fake.
ANSWER = {
    "answer": "The Velmora Tramway opened in 1911; Ilse Varga designed its first line.",
    "sources": [{"rank": 1, "source": "velmora.md", "chunk": 0, "score": 0.83, "text": "The tramway opened in 1911."}],
    "architecture": "monolith",
    "model": {"embedding": "all-MiniLM-L6-v2", "llm": "SmolLM2-135M-Instruct"},
    "usage": {"prompt_tokens": 120, "completion_tokens": 18},
    "timings_ms": {"retrieve": 4.0, "generate": 900.0, "total": 905.0},
}


@dataclass
class Moto:
    """A running moto server: its URL, its log, and boto3 clients pointed at it."""

    url: str
    server: ServerProcess
    # Clients with the dummy credentials, made once: every test's clean-up uses several, and making one costs
    # a few hundred milliseconds on a busy machine.
    clients: dict = field(default_factory=dict, repr=False)

    def client(self, service: str, **credentials):
        """A boto3 client for `service` on this server (dummy credentials unless given)."""
        if not credentials and service in self.clients:
            return self.clients[service]
        session = boto3.session.Session(
            aws_access_key_id=credentials.get("key", CREDENTIALS["AWS_ACCESS_KEY_ID"]),
            aws_secret_access_key=credentials.get("secret", CREDENTIALS["AWS_SECRET_ACCESS_KEY"]),
            region_name=REGION,
        )
        client = session.client(service, endpoint_url=self.url)
        if not credentials:
            self.clients[service] = client
        return client

    def enforce_iam(self, enabled: bool) -> None:
        """Switch moto's IAM enforcement on (every later call is authorised) or off again."""
        count = "0" if enabled else "inf"
        requests.post(f"{self.url}/moto-api/reset-auth", data=count, timeout=10).raise_for_status()

    def make_as_user(self, user: str, actions: list[str], target: str, env: dict[str, str], *variables: str):
        """`make target` as a new IAM user allowed only `actions` (none: no policy), with IAM enforced meanwhile."""
        iam = self.client("iam")
        iam.create_user(UserName=user)
        if actions:
            statement = {"Effect": "Allow", "Action": actions, "Resource": "*"}
            document = json.dumps({"Version": "2012-10-17", "Statement": [statement]})
            iam.put_user_policy(UserName=user, PolicyName="allowed", PolicyDocument=document)
        key = iam.create_access_key(UserName=user)["AccessKey"]
        env = dict(env, AWS_ACCESS_KEY_ID=key["AccessKeyId"], AWS_SECRET_ACCESS_KEY=key["SecretAccessKey"])
        self.enforce_iam(True)
        try:
            return make(target, env, *variables)
        finally:
            self.enforce_iam(False)

    def queue_invocation_results(self, *bodies: str) -> None:
        """Make moto's invoke_endpoint answer these bodies (JSON) in turn, instead of its canned text."""
        results = [{"Body": body, "ContentType": "application/json"} for body in bodies]
        response = requests.post(
            f"{self.url}/moto-api/static/sagemaker/endpoint-results",
            json={"region": REGION, "results": results},
            timeout=10,
        )
        response.raise_for_status()


def make(target: str, env: dict[str, str], *variables: str, directory: Path = ROOT, timeout: float = 90):
    """Run `make -s -C directory target VAR=...` as a user would; returns the CompletedProcess."""
    return subprocess.run(
        ["make", "-s", "--no-print-directory", "-C", str(directory), target, *variables],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@dataclass
class Account:
    """What a user has before `make deploy`: a role, a bucket, and pushed images for both ARCH values."""

    role_arn: str
    bucket: str

    def variables(self, *extra: str) -> list[str]:
        """The Make variables every deploy needs, plus `extra`."""
        return [
            f"ROLE_ARN={self.role_arn}",
            f"BUCKET_NAME={self.bucket}",
            f"REGION={REGION}",
            "POLL_SECONDS=0.1",
            *extra,
        ]


def stubbed_sagemaker(operation: str, fields: dict, *answers: dict | str, messages=None) -> tuple[Aws, Stubber]:
    """An Aws (POLL_SECONDS=0.1, WAIT_TIMEOUT=0.2) whose SageMaker client answers `operation` with `answers` in
    turn: `fields` updated with the answer, or an error code (its message from `messages`, else a stub's)."""
    aws = Aws(Config({"REGION": REGION, "POLL_SECONDS": "0.1", "WAIT_TIMEOUT": "0.2"}))
    client = boto3.client("sagemaker", region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x")
    stubber = Stubber(client)
    for answer in answers:
        if isinstance(answer, str):
            message = (messages or {}).get(answer, f"{answer} from the stub")
            stubber.add_client_error(operation, answer, message, 400)
        else:
            stubber.add_response(operation, {**fields, **answer})
    aws._clients["sagemaker"] = client
    stubber.activate()
    return aws, stubber
