"""Where an answer ends: stop strings in the decoded text, and a stream that never sends what the final
answer drops."""

from __future__ import annotations

import pytest

from rag.generation.prompt import STOP_STRINGS, answer_end, visible_answer


@pytest.mark.parametrize(
    "text, answer",
    [
        ("Ilse Marren of Velmora\n\nQuestion: Who was the first president of Velmora?", "Ilse Marren of Velmora"),
        ("A: 20%\n\nThe answer is: 20%", "A: 20%"),
        ("Benedikt Sørhaug\nQuestion: Which architect designed it?\nAnswer:", "Benedikt Sørhaug"),
        ("The line opened in 1889.\nContext: The tramway ...", "The line opened in 1889."),
        ("\n\nThe tramway opened in 1889.", "\n\nThe tramway opened in 1889."),  # leading blank lines are not an end
        ("Hill\nBrannock", "Hill\nBrannock"),  # one newline: a list goes on
        ("The documents do not say.", "The documents do not say."),
    ],
)
def test_the_answer_is_cut_at_its_first_stop_string(text, answer):
    assert visible_answer(text, final=True) == answer
    assert (answer_end(text) is None) == (answer == text)


def test_a_stream_holds_back_what_could_still_become_a_stop_string():
    assert visible_answer("Paris\n", final=False) == "Paris"
    assert visible_answer("Paris\nQue", final=False) == "Paris"
    assert visible_answer("Paris\nQue", final=True) == "Paris\nQue"
    assert visible_answer("Paris is", final=False) == "Paris is"
    # Every prefix of a run-on answer: what a stream may send is always a prefix of the final answer.
    text = "Ilse Marren of Velmora\n\nQuestion: Who was the first president?"
    final = visible_answer(text, final=True)
    for end in range(len(text) + 1):
        assert final.startswith(visible_answer(text[:end], final=False))


def test_every_stop_string_starts_a_new_line():
    # A stop inside a line would cut answers such as "Question: 3" mid-sentence.
    assert all(stop.startswith("\n") for stop in STOP_STRINGS)
