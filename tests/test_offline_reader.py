"""Offline reader: answer types, golden spans on the seed article, abstention."""

from __future__ import annotations

from pathlib import Path

import pytest

from qa.answer import Passage
from qa.offline_reader import OfflineReader, analyze_question
from qa.pipeline import ask
from tests.conftest import ROOT, SEED_DOC

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def seed_index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from qa.indexing import index_folder

    path = tmp_path_factory.mktemp("seed-index")
    index_folder(ROOT / "seeds", path)
    return path


@pytest.mark.parametrize(
    ("question", "answer_type"),
    [
        ("Who runs the company?", "PERSON"),
        ("Where did they meet?", "PLACE"),
        ("When did it first fly?", "DATE"),
        ("In what year was it founded?", "DATE"),
        ("How many drones were sold?", "NUMBER"),
        ("How much does it cost?", "MONEY"),
        ("Which company builds it?", "ORG"),
        ("In which city is the plant?", "PLACE"),
        ("Why did they go?", "REASON"),
        ("Is Turkey in NATO?", "YESNO"),
        ("What is the plan?", None),
    ],
)
def test_answer_types(question: str, answer_type: str | None) -> None:
    assert analyze_question(question).answer_type == answer_type


def test_key_terms_exclude_question_words_and_weight_names() -> None:
    info = analyze_question("Who manufactures the Kizilelma combat drone?")
    assert "who" not in info.keywords and "the" not in info.keywords
    assert info.keywords["kizilelma"] > info.keywords["drone"]


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("When did the Kizilelma make its first flight?", "December 2022"),
        ("Which European country joined the drone coalition alongside Turkey?", "Belgium"),
        ("In which city will Nakatani tour defense facilities?", "Istanbul"),
        ("Who manufactures the Kizilelma combat drone?", "Baykar"),
        ("Where did Japan's defense minister travel for this official visit?", "Turkey"),
    ],
)
def test_golden_spans_with_exact_offsets(seed_index: Path, question: str, expected: str) -> None:
    answer = ask(question, index=seed_index, reader="offline")
    assert answer.text == expected
    assert answer.reader.startswith("offline")
    text = SEED_DOC.read_text(encoding="utf-8")
    c = answer.citations[0]
    assert text[c.answer_start : c.answer_end] == expected
    assert text[c.passage_start : c.passage_end] == c.passage
    assert c.doc_id == "japan_defense_minister_turkey_visit.txt"
    assert 0.0 < answer.score <= 1.0


@pytest.mark.parametrize(
    "question",
    [
        "How much does a Kizilelma drone cost?",
        "How old is Gen Nakatani?",
        "What is the capital of Japan?",
        "How many days will Nakatani spend in Turkey?",
    ],
)
def test_abstains_when_the_documents_do_not_say(seed_index: Path, question: str) -> None:
    answer = ask(question, index=seed_index, reader="offline")
    assert answer.text is None and answer.citations == []
    assert answer.passages, "the closest passages are still returned for display"


def test_no_passages_means_no_answer() -> None:
    answer = OfflineReader().read("Who is it?", [])
    assert answer.text is None and answer.score == 0.0


def _passage(text: str) -> Passage:
    return Passage("notes.txt", "notes.txt", "notes.txt#0", 0, len(text), text, 0.5, document_text=text)


@pytest.mark.parametrize(
    ("question", "head", "role"),
    [
        ("Who replaced Henrik Aas as chief financial officer?", "replace", "subject"),
        ("What does Baykar produce?", "produce", "object"),
        ("Where did Nakatani meet his Turkish counterpart?", "meet", "modifier"),
    ],
)
def test_question_slot(question: str, head: str, role: str) -> None:
    info = analyze_question(question)
    assert (info.slot_head, info.slot_role) == (head, role)


@pytest.mark.parametrize(
    ("text", "question", "span"),
    [
        # Lists, not just their first member.
        ("The listing was run by Goldman Sachs and ABN Amro in Amsterdam.", "Which banks ran the listing?", "Goldman Sachs and ABN Amro"),
        ("Most shops are in Yorkshire, Lancashire and Durham.", "Where are most shops?", "Yorkshire, Lancashire and Durham"),
        # Regnal numbers and territorial titles belong to the name.
        ("The restoration began under Sultan Abdülmecid I in 1847.", "Which sultan reigned during the restoration?", "Abdülmecid I"),
        # A negation is part of the answer.
        ("Officials said there was no expectation of formal agreements.", "Are formal agreements expected?", "no expectation of formal agreements"),
    ],
)
def test_candidate_spans(text: str, question: str, span: str) -> None:
    passage = _passage(text)
    found = {passage.text[c.start : c.end] for c in OfflineReader().candidates(question, [passage])}
    assert span in found, sorted(found)


def test_answers_with_the_person_asked_for_not_the_one_the_question_names() -> None:
    text = "In March the board said Marte Lindqvist had replaced Henrik Aas as chief financial officer."
    answer = OfflineReader(threshold=0.0).read("Who replaced Henrik Aas as finance chief?", [_passage(text)])
    assert answer.text == "Marte Lindqvist"
    c = answer.citations[0]
    assert text[c.answer_start : c.answer_end] == "Marte Lindqvist"
