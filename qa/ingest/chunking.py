"""Chunking: split a document into sentence-aware, token-budgeted, overlapping windows.

Everything here is pure (no models, no I/O): the token counter is passed in, so tests
can use a trivial one and indexing uses the embedding model's own tokenizer. Every
chunk satisfies ``text[chunk.start:chunk.end] == chunk.text`` exactly.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

TokenCounter = Callable[[str], int]


@dataclass(frozen=True)
class Chunk:
    """A passage of a document with its exact character span."""

    doc_id: str
    chunk_id: str
    start: int
    end: int
    text: str


# Words after which a period does not end a sentence (titles, initials, common Latin).
_ABBREVIATIONS = frozenset(
    "mr mrs ms dr prof gen col lt sgt capt maj adm gov sen rep st jr sr inc ltd co corp vs etc "
    "e.g i.e a.m p.m u.s u.k no fig al approx dept est jan feb mar apr jun jul aug sep sept oct nov dec".split()
)
# Sentence end: terminal punctuation, optional closing quotes/brackets, then whitespace.
_BOUNDARY = re.compile(r"[.!?…]+[\"'”’)\]]*(?=\s)")
_LINE_BREAK = re.compile(r"\n\s*")
_WORD = re.compile(r"\S+")


def _is_abbreviation(text: str, dot: int) -> bool:
    """True when the period at ``text[dot]`` closes an abbreviation or an initial."""
    if text[dot] != ".":
        return False
    start = dot
    while start > 0 and not text[start - 1].isspace():
        start -= 1
    word = text[start:dot].lstrip("(\"'“‘").lower()
    return word in _ABBREVIATIONS or (len(word) == 1 and word.isalpha())


def split_sentences(text: str) -> list[tuple[int, int]]:
    """Return ``(start, end)`` spans of the sentences of ``text``, whitespace trimmed.

    Line breaks always end a sentence (headings, list items, paragraphs); ``.!?`` end one
    when followed by whitespace and an uppercase letter, digit or quote, unless the
    period closes an abbreviation such as "Gen." or "U.S.".
    """
    cuts: set[int] = set()
    for match in _LINE_BREAK.finditer(text):
        cuts.add(match.start())
    for match in _BOUNDARY.finditer(text):
        end = match.end()
        nxt = end
        while nxt < len(text) and text[nxt].isspace():
            nxt += 1
        if nxt < len(text) and not (text[nxt].isupper() or text[nxt].isdigit() or text[nxt] in "\"'“‘(["):
            continue
        if _is_abbreviation(text, match.start()):
            continue
        cuts.add(end)
    spans: list[tuple[int, int]] = []
    start = 0
    for cut in sorted(cuts) + [len(text)]:
        seg_start, seg_end = start, cut
        while seg_start < seg_end and text[seg_start].isspace():
            seg_start += 1
        while seg_end > seg_start and text[seg_end - 1].isspace():
            seg_end -= 1
        if seg_end > seg_start:
            spans.append((seg_start, seg_end))
        start = cut
    return spans


def _split_long(text: str, start: int, end: int, count_tokens: TokenCounter, max_tokens: int) -> list[tuple[int, int]]:
    """Split one over-long sentence into pieces of at most ``max_tokens`` tokens, at word breaks."""
    pieces: list[tuple[int, int]] = []
    piece_start: int | None = None
    piece_end = start
    used = 0
    for match in _WORD.finditer(text, start, end):
        w_start, w_end = match.span()
        w_tokens = count_tokens(text[w_start:w_end])
        if w_tokens > max_tokens:
            # One "word" over budget (a URL, a base64 blob): cut it by characters. A
            # character is at most 4 tokens for any subword tokenizer we support.
            if piece_start is not None:
                pieces.append((piece_start, piece_end))
                piece_start, used = None, 0
            step = max(1, max_tokens // 4)
            pieces.extend((i, min(i + step, w_end)) for i in range(w_start, w_end, step))
            continue
        if piece_start is not None and used + w_tokens > max_tokens:
            pieces.append((piece_start, piece_end))
            piece_start, used = None, 0
        if piece_start is None:
            piece_start = w_start
        piece_end = w_end
        used += w_tokens
    if piece_start is not None:
        pieces.append((piece_start, piece_end))
    return pieces


def chunk_text(
    doc_id: str,
    text: str,
    count_tokens: TokenCounter,
    max_tokens: int,
    overlap_sentences: int = 1,
) -> list[Chunk]:
    """Split ``text`` into chunks of whole sentences totalling at most ``max_tokens`` tokens.

    Neighbouring chunks share ``overlap_sentences`` sentences. A sentence longer than the
    budget is split at word boundaries into pieces that each fit. An empty or
    whitespace-only text gives no chunks.

    Raises:
        ValueError: ``max_tokens`` < 1 or ``overlap_sentences`` < 0.
    """
    if max_tokens < 1:
        raise ValueError(f"max_tokens={max_tokens} must be at least 1")
    if overlap_sentences < 0:
        raise ValueError(f"overlap_sentences={overlap_sentences} must be 0 or more")
    units: list[tuple[int, int, int]] = []  # (start, end, tokens)
    for s_start, s_end in split_sentences(text):
        tokens = count_tokens(text[s_start:s_end])
        if tokens <= max_tokens:
            units.append((s_start, s_end, tokens))
        else:
            for p_start, p_end in _split_long(text, s_start, s_end, count_tokens, max_tokens):
                units.append((p_start, p_end, count_tokens(text[p_start:p_end])))
    chunks: list[Chunk] = []
    first = 0
    while first < len(units):
        last, used = first, units[first][2]
        while last + 1 < len(units) and used + units[last + 1][2] <= max_tokens:
            last += 1
            used += units[last][2]
        start, end = units[first][0], units[last][1]
        chunks.append(Chunk(doc_id, f"{doc_id}#{len(chunks)}", start, end, text[start:end]))
        if last + 1 >= len(units):
            break
        # Step back to share sentences with the next chunk, but always move forward.
        first = max(first + 1, last + 1 - overlap_sentences)
    return chunks
