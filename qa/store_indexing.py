"""Indexing into a PostgreSQL store (``--index postgresql://...``): the same operations as
:mod:`qa.indexing` for a directory, with the same reports, chunking and document ids.

* Only new or changed documents (sha256 of the bytes, the extracted text, pages) are
  chunked and embedded; each is then replaced in **one transaction**, so a reader never
  sees half a document and killing ``qa index`` mid-run leaves every document either as
  it was or fully updated (a rerun embeds only what is still missing).
* Documents that left the folder (``remove_missing``) or are named in ``remove`` are
  deleted in one transaction.
* ``rebuild``, a new database, or another embedding model / chunking: everything is
  embedded first, then the tables are recreated and filled in **one transaction** (the
  HNSW and GIN indexes are built after the bulk load).
* Writers hold the store's advisory lock (:meth:`PostgresStore.writer`): a second writer
  waits up to ``lock_wait_s`` seconds, then fails with the same message as for a directory.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

from embeddings.encoder import Encoder, encoder_variant, get_encoder
from embeddings.index import text_sha256
from embeddings.stores import open_store
from embeddings.stores.postgres import PostgresStore
from qa import config
from qa.documents import Document, Skipped

if TYPE_CHECKING:  # qa.indexing imports this module lazily; import its types only for checkers
    from qa.indexing import DocumentInfo, IndexReport

logger = logging.getLogger(__name__)


def _needs_update(doc: Document, state: tuple[str, str, list[int] | None]) -> bool:
    sha, text_sha, pages = state
    return doc.sha256 != sha or text_sha256(doc.text) != text_sha or doc.page_starts() != pages


def _sources(store: PostgresStore, writer: object) -> dict[str, str]:
    """``doc_id -> source`` of the stored documents ({} when the tables are of another schema)."""
    import psycopg

    try:
        return store.sources(writer.conn)  # type: ignore[attr-defined]
    except psycopg.Error:
        return {}


def _keep(writer: object, doc: Document) -> None:
    """An added document's bytes go into the store with it (same transaction)."""
    if doc.data is not None:
        writer.keep_original(doc.doc_id, doc.source, doc.sha256, doc.data)  # type: ignore[attr-defined]


def update_store(
    url: str,
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
    folder: object = None,
) -> IndexReport:
    """:func:`qa.indexing.update_index` for a PostgreSQL store at ``url`` (see the module docstring).

    Added documents keep their bytes in the store (``qa_originals``, written in the same
    transaction as the document); a folder sync never drops them and a rebuild reads them again.

    Raises:
        RuntimeError: another process holds the store's writer lock, or the server is unreachable.
    """
    from qa.indexing import IndexReport, _chunking_params, embed_documents, plan_changes, protected_ids, settle_added, variant_change

    started = time.perf_counter()
    encoder = encoder or get_encoder()
    params = _chunking_params(max_tokens, overlap_sentences)
    docs = {d.doc_id: d for d in documents}
    store = open_store(url)
    report = IndexReport(directory=store.directory, skipped=list(skipped))
    for doc_id in [d for d, doc in docs.items() if "\x00" in doc.text]:
        # PostgreSQL text cannot hold NUL; the directory store would keep such a document.
        doc = docs.pop(doc_id)
        report.skipped.append(
            Skipped(doc.source, "contains NUL characters, which PostgreSQL cannot store; remove them and add it again", doc_id)
        )
    embedded = 0
    with store.writer(wait_s=lock_wait_s) as writer:
        meta = writer.meta()
        fresh = rebuild or meta is None
        if meta is not None and not rebuild:
            try:
                store._apply_meta(meta)
            except ValueError as exc:
                report.note = f"previous index unusable ({exc}); building from scratch"
                fresh = True
            else:
                if store.embedding_model != encoder.name or store.dimension != encoder.dimension:
                    report.note = f"previous index used embedding model {store.embedding_model!r}; re-embedding everything"
                    fresh = True
                elif why := variant_change(store.encoder_variant, encoder_variant(encoder)):
                    report.note = why
                    fresh = True
                elif store.chunking != params:
                    report.note = f"previous index used chunking {store.chunking}; re-chunking everything"
                    fresh = True
        old = {} if fresh else store.document_states(writer.conn)
        remove = set(remove)
        added = store.added_sources(writer.conn) if meta is not None else {}
        sources = _sources(store, writer) if meta is not None else {}
        legacy = {d: src for d, src in sources.items() if src.startswith("upload:")}  # uploads from before originals were kept
        settle_added(docs, {**legacy, **added}, writer.original, keep=old, remove=remove, report=report)
        keep = protected_ids(sources if old else {}, added, folder)

        def needs_update(doc: Document, state: tuple[str, str, list[int] | None]) -> bool:
            # Added now but not kept yet (it was a folder's, or an older upload): record its bytes.
            return _needs_update(doc, state) or (doc.data is not None and doc.doc_id not in added)

        dropped = plan_changes(report, docs, old, needs_update, remove=remove, remove_missing=remove_missing, keep=keep)

        if fresh:
            # Embed everything first, then swap the whole index in one transaction.
            prepared = embed_documents(
                [docs[d] for d in report.added], encoder,
                max_tokens=max_tokens, overlap_sentences=overlap_sentences, show_progress=show_progress,
            )
            with writer.transaction():
                writer.create_schema(
                    embedding_model=encoder.name, dimension=encoder.dimension, chunking=params, indexes=False,
                    encoder_variant=encoder_variant(encoder),
                )
                for new in prepared:
                    writer.insert_document(
                        new.record, text_sha256(new.record.text), new.chunks, new.vectors, new.tokens, defer_stats=True
                    )
                    _keep(writer, docs[new.record.doc_id])
                    embedded += len(new.chunks)
                writer.flush_stats()
                writer.create_indexes()
        else:
            if dropped:
                with writer.transaction():
                    writer.delete_documents(dropped)
                    writer.forget_originals(dropped)
            for doc_id in report.added + report.changed:
                (new,) = embed_documents(
                    [docs[doc_id]], encoder,
                    max_tokens=max_tokens, overlap_sentences=overlap_sentences, show_progress=show_progress,
                )
                with writer.transaction():  # a reader sees the old document or the new one, never half
                    writer.delete_documents([doc_id])
                    writer.insert_document(new.record, text_sha256(new.record.text), new.chunks, new.vectors, new.tokens)
                    _keep(writer, docs[doc_id])
                embedded += len(new.chunks)
        store._apply_meta(writer.meta())
    report.chunks = store.counts()[1]
    report.embedded_chunks = embedded
    report.seconds = time.perf_counter() - started
    return report


def remove_from_store(url: str, doc_ids: list[str], *, lock_wait_s: float = 30.0) -> IndexReport:
    """:func:`qa.indexing.remove_documents` for a PostgreSQL store: one transaction, nothing embedded.

    Raises:
        ValueError: no index there, or an id is not stored (then nothing is removed).
        RuntimeError: another writer holds the lock, or the server is unreachable.
    """
    from qa.indexing import IndexReport, unknown_id_message

    started = time.perf_counter()
    store = open_store(url)
    with store.writer(wait_s=lock_wait_s) as writer:
        store._apply_meta(writer.meta())  # IndexLoadError (a ValueError) says how to build one
        known = store.document_states(writer.conn)
        unknown = [d for d in doc_ids if d not in known]
        if unknown:
            raise ValueError(unknown_id_message(unknown, known, store.directory))
        chunks_before = store.counts()[1]  # under the writer lock: no other write in between
        with writer.transaction():
            writer.delete_documents(doc_ids)
            writer.forget_originals(doc_ids)
        documents, chunks = store.counts()
    return IndexReport(
        directory=store.directory,
        removed=sorted(doc_ids),
        unchanged=documents,
        chunks=chunks,
        removed_chunks=chunks_before - chunks,
        seconds=time.perf_counter() - started,
    )


def store_listing(store: PostgresStore) -> list[DocumentInfo]:
    """:func:`qa.indexing.list_documents` for a PostgreSQL store (``DocumentInfo`` rows, sorted by id)."""
    from qa.extraction import kind_of
    from qa.indexing import DocumentInfo

    store.refresh()
    added = store.added_sources()
    return [
        DocumentInfo(
            doc_id=d, kind=kind_of(d), chunks=n, characters=chars, pages=pages, source=source,
            origin="added" if d in added or source.startswith("upload:") else "folder",
        )
        for d, source, chars, n, pages in store.listing()
    ]


def store_summary(url: str) -> dict | None:
    """``{"embedding_model", "documents", "num_chunks"}`` of the store at ``url``, or ``None`` without an index."""
    store = open_store(url)
    if not store.has_index():
        return None
    store.refresh()
    documents, chunks = store.counts()
    return {"embedding_model": store.embedding_model, "documents": documents, "num_chunks": chunks}
