"""The split topology with real containers, each started as SageMaker starts it (`docker run IMAGE serve`
plus its environment): the LLM endpoint (RAG_SERVE=llm) and the front (RAG_LLM_URL=sagemaker://...),
whose boto3 reaches the SageMaker Runtime stand-in on the Docker bridge through
AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME. A monolith container answers the same questions for comparison."""

from __future__ import annotations

import ipaddress
import json
import time

import pytest
import requests

from sagemaker_lifecycle.local_runtime import LocalRuntime
from tests.container.docker_support import QUESTION, Container, docker, start_ready
from tests.service.split_support import LLM_ENDPOINT, RUNTIME_CLIENT_ENV, restart_under_load

pytestmark = pytest.mark.docker
# One torch thread per process, as in test_container_serving: three model processes share the CI cores.
ENV = {"RAG_TORCH_THREADS": "1", "RAG_MAX_NEW_TOKENS": "40"}


def bridge_address() -> str:
    """The host's address on Docker's default bridge: containers reach the stand-in there."""
    result = docker("network", "inspect", "bridge", "--format", "{{range .IPAM.Config}}{{.Gateway}}|{{.Subnet}}{{end}}")
    gateway, _, subnet = result.stdout.strip().partition("|")
    return gateway or str(next(ipaddress.ip_network(subnet).hosts()))  # docker's default: the first host


@pytest.fixture(scope="module")
def split_stack(images, empty_model_dir, observations):
    containers: dict[str, Container] = {}
    runtime = None
    try:
        containers["llm"] = Container(
            images["microservicos"], model_dir=empty_model_dir, env={**ENV, "RAG_SERVE": "llm"}
        )
        runtime = LocalRuntime({LLM_ENDPOINT: containers["llm"].url("")}, host=bridge_address()).start()
        containers["front"] = Container(
            images["microservicos"],
            model_dir=empty_model_dir,
            env={
                **ENV,
                **RUNTIME_CLIENT_ENV,
                "RAG_LLM_URL": f"sagemaker://{LLM_ENDPOINT}",
                "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME": runtime.url,
            },
        )
        containers["monolith"] = Container(images["monolito"], model_dir=empty_model_dir, env=ENV)
        startups = start_ready(containers)
        observations["split_run_to_ping_200_s"] = {name: startup.ready_s for name, startup in startups.items()}
        yield containers, runtime
    finally:
        for container in containers.values():
            container.remove()
        if runtime is not None:
            runtime.stop()


def test_split_answers_are_the_monoliths(split_stack):
    containers, runtime = split_stack
    front, monolith = containers["front"].invoke(QUESTION), containers["monolith"].invoke(QUESTION)
    assert front.status_code == monolith.status_code == 200, front.text[:300]
    assert front.json()["answer"] == monolith.json()["answer"] and "1889" in front.json()["answer"]
    assert [(s["source"], s["chunk"]) for s in front.json()["sources"]] == [
        (s["source"], s["chunk"]) for s in monolith.json()["sources"]
    ]
    assert runtime.invocations >= 1


def test_split_streams(split_stack):
    containers, _ = split_stack
    with requests.post(
        containers["front"].url("/invocations-response-stream"), json=QUESTION, stream=True, timeout=120
    ) as response:
        assert response.status_code == 200
        events = [json.loads(line) for line in response.iter_lines() if line]
    assert [events[0]["event"], events[-1]["event"]] == ["sources", "done"] and "1889" in events[-1]["answer"]
    assert "".join(e["text"] for e in events if e["event"] == "token").strip() == events[-1]["answer"]


def test_split_deadline(split_stack):
    containers, _ = split_stack
    response = requests.post(
        containers["front"].url("/invocations"),
        json={**QUESTION, "max_new_tokens": 1024},
        headers={"X-Rag-Timeout-S": "0.2"},
        timeout=120,
    )
    assert response.status_code == 504 and response.json()["error_type"] == "timeout", response.text[:300]


def test_llm_container_restarted_under_load(split_stack, observations):
    containers, _ = split_stack
    llm, front = containers["llm"], containers["front"]
    started = time.monotonic()
    recovery = restart_under_load(
        front.url(""),
        llm.url(""),
        kill=lambda: docker("kill", llm.id),
        start=lambda: docker("start", llm.id),
        payload={**QUESTION, "max_new_tokens": 4},
    )
    observations["split_llm_restart"] = {
        "requests": len(recovery.outcomes),
        "failed": len([o for o in recovery.outcomes if o[2] != 200]),
        "llm_down_s": round(recovery.ready_at - recovery.killed_at, 1),
        "front_ping_200_after_llm_ping_200_s": round(recovery.front_ready_after_s, 2),
        "experiment_s": round(time.monotonic() - started, 1),
    }
    recovery.check()
