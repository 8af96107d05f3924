"""Retrievers: BM25 from the index's postings, hybrid fusion, and what each retriever finds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from embeddings.stores.index import VectorIndex
from qa.ingest.indexing import index_folder
from qa.retrieval import bm25 as bm25_module
from qa.retrieval.bm25 import stem, tokenize
from qa.retrieval.retrievers import BM25Retriever, DenseRetriever, HybridRetriever, get_retriever


def test_tokenizer_folds_accents_drops_stopwords_stems_and_keeps_codes() -> None:
    assert tokenize("The Kızılelma's flights") == ["kizilelma", "flight"]
    assert tokenize("Götze scored") == tokenize("gotze SCORES") == ["gotz", "scor"]
    assert tokenize("part XJ-4471B") == ["part", "xj4471b", "xj", "4471b"]
    assert len({stem(w) for w in ["score", "scores", "scored", "scoring"]}) == 1
    assert [stem(w) for w in ["rivers", "cities", "boxes", "stopped", "running", "bus", "analysis", "speed"]] == [
        "river", "city", "box", "stop", "run", "bus", "analysis", "speed",
    ]


def test_bm25_postings_are_plain_arrays_and_score_like_bm25s(docs_dir: Path, tmp_path: Path, fake_encoder, monkeypatch) -> None:  # noqa: ANN001
    index_folder(docs_dir, tmp_path / "idx", encoder=fake_encoder, max_tokens=8)
    (segment,) = [p for p in (tmp_path / "idx").iterdir() if p.name.startswith("seg-")]
    arrays = sorted(segment.glob("*.npy"))
    assert {p.name for p in arrays} >= {"term_ptr.npy", "post_rows.npy", "post_tf.npy", "doclen.npy", "vectors.npy"}
    for path in arrays:
        np.load(path, allow_pickle=False)  # plain arrays, no pickled objects
    assert not [p for p in segment.iterdir() if p.suffix not in {".npy", ".json", ".sqlite", ".bin", ".faiss"}]

    # Scored at query time from the postings: the same ranking and scores as bm25s from scratch.
    loaded = VectorIndex.load(tmp_path / "idx")
    question = "Which port ships grain?"
    fresh = bm25_module.BM25Index.build([loaded.chunk_text(i) for i in range(len(loaded))]).top(question, 3)
    monkeypatch.setattr(bm25_module.BM25Index, "build", classmethod(lambda cls, texts: pytest.fail("BM25 was rebuilt")))
    retriever = BM25Retriever(loaded)
    ranked = retriever.rank(question, 3)
    assert [r for r, _ in ranked] == [r for r, _ in fresh]
    assert [s for _, s in ranked] == pytest.approx([s for _, s in fresh], abs=1e-4)
    hits = retriever.retrieve(question, 3)
    assert hits[0].doc_id == "sub/gamma.txt" and hits[0].score > 0


def test_removed_and_changed_documents_update_bm25(docs_dir: Path, tmp_path: Path, fake_encoder) -> None:  # noqa: ANN001
    index_folder(docs_dir, tmp_path / "idx", encoder=fake_encoder, max_tokens=8)
    assert {p.doc_id for p in BM25Retriever(VectorIndex.load(tmp_path / "idx")).retrieve("gamma port coal", 5)} == {"sub/gamma.txt"}
    (docs_dir / "sub" / "gamma.txt").unlink()
    (docs_dir / "beta.md").write_text("# Beta\n\nBeta mountain has a glacier called Vorn.", encoding="utf-8")
    fake_encoder.encoded.clear()
    index_folder(docs_dir, tmp_path / "idx", encoder=fake_encoder, max_tokens=8)
    assert all("Alpha" not in t for t in fake_encoder.encoded)  # unchanged documents were not re-embedded
    index = VectorIndex.load(tmp_path / "idx")
    retriever = BM25Retriever(index)
    assert retriever.retrieve("gamma port coal", 5) == []
    assert [p.doc_id for p in retriever.retrieve("Vorn glacier", 5)][:1] == ["beta.md"]
    assert retriever.retrieve("climbers summit July", 5) == []


def test_hybrid_scores_are_fused_rrf_with_named_components(docs_dir: Path, tmp_path: Path, fake_encoder) -> None:  # noqa: ANN001
    index_folder(docs_dir, tmp_path / "idx", encoder=fake_encoder, max_tokens=8)
    index = VectorIndex.load(tmp_path / "idx")
    question = "Where do climbers go in July?"
    dense = DenseRetriever(index, fake_encoder).rank(question, len(index))
    sparse = BM25Retriever(index).rank(question, len(index))
    hybrid = HybridRetriever(index, fake_encoder).rank(question, 4)
    fused = {}
    for ranking in (dense, sparse):
        for rank, (row, _) in enumerate(ranking, 1):
            fused[row] = fused.get(row, 0.0) + 1 / (60 + rank)
    assert [r for r, _ in hybrid] == sorted(fused, key=lambda r: (-fused[r], [d for d, _ in dense].index(r)))[:4]
    cosine, bm25 = dict(dense), dict(sparse)
    for row, score in hybrid:
        assert score == pytest.approx(fused[row])
    passages = HybridRetriever(index, fake_encoder).retrieve(question, 4)
    assert [p.score for p in passages] == sorted((p.score for p in passages), reverse=True)  # rank order
    for (row, score), p in zip(hybrid, passages, strict=True):
        assert p.components["rrf"] == pytest.approx(score) == pytest.approx(p.score)
        assert p.components["dense"] == pytest.approx(cosine[row], abs=1e-5)
        assert p.components["bm25"] == pytest.approx(bm25.get(row, 0.0))


def test_get_retriever_names(docs_dir: Path, tmp_path: Path, fake_encoder) -> None:  # noqa: ANN001
    index_folder(docs_dir, tmp_path / "idx", encoder=fake_encoder, max_tokens=8)
    index = VectorIndex.load(tmp_path / "idx")
    assert isinstance(get_retriever("dense", index, encoder=fake_encoder), DenseRetriever)
    assert isinstance(get_retriever("BM25", index, encoder=fake_encoder), BM25Retriever)
    assert isinstance(get_retriever("hybrid", index, encoder=fake_encoder), HybridRetriever)
    with pytest.raises(ValueError, match="unknown"):
        get_retriever("splade", index)


@pytest.fixture(scope="module")
def parts_index(tmp_path_factory: pytest.TempPathFactory) -> VectorIndex:
    """Real MiniLM over a few look-alike documents (built once for the slow tests)."""
    docs = tmp_path_factory.mktemp("parts") / "docs"
    docs.mkdir()
    texts = {
        "gasket_a.txt": "Replacement gasket kit QP-1120A fits the circulation pump of the older boiler models. "
        "Tighten the housing bolts to 12 newton metres after fitting the gasket.",
        "gasket_c.txt": "Replacement gasket kit KL-9087C fits the circulation pump of the compact boiler models. "
        "Tighten the housing bolts to 10 newton metres after fitting the gasket.",
        "gasket_d.txt": "Replacement seal kit MT-3302D fits the circulation pump of the commercial boiler models. "
        "Tighten the housing bolts to 18 newton metres after fitting the seal.",
        "order.txt": "Order XJ-4471B was shipped from the Leeds warehouse on Tuesday and signed for by the site manager.",
        "medicine.txt": "The physician prescribed an antipyretic syrup because the child was running a high fever overnight.",
        "boiler.txt": "Regular checks of the boiler pressure gauge keep the heating system safe during winter.",
        "shed.txt": "The garden shed needs a new coat of paint before the autumn rains arrive.",
    }
    for name, text in texts.items():
        (docs / name).write_text(text, encoding="utf-8")
    index_folder(docs, docs.parent / "idx")
    return VectorIndex.load(docs.parent / "idx")


@pytest.mark.slow
def test_hybrid_finds_the_exact_code_dense_misses(parts_index: VectorIndex) -> None:
    question = "Which pump gasket kit is XJ-4471B?"
    assert "order.txt" not in [p.doc_id for p in DenseRetriever(parts_index).retrieve(question, 3)]
    assert BM25Retriever(parts_index).retrieve(question, 1)[0].doc_id == "order.txt"
    hybrid = HybridRetriever(parts_index).retrieve(question, 3)
    assert "order.txt" in [p.doc_id for p in hybrid]
    assert all(0.0 < p.score <= 2 / 61 and -1.0 <= p.components["dense"] <= 1.0 for p in hybrid)  # fused RRF scores


@pytest.mark.slow
def test_hybrid_keeps_the_paraphrase_bm25_misses(parts_index: VectorIndex) -> None:
    question = "What did the doctor give the kid for her temperature?"
    assert "medicine.txt" not in [p.doc_id for p in BM25Retriever(parts_index).retrieve(question, 3)]
    assert DenseRetriever(parts_index).retrieve(question, 1)[0].doc_id == "medicine.txt"
    assert HybridRetriever(parts_index).retrieve(question, 1)[0].doc_id == "medicine.txt"


def test_stopwords_are_bm25s_english_stopwords() -> None:
    """Our copy (no bm25s import to tokenise a question) is exactly the list indexes were built with."""
    from bm25s.stopwords import STOPWORDS_EN

    from qa.retrieval.bm25 import STOPWORDS

    assert STOPWORDS == frozenset(STOPWORDS_EN)
