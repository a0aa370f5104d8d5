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


def _forms(word: str) -> set[str]:
    folded = _fold(word)
    # "Warden's", "Wardens" and "Warden" are one name.
    return {folded, folded.removesuffix("'s"), folded.removesuffix("s"), folded.removesuffix("es")}


def _names(answer: str) -> list[str]:
    """The capitalised words of `answer` that may name something."""
    # A sentence's first word is capitalised whatever it is ("Approximately 318 metres."): not a name.
    later_words = [word for sentence in _SENTENCE.split(answer) for word in _WORD.findall(sentence)[1:]]
    return [word for word in later_words if word[0].isupper() and word not in _COMMON]


def unsupported(answer: str, question: str, context: str) -> list[str]:
    """The numbers and capitalised names of `answer` that neither the question nor the context contains."""
    answer = _LIST_MARKER.sub("", answer)  # "1. The first ..." numbers a list; it states nothing
    known_numbers = _number_values(question) | _number_values(context)
    missing = sorted(n for n in _number_values(answer) - known_numbers)
    known_words = set(_fold(w) for w in _WORD.findall(f"{question} {context}"))
    missing += [word for word in _names(answer) if not _forms(word) & known_words]
    return missing


# Words a question asks with, which say nothing about what it asks about.
_QUESTION_WORDS = frozenset(
    """what which who whom whose when where why how much many long old does did do is are was were has have had
can could would should will the a an of in on at by for from to and or with about into than that this
there their its it be been being any some kind name named called year date number first last""".split()
)


def _subject(question: str) -> set[str]:
    """What a question is about (folded): the names it mentions, or else its content words."""
    words = _WORD.findall(question)
    names = [w for w in words[1:] if w[0].isupper() and w not in _COMMON]
    if words and words[0][0].isupper() and _fold(words[0]) not in _QUESTION_WORDS and words[0] not in _COMMON:
        names.insert(0, words[0])
    chosen = names or [w for w in words if len(w) > 2 and _fold(w) not in _QUESTION_WORDS]
    return set().union(*(_forms(w) for w in chosen)) if chosen else set()


def unrelated(answer: str, question: str, passages: list[str]) -> list[str]:
    """The numbers and names of `answer` that the context states, but never in a passage about the
    question's subject.

    The subject is the names the question mentions (else its content words). A fact is related when a
    passage the model saw holds both the fact and the subject. This catches a true figure taken from
    another passage ("A ticket on the Quellmark funicular costs 1,240 euros", where 1,240 is the tramway
    passage's passenger count). Within one passage, sentences were too narrow a window: a focused excerpt
    names its subject once, and "it" does the rest (measured on the tuning set, docs/evaluation.md)."""
    subject = _subject(question)
    if not subject:
        return []
    answer = _LIST_MARKER.sub("", answer)
    words = [set().union(*(_forms(w) for w in _WORD.findall(text))) for text in passages]
    numbers = [_number_values(text) for text in passages]
    asked = _number_values(question) | set().union(*(_forms(w) for w in _WORD.findall(question)))

    def related(found: list[int]) -> bool:
        return any(subject & words[i] for i in found)

    missing = []
    for value in _number_values(answer) - asked:
        found = [i for i, values in enumerate(numbers) if value in values]
        if found and not related(found):
            missing.append(value)
    for name in _names(answer):
        forms = _forms(name)
        if forms & asked:
            continue
        found = [i for i, passage_words in enumerate(words) if forms & passage_words]
        if found and not related(found):
            missing.append(name)
    return sorted(missing)


def check_answer(answer: str, question: str, passages: list[str], mode: str = "present") -> tuple[str, list[str]]:
    """The answer, or REFUSAL when it states something unsupported; with what was unsupported.

    `passages` are the texts the model saw. `present`: every number and name must appear in the question
    or the passages. `subject`: also, in a passage about the question's subject (`unrelated`)."""
    if mode == "off":
        return answer, []
    missing = unsupported(answer, question, "\n".join(passages))
    if mode == "subject" and not missing:
        missing = unrelated(answer, question, passages)
    return (REFUSAL if missing else answer), missing
