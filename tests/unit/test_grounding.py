"""The grounding check (rag/generation/grounding.py) and its place in the pipeline, with fakes."""

import pytest

from rag.api import QueryRequest
from rag.generation.grounding import REFUSAL, check_answer, unrelated, unsupported
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
    assert check_answer("It opened in 1878.", "q", [CONTEXT]) == ("It opened in 1878.", [])
    assert check_answer("It opened in 1879.", "q", [CONTEXT]) == (REFUSAL, ["1879"])


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
    pipeline = RagPipeline(OneRetriever(), SayingGenerator(said), "test", grounding="present" if check else "off")
    request = QueryRequest("When did it open?", 1)
    assert pipeline.answer(request)["answer"] == expected
    events = list(pipeline.stream(request))
    assert events[-1]["event"] == "done" and events[-1]["answer"] == expected
    assert events[0]["sources"][0]["text"].startswith("Whole chunk.")  # sources untouched


SUBJECT_CONTEXT = [
    "The Quellmark funicular climbs 212 metres from the harbour to the old town. A single ticket costs 3 euros.",
    "The tramway carried 1,240 passengers on its first day. Its first line was designed by Ilse Marren.",
]


@pytest.mark.parametrize(
    "answer, unrelated_facts",
    [
        # The figure is in the context, but only in a passage about something else.
        ("A ticket on the Quellmark funicular costs 1,240 euros.", ["1240"]),
        ("The Quellmark funicular was designed by Ilse Marren.", ["Ilse", "Marren"]),
        # In the passage about the subject, in any of its sentences ("A single ticket costs 3 euros").
        ("It climbs 212 metres.", []),
        ("A single ticket costs 3 euros.", []),
    ],
)
def test_a_fact_must_stand_near_the_question_subject(answer, unrelated_facts):
    question = "How much does a ticket on the Quellmark funicular cost?"
    if "designed" in answer or "climbs" in answer:
        question = "Who designed the Quellmark funicular, and how high does it climb?"
    assert unrelated(answer, question, SUBJECT_CONTEXT) == sorted(unrelated_facts)
    text, missing = check_answer(answer, question, SUBJECT_CONTEXT, "subject")
    assert (text == REFUSAL) == bool(unrelated_facts) and missing == sorted(unrelated_facts)
    # `present` only asks that the facts appear somewhere: all of these do.
    assert check_answer(answer, question, SUBJECT_CONTEXT, "present") == (answer, [])
    assert check_answer(answer, question, SUBJECT_CONTEXT, "off") == (answer, [])


def test_regrading_saved_answers_matches_the_check():
    from evaluation.regrade import regrade

    records = [
        {
            "question": "How much does a ticket on the Quellmark funicular cost?",
            "answer": "A ticket on the Quellmark funicular costs 1,240 euros.",
            "answerable": True,
            "expected": [["3 euros"]],
            "error": None,
            "sources": [{"rank": n + 1, "source": "x.md", "excerpt": text} for n, text in enumerate(SUBJECT_CONTEXT)],
        },
        {
            "question": "What does a season pass for the funicular cost?",
            "answer": "The documents do not say.",
            "answerable": False,
            "expected": [],
            "error": None,
            "sources": [{"rank": n + 1, "source": "x.md", "excerpt": text} for n, text in enumerate(SUBJECT_CONTEXT)],
        },
    ]
    present, subject = regrade(records, "present"), regrade(records, "subject")
    assert [r["refused"] for r in present] == [False, True]
    assert [r["refused"] for r in subject] == [True, True]
    assert [r["correct"] for r in subject] == [False, True]
