"""``ask()``: question in, :class:`~qa.answer.Answer` out (retrieve, then read).

Indexes, encoders and readers are loaded once per process and reused; an index on disk
is reloaded automatically when another process commits a new generation.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import unicodedata
from pathlib import Path
from typing import Any

from embeddings.stores import is_store_url
from embeddings.errors import IndexLoadError, rebuild_hint
from embeddings.stores.index import VectorIndex, current_generation
from qa import config
from qa.answer import Answer
from qa.reader import Reader, get_reader
from qa.retrieval.bm25 import TOKENIZER_VERSION
from qa.retrieval.retrievers import get_retriever

_INDEXES: dict[str, tuple[Path, VectorIndex]] = {}
_LOCK = threading.Lock()
#: Per index directory: held while one thread loads a new generation of it.
_LOADING: dict[str, threading.Lock] = {}


def validate_question(question: object) -> str:
    """The question, stripped; ``ValueError`` naming the problem for bad input."""
    if not isinstance(question, str):
        raise ValueError(f"question must be a string, not {type(question).__name__}")
    if len(question) > config.MAX_QUESTION_CHARS:
        raise ValueError(
            f"question is {len(question):,} characters long; the limit is {config.MAX_QUESTION_CHARS:,}. Ask a shorter question"
        )
    if any(unicodedata.category(c) == "Cs" for c in question):
        # A lone surrogate (e.g. from a mis-decoded file or a broken client) cannot be
        # encoded as UTF-8: tokenizers fail on it with an opaque TypeError.
        raise ValueError("question contains invalid Unicode (a lone surrogate); re-type it or re-save it as UTF-8")
    # Control characters (other than whitespace) carry no meaning and confuse tokenizers;
    # invisible format characters (BOM, zero-width space, direction marks) are dropped, as
    # the embedding model's own tokenizer does, so the reader sees the same words.
    cleaned = "".join(
        " " if (cat := unicodedata.category(c)) == "Cc" else "" if cat == "Cf" else c for c in question
    ).strip()
    if not cleaned:
        raise ValueError("question is empty; type a question such as \"Who is Turkey's defense minister?\"")
    if not any(c.isalnum() for c in cleaned):
        raise ValueError(f"question {question!r} has no words; type a question in words")
    return " ".join(cleaned.split())


def validate_previous(previous: object) -> str | None:
    """The conversation's previous question (for a follow-up), cleaned as a question is; ``None``
    for none (``None`` or blank). ``ValueError`` naming it for bad input (a lone surrogate, too long...)."""
    if previous is None or (isinstance(previous, str) and not previous.strip()):
        return None
    try:
        return validate_question(previous)
    except ValueError as exc:
        raise ValueError(f"previous (the conversation's last question): {exc}") from None


def validate_top_k(top_k: object) -> int:
    """The number of passages to read: ``top_k``, or the default for ``None``; ``ValueError``
    unless it is an integer from 1 to 100."""
    k = config.DEFAULT_TOP_K if top_k is None else top_k
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= 100:
        raise ValueError(f"top_k={top_k!r} must be an integer from 1 to 100")
    return k


def validate_threshold(threshold: object) -> None:
    """``ValueError`` unless ``threshold`` is ``None`` or a chance from 0 to 1."""
    if threshold is None:
        return
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0.0 <= threshold <= 1.0:
        raise ValueError(
            f"threshold={threshold!r} must be a chance from 0 to 1, e.g. 0.8 to answer only when the answer "
            "is at least 80 % likely to be right"
        )


def _keywords_checked(index: Any, where: str) -> Any:
    """``index`` (either store), unless another BM25 tokenizer made its keywords: their postings
    miss this version's question tokens, so keyword search would quietly find less. The stores
    only record the tokenizer, so that listing, removing and re-indexing still work."""
    if index.tokenizer != TOKENIZER_VERSION:
        raise IndexLoadError(
            f"index {where!r} stores keywords of BM25 tokenizer {index.tokenizer!r}, not "
            f"{TOKENIZER_VERSION!r}; {rebuild_hint(where)}"
        )
    return index


def load_index(index: str | os.PathLike[str] | VectorIndex | None = None) -> VectorIndex:
    """The index to answer from: an object as is, a directory (cached, reloaded when it
    changes), a ``postgresql://`` URL (the process-wide store for that URL, its metadata
    re-checked), or ``None`` for the default index (``QA_INDEX_DIR``; over ``seeds/``, built
    on first use)."""
    if isinstance(index, VectorIndex):
        return index
    if index is None:
        from qa.ingest.indexing import ensure_index

        location = ensure_index(config.DEFAULT_INDEX_DIR, config.DEFAULT_DOCS_DIR)
    else:
        if isinstance(index, (str, os.PathLike)) and not str(index).strip():
            # Path("") is the current folder: say so rather than look for an index there.
            raise ValueError("index is an empty path; give an index folder or a postgresql:// URL, or None for the default index")
        location = index
    if is_store_url(location):
        from embeddings.stores import open_store

        store = open_store(str(location)).refresh()
        return _keywords_checked(store, store.directory)  # type: ignore[attr-defined,return-value]
    if not isinstance(location, (str, os.PathLike)):
        return location  # another store object, as is
    directory = Path(location)
    key = str(directory.resolve())
    generation = current_generation(directory) if (directory / "CURRENT").is_file() else None
    with _LOCK:
        cached = _INDEXES.get(key)
        if cached is not None and cached[0] == generation:
            return cached[1]
        loading = _LOADING.setdefault(key, threading.Lock())
    # One thread loads a new generation; the questions that arrive meanwhile wait for it and
    # share it instead of each loading the same segments again.
    with loading:
        with _LOCK:
            cached = _INDEXES.get(key)
            if cached is not None and cached[0] == generation:
                return cached[1]
        loaded = _keywords_checked(VectorIndex.load(directory), str(directory))
        with _LOCK:
            _INDEXES[key] = (loaded.directory or directory, loaded)
        return loaded


def ask(
    question: str,
    *,
    index: str | os.PathLike[str] | VectorIndex | None = None,
    top_k: int | None = None,
    reader: str | Reader | None = None,
    retriever: str | object | None = None,
    previous: str | None = None,
    threshold: float | None = None,
) -> Answer:
    """Answer ``question`` from the documents of ``index``.

    Args:
        question: the question, in words.
        index: an index directory, a ``postgresql://`` URL, a loaded :class:`VectorIndex` or
            store, or ``None`` for the default index over ``seeds/`` (built on first use).
        top_k: passages handed to the reader (default ``qa.config.DEFAULT_TOP_K``).
        reader: ``None`` (the transformers reader over ``qa.config.DEFAULT_READER_MODEL``) or a reader object.
        retriever: ``"dense"``, ``"bm25"``, ``"hybrid"`` (default ``qa.retrieval.retrievers.DEFAULT_RETRIEVER``)
            or a retriever object (anything with ``retrieve(question, k)``).
        previous: the conversation's previous question; a follow-up that refers back to it
            ("When did it first fly?") is retrieved together with it (:mod:`qa.retrieval.followup`).
        threshold: answer only when the chance the answer is right (``Answer.score``) is at
            least this, 0-1 (e.g. 0.8 for "only when 80 % sure"); below it the answer is "I don't
            know" with the span as its guess. ``None``: the reader's own (the shipped one's is
            measured, :data:`qa.config.READER_THRESHOLD` overrides it).

    Returns:
        An :class:`Answer`; ``answer.text is None`` when the documents do not support an answer.

    Raises:
        ValueError: empty, over-long or wordless question (or ``previous``); bad ``top_k`` or ``threshold``; unknown
            retriever; missing or corrupt index (:class:`embeddings.stores.index.IndexLoadError`).
    """
    text = validate_question(question)
    previous = validate_previous(previous)
    k = validate_top_k(top_k)
    validate_threshold(threshold)
    vector_index = load_index(index)
    from qa.retrieval.followup import retrieval_query

    passages = get_retriever(retriever, vector_index).retrieve(retrieval_query(text, previous), k)
    answer = get_reader(reader).read(text, passages)
    if threshold is not None:
        answer = answer.at_threshold(threshold)
    if answer.question != question:
        # Report the question as the caller asked it.
        answer = dataclasses.replace(answer, question=question)
    return answer
