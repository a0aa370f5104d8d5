"""Both architectures on each engine the default tier does not use (torch and OpenVINO, since the 135M tier is
served by CTranslate2; every other service test serves the default), started as `make serve` starts them: the
same answers and sources from each, bad input still a JSON 4xx, and a full server still a 429 at once."""

import pytest

from rag.settings import LLM_ENGINES, Settings
from tests.service.conftest import start_architecture
from tests.service.test_admission import QUESTION, refused_while_full, until_admitted
from tests.support import ROOT

pytestmark = pytest.mark.slow
QUESTIONS = [
    "When did the Velmora Tramway open, and who designed its first line?",
    "In what year did the Glass Bridge over the River Ossa open?",
]
DEFAULT = Settings.from_env({}).llm_engine
OTHERS = [engine for engine in LLM_ENGINES if engine != DEFAULT]
# What each engine's LLM process logs once the model is loaded.
LOADED = {"torch": "threads) in", "ctranslate2": "static batches", "openvino": "continuous batching, prefix cache"}


@pytest.fixture(scope="module", params=OTHERS)
def both(request, sample_index, tmp_path_factory):
    """The monolith and the microservices, each serving with another engine (started together, then polled)."""
    other = request.param
    if other != "torch" and not (ROOT / "models" / "smollm2-135m-instruct" / other).exists():
        pytest.skip(f"run `make setup` first: it makes the embedded LLM's {other} copy")
    started = []
    try:
        for arch in ("monolito", "microservicos"):
            started.append(
                start_architecture(
                    arch,
                    tmp_path_factory.mktemp(f"{arch}-{other}"),
                    sample_index,
                    RAG_LLM_ENGINE=other,
                    RAG_MAX_CONCURRENT_REQUESTS="1",  # one request admitted: the 429 test needs no burst
                    RAG_TORCH_THREADS="1",
                )
            )
        for service in started:
            service.wait_ready()
        yield other, started
    finally:
        for service in started:
            service.server.stop()


def test_both_architectures_give_the_same_answers_and_sources(both):
    engine, (monolith, microservices) = both
    for question in QUESTIONS:
        payload = {"query": question, "max_new_tokens": 32}
        mono, micro = until_admitted(monolith, payload).json(), until_admitted(microservices, payload).json()
        assert mono["answer"] and mono["answer"] == micro["answer"], question
        assert mono["sources"] == micro["sources"] and mono["usage"] == micro["usage"], question
    assert LOADED[engine] in monolith.server.log() and LOADED[engine] in microservices.server.log()
    assert LOADED[DEFAULT] not in monolith.server.log()


@pytest.mark.parametrize("arch", [0, 1], ids=["monolito", "microservicos"])
def test_bad_input_is_still_a_json_4xx(both, arch):
    service = both[1][arch]
    response = service.invoke({"query": "  ", "max_new_tokens": 4})
    assert response.status_code == 400 and response.json()["error_type"] == "invalid_request"
    response = service.invoke({"query": QUESTION, "max_new_tokens": 4, "beam_size": 4})
    assert response.status_code == 400 and "beam_size" in response.json()["error"]


@pytest.mark.parametrize("arch", [0, 1], ids=["monolito", "microservicos"])
def test_a_full_server_answers_429_at_once(both, arch):
    service = both[1][arch]
    refused, refused_s, ping = refused_while_full(service)
    assert refused.status_code == 429 and refused.json()["error_type"] == "overloaded", refused.text
    assert refused.headers["Retry-After"] == "1" and refused_s < 1.0 and ping.status_code == 200
    assert until_admitted(service, {"query": QUESTION, "max_new_tokens": 8}).status_code == 200
