"""Gunicorn settings for every service, derived from the one Settings object.

gthread workers: a request that generates for seconds occupies one thread, and /ping is answered
by another, so the health check stays under SageMaker's 2 s even during inference.
"""
from rag.settings import Settings

_settings = Settings.from_env()

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

# Gunicorn's master replaces a dead worker at once. A worker that keeps dying while loading (too
# little memory, a broken model) would then reload torch in a tight loop. The first restart in a
# minute is immediate; later ones wait 1, 2, 4 ... 30 s. The wait happens in the new worker, after
# the fork, so the master stays free to handle signals.
import logging as _logging
import time as _time

_worker_deaths: list[float] = []


def child_exit(server, worker):
    """Master side: remember when a worker died."""
    now = _time.monotonic()
    _worker_deaths[:] = [t for t in _worker_deaths if now - t < 60] + [now]


def post_fork(server, worker):
    """Worker side: back off before loading when workers died recently (inherited from the master)."""
    recent = len([t for t in _worker_deaths if _time.monotonic() - t < 60])
    if recent >= 2:
        delay = min(30, 2 ** (recent - 2))
        _logging.getLogger("rag.http").warning(
            "%d workers died in the last minute; waiting %d s before loading again", recent, delay)
        _time.sleep(delay)
