"""The records every store reads and writes (chunks, documents, search hits), below the stores
and :mod:`embeddings.stores.index`, which re-exports them: a store module needs neither the other."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ChunkRecord:
    """Where a vector's passage lives: chunk id, document id, ``[start, end)`` characters."""

    chunk_id: str
    doc_id: str
    start: int
    end: int


@dataclass(frozen=True)
class DocumentRecord:
    """An indexed document with its text, so citations can always be shown.

    ``text`` is the *extracted* text (what offsets refer to). ``pages`` (PDFs) is the start
    offset of each page in ``text``; ``None`` for other documents.
    """

    doc_id: str
    source: str
    sha256: str
    text: str
    pages: list[int] | None = None
    #: ``"folder"`` (synced from an indexed folder) or ``"added"`` (``qa add``, a chat upload,
    #: the API): an added document is only ever removed by an explicit remove.
    origin: str = "folder"
    #: File name of the kept original bytes under ``originals/`` (added documents), so every
    #: rebuild can read the document again.
    original: str | None = None


def text_sha256(text: str) -> str:
    """sha256 of extracted text (stored, so a changed extraction is noticed without reading texts)."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass
class NewDocument:
    """A document a writer adds: its record, chunks, their vectors and BM25 tokens (row-aligned)."""

    record: DocumentRecord
    chunks: list[ChunkRecord]
    vectors: np.ndarray
    tokens: list[list[str]]


@dataclass(frozen=True)
class Hit:
    """One retrieved chunk with its document, what it ranked by, and the scores behind it
    (``dense``, ``bm25``, ``rrf``). ``row``: the chunk's row in a directory index (else ``None``)."""

    document: DocumentRecord
    chunk: ChunkRecord
    score: float
    components: dict[str, float]
    row: int | None = None
