"""The one interface between the pipeline and an index store, and what every store shares.

A store is chosen by what ``--index`` names (:func:`embeddings.stores.writable_store`): a
directory (:mod:`embeddings.stores.directory`, over :mod:`embeddings.stores.index`) or a
``postgresql://`` URL (:mod:`embeddings.stores.postgres`). :mod:`qa.ingest.indexing` plans every
update once, embeds once, and hands the :class:`Plan` to whichever store; adding a third
store (OpenSearch, Qdrant, ...) means one new module in ``embeddings/stores/`` implementing
:class:`IndexStore` and :class:`StoreWriter` and declaring the URL schemes it serves
(``URL_SCHEMES``, ``URL_STORE``, ``URL_EXTRA``: :func:`embeddings.stores.open_store` finds it by
them, nothing else registers it), and its parameter in ``tests/embeddings/stores/test_stores.py``
(the contract suite runs over every store).

Writing (:class:`IndexStore`, :class:`StoreWriter`)::

    with store.writer(wait_s=...) as w:     # the store's writer lock (file lock / advisory lock)
        meta = w.meta()                     # IndexMeta, None (no index), or IndexLoadError (unusable)
        why = reuse_problem(meta, ...)      # "" or the one rebuild message (model, variant, chunking, tokenizer)
        old = w.states()                    # doc_id -> the store's own per-document state
        ... plan (qa.ingest.indexing.plan_changes, w.needs_update) ...
        w.apply(plan, embed)                # add/replace/remove: one commit (directory: a new
                                            # generation) or one transaction per document (PostgreSQL)

Reading: both the directory index (:class:`embeddings.stores.index.VectorIndex`) and
:class:`~embeddings.stores.postgres.PostgresStore` carry ``embedding_model``, ``dimension``,
``encoder_variant``, ``counts()``, ``document(doc_id)``; the listings go through
:meth:`IndexStore.documents`.

Nothing here imports a store, an encoder or :mod:`qa` (no import circle): stores import this.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable
from urllib.parse import unquote

from embeddings.encoders.variants import LEGACY_VARIANT
from embeddings.stores.records import DocumentRecord, Hit

#: ``scheme://`` at the start of a location: a URL names a store served by a module of
#: :mod:`embeddings.stores` (two letters at least, so a Windows drive ``C:/`` stays a path).
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+://")


def is_store_url(location: object) -> bool:
    """True when ``location`` is a URL (``postgresql://...``, or any ``scheme://...``): it names a
    store server, not a directory. Which store serves the scheme is :func:`embeddings.stores.open_store`'s
    question (an unknown scheme is refused there with the known ones)."""
    return isinstance(location, str) and _URL.match(location.strip()) is not None


def index_location(text: str | os.PathLike[str]) -> str | os.PathLike[str]:
    """What a user typed for ``--index`` / ``QA_INDEX_DIR``: a URL stays a string (a ``Path``
    would collapse its ``//``), anything else becomes a :class:`pathlib.Path`."""
    from pathlib import Path

    if isinstance(text, str) and is_store_url(text):
        return text.strip()
    return Path(text)


def display_location(location: object) -> str:
    """``location`` for messages and logs: a URL's password is replaced by ``***`` wherever one
    may be: from the first ``:`` to the last ``@`` (also ``u:ab#cd@h`` and ``u:ab?cd@h``, which
    ``urlsplit`` cuts at ``#`` / ``?`` while libpq reads them as passwords; masking too much is
    the safe side) and in a ``password=`` parameter."""
    text = str(location)
    if not is_store_url(text):
        return text
    scheme, _, rest = text.partition("://")
    at = rest.rfind("@")
    if at >= 0 and ":" in rest[:at]:
        rest = rest[: rest.index(":")] + ":***" + rest[at:]
    # libpq decodes parameter names too: ?pass%77ord= is the password.
    rest = re.sub(r"([?&])([^=&]*)=([^&]*)", lambda m: f"{m[1]}{m[2]}=***" if unquote(m[2]).lower() == "password" else m[0], rest)
    return f"{scheme}://{rest}"


def location_secrets(location: object) -> list[str]:
    """What of a URL may be (part of) its password, longest first: the span :func:`display_location`
    masks, the pieces of it between ``@`` (libpq cuts an unencoded ``@`` into user, password and
    host, and its errors name the host: ``failed to resolve host 'SECRET@db'``), their decoded
    forms, and ``password=`` values. Pieces under 4 characters are left: they would mask words."""
    text = str(location)
    if not is_store_url(text):
        return []
    _, _, rest = text.partition("://")
    found: set[str] = set()
    at = rest.rfind("@")
    if at >= 0 and ":" in rest[:at]:
        secret = rest[rest.index(":") + 1 : at]
        # libpq also cuts at "/" (what follows reads as the port and database name).
        found |= {secret, unquote(secret), *re.split("[@/]", secret), *re.split("[@/]", unquote(secret))}
    for m in re.finditer(r"[?&]([^=&]*)=([^&]*)", rest):
        if unquote(m[1]).lower() == "password":
            found |= {m[2], unquote(m[2])}
    return sorted((f for f in found if len(f) >= 4), key=len, reverse=True)


def mask_secrets(text: str, secrets: Iterable[str]) -> str:
    """``text`` with each of ``secrets`` replaced by ``***``, the longest first (a piece of a
    password must not be masked before the whole)."""
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def scrub_secrets(text: str, location: object) -> str:
    """``text`` (an error from the database driver, say) with anything that may be the
    password of ``location`` replaced by ``***``."""
    return mask_secrets(text, location_secrets(location))


# --------------------------------------------------------------------------- metadata


@dataclass(frozen=True)
class IndexMeta:
    """What every store records about how its index was built (checked before reusing it)."""

    embedding_model: str
    dimension: int
    chunking: dict[str, int]
    tokenizer: str
    #: The encoder variant tag that embedded the documents (``None``: not recorded, read as fp32).
    encoder_variant: str | None = None


def variant_change(old: str | None, new: str | None) -> str:
    """Why vectors of encoder variant ``old`` cannot be reused by an encoder of variant ``new``
    (``None`` = not recorded, read as fp32), or ``""`` when they can. For every store."""
    old_variant = old or LEGACY_VARIANT
    if old_variant == (new or LEGACY_VARIANT):
        return ""
    return f"previous index used encoder variant {old_variant!r}; re-embedding everything with {new!r}"


def reuse_problem(previous: IndexMeta | None, wanted: IndexMeta) -> str:
    """Why the stored index ``previous`` cannot be updated in place for ``wanted`` (another
    embedding model or dimension, encoder variant, chunking or BM25 tokenizer): the one
    message every store's report carries before rebuilding; ``""`` when it can (or there is none)."""
    if previous is None:
        return ""
    if previous.embedding_model != wanted.embedding_model or previous.dimension != wanted.dimension:
        return f"previous index used embedding model {previous.embedding_model!r}; re-embedding everything"
    if why := variant_change(previous.encoder_variant, wanted.encoder_variant):
        return why
    if previous.chunking != wanted.chunking:
        return f"previous index used chunking {previous.chunking}; re-chunking everything"
    if previous.tokenizer != wanted.tokenizer:
        # Postings of another tokenizer would not match this version's question tokens.
        return f"previous index used BM25 tokenizer {previous.tokenizer!r}; re-indexing everything"
    return ""


# --------------------------------------------------------------------------- writing


@dataclass
class Plan:
    """What one update does, decided once by :mod:`qa.ingest.indexing` for whichever store.

    ``documents`` (``qa.ingest.documents.Document``: new and changed ones, replaced by id) are embedded
    by the ``embed`` callable given to :meth:`StoreWriter.apply` -- all at once, or one at a time
    where the store commits each document on its own. ``remove`` ids are dropped.
    With ``fresh`` nothing stored is kept: the index is recreated for ``meta``.
    """

    meta: IndexMeta
    fresh: bool = False
    documents: list[Any] = field(default_factory=list)
    remove: set[str] = field(default_factory=set)

    def __bool__(self) -> bool:
        return self.fresh or bool(self.documents or self.remove)


@dataclass(frozen=True)
class Applied:
    """What :meth:`StoreWriter.apply` left: documents and chunks stored, chunks embedded."""

    documents: int
    chunks: int
    embedded_chunks: int = 0


#: ``embed(documents) -> list[embeddings.stores.index.NewDocument]`` (chunked, embedded, tokenised).
Embed = Callable[[Sequence[Any]], list[Any]]


@dataclass(frozen=True)
class StoredDocument:
    """One stored document, for listings (no text read)."""

    doc_id: str
    source: str
    chunks: int
    characters: int
    pages: int | None
    #: Added by hand (``qa add``, an upload: kept until removed) rather than synced from a folder.
    added: bool


@runtime_checkable
class StoreWriter(Protocol):
    """Writes under the store's writer lock (see :meth:`IndexStore.writer`)."""

    def meta(self, *, required: bool = False) -> IndexMeta | None:
        """How the stored index was built; ``None`` when there is none (``required``: raise instead).

        Raises:
            IndexLoadError: an index of another format/schema version, or unreadable metadata
                (the message says how to rebuild); with ``required``, no index.
        """
        ...

    def states(self) -> Mapping[str, Any]:
        """``doc_id -> state`` of every stored document (what :meth:`needs_update` compares)."""
        ...

    def needs_update(self, doc: Any, state: Any) -> bool:
        """Whether ``doc`` differs from its stored ``state`` (bytes, extracted text, pages, origin)."""
        ...

    def sources(self) -> dict[str, str]:
        """``doc_id -> source`` of every stored document."""
        ...

    def added(self) -> dict[str, str]:
        """``doc_id -> source`` of the added documents the store knows of, whatever its format
        (a rebuild brings them back from their kept originals)."""
        ...

    def original(self, doc_id: str) -> bytes | None:
        """The kept bytes of an added document, or ``None`` when none were kept."""
        ...

    def stored_document(self, doc_id: str) -> DocumentRecord:
        """The stored document ``doc_id`` with its text, ``origin`` and kept ``original``: what a
        rebuild carries over when it cannot read the document again (another folder's, an added
        one whose original fails).

        Raises:
            KeyError: no such stored document.
            IndexLoadError: its text cannot be read.
        """
        ...

    def unstorable(self, doc: Any) -> str | None:
        """Why the store cannot hold ``doc`` (it is then skipped with that reason), or ``None``."""
        ...

    def stage(self, docs: dict[str, Any]) -> None:
        """Called before planning: keep what ``docs`` must carry into the store (the directory
        writes added documents' bytes and records their name in ``docs``)."""
        ...

    def counts(self) -> tuple[int, int]:
        """``(documents, chunks)`` stored now."""
        ...

    def apply(self, plan: Plan, embed: Embed) -> Applied:
        """Carry out ``plan``: a reader sees each document old or new, never half."""
        ...


@runtime_checkable
class IndexStore(Protocol):
    """A place an index lives (a directory, a database): how the pipeline writes and lists it."""

    #: Where it is, for messages (a URL without its password).
    location: str

    def writer(self, *, wait_s: float = 0.0) -> contextlib.AbstractContextManager[StoreWriter]:
        """Hold the store's writer lock; another writer waits up to ``wait_s`` seconds, then
        ``RuntimeError`` (the same message for every store)."""
        ...

    def has_index(self) -> bool:
        """Whether an index is stored there."""
        ...

    def documents(self) -> list[StoredDocument]:
        """Every stored document, sorted by id."""
        ...

    def summary(self) -> dict | None:
        """``{"embedding_model", "documents", "num_chunks", "chunking"}``, or ``None`` without an index."""
        ...


# --------------------------------------------------------------------------- reading


@runtime_checkable
class Store(Protocol):
    """What the retrievers need from a loaded index of any store (a directory's
    :class:`~embeddings.stores.index.VectorIndex`, a :class:`~embeddings.stores.postgres.PostgresStore`).
    Every search returns at most ``k`` hits, best first, built from the same chunk records, so
    passages, chunk ids and citations are identical whichever store answers."""

    embedding_model: str
    dimension: int
    encoder_variant: str | None

    def counts(self) -> tuple[int, int]:
        """``(documents, chunks)`` currently stored."""
        ...

    def check_encoder(self, name: str, dimension: int, variant: str | None = None) -> None:
        """Refuse (``IndexLoadError``, with the rebuild message) an encoder whose questions
        would not match the stored vectors (another variant; a store may check model and dimension too)."""
        ...

    def search_dense(self, query_vector: Any, k: int) -> list[Hit]:
        """The ``k`` nearest chunks by cosine (``components``: ``dense``)."""
        ...

    def search_bm25(self, tokens: Sequence[str], k: int) -> list[Hit]:
        """The ``k`` best chunks by BM25 over the question's :func:`qa.retrieval.bm25.tokenize` tokens
        (``components``: ``bm25``; only chunks sharing a term)."""
        ...

    def search_hybrid(
        self, query_vector: Any, tokens: Sequence[str], k: int, *, depth: int = 50, rrf_k: int = 60
    ) -> list[Hit]:
        """Reciprocal rank fusion of the top ``max(k, depth)`` of each ranking
        (``components``: ``rrf``, ``dense``, ``bm25``; ``score`` = ``rrf``)."""
        ...

