"""The grounding check (rag/generation/grounding.py) and its place in the pipeline, with fakes."""

import pytest

from rag.api import QueryRequest
from rag.generation.grounding import REFUSAL, check_answer, unsupported
from rag.pipeline import RagPipeline
from rag.types import Passage, Retriever
from tests.fakes import FakeGenerator

CONTEXT = (
    "Velmora Central opened in 1878, designed by the architect Amalia Solvay. About 1,400 bikes and "
    "a day pass costs 7.50 crowns. The Lantern Warden leads the procession."
)


@pytest.mark.parametrize(
    "answer, missing",
    [
        ("Velmora Central opened in 1878.", []),
        ("It opened in 1978.", ["1978"]),  # a wrong year is a number the context does not hold
        ("The architect was Amalia Solvay.", []),
        ("The architect was Captain Jameson.", ["Captain", "Jameson"]),
        ("There are 1400 bikes and a day pass costs 7.5 crowns.", []),  # the same values, written differently
        ("It cost about 1.2 million euros.", ["1.2"]),
        ("The Lantern Wardens lead it; the Warden's lantern is lit in May.", []),  # plural, possessive, month
        ("The documents do not say.", []),
        ("When did Velmora Central open? In 1878.", []),
        ("Approximately 1,400. Roughly half are electric.", []),  # sentence-initial words are not names
        ("Designed by Amalia Solvay, not Kross.", ["Kross"]),
        ("1. About 1,400 bikes\n2. A day pass", []),  # list numbers are not facts
        ("Founded in the 19th century, on the 3rd floor.", []),  # ordinals are not checked
    ],
)
def test_unsupported_numbers_and_names(answer, missing):
    assert unsupported(answer, "When did Velmora Central open?", CONTEXT) == missing


def test_question_words_count_as_known():
    assert unsupported("Tern Island has 2 piers.", "How many piers does Tern Island have, 2 or 3?", "") == []


def test_check_answer_refuses_only_unsupported_answers():
    assert check_answer("It opened in 1878.", "q", CONTEXT) == ("It opened in 1878.", [])
    assert check_answer("It opened in 1879.", "q", CONTEXT) == (REFUSAL, ["1879"])


class OneRetriever(Retriever):
    def retrieve(self, query, top_k, deadline=None):
        return [Passage(1, "station.md", 0, 0.9, "Whole chunk. " + CONTEXT, excerpt=CONTEXT)]


class SayingGenerator(FakeGenerator):
    def __init__(self, text):
        super().__init__()
        self.text = text

    def generate(self, query, passages, params, deadline=None):
        answer = super().generate(query, passages, params, deadline)
        return type(answer)(self.text, answer.prompt_tokens, answer.completion_tokens)


@pytest.mark.parametrize(
    "check, said, expected",
    [
        (True, "It opened in 1878.", "It opened in 1878."),
        (True, "It cost 3 million crowns.", REFUSAL),
        (False, "It cost 3 million crowns.", "It cost 3 million crowns."),
    ],
)
def test_pipeline_applies_the_check_to_answers_and_streams(check, said, expected):
    pipeline = RagPipeline(OneRetriever(), SayingGenerator(said), "test", check_grounding=check)
    request = QueryRequest("When did it open?", 1)
    assert pipeline.answer(request)["answer"] == expected
    events = list(pipeline.stream(request))
    assert events[-1]["event"] == "done" and events[-1]["answer"] == expected
    assert events[0]["sources"][0]["text"].startswith("Whole chunk.")  # sources untouched
