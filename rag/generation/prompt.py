"""The prompt: what the model is told, and how the question and the passages are laid out."""

from __future__ import annotations

from rag.generation.grounding import REFUSAL
from rag.types import Passage

# Chosen with `make eval` on the sample corpus's 73 questions (docs/evaluation.md), with focused context:
# this wording answered 33 of 60 where the previous one ("Passages: [1] (source: ...)", quote the passages)
# answered 26. Numbered passages with their file names made the 135M model recite "[2] (source: x.md)";
# the question stated before and after the context kept it on the question; a fixed refusal sentence is
# one the grounding check and `make eval` recognise.
SYSTEM_PROMPT = (
    "Answer the question using only the context below. Give the exact name, number or date from the context "
    f"in one short sentence. If the context does not contain the answer, reply exactly: {REFUSAL}"
)


def build_messages(query: str, passages: list[Passage], system_prompt: str = SYSTEM_PROMPT) -> list[dict]:
    """The grounded chat prompt: instructions, then the question, the passages' text and the question again.
    A model tier may bring its own instructions (`system_prompt` in rag/model_ladder.toml)."""
    context = "\n\n".join(p.text for p in passages) or "(nothing was found)"
    user = f"Question: {query}\n\nContext:\n{context}\n\nQuestion: {query}"
    return [{"role": "system", "content": system_prompt}, {"role": "user", "content": user}]


# Where an answer ends besides the model's end-of-turn token: a blank line (a second paragraph) or a new
# turn in the prompt's own layout. Small models run on past their answer ("Ilse Marren of Velmora\n\n
# Question: Who was ..."); generation stops at the first of these, and the answer is cut before it.
STOP_STRINGS = ("\n\n", "\nQuestion:", "\nContext:", "\nAnswer:")


def answer_end(text: str) -> int | None:
    """Where the answer in `text` ends: the first stop string after its first visible character."""
    start = len(text) - len(text.lstrip())
    found = [at for stop in STOP_STRINGS if (at := text.find(stop, start)) >= 0]
    return min(found) if found else None


def answer_has_ended(text: str) -> bool:
    return answer_end(text) is not None


def visible_answer(text: str, final: bool) -> str:
    """What of the decoded `text` is answer: cut at a stop string and, while decoding goes on, without a
    tail that could still become one (a stream never sends text that the final answer drops)."""
    end = answer_end(text)
    if end is not None:
        return text[:end]
    if not final:  # hold back the longest tail that is the start of a stop string
        for size in range(min(len(text), max(map(len, STOP_STRINGS)) - 1), 0, -1):
            if any(stop.startswith(text[-size:]) for stop in STOP_STRINGS):
                return text[:-size]
    return text
