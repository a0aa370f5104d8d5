"""An index in /opt/ml/model (what SageMaker extracts model.tar.gz into) replaces the built-in one,
and the SageMaker and RAG_* variables given through the model's Environment are honoured; and an
image started as a normal user (not as SageMaker does) serves as that user."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from tests.container.docker_support import ARCHES, Container, start_ready
from tests.support import ROOT, child_env

pytestmark = pytest.mark.docker

DOCUMENTS = {
    "orvane-beacon.md": (
        "# The Orvane Beacon\n\nThe Orvane Beacon is a stone lighthouse on the Skerrow headland. It was "
        "built in 1907 by the stonemason Tobiah Quell, and its lamp was first lit on 2 March 1908. The "
        "beacon is 31 metres tall and its light can be seen 19 nautical miles out to sea.\n"
    ),
    "kettle-market.md": (
        "# The Kettle Market\n\nThe Kettle Market is a covered market of copper-smiths and tinkers held "
        "every Thursday in the old tannery yard. It began in 1861 and has 44 stalls.\n"
    ),
}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """/opt/ml/model as SageMaker lays it out: the index under index/, built by `python -m rag.ingest`."""
    docs = tmp_path_factory.mktemp("docs")
    for name, text in DOCUMENTS.items():
        (docs / name).write_text(text)
    model = tmp_path_factory.mktemp("opt-ml-model")
    model.chmod(0o755)  # readable by all, as SageMaker's is: the workers do not run as root
    subprocess.run(
        [sys.executable, "-m", "rag.ingest", "--docs", str(docs), "--index", str(model / "index")],
        cwd=ROOT,
        env=child_env(),
        check=True,
        capture_output=True,
        timeout=600,
    )
    return model


def test_index_in_opt_ml_model_replaces_the_built_in_one(images, model_dir):
    # A multi-container endpoint moves the port; RAG_TOP_K stands for every RAG_* variable.
    env = {"SAGEMAKER_BIND_TO_PORT": "8081", "RAG_TOP_K": "2"}
    containers = {}
    try:
        for arch in ARCHES:
            containers[arch] = Container(images[arch], model_dir=model_dir, env=env, container_port=8081)
        start_ready(containers)
        for arch, container in containers.items():
            response = container.invoke({"query": "Who built the Orvane Beacon?", "max_new_tokens": 16})
            assert response.status_code == 200, f"{arch}: {response.text[:300]}"
            sources = response.json()["sources"]
            assert len(sources) == 2, f"{arch}: RAG_TOP_K=2 was not honoured: {sources}"
            assert sources[0]["source"] == "orvane-beacon.md"
            assert {source["source"] for source in sources} <= set(DOCUMENTS)
    finally:
        for container in containers.values():
            container.remove()


def test_started_as_a_normal_user_it_serves_without_switching(images, model_dir):
    # `make serve` by a normal user, in miniature: nothing to drop, so every process keeps that user.
    containers = {}
    try:
        for arch in ARCHES:
            containers[arch] = Container(
                images[arch], model_dir=model_dir, env={"RAG_TORCH_THREADS": "1"}, user="65534:65534"
            )
        start_ready(containers)
        for arch, container in containers.items():
            response = container.invoke({"query": "Who built the Orvane Beacon?", "max_new_tokens": 4})
            assert response.status_code == 200, f"{arch}: {response.text[:300]}"
            uids = container.exec_python(PROCESS_UIDS).stdout.split()
            assert uids and set(uids) == {"65534"}, f"{arch}: {uids}"
    finally:
        for container in containers.values():
            container.remove()


# The real uid of every process in the container but this probe itself.
PROCESS_UIDS = """
import os
for pid in filter(str.isdigit, os.listdir('/proc')):
    if int(pid) != os.getpid():
        try:
            print(open(f'/proc/{pid}/status').read().split('Uid:')[1].split()[0])
        except (OSError, IndexError):
            pass
"""


@pytest.fixture(scope="module")
def model_dir_with_llm(model_dir, tmp_path_factory):
    """/opt/ml/model with a bring-your-own LLM in llm/ besides the index, as `make upload UPLOAD_LLM=1
    LLM_DIR=...` packs it: here the fuzz suite's tiny random model, which no image carries."""
    from tests.fuzz.tiny_llm import make_tiny_llm

    model = tmp_path_factory.mktemp("opt-ml-model-llm")
    model.chmod(0o755)
    shutil.copytree(model_dir / "index", model / "index")
    make_tiny_llm(model / "llm")
    return model


def test_a_model_in_opt_ml_model_llm_replaces_the_baked_in_tier(images, model_dir, model_dir_with_llm):
    question = {"query": "Who built the Orvane Beacon?", "max_new_tokens": 12}
    answers = {}
    for label, folder in (("baked-in", model_dir), ("own", model_dir_with_llm)):
        containers = {}
        try:
            for arch in ARCHES:
                containers[arch] = Container(images[arch], model_dir=folder, env={"RAG_TORCH_THREADS": "1"})
            start_ready(containers)
            for arch, container in containers.items():
                response = container.invoke(question)
                assert response.status_code == 200, f"{arch} ({label}): {response.text[:300]}"
                answers[label, arch] = response.json()
        finally:
            for container in containers.values():
                container.remove()
    for arch in ARCHES:
        assert answers["own", arch]["model"]["llm"] == "/opt/ml/model/llm", arch
        assert answers["baked-in", arch]["model"]["llm"] != "/opt/ml/model/llm", arch
        # The tiny model answers something else than the baked-in tier, from the same sources.
        assert answers["own", arch]["answer"] != answers["baked-in", arch]["answer"], arch
        assert answers["own", arch]["sources"] == answers["baked-in", arch]["sources"], arch
    first, second = ARCHES
    assert answers["own", first]["answer"] == answers["own", second]["answer"]
