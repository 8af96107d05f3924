"""Shared pieces of the reliability suite: fast/slow fake encoders, subprocess settings.

Kept importable without pytest so the subprocess drivers in this folder can use them.
"""

from __future__ import annotations

import os
import re
import sys
import time
import zlib
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
PY = sys.executable
_WORDS = re.compile(r"\w+")


def subprocess_env(**extra: str) -> dict[str, str]:
    """Environment for child processes: offline, project importable, quiet tokenizers."""
    path = os.environ.get("PYTHONPATH", "")
    return {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "PYTHONPATH": str(ROOT) + (os.pathsep + path if path else ""),
        **extra,
    }


class FastEncoder:
    """Bag-of-words hashing encoder (crc32, in C): meaningful for retrieval, cheap for big jobs.

    ``delay_s`` sleeps per batch, to stretch indexing for the crash tests. Every call is
    recorded as ``(n_texts, show_progress, bulk)``.
    """

    dimension = 32

    def __init__(self, name: str = "fake/fast-hash", *, delay_s: float = 0.0, dimension: int = 32) -> None:
        self.name = name
        self.delay_s = delay_s
        self.dimension = dimension
        self.calls: list[tuple[int, bool, bool]] = []

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def encode(
        self, texts: list[str], *, batch_size: int = 32, show_progress: bool = False, bulk: bool = False
    ) -> np.ndarray:
        self.calls.append((len(texts), show_progress, bulk))
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for i, text in enumerate(texts):
            if self.delay_s and i % batch_size == 0:
                time.sleep(self.delay_s)
            for word in _WORDS.findall(text.lower()):
                out[i, zlib.crc32(word.encode("utf-8", "surrogatepass")) % self.dimension] += 1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        norms[norms == 0] = 1.0
        return out / norms


class NoTorchMiniLM:
    """The packaged all-MiniLM-L6-v2 in the default variant (an ONNX one), which never imports
    PyTorch: builds a real index fast, which the app then queries alike."""

    def __init__(self) -> None:
        from embeddings.encoders.encoder import get_encoder
        from qa import config

        self._inner = get_encoder(None, config.ENCODER_VARIANT)
        self.name = self._inner.name
        self.variant = self._inner.variant

    @property
    def dimension(self) -> int:
        return self._inner.dimension

    def count_tokens(self, text: str) -> int:
        return self._inner.count_tokens(text)

    def encode(self, texts, *, batch_size=32, show_progress=False, bulk=False):  # noqa: ANN001, ANN201
        return self._inner.encode(list(texts), batch_size=batch_size, bulk=bulk)


def write_corpus(folder: Path, n_docs: int = 30, seed: int = 0) -> Path:
    """``n_docs`` small distinct documents (a few hundred words each) under ``folder``."""
    import random

    rng = random.Random(seed)
    vocab = [f"{a}{b}" for a in ("kar", "tel", "mon", "vis", "dor", "pal", "sen", "ruk") for b in ("ab", "ix", "ol", "em", "un", "ar")]
    folder.mkdir(parents=True, exist_ok=True)
    for n in range(n_docs):
        sentences = [
            " ".join(rng.choices(vocab, k=rng.randint(6, 14))).capitalize() + "."
            for _ in range(rng.randint(25, 40))
        ]
        sub = folder / ("part%d" % (n % 3))
        sub.mkdir(exist_ok=True)
        (sub / f"doc{n:02d}.txt").write_text(f"Document {n} about topic{n}.\n" + " ".join(sentences), encoding="utf-8")
    return folder


ARTIFACTS = ROOT / "artifacts"


def record_figure(name: str, data: object) -> None:
    """Merge ``data`` under ``name`` into artifacts/reliability.json (figures for the report)."""
    import json

    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / "reliability.json"
    try:
        figures = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        figures = {}
    figures[name] = data
    path.write_text(json.dumps(figures, indent=1, ensure_ascii=False), encoding="utf-8")
