"""The Python client: ask the RAG service a question, on SageMaker or on a local server.

    >>> from sagemaker_lifecycle import invoke_endpoint, InvocationError
    >>> result = invoke_endpoint("Who designed the first tramway line?", url="http://127.0.0.1:8080")
    >>> result["answer"], [s["source"] for s in result["sources"]]

    >>> invoke_endpoint("...", endpoint_name="rag-monolito", region="eu-west-1", top_k=5)

Errors raise InvocationError (a LifecycleError) whose `status` is the HTTP status and `error_type`
the service's stable error code (`invalid_request`, `timeout`, ...) when the service sent one.
"""

from __future__ import annotations

import json
import os
from functools import lru_cache

import boto3
import requests
from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError

from .errors import InvocationError, error_code, error_message, translate

CONNECT_TIMEOUT_S = 10.0


def build_payload(query: str, **options) -> dict:
    """The /invocations JSON body: the query plus the options that were given."""
    if not isinstance(query, str) or not query.strip():
        raise InvocationError(
            "the query is empty: pass a question (Q=... on the command line)", error_type="invalid_request"
        )
    return {"query": query} | {key: value for key, value in options.items() if value is not None}


def invoke_endpoint(
    query: str,
    *,
    endpoint_name: str | None = None,
    url: str | None = None,
    region: str | None = None,
    top_k: int | None = None,
    max_new_tokens: int | None = None,
    temperature: float | None = None,
    custom_attributes: str | None = None,
    timeout: float = 60.0,
) -> dict:
    """Send `query` to the endpoint (or to `{url}/invocations`) and return the decoded JSON answer.

    `endpoint_name` defaults to $ENDPOINT_NAME; `region` to the AWS profile's. `custom_attributes` is
    passed as X-Amzn-SageMaker-Custom-Attributes. Raises InvocationError on any error answer.
    """
    payload = build_payload(query, top_k=top_k, max_new_tokens=max_new_tokens, temperature=temperature)
    body = json.dumps(payload).encode()
    if url:
        return _post_local(url, body, custom_attributes, timeout)
    endpoint_name = endpoint_name or os.environ.get("ENDPOINT_NAME")
    if not endpoint_name:
        raise InvocationError("no endpoint given: pass endpoint_name=... (or url=... for a local server)")
    return _invoke_sagemaker(endpoint_name, region, body, custom_attributes, timeout)


def _post_local(url: str, body: bytes, custom_attributes: str | None, timeout: float) -> dict:
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if custom_attributes:
        headers["X-Amzn-SageMaker-Custom-Attributes"] = custom_attributes
    target = url.rstrip("/") + "/invocations"
    try:
        response = requests.post(target, data=body, headers=headers, timeout=(min(CONNECT_TIMEOUT_S, timeout), timeout))
    except requests.Timeout:
        raise InvocationError(f"{target} did not answer within {timeout:.0f}s", error_type="timeout") from None
    except requests.RequestException as exc:
        raise InvocationError(
            f"cannot reach {target}: {type(exc).__name__}; is the server running (`make serve`)?",
            error_type="upstream_unavailable",
        ) from None
    return decode(response.content, response.status_code, response.headers.get("Content-Type", ""), where=target)


@lru_cache(maxsize=8)
def _runtime_client(region: str | None, timeout: float):
    # SageMaker cuts invocations at 60 s; retrying a slow generation would only double the wait.
    options = BotoConfig(
        read_timeout=timeout, connect_timeout=min(CONNECT_TIMEOUT_S, timeout), retries={"total_max_attempts": 1}
    )
    return boto3.session.Session().client("sagemaker-runtime", region_name=region, config=options)


def _invoke_sagemaker(
    endpoint_name: str, region: str | None, body: bytes, custom_attributes: str | None, timeout: float
) -> dict:
    kwargs = {
        "EndpointName": endpoint_name,
        "Body": body,
        "ContentType": "application/json",
        "Accept": "application/json",
    }
    if custom_attributes:
        kwargs["CustomAttributes"] = custom_attributes
    where = f"endpoint {endpoint_name}"
    try:
        response = _runtime_client(region, float(timeout)).invoke_endpoint(**kwargs)
    except ClientError as exc:
        raise model_error(exc, where) from None
    except Exception as exc:
        error = translate(exc, f"invoke {where}")
        raise InvocationError(str(error)) from None
    return decode(response["Body"].read(), 200, response.get("ContentType", ""), where=where)


def model_error(exc: ClientError, where: str) -> InvocationError:
    """A ClientError of InvokeEndpoint as InvocationError; a ModelError carries the container's answer."""
    if error_code(exc) == "ModelError":
        status = exc.response.get("OriginalStatusCode")
        original = exc.response.get("OriginalMessage") or error_message(exc)
        return decode_error(original.encode(), status, where)
    if error_code(exc) == "ValidationException" and "not found" in error_message(exc).lower():
        return InvocationError(
            f"{where} does not exist: {error_message(exc)} (check ENDPOINT_NAME and REGION)", status=404
        )
    error = translate(exc, f"invoke {where}")
    return InvocationError(str(error), status=exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode"))


def decode(content: bytes, status: int, content_type: str, *, where: str) -> dict:
    """Decode a 200 answer; anything else (or a non-JSON body) becomes an InvocationError."""
    if status >= 400:
        raise decode_error(content, status, where)
    try:
        result = json.loads(content)
    except ValueError:
        raise InvocationError(
            f"{where} answered {content_type or 'a body'} that is not JSON: {content[:200]!r}", status=status
        ) from None
    if not isinstance(result, dict) or "answer" not in result:
        raise InvocationError(f"{where} answered JSON without an 'answer': {str(result)[:200]}", status=status)
    return result


def decode_error(content: bytes, status: int | None, where: str) -> InvocationError:
    """The service's `{"error", "error_type"}` body as an InvocationError (any other body quoted)."""
    try:
        body = json.loads(content)
        message, error_type = body["error"], body.get("error_type")
    except (ValueError, KeyError, TypeError):
        message, error_type = content[:300].decode(errors="replace") or "no body", None
    label = f" [{error_type}]" if error_type else ""
    return InvocationError(f"{where} answered {status}{label}: {message}", status=status, error_type=error_type)


def format_result(result: dict) -> str:
    """The answer, then one line per source: rank, source#chunk, score and the start of its text."""
    lines = [result.get("answer", "").strip(), "", "Sources:"]
    for source in result.get("sources", []):
        text = " ".join(str(source.get("text", "")).split())
        snippet = text[:100] + ("..." if len(text) > 100 else "")
        score = source.get("score")
        score_text = f"{score:.3f}" if isinstance(score, (int, float)) else "?"
        lines.append(
            f"  {source.get('rank', '?')}. {source.get('source', '?')}#{source.get('chunk', '?')} ({score_text}) {snippet}"
        )
    if not result.get("sources"):
        lines.append("  (none)")
    meta = [str(result[key]) for key in ("architecture",) if key in result]
    if "timings_ms" in result and isinstance(result["timings_ms"], dict) and "total" in result["timings_ms"]:
        meta.append(f"{result['timings_ms']['total']:.0f} ms")
    if meta:
        lines += ["", "(" + ", ".join(meta) + ")"]
    return "\n".join(lines)
