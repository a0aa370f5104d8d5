"""The images' `index` command: SageMaker Processing builds an index in parallel, then merges it.

    docker run IMAGE index [build]   this instance's documents -> a partial index (one shard)
    docker run IMAGE index merge     every shard -> model.tar.gz holding index/, usable as MODEL_DATA_URL

SageMaker's Processing contract: inputs are downloaded to /opt/ml/processing/input, whatever the job
leaves in /opt/ml/processing/output is uploaded to S3 when it ends, and /opt/ml/config/resourceconfig.json
names this instance (`current_host`, algo-1 ... algo-N). With ShardedByS3Key each instance receives its
own share of DOCS_S3; all instances upload to the same S3 prefix, so each writes its shard into a folder
named after its host. A shard is a complete index artifact of type flat (exact, cheap to build); the merge
step reuses its chunks and vectors (nothing is embedded twice), orders the documents as a single-machine
build does, and builds the final index type once (RAG_INDEX_TYPE), so the merged index answers exactly
as one built on one machine from the same documents.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import tarfile
import time
from dataclasses import replace
from pathlib import Path

from rag.errors import IngestError, RagError
from rag.index.artifact import MANIFEST, IndexedDocument, read_manifest, write_index
from rag.index.stored_documents import read_documents
from rag.ingest.archive import readable_by_all
from rag.ingest.build import build_index, find_documents, strict_from_env
from rag.retrieval.local import load_embedder
from rag.settings import Settings

log = logging.getLogger(__name__)

PROCESSING_DIR = Path("/opt/ml/processing")
RESOURCE_CONFIG = Path("/opt/ml/config/resourceconfig.json")
# What must agree between shards for their vectors and chunks to belong in one index.
COMPATIBLE = ("embedding_model", "dimension", "chunk_size", "chunk_overlap")


def current_host(resource_config: Path = RESOURCE_CONFIG) -> str:
    """This instance's name in the job (algo-1 ...), or `local` outside SageMaker."""
    try:
        return str(json.loads(resource_config.read_text())["current_host"])
    except (OSError, ValueError, KeyError):
        return "local"


def build_shard(
    input_dir: Path, output_dir: Path, settings: Settings, strict: bool = False, host: str | None = None, embedder=None
) -> Path | None:
    """Index this instance's documents into output_dir/shard-<host>; None when it received none."""
    if not Path(input_dir).is_dir():
        raise IngestError(
            f"{input_dir} does not exist: the job needs a ProcessingInput downloaded there "
            "(`make index-job` sets it up)"
        )
    try:
        find_documents(input_dir)
    except IngestError:
        # ShardedByS3Key gives an instance nothing when there are fewer objects than instances.
        log.warning("this instance received no documents in %s; it writes no shard", input_dir)
        return None
    if embedder is None:
        embedder = load_embedder(settings)
    target = Path(output_dir) / f"shard-{host or current_host()}"
    manifest = build_index(
        input_dir, target, embedder, replace(settings, index_type="flat"), progress=False, strict=strict
    )
    log.info("shard %s: %d documents, %d chunks", target.name, manifest["documents"], manifest["chunks"])
    return target


def find_shards(input_dir: Path) -> list[Path]:
    """Every folder under input_dir holding a manifest.json, in a stable order."""
    shards = sorted(path.parent for path in Path(input_dir).rglob(MANIFEST))
    if not shards:
        raise IngestError(
            f"{input_dir} holds no shard (no {MANIFEST} below it); run `make index-job` first and "
            "give this step its output"
        )
    return shards


def merge_documents(shards: list[Path]) -> tuple[list[IndexedDocument], dict]:
    """All documents of the shards in source order, and the settings they share; mismatches are refused."""
    first = read_manifest(shards[0])
    documents: dict[str, IndexedDocument] = {}
    for shard in shards:
        manifest = read_manifest(shard)
        differing = [key for key in COMPATIBLE if manifest.get(key) != first.get(key)]
        if differing:
            raise IngestError(
                f"shard {shard} was built with other settings than {shards[0]} ({', '.join(differing)}); "
                "run the index job again with one configuration"
            )
        for source, document in read_documents(shard).items():
            if source in documents:
                raise IngestError(
                    f"{source} is in two shards (the second is {shard}); give each instance "
                    "distinct documents (ShardedByS3Key does)"
                )
            documents[source] = document
    return [documents[source] for source in sorted(documents)], {key: first[key] for key in COMPATIBLE}


def merge_shards(input_dir: Path, output_dir: Path, settings: Settings, archive_name: str = "model.tar.gz") -> Path:
    """Combine the shards under input_dir into output_dir/<archive_name>, with the index under index/."""
    if Path(archive_name).name != archive_name or not archive_name.endswith(".tar.gz"):
        raise IngestError(f"--archive {archive_name!r} must be a file name ending in .tar.gz, like model.tar.gz")
    shards = find_shards(input_dir)
    documents, manifest = merge_documents(shards)
    output_dir = Path(output_dir)
    staging = output_dir / ".merge-staging"  # on the job's volume, and removed before the upload
    shutil.rmtree(staging, ignore_errors=True)
    try:
        written = write_index(staging / "index", documents, manifest, settings.index_type)
        archive = output_dir / archive_name
        with tarfile.open(archive, "w:gz", compresslevel=6) as tar:
            for path in sorted((staging / "index").iterdir()):
                tar.add(path, arcname=f"index/{path.name}", recursive=False, filter=readable_by_all)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info(
        "merged %d shards: %d documents, %d chunks, %s index (recall@10 %s) -> %s",
        len(shards),
        written["documents"],
        written["chunks"],
        written["index_type"],
        written["recall_at_10"],
        archive,
    )
    return archive


def main(argv: list[str] | None = None) -> int:
    """`index [build|merge]` inside the image (Monolitico/serve and Microservicos/start.sh dispatch here)."""
    parser = argparse.ArgumentParser(prog="index", description="SageMaker Processing: build a shard, or merge shards")
    parser.add_argument("step", nargs="?", choices=["build", "merge"], default="build")
    parser.add_argument("--input", type=Path, default=PROCESSING_DIR / "input")
    parser.add_argument("--output", type=Path, default=PROCESSING_DIR / "output")
    parser.add_argument("--archive", default="model.tar.gz", help="merge: the archive's file name")
    parser.add_argument("--strict", action="store_true", help="build: stop on an unreadable document (or STRICT=1)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    started = time.monotonic()
    try:
        settings = Settings.from_env()
        args.output.mkdir(parents=True, exist_ok=True)
        if args.step == "merge":
            merge_shards(args.input, args.output, settings, args.archive)
        else:
            build_shard(args.input, args.output, settings, strict=args.strict or strict_from_env())
    except RagError as exc:
        log.error("%s", exc.message)
        return 2
    log.info("index %s done in %.1f s", args.step, time.monotonic() - started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
