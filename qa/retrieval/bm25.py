"""BM25 keyword scoring: the tokenizer every store shares, and an in-memory BM25 (bm25s).

The directory index does not store a bm25s matrix: each of its segments stores term
frequencies (postings, see :mod:`embeddings.stores.segment`) of :func:`tokenize`'s tokens, and
:meth:`embeddings.stores.index.VectorIndex.bm25_search` scores them at query time with bm25s'
formula (method "lucene", k1=1.5, b=0.75) over the live chunks of all segments. So adding a
document never rebuilds BM25 for the others. :class:`BM25Index` is the in-memory bm25s
version: the reference those scores are tested against, and what the reader's training
uses to mine passages. :data:`TOKENIZER_VERSION` is stored in each index's manifest.

Tokenisation (documents and questions alike): accents folded and lower-cased
(:func:`fold`), words of letters/digits, English stopwords removed (bm25s'
list), a light suffix stemmer (plural -s/-es/-ies, -ing, -ed, final -e), and hyphenated codes
kept whole as well ("XJ-4471B" -> ``xj``, ``4471b`` and ``xj4471b``), so part numbers
and model names match exactly.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from typing import Any

import numpy as np

# Letters that Unicode does not decompose into a base letter + accent.
_FOLD = str.maketrans({"ı": "i", "İ": "I", "ø": "o", "Ø": "O", "ł": "l", "Ł": "L", "đ": "d", "Đ": "D", "ß": "ss", "æ": "ae", "œ": "oe"})


def fold(text: str) -> str:
    """Lower-case ASCII-ish form for matching: "Kızılelma" and "Kizilelma" fold alike."""
    text = unicodedata.normalize("NFKD", text.translate(_FOLD))
    return "".join(c for c in text if not unicodedata.combining(c)).lower().replace("’", "'")


logger = logging.getLogger(__name__)

#: Bumped whenever tokenisation changes: an index tokenised otherwise is re-indexed (qa.ingest.indexing).
TOKENIZER_VERSION = "fold-stop-lightstem-2"

_WORD = re.compile(r"[a-z0-9]+(?:[-_./][a-z0-9]+)*")
#: English stopwords: bm25s's ``STOPWORDS_EN`` (MIT licence), copied so that tokenising a
#: question does not import bm25s and SciPy (1-3 s of a cold start); a test keeps them equal.
STOPWORDS: frozenset[str] = frozenset(
    "a an and are as at be but by for if in into is it no not of on or such that the their then there "
    "these they this to was will with".split()
)


def _bm25s() -> Any:
    """Import bm25s (lazily: ~1 s with SciPy; only :class:`BM25Index` needs it) and quieten its
    logger, which it sets to DEBUG."""
    import bm25s

    logging.getLogger("bm25s").setLevel(logging.WARNING)
    return bm25s


def stem(word: str) -> str:
    """A light English suffix stemmer (plurals, -ing, -ed, final -e); deterministic, no dependency.

    "score", "scores", "scored" and "scoring" all become "scor".
    """
    if len(word) <= 3 or not word.isalpha():
        return word
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith("sses"):
        word = word[:-2]
    elif word.endswith("es") and word[-3] in "sxz" or word.endswith(("ches", "shes")):
        word = word[:-2]
    elif word.endswith("s") and not word.endswith(("ss", "us", "is")):
        word = word[:-1]
    elif word.endswith("eed"):
        return word
    else:
        for suffix in ("ing", "ed"):
            if word.endswith(suffix) and len(word) - len(suffix) >= 3:
                base = word[: -len(suffix)]
                if not any(v in base for v in "aeiouy"):
                    break
                if len(base) > 3 and base[-1] == base[-2] and base[-1] not in "lsz":
                    base = base[:-1]  # "stopped" -> "stop"
                word = base
                break
    if len(word) > 3 and word.endswith("e") and not word.endswith("ee"):
        word = word[:-1]
    return word


def tokenize(text: str) -> list[str]:
    """BM25 tokens of ``text`` (see the module docstring)."""
    stop = STOPWORDS
    tokens: list[str] = []
    for match in _WORD.findall(fold(text)):
        parts = re.split(r"[-_./]", match)
        if len(parts) > 1:
            tokens.append("".join(parts))
        for part in parts:
            if part in stop or (len(part) < 2 and not part.isdigit()):
                continue
            tokens.append(stem(part))
    return tokens


class BM25Index:
    """BM25 over a list of texts, in memory (bm25s); rows are positions in that list."""

    def __init__(self, model: Any, num_chunks: int) -> None:
        self.model = model
        self.num_chunks = num_chunks

    @classmethod
    def build(cls, texts: list[str]) -> BM25Index:
        """Index ``texts``."""
        model = _bm25s().BM25()
        if texts:
            # An empty token keeps bm25s happy for chunks made only of stopwords.
            model.index([tokenize(t) or [""] for t in texts], show_progress=False)
        return cls(model, len(texts))

    def scores(self, question: str) -> np.ndarray:
        """BM25 score of every chunk for ``question`` (0 where no query term occurs)."""
        if not self.num_chunks:
            return np.zeros(0, dtype=np.float32)
        tokens = [t for t in tokenize(question) if t in self.model.vocab_dict]
        if not tokens:
            return np.zeros(self.num_chunks, dtype=np.float32)
        return np.asarray(self.model.get_scores(tokens), dtype=np.float32)

    def top(self, question: str, k: int) -> list[tuple[int, float]]:
        """The ``k`` best ``(row, score)`` pairs with a positive score, best first (ties: lower row)."""
        scores = self.scores(question)
        order = np.argsort(-scores, kind="stable")[:k]
        return [(int(r), float(scores[r])) for r in order if scores[r] > 0]
