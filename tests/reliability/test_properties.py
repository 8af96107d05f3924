"""Property-based tests: chunk offsets over arbitrary Unicode, and ``ask()`` over arbitrary text."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qa.ingest.chunking import chunk_text, split_sentences
from tests.reliability.helpers import record_figure

# Arbitrary Unicode (no surrogates: they cannot come out of a UTF-8 file) with the awkward
# characters over-represented: CRLF, tabs, NBSP and other spaces, zero-width and BOM,
# sentence punctuation, quotes, combining marks, emoji and other scripts.
AWKWARD = list("\r\n\t .!?…\"'”’)([") + ["\r\n", "\u00a0", "\u2003", "\u3000", "\u200b", "\u200d", "\ufeff", "\u2028", "\u0301", "😀", "Kızıl", "Ω.", "U.S.", "Gen.", "ﬁ", "İ"]
TEXT = st.lists(
    st.one_of(st.text(st.characters(blacklist_categories=("Cs",)), max_size=12), st.sampled_from(AWKWARD)),
    max_size=80,
).map("".join)

EXAMPLES: dict[str, int] = {"chunking": 0, "ask": 0}


def non_space_tokens(text: str) -> int:
    """A counter that is exactly additive over pieces split at whitespace: non-space characters."""
    return sum(1 for c in text if not c.isspace())


@settings(max_examples=300, deadline=None)
@given(TEXT, st.integers(1, 40), st.integers(0, 3), st.sampled_from(["words", "chars"]))
def test_chunk_offsets_over_arbitrary_unicode(text, budget, overlap, counter_name):
    EXAMPLES["chunking"] += 1
    count = (lambda t: len(t.split())) if counter_name == "words" else non_space_tokens
    chunks = chunk_text("d", text, count, budget, overlap)
    for n, c in enumerate(chunks):
        assert text[c.start : c.end] == c.text  # exact offsets
        assert c.chunk_id == f"d#{n}"
        assert c.text and not c.text[0].isspace() and not c.text[-1].isspace()
        assert count(c.text) <= budget or counter_name == "words"  # word counts may merge cut pieces
    starts = [c.start for c in chunks]
    assert starts == sorted(starts) and len(set(starts)) == len(starts)  # always moves forward
    # Nothing but whitespace is ever dropped.
    covered = [False] * len(text)
    for c in chunks:
        covered[c.start : c.end] = [True] * (c.end - c.start)
    assert all(covered[i] or text[i].isspace() for i in range(len(text)))
    if not text.strip():
        assert chunks == []
    for s, e in split_sentences(text):
        assert 0 <= s < e <= len(text) and not text[s].isspace() and not text[e - 1].isspace()


@pytest.fixture(scope="module")
def warm_ask(real_seeds_index):
    from qa.pipeline import ask
    from qa.reader import get_reader

    reader = get_reader()
    ask("Who is Turkey's defense minister?", index=real_seeds_index, reader=reader)  # load models once
    return lambda q: ask(q, index=real_seeds_index, reader=reader)


@pytest.mark.reader
@pytest.mark.slow
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(
    st.one_of(
        st.text(max_size=200),
        st.text(st.characters(blacklist_categories=("Cs",)), max_size=60).map(lambda s: "Who is " + s + "?"),
        st.lists(st.sampled_from(["Turkey", "minister", "Kizilelma", "🙂", "\u200b", "\x00", "?", " ", "İ", "drone", "\r\n"]), max_size=30).map("".join),
    )
)
def test_ask_raises_only_value_error_on_arbitrary_text(warm_ask, question):
    EXAMPLES["ask"] += 1
    try:
        answer = warm_ask(question)
    except ValueError:
        return
    assert answer.question == question and 0.0 <= answer.score <= 1.0
    if answer.text is not None:
        c = answer.citations[0]
        assert c.passage[c.answer_start - c.passage_start : c.answer_end - c.passage_start] == answer.text


def test_zz_record_example_counts():
    """Runs last in this module: records how many examples each property saw."""
    record_figure("hypothesis_examples", dict(EXAMPLES))
    print("\nhypothesis examples:", EXAMPLES)
