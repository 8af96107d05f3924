"""Retrieval: pick the passages of an index most likely to answer a question.

Three retrievers, one interface (``retrieve(question, k) -> list[Passage]``, best first):

* :class:`DenseRetriever` -- cosine similarity of MiniLM embeddings (exact FAISS search).
  Finds paraphrases; blind to rare exact tokens (part numbers, codes, unusual names).
* :class:`BM25Retriever` -- BM25 keyword scoring (:mod:`qa.bm25`, stored with the index).
  Finds exact terms; blind to paraphrase.
* :class:`HybridRetriever` -- reciprocal rank fusion (RRF, ``k=60``) of the top
  ``depth`` chunks of each. RRF uses only ranks, so the two scores need no calibration.

``Passage.score`` is what the reader sees as "how relevant is this passage", and the
offline reader uses it as a feature fitted on cosine similarities. So the hybrid
retriever keeps the **dense cosine** of each fused passage as ``Passage.score`` (also
for passages only BM25 found: their cosine is computed from the stored vector) while
the **order** of the list is the fusion order. The BM25 retriever reports the raw BM25
score unless ``dense_scores=True`` (what :func:`get_retriever` uses for answering).
"""

from __future__ import annotations


import numpy as np

from embeddings.encoder import Encoder, get_encoder
from embeddings.index import VectorIndex
from qa.answer import Passage
from qa.config import DEFAULT_RETRIEVER, FUSION_DEPTH, RRF_K

__all__ = ["DEFAULT_RETRIEVER", "RETRIEVERS", "BM25Retriever", "DenseRetriever", "HybridRetriever", "get_retriever"]

RETRIEVERS = ("dense", "bm25", "hybrid")


def passage_at(index: VectorIndex, row: int, score: float) -> Passage:
    """The :class:`Passage` for FAISS row ``row`` of ``index``."""
    rec = index.chunks[row]
    doc = index.documents[rec.doc_id]
    return Passage(
        doc_id=rec.doc_id,
        source=doc.source,
        chunk_id=rec.chunk_id,
        start=rec.start,
        end=rec.end,
        text=doc.text[rec.start : rec.end],
        score=score,
        document_text=doc.text,
        pages=tuple(doc.pages or ()),
    )


def _check_k(k: int) -> None:
    if k < 1:
        raise ValueError(f"top_k={k} must be at least 1")


class DenseRetriever:
    """Cosine similarity between the question and chunk embeddings (exact FAISS search)."""

    name = "dense"

    def __init__(self, index: VectorIndex, encoder: Encoder | None = None) -> None:
        self.index = index
        self.encoder = encoder or get_encoder(index.embedding_model)

    def rank(self, question: str, k: int) -> list[tuple[int, float]]:
        """The ``k`` best ``(row, cosine)`` pairs."""
        _check_k(k)
        return self.index.search(self.encoder.encode([question]), k)[0]

    def retrieve(self, question: str, k: int) -> list[Passage]:
        """The ``k`` best passages for ``question``, best first."""
        return [passage_at(self.index, row, score) for row, score in self.rank(question, k)]


def _cosines(index: VectorIndex, query: np.ndarray, rows: list[int]) -> dict[int, float]:
    """Cosine of ``query`` with the stored vectors of ``rows`` (vectors are L2-normalised)."""
    if not rows:
        return {}
    vectors = np.stack([index.faiss_index.reconstruct(int(r)) for r in rows])
    return {r: float(s) for r, s in zip(rows, vectors @ np.asarray(query, dtype=np.float32).ravel(), strict=True)}


class BM25Retriever:
    """BM25 keyword retrieval over the index's chunks (only chunks sharing a term with the question).

    ``Passage.score`` is the raw BM25 score, or with ``dense_scores=True`` the dense
    cosine (for readers that use the score as a calibrated feature; needs the encoder).
    """

    name = "bm25"

    def __init__(self, index: VectorIndex, *, encoder: Encoder | None = None, dense_scores: bool = False) -> None:
        from qa.bm25 import get_bm25

        self.index = index
        self.bm25 = get_bm25(index)
        self.dense_scores = dense_scores
        self.encoder = encoder or (get_encoder(index.embedding_model) if dense_scores else None)

    def rank(self, question: str, k: int) -> list[tuple[int, float]]:
        """The ``k`` best ``(row, bm25 score)`` pairs (fewer when fewer chunks share a term)."""
        _check_k(k)
        return self.bm25.top(question, k)

    def retrieve(self, question: str, k: int) -> list[Passage]:
        """The ``k`` best passages for ``question``, best first."""
        hits = self.rank(question, k)
        if self.dense_scores and hits and self.encoder is not None:
            cos = _cosines(self.index, self.encoder.encode([question]), [r for r, _ in hits])
            return [passage_at(self.index, r, cos[r]) for r, _ in hits]
        return [passage_at(self.index, r, s) for r, s in hits]


class HybridRetriever:
    """Reciprocal rank fusion of dense and BM25 rankings.

    Each chunk scores ``sum(1 / (rrf_k + rank))`` over the rankings it appears in (top
    ``depth`` of each, ranks from 1); ties go to the better dense rank. The returned
    ``Passage.score`` is the dense cosine (see the module docstring).
    """

    name = "hybrid"

    def __init__(
        self,
        index: VectorIndex,
        encoder: Encoder | None = None,
        *,
        rrf_k: int = RRF_K,
        depth: int = FUSION_DEPTH,
    ) -> None:
        from qa.bm25 import get_bm25

        self.index = index
        self.encoder = encoder or get_encoder(index.embedding_model)
        self.bm25 = get_bm25(index)
        self.rrf_k = rrf_k
        self.depth = depth

    def rank(self, question: str, k: int) -> list[tuple[int, float]]:
        """The ``k`` best ``(row, dense cosine)`` pairs in fusion order."""
        _check_k(k)
        depth = max(k, self.depth)
        query = self.encoder.encode([question])
        dense = self.index.search(query, depth)[0]
        sparse = self.bm25.top(question, depth)
        fused: dict[int, float] = {}
        for ranking in (dense, sparse):
            for rank, (row, _) in enumerate(ranking, 1):
                fused[row] = fused.get(row, 0.0) + 1.0 / (self.rrf_k + rank)
        dense_rank = {row: i for i, (row, _) in enumerate(dense)}
        order = sorted(fused, key=lambda r: (-fused[r], dense_rank.get(r, len(dense)), r))[:k]
        cos = {row: s for row, s in dense}
        cos.update(_cosines(self.index, query, [r for r in order if r not in cos]))
        return [(r, cos[r]) for r in order]

    def retrieve(self, question: str, k: int) -> list[Passage]:
        """The ``k`` best passages for ``question`` in fusion order, scored by dense cosine."""
        return [passage_at(self.index, row, score) for row, score in self.rank(question, k)]


def get_retriever(
    retriever: str | object | None, index: VectorIndex, *, encoder: Encoder | None = None
) -> DenseRetriever | BM25Retriever | HybridRetriever:
    """Resolve ``retriever`` (``"dense"``, ``"bm25"``, ``"hybrid"``, ``None`` = default, or an object).

    Raises:
        ValueError: unknown retriever name.
    """
    if retriever is not None and not isinstance(retriever, str):
        return retriever  # type: ignore[return-value]
    choice = (retriever or DEFAULT_RETRIEVER).lower()
    if choice == "dense":
        return DenseRetriever(index, encoder)
    if choice == "bm25":
        return BM25Retriever(index, encoder=encoder, dense_scores=True)
    if choice == "hybrid":
        return HybridRetriever(index, encoder)
    raise ValueError(f"retriever={retriever!r} is unknown; use one of {', '.join(RETRIEVERS)}")
