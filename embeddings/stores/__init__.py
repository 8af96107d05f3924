"""Index stores: where an index lives, chosen by what ``--index`` / ``QA_INDEX_DIR`` names.

Two implementations answer the same questions with the same passages, chunk ids and
character offsets:

* a **directory** -> the embedded store (:class:`embeddings.stores.index.VectorIndex`: immutable
  segments of memory-mapped vectors, IVF for large segments, SQLite metadata and BM25
  postings, switched by a small manifest). The default; nothing changes for a laptop user.
* a ``postgresql://`` (or ``postgres://``) **URL** -> the PostgreSQL + pgvector store
  (:class:`embeddings.stores.postgres.PostgresStore`): documents and chunks in tables,
  HNSW for vectors, GIN over a ``tsvector`` for keywords, hybrid retrieval fused by
  reciprocal rank inside one SQL statement. Needs ``pip install -e '.[postgres]'``.

:func:`writable_store` and :func:`load_store` dispatch on the location; :func:`is_store_url` is
the one test the entry points use (``qa index/add/remove/list/ask/eval``, :func:`qa.ask`, the chat).
The interface every store implements, and what they share, is :mod:`embeddings.stores.base`.

Modules: :mod:`~embeddings.stores.base` (the interface), :mod:`~embeddings.stores.records`
(chunk and document records every store gives), :mod:`~embeddings.stores.directory` over
:mod:`~embeddings.stores.index` and :mod:`~embeddings.stores.segment` (the directory store),
:mod:`~embeddings.stores.postgres` (the PostgreSQL store).
"""

from __future__ import annotations

import ast
import importlib
import os
import pkgutil
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from embeddings.errors import StoreUnavailableError
from embeddings.stores.base import (
    IndexStore,
    Store,
    StoreWriter,
    display_location,
    index_location,
    is_store_url,
)

_STORES: dict[str, IndexStore] = {}
#: ``URL_SCHEMES = (...)`` and its two companions, each a literal on one line at module level.
_DECLARATION = re.compile(r"^(URL_SCHEMES|URL_STORE|URL_EXTRA)\s*=\s*(.+?)\s*(?:#.*)?$", re.M)
_STORES_LOCK = threading.Lock()


@dataclass(frozen=True)
class UrlStore:
    """A module of this package that serves URLs: it declares ``URL_SCHEMES`` (e.g.
    ``("postgresql", "postgres")``), ``URL_STORE`` (its store class, constructed with the URL)
    and ``URL_EXTRA`` (the pip extra that installs its driver) as literals at module level."""

    module: str
    schemes: tuple[str, ...]
    store_class: str
    extra: str


def url_stores() -> dict[str, UrlStore]:
    """``scheme -> UrlStore`` for every module in ``embeddings/stores/`` that declares one.

    The declarations are read from the source (one-line literals, :func:`ast.literal_eval`), not
    imported, so listing the stores costs no driver import and a store whose driver is missing
    can still say which extra to install. A new store is found by being a module here, with no
    registration elsewhere.
    """
    found: dict[str, UrlStore] = {}
    for info in pkgutil.iter_modules(__path__):
        path = Path(info.module_finder.path) / f"{info.name}.py"  # type: ignore[union-attr]
        if info.ispkg or not path.is_file():
            continue
        values = {m.group(1): ast.literal_eval(m.group(2)) for m in _DECLARATION.finditer(path.read_text(encoding="utf-8"))}
        if "URL_SCHEMES" not in values:
            continue
        entry = UrlStore(
            module=f"{__name__}.{info.name}",
            schemes=tuple(s.lower() for s in values["URL_SCHEMES"]),  # type: ignore[union-attr]
            store_class=str(values.get("URL_STORE", "")),
            extra=str(values.get("URL_EXTRA", "")),
        )
        for scheme in entry.schemes:
            found[scheme] = entry
    return found


def open_store(url: str) -> IndexStore:
    """The process-wide store for ``url`` (one per URL, so one connection pool shared by every
    caller and thread), built by the module of this package that serves the URL's scheme
    (``postgresql://`` / ``postgres://``: :class:`~embeddings.stores.postgres.PostgresStore`).

    Raises:
        ValueError: ``url`` is not a URL, no store serves its scheme (the known ones are named),
            or the store's driver is not installed (the extra that installs it is named).
    """
    if not is_store_url(url):
        raise ValueError(
            f"{display_location(url)!r} is not a store URL; use postgresql://USER:PASSWORD@HOST:PORT/DBNAME "
            "(or a folder path for the directory store)"
        )
    key = url.strip()
    with _STORES_LOCK:
        store = _STORES.get(key)
        if store is None:
            scheme = urlsplit(key).scheme.lower()
            stores = url_stores()
            entry = stores.get(scheme)
            if entry is None:
                known = ", ".join(f"{s}://" for s in sorted(stores)) or "none"
                raise ValueError(
                    f"no store serves {scheme}:// URLs ({display_location(key)!r}); known: {known}, "
                    "or give a folder path for the directory store"
                )
            try:
                module = importlib.import_module(entry.module)
            except ImportError as exc:
                raise ValueError(
                    f"the {scheme}:// store needs the {entry.extra} extra ({exc}); "
                    f"install it with: pip install -e '.[{entry.extra}]'"
                ) from exc
            store = _STORES[key] = getattr(module, entry.store_class)(key)
        return store


def load_store(location: str | os.PathLike[str], *, expect_model: str | None = None) -> object:
    """Open the index at ``location`` with its store, checking its format and model:
    a directory -> :meth:`embeddings.stores.index.VectorIndex.load`, a URL -> :func:`open_store`
    then the store's ``refresh`` (e.g. :meth:`~embeddings.stores.postgres.PostgresStore.refresh`).

    Raises:
        IndexLoadError: missing index, another format/schema version, or built with another
            embedding model than ``expect_model`` (the message says how to rebuild).
    """
    if is_store_url(location):
        return open_store(str(location)).refresh(expect_model=expect_model)  # type: ignore[attr-defined]
    from embeddings.stores.index import VectorIndex

    return VectorIndex.load(location, expect_model=expect_model)


def writable_store(location: str | os.PathLike[str]) -> IndexStore:
    """The :class:`~embeddings.stores.base.IndexStore` at ``location``: a URL -> :func:`open_store`,
    anything else -> a :class:`~embeddings.stores.directory.DirectoryStore`. A third store needs
    nothing here: a module of this package declaring its ``URL_SCHEMES`` (see :func:`url_stores`)."""
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
        close = getattr(store, "close", None)
        if close is not None:
            close()


__all__ = [
    "IndexStore",
    "Store",
    "StoreUnavailableError",
    "StoreWriter",
    "UrlStore",
    "close_stores",
    "display_location",
    "index_location",
    "is_store_url",
    "load_store",
    "open_store",
    "url_stores",
    "writable_store",
]
