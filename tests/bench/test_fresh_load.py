"""Load levels that a prompt cache cannot flatter: each asks distinct questions, once each, of a server that
has answered nothing before (make bench-engines, make eval-models' burst, the llama-server peer).

OpenVINO's prefix cache keeps the KV blocks of whole prompts; a load level that asked the evaluation's questions
again of the evaluation's server measured that cache (its repeats took 0.77-0.81x as long as first asks).
"""

from __future__ import annotations

import threading

import pytest
import requests

from evaluation import engines, llama_peer
from evaluation.evaluate import load_questions
from evaluation.quality import closed_loop, fresh_questions, on_fresh_server
from tests.support import ROOT, SAMPLE_INDEX, json_server


def test_fresh_questions_are_distinct_in_order_and_never_more_than_there_are():
    assert fresh_questions(["a", "b", "a", "c"], 3, "8 clients") == ["a", "b", "c"]
    assert fresh_questions(["a", "b", "c"], 2, "8 clients") == ["a", "b"]
    with pytest.raises(ValueError, match="8 clients: 4 requests but 3 distinct questions"):
        fresh_questions(["a", "b", "a", "c"], 4, "8 clients")


def test_a_closed_loop_asks_each_question_once_over_real_http():
    asked, lock = [], threading.Lock()

    def record(body: dict) -> dict:
        with lock:
            asked.append(body["query"])
        return {"answer": "ok", "sources": []}

    questions = [f"question {i}?" for i in range(12)] * 3  # a list that repeats, as records of rounds would
    with json_server(record) as url:
        level = closed_loop(url, questions, clients=4, requests=10)
    assert level["requests"] == level["ok"] == 10 and level["overloaded_429"] == 0
    assert sorted(asked) == sorted(f"question {i}?" for i in range(10))


def test_load_levels_ask_at_most_the_first_sets_distinct_questions():
    distinct = len({q.question for q in load_questions(ROOT / "data" / "sample.questions.jsonl")})
    assert engines.level_requests({8: 32, 32: distinct}, "sample", None) == {8: 32, 32: distinct}
    with pytest.raises(ValueError, match=f"--load 8:{distinct + 1}: sample has {distinct} distinct questions"):
        engines.level_requests({8: distinct + 1, 32: 64}, "sample", None)
    # A smoke run sends one request per client, at most the questions it kept.
    assert engines.level_requests({8: 500, 32: 500}, "sample", 3) == {8: 3, 32: 3}
    with pytest.raises(ValueError, match="no question set"):
        engines.level_requests({8: 8}, "no-such-set", None)
    assert engines.main(["--load", f"8:{distinct + 1}", "--sets", "sample"]) == 2


def test_the_peers_load_never_repeats_a_prompt():
    bodies = [llama_peer.completion_body([1, 2, i], 4) for i in range(3)]
    with pytest.raises(ValueError, match="4 requests but 3 prompts"):
        llama_peer.measure(ROOT / "no-such.gguf", bodies, ROOT / "unused.log", 1, requests=4)


@pytest.mark.slow
def test_a_load_level_runs_on_a_monolith_of_its_own_that_is_gone_after(tmp_path):
    if not (SAMPLE_INDEX / "manifest.json").exists():
        pytest.skip("run `make setup` first: it builds indexes/sample")
    seen = {}

    def level(url: str) -> dict:
        seen["url"] = url
        assert requests.get(f"{url}/ping", timeout=10).status_code == 200
        return closed_loop(url, questions, clients=2, requests=3)

    questions = [q.question for q in load_questions(ROOT / "data" / "sample.questions.jsonl")[:3]]
    result = on_fresh_server("monolito", SAMPLE_INDEX, tmp_path / "level.log", level, ready_deadline_s=600)
    assert result["ok"] == 3 and result["clients"] == 2 and result["peak_rss_mib"] > 100
    assert (tmp_path / "level.log").stat().st_size > 0
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{seen['url']}/ping", timeout=5)


def test_the_peer_warms_up_on_the_prefix_every_prompt_shares_and_nothing_more():
    bodies = [llama_peer.completion_body(ids, 8) for ids in ([5, 6, 7, 1], [5, 6, 8], [5, 6, 7, 2])]
    warmup = llama_peer.warmup_body(bodies)
    assert warmup["prompt"] == [5, 6] and warmup["n_predict"] == 4
    # Prompts that share nothing: one token of the first, as short a request as there is.
    assert llama_peer.warmup_body([llama_peer.completion_body(ids, 8) for ids in ([1, 2], [3, 4])])["prompt"] == [1]
