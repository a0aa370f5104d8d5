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
