"""Least privilege outside containers: a server started as root runs its Gunicorn workers as
RAG_WORKER_USER, and a server started by a normal user works as it is (nothing to drop)."""

from __future__ import annotations

import os
import pwd
import subprocess
import sys

import psutil
import pytest

from tests.service.conftest import start_architecture
from tests.support import ServerProcess

pytestmark = pytest.mark.slow
NOBODY = pwd.getpwnam("nobody")
QUESTION = {"query": "When did the Velmora Tramway open?", "max_new_tokens": 8}


def _nobody_problem() -> str | None:
    """Why these tests cannot run here: not root, or this interpreter is out of `nobody`'s reach."""
    if os.geteuid() != 0:
        return "needs root; as a normal user every service test already runs `serve` without privileges"
    # A worker keeps the interpreter it was forked from: its executable and standard library must be readable.
    probe = subprocess.run(
        [
            "setpriv",
            f"--reuid={NOBODY.pw_uid}",
            f"--regid={NOBODY.pw_gid}",
            "--clear-groups",
            "--",
            "test",
            "-r",
            os.__file__,
            "-a",
            "-x",
            os.path.realpath(sys.executable),
        ],
        capture_output=True,
        timeout=60,
    )
    if probe.returncode != 0:
        return (
            f"`nobody` cannot run {sys.executable} here (its standard library sits in a folder only root "
            "can read); the container tests check the workers' user in the images"
        )
    return None


_PROBLEM = _nobody_problem()
root_only = pytest.mark.skipif(_PROBLEM is not None, reason=_PROBLEM or "")


def gunicorn_tree(server: ServerProcess) -> tuple[psutil.Process, list[psutil.Process]]:
    """The monolith's gunicorn master (serve execs it) and its workers."""
    master = psutil.Process(server.pid)
    return master, master.children()


@root_only
def test_workers_started_by_root_switch_to_the_worker_user(sample_index, tmp_path):
    service = start_architecture("monolito", tmp_path, sample_index, RAG_WORKER_USER="nobody")
    try:
        service.wait_ready()
        assert service.invoke(QUESTION).status_code == 200
        master, workers = gunicorn_tree(service.server)
        assert master.uids().real == 0, "the master keeps root: it binds the port and supervises"
        assert workers, "no gunicorn worker"
        for worker in workers:
            assert set(worker.uids()) == {NOBODY.pw_uid} and set(worker.gids()) == {NOBODY.pw_gid}
            groups = {
                int(g) for g in open(f"/proc/{worker.pid}/status").read().split("Groups:")[1].split("\n")[0].split()
            }
            assert 0 not in groups, f"worker kept root's supplementary groups: {groups}"
    finally:
        service.server.stop()


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can switch users; a normal user's server ignores the variable")
def test_a_worker_user_that_does_not_exist_stops_startup_by_name(sample_index, tmp_path):
    service = start_architecture("monolito", tmp_path, sample_index, RAG_WORKER_USER="no-such-user-here")
    try:
        assert service.server.proc.wait(timeout=60) != 0
        assert "RAG_WORKER_USER='no-such-user-here' is not a user" in service.server.log()
    finally:
        service.server.stop()


@root_only
def test_serve_started_by_a_normal_user_works(sample_index, tmp_path):
    # setpriv: the same entrypoint, started as `nobody`; RAG_WORKER_USER is then ignored (no privilege to drop).
    service = start_architecture(
        "monolito",
        tmp_path,
        sample_index,
        RAG_WORKER_USER="root",
        prefix=("setpriv", f"--reuid={NOBODY.pw_uid}", f"--regid={NOBODY.pw_gid}", "--clear-groups", "--"),
    )
    try:
        service.wait_ready()
        assert service.invoke(QUESTION).status_code == 200
        master, workers = gunicorn_tree(service.server)
        assert {master.uids().real, *(w.uids().real for w in workers)} == {NOBODY.pw_uid}
    finally:
        service.server.stop()
