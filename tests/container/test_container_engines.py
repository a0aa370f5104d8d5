"""The images carry both engine copies: `RAG_LLM_ENGINE=openvino` serves in both, from the copy the build made,
with CTranslate2's (the default tier's engine) answer and sources; and a model brought in /opt/ml/model/llm serves on OpenVINO from the
`llm/openvino/` copy made on the host (`python -m rag.models openvino --model-dir DIR`), as
`make upload UPLOAD_LLM=1` packs it. The images leave OpenVINO's converter out. Under a memory limit too small
for the model and its KV cache pool, the monolith refuses it in one line and /ping says `insufficient_memory`, as
with the default engine, though OpenVINO's check runs in the engine's child process."""

from __future__ import annotations

import pytest

from rag.model_files import convert, make_readable
from tests.container.docker_support import QUESTION, Container, start_ready, wait_until

pytestmark = pytest.mark.docker

LOADED = "loaded with OpenVINO GenAI"


@pytest.fixture(scope="module")
def own_llm_with_openvino_copy(tmp_path_factory):
    """/opt/ml/model with only llm/: the fuzz suite's tiny model (no image carries it) and its OpenVINO copy."""
    from tests.fuzz.tiny_llm import make_tiny_llm

    model = tmp_path_factory.mktemp("opt-ml-model-openvino")
    model.chmod(0o755)  # readable by all, as SageMaker's is: the workers do not run as root
    make_tiny_llm(model / "llm")
    convert(model / "llm", "openvino")
    make_readable(model / "llm")
    return model


def test_openvino_serves_in_both_images_with_ctranslate2s_answer(images, empty_model_dir, own_llm_with_openvino_copy):
    # One thread per process: four containers start at once on a shared machine.
    one_thread = {"RAG_TORCH_THREADS": "1"}
    openvino = {**one_thread, "RAG_LLM_ENGINE": "openvino"}
    containers = {}
    try:
        containers["monolito", "ctranslate2"] = Container(
            images["monolito"], model_dir=empty_model_dir, env={**one_thread, "RAG_LLM_ENGINE": "ctranslate2"}
        )
        for arch in ("monolito", "microservicos"):
            containers[arch, "openvino"] = Container(images[arch], model_dir=empty_model_dir, env=openvino)
        containers["monolito", "own"] = Container(
            images["monolito"], model_dir=own_llm_with_openvino_copy, env=openvino
        )
        start_ready(containers)
        bodies = {}
        for key, container in containers.items():
            response = container.invoke(QUESTION)
            assert response.status_code == 200, f"{key}: {response.status_code} {response.text[:500]}"
            bodies[key] = response.json()
            assert (LOADED in container.logs()) == (key[1] != "ctranslate2"), f"{key}: {container.logs()[-2000:]}"
        default = bodies["monolito", "ctranslate2"]
        assert "1889" in default["answer"], default["answer"]
        for arch in ("monolito", "microservicos"):
            body = bodies[arch, "openvino"]
            assert body["answer"] == default["answer"], arch
            assert [(s["source"], s["chunk"]) for s in body["sources"]] == [
                (s["source"], s["chunk"]) for s in default["sources"]
            ], arch
            assert body["usage"] == default["usage"], arch
        own = bodies["monolito", "own"]
        assert own["model"]["llm"] == "/opt/ml/model/llm"
        assert own["sources"] and own["sources"][0]["source"] == "tramway.md"
        # Only the copy travels: the image has no converter to make one.
        probe = containers["monolito", "openvino"].exec_python(
            "import importlib.util, os, sys; print(importlib.util.find_spec('optimum') is None, sys.prefix, "
            "os.path.isdir('/opt/venv/openvino-converter'))"
        )
        assert probe.stdout.split() == ["True", "/opt/venv", "False"], probe.stderr
    finally:
        for container in containers.values():
            container.remove()


def test_openvino_too_big_for_the_memory_limit_is_refused_as_insufficient_memory(images, empty_model_dir):
    # Measured (2026-12-06): at 1024 MB, once retrieval has loaded, 541 MiB are free and the OpenVINO model needs
    # 893 (513 of weights, a 180 MiB KV cache pool, 200 of buffers). Until the child's error kept its kind,
    # /ping said `internal`.
    env = {"RAG_TORCH_THREADS": "1", "RAG_LLM_ENGINE": "openvino"}
    with Container(images["monolito"], model_dir=empty_model_dir, env=env, memory="1024m") as container:

        def refused():
            try:
                return "insufficient_memory" in container.ping().text
            except Exception:
                return False

        assert wait_until(refused, 300), container.logs()[-3000:]
        response = container.ping()
        logs = container.logs()
    assert response.status_code == 503 and response.json()["status"] == "degraded", response.text
    assert "the monolith pipeline failed to load (insufficient_memory)" in response.json()["error"]
    assert logs.count("for its weights, its KV cache (180 MiB) and its buffers once serving, but only") == 1, logs[
        -3000:
    ]
    assert "the container's limit is 1024 MiB" in logs and "RAG_LLM_KV_CACHE_TOKENS (8192)" in logs
