"""ask(): validation at the boundary and the answer's shape."""

from __future__ import annotations

import dataclasses
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


@pytest.mark.parametrize("threshold", [1.5, -0.1, float("nan"), True, "0.8"])
def test_bad_threshold_is_refused(tmp_path: Path, threshold: object) -> None:
    with pytest.raises(ValueError, match=r"threshold=.* must be a chance from 0 to 1"):
        ask("Who is it?", index=tmp_path, threshold=threshold)


def test_answer_at_threshold_moves_the_span_between_answer_and_guess() -> None:
    from qa.answer import Citation

    text = "The Alpha river flows north."
    c = Citation("a.txt", "/a.txt", "a#0", text, 0, len(text), 4, 15)
    answered = Answer("Which river?", "Alpha river", 0.6, "r", [c])
    doubtful = answered.at_threshold(0.7)
    assert (doubtful.text, doubtful.citations, doubtful.guess, doubtful.score) == (None, [], c, 0.6)
    assert doubtful.guess_text == "Alpha river"
    assert answered.at_threshold(0.6) is answered and answered.at_threshold(0.0) is answered
    # Back down: the guess becomes the answer again, exactly as it was.
    assert doubtful.at_threshold(0.5) == answered and doubtful.at_threshold(0.61) is doubtful
    nothing = Answer("Which river?", None, 0.0, "r")  # no span at all: stays "I don't know"
    assert nothing.at_threshold(0.0) is nothing


def test_ask_threshold_overrides_the_readers_decision(docs_dir: Path, fake_encoder, tmp_path: Path) -> None:  # noqa: ANN001
    from qa.ingest.indexing import index_folder
    from tests.conftest import FakeReader

    index_folder(docs_dir, tmp_path / "idx", encoder=fake_encoder)
    kw = {"index": tmp_path / "idx", "reader": FakeReader(score=0.6), "retriever": "bm25"}
    default = ask("Which river is long?", **kw)
    assert default.text == "Alpha" and default.score == 0.6
    strict = ask("Which river is long?", threshold=0.8, **kw)
    assert strict.text is None and strict.guess == default.citations[0] and strict.score == 0.6
    assert ask("Which river is long?", threshold=0.6, **kw) == default


@pytest.mark.reader
@pytest.mark.slow
def test_ask_returns_answer_with_citations_and_passages(tmp_path: Path) -> None:
    from qa.ingest.indexing import index_folder
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


def test_answer_prints_short() -> None:
    from qa.answer import Answer, Citation, Passage

    text = "x" * 5000 + " December 2022"
    passage = Passage("a.txt", "/a.txt", "a#0", 0, len(text), text, 0.5, text)
    c = Citation("a.txt", "/a.txt", "a#0", text, 0, len(text), 5001, 5014)
    a = Answer("q", "December 2022", 0.93, "r", [c], [passage])
    assert str(a) == "December 2022 (93 % chance this is right) - a.txt, chars 5001-5014"
    assert len(repr(a)) < 200 and "passages=1" in repr(a)
    # The first citation, like the CLI names it: document, answer offsets and page.
    on_page = Answer("q", "December 2022", 0.93, "r", [dataclasses.replace(c, page=3)], [passage])
    assert "cited='a.txt chars 5001-5014 (p. 3)'" in repr(on_page) and "x" * 50 not in repr(on_page)
    assert str(on_page) == "December 2022 (93 % chance this is right) - a.txt p. 3, chars 5001-5014"
    # to_dict() names the answer span "answer" (the attribute is .text).
    assert a.to_dict()["answer"] == a.text == "December 2022"
    assert str(Answer("q", None, 0.1, "r", [], [passage], guess=c)) == "I don't know (best guess 'December 2022', 10 % chance)"
    assert str(Answer("q", None, 0.0, "r")) == "I don't know"
    # A calibrated chance is never shown as certain either way.
    assert str(Answer("q", None, 0.0007, "r", [], [passage], guess=c)).endswith("'December 2022', <1 % chance)")
    assert str(dataclasses.replace(a, score=0.998)).startswith("December 2022 (>99 % chance this is right)")


def test_percent_rounds_but_never_claims_certainty() -> None:
    from qa.answer import percent

    assert [percent(s) for s in (0.0, 0.0049, 0.005, 0.5, 0.934, 0.9949, 0.995, 1.0)] == [
        "<1 %", "<1 %", "1 %", "50 %", "93 %", "99 %", ">99 %", ">99 %"
    ]
    assert percent(-0.2) == "<1 %" and percent(1.3) == ">99 %"  # clamped
    # A guess is below the threshold: rounded down, it never reads as reaching it.
    assert [percent(s, guess=True) for s in (0.0049, 0.0051, 0.29, 0.57, 0.7996, 0.8, 0.9949, 0.995)] == [
        "<1 %", "1 %", "29 %", "57 %", "79 %", "80 %", "99 %", ">99 %"
    ]


def test_a_guess_just_below_the_threshold_does_not_read_as_reaching_it() -> None:
    from qa.answer import Answer, Citation
    from qa.tools.cli import format_answer
    from ui.formatting import format_answer_html

    text = "The first flight was in December 2022."
    cite = Citation("t.txt", "upload:t.txt", "t.txt#0", text, 0, len(text), 24, 32)
    answer = Answer("When?", "December", 0.7996, "fake", [cite]).at_threshold(0.8)
    assert not answer.answered and answer.guess_text == "December"
    for shown in (str(answer), format_answer(answer), format_answer_html(answer)):
        assert "79 %" in shown and "80 %" not in shown, shown


def test_concurrent_questions_load_a_new_index_generation_once(tmp_path, monkeypatch) -> None:  # noqa: ANN001
    """Questions arriving while a new generation loads wait for that one load and share it
    (before, each thread loaded the same segments at once, and CPython 3.11's parser could fail
    under that: HTTP 500 in qa bench api while an editor uploaded)."""
    import time
    from concurrent.futures import ThreadPoolExecutor

    from qa import pipeline

    generation = tmp_path / "gen-1"
    calls = []

    class Loaded:
        directory = generation
        tokenizer = pipeline.TOKENIZER_VERSION

    def slow_load(directory):  # noqa: ANN001, ANN202
        calls.append(directory)
        time.sleep(0.3)
        return Loaded()

    (tmp_path / "CURRENT").write_text("gen-1")
    monkeypatch.setattr(pipeline, "_INDEXES", {})
    monkeypatch.setattr(pipeline, "current_generation", lambda directory: generation)
    monkeypatch.setattr(pipeline.VectorIndex, "load", staticmethod(slow_load))
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: pipeline.load_index(tmp_path), range(8)))
    assert len(calls) == 1
    assert all(r is results[0] for r in results)


def test_an_index_of_another_bm25_tokenizer_is_refused_with_the_rebuild_command(tmp_path: Path, fake_encoder) -> None:  # noqa: ANN001
    """Its postings would quietly miss this version's question tokens: refused at load, as PostgreSQL's store does."""
    import json

    from embeddings.stores.index import IndexLoadError, current_generation
    from qa.ingest.documents import Document
    from qa.ingest.indexing import update_index
    from qa.pipeline import load_index

    index = tmp_path / "idx"
    update_index(index, [Document("a.txt", "/docs/a.txt", "Alpha river flows north.", "0" * 64)], encoder=fake_encoder)
    manifest = current_generation(index) / "manifest.json"
    raw = json.loads(manifest.read_text())
    raw["tokenizer"] = "fold-stop-lightstem-1"
    manifest.write_text(json.dumps(raw))
    with pytest.raises(IndexLoadError, match=r"tokenizer 'fold-stop-lightstem-1'.*--rebuild"):
        load_index(index)


@pytest.mark.parametrize(("argument", "message"), [({"reader": 5}, "reader=5 is neither"), ({"retriever": 3.5}, "retriever=3.5 is neither")])
def test_a_reader_or_retriever_of_the_wrong_kind_is_refused_naming_it(docs_dir: Path, fake_encoder, tmp_path: Path, argument: dict, message: str) -> None:  # noqa: ANN001
    from qa.ingest.indexing import index_folder
    from tests.conftest import FakeReader

    index_folder(docs_dir, tmp_path / "idx", encoder=fake_encoder)
    kwargs = {"reader": FakeReader(), "retriever": "bm25", **argument}
    with pytest.raises(ValueError, match=message):
        ask("Where does the alpha river flow?", index=tmp_path / "idx", **kwargs)
