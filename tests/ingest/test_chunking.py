"""Chunking: exact offsets, sentence awareness, overlap, long sentences, unicode."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from qa.ingest.chunking import chunk_text, split_sentences
from tests.conftest import SEED_DOC


def words(text: str) -> int:
    return len(text.split())


def test_golden_chunks_with_overlap() -> None:
    text = "One two three. Four five six. Seven eight nine. Ten eleven twelve."
    chunks = chunk_text("d.txt", text, words, max_tokens=6, overlap_sentences=1)
    assert [(c.start, c.end, c.text) for c in chunks] == [
        (0, 29, "One two three. Four five six."),
        (15, 47, "Four five six. Seven eight nine."),
        (30, 66, "Seven eight nine. Ten eleven twelve."),
    ]
    assert [c.chunk_id for c in chunks] == ["d.txt#0", "d.txt#1", "d.txt#2"]
    assert all(c.doc_id == "d.txt" for c in chunks)


def test_no_overlap_partitions_sentences() -> None:
    text = "A b. C d. E f. G h."
    chunks = chunk_text("d", text, words, max_tokens=4, overlap_sentences=0)
    assert [c.text for c in chunks] == ["A b. C d.", "E f. G h."]


def test_abbreviations_and_initials_do_not_split() -> None:
    text = "Gen. Nakatani met Mr. Guler in the U.S. embassy. J. K. Rowling was not there."
    spans = [text[s:e] for s, e in split_sentences(text)]
    assert spans == ["Gen. Nakatani met Mr. Guler in the U.S. embassy.", "J. K. Rowling was not there."]


def test_line_breaks_end_sentences_and_whitespace_is_trimmed() -> None:
    text = "  # Title\n\n- first item\nSecond line here.  "
    assert [text[s:e] for s, e in split_sentences(text)] == ["# Title", "- first item", "Second line here."]


def test_unicode_offsets_are_exact_on_seed_article() -> None:
    text = SEED_DOC.read_text(encoding="utf-8")
    chunks = chunk_text("seed", text, words, max_tokens=60, overlap_sentences=1)
    assert len(chunks) > 3
    for c in chunks:
        assert text[c.start : c.end] == c.text
    joined = [c for c in chunks if "Kızılelma" in c.text]
    assert joined and "Kızılelma" in text[joined[0].start : joined[0].end]
    assert any("Turkey’s" in c.text for c in chunks)


def test_every_sentence_appears_whole_in_some_chunk() -> None:
    text = SEED_DOC.read_text(encoding="utf-8")
    chunks = chunk_text("seed", text, words, max_tokens=50, overlap_sentences=1)
    for s, e in split_sentences(text):
        assert any(c.start <= s and e <= c.end for c in chunks), text[s:e]


def test_long_sentence_is_split_not_dropped() -> None:
    long_sentence = " ".join(f"w{i}" for i in range(230)) + "."
    text = f"Short one. {long_sentence} Short two."
    chunks = chunk_text("d", text, words, max_tokens=50, overlap_sentences=1)
    assert all(words(c.text) <= 50 for c in chunks)
    covered = " ".join(c.text for c in chunks)
    for i in range(230):
        assert f"w{i}" in covered
    for c in chunks:
        assert text[c.start : c.end] == c.text


def test_single_huge_word_is_cut_by_characters() -> None:
    blob = "x" * 1000
    chunks = chunk_text("d", blob, lambda t: len(t), max_tokens=40, overlap_sentences=0)
    assert "".join(c.text for c in chunks) == blob
    assert all(len(c.text) <= 40 for c in chunks)


def test_empty_and_whitespace_documents_have_no_chunks() -> None:
    assert chunk_text("d", "", words, max_tokens=10) == []
    assert chunk_text("d", " \n\t ", words, max_tokens=10) == []


def test_bad_parameters_are_refused() -> None:
    import pytest

    with pytest.raises(ValueError, match="max_tokens"):
        chunk_text("d", "text", words, max_tokens=0)
    with pytest.raises(ValueError, match="overlap"):
        chunk_text("d", "text", words, max_tokens=5, overlap_sentences=-1)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.sampled_from(list("ab .!?\n’ıé—\"") + ["Kızıl", "U.S.", "Gen.", "A", ". "]), max_size=120).map("".join),
    st.integers(1, 12),
    st.integers(0, 2),
)
def test_offsets_property(text: str, budget: int, overlap: int) -> None:
    chunks = chunk_text("d", text, words, max_tokens=budget, overlap_sentences=overlap)
    for c in chunks:
        assert text[c.start : c.end] == c.text
        assert c.text == c.text.strip() and c.text
    # Every non-space character of the document is inside some chunk.
    covered = set()
    for c in chunks:
        covered.update(range(c.start, c.end))
    assert all(i in covered for i, ch in enumerate(text) if not ch.isspace())
