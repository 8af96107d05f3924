"""Retrieval: pick the passages of an index most likely to answer a question."""

from __future__ import annotations

from embeddings.encoder import Encoder, get_encoder
from embeddings.index import VectorIndex
from qa.answer import Passage


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
    )


class DenseRetriever:
    """Cosine similarity between the question and chunk embeddings (exact FAISS search)."""

    name = "dense"

    def __init__(self, index: VectorIndex, encoder: Encoder | None = None) -> None:
        self.index = index
        self.encoder = encoder or get_encoder(index.embedding_model)

    def retrieve(self, question: str, k: int) -> list[Passage]:
        """The ``k`` best passages for ``question``, best first."""
        if k < 1:
            raise ValueError(f"top_k={k} must be at least 1")
        vector = self.encoder.encode([question])
        hits = self.index.search(vector, k)[0]
        return [passage_at(self.index, row, score) for row, score in hits]
