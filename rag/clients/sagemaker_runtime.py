"""The LLM endpoint of the split topology, through SageMaker Runtime (boto3): the same Generator as the
loopback RemoteGenerator, carried by InvokeEndpoint and InvokeEndpointWithResponseStream.

`RAG_LLM_URL=sagemaker://<endpoint>` selects it. boto3 finds the region, the credentials (on SageMaker,
the execution role) and any `AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME` as usual. Errors become RagErrors as in
the one-container microservices:

    ModelError with the LLM service's JSON error   that error, with its type and status (timeout, ...),
                                                   except not_ready: 503 upstream_unavailable (the front is ready)
    ModelError without one (the container did not answer: status 0, a crash, a restart)
                                                   503 upstream_unavailable, not retried
    throttling, ServiceUnavailable, ModelNotReady, no connection to SageMaker Runtime
                                                   retried at most twice while the deadline allows (the
                                                   request never reached the model), then 503 upstream_unavailable
    InternalFailure and other AWS errors           503 upstream_unavailable, not retried (the model may have run)
    endpoint not found, access denied, no credentials or region
                                                   503 upstream_unavailable, the message says what to fix
    a read that outlives the deadline              504 timeout

SageMaker Runtime forwards no header of ours except X-Amzn-SageMaker-Custom-Attributes, so the remaining
time travels there (`X-Rag-Timeout-S=<seconds>`), and the LLM service stops generating in time; so do the
request id and the W3C traceparent (rag/clients/protocol.py). The request id is also the InferenceId.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Iterable, Iterator

from tenacity import (
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_before_delay,
    stop_never,
    wait_exponential,
    wait_random,
)

from rag import errors
from rag.clients.http import DEFAULT_READ_TIMEOUT_S, LlmServiceGenerator, context_headers
from rag.clients.protocol import DEADLINE_HEADER, REQUEST_ID_HEADER, custom_attributes, decode_events

log = logging.getLogger(__name__)

JSON = "application/json"
# Two retries at most, only where the request never reached the model (NotSent), after 0.1 then 0.3 s plus
# up to 0.1 s of jitter, and only while a retry still fits before the deadline. Not botocore's own retries:
# its standard mode also retries read timeouts and 500s (the model may have run) and knows no deadline.
MAX_RETRIES = 2
RETRY_WAIT = wait_exponential(multiplier=0.1, exp_base=3) + wait_random(0, 0.1)
THROTTLED = {"ThrottlingException", "Throttling", "ThrottledException", "TooManyRequestsException"}
NOT_SENT = THROTTLED | {"ServiceUnavailable", "ModelNotReadyException"}
# The container stops at the deadline it was given; our read waits a little longer, so its own
# 504 arrives rather than a cut connection. Read timeouts come in steps, one cached client per step.
READ_GRACE_S, READ_STEP_S, READ_MAX_S = 1.0, 5.0, 65.0
PING_BODY = b'{"ping": true}'  # the LLM endpoint answers it as its /ping (SageMaker routes only /invocations)
# A real invocation's outcome stands in for a /ping probe this long; a failure for less, so that a
# recovered endpoint is seen soon.
READY_TTL_S, NOT_READY_TTL_S = 5.0, 1.0


class EndpointLoading(errors.UpstreamUnavailable):
    """The LLM endpoint answered not_ready: to the front's callers, an upstream not available yet."""


class NotSent(errors.UpstreamUnavailable):
    """SageMaker Runtime turned the call away, or could not be reached: the request never reached the
    model, so it is safe to retry."""


def split_lines(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Whole lines from byte chunks cut anywhere (response stream parts do not follow line ends)."""
    pending = b""
    for chunk in chunks:
        pending += chunk
        *lines, pending = pending.split(b"\n")
        yield from lines
    if pending:
        yield pending


class SageMakerGenerator(LlmServiceGenerator):
    """The LLM service deployed as its own SageMaker endpoint, `/invocations` being its `/generate`."""

    def __init__(self, endpoint_name: str):
        self.endpoint_name = endpoint_name
        self._clients: dict[tuple[float, float], object] = {}
        self._lock = threading.Lock()
        self._observed: tuple[float, dict] | None = None  # (when, /ping-like body) from the last invocation

    # --- the Generator contract ---

    def _post(self, payload, deadline, hop):
        response = self._invoke("invoke_endpoint", payload, deadline, JSON, context_headers(hop))
        try:
            body = json.loads(response["Body"].read())
        except (ValueError, OSError) as exc:
            raise errors.UpstreamUnavailable(
                f"the LLM endpoint {self.endpoint_name} answered without a usable JSON body ({type(exc).__name__})"
            )
        if not isinstance(body, dict) or "answer" not in body:
            raise errors.UpstreamUnavailable(f"the LLM endpoint {self.endpoint_name} answered JSON without an answer")
        return body

    def _post_lines(self, payload, deadline, hop):
        response = self._invoke(
            "invoke_endpoint_with_response_stream", payload, deadline, "application/jsonlines", context_headers(hop)
        )
        return self._events(response["Body"])

    def _events(self, stream) -> Iterator[dict]:
        from botocore.exceptions import BotoCoreError, ClientError, ReadTimeoutError

        parts = (event["PayloadPart"].get("Bytes", b"") for event in stream if "PayloadPart" in event)
        try:
            yield from decode_events(split_lines(parts))
        except ReadTimeoutError:
            raise errors.RequestTimeout(f"the LLM endpoint {self.endpoint_name} stopped sending before the deadline")
        except ClientError as exc:  # ModelStreamError or InternalStreamFailure, sent inside the stream
            if (
                exc.response.get("Error", {}).get("Code") == "ModelInvocationTimeExceeded"
                or exc.response.get("ErrorCode") == "ModelInvocationTimeExceeded"
            ):
                raise errors.RequestTimeout(f"the LLM endpoint {self.endpoint_name} ran out of time mid-stream")
            raise errors.UpstreamUnavailable(f"the LLM endpoint {self.endpoint_name} stream broke: {_code(exc)}")
        except BotoCoreError as exc:
            raise errors.UpstreamUnavailable(
                f"the LLM endpoint {self.endpoint_name} stream broke: {type(exc).__name__}"
            )
        finally:
            stream.close()

    # --- health, as the orchestrator's /ping asks for it ---

    def ping(self) -> dict:
        """A /ping-like body for the LLM endpoint: the outcome of a recent invocation when there is one
        (probes count as invocations, and would skew the scaling metric), else a probe."""
        observed = self._observed
        if observed:
            ttl = READY_TTL_S if observed[1]["status"] == "ready" else NOT_READY_TTL_S
            if time.monotonic() - observed[0] < ttl:
                return observed[1]
        try:
            # Sub-second timeouts: SageMaker gives the front's own /ping 2 s.
            response = self._call("invoke_endpoint", PING_BODY, 1.0, accept=JSON, connect_timeout=0.4, read_timeout=0.8)
            body = json.loads(response["Body"].read())
            state = body if isinstance(body, dict) and "status" in body else {"status": "unavailable"}
        except Exception as exc:  # noqa: BLE001 - every failure is a state here, never an error
            state = self._ping_state(exc)
        self._observed = (time.monotonic(), state)
        return state

    def _ping_state(self, exc: Exception) -> dict:
        from botocore.exceptions import ClientError

        if isinstance(exc, ClientError) and _code(exc) == "ModelError":
            try:
                body = json.loads(exc.response.get("OriginalMessage") or "")
                if isinstance(body, dict) and body.get("status") in ("loading", "degraded"):
                    return body  # the LLM service's own /ping answer, relayed
            except ValueError:
                pass
        return {"status": "unavailable", "error": self._translate(exc).message}

    # --- transport ---

    def _invoke(self, operation: str, payload: dict, deadline: float | None, accept: str, context: dict[str, str]):
        """Call `operation` with retries where safe; `context`: the request id and trace context to pass on."""
        body = json.dumps(payload, ensure_ascii=False).encode()
        retrying = Retrying(
            retry=retry_if_exception_type(NotSent),
            wait=RETRY_WAIT,
            # a retry starts only if it can still be answered before the deadline (with the read's grace)
            stop=stop_after_attempt(1 + MAX_RETRIES)
            | (stop_never if deadline is None else stop_before_delay(deadline - time.monotonic() - READ_GRACE_S)),
            before_sleep=self._log_retry,
            reraise=True,  # the last RagError itself, not tenacity's RetryError
        )
        return retrying(self._attempt, operation, body, deadline, accept, context)

    def _attempt(self, operation: str, body: bytes, deadline: float | None, accept: str, context: dict[str, str]):
        remaining = DEFAULT_READ_TIMEOUT_S if deadline is None else deadline - time.monotonic()
        if remaining <= 0:
            raise errors.RequestTimeout("the request deadline passed before calling the LLM endpoint")
        try:
            response = self._call(operation, body, remaining, accept=accept, context=context)
        except Exception as exc:  # noqa: BLE001 - translated; unknown ones re-raised by _translate
            error = self._translate(exc)
        else:
            self._observed = (time.monotonic(), {"status": "ready"})
            return response
        self._observe(error)
        raise error

    def _log_retry(self, state) -> None:
        error = state.outcome.exception()
        log.warning("LLM endpoint %s: %s; retrying in %.1f s", self.endpoint_name, error.message, state.upcoming_sleep)

    def _call(
        self,
        operation: str,
        body: bytes,
        remaining: float,
        *,
        accept: str,
        connect_timeout: float = 2.0,
        read_timeout: float | None = None,
        context: dict[str, str] | None = None,
    ):
        if read_timeout is None:
            read_timeout = min(READ_MAX_S, math.ceil((remaining + READ_GRACE_S) / READ_STEP_S) * READ_STEP_S)
        client = self._client(read_timeout, connect_timeout)
        context = context or {}
        # SageMaker Runtime forwards the custom attributes (and the InferenceId) to the container, nothing else.
        extra = {"InferenceId": context[REQUEST_ID_HEADER]} if REQUEST_ID_HEADER in context else {}
        return getattr(client, operation)(
            EndpointName=self.endpoint_name,
            Body=body,
            ContentType=JSON,
            Accept=accept,
            CustomAttributes=custom_attributes({DEADLINE_HEADER: f"{remaining:.3f}", **context}),
            **extra,
        )

    def _client(self, read_timeout: float, connect_timeout: float):
        key = (read_timeout, connect_timeout)
        with self._lock:  # boto3 sessions are not thread-safe; the clients they make are
            if key not in self._clients:
                import boto3
                from botocore.config import Config

                config = Config(
                    read_timeout=read_timeout,
                    connect_timeout=connect_timeout,
                    retries={"total_max_attempts": 1},
                    max_pool_connections=16,
                )
                self._clients[key] = boto3.session.Session().client("sagemaker-runtime", config=config)
            return self._clients[key]

    def _observe(self, error: errors.RagError) -> None:
        """What a failed invocation says about the endpoint's health (a timeout says nothing)."""
        if isinstance(error, EndpointLoading):
            self._observed = (time.monotonic(), {"status": "loading", "elapsed_s": 0.0})
        elif isinstance(error, errors.UpstreamUnavailable):
            self._observed = (time.monotonic(), {"status": "unavailable", "error": error.message})
        elif not isinstance(error, errors.RequestTimeout):
            self._observed = (time.monotonic(), {"status": "ready"})  # it answered, with an error of the request

    def _translate(self, exc: Exception) -> errors.RagError:
        """The RagError for `exc` (a NotSent where retrying is safe); anything unknown is re-raised (a 500)."""
        from botocore.exceptions import (
            BotoCoreError,
            ClientError,
            ConnectTimeoutError,
            EndpointConnectionError,
            NoCredentialsError,
            NoRegionError,
            ReadTimeoutError,
        )

        name = self.endpoint_name
        if isinstance(exc, errors.RagError):
            return exc
        if isinstance(exc, ClientError):
            code, status = _code(exc), exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            message = exc.response.get("Error", {}).get("Message", "")
            if code == "ModelError":
                return self._model_error(exc)
            if code in NOT_SENT or status in (429, 503):
                return NotSent(
                    f"SageMaker Runtime turned the LLM endpoint {name} call away ({code or status}); retry shortly"
                )
            if code.startswith("AccessDenied") or status == 403:
                return errors.UpstreamUnavailable(
                    f"not allowed to invoke the LLM endpoint {name}: the execution role "
                    "needs sagemaker:InvokeEndpoint on it (see docs/deploy.md, IAM)"
                )
            if code.startswith("Validation") and "not found" in message.lower():
                return errors.UpstreamUnavailable(
                    f"the LLM endpoint {name} does not exist in this region: deploy it "
                    "(make deploy ARCH=split) or fix RAG_LLM_URL"
                )
            return errors.UpstreamUnavailable(f"SageMaker Runtime failed on the LLM endpoint {name} ({code or status})")
        if isinstance(exc, ReadTimeoutError):
            return errors.RequestTimeout(f"the LLM endpoint {name} did not answer before the request deadline")
        if isinstance(exc, (EndpointConnectionError, ConnectTimeoutError)):
            return NotSent(f"cannot reach SageMaker Runtime for the LLM endpoint {name}")
        if isinstance(exc, (NoCredentialsError, NoRegionError)):
            return errors.UpstreamUnavailable(
                f"cannot call the LLM endpoint {name}: {exc} (on SageMaker the execution "
                "role gives credentials; elsewhere set AWS_PROFILE and AWS_DEFAULT_REGION)"
            )
        if isinstance(exc, BotoCoreError):
            return errors.UpstreamUnavailable(f"calling the LLM endpoint {name} failed: {type(exc).__name__}")
        raise exc

    def _model_error(self, exc) -> errors.RagError:
        """The LLM container answered non-2xx: its own JSON error when it sent one."""
        status = int(exc.response.get("OriginalStatusCode") or 0)
        try:
            body = json.loads(exc.response.get("OriginalMessage") or "")
        except ValueError:
            body = None
        if isinstance(body, dict) and "error_type" in body:
            error = errors.from_dict(body, status)
            if isinstance(error, errors.NotReady):  # the front is ready; its upstream is not, yet
                return EndpointLoading(
                    f"the LLM endpoint {self.endpoint_name} is still loading its model; retry shortly"
                )
            return error
        return errors.UpstreamUnavailable(
            f"the LLM endpoint {self.endpoint_name} did not answer (container status "
            f"{status}); it may be restarting, retry shortly"
        )


def _code(exc) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))
