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

:func:`open_store` dispatches on the location; :func:`is_store_url` is the one test the
entry points use (``qa index/add/remove/list/ask/eval``, :func:`qa.ask`, the chat).
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING, Protocol, runtime_checkable
from urllib.parse import urlsplit, urlunsplit

if TYPE_CHECKING:
    from embeddings.stores.postgres import PostgresStore

#: URL schemes that name a PostgreSQL store.
POSTGRES_SCHEMES = ("postgresql://", "postgres://")


class StoreUnavailableError(RuntimeError):
    """A database store's server cannot be reached (stopped, restarting, network down)."""


@runtime_checkable
class Store(Protocol):
    """What the retrievers and listings need from any index store."""

    embedding_model: str
    dimension: int

    def counts(self) -> tuple[int, int]:
        """``(documents, chunks)`` currently stored."""
        ...


def is_store_url(location: object) -> bool:
    """True when ``location`` names a PostgreSQL store (a ``postgresql://`` or ``postgres://`` URL)."""
    return isinstance(location, str) and location.strip().lower().startswith(POSTGRES_SCHEMES)


def index_location(text: str | os.PathLike[str]) -> str | os.PathLike[str]:
    """What a user typed for ``--index`` / ``QA_INDEX_DIR``: a URL stays a string (a ``Path``
    would collapse its ``//``), anything else becomes a :class:`pathlib.Path`."""
    from pathlib import Path

    if isinstance(text, str) and is_store_url(text):
        return text.strip()
    return Path(text)


def display_location(location: object) -> str:
    """``location`` for messages and logs: a URL's password is replaced by ``***``."""
    text = str(location)
    if not is_store_url(text):
        return text
    parts = urlsplit(text)
    if parts.password is None:
        return text
    netloc = parts.netloc.rsplit("@", 1)
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc[-1]}"))


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


def close_stores() -> None:
    """Close every pool opened by :func:`open_store` (tests, shutdown)."""
    with _STORES_LOCK:
        stores = list(_STORES.values())
        _STORES.clear()
    for store in stores:
        store.close()


__all__ = [
    "POSTGRES_SCHEMES",
    "Store",
    "StoreUnavailableError",
    "close_stores",
    "display_location",
    "index_location",
    "is_store_url",
    "load_store",
    "open_store",
]
