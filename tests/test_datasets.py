"""The labelled question sets in notebooks/data: every accepted answer is an exact span of
the document it names, so exact-match scores mean what they say."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from qa.config import PROJECT_ROOT

DATA = PROJECT_ROOT / "notebooks" / "data"
TYPES = {"who", "what", "when", "where", "which", "how_many", "why", "yes_no", "unanswerable"}
# The five domains written for the old feature-based reader's fitting (kept as evaluation data).
DOMAIN_SETS = [(d / "questions.jsonl", d / "docs") for d in sorted((DATA / "train").iterdir()) if d.is_dir()]
# (questions file, documents folder) for every labelled set.
SETS = sorted(
    set(DOMAIN_SETS)
    | {(DATA / "seeds_dev.jsonl", PROJECT_ROOT / "seeds"), (DATA / "heldout.jsonl", DATA / "heldout_docs")}
    | {(DATA / "multidoc.jsonl", DATA / "multidoc_docs")}
)


@pytest.mark.parametrize(("questions", "docs"), SETS, ids=[str(q.relative_to(DATA)) for q, _ in SETS])
def test_answers_are_exact_spans_of_their_documents(questions: Path, docs: Path) -> None:
    texts = {p.name: p.read_text(encoding="utf-8") for p in docs.glob("*.txt")}
    rows = [json.loads(line) for line in questions.read_text(encoding="utf-8").splitlines() if line.strip()]
    assert rows and texts
    for row in rows:
        assert row["question"].strip().endswith("?"), row
        assert row.get("type", "unanswerable" if not row["answers"] else "what") in TYPES, row
        assert (row.get("type") == "unanswerable") == (row["answers"] == []) or "type" not in row, row
        if row["answers"] and "doc" in row:
            assert row["doc"] in texts, f"{row['doc']} is not in {docs}"
            for answer in row["answers"]:
                assert answer in texts[row["doc"]], f"{answer!r} is not a span of {row['doc']}"
        elif row["answers"]:  # no document named: the answer must be a span of one of them
            assert all(any(a in t for t in texts.values()) for a in row["answers"]), row


def test_domain_sets_cover_every_question_kind() -> None:
    kinds: dict[str, int] = {}
    for questions, _ in DOMAIN_SETS:
        for line in questions.read_text(encoding="utf-8").splitlines():
            if line.strip():
                kind = json.loads(line).get("type", "?")
                kinds[kind] = kinds.get(kind, 0) + 1
    assert set(kinds) >= TYPES and min(kinds[t] for t in TYPES) >= 10, kinds
