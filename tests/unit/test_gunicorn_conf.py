"""serving/gunicorn_conf.py: who the workers run as (every branch), and Gunicorn's own errors as JSON."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import socket
import tempfile
from pathlib import Path

import pytest

from rag.errors import ConfigError
from serving.gunicorn_conf import unreadable_for, worker_account, write_json_error

NOBODY = pwd.getpwnam("nobody")


def test_started_as_root_with_a_user_switches_to_it():
    assert worker_account({"RAG_WORKER_USER": " nobody "}, euid=0).pw_uid == NOBODY.pw_uid


@pytest.mark.parametrize(
    "environ, euid",
    [({}, 0), ({"RAG_WORKER_USER": ""}, 0), ({"RAG_WORKER_USER": "nobody"}, 1000)],
    ids=["unset", "empty", "normal user"],
)
def test_nothing_to_switch(environ, euid):
    # A normal user cannot switch (make serve as yourself), and without a user configured nothing changes.
    assert worker_account(environ, euid=euid) is None


@pytest.mark.parametrize(
    "name, fragment", [("no-such-user-here", "is not a user"), ("root", "is root or in root's group")]
)
def test_a_bad_user_is_refused_by_name(name, fragment):
    with pytest.raises(ConfigError, match=f"RAG_WORKER_USER='{name}' {fragment}"):
        worker_account({"RAG_WORKER_USER": name}, euid=0)


@pytest.mark.parametrize(
    "status, reason, mesg, error_type",
    [
        (414, "URI Too Long", "Request Line is too large (10008 > 4094)", "invalid_request"),
        (400, "Bad Request", "Invalid header value 'a\x01\xe9'", "invalid_request"),
        (501, "Not Implemented", "", "invalid_request"),
        (500, "Internal Server Error", "", "internal"),
    ],
)
def test_gunicorn_errors_are_written_as_json(status, reason, mesg, error_type):
    left, right = socket.socketpair()
    with left, right:
        write_json_error(left, status, reason, mesg)
        left.close()
        data = b"".join(iter(lambda: right.recv(4096), b""))
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(f"HTTP/1.1 {status} {reason}\r\n".encode())
    assert b"Content-Type: application/json" in head and f"Content-Length: {len(body)}".encode() in head
    error = json.loads(body)
    assert error["error_type"] == error_type and error["error"]
    if error_type == "internal":
        assert error["error"] == "internal error; see the service log"
    else:
        assert error["error"].startswith(reason) and mesg in error["error"]


@pytest.mark.skipif(os.geteuid() != 0, reason="switching to another user needs root")
def test_files_the_worker_user_cannot_read_are_named():
    root = Path(tempfile.mkdtemp(prefix="rag-model-"))  # not under pytest's 0700 tmp folder
    try:
        root.chmod(0o755)
        (root / "config.json").write_text("{}")
        (root / "config.json").chmod(0o644)
        (root / "secret.bin").write_text("x")
        (root / "secret.bin").chmod(0o600)
        (root / "closed").mkdir(mode=0o700)
        (root / "closed" / "weights").write_text("x")
        unreadable = unreadable_for(NOBODY, [root, root / "missing"])
        assert sorted(unreadable) == [str(root / "closed"), str(root / "secret.bin")]
        assert unreadable_for(NOBODY, [root / "config.json"]) == []
        assert unreadable_for(NOBODY, [root / "secret.bin"]) == [str(root / "secret.bin")]
    finally:
        shutil.rmtree(root)
