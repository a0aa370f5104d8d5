"""The Makefile as a user drives it: values with shell syntax stay data, and an empty Q is refused."""

from __future__ import annotations

import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.support import ROOT, VENV_BIN, child_env


def make(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """`make -s ARGS` in the repository, with this test run's virtualenv."""
    return subprocess.run(
        ["make", "-s", "--no-print-directory", f"VENV={VENV_BIN.parent}", *args],
        cwd=ROOT,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


class Recorder(BaseHTTPRequestHandler):
    """Answers every POST with a valid answer and remembers that it was asked."""

    asked: list[bytes] = []

    def do_POST(self):  # noqa: N802 - the name http.server calls
        Recorder.asked.append(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        body = b'{"answer": "ok", "sources": []}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def recorder_url():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    Recorder.asked = []
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("target", ["invoke", "test"])
@pytest.mark.parametrize("question", ["", "   "])
def test_empty_question_is_refused_not_replaced_by_the_sample(recorder_url, target, question):
    result = make(target, f"URL={recorder_url}", f"Q={question}")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Q is empty" in result.stderr
    assert Recorder.asked == [], "a question was sent anyway"


def test_a_given_question_is_sent(recorder_url):
    result = make("invoke", f"URL={recorder_url}", "Q=When did it open?")
    assert result.returncode == 0, result.stderr
    assert Recorder.asked and b"When did it open?" in Recorder.asked[0]


def test_values_with_shell_syntax_are_data(tmp_path):
    marker = tmp_path / "ran"
    # Each would run `touch` if a recipe pasted the value into the shell unquoted or in double quotes.
    index = make("index", f"DOCS=`touch {marker}`", f"INDEX={tmp_path / 'index'}")
    assert index.returncode != 0 and not marker.exists(), index.stderr
    serve = make("serve", f"PORT=1; touch {marker}")
    assert serve.returncode != 0 and not marker.exists(), serve.stderr
    assert "SAGEMAKER_BIND_TO_PORT" in serve.stdout + serve.stderr  # refused by the settings, by name
    # `echo` as the docker client: the build command is printed, not run.
    build = make("build", "ARCH=monolito", "DOCKER=echo", f"IMAGE_TAG=x; touch {marker}")
    assert build.returncode == 0 and not marker.exists(), build.stderr
    assert f"-t rag-monolito:x; touch {marker} ." in build.stdout
