"""Extractive question answering over your own documents, with exact citations.

>>> from qa import ask
>>> answer = ask("Who is Turkey's defense minister?")
>>> answer.text, answer.citations[0].doc_id
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from qa.answer import Answer, Citation, Passage

if TYPE_CHECKING:
    from qa.pipeline import ask

__all__ = ["Answer", "Citation", "Passage", "ask"]


def __getattr__(name: str) -> Any:
    # Imported on first use so `import qa` (and `python -m qa --help`) stays instant.
    if name == "ask":
        from qa.pipeline import ask

        return ask
    raise AttributeError(f"module 'qa' has no attribute {name!r}")
