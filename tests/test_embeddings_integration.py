"""Real packaged model: NumPy path equals sentence-transformers; retrieval on the seed article."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from embeddings.encoder import get_encoder, packaged_minilm_path
from embeddings.index import VectorIndex
from qa.indexing import index_folder
from qa.retrieval import DenseRetriever
from tests.conftest import ROOT

pytestmark = pytest.mark.slow


def test_numpy_encoder_matches_sentence_transformers() -> None:
    from sentence_transformers import SentenceTransformer

    from embeddings.numpy_bert import NumpyBertEncoder

    texts = ["Who is Turkey's defense minister?", "Kızılelma — Turkey’s unmanned combat aerial vehicle.", "x"]
    fast = NumpyBertEncoder(packaged_minilm_path(), "minilm").encode(texts)
    reference = SentenceTransformer(packaged_minilm_path(), device="cpu").encode(texts, normalize_embeddings=True)
    np.testing.assert_allclose(fast, reference, atol=1e-5)


def test_token_counts_are_not_truncated() -> None:
    encoder = get_encoder()
    assert encoder.count_tokens("word " * 600) == 600


def test_defense_minister_question_retrieves_guler_chunk_first(tmp_path: Path) -> None:
    report = index_folder(ROOT / "seeds", tmp_path / "idx")
    assert report.chunks >= 2
    index = VectorIndex.load(tmp_path / "idx", expect_model="sentence-transformers/all-MiniLM-L6-v2")
    for row in index.live_rows():
        assert get_encoder().count_tokens(index.chunk_text(int(row))) <= 160
    passages = DenseRetriever(index).retrieve("Who is Turkey's defense minister?", k=3)
    assert "Yasar Guler" in passages[0].text
    assert passages[0].score >= passages[-1].score
    assert passages[0].document_text[passages[0].start : passages[0].end] == passages[0].text
