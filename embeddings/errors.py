"""Errors every store and encoder raises, below the modules that raise them (no import circle:
:mod:`embeddings.encoders.encoder`, :mod:`embeddings.stores.index` and :mod:`embeddings.stores` all import from here)."""

from __future__ import annotations

from pathlib import Path


class IndexLoadError(ValueError):
    """An index directory is missing, incomplete, corrupt or built for another model/format."""


class IndexBusyError(RuntimeError):
    """Another writer holds an index's writer lock (past the wait allowed): try again later."""


class StoreUnavailableError(RuntimeError):
    """A database store's server cannot be reached (stopped, restarting, network down)."""


def rebuild_hint(directory: Path | str) -> str:
    """The command that rebuilds an index from scratch, for error messages."""
    return f"rebuild it with: python -m qa index DOCS_DIR --index {directory} --rebuild"


__all__ = ["IndexBusyError", "IndexLoadError", "StoreUnavailableError", "rebuild_hint"]
