"""ask(): validation at the boundary and the answer's shape."""

from __future__ import annotations

from pathlib import Path

import pytest

from qa import Answer, ask
from qa.pipeline import validate_question


@pytest.mark.parametrize(
    ("question", "message"),
    [
        ("", "empty"),
        ("   \n\t", "empty"),
        ("?!...", "no words"),
        ("x" * 100_000, "limit"),
        (None, "must be a string"),
    ],
)
def test_bad_questions_are_refused_clearly(question: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        validate_question(question)


def test_control_characters_and_spacing_are_cleaned() -> None:
    assert validate_question("  Who\x00 is\x1b there?\n") == "Who is there?"
    assert validate_question("Qui est là? 🚀 Кто?") == "Qui est là? 🚀 Кто?"


def test_missing_index_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no index at"):
        ask("Who is it?", index=tmp_path / "missing")


def test_bad_top_k_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="top_k"):
        ask("Who is it?", index=tmp_path, top_k=0)


@pytest.mark.slow
def test_ask_returns_answer_with_citations_and_passages(tmp_path: Path) -> None:
    from qa.indexing import index_folder
    from tests.conftest import ROOT

    index_folder(ROOT / "seeds", tmp_path / "idx")
    answer = ask("Which European country joined the drone coalition alongside Turkey?", index=tmp_path / "idx", top_k=2)
    assert isinstance(answer, Answer)
    assert answer.text == "Belgium"
    assert len(answer.passages) == 2
    d = answer.to_dict()
    assert set(d) == {"question", "answer", "score", "reader", "citations", "passages", "guess"}
    assert set(d["passages"][0]) == {"rank", "doc_id", "chunk_id", "score", "components", "start", "end"}
    assert d["citations"][0]["answer_end"] - d["citations"][0]["answer_start"] == len("Belgium")
