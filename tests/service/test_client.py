"""The importable client and `make invoke` against the real monolith (sagemaker_lifecycle, issue 3)."""

import subprocess

import pytest

from sagemaker_lifecycle import InvocationError, invoke_endpoint
from tests.support import ROOT, child_env

pytestmark = pytest.mark.slow


def test_client_and_make_invoke_against_the_real_service(monolith):
    result = invoke_endpoint("When did the Velmora Tramway open?", url=monolith.url, top_k=2, max_new_tokens=16)
    assert result["answer"] and [s["rank"] for s in result["sources"]] == [1, 2]
    try:
        invoke_endpoint("x", url=monolith.url, top_k=99)
    except InvocationError as err:
        assert (err.status, err.error_type) == (400, "invalid_request")
    else:
        raise AssertionError("top_k=99 was accepted")
    done = subprocess.run(
        ["make", "-s", "-C", str(ROOT), "invoke", f"URL={monolith.url}", "Q=Who designed the Harbour Line?"],
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "Sources:" in done.stdout and "1. " in done.stdout
