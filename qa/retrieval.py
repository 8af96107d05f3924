"""Retrieval: pick the passages of an index most likely to answer a question.

Three retrievers, one interface (``retrieve(question, k) -> list[Passage]``, best first):

* :class:`DenseRetriever` -- cosine similarity of MiniLM embeddings (exact search in small
  segments of the index, IVF in large ones: :mod:`embeddings.index`).
  Finds paraphrases; blind to rare exact tokens (part numbers, codes, unusual names).
* :class:`BM25Retriever` -- BM25 keyword scoring (:mod:`qa.bm25` tokens; scored at query
  time from the index's postings).
  Finds exact terms; blind to paraphrase.
* :class:`HybridRetriever` -- reciprocal rank fusion (RRF, ``k=60``) of the top
  ``depth`` chunks of each. RRF uses only ranks, so the two scores need no calibration.

``Passage.score`` is what the retriever ranked by: the cosine (dense), the BM25 score
(bm25) or the fused reciprocal-rank score (hybrid); ``Passage.components`` names the scores
behind it (``dense``, ``bm25``, ``rrf``), so interfaces can show why a passage ranked where
it did. Passages are always returned best first.

A PostgreSQL store (``--index postgresql://...``) answers through :class:`StoreRetriever`
(same three names; the ranking runs as SQL in the database, see
:mod:`embeddings.stores.postgres`), and its passages are built by the same
:func:`make_passage`, so chunk ids, offsets and citations are identical.
"""

from __future__ import annotations


import numpy as np

from embeddings.encoder import Encoder, check_encoder_variant, encoder_variant, get_encoder
from embeddings.index import ChunkRecord, DocumentRecord, VectorIndex
from qa.answer import Passage
from qa.config import DEFAULT_RETRIEVER, FUSION_DEPTH, RRF_K

__all__ = [
    "DEFAULT_RETRIEVER",
    "RETRIEVERS",
    "BM25Retriever",
    "DenseRetriever",
    "HybridRetriever",
    "StoreRetriever",
    "get_retriever",
    "make_passage",
]

RETRIEVERS = ("dense", "bm25", "hybrid")


def passage_at(index: VectorIndex, row: int, score: float, components: dict[str, float] | None = None) -> Passage:
    """The :class:`Passage` for row ``row`` of ``index``."""
    rec = index.chunk(row)
    return make_passage(index.document(rec.doc_id), rec, score, components)


def make_passage(
    doc: DocumentRecord, rec: ChunkRecord, score: float, components: dict[str, float] | None = None
) -> Passage:
    """The :class:`Passage` for chunk ``rec`` of document ``doc`` (every store builds passages here)."""
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
        components=dict(components or {}),
    )


def _check_k(k: int) -> None:
    if k < 1:
        raise ValueError(f"top_k={k} must be at least 1")


def _dense_encoder(index: VectorIndex, encoder: Encoder | None) -> Encoder:
    """``encoder`` (default: the process-wide one for the index's model and the configured
    variant), refused when it is not the variant the index's vectors were made with.

    Raises:
        IndexLoadError: another encoder variant (the message says how to rebuild).
    """
    encoder = encoder or get_encoder(index.embedding_model)
    # The user knows the index by its root (a loaded index's directory is its generation).
    location = getattr(index, "root", None) or index.directory or "(in memory)"
    check_encoder_variant(index.encoder_variant, encoder, location)
    return encoder


class DenseRetriever:
    """Cosine similarity between the question and chunk embeddings."""

    name = "dense"

    def __init__(self, index: VectorIndex, encoder: Encoder | None = None) -> None:
        self.index = index
        self.encoder = _dense_encoder(index, encoder)

    def rank(self, question: str, k: int) -> list[tuple[int, float]]:
        """The ``k`` best ``(row, cosine)`` pairs."""
        _check_k(k)
        return self.index.search(self.encoder.encode([question]), k)[0]

    def retrieve(self, question: str, k: int) -> list[Passage]:
        """The ``k`` best passages for ``question``, best first."""
        return [passage_at(self.index, row, score, {"dense": score}) for row, score in self.rank(question, k)]


def _cosines(index: VectorIndex, query: np.ndarray, rows: list[int]) -> dict[int, float]:
    """Cosine of ``query`` with the stored vectors of ``rows`` (vectors are L2-normalised)."""
    if not rows:
        return {}
    vectors = index.vectors(rows)
    return {r: float(s) for r, s in zip(rows, vectors @ np.asarray(query, dtype=np.float32).ravel(), strict=True)}


class BM25Retriever:
    """BM25 keyword retrieval over the index's chunks (only chunks sharing a term with the question)."""

    name = "bm25"

    def __init__(self, index: VectorIndex) -> None:
        self.index = index

    def rank(self, question: str, k: int) -> list[tuple[int, float]]:
        """The ``k`` best ``(row, bm25 score)`` pairs (fewer when fewer chunks share a term)."""
        from qa.bm25 import tokenize

        _check_k(k)
        return self.index.bm25_search(tokenize(question), k)

    def retrieve(self, question: str, k: int) -> list[Passage]:
        """The ``k`` best passages for ``question``, best first."""
        return [passage_at(self.index, r, s, {"bm25": s}) for r, s in self.rank(question, k)]


class HybridRetriever:
    """Reciprocal rank fusion of dense and BM25 rankings.

    Each chunk scores ``sum(1 / (rrf_k + rank))`` over the rankings it appears in (top
    ``depth`` of each, ranks from 1); ties go to the better dense rank. The returned
    ``Passage.score`` is that fused score; ``components`` adds the dense cosine and BM25 score.
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
        self.index = index
        self.encoder = _dense_encoder(index, encoder)
        self.rrf_k = rrf_k
        self.depth = depth

    def _fuse(self, question: str, k: int) -> list[tuple[int, dict[str, float]]]:
        """The ``k`` best rows in fusion order with their ``rrf``, ``dense`` and ``bm25`` scores."""
        from qa.bm25 import tokenize

        _check_k(k)
        depth = max(k, self.depth)
        query = self.encoder.encode([question])
        tokens = tokenize(question)
        dense = self.index.search(query, depth)[0]
        sparse = self.index.bm25_search(tokens, depth)
        fused: dict[int, float] = {}
        for ranking in (dense, sparse):
            for rank, (row, _) in enumerate(ranking, 1):
                fused[row] = fused.get(row, 0.0) + 1.0 / (self.rrf_k + rank)
        dense_rank = {row: i for i, (row, _) in enumerate(dense)}
        order = sorted(fused, key=lambda r: (-fused[r], dense_rank.get(r, len(dense)), r))[:k]
        cos = {row: s for row, s in dense}
        cos.update(_cosines(self.index, query, [r for r in order if r not in cos]))
        bm25 = {row: s for row, s in sparse}
        missing = [r for r in order if r not in bm25]
        bm25.update(zip(missing, (float(x) for x in self.index.bm25_scores(tokens, missing)), strict=True))
        return [(r, {"rrf": fused[r], "dense": cos[r], "bm25": bm25[r]}) for r in order]

    def rank(self, question: str, k: int) -> list[tuple[int, float]]:
        """The ``k`` best ``(row, fused RRF score)`` pairs, best first."""
        return [(r, c["rrf"]) for r, c in self._fuse(question, k)]

    def retrieve(self, question: str, k: int) -> list[Passage]:
        """The ``k`` best passages for ``question`` in fusion order (``score`` = RRF score)."""
        return [passage_at(self.index, row, c["rrf"], c) for row, c in self._fuse(question, k)]


class StoreRetriever:
    """Retrieval in a database store (:class:`embeddings.stores.postgres.PostgresStore`):
    ``"dense"`` (HNSW, cosine), ``"bm25"`` (keywords: the same tokens as :mod:`qa.bm25`, ranked
    in SQL with the same formula) or ``"hybrid"`` (reciprocal rank fusion of both in one SQL statement).
    ``Passage.components`` use the same names as the directory retrievers.

    Raises (on construction):
        IndexLoadError: ``encoder`` is not the model (or dimension) the store was built with.
    """

    def __init__(
        self, name: str, store: object, encoder: Encoder | None = None, *, rrf_k: int = RRF_K, depth: int = FUSION_DEPTH
    ) -> None:
        self.name = name
        self.store = store
        self.rrf_k = rrf_k
        self.depth = depth
        self.encoder = None
        if name != "bm25":
            self.encoder = encoder or get_encoder(store.embedding_model)  # type: ignore[attr-defined]
            store.check_encoder(  # type: ignore[attr-defined]
                self.encoder.name, self.encoder.dimension, variant=encoder_variant(self.encoder)
            )

    def retrieve(self, question: str, k: int) -> list[Passage]:
        """The ``k`` best passages for ``question``, best first."""
        from qa.bm25 import tokenize

        _check_k(k)
        vector = self.encoder.encode([question])[0] if self.encoder is not None else None
        tokens = tokenize(question) if self.name != "dense" else ()
        hits = self.store.search(  # type: ignore[attr-defined]
            self.name, k, query_vector=vector, tokens=tokens, depth=self.depth, rrf_k=self.rrf_k
        )
        return [make_passage(h.document, h.chunk, h.score, h.components) for h in hits]

    def rank(self, question: str, k: int) -> list[tuple[str, float]]:
        """The ``k`` best ``(chunk id, score)`` pairs, best first."""
        return [(p.chunk_id, p.score) for p in self.retrieve(question, k)]


def get_retriever(
    retriever: str | object | None, index: VectorIndex | object, *, encoder: Encoder | None = None
) -> DenseRetriever | BM25Retriever | HybridRetriever | StoreRetriever:
    """Resolve ``retriever`` (``"dense"``, ``"bm25"``, ``"hybrid"``, ``None`` = default, or an object)
    for ``index`` (a loaded directory index or a database store).

    Raises:
        ValueError: unknown retriever name.
    """
    if retriever is not None and not isinstance(retriever, str):
        return retriever  # type: ignore[return-value]
    choice = (retriever or DEFAULT_RETRIEVER).lower()
    if not isinstance(index, VectorIndex) and hasattr(index, "search") and hasattr(index, "check_encoder"):
        if choice not in RETRIEVERS:
            raise ValueError(f"retriever={retriever!r} is unknown; use one of {', '.join(RETRIEVERS)}")
        return StoreRetriever(choice, index, encoder)
    if choice == "dense":
        return DenseRetriever(index, encoder)
    if choice == "bm25":
        return BM25Retriever(index)
    if choice == "hybrid":
        return HybridRetriever(index, encoder)
    raise ValueError(f"retriever={retriever!r} is unknown; use one of {', '.join(RETRIEVERS)}")
