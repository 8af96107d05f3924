"""Indexing: turn a folder of documents into a persisted index, incrementally.

Only new or changed documents (by sha256) are chunked and embedded again; vectors of
unchanged documents are reused from the previous generation, and documents that left
the folder leave the index. The BM25 keyword index (:mod:`qa.bm25`) is rebuilt from
the chunk texts at every save (no embedding involved) into the same generation. The result replaces the old index atomically (see
:mod:`embeddings.index`), under a writer lock.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from embeddings.encoder import Encoder, get_encoder
from embeddings.index import ChunkRecord, DocumentRecord, IndexLoadError, VectorIndex, has_index, write_lock
from qa import config
from qa.bm25 import bm25_files
from qa.chunking import chunk_text
from qa.documents import Document, Skipped, load_folder

logger = logging.getLogger(__name__)


@dataclass
class IndexReport:
    """What an indexing run did."""

    directory: str
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: int = 0
    skipped: list[Skipped] = field(default_factory=list)
    chunks: int = 0
    embedded_chunks: int = 0
    seconds: float = 0.0
    note: str = ""

    def summary(self) -> str:
        """One human-readable line."""
        text = (
            f"indexed {self.directory}: {len(self.added)} added, {len(self.changed)} changed, "
            f"{len(self.removed)} removed, {self.unchanged} unchanged, {len(self.skipped)} skipped; "
            f"{self.chunks} chunks ({self.embedded_chunks} embedded) in {self.seconds:.2f}s"
        )
        return f"{text}\n{self.note}" if self.note else text


def _chunking_params(max_tokens: int, overlap: int) -> dict[str, int]:
    return {"max_tokens": max_tokens, "overlap_sentences": overlap}


def _reusable(previous: VectorIndex | None, model: str, params: dict[str, int]) -> tuple[VectorIndex | None, str]:
    """The previous index if its vectors can be reused, else ``None`` and why not."""
    if previous is None:
        return None, ""
    if previous.embedding_model != model:
        return None, f"previous index used embedding model {previous.embedding_model!r}; re-embedding everything"
    if previous.chunking != params:
        return None, f"previous index used chunking {previous.chunking}; re-chunking everything"
    return previous, ""


def update_index(
    index_dir: str | os.PathLike[str],
    documents: Iterable[Document],
    *,
    remove: Iterable[str] = (),
    remove_missing: bool = False,
    encoder: Encoder | None = None,
    max_tokens: int = config.CHUNK_MAX_TOKENS,
    overlap_sentences: int = config.CHUNK_OVERLAP_SENTENCES,
    rebuild: bool = False,
    show_progress: bool = False,
    lock_wait_s: float = 0.0,
    skipped: Iterable[Skipped] = (),
) -> IndexReport:
    """Add or update ``documents`` in the index at ``index_dir`` and drop ``remove``.

    With ``remove_missing`` every indexed document not among ``documents`` is dropped
    (folder sync). With ``rebuild`` nothing of the previous index is reused.

    Raises:
        RuntimeError: another process holds the index's writer lock.
    """
    started = time.perf_counter()
    encoder = encoder or get_encoder()
    params = _chunking_params(max_tokens, overlap_sentences)
    docs = {d.doc_id: d for d in documents}
    report = IndexReport(directory=str(index_dir), skipped=list(skipped))
    with write_lock(index_dir, wait_s=lock_wait_s):
        previous: VectorIndex | None = None
        if has_index(index_dir) and not rebuild:
            try:
                previous = VectorIndex.load(index_dir)
            except IndexLoadError as exc:
                report.note = f"previous index unusable ({exc}); building from scratch"
                logger.warning(report.note)
        previous, why = _reusable(previous, encoder.name, params)
        report.note = report.note or why

        old_docs = previous.documents if previous else {}
        dropped = set(remove) | (set(old_docs) - set(docs) if remove_missing else set())
        dropped &= set(old_docs)
        report.removed = sorted(dropped)
        keep_ids = [d for d in old_docs if d not in dropped and (d not in docs or docs[d].sha256 == old_docs[d].sha256)]
        report.unchanged = len(keep_ids)
        report.added = sorted(d for d in docs if d not in old_docs)
        report.changed = sorted(d for d in docs if d in old_docs and docs[d].sha256 != old_docs[d].sha256)

        if previous is not None and not (report.added or report.changed or report.removed):
            # Nothing to do: leave the live generation as it is.
            report.chunks = len(previous.chunks)
            report.seconds = time.perf_counter() - started
            return report

        # Reuse stored vectors of kept documents: no encoder call for them.
        kept = set(keep_ids)
        chunks: list[ChunkRecord] = []
        parts: list[np.ndarray] = []
        if previous is not None and kept:
            rows = [i for i, c in enumerate(previous.chunks) if c.doc_id in kept]
            chunks.extend(previous.chunks[i] for i in rows)
            parts.append(previous.vectors()[rows])
        new_records: list[ChunkRecord] = []
        new_texts: list[str] = []
        for doc_id in report.added + report.changed:
            doc = docs[doc_id]
            for c in chunk_text(doc_id, doc.text, encoder.count_tokens, max_tokens, overlap_sentences):
                new_records.append(ChunkRecord(c.chunk_id, doc_id, c.start, c.end))
                new_texts.append(c.text)
        if new_texts:
            parts.append(
                encoder.encode(
                    new_texts, batch_size=config.EMBED_BATCH_SIZE, show_progress=show_progress and len(new_texts) > 64, bulk=True
                )
            )
        chunks.extend(new_records)

        records = {d: old_docs[d] for d in keep_ids}
        for doc_id in report.added + report.changed:
            doc = docs[doc_id]
            records[doc_id] = DocumentRecord(doc_id, doc.source, doc.sha256, doc.text)
        vectors = np.concatenate(parts) if parts else np.zeros((0, encoder.dimension), dtype=np.float32)
        index = VectorIndex(
            embedding_model=encoder.name,
            dimension=encoder.dimension,
            chunking=params,
            documents=records,
            chunks=chunks,
            vectors=vectors,
        )
        # BM25 is rebuilt from the stored chunk texts (cheap; no embeddings) and written
        # into the same generation, so vectors and keywords always switch together.
        index.save(index_dir, extra_files=bm25_files(index))
    report.chunks = len(chunks)
    report.embedded_chunks = len(new_texts)
    report.seconds = time.perf_counter() - started
    return report


def index_folder(
    docs_dir: str | os.PathLike[str],
    index_dir: str | os.PathLike[str],
    **options: object,
) -> IndexReport:
    """Sync the index at ``index_dir`` with every supported document under ``docs_dir``.

    Unreadable files are skipped and listed in the report. Accepts the options of
    :func:`update_index`.

    Raises:
        ValueError: ``docs_dir`` is not a directory.
    """
    documents, skipped = load_folder(docs_dir)
    for s in skipped:
        logger.warning("skipped %s: %s", s.path, s.reason)
    return update_index(index_dir, documents, remove_missing=True, skipped=skipped, **options)  # type: ignore[arg-type]


def ensure_index(
    index_dir: str | os.PathLike[str] = config.DEFAULT_INDEX_DIR,
    docs_dir: str | os.PathLike[str] = config.DEFAULT_DOCS_DIR,
) -> Path:
    """Build the index over ``docs_dir`` if ``index_dir`` holds none yet; return ``index_dir``."""
    if not has_index(index_dir):
        logger.info("no index at %s yet; building it from %s", index_dir, docs_dir)
        index_folder(docs_dir, index_dir, lock_wait_s=600.0)
    return Path(index_dir)
