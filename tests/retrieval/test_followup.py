"""Follow-up questions: which questions borrow the previous one for retrieval."""

from __future__ import annotations

from qa.retrieval.followup import needs_context, retrieval_query


def test_pronoun_questions_without_names_need_context() -> None:
    assert needs_context("When did it first fly?")
    assert needs_context("Who runs it now?")
    assert needs_context("Which is its longest tributary?")
    assert not needs_context("When did the Kizilelma first fly?")  # names its subject
    assert not needs_context("Which city will he tour after Ankara?")  # names a place
    assert not needs_context("What happened in 2022?")
    assert not needs_context("Who is Japan's defense minister?")  # no pronoun


def test_retrieval_query_prepends_the_previous_question_only_when_needed() -> None:
    assert retrieval_query("When did it open?", "How long is the Panama Canal?") == "How long is the Panama Canal? When did it open?"
    assert retrieval_query("When did the canal open?", "How long is the Panama Canal?") == "When did the canal open?"
    assert retrieval_query("When did it open?", None) == "When did it open?"
    assert retrieval_query("When did it open?", "   ") == "When did it open?"


def test_the_subject_stays_with_the_question_that_named_it_through_follow_ups() -> None:
    from qa.retrieval.followup import conversation_subject

    first = "When did the Kizilelma make its first flight?"
    assert conversation_subject(first, None) == first
    assert conversation_subject("Who built it?", first) == first  # a follow-up keeps the subject
    assert conversation_subject("When did it first fly?", conversation_subject("Who built it?", first)) == first
    assert conversation_subject("How long is the Panama Canal?", first) == "How long is the Panama Canal?"  # a new subject
    assert conversation_subject("Who built it?", None) == "Who built it?"
