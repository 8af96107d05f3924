"""A NumPy forward pass for BERT-architecture sentence-transformers models (all-MiniLM-L6-v2).

Why this exists: importing PyTorch + sentence-transformers costs ~9 s on a laptop-class
CPU, while answering one question needs a single 10-40 token query embedding (and a few
sentence embeddings for the offline reader). This module reads the same safetensors
weights and tokenizer and computes the same vectors (max abs difference ~1e-6) with only
NumPy, safetensors and tokenizers, so ``ask()`` starts in about a second. Indexing keeps
using sentence-transformers for its batched throughput; both produce one embedding space.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import numpy as np

_SQRT_HALF = np.float32(0.7071067811865476)


def _erf(x: np.ndarray) -> np.ndarray:
    # Abramowitz & Stegun 7.1.26 is only 1.5e-7 accurate; use the float64 rational
    # approximation from W. J. Cody via math.erf on a vectorised path instead.
    from math import erf

    return np.vectorize(erf, otypes=[np.float64])(x)


def _gelu(x: np.ndarray) -> np.ndarray:
    """Exact (erf-based) GELU, as BERT's ``hidden_act="gelu"``."""
    try:
        from scipy.special import erf  # vectorised C implementation when SciPy is present

        return (0.5 * x * (1.0 + erf(x * _SQRT_HALF))).astype(np.float32)
    except ImportError:  # pragma: no cover - SciPy ships with sentence-transformers
        return (0.5 * x * (1.0 + _erf(x * _SQRT_HALF))).astype(np.float32)


def _layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * weight + bias


_BLAS_ENV = ("QA_BLAS_THREADS", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
_blas_limited = False


def limit_blas_threads() -> None:
    """Run NumPy's OpenBLAS single-threaded (once per process) unless the environment says otherwise.

    This encoder's matrices are tiny (a query is ~10-40 tokens), and multi-threaded
    OpenBLAS spends far longer waking and spinning its threads than computing: measured
    on a busy 2-core machine, a warm ``ask()`` took 0.86 s with 2 BLAS threads and 0.05 s
    with 1, and concurrent requests (the chat serves several at once) made it worse. The
    app already gets parallelism from answering requests in parallel. Set
    ``QA_BLAS_THREADS=N`` (or ``OPENBLAS_NUM_THREADS``) to choose otherwise. Only OpenBLAS
    is touched (not PyTorch's own thread pool, which bulk indexing uses).
    """
    global _blas_limited
    if _blas_limited:
        return
    _blas_limited = True
    threads = 1
    if os.environ.get("QA_BLAS_THREADS", "").strip():
        try:
            threads = max(1, int(os.environ["QA_BLAS_THREADS"]))
        except ValueError:
            return
    elif any(os.environ.get(v, "").strip() for v in _BLAS_ENV[1:]):
        return  # the user chose a thread count for the whole process
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:  # pragma: no cover - installed with scikit-learn/sentence-transformers
        return
    try:
        ThreadpoolController().select(internal_api="openblas").limit(limits=threads)
    except Exception:  # pragma: no cover - a tuning knob must never break encoding
        pass


class UnsupportedModel(ValueError):
    """The model directory is not a BERT + mean/CLS pooling sentence-transformers model."""


class NumpyBertEncoder:
    """Encode sentences with a BERT sentence-transformers model directory, in NumPy."""

    def __init__(self, model_dir: str | Path, name: str) -> None:
        self.name = name
        self.model_dir = Path(model_dir)
        self._lock = threading.Lock()
        self._weights: dict[str, np.ndarray] | None = None
        self._check_supported()

    def _check_supported(self) -> None:
        d = self.model_dir
        try:
            config = json.loads((d / "config.json").read_text())
            modules = json.loads((d / "modules.json").read_text())
        except (OSError, ValueError) as exc:
            raise UnsupportedModel(f"{d} is not a sentence-transformers model directory ({exc})") from exc
        types = [m["type"].rsplit(".", 1)[-1] for m in modules]
        if config.get("model_type") != "bert" or config.get("hidden_act") != "gelu" or types[:2] != ["Transformer", "Pooling"]:
            raise UnsupportedModel(f"{d}: only BERT models with gelu and Transformer+Pooling modules are supported")
        pooling_dir = d / next(m["path"] for m in modules if m["type"].endswith("Pooling"))
        pooling = json.loads((pooling_dir / "config.json").read_text())
        if pooling.get("pooling_mode_mean_tokens"):
            self._pooling = "mean"
        elif pooling.get("pooling_mode_cls_token"):
            self._pooling = "cls"
        else:
            raise UnsupportedModel(f"{d}: pooling {pooling} is not supported")
        if any(k for k, v in pooling.items() if k.startswith("pooling_mode") and v and k not in ("pooling_mode_mean_tokens", "pooling_mode_cls_token")):
            raise UnsupportedModel(f"{d}: combined pooling modes are not supported")
        self._normalize = "Normalize" in types
        self.config = config
        st_config = d / "sentence_bert_config.json"
        self.max_seq_length = int(json.loads(st_config.read_text()).get("max_seq_length", 512)) if st_config.exists() else 512

    @property
    def dimension(self) -> int:
        """Embedding size."""
        return int(self.config["hidden_size"])

    def _load(self) -> dict[str, np.ndarray]:
        with self._lock:
            if self._weights is None:
                limit_blas_threads()
                from safetensors.numpy import load_file
                from tokenizers import Tokenizer

                raw = load_file(str(self.model_dir / "model.safetensors"))
                # Checkpoints saved from BertModel have no prefix; from BertFor* they have "bert.".
                self._weights = {k.removeprefix("bert."): v.astype(np.float32) for k, v in raw.items()}
                tok = Tokenizer.from_file(str(self.model_dir / "tokenizer.json"))
                tok.enable_truncation(self.max_seq_length)
                tok.no_padding()
                self._tokenizer = tok
                # Counting must see the whole text: a truncating tokenizer would make an
                # over-long sentence look short enough to keep whole.
                counter = Tokenizer.from_file(str(self.model_dir / "tokenizer.json"))
                counter.no_truncation()
                counter.no_padding()
                self._counter = counter
            return self._weights

    def warm_up(self) -> None:
        """Read the weights now rather than on the first request."""
        self._load()

    def count_tokens(self, text: str) -> int:
        """Word pieces in ``text`` (no special tokens, no truncation)."""
        self._load()
        return len(self._counter.encode(text, add_special_tokens=False).ids)

    def encode(self, texts: list[str], *, batch_size: int = 32, show_progress: bool = False) -> np.ndarray:
        """Unit-normalised (if the model normalises) float32 embeddings, shape ``(n, dimension)``."""
        w = self._load()
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        encodings = self._tokenizer.encode_batch(list(texts))
        # Sort by length so each batch pads little, as sentence-transformers does.
        order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids))
        for b in range(0, len(order), batch_size):
            idx = order[b : b + batch_size]
            width = max(len(encodings[i].ids) for i in idx)
            ids = np.zeros((len(idx), width), dtype=np.int64)
            mask = np.zeros((len(idx), width), dtype=np.float32)
            for row, i in enumerate(idx):
                n = len(encodings[i].ids)
                ids[row, :n] = encodings[i].ids
                mask[row, :n] = 1.0
            out[idx] = self._forward(w, ids, mask)
        return out

    def _forward(self, w: dict[str, np.ndarray], ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        cfg = self.config
        eps = float(cfg.get("layer_norm_eps", 1e-12))
        heads = int(cfg["num_attention_heads"])
        batch, width = ids.shape
        head_dim = self.dimension // heads
        x = (
            w["embeddings.word_embeddings.weight"][ids]
            + w["embeddings.position_embeddings.weight"][np.arange(width)][None]
            + w["embeddings.token_type_embeddings.weight"][0][None, None]
        )
        x = _layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], eps)
        bias = ((1.0 - mask) * np.float32(-1e9))[:, None, None, :]
        for layer in range(int(cfg["num_hidden_layers"])):
            p = f"encoder.layer.{layer}."

            def lin(t: np.ndarray, name: str, p: str = p) -> np.ndarray:
                return t @ w[p + name + ".weight"].T + w[p + name + ".bias"]

            def split(t: np.ndarray) -> np.ndarray:
                return t.reshape(batch, width, heads, head_dim).transpose(0, 2, 1, 3)

            q = split(lin(x, "attention.self.query"))
            k = split(lin(x, "attention.self.key"))
            v = split(lin(x, "attention.self.value"))
            scores = q @ k.transpose(0, 1, 3, 2) / np.float32(np.sqrt(head_dim)) + bias
            scores = np.exp(scores - scores.max(-1, keepdims=True))
            scores /= scores.sum(-1, keepdims=True)
            ctx = (scores @ v).transpose(0, 2, 1, 3).reshape(batch, width, self.dimension)
            x = _layer_norm(lin(ctx, "attention.output.dense") + x, w[p + "attention.output.LayerNorm.weight"], w[p + "attention.output.LayerNorm.bias"], eps)
            h = _gelu(lin(x, "intermediate.dense"))
            x = _layer_norm(lin(h, "output.dense") + x, w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"], eps)
        if self._pooling == "mean":
            pooled = (x * mask[..., None]).sum(1) / np.maximum(mask.sum(1, keepdims=True), 1e-9)
        else:
            pooled = x[:, 0]
        if self._normalize:
            pooled = pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
        return pooled.astype(np.float32)
