"""The Processing contract, for real: `docker run IMAGE index` over two local shards laid out as
SageMaker mounts them, then `index merge`, then the merged model.tar.gz served from /opt/ml/model,
answering exactly as an index built on one machine with `python -m rag.ingest` (what `make index` runs).

SageMaker Processing would download each instance's ShardedByS3Key share of DOCS_S3 into
/opt/ml/processing/input, name the instance in /opt/ml/config/resourceconfig.json, and upload
/opt/ml/processing/output to one S3 prefix for all instances (here: one host folder both write to).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tarfile
import uuid

import numpy as np
import pytest

from rag.index import faiss_types
from rag.index.artifact import read_manifest
from tests.container.docker_support import DOCKER, Container, docker, start_ready
from tests.documents import docx_bytes, pdf_bytes
from tests.support import ROOT, child_env

pytestmark = pytest.mark.docker

QUESTIONS = [
    "When did the Velmora Tramway open, and who designed its first line?",
    "How often do the Skerrow night ferries leave the quay?",
    "What does a Gull Card day pass cost on the funicular?",
]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """The sample corpus plus a PDF (two pages) and a Word file: the formats real corpora come in."""
    docs = tmp_path_factory.mktemp("docs")
    shutil.copytree(ROOT / "data" / "sample", docs, dirs_exist_ok=True)
    (docs / "manuals").mkdir()
    (docs / "manuals" / "ferry-timetable.pdf").write_bytes(
        pdf_bytes(
            [
                "Skerrow ferry timetable.\nDay ferries leave the Saltmarket quay every 20 minutes.",
                "Night service.\nThe Skerrow night ferries leave the quay every 70 minutes after midnight.",
            ]
        )
    )
    (docs / "manuals" / "funicular-fares.docx").write_bytes(
        docx_bytes(
            "Funicular fares",
            ["A Gull Card day pass on the funicular costs 7.50 crowns."],
            [["ticket", "price"], ["single", "2.40"]],
        )
    )
    return docs


def docker_run(image: str, *args: str, mounts: dict, timeout: float = 600) -> subprocess.Popen:
    """Start `docker run --rm IMAGE index ...` with host folders mounted; the caller waits for it."""
    name = f"rag-index-test-{uuid.uuid4().hex[:10]}"
    argv = [DOCKER, "run", "--rm", "--name", name]
    for host, (target, mode) in mounts.items():
        argv += ["--volume", f"{host}:{target}:{mode}"]
    proc = subprocess.Popen([*argv, image, "index", *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    proc.container_name = name
    return proc


def finish(proc: subprocess.Popen, timeout: float = 600) -> str:
    """Wait for a docker_run; the container is removed whatever happens. Returns its output."""
    try:
        output, _ = proc.communicate(timeout=timeout)
    finally:
        docker("rm", "--force", proc.container_name, check=False)
    assert proc.returncode == 0, output[-3000:]
    return output


@pytest.fixture(scope="module")
def merged_model(images, corpus, tmp_path_factory):
    """Two instances index their shards at once, the microservices image merges: /opt/ml/model laid out."""
    work = tmp_path_factory.mktemp("processing")
    files = sorted(p.relative_to(corpus) for p in corpus.rglob("*") if p.is_file())
    shards_out = work / "shards"
    shards_out.mkdir()
    runs = []
    for number in (1, 2):
        shard_in, config = work / f"input-{number}", work / f"config-{number}"
        for relative in files[number - 1 :: 2]:  # each instance gets its share, at its DOCS-relative path
            (shard_in / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(corpus / relative, shard_in / relative)
        config.mkdir()
        (config / "resourceconfig.json").write_text(
            json.dumps({"current_host": f"algo-{number}", "hosts": ["algo-1", "algo-2"]})
        )
        runs.append(
            docker_run(
                images["monolito"],
                mounts={
                    shard_in: ("/opt/ml/processing/input", "ro"),
                    shards_out: ("/opt/ml/processing/output", "rw"),
                    config: ("/opt/ml/config", "ro"),
                },
            )
        )
    for run in runs:
        finish(run)
    assert sorted(p.name for p in shards_out.iterdir()) == ["shard-algo-1", "shard-algo-2"]
    merged_out = work / "merged"
    merged_out.mkdir()
    finish(
        docker_run(
            images["microservicos"],
            "merge",
            mounts={shards_out: ("/opt/ml/processing/input", "ro"), merged_out: ("/opt/ml/processing/output", "rw")},
        )
    )
    assert sorted(p.name for p in merged_out.iterdir()) == ["model.tar.gz"]  # all that SageMaker uploads
    model = work / "opt-ml-model"
    with tarfile.open(merged_out / "model.tar.gz") as archive:
        archive.extractall(model, filter="data")  # what SageMaker does with MODEL_DATA_URL
    return model


@pytest.fixture(scope="module")
def single_model(corpus, tmp_path_factory):
    """The same documents indexed on one machine by `python -m rag.ingest` (what `make index` runs)."""
    model = tmp_path_factory.mktemp("single-model")
    subprocess.run(
        [sys.executable, "-m", "rag.ingest", "--docs", str(corpus), "--index", str(model / "index")],
        cwd=ROOT,
        env=child_env(),
        check=True,
        capture_output=True,
        timeout=900,
    )
    model.chmod(0o755)  # pytest's folders are private; SageMaker's /opt/ml/model is readable by the workers
    return model


def test_merged_shards_are_the_single_machine_index(merged_model, single_model):
    merged, single = merged_model / "index", single_model / "index"
    for name in ("chunks.jsonl", "documents.jsonl", "chunk_offsets.npy"):
        assert (merged / name).read_bytes() == (single / name).read_bytes(), name
    assert '"page": 2' in (merged / "chunks.jsonl").read_text()
    first, second = read_manifest(merged), read_manifest(single)
    for key in ("embedding_model", "dimension", "documents", "chunks", "index_type", "chunk_size", "chunk_overlap"):
        assert first[key] == second[key], key
    vectors = [
        faiss_types.all_vectors(faiss_types.read(path / "faiss.index", first["index_type"]))
        for path in (merged, single)
    ]
    # Embedded in a container and on the host, in other batches: the same vectors up to float rounding.
    assert np.allclose(vectors[0], vectors[1], atol=1e-5)


def test_the_merged_index_answers_as_the_single_machine_index(images, merged_model, single_model):
    containers = {}
    try:
        for name, model in (("merged", merged_model), ("single", single_model)):
            containers[name] = Container(images["monolito"], model_dir=model, env={"RAG_TORCH_THREADS": "1"})
        start_ready(containers)
        for question in QUESTIONS:
            bodies = {}
            for name, container in containers.items():
                response = container.invoke({"query": question, "max_new_tokens": 24, "top_k": 4})
                assert response.status_code == 200, f"{name}: {response.text[:300]}"
                bodies[name] = response.json()
            merged, single = bodies["merged"], bodies["single"]
            assert merged["answer"] == single["answer"], question
            assert [{**s, "score": None} for s in merged["sources"]] == [
                {**s, "score": None} for s in single["sources"]
            ]
            assert np.allclose(
                [s["score"] for s in merged["sources"]], [s["score"] for s in single["sources"]], atol=1e-4
            )
        night = containers["merged"].invoke({"query": QUESTIONS[1], "max_new_tokens": 8}).json()["sources"][0]
        assert (night["source"], night["page"]) == ("manuals/ferry-timetable.pdf", 2)
    finally:
        for container in containers.values():
            container.remove()
