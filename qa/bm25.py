"""BM25 keyword index over an index's chunks, stored in the same index generation.

Built with `bm25s <https://github.com/xhluca/bm25s>`_ (sparse matrices in NumPy/SciPy;
saved as ``.npy`` arrays plus JSON, never pickle). Layout inside a generation::

    gen-<stamp>/bm25/
      meta.json                 tokenizer version, number of chunks, hash of the chunk ids
      params.index.json         bm25s parameters (k1, b, method ...)
      vocab.index.json          token -> column
      data|indices|indptr.csc.index.npy   the precomputed BM25 score matrix (CSC)

BM25 over all chunks is rebuilt from the stored chunk texts at every index save: it
takes milliseconds to seconds even for thousands of chunks, and no embedding is
recomputed, so "incremental" indexing stays incremental where it costs. An index
written before BM25 existed (no ``bm25/`` folder, or one that does not match the
chunks) gets its BM25 built in memory on first use, with a log line; the next index
update stores it.

Tokenisation (documents and questions alike): accents folded and lower-cased
(:func:`fold`), words of letters/digits, English stopwords removed (bm25s'
list), a light suffix stemmer (plural -s/-es/-ies, -ing, -ed, final -e), and hyphenated codes
kept whole as well ("XJ-4471B" -> ``xj``, ``4471b`` and ``xj4471b``), so part numbers
and model names match exactly.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import tempfile
import threading
import unicodedata
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

# Letters that Unicode does not decompose into a base letter + accent.
_FOLD = str.maketrans({"ı": "i", "İ": "I", "ø": "o", "Ø": "O", "ł": "l", "Ł": "L", "đ": "d", "Đ": "D", "ß": "ss", "æ": "ae", "œ": "oe"})


def fold(text: str) -> str:
    """Lower-case ASCII-ish form for matching: "Kızılelma" and "Kizilelma" fold alike."""
    text = unicodedata.normalize("NFKD", text.translate(_FOLD))
    return "".join(c for c in text if not unicodedata.combining(c)).lower().replace("’", "'")


if TYPE_CHECKING:
    from embeddings.index import VectorIndex

logger = logging.getLogger(__name__)

#: Bumped whenever tokenisation changes: stored BM25 data of another version is rebuilt.
TOKENIZER_VERSION = "fold-stop-lightstem-2"
SUBDIR = "bm25"
_META = "meta.json"

_WORD = re.compile(r"[a-z0-9]+(?:[-_./][a-z0-9]+)*")
_STOPWORDS: frozenset[str] | None = None


def _bm25s() -> Any:
    """Import bm25s (lazily: ~0.3-0.8 s) and quieten its logger, which it sets to DEBUG."""
    import bm25s

    logging.getLogger("bm25s").setLevel(logging.WARNING)
    return bm25s


def _stopwords() -> frozenset[str]:
    global _STOPWORDS
    if _STOPWORDS is None:
        _bm25s()
        from bm25s.stopwords import STOPWORDS_EN

        _STOPWORDS = frozenset(STOPWORDS_EN)
    return _STOPWORDS


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
    stop = _stopwords()
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


def _chunk_fingerprint(index: VectorIndex) -> str:
    h = hashlib.sha256()
    for c in index.chunks:
        h.update(f"{c.chunk_id}\0{c.doc_id}\0{c.start}\0{c.end}\n".encode())
    return h.hexdigest()


class BM25Index:
    """BM25 scores for every chunk of one index generation, row-aligned with its FAISS rows."""

    def __init__(self, model: Any, num_chunks: int) -> None:
        self.model = model
        self.num_chunks = num_chunks

    @classmethod
    def build(cls, texts: list[str]) -> BM25Index:
        """Index ``texts`` (chunk texts in FAISS row order)."""
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

    def files(self, fingerprint: str) -> dict[str, bytes]:
        """The files of this BM25 index, as ``extra_files`` for :meth:`VectorIndex.save`."""
        out: dict[str, bytes] = {}
        meta = {"tokenizer": TOKENIZER_VERSION, "num_chunks": self.num_chunks, "chunks_sha256": fingerprint}
        out[f"{SUBDIR}/{_META}"] = json.dumps(meta, indent=1).encode()
        if self.num_chunks:
            with tempfile.TemporaryDirectory() as tmp:
                self.model.save(tmp, show_progress=False)  # .npy (allow_pickle=False) + JSON
                for path in sorted(Path(tmp).iterdir()):
                    out[f"{SUBDIR}/{path.name}"] = path.read_bytes()
        return out

    @classmethod
    def load(cls, directory: Path, *, fingerprint: str, num_chunks: int) -> BM25Index | None:
        """The stored BM25 index in ``directory``, or ``None`` if absent, stale or unreadable."""
        meta_path = directory / _META
        if not meta_path.is_file():
            return None
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            if (meta.get("tokenizer"), meta.get("num_chunks"), meta.get("chunks_sha256")) != (
                TOKENIZER_VERSION,
                num_chunks,
                fingerprint,
            ):
                logger.info("stored BM25 data in %s does not match this index or tokenizer; rebuilding it", directory)
                return None
            if not num_chunks:
                return cls(None, 0)
            model = _bm25s().BM25.load(str(directory), allow_pickle=False)
        except (OSError, ValueError, KeyError) as exc:
            logger.warning("stored BM25 data in %s is unreadable (%s); rebuilding it in memory", directory, exc)
            return None
        return cls(model, num_chunks)


def bm25_files(index: VectorIndex) -> dict[str, bytes]:
    """Build BM25 for ``index`` (from its stored chunk texts; no embeddings) and return its files.

    The built BM25 is also cached for ``index``, so the saving process need not rebuild it.
    """
    bm25 = BM25Index.build([index.chunk_text(i) for i in range(len(index))])
    with _LOCK:
        _CACHE[index] = bm25
    return bm25.files(_chunk_fingerprint(index))


_CACHE: weakref.WeakKeyDictionary[Any, BM25Index] = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def get_bm25(index: VectorIndex) -> BM25Index:
    """The BM25 index of ``index``: loaded from its generation, else built in memory (cached)."""
    with _LOCK:
        cached = _CACHE.get(index)
    if cached is not None:
        return cached
    bm25 = None
    if index.directory is not None:
        bm25 = BM25Index.load(Path(index.directory) / SUBDIR, fingerprint=_chunk_fingerprint(index), num_chunks=len(index))
    if bm25 is None:
        logger.info(
            "index %s has no stored BM25 data (written by an older version?); building it in memory from %d chunks. "
            "The next `python -m qa index` update stores it.",
            index.directory,
            len(index),
        )
        bm25 = BM25Index.build([index.chunk_text(i) for i in range(len(index))])
    with _LOCK:
        _CACHE[index] = bm25
    return bm25
