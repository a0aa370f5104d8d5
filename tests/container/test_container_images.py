"""What SageMaker reads from the images themselves: label, exec-form entrypoint, environment, and
nothing in them that should not ship (compilers). Image sizes are recorded for the README."""

from __future__ import annotations

import json

import pytest

from tests.container.docker_support import ARCHES, docker

pytestmark = pytest.mark.docker


@pytest.mark.parametrize("arch", ARCHES)
def test_image_honours_the_sagemaker_contract(images, arch, observations):
    config = json.loads(docker("image", "inspect", "--format", "{{json .Config}}", images[arch]).stdout)
    assert config["Labels"]["com.amazonaws.sagemaker.capabilities.accept-bind-to-port"] == "true"
    # Exec form: `serve` arrives as an argument and signals reach the process, not a /bin/sh -c.
    assert config["Entrypoint"] and config["Entrypoint"][:2] != ["/bin/sh", "-c"]
    assert "PYTHONUNBUFFERED=1" in config["Env"]
    assert "8080/tcp" in config["ExposedPorts"]
    size = int(docker("image", "inspect", "--format", "{{.Size}}", images[arch]).stdout)
    observations.setdefault("image_size_mb", {})[arch] = size // 10**6


@pytest.mark.parametrize("arch", ARCHES)
def test_image_ships_no_compiler(images, arch):
    found = docker(
        "run",
        "--rm",
        "--entrypoint",
        "sh",
        images[arch],
        "-c",
        "for tool in gcc cc c++ g++ clang make; do command -v $tool; done; true",
    ).stdout
    assert found.strip() == "", f"compilers in the final image: {found.split()}"


@pytest.mark.parametrize("arch", ARCHES)
def test_unknown_command_is_refused_with_usage(images, arch):
    result = docker("run", "--rm", images[arch], "train", check=False, timeout=120)
    assert result.returncode == 2
    assert "usage" in (result.stdout + result.stderr)
