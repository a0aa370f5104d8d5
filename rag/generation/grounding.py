"""Grounding check: an answer that states a number or a name found nowhere in its context is not used.

A small model asked something the documents do not say rarely refuses; it invents a plausible figure
("about 1.2 million euros") or a name. What it invents is, by construction, absent from the passages it
was given. So before an answer leaves the service, every number and every capitalised name in it is
looked up in the question and the prompt's context; when one is missing, the answer is replaced by
REFUSAL. It also catches a wrong year copied with a typo (1978 for 1878). It cannot catch a wrong fact
that does appear in the context (the name of another mayor of the same city).
"""

from __future__ import annotations

import re
import unicodedata

REFUSAL = "The documents do not say."

# Numbers: "1,400", "7.50", "2018", "4.2"; names: capitalised words, also inside a sentence.
# An ordinal ("19th century", "3rd") ranks or dates something loosely: not checked as a figure.
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*(?!\d|st\b|nd\b|rd\b|th\b)")
_WORD = re.compile(r"[^\W\d_][\w'\-]*", re.UNICODE)
_LIST_MARKER = re.compile(r"^\s*\d{1,2}[.)]\s+", re.MULTILINE)
_SENTENCE = re.compile(r"(?<=[.!?:])\s+|\n+")
# Capitalised words that carry no fact, wherever they stand.
_COMMON = frozenset(
    """I A An The This That These Those It Its There Their They He She His Her We Our You Your
Yes No Not None Answer Question Context Passage Passages Document Documents Source Sources Today However
In On At By For From To Of And Or But As After Before During Since Until With Without Also Both Each
January February March April May June July August September October November December
Monday Tuesday Wednesday Thursday Friday Saturday Sunday""".split()
)


def _fold(text: str) -> str:
    return unicodedata.normalize("NFKC", text).casefold()


def _number_values(text: str) -> set[str]:
    """Numbers in a canonical form: thousands separators dropped, trailing decimal zeros removed."""
    values = set()
    for match in _NUMBER.findall(text):
        plain = re.sub(r",(?=\d{3}(?!\d))", "", match).replace(",", ".")
        if "." in plain:
            plain = plain.rstrip("0").rstrip(".")
        values.add(plain.lstrip("0") or "0")
    return values


def unsupported(answer: str, question: str, context: str) -> list[str]:
    """The numbers and capitalised names of `answer` that neither the question nor the context contains."""
    answer = _LIST_MARKER.sub("", answer)  # "1. The first ..." numbers a list; it states nothing
    known_numbers = _number_values(question) | _number_values(context)
    missing = sorted(n for n in _number_values(answer) - known_numbers)
    known_words = set(_fold(w) for w in _WORD.findall(f"{question} {context}"))
    # A sentence's first word is capitalised whatever it is ("Approximately 318 metres."): not a name.
    later_words = [word for sentence in _SENTENCE.split(answer) for word in _WORD.findall(sentence)[1:]]
    for word in later_words:
        if word[0].isupper() and word not in _COMMON and _fold(word) not in known_words:
            folded = _fold(word)
            # "Warden's", "Wardens" and "Warden" are one name.
            if not {folded.removesuffix("'s"), folded.removesuffix("s"), folded.removesuffix("es")} & known_words:
                missing.append(word)
    return missing


def check_answer(answer: str, question: str, context: str) -> tuple[str, list[str]]:
    """The answer, or REFUSAL when it states something unsupported; with what was unsupported."""
    missing = unsupported(answer, question, context)
    return (REFUSAL if missing else answer), missing
