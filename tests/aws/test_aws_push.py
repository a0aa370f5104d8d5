"""push: ECR repository from moto, docker login with moto's ECR token, push to a local docker-registry."""

from __future__ import annotations

import shutil
import subprocess
import uuid

import pytest
import requests

from tests.aws.aws_support import make
from tests.support import ServerProcess, free_port, wait_for_status


def docker_daemon_problem() -> str | None:
    """Why docker cannot be used here, or None when a daemon answers."""
    if shutil.which("docker") is None:
        return "no docker client on PATH"
    try:
        info = subprocess.run(
            ["docker", "info", "--format", "{{.ServerVersion}}"], capture_output=True, text=True, timeout=20
        )
    except subprocess.TimeoutExpired:
        return "the docker daemon did not answer `docker info` within 20 s"
    return None if info.returncode == 0 else "no docker daemon answers (`docker info` failed)"


@pytest.fixture
def registry(tmp_path):
    """Debian's docker-registry on 127.0.0.1:<free port>, no auth, storage in tmp_path."""
    binary = shutil.which("docker-registry")
    if binary is None:
        pytest.skip("no docker-registry binary on PATH (Debian package docker-registry)")
    port = free_port()
    config = tmp_path / "registry.yml"
    config.write_text(
        "version: 0.1\n"
        "log: {level: warn}\n"
        f"storage: {{filesystem: {{rootdirectory: {tmp_path / 'storage'}}}, delete: {{enabled: true}}}}\n"
        f"http: {{addr: '127.0.0.1:{port}'}}\n"
    )
    server = ServerProcess(
        [binary, "serve", str(config)], env={"PATH": "/usr/bin:/bin"}, log_path=tmp_path / "registry.log"
    )
    try:
        wait_for_status(f"http://127.0.0.1:{port}/v2/", 200, deadline_s=30, proc=server.proc)
        yield f"127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.mark.docker
def test_push_creates_the_repository_logs_in_and_pushes(moto, aws_env, registry, tmp_path):
    problem = docker_daemon_problem()
    if problem:
        pytest.skip(problem)
    name, tag = f"rag-push-test-{uuid.uuid4().hex[:8]}", "v1"
    # A one-file image made without any base image or network: enough for a real push.
    subprocess.run(
        f"echo push-test > marker && tar cf - marker | docker import - {name}:{tag}",
        shell=True,
        check=True,
        capture_output=True,
        cwd=tmp_path,
    )
    try:
        result = make(
            "push",
            aws_env,
            "REGION=us-east-1",
            f"IMAGE_NAME={name}",
            f"IMAGE_TAG={tag}",
            f"REGISTRY={registry}",
            timeout=120,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert f"created ECR repository {name}" in result.stdout
        assert f"logged in to {registry}" in result.stdout and f"pushed {registry}/{name}:{tag}" in result.stdout
        assert (
            moto.client("ecr").describe_repositories(repositoryNames=[name])["repositories"][0]["repositoryName"]
            == name
        )
        tags = requests.get(f"http://{registry}/v2/{name}/tags/list", timeout=10).json()
        assert tags == {"name": name, "tags": [tag]}

        again = make(
            "push",
            aws_env,
            "REGION=us-east-1",
            f"IMAGE_NAME={name}",
            f"IMAGE_TAG={tag}",
            f"REGISTRY={registry}",
            timeout=120,
        )
        assert again.returncode == 0 and "created ECR repository" not in again.stdout  # repository reused
    finally:
        subprocess.run(["docker", "rmi", "-f", f"{name}:{tag}", f"{registry}/{name}:{tag}"], capture_output=True)
        moto.client("ecr").delete_repository(repositoryName=name, force=True)


def test_push_without_a_local_image_says_build_first(aws_env):
    if shutil.which("docker") is None:
        pytest.skip("no docker client on PATH")
    result = make("push", aws_env, "REGION=us-east-1", "IMAGE_NAME=rag-never-built", "IMAGE_TAG=nope")
    assert result.returncode != 0
    assert (
        "error: local image rag-never-built:nope not found (or no docker daemon): run `make build` first"
        in result.stderr
    )
