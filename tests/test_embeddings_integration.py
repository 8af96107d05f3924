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


def test_ivf_switch_over_keeps_the_exact_top_1_on_the_dev_questions(tmp_path: Path, monkeypatch) -> None:
    """The same index searched exactly (two small segments) and approximately (compacted into
    one IVF segment): every dev question's best chunk is the same."""
    import json
    import shutil

    from embeddings.index import VectorIndex
    from qa import config
    from qa.indexing import add_files, compact_index

    docs = tmp_path / "docs"
    shutil.copytree(ROOT / "notebooks" / "data" / "multidoc_docs", docs)
    seed = ROOT / "seeds" / "japan_defense_minister_turkey_visit.txt"
    (docs / seed.name).unlink()
    # Chunks of <= 40 word pieces: a few hundred rows, enough for an IVF of dozens of lists.
    index_folder(docs, tmp_path / "idx", max_tokens=40, overlap_sentences=0)
    add_files(tmp_path / "idx", [seed])
    questions = [
        json.loads(line)["question"]
        for name in ("seeds_dev.jsonl", "multidoc.jsonl")
        for line in (ROOT / "notebooks" / "data" / name).read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]
    vectors = get_encoder().encode(questions)
    exact_index = VectorIndex.load(tmp_path / "idx")
    assert len(exact_index) > 100 and len(exact_index.segments) == 2 and all(s.ann is None for s in exact_index.segments)
    exact = [hits[0] for hits in exact_index.search(vectors, 10)]
    exact_ids = [exact_index.chunk(r).chunk_id for r, _ in exact]

    # 4 lists per sqrt(rows): with a few hundred chunks nprobe 16 then probes a fraction of
    # the lists, as it does at scale, instead of all of them.
    monkeypatch.setattr(config, "ANN_MIN_ROWS", 50)
    monkeypatch.setattr(config, "ANN_LISTS_PER_SQRT", 4.0)
    compact_index(tmp_path / "idx")
    ivf_index = VectorIndex.load(tmp_path / "idx")
    assert len(ivf_index.segments) == 1 and ivf_index.segments[0].ann is not None
    assert ivf_index.segments[0].ann.nlist > config.ANN_NPROBE
    approx = [hits[0] for hits in ivf_index.search(vectors, 10)]
    assert [ivf_index.chunk(r).chunk_id for r, _ in approx] == exact_ids
    assert [s for _, s in approx] == pytest.approx([s for _, s in exact], abs=1e-5)
