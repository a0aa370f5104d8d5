"""What the client tests share: the code blocks of docs/clients.md, taken as they are, and a boto3 client
wrapper that records the PayloadParts a stream arrived in."""

from __future__ import annotations

import re

from tests.service.split_support import RUNTIME_CLIENT_ENV
from tests.support import ROOT

CLIENTS_DOC = ROOT / "docs" / "clients.md"
ENDPOINT = "rag-monolito"  # the endpoint name the stand-in maps to the server under test
# Its sources hold "Sørhaug" (ø is two bytes in UTF-8), for PayloadParts cut inside a character.
QUESTION = "In what year did the Glass Bridge over the River Ossa open?"
# The test servers' own default (RAG_MAX_NEW_TOKENS=40, conftest.py), so that a program sending no option asks
# the same question; the answer ends after 17 tokens.
OPTIONS = {"max_new_tokens": 40}
AWKWARD_PARTS = (1, 2, 3, 5, 7)  # bytes per PayloadPart: lines and UTF-8 characters cut
# A marked block: an HTML comment naming it, right above a python fence.
_EXAMPLE = re.compile(r"<!-- example: (?P<name>[\w-]+) -->\n```python\n(?P<code>.*?)\n```\n", re.S)


def examples() -> dict[str, str]:
    """The marked code blocks of docs/clients.md, by name."""
    return {match["name"]: match["code"] + "\n" for match in _EXAMPLE.finditer(CLIENTS_DOC.read_text())}


def load_example(name: str) -> dict:
    """Run a block as an imported module would run (not as __main__) and return its globals. The block
    makes its boto3 client at once, so AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME must already point at the stand-in."""
    namespace = {"__name__": "clients_md_" + name.replace("-", "_")}
    exec(compile(examples()[name], f"docs/clients.md ({name})", "exec"), namespace)
    return namespace


def runtime_env(runtime_url: str) -> dict[str, str]:
    """The environment that sends boto3's sagemaker-runtime client to the stand-in."""
    return {**RUNTIME_CLIENT_ENV, "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME": runtime_url}


class RecordingClient:
    """The examples' boto3 client, wrapped: it records each stream's PayloadParts as they are read and can add
    custom attributes (the one header SageMaker forwards: `X-Rag-Timeout-S=0.2` shortens the deadline)."""

    def __init__(self, client, custom_attributes: str | None = None):
        self.client, self.exceptions, self.custom_attributes = client, client.exceptions, custom_attributes
        self.parts: list[bytes] = []

    def _with_attributes(self, kwargs: dict) -> dict:
        return {**kwargs, "CustomAttributes": self.custom_attributes} if self.custom_attributes else kwargs

    def invoke_endpoint(self, **kwargs):
        return self.client.invoke_endpoint(**self._with_attributes(kwargs))

    def invoke_endpoint_with_response_stream(self, **kwargs):
        response = self.client.invoke_endpoint_with_response_stream(**self._with_attributes(kwargs))
        return {**response, "Body": _RecordedStream(response["Body"], self.parts)}


class _RecordedStream:
    def __init__(self, stream, parts: list[bytes]):
        self.stream, self.parts = stream, parts

    def __iter__(self):
        for event in self.stream:
            if "PayloadPart" in event:
                self.parts.append(event["PayloadPart"]["Bytes"])
            yield event

    def close(self) -> None:
        self.stream.close()
