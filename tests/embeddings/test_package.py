"""The ``embeddings`` package: its public names load on first use, not with the package."""

from __future__ import annotations

import subprocess
import sys

import embeddings


def test_public_names_are_the_lazy_ones_and_each_resolves() -> None:
    assert sorted(embeddings.__all__) == sorted(embeddings._LAZY)
    for name in embeddings.__all__:
        assert getattr(embeddings, name) is getattr(__import__(embeddings._LAZY[name], fromlist=[name]), name)


def test_importing_the_package_loads_neither_faiss_nor_the_encoder() -> None:
    code = "import sys, embeddings; print(sorted(m for m in ('faiss', 'sentence_transformers', 'embeddings.stores.index') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
