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


def build_messages(query: str, passages: list[Passage]) -> list[dict]:
    """The grounded chat prompt: instructions, then the question, the passages' text and the question again."""
    context = "\n\n".join(p.text for p in passages) or "(nothing was found)"
    user = f"Question: {query}\n\nContext:\n{context}\n\nQuestion: {query}"
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]
