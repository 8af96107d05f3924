"""Text to vectors and back: :mod:`embeddings.encoders` (text -> vectors) and
:mod:`embeddings.stores` (where chunks, vectors and keyword postings live, behind one interface:
a directory of FAISS segments or PostgreSQL + pgvector). :mod:`embeddings.errors` holds the
errors both raise.

The names below are imported when first used, not with the package: a submodule such as
:mod:`embeddings.stores.base` (what the command line's parser needs) then loads without the
encoder's and FAISS's libraries (e.g. ``qa train-reader`` on a machine without FAISS).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    # For type checkers only; exported through __all__, which linters cannot read from _LAZY.
    from embeddings.encoders.encoder import Encoder, SentenceTransformerEncoder, get_encoder  # noqa: F401
    from embeddings.stores.index import FORMAT_VERSION, IndexLoadError, VectorIndex  # noqa: F401

#: Public name -> the module that defines it.
_LAZY = {
    "Encoder": "embeddings.encoders.encoder",
    "SentenceTransformerEncoder": "embeddings.encoders.encoder",
    "get_encoder": "embeddings.encoders.encoder",
    "FORMAT_VERSION": "embeddings.stores.index",
    "IndexLoadError": "embeddings.stores.index",
    "VectorIndex": "embeddings.stores.index",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    """Import a public name's module on first use (PEP 562)."""
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value  # once: later lookups skip this function
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
