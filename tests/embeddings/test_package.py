"""The ``embeddings`` package: its public names load on first use, not with the package."""

from __future__ import annotations

import subprocess
import sys

import embeddings


def test_each_public_name_resolves_to_its_modules_object() -> None:
    for name in embeddings.__all__:
        assert getattr(embeddings, name) is getattr(__import__(embeddings._LAZY[name], fromlist=[name]), name)


def test_importing_the_package_loads_neither_faiss_nor_the_encoder() -> None:
    code = "import sys, embeddings; print(sorted(m for m in ('faiss', 'sentence_transformers', 'embeddings.stores.index') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
