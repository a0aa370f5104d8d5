"""push: create the ECR repository if missing, log docker in with an ECR token, tag and push.

REGISTRY=host[:port] pushes to another registry (a local `docker-registry` in the tests) while the
repository and the token still come from ECR, so the whole path runs against an emulator.
"""

from __future__ import annotations

import base64
import logging
import shutil
import subprocess
from urllib.parse import urlparse

from .errors import ConfigError, LifecycleError
from .session import Aws

log = logging.getLogger(__name__)


def ensure_repository(aws: Aws, name: str) -> str:
    """The repository URI, creating the repository (scan on push) when it does not exist."""
    found = aws.call(
        f"find ECR repository {name}",
        aws.ecr.describe_repositories,
        absent=["RepositoryNotFoundException"],
        repositoryNames=[name],
    )
    if found:
        return found["repositories"][0]["repositoryUri"]
    created = aws.call(
        f"create ECR repository {name}",
        aws.ecr.create_repository,
        repositoryName=name,
        imageScanningConfiguration={"scanOnPush": True},
    )
    log.info("created ECR repository %s", name)
    return created["repository"]["repositoryUri"]


def registry_credentials(aws: Aws) -> tuple[str, str, str]:
    """(user, password, registry host) from ECR's GetAuthorizationToken."""
    data = aws.call("get an ECR login token", aws.ecr.get_authorization_token)["authorizationData"][0]
    user, _, password = base64.b64decode(data["authorizationToken"]).decode().partition(":")
    return user, password, urlparse(data["proxyEndpoint"]).netloc or data["proxyEndpoint"]


def docker(*args: str, stdin: str | None = None) -> None:
    """Run one docker command; its output streams to the terminal; failure -> one-line error."""
    result = subprocess.run(["docker", *args], input=stdin, text=True, stdout=None, stderr=subprocess.PIPE)
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no message"])[-1]
        raise LifecycleError(f"`docker {args[0]}` failed: {last}")


def run_push(aws: Aws) -> int:
    """`push`: repository, login, tag, push; logs the pushed reference."""
    config = aws.config
    name, tag = config.image_name, config.image_tag
    local = f"{name}:{tag}"
    if shutil.which("docker") is None:
        raise ConfigError("docker is not installed (or not on PATH): install Docker to push images")
    if subprocess.run(["docker", "image", "inspect", local], capture_output=True).returncode != 0:
        raise LifecycleError(f"local image {local} not found (or no docker daemon): run `make build` first")
    repository_uri = ensure_repository(aws, name)
    user, password, ecr_host = registry_credentials(aws)
    registry = config.get("REGISTRY") or ecr_host
    remote = f"{registry}/{name}:{tag}" if config.get("REGISTRY") else f"{repository_uri}:{tag}"
    docker("login", "--username", user, "--password-stdin", registry, stdin=password)
    log.info("logged in to %s", registry)
    docker("tag", local, remote)
    log.info("pushing %s", remote)
    docker("push", remote)
    log.info("pushed %s", remote)
    return 0
