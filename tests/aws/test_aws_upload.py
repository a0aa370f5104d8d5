"""upload round trip: pack, put in moto's S3, download, and compare the archive with the folders."""

from __future__ import annotations

import io
import json
import tarfile

from tests.aws.aws_support import make


def test_upload_round_trip_with_llm(moto, aws_env, account, index_dir, tmp_path):
    llm = tmp_path / "llm"
    (llm / "tokenizer").mkdir(parents=True)
    (llm / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (llm / "tokenizer" / "tokenizer.json").write_text("{}")
    (llm / "weights.safetensors").symlink_to(index_dir / "faiss.index")  # links are packed as files
    (llm / "openvino").mkdir()  # an engine copy goes in, under its folder
    (llm / "openvino" / "openvino_model.bin").write_bytes(b"\0" * 64)

    result = make(
        "upload",
        aws_env,
        *account.variables(f"INDEX={index_dir}", "UPLOAD_LLM=1", f"LLM_DIR={llm}", "S3_PREFIX=releases/v1"),
    )

    assert result.returncode == 0, result.stderr
    uri = f"s3://{account.bucket}/releases/v1/model.tar.gz"
    assert result.stdout.strip().splitlines()[-1] == uri
    assert "packing index/faiss.index (2.0 KB)" in result.stdout
    assert f"uploading {uri}: 100%" in result.stdout
    body = moto.client("s3").get_object(Bucket=account.bucket, Key="releases/v1/model.tar.gz")["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as archive:
        members = {member.name: member for member in archive.getmembers()}
        assert sorted(members) == [
            "index/chunks.jsonl",
            "index/faiss.index",
            "index/manifest.json",
            "llm/config.json",
            "llm/openvino/openvino_model.bin",
            "llm/tokenizer/tokenizer.json",
            "llm/weights.safetensors",
        ]
        assert all(member.isfile() for member in members.values())
        for name in ("manifest.json", "faiss.index", "chunks.jsonl"):
            assert archive.extractfile(f"index/{name}").read() == (index_dir / name).read_bytes()
        assert archive.extractfile("llm/weights.safetensors").read() == (index_dir / "faiss.index").read_bytes()


def test_upload_without_llm_and_bad_inputs(moto, aws_env, account, index_dir, tmp_path):
    ok = make("upload", aws_env, *account.variables(f"INDEX={index_dir}"))
    assert ok.returncode == 0, ok.stderr
    body = moto.client("s3").get_object(Bucket=account.bucket, Key="rag-monolito/model.tar.gz")["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as archive:
        assert all(name.startswith("index/") for name in archive.getnames())

    not_an_index = make("upload", aws_env, *account.variables(f"INDEX={tmp_path}"))
    assert "is not an index (missing manifest.json, faiss.index, chunks.jsonl)" in not_an_index.stderr
    no_bucket = make("upload", aws_env, *account.variables(f"INDEX={index_dir}", "BUCKET_NAME=no-such-bucket-here"))
    assert "bucket no-such-bucket-here does not exist" in no_bucket.stderr
    assert "Traceback" not in not_an_index.stderr + no_bucket.stderr


def test_make_variables_never_reach_a_shell(aws_env, account, tmp_path):
    """A value with quotes and backticks is a path to the CLI, not shell code (mk/aws.mk quotes nothing into a
    command line: variables travel in the environment)."""
    marker = tmp_path / "executed"
    index = f'{tmp_path}/my "index" `touch {marker}`'
    result = make("upload", aws_env, *account.variables(f"INDEX={index}"))
    assert not marker.exists()
    assert result.returncode == 2 and f"INDEX={index} is not an index" in result.stderr, result.stderr
