"""The directory store: :class:`~embeddings.stores.base.IndexStore` over a folder of immutable
segments switched by a manifest (:mod:`embeddings.stores.index`, :mod:`embeddings.stores.segment`).

An update is one atomic commit of a new generation under the folder's writer lock (a file
lock): only the new and changed documents go into one new segment, removed and replaced
ones become tombstones. Added documents' bytes are kept under ``originals/`` before the
commit names them, so a rebuild can read them again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from embeddings.stores.base import Applied, Embed, IndexMeta, Plan, StoredDocument
from embeddings.stores.index import (
    DocEntry,
    DocumentRecord,
    Manifest,
    added_entries,
    commit,
    has_index,
    keep_original,
    read_manifest,
    read_original,
    text_sha256,
    VectorIndex,
    tidy,
    write_lock,
)


def manifest_meta(manifest: Manifest) -> IndexMeta:
    """How the index of ``manifest`` was built."""
    return IndexMeta(
        manifest.embedding_model, manifest.dimension, dict(manifest.chunking), manifest.tokenizer, manifest.encoder_variant
    )


class DirectoryWriter:
    """:class:`~embeddings.stores.base.StoreWriter` of a directory (the caller holds its lock)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = root
        self._manifest: Manifest | None = None
        self._before: dict[str, DocEntry] | None = None
        self._reader: VectorIndex | None = None  # opened only to carry stored texts into a rebuild

    def close(self) -> None:
        """Close what :meth:`stored_document` opened."""
        if self._reader is not None:
            for seg in self._reader.segments:
                seg.close()
            self._reader = None

    def meta(self, *, required: bool = False) -> IndexMeta | None:
        if not required and not has_index(self.root):
            return None
        self._manifest = read_manifest(self.root)  # the manifest only: no segment is opened
        return manifest_meta(self._manifest)

    def states(self) -> Mapping[str, DocEntry]:
        return self._manifest.documents if self._manifest is not None else {}

    def needs_update(self, doc: Any, old: DocEntry) -> bool:
        # Same bytes but different extracted text happens when extraction itself improved
        # (e.g. an index built before Markdown/HTML extraction): re-chunk those too. A folder
        # document added by hand (or the other way round) is rewritten to record its new origin.
        pages = list(doc.pages) if doc.pages is not None else None
        return (
            doc.sha256 != old.sha256
            or text_sha256(doc.text) != old.text_sha256
            or pages != old.pages
            or doc.origin != old.origin
            or (doc.origin == "added" and doc.original != old.original)
        )

    def sources(self) -> dict[str, str]:
        return {d: e.source for d, e in self.states().items()}

    def added(self) -> dict[str, str]:
        # From the manifest just read, or (on --rebuild, or a manifest of another format) read
        # raw, whatever its version.
        if self._before is None:
            if self._manifest is not None:
                self._before = {d: e for d, e in self._manifest.documents.items() if e.added}
            else:
                self._before = added_entries(self.root)
        return {d: e.source for d, e in self._before.items()}

    def original(self, doc_id: str) -> bytes | None:
        self.added()
        entry = self._before.get(doc_id) if self._before else None
        return read_original(self.root, entry.original) if entry is not None and entry.original else None

    def stored_document(self, doc_id: str) -> DocumentRecord:
        entry = self.states()[doc_id]  # KeyError: not stored
        if self._reader is None:
            self._reader = VectorIndex.load(self.root)  # the generation just read: we hold the lock
        record = self._reader.document(doc_id)
        return dataclasses.replace(record, origin="added" if entry.added else "folder", original=entry.original)

    def unstorable(self, doc: Any) -> str | None:
        return None

    def stage(self, docs: dict[str, Any]) -> None:
        from qa.ingest.extraction import suffix_of

        for doc_id, doc in list(docs.items()):
            if doc.data is not None:  # an added document's bytes: kept before the commit names them
                name = keep_original(self.root, doc.data, suffix_of(doc_id))
                docs[doc_id] = dataclasses.replace(doc, data=None, original=name)

    def counts(self) -> tuple[int, int]:
        manifest = self._manifest
        return (len(manifest.documents), manifest.num_chunks) if manifest is not None else (0, 0)

    def apply(self, plan: Plan, embed: Embed) -> Applied:
        base = None if plan.fresh else self._manifest
        if base is not None and not plan:
            # Nothing to do: leave the live generation as it is (only clear a killed writer's debris).
            tidy(self.root)
            return Applied(len(base.documents), base.num_chunks)
        # Only new and changed documents are chunked, embedded (one batched call) and tokenised.
        new_docs = embed(plan.documents) if plan.documents else []
        meta = plan.meta
        # Replaced documents are dropped from the manifest too; their new version is in ``add``.
        self._manifest = commit(
            self.root, base,
            embedding_model=meta.embedding_model, dimension=meta.dimension, chunking=meta.chunking,
            tokenizer=meta.tokenizer, add=new_docs, remove=plan.remove, encoder_variant=meta.encoder_variant,
        )
        return Applied(
            len(self._manifest.documents), self._manifest.num_chunks, sum(len(d.chunks) for d in new_docs)
        )


class DirectoryStore:
    """:class:`~embeddings.stores.base.IndexStore` of the index folder ``root``."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = root
        self.location = str(root)

    @contextlib.contextmanager
    def writer(self, *, wait_s: float = 0.0) -> Iterator[DirectoryWriter]:
        with write_lock(self.root, wait_s=wait_s):
            writer = DirectoryWriter(self.root)
            try:
                yield writer
            finally:
                writer.close()

    def has_index(self) -> bool:
        return has_index(self.root)

    def documents(self) -> list[StoredDocument]:
        # The manifest has all a listing needs: no segment is opened, no text is read.
        return entries_listing(read_manifest(self.root).documents)

    def summary(self) -> dict | None:
        import json

        from embeddings.stores.index import current_generation

        if not has_index(self.root):
            return None
        try:
            return json.loads((current_generation(Path(self.root)) / "manifest.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None


def entries_listing(entries: Mapping[str, DocEntry]) -> list[StoredDocument]:
    """Listing rows of manifest ``entries`` (a directory's, or a loaded index's), sorted by id."""
    return [
        StoredDocument(
            doc_id=doc_id, source=e.source, chunks=e.chunks, characters=e.characters,
            pages=len(e.pages) if e.pages is not None else None, added=e.added,
        )
        for doc_id, e in sorted(entries.items())
    ]
