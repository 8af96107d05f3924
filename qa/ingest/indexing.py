"""Indexing: turn a folder of documents into a persisted index, incrementally, in any store.

Every update is planned here once, whichever store holds the index (a directory, a
``postgresql://`` URL: :func:`embeddings.stores.writable_store`): under the store's writer
lock, its metadata is checked (another model, encoder variant, chunking or tokenizer -> one
rebuild message, :func:`embeddings.stores.base.reuse_problem`), added documents are settled,
and :func:`plan_changes` decides what is added, replaced, removed and kept. Only new or changed
documents (by sha256 of the bytes and of the extracted text) are chunked, embedded and
tokenised (:func:`embed_documents`); the store carries out the
:class:`~embeddings.stores.base.Plan` (:meth:`~embeddings.stores.base.StoreWriter.apply`):

* a directory writes one new segment and a new manifest in one atomic commit, removed and
  replaced documents becoming tombstones (:mod:`embeddings.stores.directory`);
  :func:`compact_index` merges all segments (``python -m qa index --compact``);
* PostgreSQL replaces each document in its own transaction, or recreates the tables in one
  (:mod:`embeddings.stores.postgres`).

Unchanged documents are not touched, so an update costs what changed, whatever the index holds.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import logging
import os
import re
import time
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np

from embeddings.encoders.encoder import Encoder, encoder_variant, get_encoder, progress_ticker
from embeddings.stores import display_location, is_store_url, writable_store
from embeddings.stores.base import IndexMeta, Plan, StoredDocument, reuse_problem
from embeddings.stores.directory import entries_listing, manifest_meta
from embeddings.stores.index import (
    ChunkRecord,
    DocumentRecord,
    IndexLoadError,
    NewDocument,
    VectorIndex,
    check_index_folder,
    compact,
    has_index,
    read_manifest,
    write_lock,
)
from qa import config
from qa.ingest.chunking import chunk_text
from qa.ingest.documents import Document, Skipped, discover, document_from_bytes, load_folder, open_regular, passed_over_note, read_document
from qa.ingest.extraction import SUPPORTED_SUFFIXES, is_supported, kind_of, suffix_of
from qa.retrieval.bm25 import TOKENIZER_VERSION, tokenize

logger = logging.getLogger(__name__)
#: A store's per-document state (a DocumentRecord here, a (sha256, text sha256, pages) row in PostgreSQL).
T = TypeVar("T")


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
    #: Chunks the removed documents had (set by :func:`remove_documents`).
    removed_chunks: int = 0

    def summary(self) -> str:
        """One human-readable line (what ``qa index`` and ``qa add`` print)."""
        text = (
            f"indexed {self.directory}: {len(self.added)} added, {len(self.changed)} changed, "
            f"{len(self.removed)} removed, {self.unchanged} unchanged, {len(self.skipped)} skipped; "
            f"{plural(self.chunks, 'chunk')} ({self.embedded_chunks} embedded) in {self.seconds:.2f}s"
        )
        return f"{text}\n{self.note}" if self.note else text

    def removal_summary(self) -> str:
        """What ``qa remove`` prints: ``"removed 1 document (4 chunks): report.pdf"`` and what is left."""
        return (
            f"removed {plural(len(self.removed), 'document')} ({plural(self.removed_chunks, 'chunk')}): "
            f"{', '.join(self.removed)}; {plural(self.unchanged, 'document')} ({plural(self.chunks, 'chunk')}) "
            f"left in {self.directory}"
        )


def plural(n: int, word: str) -> str:
    """``"1 chunk"``, ``"2 chunks"``."""
    return f"{n:,} {word}" + ("" if n == 1 else "s")


def _chunking_params(max_tokens: int, overlap: int) -> dict[str, int]:
    return {"max_tokens": max_tokens, "overlap_sentences": overlap}


def _under(source: str, folder: Path) -> bool:
    """Whether a document's recorded ``source`` path lies in ``folder``. Sources are absolute
    (:func:`qa.ingest.documents.source_of`); relative ones, from indexes written before, are read from
    the current directory, where ``qa index`` recorded them."""
    try:
        return Path(source).resolve().is_relative_to(folder.resolve())
    except (OSError, ValueError):
        return False


def settle_added(
    docs: dict[str, Document],
    previously_added: Mapping[str, str],
    read_original: Callable[[str], bytes | None],
    *,
    keep: Iterable[str],
    remove: set[str],
    report: "IndexReport",
    stored: Callable[[str], Document | None] = lambda doc_id: None,
) -> None:
    """What every store does with added documents before it plans an update (under its writer
    lock): never let a folder's file replace an added document of the same id (it is skipped
    with the way out), and bring back, from their kept originals, the added documents that are
    not in ``keep`` (what the store still holds as it is) -- a rebuild, another model,
    chunking or format would otherwise lose them.

    ``previously_added`` maps each added id the store knows to its source;
    ``read_original(id)`` gives its kept bytes, or ``None`` if none were kept (uploads from
    before this version). Where they cannot be read again (none kept, a read or extraction
    error), ``stored(id)`` gives the document as the store holds it (its indexed text): it is
    carried over as it was; only when that fails too is it lost, and the report's note names it.
    """
    for doc_id, doc in list(docs.items()):
        if doc.origin == "folder" and doc_id in previously_added and doc_id not in remove:
            del docs[doc_id]
            report.skipped.append(
                Skipped(doc.source, f"an added document has the id {doc_id!r}; remove it first (qa remove {doc_id}) to index this file", doc_id=doc_id)
            )
    kept = set(keep)
    lost = []
    for doc_id, source in previously_added.items():
        if doc_id in docs or doc_id in remove or doc_id in kept:
            continue  # replaced now, removed now, or still in the store as it is
        try:
            data = read_original(doc_id)
        except OSError as exc:
            data, why = None, f"{doc_id} ({exc.strerror or exc})"
        else:
            why = f"{doc_id} (no original kept)"
        if data is not None:
            result = document_from_bytes(data, suffix_of(doc_id), doc_id, source, added=True)
            if isinstance(result, Document):
                docs[doc_id] = result
                continue
            why = f"{doc_id} ({result.reason})"
        # An extraction that times out on a busy machine, a parser that changed, an upload from
        # before originals were kept: the text the index holds still serves.
        if (held := stored(doc_id)) is not None:
            docs[doc_id] = held
            continue
        lost.append(why)
    if lost:
        note = f"could not re-read added documents {', '.join(lost)}; add them again"
        logger.warning(note)
        report.note = "; ".join(n for n in (report.note, note) if n)


def protected_ids(old: Mapping[str, str], added: Iterable[str], folder: str | os.PathLike[str] | None) -> set[str]:
    """Of ``old`` (indexed id -> source), the ids a folder sync must not drop: added ones
    (also uploads from before origins were recorded, source ``upload:...``) and, with
    ``folder``, those whose source is not in that folder."""
    root = Path(folder) if folder is not None else None
    added = set(added)
    return {
        d for d, source in old.items()
        if d in added or source.startswith("upload:") or (root is not None and not _under(source, root))
    }


def plan_changes(
    report: IndexReport,
    docs: Mapping[str, Document],
    old: Mapping[str, T],
    needs_update: Callable[[Document, T], bool],
    *,
    remove: Iterable[str],
    remove_missing: bool,
    keep: Iterable[str] = (),
) -> set[str]:
    """What an update does, whichever store holds ``old`` (indexed id -> stored state):
    fills ``report.removed/added/changed/unchanged`` and returns the ids to drop.

    With ``remove_missing`` indexed documents not among ``docs`` are dropped, except those
    ``report.skipped`` for a transient read error (their indexed version is kept) and those in
    ``keep`` (added documents, and documents of other folders): only ``remove`` drops them.
    """
    unreadable_now = {s.doc_id for s in report.skipped if s.transient and s.doc_id}
    missing = set(old) - set(docs) - unreadable_now - set(keep)
    dropped = set(remove) | (missing if remove_missing else set())
    dropped &= set(old)
    report.removed = sorted(dropped)
    report.added = sorted(d for d in docs if d not in old)
    report.changed = sorted(d for d in docs if d in old and needs_update(docs[d], old[d]))
    report.unchanged = sum(1 for d in old if d not in dropped and d not in report.changed)
    return dropped


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
    folder: str | os.PathLike[str] | None = None,
    assign_ids: Callable[[list[Document], Mapping[str, str]], list[Document]] | None = None,
) -> IndexReport:
    """Add or update ``documents`` in the index at ``index_dir`` and drop ``remove``.

    With ``remove_missing`` every indexed document not among ``documents`` is dropped
    (folder sync), except those ``skipped`` for a transient read error, whose indexed
    version is kept, added documents (``origin="added"``: only ``remove`` drops them) and,
    with ``folder``, documents whose source is not in that folder. With ``rebuild`` nothing
    of the previous index is reused (as after a change of model, chunking or format): every
    document is chunked and embedded again -- added ones read again from the originals the
    index keeps, and those an update would keep but ``documents`` does not bring (other
    folders', unreadable ones, added ones whose original cannot be read) from the text the
    index holds. So a rebuild drops no more than an update would.

    ``index_dir`` may be a ``postgresql://`` URL: the plan is the same, the store carries it out
    (:meth:`embeddings.stores.base.StoreWriter.apply`: one commit for a directory, one transaction
    per document in the database).

    ``assign_ids``: given ``documents`` and the stored ``{doc_id: source}``, returns the
    documents to write in their place (uploads take their ids here, under the writer lock, so
    two writers cannot both take a free id; :func:`assign_upload_ids`).

    Raises:
        RuntimeError: another process holds the index's writer lock.
        IndexLoadError: neither a folder sync (``remove_missing``) nor ``rebuild``, and the stored
            index cannot be read (or not carried into a rebuild): nothing is changed, the message
            says how to rebuild.
    """
    started = time.perf_counter()
    encoder = encoder or get_encoder()
    wanted = IndexMeta(
        encoder.name, encoder.dimension, _chunking_params(max_tokens, overlap_sentences), TOKENIZER_VERSION,
        encoder_variant(encoder),
    )
    documents = list(documents)
    store = writable_store(index_dir)
    report = IndexReport(directory=store.location, skipped=list(skipped))
    with store.writer(wait_s=lock_wait_s) as writer:
        previous: IndexMeta | None = None
        try:
            previous = writer.meta()
        except IndexLoadError as exc:
            if not (remove_missing or rebuild):
                # Only a folder sync (it reads its folder again) or an explicit rebuild may start
                # afresh from an unreadable index; an add would leave its documents alone in a new one.
                raise IndexLoadError(f"{exc}. Nothing was added or removed") from exc
            report.note = f"previous index unusable ({exc}); building from scratch"
            logger.warning(report.note)
        if assign_ids is not None:
            documents = assign_ids(documents, writer.sources() if previous is not None else {})
        docs = {d.doc_id: d for d in documents}
        for doc_id, doc in list(docs.items()):
            if (why := writer.unstorable(doc)) is not None:
                del docs[doc_id]
                report.skipped.append(Skipped(doc.source, why, doc_id))
        fresh = rebuild or previous is None
        if why := reuse_problem(previous, wanted):
            report.note, fresh = why, True
        stored = writer.states() if previous is not None else {}
        remove = set(remove)
        added = writer.added()  # whatever the stored format: a rebuild brings them back

        def held(doc_id: str) -> Document | None:
            """A stored document as the index holds it (for a rebuild that cannot read it again)."""
            if doc_id not in stored:
                return None
            try:
                return _document_of(writer.stored_document(doc_id))
            except (IndexLoadError, KeyError) as exc:
                logger.warning("cannot read %s from the index: %s", doc_id, exc)
                return None

        settle_added(docs, added, writer.original, keep={} if fresh else stored, remove=remove, report=report, stored=held)
        writer.stage(docs)
        keep = protected_ids(writer.sources() if stored else {}, added, folder)
        dropped = plan_changes(
            report, docs, stored, writer.needs_update, remove=remove, remove_missing=remove_missing, keep=keep
        )
        if fresh:
            # Nothing stored is reused, yet nothing is dropped that an update would keep: documents
            # of other folders, added ones and those unreadable now are carried over from the text
            # the index holds, and embedded again with the rest.
            carried = [d for d in stored if d not in docs and d not in dropped]
            lost = []
            for doc_id in carried:
                if (doc := held(doc_id)) is not None:
                    docs[doc_id] = doc
                else:
                    lost.append(doc_id)
            if lost and not (remove_missing or rebuild):
                raise IndexLoadError(
                    f"cannot read {', '.join(lost)} from index {store.location!r} to carry them into the rebuilt index; "
                    "rebuild it from its folders (python -m qa index DOCS_DIR --index ... --rebuild), then add again. "
                    "Nothing was added or removed"
                )
            if lost:
                note = f"could not carry over {', '.join(lost)} (unreadable in the old index); index their folders again"
                logger.warning(note)
                report.note = "; ".join(n for n in (report.note, note) if n)
                report.removed = sorted(set(report.removed) | set(lost))
        if fresh:
            # The report of a new index: every document goes in as added; what the update drops is still named.
            report.added, report.changed, report.unchanged = sorted(docs), [], 0
        plan = Plan(wanted, fresh=fresh, documents=[docs[d] for d in report.added + report.changed], remove=dropped)

        def embed(batch: list[Document]) -> list[NewDocument]:
            return embed_documents(
                list(batch), encoder, max_tokens=max_tokens, overlap_sentences=overlap_sentences,
                show_progress=show_progress,
            )

        applied = writer.apply(plan, embed)
    report.chunks = applied.chunks
    report.embedded_chunks = applied.embedded_chunks
    report.seconds = time.perf_counter() - started
    return report


def _document_of(record: DocumentRecord) -> Document:
    """A stored document as a :class:`Document` again (its indexed text, origin and kept original)."""
    pages = tuple(record.pages) if record.pages is not None else None
    return Document(record.doc_id, record.source, record.text, record.sha256, pages, record.origin, original=record.original)


def embed_documents(
    documents: list[Document],
    encoder: Encoder,
    *,
    max_tokens: int = config.CHUNK_MAX_TOKENS,
    overlap_sentences: int = config.CHUNK_OVERLAP_SENTENCES,
    show_progress: bool = False,
) -> list[NewDocument]:
    """``documents`` chunked, embedded (one batched call for all their chunks) and tokenised
    for BM25: what a writer of either store adds, one :class:`NewDocument` per document."""
    pending: list[tuple[DocumentRecord, list[ChunkRecord]]] = []
    texts: list[str] = []
    for doc in documents:
        records: list[ChunkRecord] = []
        for c in chunk_text(doc.doc_id, doc.text, encoder.count_tokens, max_tokens, overlap_sentences):
            records.append(ChunkRecord(c.chunk_id, doc.doc_id, c.start, c.end))
            texts.append(c.text)
        pending.append(
            (DocumentRecord(doc.doc_id, doc.source, doc.sha256, doc.text, doc.page_starts(), doc.origin, doc.original), records)
        )
    big = show_progress and len(texts) > 64
    vectors = (
        encoder.encode(texts, batch_size=config.EMBED_BATCH_SIZE, show_progress=big, bulk=True)
        if texts
        else np.zeros((0, encoder.dimension), dtype=np.float32)
    )
    # A large folder's keyword step takes a while after its embedding bar ends: its own bar.
    tick = progress_ticker(len(texts), big, "BM25 terms", "chunk")
    tokens = []
    for text in texts:
        tokens.append(tokenize(text))
        tick()
    out: list[NewDocument] = []
    row = 0
    for record, records in pending:
        n = len(records)
        out.append(NewDocument(record, records, vectors[row : row + n], tokens[row : row + n]))
        row += n
    return out


def compact_index(index_dir: str | os.PathLike[str], *, lock_wait_s: float = 0.0) -> IndexReport:
    """Merge every segment of the directory index at ``index_dir`` into one, dropping the
    rows of removed and replaced documents (``python -m qa index --compact``). Nothing is
    embedded or tokenised again.

    Raises:
        ValueError: ``index_dir`` is a PostgreSQL URL, or holds no index.
        RuntimeError: another process holds the writer lock.
    """
    if is_store_url(index_dir):
        raise ValueError("--compact is for a directory index; PostgreSQL maintains its own indexes (VACUUM)")
    started = time.perf_counter()
    if not has_index(index_dir):  # said before the lock, which would create an empty index folder
        raise IndexLoadError(f"no index at {str(index_dir)!r} to compact; build one with: python -m qa index DOCS_DIR --index {index_dir}")
    with write_lock(index_dir, wait_s=lock_wait_s):
        before = read_manifest(index_dir)  # IndexLoadError (a ValueError) says how to build one
        segments = len(before.segments)
        written = compact(index_dir)
    report = IndexReport(directory=str(index_dir), unchanged=len(before.documents), chunks=before.num_chunks)
    report.note = (
        f"compacted {plural(segments, 'segment')} into 1" if written is not None else "already compact (one segment, no removed rows)"
    )
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
        ValueError: ``docs_dir`` is not a directory, or ``index_dir`` cannot hold an index
            (:func:`~embeddings.stores.index.check_index_folder`).
    """
    # An index kept inside its documents folder is not read as documents.
    passed_over: dict[str, int] = {}
    documents, skipped = load_folder(docs_dir, exclude=_own_folder(index_dir), passed_over=passed_over)
    # Skipped files are in the report; callers (CLI, UI) show them once. Only documents of this
    # folder may be dropped for having left it; added ones never are.
    report = update_index(index_dir, documents, remove_missing=True, skipped=skipped, folder=docs_dir, **options)  # type: ignore[arg-type]
    return _with_note(report, passed_over_note(passed_over))


def _own_folder(index_dir: str | os.PathLike[str]) -> Path | None:
    """The folder of a directory index, checked before any document is read (refused, not after
    reading them all: :func:`~embeddings.stores.index.check_index_folder`), to leave out of a
    folder read; ``None`` for a database URL."""
    return None if is_store_url(index_dir) else check_index_folder(index_dir)


def _with_note(report: IndexReport, note: str) -> IndexReport:
    report.note = "\n".join(n for n in (report.note, note) if n)
    return report


def ensure_index(
    index_dir: str | os.PathLike[str] = config.DEFAULT_INDEX_DIR,
    docs_dir: str | os.PathLike[str] = config.DEFAULT_DOCS_DIR,
) -> Path:
    """Build the index over ``docs_dir`` if ``index_dir`` holds none yet, or rebuild it when it
    can no longer answer (an older format, or another encoder variant than the configured one);
    return ``index_dir``.

    Only for the default index, which the project builds itself: an index the user names is
    never rebuilt behind their back (it is refused with the rebuild command instead).
    """
    if is_store_url(index_dir):
        if writable_store(index_dir).summary() is None:
            logger.info("no index at %s yet; building it from %s", display_location(index_dir), docs_dir)
            index_folder(docs_dir, index_dir, lock_wait_s=600.0)
        return index_dir  # type: ignore[return-value]
    if not has_index(index_dir):
        logger.info("no index at %s yet; building it from %s", display_location(index_dir), docs_dir)
        index_folder(docs_dir, index_dir, lock_wait_s=600.0)
    elif (why := _outdated(index_dir)) is not None:
        logger.warning("rebuilding the default index %s from %s: %s", index_dir, docs_dir, why)
        index_folder(docs_dir, index_dir, lock_wait_s=600.0)
    return Path(index_dir)


def _outdated(index_dir: str | os.PathLike[str]) -> str | None:
    """Why the index at ``index_dir`` cannot serve questions as configured, or ``None``: an
    unreadable or older format, or what :func:`~embeddings.stores.base.reuse_problem` refuses to
    keep (another encoder variant or BM25 tokenizer). Its own model and chunking are kept: they still answer."""
    try:
        stored = manifest_meta(read_manifest(index_dir))
    except IndexLoadError as exc:
        return str(exc)
    encoder = get_encoder(stored.embedding_model)  # cheap: the model loads lazily
    wanted = dataclasses.replace(stored, tokenizer=TOKENIZER_VERSION, encoder_variant=encoder_variant(encoder))
    return reuse_problem(stored, wanted) or None


# --------------------------------------------------------------------------- add / remove / list


def _manifest(index_dir: str | os.PathLike[str]) -> dict | None:
    """The live manifest of ``index_dir`` (a store's summary), or ``None`` when there is no readable index."""
    return writable_store(index_dir).summary()


def _encoder_for(index_dir: str | os.PathLike[str], encoder: Encoder | None) -> Encoder:
    """``encoder``, else the embedding model the index at ``index_dir`` was built with (default model for a new index),
    computing as the configured variant (``QA_ENCODER_VARIANT``): an index of another variant is then re-embedded
    whole, since questions embedded with the configured variant would be refused by it."""
    if encoder is not None:
        return encoder
    manifest = _manifest(index_dir)
    return get_encoder(manifest.get("embedding_model") if manifest else None)


def collect_files(
    paths: Iterable[str | os.PathLike[str]], *, exclude: str | os.PathLike[str] | None = None, passed_over: dict[str, int] | None = None
) -> list[tuple[Path, str]]:
    """``(path, doc_id)`` for files and folders given to ``qa add``.

    A file's id is its file name; the files under a folder get their path relative to that
    folder (as ``qa index`` does), e.g. ``add report.pdf notes/`` gives ``report.pdf`` and
    ``notes/2024/q1.md -> 2024/q1.md``. A file given by name is taken whatever its type
    (an unsupported one is then skipped with its reason); in a folder only supported
    types are picked up (``passed_over`` counts the others), never under ``exclude`` (the index's own folder).

    Raises:
        ValueError: a path is empty or does not exist, or two files would get the same document id.
    """
    found: list[tuple[Path, str]] = []
    for raw in paths:
        if not str(raw).strip():
            raise ValueError("an empty path was given; name the files or folders to add")
        path = Path(raw)
        if path.is_dir():
            found.extend(discover(path, exclude=Path(exclude) if exclude is not None else None, passed_over=passed_over))
        elif path.is_file():
            found.append((path, path.name))
        else:
            raise ValueError(f"{str(path)!r} does not exist (or is not a regular file or folder)")
    owners: dict[str, Path] = {}
    clashes: list[str] = []
    for path, doc_id in found:
        if doc_id in owners and owners[doc_id].resolve() != path.resolve():
            clashes.append(f"{doc_id!r} ({owners[doc_id]} and {path})")
        owners.setdefault(doc_id, path)
    if clashes:
        raise ValueError(
            "two added files would get the same document id: " + "; ".join(clashes) + ". Rename one, or add them "
            "through a common folder so their ids keep their subfolders"
        )
    unique: dict[str, Path] = {}
    for path, doc_id in found:
        unique.setdefault(doc_id, path)
    return [(p, d) for d, p in unique.items()]


def _read_all(files: list[tuple[Path, str]]) -> tuple[list[Document], list[Skipped]]:
    documents: list[Document] = []
    skipped: list[Skipped] = []
    for path, doc_id in files:
        if not is_supported(path.name):
            skipped.append(Skipped(str(path), f"unsupported file type; supported: {', '.join(SUPPORTED_SUFFIXES)}"))
            continue
        result = read_document(path, doc_id, added=True)  # a Skipped names the file as given
        (skipped if isinstance(result, Skipped) else documents).append(result)  # type: ignore[arg-type]
    return documents, skipped


def add_documents(
    index_dir: str | os.PathLike[str],
    documents: list[Document],
    skipped: list[Skipped] | None = None,
    *,
    encoder: Encoder | None = None,
    lock_wait_s: float = 30.0,
    show_progress: bool = False,
    assign_ids: Callable[[list[Document], Mapping[str, str]], list[Document]] | None = None,
) -> IndexReport:
    """Add (or replace, by id) ``documents`` in the index at ``index_dir``; nothing else changes.

    When every file was skipped the index is left as it is (not even created). ``assign_ids``:
    see :func:`update_index`.
    """
    skipped = list(skipped or [])
    for s in skipped:
        # The report carries them; the CLI and the chat show each once (a warning here, or an
        # info line under -v, printed it twice).
        logger.debug("skipped %s: %s", s.path, s.reason)
    if not documents:
        manifest = _manifest(index_dir)
        # A directory manifest maps ids to documents; a PostgreSQL summary counts them.
        stored = manifest.get("documents", {}) if manifest else {}
        return IndexReport(
            directory=display_location(index_dir),  # printed: a URL's password never is
            unchanged=stored if isinstance(stored, int) else len(stored),
            skipped=skipped,
            chunks=int(manifest.get("num_chunks", 0)) if manifest else 0,
            note="nothing to add",
        )
    encoder = _encoder_for(index_dir, encoder)
    # Chunk like the index was built: other chunking would make update_index start afresh
    # with only the added documents.
    chunking = (_manifest(index_dir) or {}).get("chunking") or {}
    return update_index(
        index_dir, documents, encoder=encoder, skipped=skipped, lock_wait_s=lock_wait_s, show_progress=show_progress,
        assign_ids=assign_ids, max_tokens=int(chunking.get("max_tokens", config.CHUNK_MAX_TOKENS)),
        overlap_sentences=int(chunking.get("overlap_sentences", config.CHUNK_OVERLAP_SENTENCES)),
    )


def add_files(
    index_dir: str | os.PathLike[str],
    paths: Iterable[str | os.PathLike[str]],
    *,
    encoder: Encoder | None = None,
    lock_wait_s: float = 30.0,
    show_progress: bool = False,
) -> IndexReport:
    """Add files and folders to the index at ``index_dir`` (created if missing), incrementally.

    Ids follow :func:`collect_files`; a file whose id is already indexed replaces that
    document (re-embedded only if its bytes changed). Unreadable files are skipped and
    listed in the report; documents not named here are kept. New documents are embedded
    with the model the index was built with.

    Raises:
        ValueError: a path does not exist, two files would get the same id, or ``index_dir``
            cannot hold an index (:func:`~embeddings.stores.index.check_index_folder`).
        RuntimeError: another process holds the index's writer lock.
    """
    passed_over: dict[str, int] = {}
    documents, skipped = _read_all(collect_files(paths, exclude=_own_folder(index_dir), passed_over=passed_over))
    report = add_documents(index_dir, documents, skipped, encoder=encoder, lock_wait_s=lock_wait_s, show_progress=show_progress)
    return _with_note(report, passed_over_note(passed_over))


def unknown_id_message(unknown: list[str], known: Iterable[str], index_dir: str | os.PathLike[str]) -> str:
    """The error for ids that are not in an index, with the closest indexed ids."""
    known = sorted(known)
    by_name: dict[str, list[str]] = {}
    for doc_id in known:
        by_name.setdefault(doc_id.rsplit("/", 1)[-1].lower(), []).append(doc_id)
    hints: list[str] = []
    for doc_id in unknown:
        close = by_name.get(doc_id.rsplit("/", 1)[-1].lower(), []) + difflib.get_close_matches(doc_id, known, n=3, cutoff=0.5)
        close = list(dict.fromkeys(c for c in close if c != doc_id))[:3]
        hints.append(f"{doc_id!r}" + (f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""))
    noun = "document" if len(unknown) == 1 else "documents"
    listing = f"; list them with: python -m qa list --index {display_location(index_dir)}" if known else "; the index is empty"
    return f"no {noun} {', '.join(hints)} in index {str(index_dir)!r} ({len(known)} indexed{listing}). Nothing was removed"


def remove_documents(
    index_dir: str | os.PathLike[str], doc_ids: Iterable[str], *, lock_wait_s: float = 30.0
) -> IndexReport:
    """Remove documents by id from the index at ``index_dir``. Nothing is embedded.

    Raises:
        ValueError: no index there, no id given, or an id is not indexed (then nothing
            is removed; the message lists close matches).
        RuntimeError: another process holds the index's writer lock.
    """
    ids = list(dict.fromkeys(str(d) for d in doc_ids))
    if not ids:
        raise ValueError("no document id given; name the documents to remove")
    started = time.perf_counter()
    store = writable_store(index_dir)
    if not store.has_index():  # said before the lock, which would create an empty index folder
        raise IndexLoadError(f"no index at {store.location!r}, so nothing was removed; build one with: python -m qa index DOCS_DIR --index {store.location}")
    with store.writer(wait_s=lock_wait_s) as writer:
        # Checked under the lock, so the ids cannot vanish between the check and the update.
        meta = writer.meta(required=True)  # IndexLoadError (a ValueError) says how to build one
        known = writer.states()
        unknown = [d for d in ids if d not in known]
        if unknown:
            raise ValueError(unknown_id_message(unknown, known, store.location))
        chunks_before = writer.counts()[1]
        # Nothing is embedded: a directory's removed rows become tombstones, nothing else is rewritten.
        applied = writer.apply(Plan(meta, remove=set(ids)), lambda batch: [])
    return IndexReport(
        directory=store.location,
        removed=sorted(ids),
        unchanged=applied.documents,
        chunks=applied.chunks,
        removed_chunks=chunks_before - applied.chunks,
        seconds=time.perf_counter() - started,
    )


@dataclass(frozen=True)
class DocumentInfo:
    """One indexed document, for listings."""

    doc_id: str
    kind: str
    chunks: int
    characters: int
    pages: int | None
    source: str
    #: ``"added"`` (qa add, an upload: kept until removed) or ``"folder"`` (synced from a folder).
    origin: str = "folder"


def list_documents(index: str | os.PathLike[str] | VectorIndex | object) -> list[DocumentInfo]:
    """The documents of an index (a directory, a ``postgresql://`` URL or a loaded index), sorted by id."""
    if isinstance(index, VectorIndex):
        stored = entries_listing(index.entries)
    elif isinstance(index, (str, os.PathLike)):
        stored = writable_store(index).documents()
    else:  # a loaded store (IndexStore)
        stored = index.documents()  # type: ignore[attr-defined]
    return [document_info(d) for d in stored]


def document_info(stored: StoredDocument) -> DocumentInfo:
    """The listing row of a store's document."""
    return DocumentInfo(
        doc_id=stored.doc_id, kind=kind_of(stored.doc_id), chunks=stored.chunks, characters=stored.characters,
        pages=stored.pages, source=stored.source, origin="added" if stored.added else "folder",
    )


# --------------------------------------------------------------------------- uploads (the chat)

#: Largest file accepted through the chat, in bytes (``qa.config.MAX_UPLOAD_MB``).
MAX_UPLOAD_BYTES: int = config.MAX_UPLOAD_MB * 1024 * 1024
#: Longest uploaded file name kept (characters).
MAX_UPLOAD_NAME_CHARS = 150
_UNSAFE_NAME_CHARS = re.compile(r"[^\w.\- ()]")


def upload_base_name(name: str) -> str:
    """An uploaded file's ``name`` as the user knows it: the base name (either slash), NFC,
    without control and format characters (lone surrogates included), outer spaces stripped.
    Kept in the document's source (``upload:<name>``) so a re-upload finds its document."""
    base = unicodedata.normalize("NFC", str(name)).replace("\\", "/").rsplit("/", 1)[-1]
    return "".join(c for c in base if unicodedata.category(c)[0] != "C").strip(" ")


def safe_upload_name(name: str) -> str:
    """A safe document id for an uploaded file's ``name``: its base name only, with
    characters other than letters, digits and ``._- ()`` replaced by ``_``.

    Raises:
        ValueError: nothing usable is left, or the name is hidden (starts with a dot).
    """
    base = _UNSAFE_NAME_CHARS.sub("_", upload_base_name(name)).strip(" ")
    if not base or base.strip("._ ") == "":
        raise ValueError(f"file name {name!r} is empty or only dots; rename the file")
    if base.startswith("."):
        raise ValueError(f"file name {name!r} is hidden (starts with a dot); rename the file")
    return _fit_name(base)


def _fit_name(base: str, tag: str = "") -> str:
    """``base`` with ``tag`` before its extension, cut to :data:`MAX_UPLOAD_NAME_CHARS`
    (the stem is shortened; the extension and the tag are kept)."""
    stem, dot, suffix = base.rpartition(".")
    if not dot:
        stem, suffix = base, ""
    room = MAX_UPLOAD_NAME_CHARS - len(tag) - len(dot) - len(suffix)
    return stem[: max(room, 1)].rstrip(" ") + tag + dot + suffix


def _upload_id(doc_id: str, shown: str, stored: Mapping[str, str], taken: set[str]) -> str:
    """The id of an upload named ``shown`` whose safe name is ``doc_id``, given the index's
    ``stored`` sources by id and the ids ``taken`` earlier in this upload.

    A re-upload of the same name replaces its document; a different file whose name was made
    safe to the same id (``a+b.pdf``, ``a&b.pdf``), or a folder or ``qa add`` document of that
    id, gets the safe name with a short hash of its own name (``a_b-1f3a9c2e.pdf``) instead of
    replacing what is there: nothing is removed without an explicit remove.
    """
    source = f"upload:{shown}"
    same = sorted(d for d, s in stored.items() if s == source and d not in taken)
    if same:  # this name was uploaded before (under its plain or its hashed id)
        return doc_id if doc_id in same else same[0]
    candidate, n = doc_id, 0
    while candidate in stored or candidate in taken:  # the hashed id is checked too (a file may bear it)
        salt = f"{shown}\n{n}" if n else shown
        candidate, n = _fit_name(doc_id, "-" + hashlib.sha256(salt.encode("utf-8")).hexdigest()[:8]), n + 1
    return candidate


def assign_upload_ids(documents: list[Document], stored: Mapping[str, str]) -> list[Document]:
    """Each upload's id (:func:`_upload_id`; the name as uploaded is its source's
    ``upload:<name>``), given the index's ``stored`` sources: called under its writer lock."""
    taken: set[str] = set()
    out = []
    for doc in documents:
        doc_id = _upload_id(doc.doc_id, doc.source.removeprefix("upload:"), stored, taken)
        taken.add(doc_id)
        out.append(doc if doc_id == doc.doc_id else dataclasses.replace(doc, doc_id=doc_id))
    return out


def _human_size(n: int) -> str:
    """``1536`` -> ``"1.5 KB"``; ``20971520`` -> ``"20.0 MB"``."""
    if n < 1024:
        return f"{n} bytes"
    if n < 1024 * 1024:
        return f"{n / 1024:.1f} KB"
    return f"{n / 1048576:.1f} MB"


def index_directory(index: object) -> Path | str | None:
    """Where uploads go: the index directory (or ``postgresql://`` URL) ``index`` names
    (``None``: the default index), or ``None`` for an in-memory index object."""
    if index is None:
        index = config.DEFAULT_INDEX_DIR
    if is_store_url(index):
        return str(index)
    if isinstance(index, (str, os.PathLike)):
        return Path(index)
    return None


def add_uploads(
    index_dir: str | os.PathLike[str],
    uploads: Iterable[tuple[str, str | os.PathLike[str]]],
    *,
    max_bytes: int = MAX_UPLOAD_BYTES,
    encoder: Encoder | None = None,
    lock_wait_s: float = 60.0,
    progress: Callable[[float, str], None] | None = None,
) -> IndexReport:
    """Index files uploaded through the chat: ``(original name, temporary path)`` pairs.

    ``progress(fraction, what)`` is called as each file is extracted and before the
    embedding and index write (for the chat's progress bar).

    Each name goes through :func:`safe_upload_name` (its id in the index); a re-upload of a
    name replaces its document, and a different file whose safe name is already taken gets a
    hashed id (:func:`assign_upload_ids`). Files of an unsupported type, over ``max_bytes``, or with
    the name of another file of the same upload are refused. Refused and unreadable files are
    listed in ``report.skipped`` (by name, with the reason); the others are added as by
    :func:`add_files`, with the source ``upload:<name as uploaded>``.
    """
    documents: list[Document] = []
    skipped: list[Skipped] = []
    names: set[str] = set()
    uploads = list(uploads)
    report = progress or (lambda fraction, what: None)
    for n, (original, temp) in enumerate(uploads):
        shown = str(original).replace("\\", "/").rsplit("/", 1)[-1] or str(original)
        report(0.5 * n / max(len(uploads), 1), f"extracting {shown}")
        try:
            doc_id = safe_upload_name(original)
        except ValueError as exc:
            skipped.append(Skipped(shown, str(exc)))
            continue
        if not is_supported(doc_id):
            skipped.append(Skipped(doc_id, f"unsupported file type; upload one of {', '.join(SUPPORTED_SUFFIXES)}"))
            continue
        original_name = upload_base_name(original)
        if original_name in names:
            skipped.append(Skipped(doc_id, "another uploaded file has the same name; upload it separately or rename it"))
            continue
        try:
            f = open_regular(temp)  # a device or pipe would be read forever (/dev/zero has size 0)
            if f is None:
                skipped.append(Skipped(doc_id, "not a regular file; upload a file"))
                continue
            with f:
                size = os.fstat(f.fileno()).st_size
                if size <= max_bytes:
                    data = f.read(max_bytes + 1)  # bounded: the file may grow after the stat
                    size = max(size, len(data))
        except OSError as exc:
            skipped.append(Skipped(doc_id, f"cannot be read: {exc.strerror or exc}"))
            continue
        if size > max_bytes:
            skipped.append(Skipped(doc_id, f"too large ({_human_size(size)}); the limit is {_human_size(max_bytes)} per file"))
            continue
        # The type comes from the uploaded name: the temporary file may have no extension.
        result = document_from_bytes(data, suffix_of(doc_id), doc_id, f"upload:{original_name}", added=True)
        if isinstance(result, Skipped):
            skipped.append(Skipped(doc_id, result.reason))
            continue
        names.add(original_name)
        documents.append(result)
    report(0.5, f"embedding and indexing {plural(len(documents), 'document')}")
    done = add_documents(index_dir, documents, skipped, encoder=encoder, lock_wait_s=lock_wait_s, assign_ids=assign_upload_ids)
    report(1.0, "done")
    return done
