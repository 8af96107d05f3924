"""Index stores: where an index lives, chosen by what ``--index`` / ``QA_INDEX_DIR`` names.

Two implementations answer the same questions with the same passages, chunk ids and
character offsets:

* a **directory** -> the embedded store (:class:`embeddings.index.VectorIndex`: immutable
  segments of memory-mapped vectors, IVF for large segments, SQLite metadata and BM25
  postings, switched by a small manifest). The default; nothing changes for a laptop user.
* a ``postgresql://`` (or ``postgres://``) **URL** -> the PostgreSQL + pgvector store
  (:class:`embeddings.stores.postgres.PostgresStore`): documents and chunks in tables,
  HNSW for vectors, GIN over a ``tsvector`` for keywords, hybrid retrieval fused by
  reciprocal rank inside one SQL statement. Needs ``pip install -e '.[postgres]'``.

:func:`writable_store` and :func:`load_store` dispatch on the location; :func:`is_store_url` is
the one test the entry points use (``qa index/add/remove/list/ask/eval``, :func:`qa.ask`, the chat).
The interface every store implements, and what they share, is :mod:`embeddings.stores.base`.
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING

from embeddings.errors import StoreUnavailableError
from embeddings.stores.base import (
    POSTGRES_SCHEMES,
    IndexStore,
    Store,
    StoreWriter,
    display_location,
    index_location,
    is_store_url,
)

if TYPE_CHECKING:
    from embeddings.stores.postgres import PostgresStore


_STORES: dict[str, PostgresStore] = {}
_STORES_LOCK = threading.Lock()


def open_store(url: str) -> PostgresStore:
    """The process-wide :class:`~embeddings.stores.postgres.PostgresStore` for ``url``
    (one connection pool per URL, shared by every caller and thread).

    Raises:
        ValueError: ``url`` is not a PostgreSQL URL, or the ``postgres`` extra is not installed.
    """
    if not is_store_url(url):
        raise ValueError(f"{display_location(url)!r} is not a PostgreSQL URL; use postgresql://USER:PASSWORD@HOST:PORT/DBNAME")
    key = url.strip()
    with _STORES_LOCK:
        store = _STORES.get(key)
        if store is None:
            try:
                from embeddings.stores.postgres import PostgresStore
            except ImportError as exc:
                raise ValueError(
                    f"the PostgreSQL store needs the postgres extra ({exc}); install it with: pip install -e '.[postgres]'"
                ) from exc
            store = _STORES[key] = PostgresStore(key)
        return store


def load_store(location: str | os.PathLike[str], *, expect_model: str | None = None) -> object:
    """Open the index at ``location`` with either store, checking its format and model:
    a directory -> :meth:`embeddings.index.VectorIndex.load`, a URL -> :func:`open_store`
    then :meth:`~embeddings.stores.postgres.PostgresStore.refresh`.

    Raises:
        IndexLoadError: missing index, another format/schema version, or built with another
            embedding model than ``expect_model`` (the message says how to rebuild).
    """
    if is_store_url(location):
        return open_store(str(location)).refresh(expect_model=expect_model)
    from embeddings.index import VectorIndex

    return VectorIndex.load(location, expect_model=expect_model)


def writable_store(location: str | os.PathLike[str]) -> IndexStore:
    """The :class:`~embeddings.stores.base.IndexStore` at ``location``: a URL -> :func:`open_store`,
    anything else -> a :class:`~embeddings.stores.directory.DirectoryStore`. A third store is
    one more branch here (and its module)."""
    if is_store_url(location):
        return open_store(str(location))
    from embeddings.stores.directory import DirectoryStore

    return DirectoryStore(location)


def close_stores() -> None:
    """Close every pool opened by :func:`open_store` (tests, shutdown)."""
    with _STORES_LOCK:
        stores = list(_STORES.values())
        _STORES.clear()
    for store in stores:
        store.close()


__all__ = [
    "POSTGRES_SCHEMES",
    "IndexStore",
    "Store",
    "StoreUnavailableError",
    "StoreWriter",
    "close_stores",
    "display_location",
    "index_location",
    "is_store_url",
    "load_store",
    "open_store",
    "writable_store",
]
