"""logs: CloudWatch events of the endpoint from moto's Logs API, once and with FOLLOW=1."""

from __future__ import annotations

import sys
import time

from tests.aws.aws_support import make
from tests.support import ServerProcess

GROUP = "/aws/sagemaker/Endpoints/rag-monolito"


def put(logs, message: str) -> None:
    logs.put_log_events(
        logGroupName=GROUP,
        logStreamName="AllTraffic/i-0123",
        logEvents=[{"timestamp": int(time.time() * 1000), "message": message}],
    )


def test_logs_prints_recent_events_and_names_a_missing_group(moto, aws_env, account):
    missing = make("logs", aws_env, *account.variables())
    assert missing.returncode != 0
    assert f"log group {GROUP} does not exist" in missing.stderr

    logs = moto.client("logs")
    logs.create_log_group(logGroupName=GROUP)
    logs.create_log_stream(logGroupName=GROUP, logStreamName="AllTraffic/i-0123")
    put(logs, "gunicorn listening on 0.0.0.0:8080")
    put(logs, "ping ready")
    result = make("logs", aws_env, *account.variables())
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[0].endswith("i-0123 | gunicorn listening on 0.0.0.0:8080") and lines[1].endswith("| ping ready")


def test_follow_tails_new_events(moto, aws_env, account, tmp_path):
    logs = moto.client("logs")
    logs.create_log_group(logGroupName=GROUP)
    logs.create_log_stream(logGroupName=GROUP, logStreamName="AllTraffic/i-0123")
    put(logs, "first")
    follower = ServerProcess(
        [sys.executable, "-m", "sagemaker_lifecycle", "logs", "FOLLOW=1", "REGION=us-east-1", "POLL_SECONDS=0.2"],
        env=aws_env,
        log_path=tmp_path / "follow.log",
    )
    try:
        wait_for_text(follower, "| first")
        put(logs, "second, after the tail started")
        wait_for_text(follower, "| second, after the tail started")
        assert follower.log().count("| first") == 1  # each event once
    finally:
        follower.stop()


def wait_for_text(process: ServerProcess, text: str, deadline_s: float = 20) -> None:
    end = time.monotonic() + deadline_s
    while text not in process.log():
        assert process.proc.poll() is None, process.log()
        assert time.monotonic() < end, f"{text!r} not seen in: {process.log()}"
        time.sleep(0.1)
