"""upload: pack the index (and, with UPLOAD_LLM=1, the LLM weights) into model.tar.gz and put it in S3.

SageMaker extracts ModelDataUrl into /opt/ml/model, so the archive holds `index/` and `llm/` at its
top level: the container then finds /opt/ml/model/index and /opt/ml/model/llm.
"""

from __future__ import annotations

import logging
import tarfile
import tempfile
import threading
from pathlib import Path

from boto3.s3.transfer import TransferConfig

from rag.errors import RagError
from rag.index.artifact import missing_files
from rag.ingest.archive import readable_by_all

from .config import ROOT, Config
from .errors import ConfigError, NotFound
from .session import Aws

log = logging.getLogger(__name__)


def archive_members(config: Config) -> dict[str, Path]:
    """Top-level name in the archive -> local folder, validated before anything is packed."""
    index = Path(config.get("INDEX") or ROOT / "indexes" / "sample")
    try:
        missing = missing_files(index)
    except (RagError, ValueError) as exc:  # a manifest of an unknown format, or not JSON
        raise ConfigError(f"INDEX={index}: {getattr(exc, 'message', exc)}") from exc
    if missing:
        raise ConfigError(
            f"INDEX={index} is not an index (missing {', '.join(missing)}): run `make setup` for the sample "
            "index or `make index DOCS=... INDEX=...`"
        )
    members = {"index": index}
    if config.flag("UPLOAD_LLM"):
        llm = Path(config.get("LLM_DIR") or ROOT / "models" / "smollm2-135m-instruct")
        if not (llm / "config.json").is_file():
            raise ConfigError(
                f"LLM_DIR={llm} has no config.json: run `make models`, or set LLM_DIR to a transformers model folder"
            )
        members["llm"] = llm
    return members


def pack(members: dict[str, Path], target: Path) -> Path:
    """Write model.tar.gz with each folder under its top-level name; log each file as it goes in."""
    # dereference: model folders often hold symlinks (Hugging Face cache); SageMaker needs the files.
    with tarfile.open(target, "w:gz", compresslevel=6, dereference=True) as archive:
        for top, folder in members.items():
            for path in sorted(p for p in folder.rglob("*") if p.is_file()):
                name = f"{top}/{path.relative_to(folder).as_posix()}"
                log.info("packing %s (%s)", name, human_size(path.stat().st_size))
                archive.add(path, arcname=name, recursive=False, filter=readable_by_all)
    log.info("model.tar.gz: %s", human_size(target.stat().st_size))
    return target


class Progress:
    """boto3 transfer callback that logs every 10 % (called from several threads)."""

    def __init__(self, total: int, label: str):
        self.total, self.label, self.sent, self.next_step = max(total, 1), label, 0, 10
        self.lock = threading.Lock()

    def __call__(self, amount: int) -> None:
        with self.lock:
            self.sent += amount
            percent = self.sent * 100 // self.total
            while percent >= self.next_step and self.next_step <= 100:
                log.info("uploading %s: %3d%% of %s", self.label, self.next_step, human_size(self.total))
                self.next_step += 10


def run_upload(aws: Aws) -> int:
    """`upload`: pack, upload, print the s3:// URI."""
    config = aws.config
    url = config.model_data_url()
    bucket, _, key = url[len("s3://") :].partition("/")
    members = archive_members(config)
    if aws.call(f"find bucket {bucket}", aws.s3.head_bucket, absent=["404", "NoSuchBucket"], Bucket=bucket) is None:
        raise NotFound(
            f"bucket {bucket} does not exist: create it (`aws s3 mb s3://{bucket} --region {aws.region}`) or fix BUCKET_NAME"
        )
    with tempfile.TemporaryDirectory(prefix="rag-upload-") as tmp:
        archive = pack(members, Path(tmp) / "model.tar.gz")
        progress = Progress(archive.stat().st_size, url)
        aws.call(
            f"upload {url}",
            aws.s3.upload_file,
            Filename=str(archive),
            Bucket=bucket,
            Key=key,
            Callback=progress,
            Config=TransferConfig(multipart_threshold=64 * 1024 * 1024),
        )
    log.info("%s", url)  # the URI alone on the last line, for scripts: URI=$(make -s upload | tail -1)
    return 0


def human_size(size: float) -> str:
    """1536 -> '1.5 KB'."""
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GB"
