"""The result types that travel unchanged from the reader to the CLI, notebook and UI."""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace


def percent(score: float, *, guess: bool = False) -> str:
    """A chance as people read it: ``"93 %"``; ``"<1 %"`` and ``">99 %"`` at the ends.

    A calibrated probability is never certain either way, so 0.0007 is not shown as "0 %"
    nor 0.998 as "100 %". Values outside 0-1 are clamped. A ``guess`` (a span below the
    threshold) is rounded down: 0.7996 under a threshold of 0.8 reads "79 %", not an "80 %"
    that would seem to reach it.
    """
    s = min(max(float(score), 0.0), 1.0)
    if s < 0.005:
        return "<1 %"
    if s >= 0.995:
        return ">99 %"
    # round() halves to even (0.005 -> 0); the floor allows for binary fractions (0.29 * 100 is 28.999...).
    value = math.floor(s * 100 + 1e-9) if guess else round(s * 100)
    return f"{min(max(value, 1), 99)} %"


def page_at(pages: Sequence[int] | None, offset: int) -> int | None:
    """1-based page holding character ``offset``, given each page's start offset; ``None`` without pages."""
    if not pages:
        return None
    return max(bisect_right(pages, offset), 1)


@dataclass(frozen=True)
class Passage:
    """A retrieved chunk: where it is in its document, its text and its retrieval score."""

    doc_id: str
    source: str
    chunk_id: str
    start: int
    end: int
    text: str
    score: float
    #: Full text of the document, so readers can map offsets and UIs can show context.
    document_text: str = field(repr=False, compare=False, default="")
    #: Start offset of each page in ``document_text`` (PDFs); empty for other documents.
    pages: tuple[int, ...] = field(repr=False, compare=False, default=())
    #: The scores behind the ranking, by name: ``dense`` (cosine), ``bm25``, and for hybrid
    #: retrieval ``rrf`` (the fused score, which is also ``score``).
    components: dict[str, float] = field(repr=False, compare=False, default_factory=dict)

    @property
    def page(self) -> int | None:
        """1-based page where the passage starts (PDFs), else ``None``."""
        return page_at(self.pages, self.start)

    def page_of(self, offset: int) -> int | None:
        """1-based page of document character ``offset`` (PDFs), else ``None``."""
        return page_at(self.pages, offset)


@dataclass(frozen=True)
class Citation:
    """Where an answer comes from, down to the character.

    ``document_text[answer_start:answer_end] == answer.text`` and
    ``document_text[passage_start:passage_end] == passage``. ``page`` is the 1-based PDF
    page where the answer starts (``None`` for documents without pages).
    """

    doc_id: str
    source: str
    chunk_id: str
    passage: str
    passage_start: int
    passage_end: int
    answer_start: int
    answer_end: int
    page: int | None = None

    def split_passage(self) -> tuple[str, str, str]:
        """``(before, answer, after)``: the cited passage cut at the answer's offsets
        (clamped to the passage), for display with the answer highlighted."""
        lo = max(self.answer_start - self.passage_start, 0)
        hi = min(max(self.answer_end - self.passage_start, lo), len(self.passage))
        return self.passage[:lo], self.passage[lo:hi], self.passage[hi:]


@dataclass(frozen=True)
class Answer:
    """A question's answer; ``text is None`` means the bot does not know.

    ``text`` is the answer span, copied from a document; :meth:`to_dict` (the JSON of
    ``qa ask --json`` and the HTTP API) names it ``"answer"``. ``str(answer)`` and
    ``repr(answer)`` are one short line each (the passages, kilobytes of text, are in
    :attr:`passages`, not printed)::

        >>> print(answer)                                           # doctest: +SKIP
        December 2022 (93 % chance this is right) - turkey.txt, chars 2117-2130
    """

    question: str
    #: The answer span (``None``: "I don't know"); ``"answer"`` in :meth:`to_dict`.
    text: str | None
    #: The reader's calibrated chance that ``text`` (or, when abstaining, the guess) is right, 0-1.
    score: float
    reader: str
    citations: list[Citation] = field(default_factory=list)
    passages: list[Passage] = field(default_factory=list)
    #: When the reader abstains: its best span anyway, below the threshold. A guess is
    #: never the answer (``text`` stays ``None``); interfaces show it marked as a guess.
    guess: Citation | None = None

    @property
    def answered(self) -> bool:
        """True unless the reader abstained."""
        return self.text is not None

    def __str__(self) -> str:
        """One line: the answer, the chance it is right and where it is (or "I don't know")."""
        if self.text is None:
            return "I don't know" + (f" (best guess {self.guess_text!r}, {percent(self.score, guess=True)} chance)" if self.guess else "")
        where = ""
        if self.citations:
            c = self.citations[0]
            where = f" - {c.doc_id}" + (f" p. {c.page}" if c.page is not None else "") + f", chars {c.answer_start}-{c.answer_end}"
        return f"{self.text} ({percent(self.score)} chance this is right){where}"

    def __repr__(self) -> str:
        """``Answer(text=..., score=..., reader=..., cited='doc.md chars 120-135 (p. 3)', citations=N, passages=N)``:
        short, whatever the passages hold (they are in :attr:`passages`, not in the repr)."""
        cited = ""
        if self.citations:
            c = self.citations[0]
            where = f"{c.doc_id} chars {c.answer_start}-{c.answer_end}" + (f" (p. {c.page})" if c.page is not None else "")
            cited = f", cited={where!r}"
        return (
            f"Answer(text={self.text!r}, score={self.score:.3f}, reader={self.reader!r}{cited}, "
            f"citations={len(self.citations)}, passages={len(self.passages)})"
        )

    def at_threshold(self, threshold: float) -> Answer:
        """The same reading decided at another threshold: an answer whose chance is below
        ``threshold`` becomes "I don't know" with its span as the guess, and a guess whose
        chance reaches it becomes the answer. The score, span and passages are unchanged."""
        if self.text is not None and self.score < threshold and self.citations:
            return replace(self, text=None, citations=[], guess=self.citations[0])
        if self.text is None and self.guess is not None and self.score >= threshold:
            return replace(self, text=self.guess_text, citations=[self.guess], guess=None)
        return self

    @property
    def guess_text(self) -> str | None:
        """The guessed span's text (``None`` without a guess)."""
        return None if self.guess is None else self.guess.split_passage()[1]

    def to_dict(self) -> dict:
        """JSON-ready form (the ``--json`` output of ``qa ask``).

        Keys: ``"question"``, ``"answer"`` (:attr:`text`: the span, or ``None`` for "I don't
        know"), ``"score"``, ``"reader"``, ``"citations"`` (each :class:`Citation`'s fields),
        ``"guess"`` (``None``, or the guessed span's ``"text"`` with its citation's fields) and
        ``"passages"`` (rank order: ``rank``, ``doc_id``, ``chunk_id``, ``score``, ``components``,
        ``start``, ``end``; no text)."""
        return {
            "question": self.question,
            "answer": self.text,
            "score": round(float(self.score), 4),
            "reader": self.reader,
            "citations": [asdict(c) for c in self.citations],
            "guess": None if self.guess is None else {"text": self.guess_text, **asdict(self.guess)},
            # In rank order: "score" is what the retriever ranked by, "components" what it fused.
            "passages": [
                {
                    "rank": n,
                    "doc_id": p.doc_id,
                    "chunk_id": p.chunk_id,
                    "score": round(float(p.score), 6),
                    "components": {k: round(float(v), 6) for k, v in p.components.items()},
                    "start": p.start,
                    "end": p.end,
                }
                for n, p in enumerate(self.passages, 1)
            ],
        }
