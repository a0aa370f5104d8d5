"""Both images, run as SageMaker runs them: /ping, a cited answer, every bad input of docs/api.md,
recovery of a killed LLM service, and a SIGTERM that drains and stops in time.

The module shares one container per image (starting them is the slow part). The shutdown test
stops them, so it stays the last test of this file.
"""

from __future__ import annotations

import json
import threading
import time

import pytest
import requests

from bench.core.processes import log_records
from tests.container.docker_support import ARCHES, QUESTION, wait_until

pytestmark = pytest.mark.docker

SIX_MB = 6 * 1024 * 1024
BAD_INPUTS = {
    # name: (body, content type, status, error_type)
    "broken JSON": (b'{"query": ', "application/json", 400, "invalid_json"),
    "JSON that is not an object": (b'["a question"]', "application/json", 400, "invalid_request"),
    "no query": ({"top_k": 3}, "application/json", 400, "invalid_request"),
    "blank query": ({"query": "  \n "}, "application/json", 400, "invalid_request"),
    "query over 4000 characters": ({"query": "x" * 4001}, "application/json", 400, "invalid_request"),
    "top_k 0": ({"query": "tram", "top_k": 0}, "application/json", 400, "invalid_request"),
    "top_k 21": ({"query": "tram", "top_k": 21}, "application/json", 400, "invalid_request"),
    "top_k as text": ({"query": "tram", "top_k": "3"}, "application/json", 400, "invalid_request"),
    "max_new_tokens 0": ({"query": "tram", "max_new_tokens": 0}, "application/json", 400, "invalid_request"),
    "max_new_tokens 1025": ({"query": "tram", "max_new_tokens": 1025}, "application/json", 400, "invalid_request"),
    "temperature -0.1": ({"query": "tram", "temperature": -0.1}, "application/json", 400, "invalid_request"),
    "temperature 2.5": ({"query": "tram", "temperature": 2.5}, "application/json", 400, "invalid_request"),
    "unknown field": ({"query": "tram", "colour": "red"}, "application/json", 400, "invalid_request"),
    "empty text body": (b"", "text/plain", 400, "invalid_request"),
    "form body": (b"query=tram", "application/x-www-form-urlencoded", 415, "unsupported_media_type"),
    "over 6 MB": (b"x" * (SIX_MB + 1), "text/plain", 413, "payload_too_large"),
}


def test_ping_goes_from_503_to_200(served):
    containers, startups = served
    for arch, startup in startups.items():
        assert 503 in startup.statuses, f"{arch}: /ping never said 503 while loading: {startup.statuses}"
        assert startup.statuses[-1] == 200
        assert containers[arch].ping().json()["status"] == "ready"


def test_answer_is_cited_and_both_images_agree(served):
    containers, _ = served
    bodies = {}
    for arch, container in containers.items():
        response = container.invoke(QUESTION)
        assert response.status_code == 200, f"{arch}: {response.status_code} {response.text[:500]}"
        assert response.headers["Content-Type"].startswith("application/json")
        bodies[arch] = body = response.json()
        assert body["sources"], f"{arch}: no sources cited"
        assert body["sources"][0]["source"] == "tramway.md"
        assert "1889" in body["answer"], f"{arch}: {body['answer']!r}"
        assert {"rank", "source", "chunk", "score", "text"} <= set(body["sources"][0])
    assert bodies["monolito"]["architecture"] == "monolith"
    assert bodies["microservicos"]["architecture"] == "microservices"
    mono, micro = bodies["monolito"], bodies["microservicos"]
    assert mono["answer"] == micro["answer"]
    assert [(s["source"], s["chunk"]) for s in mono["sources"]] == [(s["source"], s["chunk"]) for s in micro["sources"]]
    for left, right in zip(mono["sources"], micro["sources"]):
        assert left["score"] == pytest.approx(right["score"], abs=1e-4)


@pytest.mark.parametrize("case", list(BAD_INPUTS))
@pytest.mark.parametrize("arch", ARCHES)
def test_bad_input_gets_its_4xx(served, arch, case):
    body, content_type, status, error_type = BAD_INPUTS[case]
    response = served[0][arch].invoke(body, content_type=content_type, timeout=30)
    assert response.status_code == status, response.text[:300]
    error = response.json()
    assert error["error_type"] == error_type
    assert isinstance(error["error"], str) and error["error"]
    if case == "unknown field":
        assert "colour" in error["error"]


# Inside the container: SIGKILL every process of the LLM service (its gunicorn master and worker),
# as a crash would. The images have no ps or pkill, so /proc is read directly (skipping this very
# process, whose own command line names the service too).
KILL_LLM_SERVICE = """
import os, signal
killed = []
for pid in filter(str.isdigit, os.listdir('/proc')):
    if int(pid) == os.getpid():
        continue
    try:
        cmdline = open(f'/proc/{pid}/cmdline', 'rb').read()
    except OSError:
        continue
    if b'Microservicos.llm_service' in cmdline:
        os.kill(int(pid), signal.SIGKILL)
        killed.append(int(pid))
print(killed)
"""
LIST_PROCESSES = """
import os
for pid in filter(str.isdigit, os.listdir('/proc')):
    try:
        fields = open(f'/proc/{pid}/stat').read().rsplit(')', 1)[1].split()
        name = open(f'/proc/{pid}/comm').read().strip()
    except OSError:
        continue
    print(pid, fields[0], name)
"""


def test_killed_llm_service_gives_503_then_recovers(served, observations):
    container = served[0]["microservicos"]
    killed = json.loads(container.exec_python(KILL_LLM_SERVICE).stdout)
    assert killed, "no LLM service process found in the container"
    started = time.monotonic()

    def ping_status():
        try:
            return container.ping().status_code
        except requests.RequestException:
            return 0

    assert wait_until(lambda: ping_status() == 503, 30, 0.05), "/ping did not report the dead LLM service"
    during = container.invoke(QUESTION, timeout=60)
    assert during.status_code in (200, 503), during.text[:300]  # 200 only if it already came back
    if during.status_code == 503:
        assert during.json()["error_type"] in ("not_ready", "upstream_unavailable")
    assert wait_until(lambda: ping_status() == 200, 180), f"no recovery:\n{container.logs()[-3000:]}"
    observations["llm_kill_recovery_s"] = round(time.monotonic() - started, 1)
    after = container.invoke(QUESTION)
    assert after.status_code == 200, after.text[:300]
    assert "1889" in after.json()["answer"]


def test_microservices_pid1_is_an_init_and_no_zombies_remain(served):
    container = served[0]["microservicos"]

    def processes() -> list[list[str]]:
        words = container.exec_python(LIST_PROCESSES).stdout.split()
        return [words[i : i + 3] for i in range(0, len(words), 3)]

    assert [row[2] for row in processes() if row[0] == "1"] == ["dumb-init"]
    # A child is a zombie for the instant between its exit and its parent's wait: only a lasting one counts.
    assert wait_until(lambda: not [row for row in processes() if row[1] == "Z"], 15, 0.5), (
        f"zombies that nobody reaps: {processes()}"
    )


# Every gunicorn process with its parent, real/effective/saved uids and gids, and supplementary groups.
GUNICORN_PROCESSES = """
import json, os
rows = []
for pid in filter(str.isdigit, os.listdir('/proc')):
    try:
        cmdline = open(f'/proc/{pid}/cmdline', 'rb').read().split(b'\\0')
        status = dict(line.split(':', 1) for line in open(f'/proc/{pid}/status').read().splitlines() if ':' in line)
    except OSError:
        continue
    if any(b'gunicorn' in part for part in cmdline[:2]):
        rows.append({'pid': int(pid), 'ppid': int(status['PPid']), 'uids': status['Uid'].split(),
                     'gids': status['Gid'].split(), 'groups': status['Groups'].split(),
                     'app': next((p.decode() for p in cmdline if b'create_app' in p), '')})
print(json.dumps(rows))
"""


@pytest.mark.parametrize("arch", ARCHES)
def test_no_worker_runs_as_root(served, arch):
    container = served[0][arch]
    assert container.invoke({**QUESTION, "max_new_tokens": 4}).status_code == 200  # workers have loaded and served
    processes = json.loads(container.exec_python(GUNICORN_PROCESSES).stdout)
    pids = {row["pid"] for row in processes}
    masters = [row for row in processes if row["ppid"] not in pids]
    workers = [row for row in processes if row["ppid"] in pids]
    # One master and one worker per service: the monolith has one service, the microservices three.
    assert len(masters) == len(workers) == (1 if arch == "monolito" else 3), processes
    for master in masters:
        assert set(master["uids"]) == {"0"}, f"the container starts as root, as SageMaker expects: {master}"
    for worker in workers:
        assert "0" not in worker["uids"] + worker["gids"] + worker["groups"], f"a worker kept root: {worker}"


@pytest.mark.parametrize("arch", ARCHES)
def test_sigterm_drains_the_request_in_flight_and_stops_in_time(served, arch, observations):
    container = served[0][arch]
    outcome: dict = {}
    request_id = f"drain-{arch}"

    def ask():
        sent = time.monotonic()
        try:
            # One passage and few tokens: on a busy CPU a long answer could outlast gunicorn's 25 s
            # graceful timeout, and SageMaker's own SIGKILL at 30 s would end it anyway.
            outcome["response"] = container.invoke(
                {**QUESTION, "top_k": 1, "max_new_tokens": 8}, timeout=60, request_id=request_id
            )
        except requests.RequestException as exc:
            outcome["error"] = exc
        outcome["seconds"] = time.monotonic() - sent

    thread = threading.Thread(target=ask)
    thread.start()
    # SIGTERM goes once the handler has started on the request (the service logs it at DEBUG).
    started = wait_until(
        lambda: any(
            line.get("request_id") == request_id and line.get("message") == "POST /invocations started"
            for line in log_records(container.logs())
        ),
        60,
        0.1,
    )
    assert started, f"the request never started:\n{container.logs()[-2000:]}"
    stop_s = container.stop()
    thread.join(60)
    observations.setdefault("docker_stop_s", {})[arch] = stop_s
    observations.setdefault("in_flight_request_during_stop_s", {})[arch] = round(outcome.get("seconds", -1), 1)
    assert "error" not in outcome, f"the request in flight was dropped: {outcome.get('error')!r}"
    assert outcome["response"].status_code == 200, outcome["response"].text[:300]
    assert stop_s < 30, f"docker stop took {stop_s}s: SageMaker would have sent SIGKILL"
    assert container.inspect("{{.State.ExitCode}}") == "0", container.logs()[-2000:]
