"""Gunicorn settings for every service, derived from the one Settings object.

gthread workers: a request that generates for seconds occupies one thread, and /ping is answered
by another, so the health check stays under SageMaker's 2 s even during inference.
"""

import json as _json
import logging as _logging
import os as _os
import pwd as _pwd
import sys as _sys
import time as _time
import uuid as _uuid

from gunicorn import util as _gunicorn_util
from gunicorn.glogging import Logger as _GunicornLogger

from rag.errors import ConfigError
from rag.models import local_llm_dir
from rag.runtime import BACKOFF_WINDOW_S, restart_delay
from rag.settings import Settings
from serving.telemetry import JsonFormatter as _JsonFormatter

_settings = Settings.from_env()
# Every line the services write is a JSON object (serving/telemetry.py); the Hugging Face libraries' progress
# bars ("Loading weights") would not be, so they are off unless the environment says otherwise. Set here, in
# the master, before any worker imports them (they read it once, at import).
_os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

# Least privilege. SageMaker starts containers as root, and the master keeps root (it binds the port
# and supervises), but the workers, which parse untrusted requests and run the models, switch to
# RAG_WORKER_USER right after the fork. The images set it to `rag`; a server started by a normal
# user cannot switch and does not try. Root's supplementary groups are dropped in post_fork: Gunicorn's
# own initgroups would set them but leave the primary group 0.
WORKER_USER_VARIABLE = "RAG_WORKER_USER"


def worker_account(environ=_os.environ, euid: int | None = None):
    """The passwd entry workers switch to, or None (not started as root, or no user configured)."""
    name = environ.get(WORKER_USER_VARIABLE, "").strip()
    if not name or (_os.geteuid() if euid is None else euid) != 0:
        return None
    try:
        account = _pwd.getpwnam(name)
    except KeyError:
        raise ConfigError(
            f"{WORKER_USER_VARIABLE}={name!r} is not a user on this machine; create it, or unset "
            f"{WORKER_USER_VARIABLE} to keep the workers' user"
        ) from None
    if account.pw_uid == 0 or account.pw_gid == 0:
        raise ConfigError(f"{WORKER_USER_VARIABLE}={name!r} is root or in root's group: name an unprivileged user")
    return account


try:
    _account = worker_account()
except ConfigError as _error:  # one line naming the variable, as for every other setting
    _sys.stderr.write(f"configuration error: {_error.message}\n")
    raise SystemExit(2)


def unreadable_for(account, roots) -> list[str]:
    """The files and folders under `roots` that `account` cannot read, found by a child process that
    switches to it (so groups, modes and ACLs all count exactly as they will for the workers)."""
    roots = [str(root) for root in roots if _os.path.exists(root)]
    read_end, write_end = _os.pipe()
    pid = _os.fork()
    if pid == 0:  # the child: never returns
        code = 1
        try:
            _os.close(read_end)
            _os.setgroups(_os.getgrouplist(account.pw_name, account.pw_gid))
            _os.setgid(account.pw_gid)
            _os.setuid(account.pw_uid)
            bad = []
            for root in roots:
                if _os.path.isdir(root) and _os.access(root, _os.R_OK | _os.X_OK):
                    for folder, _dirs, files in _os.walk(root, onerror=lambda error: bad.append(error.filename)):  # noqa: B023 (one list)
                        bad += [
                            _os.path.join(folder, name)
                            for name in files
                            if not _os.access(_os.path.join(folder, name), _os.R_OK)
                        ]
                elif not _os.access(root, _os.R_OK):  # a file, or a folder it cannot even see into
                    bad.append(root)
                elif _os.path.isdir(root):  # readable but not searchable
                    bad.append(root)
            _os.write(write_end, "\n".join(bad).encode())
            code = 0
        finally:
            _os._exit(code)
    _os.close(write_end)
    with _os.fdopen(read_end, "rb") as pipe:
        found = pipe.read().decode()
    _os.waitpid(pid, 0)
    return [line for line in found.splitlines() if line]


def _model_paths(settings: Settings) -> list[str]:
    """What the workers load: /opt/ml/model, the index, and the models when they are local folders."""
    llm = local_llm_dir(settings.llm_model) or settings.llm_model
    return [
        "/opt/ml/model",
        str(settings.index_dir),
        *(name for name in (llm, settings.embedding_model) if _os.path.isdir(name)),
    ]


if _account is not None:
    user, group = _account.pw_uid, _account.pw_gid  # Gunicorn setgid/setuid's the worker after post_fork
    # A worker that cannot read its model fails deep inside a library; say which files, at once.
    _unreadable = unreadable_for(_account, _model_paths(_settings))
    if _unreadable:
        _sys.stderr.write(
            f"configuration error: the workers run as {_account.pw_name!r} ({WORKER_USER_VARIABLE}) "
            f"and cannot read {', '.join(_unreadable[:5])}{' ...' if len(_unreadable) > 5 else ''}; "
            "make the model files readable by that user (e.g. chmod -R a+rX)\n"
        )
        raise SystemExit(2)

worker_class = "gthread"
workers = _settings.workers
threads = _settings.threads
timeout = _settings.server_timeout
graceful_timeout = 25  # SageMaker sends SIGKILL 30 s after SIGTERM: drain in-flight requests before that
keepalive = 75  # longer than the load balancer's idle timeout, so it never reuses a closed socket
accesslog = None  # the app logs one line per request with timings
errorlog = "-"
loglevel = _settings.log_level.lower()
# Several gunicorns share one machine (the microservices image runs three): no shared control socket.
control_socket_disable = True


class JsonLogger(_GunicornLogger):
    """Gunicorn's own lines (workers booting and exiting, timeouts, errors) as JSON lines like the app's."""

    def setup(self, cfg):
        super().setup(cfg)
        for handler in self.error_log.handlers:
            handler.setFormatter(_JsonFormatter())


logger_class = JsonLogger

# Gunicorn's master replaces a dead worker at once. A worker that keeps dying while loading (too
# little memory, a broken model) would then reload torch in a tight loop. The first restart in a
# minute is immediate; later ones wait 1, 2, 4 ... 30 s (rag.runtime.restart_delay, which OpenVINO's child process
# follows too). The wait happens in the new worker, after the fork, so the master stays free to handle signals.
_worker_deaths: list[float] = []


def child_exit(server, worker):
    """Master side: remember when a worker died."""
    now = _time.monotonic()
    _worker_deaths[:] = [t for t in _worker_deaths if now - t < BACKOFF_WINDOW_S] + [now]


def post_fork(server, worker):
    """Worker side, before it drops privileges: its own home for caches, and a backoff before loading
    when workers died recently (the deaths are inherited from the master)."""
    if _account is not None:
        # HOME is root's, inherited from the master; caches (~/.cache) must be writable by the worker.
        _os.environ["HOME"] = _account.pw_dir
        _os.setgroups([_account.pw_gid])  # still root here: drop root's supplementary groups
    recent = len([t for t in _worker_deaths if _time.monotonic() - t < BACKOFF_WINDOW_S])
    delay = restart_delay(recent)
    if delay:
        _logging.getLogger("rag.http").warning(
            "%d workers died in the last minute; waiting %d s before loading again", recent, delay
        )
        _time.sleep(delay)


# Gunicorn answers a request it cannot parse (414 URI too long, 400 bad header bytes, 431 too many
# headers...) itself, before the app runs, with an HTML page. The API promises JSON errors, so its one
# error writer is replaced by a JSON one (the module function its workers call; gunicorn is pinned).
def write_json_error(sock, status_int: int, reason: str, mesg: str) -> None:
    """Gunicorn's own error answers as {"error", "error_type", "request_id"}: `internal` for 500, else
    `invalid_request`; the request could not be read, so its id is a new one."""
    request_id = _uuid.uuid4().hex
    if status_int >= 500 and status_int != 501:
        body = {"error": "internal error; see the service log", "error_type": "internal", "request_id": request_id}
    else:
        body = {
            "error": f"{reason}: {mesg}" if mesg else reason,
            "error_type": "invalid_request",
            "request_id": request_id,
        }
    payload = _json.dumps(body).encode("ascii")  # ASCII escapes: the message may quote the client's raw bytes
    head = (
        f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
        f"X-Request-Id: {request_id}\r\nContent-Length: {len(payload)}\r\n\r\n"
    )
    _gunicorn_util.write_nonblock(sock, head.encode("latin-1") + payload)


_gunicorn_util.write_error = write_json_error
