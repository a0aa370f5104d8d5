"""A conversation condensed into one retrieval query, so that a follow-up ("and who designed it?")
retrieves the passages about the earlier subject.

Only the user's turns are read: they carry what is asked about, while an assistant turn is the service's
own earlier answer (and a small model's answer may be wrong). The strategies (RAG_CHAT_CONDENSE):

    last      the last user turn alone
    concat    every user turn, oldest first
    keywords  the last user turn, then the content words of the earlier user turns in brackets
    auto      keywords when the last user turn names nothing of its own (no capitalised name),
              else the last turn alone: a new subject is not mixed with the old one

The default was chosen by measurement on a multi-turn dev set (docs/api.md#chat-completions).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from rag.settings import MAX_QUERY_CHARS

_WORD = re.compile(r"[^\W_][\w'\-]*", re.UNICODE)
# Words that say how something is asked, not what about: question words, auxiliaries, pronouns,
# determiners, prepositions and conjunctions. What is left of a question is its subject and its verb.
_FUNCTION_WORDS = frozenset(
    """a an the this that these those it its it's they them their there here he him his she her we our you
your i me my who whom whose what which when where why how much many long old does do did is are was were
be been being has have had can could would should will shall may might must of in on at by for from to
with about into onto over under than and or but not no nor so as if then also too very any some each
every other another one ones again still just only more most less least tell me please ok okay yes thanks
thank great well now""".split()
)
_OWN_NAME = re.compile(r"[^\W\d_][\w'\-]*", re.UNICODE)


def _content_words(text: str) -> list[str]:
    return [word for word in _WORD.findall(text) if word.casefold() not in _FUNCTION_WORDS]


def names_a_subject(turn: str) -> bool:
    """Whether a turn names something itself: a capitalised word that is not the turn's first word
    ("How tall is the Glass Bridge?"), or a first word that is no question or function word
    ("Velmora's population?")."""
    words = _OWN_NAME.findall(turn)
    if not words:
        return False
    if words[0][0].isupper() and words[0].casefold() not in _FUNCTION_WORDS:
        return True
    return any(word[0].isupper() and word.casefold() not in _FUNCTION_WORDS for word in words[1:])


def _keywords(turns: Sequence[str], limit: int) -> str:
    last = turns[-1]
    seen = {word.casefold() for word in _content_words(last)}
    words: list[str] = []
    for turn in turns[:-1]:
        for word in _content_words(turn):
            if word.casefold() not in seen:
                seen.add(word.casefold())
                words.append(word)
    size = len(" ".join(words))
    while words and len(last) + size + 3 > limit:  # " (" and ")"; the oldest words go first
        size -= len(words.pop(0)) + 1
    return f"{last} ({' '.join(words)})" if words else last


def _concat(turns: Sequence[str], limit: int) -> str:
    kept = [turns[-1]]
    for turn in reversed(turns[:-1]):
        if sum(len(t) + 1 for t in kept) + len(turn) > limit:
            break
        kept.insert(0, turn)
    return " ".join(kept)


def condense(user_turns: Sequence[str], strategy: str, limit: int = MAX_QUERY_CHARS) -> str:
    """One retrieval query (at most `limit` characters) from the user turns, oldest first; the last
    one is the question being asked now and is always kept whole."""
    if not user_turns:
        raise ValueError("a conversation needs at least one user turn")
    last = user_turns[-1]
    if strategy == "last" or len(user_turns) == 1:
        return last
    if strategy == "concat":
        return _concat(user_turns, limit)
    if strategy == "keywords":
        return _keywords(user_turns, limit)
    if strategy == "auto":
        return last if names_a_subject(last) else _keywords(user_turns, limit)
    raise ValueError(f"unknown condensation strategy {strategy!r}")
