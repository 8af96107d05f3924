"""Span decoding shared by the reader and its evaluation: SQuAD2-style best span vs null.

The reader turns start/end logits of every window of every passage into one span and a
confidence; :mod:`qa.reader.squad_eval` uses the same functions, so thresholds measured on
SQuAD hold in ``ask()``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from qa.answer import Answer, Citation, Passage


def make_citation(passage: Passage, start: int, end: int) -> Citation:
    """The citation of characters ``start:end`` of ``passage`` (offsets made document-wide)."""
    return Citation(
        doc_id=passage.doc_id,
        source=passage.source,
        chunk_id=passage.chunk_id,
        passage=passage.text,
        passage_start=passage.start,
        passage_end=passage.end,
        answer_start=passage.start + start,
        answer_end=passage.start + end,
        page=passage.page_of(passage.start + start),
    )


def make_answer(
    question: str,
    span: tuple[Passage, int, int] | None,
    score: float,
    reader: str,
    passages: list[Passage],
    *,
    guess: tuple[Passage, int, int] | None = None,
) -> Answer:
    """Build an :class:`Answer`; ``span`` is ``(passage, start, end)`` in passage characters,
    or ``None`` to abstain (optionally with the best span below the threshold as ``guess``)."""
    score = float(min(max(score, 0.0), 1.0))
    if span is None:
        guessed = make_citation(*guess) if guess is not None and guess[1] < guess[2] else None
        return Answer(question=question, text=None, score=score, reader=reader, citations=[], passages=list(passages), guess=guessed)
    passage, start, end = span
    return Answer(question, passage.text[start:end], score, reader, [make_citation(passage, start, end)], list(passages))


# --------------------------------------------------------------------------- input text

#: Letters that Unicode does not decompose, so the uncased tokenizer's accent stripping keeps
#: them apart from the plain letter a user types: "Kızılelma" (dotless ı) would never match
#: "Kizilelma". Each maps to one character, so offsets into the folded text are offsets into
#: the original and answers stay exact spans of the document.
_FOLD = str.maketrans("ıłŁøØđĐħĦŧŦ", "ilLoOdDhHtT")


def fold_letters(text: str) -> str:
    """``text`` with undecomposable letters replaced by their plain Latin letter (same length).

    Applied to questions and passages before the reader's tokenizer (and when training and
    evaluating it), so a question typed without the special letter reads as the document's.
    """
    return text.translate(_FOLD)


# --------------------------------------------------------------------------- span decoding


@dataclass(frozen=True)
class SpanScore:
    """A decoded span: its window, token range and logit score (start + end)."""

    window: int
    start_token: int
    end_token: int
    logit: float


def best_spans(
    start_logits: np.ndarray,
    end_logits: np.ndarray,
    context_mask: np.ndarray,
    *,
    max_answer_tokens: int,
    top_n: int = 1,
) -> list[tuple[int, int, float]]:
    """Best ``(start, end, start_logit + end_logit)`` spans of one window.

    Only context tokens may start or end a span, ``start <= end < start + max_answer_tokens``.
    """
    idx = np.flatnonzero(context_mask)
    if idx.size == 0:
        return []
    s = start_logits[idx][:, None] + end_logits[idx][None, :]
    offsets = idx[None, :] - idx[:, None]
    s = np.where((offsets >= 0) & (offsets < max_answer_tokens), s, -np.inf)
    flat = np.argsort(s, axis=None)[::-1][:top_n]
    out = []
    for f in flat:
        i, j = np.unravel_index(f, s.shape)
        if np.isfinite(s[i, j]):
            out.append((int(idx[i]), int(idx[j]), float(s[i, j])))
    return out


def decode_candidates(
    start_logits: np.ndarray,
    end_logits: np.ndarray,
    context_masks: np.ndarray,
    *,
    max_answer_tokens: int = 30,
    per_window: int = 5,
) -> tuple[list[SpanScore], float]:
    """SQuAD2 decoding over all windows of all passages of one question, keeping runners-up.

    Returns the ``per_window`` best non-null spans of every window, best first, and the null
    score (the minimum over windows of the ``[CLS]`` start+end logits, as in the SQuAD2
    reference). The first span against the null score decides whether to answer; the
    others feed the confidence calibrator (:mod:`qa.reader.calibration`).
    """
    spans: list[SpanScore] = []
    null = float("inf")
    for w in range(len(start_logits)):
        null = min(null, float(start_logits[w][0] + end_logits[w][0]))
        for i, j, logit in best_spans(start_logits[w], end_logits[w], context_masks[w], max_answer_tokens=max_answer_tokens, top_n=per_window):
            spans.append(SpanScore(w, i, j, logit))
    # Stable sort: equal logits keep window order (the earlier window wins, as before).
    spans.sort(key=lambda s: -s.logit)
    return spans, null


def decode(
    start_logits: np.ndarray,
    end_logits: np.ndarray,
    context_masks: np.ndarray,
    *,
    max_answer_tokens: int = 30,
) -> tuple[SpanScore | None, float]:
    """The best non-null span over all windows (``None`` if none) and the null score; see
    :func:`decode_candidates`."""
    spans, null = decode_candidates(start_logits, end_logits, context_masks, max_answer_tokens=max_answer_tokens, per_window=1)
    return (spans[0] if spans else None), null


def trim_span(text: str, start: int, end: int) -> tuple[int, int]:
    """``(start, end)`` without surrounding whitespace (byte-level BPE offsets can include a space)."""
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def span_confidence(best_logit: float, null_logit: float) -> float:
    """P(answer) under a two-way softmax of best span vs no answer; comparable across questions."""
    return float(1.0 / (1.0 + np.exp(-(best_logit - null_logit))))
