"""The evaluation question files (data/*.questions.jsonl) hold what data/README.md says they hold.

For every question file and its corpus folder (data/<name>.questions.jsonl and data/<name>/):
- every line is a JSON object with exactly the four fields, and `make eval` can load it;
- an answerable question names a source document that exists, and each accepted string (every string
  of an all-of list included) appears in that document's text as ingestion reads it (HTML: the visible
  text, script and style removed), compared the way `make eval` compares (case, thousands separators);
- no accepted string appears in its own question;
- an unanswerable question has no answers and no source;
- every document of the corpus is the source of at least 3 questions, no question is asked twice, and
  the counts match the Counts section of data/README.md.

Pure file reading: no model, no index, well under a second.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from evaluation.evaluate import load_questions, normalise
from rag.ingest.formats import EXTENSIONS, read_sections

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "data"
README = DATA / "README.md"
QUESTION_FILES = sorted(DATA.glob("*.questions.jsonl"))
FIELDS = {"question", "answers", "source", "answerable"}
MIN_PER_DOCUMENT = 3
COUNTS = re.compile(
    r"`(?P<file>[\w.-]+\.questions\.jsonl)`: (?P<total>\d+) questions\. (?P<answerable>\d+) are answerable"
    r".*? and (?P<unanswerable>\d+) are unanswerable"
)


def _corpus(path: Path) -> Path:
    return path.with_name(path.name.removesuffix(".questions.jsonl"))


def _records(path: Path) -> list[tuple[int, dict]]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return [(number, json.loads(line)) for number, line in enumerate(lines, start=1) if line.strip()]


def _strings(answers: list) -> list[str]:
    return [s for item in answers for s in ([item] if isinstance(item, str) else item)]


def _document_text(path: Path) -> str:
    return normalise("\n\n".join(section.text for section in read_sections(path)))


def _documented_counts() -> dict[str, tuple[int, int, int]]:
    text = README.read_text(encoding="utf-8")
    return {m["file"]: (int(m["total"]), int(m["answerable"]), int(m["unanswerable"])) for m in COUNTS.finditer(text)}


def test_there_are_question_files_and_each_has_a_corpus():
    assert len(QUESTION_FILES) >= 3
    for path in QUESTION_FILES:
        assert _corpus(path).is_dir(), f"{path.name} has no corpus folder data/{_corpus(path).name}/"


def _answer_problems(where: str, answers, source: str, text: str, asked: str, what: str) -> list[str]:
    """Each accepted answer must be in its (normalised) source text, and must not be given away by what was asked."""
    asked = normalise(asked)
    problems = []
    for accepted in _strings(answers):
        if normalise(accepted) not in text:
            problems.append(f"{where}: {accepted!r} is not in {source}")
        if normalise(accepted) in asked:
            problems.append(f"{where}: {accepted!r} appears in the {what} itself")
    return problems


@pytest.mark.parametrize("path", QUESTION_FILES, ids=lambda p: p.name)
def test_every_line_has_the_four_fields_and_loads(path):
    for number, record in _records(path):
        where = f"{path.name}:{number}"
        assert isinstance(record, dict) and set(record) == FIELDS, f"{where}: fields must be exactly {sorted(FIELDS)}"
        assert isinstance(record["question"], str) and record["question"].strip(), where
        assert isinstance(record["answerable"], bool), where
        assert isinstance(record["answers"], list), where
    assert len(load_questions(path)) == len(_records(path))  # what `make eval` reads


@pytest.mark.parametrize("path", QUESTION_FILES, ids=lambda p: p.name)
def test_accepted_strings_are_in_the_source_and_not_in_the_question(path):
    corpus = _corpus(path)
    texts: dict[str, str] = {}
    problems = []
    for number, record in _records(path):
        if not record["answerable"]:
            continue
        where = f"{path.name}:{number}"
        source = record["source"]
        if not isinstance(source, str) or not (corpus / source).is_file():
            problems.append(f"{where}: source {source!r} is not a file in data/{corpus.name}/")
            continue
        if source not in texts:
            texts[source] = _document_text(corpus / source)
        problems += _answer_problems(where, record["answers"], source, texts[source], record["question"], "question")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("path", QUESTION_FILES, ids=lambda p: p.name)
def test_answerable_questions_have_answers_and_unanswerable_ones_have_none(path):
    for number, record in _records(path):
        where = f"{path.name}:{number}"
        if record["answerable"]:
            assert record["answers"] and record["source"], f"{where}: an answerable question needs answers and source"
            for item in record["answers"]:
                assert isinstance(item, str) or (isinstance(item, list) and len(item) >= 2), (
                    f"{where}: an all-of answer is a list of at least two strings"
                )
        else:
            assert record["answers"] == [], f"{where}: an unanswerable question has answers []"
            assert record["source"] is None, f"{where}: an unanswerable question has source null"


@pytest.mark.parametrize("path", QUESTION_FILES, ids=lambda p: p.name)
def test_every_document_has_questions_and_no_question_is_repeated(path):
    records = [record for _, record in _records(path)]
    corpus = _corpus(path)
    documents = sorted(
        str(p.relative_to(corpus)) for p in corpus.rglob("*") if p.is_file() and p.suffix.lower() in EXTENSIONS
    )
    asked = {doc: sum(record["source"] == doc for record in records) for doc in documents}
    assert {doc: n for doc, n in asked.items() if n < MIN_PER_DOCUMENT} == {}
    questions = [normalise(record["question"]) for record in records]
    assert len(questions) == len(set(questions)), "a question is asked twice"


@pytest.mark.parametrize("path", QUESTION_FILES, ids=lambda p: p.name)
def test_counts_match_the_readme(path):
    counts = _documented_counts()
    assert path.name in counts, f"data/README.md's Counts section does not list {path.name}"
    records = [record for _, record in _records(path)]
    answerable = sum(record["answerable"] for record in records)
    assert (len(records), answerable, len(records) - answerable) == counts[path.name]
    assert f"`{_corpus(path).name}/`" in README.read_text(encoding="utf-8"), "the corpus is not in the README table"


CONVERSATION_FILES = sorted(DATA.glob("*.conversations.jsonl"))
CONVERSATION_COUNTS = re.compile(
    r"`(?P<file>[\w.-]+\.conversations\.jsonl)`: (?P<total>\d+) conversations, (?P<follow>\d+) follow-ups "
    r"and (?P<shift>\d+) topic shifts"
)


def test_there_are_conversation_files_for_the_tuning_and_a_held_out_set():
    assert {path.name for path in CONVERSATION_FILES} >= {
        "sample.conversations.jsonl",
        "harbourline.conversations.jsonl",
    }


@pytest.mark.parametrize("path", CONVERSATION_FILES, ids=lambda p: p.name)
def test_conversations_are_valid_chat_requests_with_findable_answers(path):
    from evaluation.conversations import load_conversations
    from rag.settings import Settings

    conversations = load_conversations(path, Settings())  # the chat schema's own validation, and the fields
    corpus = DATA / path.name.removesuffix(".conversations.jsonl")
    problems = []
    for (number, record), conversation in zip(_records(path), conversations):
        where = f"{path.name}:{number}"
        assert [m["role"] for m in record["messages"]] == ["user", "assistant"] * (len(record["messages"]) // 2) + [
            "user"
        ], f"{where}: turns alternate user and assistant and end with the user's question"
        assert 3 <= len(record["messages"]) <= 5, f"{where}: a conversation has 2 or 3 user turns"
        source = conversation.question.source
        if not (corpus / source).is_file():
            problems.append(f"{where}: source {source!r} is not a file in data/{corpus.name}/")
            continue
        text = _document_text(corpus / source)
        said = " ".join(m["content"] for m in record["messages"])
        problems += _answer_problems(where, record["answers"], source, text, said, "conversation")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("path", CONVERSATION_FILES, ids=lambda p: p.name)
def test_conversation_counts_match_the_readme(path):
    counts = {
        m["file"]: (int(m["total"]), int(m["follow"]), int(m["shift"]))
        for m in CONVERSATION_COUNTS.finditer(README.read_text(encoding="utf-8"))
    }
    records = [record for _, record in _records(path)]
    follow = sum(record["kind"] == "follow-up" for record in records)
    assert counts.get(path.name) == (len(records), follow, len(records) - follow)
    assert len({json.dumps(r["messages"]) for r in records}) == len(records), "a conversation is repeated"
