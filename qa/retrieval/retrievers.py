"""Retrieval: pick the passages of an index most likely to answer a question.

Three retrievers, one interface (``retrieve(question, k) -> list[Passage]``, best first):

* :class:`DenseRetriever` -- cosine similarity of MiniLM embeddings (exact search in small
  segments of the index, IVF in large ones: :mod:`embeddings.stores.index`).
  Finds paraphrases; blind to rare exact tokens (part numbers, codes, unusual names).
* :class:`BM25Retriever` -- BM25 keyword scoring (:mod:`qa.retrieval.bm25` tokens; scored at query
  time from the index's postings).
  Finds exact terms; blind to paraphrase.
* :class:`HybridRetriever` -- reciprocal rank fusion (RRF, ``k=60``) of the top
  ``depth`` chunks of each. RRF uses only ranks, so the two scores need no calibration.

``Passage.score`` is what the retriever ranked by: the cosine (dense), the BM25 score
(bm25) or the fused reciprocal-rank score (hybrid); ``Passage.components`` names the scores
behind it (``dense``, ``bm25``, ``rrf``), so interfaces can show why a passage ranked where
it did. Passages are always returned best first.

The retrievers talk to the store interface only (:class:`embeddings.stores.base.Store`:
``search_dense``, ``search_bm25``, ``search_hybrid``), so the same three serve a directory
index and a PostgreSQL store (``--index postgresql://...``, where the ranking runs as SQL, see
:mod:`embeddings.stores.postgres`); every passage is built by :func:`make_passage`, so chunk
ids, offsets and citations are identical whichever store answers.
"""

from __future__ import annotations

from embeddings.encoders.encoder import Encoder, encoder_variant, get_encoder
from embeddings.stores.base import Store
from embeddings.stores.index import ChunkRecord, DocumentRecord, VectorIndex
from embeddings.stores.records import Hit
from qa.answer import Passage
from qa.config import DEFAULT_RETRIEVER, FUSION_DEPTH, RETRIEVERS, RRF_K

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


def _dense_encoder(store: Store, encoder: Encoder | None) -> Encoder:
    """``encoder`` (default: the process-wide one for the store's model and the configured
    variant), refused when the store's vectors were not made by it (another variant; a
    database store also checks model and dimension).

    Raises:
        IndexLoadError: the message says how to rebuild.
    """
    encoder = encoder or get_encoder(store.embedding_model)
    store.check_encoder(encoder.name, encoder.dimension, variant=encoder_variant(encoder))
    return encoder


class _Retriever:
    """What the three retrievers share: they ask the store (:class:`embeddings.stores.base.Store`)
    for hits and turn them into passages; nothing here knows which store answers."""

    name = ""

    def __init__(self, index: Store) -> None:
        self.index = index

    @property
    def store(self) -> Store:
        """The store searched (the same object as ``index``)."""
        return self.index

    def hits(self, question: str, k: int) -> list[Hit]:
        """The ``k`` best hits for ``question``, best first."""
        raise NotImplementedError

    def rank(self, question: str, k: int) -> list[tuple[int | str, float]]:
        """The ``k`` best ``(row, score)`` pairs (``(chunk id, score)`` where the store has no rows)."""
        return [(h.row if h.row is not None else h.chunk.chunk_id, h.score) for h in self.hits(question, k)]

    def retrieve(self, question: str, k: int) -> list[Passage]:
        """The ``k`` best passages for ``question``, best first."""
        return [make_passage(h.document, h.chunk, h.score, h.components) for h in self.hits(question, k)]


class DenseRetriever(_Retriever):
    """Cosine similarity between the question and chunk embeddings."""

    name = "dense"

    def __init__(self, index: Store, encoder: Encoder | None = None) -> None:
        super().__init__(index)
        self.encoder = _dense_encoder(index, encoder)

    def hits(self, question: str, k: int) -> list[Hit]:
        _check_k(k)
        return self.index.search_dense(self.encoder.encode([question])[0], k)


class BM25Retriever(_Retriever):
    """BM25 keyword retrieval over the index's chunks (only chunks sharing a term with the question)."""

    name = "bm25"

    def hits(self, question: str, k: int) -> list[Hit]:
        from qa.retrieval.bm25 import tokenize

        _check_k(k)
        return self.index.search_bm25(tokenize(question), k)


class HybridRetriever(_Retriever):
    """Reciprocal rank fusion of dense and BM25 rankings.

    Each chunk scores ``sum(1 / (rrf_k + rank))`` over the rankings it appears in (top
    ``depth`` of each, ranks from 1); ties go to the better dense rank. The returned
    ``Passage.score`` is that fused score; ``components`` adds the dense cosine and BM25 score.
    The store fuses (a database in one SQL statement).
    """

    name = "hybrid"

    def __init__(
        self,
        index: Store,
        encoder: Encoder | None = None,
        *,
        rrf_k: int = RRF_K,
        depth: int = FUSION_DEPTH,
    ) -> None:
        super().__init__(index)
        self.encoder = _dense_encoder(index, encoder)
        self.rrf_k = rrf_k
        self.depth = depth

    def hits(self, question: str, k: int) -> list[Hit]:
        from qa.retrieval.bm25 import tokenize

        _check_k(k)
        query = self.encoder.encode([question])[0]
        return self.index.search_hybrid(query, tokenize(question), k, depth=self.depth, rrf_k=self.rrf_k)


def StoreRetriever(  # noqa: N802 - kept under its old (class) name for callers
    name: str, store: Store, encoder: Encoder | None = None, *, rrf_k: int = RRF_K, depth: int = FUSION_DEPTH
) -> DenseRetriever | BM25Retriever | HybridRetriever:
    """The retriever ``name`` (``"dense"``, ``"bm25"``, ``"hybrid"``) over ``store``; the same
    classes serve every store.

    Raises:
        ValueError: unknown name.
        IndexLoadError: ``encoder`` is not the model (or variant) the store was built with.
    """
    choice = name.lower()
    if choice == "dense":
        return DenseRetriever(store, encoder)
    if choice == "bm25":
        return BM25Retriever(store)
    if choice == "hybrid":
        return HybridRetriever(store, encoder, rrf_k=rrf_k, depth=depth)
    raise ValueError(f"retriever={name!r} is unknown; use one of {', '.join(RETRIEVERS)}")


def get_retriever(
    retriever: str | object | None, index: VectorIndex | object, *, encoder: Encoder | None = None
) -> DenseRetriever | BM25Retriever | HybridRetriever:
    """Resolve ``retriever`` (``"dense"``, ``"bm25"``, ``"hybrid"``, ``None`` = default, or an object)
    for ``index`` (a loaded directory index or a database store).

    Raises:
        ValueError: unknown retriever name.
    """
    if retriever is not None and not isinstance(retriever, str):
        if not callable(getattr(retriever, "retrieve", None)):
            raise ValueError(f"retriever={retriever!r} is neither a retriever name nor an object with retrieve(question, k)")
        return retriever  # type: ignore[return-value]
    return StoreRetriever(retriever or DEFAULT_RETRIEVER, index, encoder)  # type: ignore[arg-type]
